//! Certificates for the test cluster's TLS, made fresh by each test
//! process: a CA, a server certificate for `localhost` only (so that
//! `127.0.0.1` is a wrong host name for `verify-full`), a client
//! certificate for the role `certuser` (`pg_hba.conf` says `cert` for it),
//! and a second CA that signed nothing the server shows.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Role names the cluster's `pg_hba.conf` treats specially.
pub const CERT_USER: &str = "certuser";
/// Logs in with a SCRAM password (`PASSWORD_USER_SECRET`).
pub const PASSWORD_USER: &str = "pwuser";
pub const PASSWORD_USER_SECRET: &str = "s3cret/with?odd#chars";
/// Refused without TLS.
pub const TLS_ONLY_USER: &str = "tlsonly";
/// Refused with TLS.
pub const PLAIN_ONLY_USER: &str = "plainonly";

/// The files, all in one directory.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub other_ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn make_ca(name: &str) -> Result<Ca, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

fn leaf(
    ca: &Ca,
    names: &[&str],
    common_name: &str,
    purpose: ExtendedKeyUsagePurpose,
) -> Result<(String, String), rcgen::Error> {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![purpose];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Writes every file into `dir` (which must exist); keys are 0600.
    pub fn create(dir: &Path) -> Result<Pki, String> {
        let failed = |e: rcgen::Error| format!("making test certificates: {e}");
        let ca = make_ca("pgfleet test CA").map_err(failed)?;
        let other = make_ca("some other CA").map_err(failed)?;
        let (server_pem, server_key) = leaf(
            &ca,
            &["localhost"],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
        .map_err(failed)?;
        let (client_pem, client_key) =
            leaf(&ca, &[], CERT_USER, ExtendedKeyUsagePurpose::ClientAuth).map_err(failed)?;
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
            other_ca_cert: dir.join("other-ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        for (path, text, mode) in [
            (&pki.ca_cert, &ca.pem, 0o644),
            (&pki.other_ca_cert, &other.pem, 0o644),
            (&pki.server_cert, &server_pem, 0o644),
            (&pki.server_key, &server_key, 0o600),
            (&pki.client_cert, &client_pem, 0o644),
            (&pki.client_key, &client_key, 0o600),
        ] {
            fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        }
        Ok(pki)
    }
}

/// Lines put before initdb's own `pg_hba.conf` entries (which trust every
/// local connection).
pub const HBA_LINES: &str = "\
hostssl   all certuser  127.0.0.1/32 cert
host      all certuser  127.0.0.1/32 reject
host      all pwuser    127.0.0.1/32 scram-sha-256
local     all pwuser                 scram-sha-256
hostnossl all tlsonly   127.0.0.1/32 reject
hostssl   all plainonly 127.0.0.1/32 reject
";

/// Roles for the lines above, created once the server is up.
pub fn roles_sql() -> String {
    format!(
        "SET password_encryption = 'scram-sha-256';
         CREATE ROLE {CERT_USER} LOGIN SUPERUSER;
         CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER PASSWORD '{}';
         CREATE ROLE {TLS_ONLY_USER} LOGIN SUPERUSER;
         CREATE ROLE {PLAIN_ONLY_USER} LOGIN SUPERUSER;",
        PASSWORD_USER_SECRET.replace('\'', "''")
    )
}
