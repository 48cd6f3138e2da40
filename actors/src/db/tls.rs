//! TLS to PostgreSQL with libpq's meaning of `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey`, built on rustls.
//!
//! Why this module exists: operators write the same connection settings they
//! give psql, and expect the same protection. tokio-postgres only knows
//! disable/prefer/require and leaves the certificate checks to the TLS
//! connector; rustls, out of the box, only does full verification (chain and
//! host name). libpq is both weaker and stronger than that, depending on the
//! mode (libpq's "SSL Support" chapter, `initialize_SSL` in
//! `fe-secure-openssl.c`):
//!
//! | sslmode               | root certificate available   | what is checked             |
//! |-----------------------|------------------------------|-----------------------------|
//! | disable               | -                            | no TLS at all               |
//! | allow/prefer/require  | none                         | encryption only             |
//! | allow/prefer/require  | sslrootcert or `root.crt`    | the chain (as verify-ca)    |
//! | verify-ca             | required                     | the chain, not the host     |
//! | verify-full           | required                     | the chain and the host name |
//!
//! The root certificates are the PEM file named by `sslrootcert`, else
//! `~/.postgresql/root.crt` if it exists, or the platform's trusted roots with
//! `sslrootcert=system` (which, as in libpq 16+, only verify-full may use:
//! a public CA vouches for names, so trusting its chain without the name
//! would accept any certificate it ever signed). A client certificate comes
//! from `sslcert`/`sslkey` (default `~/.postgresql/postgresql.crt` and
//! `postgresql.key`, used only when the certificate file exists), and a key
//! file readable by group or others is refused as libpq refuses it.
//!
//! Without a root certificate the server's certificate is accepted unseen,
//! but the handshake signatures are still verified with the provider's
//! algorithms, so the session is encrypted to whoever holds the key of the
//! certificate the server sent. Everything is built on rustls' ring provider
//! explicitly: no process-default `CryptoProvider` is needed or installed.
//!
//! [`describe_tls_failure`] turns a failed connection's rustls error into a
//! sentence an operator can act on (which CA, which host, which file).

use std::error::Error as StdError;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's defaults, relative to the home directory (`~/.postgresql/...`).
pub const ROOT_CERT_FILE: &str = ".postgresql/root.crt";
pub const USER_CERT_FILE: &str = ".postgresql/postgresql.crt";
pub const USER_KEY_FILE: &str = ".postgresql/postgresql.key";

/// The ALPN protocol PostgreSQL 17 defines; libpq 17+ always offers it, and a
/// server only looks at it (with `sslnegotiation=direct`), older ones ignore it.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

pub use crate::conninfo::SslMode;

fn is_verify(mode: SslMode) -> bool {
    matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull)
}

/// The TLS settings of one connection, as libpq names them. Empty strings
/// count as unset, as in libpq.
#[derive(Debug, Clone, Copy)]
pub struct TlsOptions<'a> {
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of one or more CA certificates, or `system`.
    pub rootcert: Option<&'a str>,
    /// `sslcert`: a PEM file, the client certificate then its intermediates.
    pub cert: Option<&'a str>,
    /// `sslkey`: the client key, PKCS#8, PKCS#1 or SEC1, PEM or DER.
    pub key: Option<&'a str>,
    /// The home directory, for the `~/.postgresql/` defaults; `None` when it
    /// is unknown (then only explicit files are used, as libpq does).
    pub home: Option<&'a Path>,
}

/// Why no TLS configuration could be built. The messages follow libpq's.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \"verify-full\")"
    )]
    WeakModeWithSystemRoots { mode: SslMode },
    #[error(
        "root certificate file \"{}\" does not exist; either provide the file, use the system's \
         trusted roots with sslrootcert=system, or change sslmode to disable server certificate \
         verification",
        path.display()
    )]
    RootCertMissing { path: PathBuf },
    #[error(
        "could not get home directory to locate root certificate file; either provide the file \
         (sslrootcert), use the system's trusted roots with sslrootcert=system, or change sslmode \
         to disable server certificate verification"
    )]
    NoHomeForRootCert,
    #[error(
        "could not load the system's trusted root certificates (sslrootcert=system): {detail}"
    )]
    SystemRoots { detail: String },
    /// A file named by `option` (sslrootcert, sslcert or sslkey) could not be read.
    #[error("could not read {option} file \"{}\": {source}", path.display())]
    Read {
        option: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file named by `option` was read but holds nothing usable.
    #[error("invalid {option} file \"{}\": {detail}", path.display())]
    Invalid {
        option: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("certificate present, but not private key file \"{}\"", path.display())]
    KeyMissing { path: PathBuf },
    #[error(
        "client certificate \"{}\" found, but no private key file: set sslkey (there is no home \
         directory for the default ~/.postgresql/postgresql.key)",
        cert.display()
    )]
    NoKeyFile { cert: PathBuf },
    #[error("private key file \"{}\" is not a regular file", path.display())]
    KeyNotRegularFile { path: PathBuf },
    #[error(
        "private key file \"{}\" has group or world access; file must have permissions u=rw \
         (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if \
         owned by root",
        path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error(
        "certificate \"{}\" does not match private key file \"{}\"",
        cert.display(),
        key.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("could not build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// The connector to give `tokio_postgres::Config::connect`, or `None` for
/// `sslmode=disable` (then pass `tokio_postgres::NoTls`). Reads the files now:
/// build it once per pool, not per connection.
pub fn connector(options: &TlsOptions<'_>) -> Result<Option<MakeRustlsConnect>, TlsError> {
    Ok(client_config(options)?.map(MakeRustlsConnect::new))
}

/// The rustls configuration behind [`connector`], for callers that drive
/// rustls themselves.
pub fn client_config(options: &TlsOptions<'_>) -> Result<Option<ClientConfig>, TlsError> {
    let rootcert = non_empty(options.rootcert);
    // Checked before anything else, disable included, as libpq checks it
    // while reading the connection options.
    if rootcert == Some("system") && options.mode != SslMode::VerifyFull {
        return Err(TlsError::WeakModeWithSystemRoots { mode: options.mode });
    }
    if options.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = load_roots(options)?;
    let verifier: Arc<dyn ServerCertVerifier> = match (roots, options.mode) {
        (None, _) => Arc::new(LibpqVerifier {
            roots: None,
            provider: provider.clone(),
        }),
        (Some(roots), SslMode::VerifyFull) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?
        }
        // verify-ca, and require/prefer/allow with a root certificate file:
        // libpq sets SSL_VERIFY_PEER whenever a root certificate was loaded,
        // and only verify-full adds the host name check.
        (Some(roots), _) => Arc::new(LibpqVerifier {
            roots: Some(Arc::new(roots)),
            provider: provider.clone(),
        }),
    };
    let client_auth = load_client_cert(options, &provider)?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => builder
            .with_client_auth_cert(auth.chain, auth.key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                    cert: auth.cert_path,
                    key: auth.key_path,
                },
                other => TlsError::Config(other),
            })?,
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Some(config))
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// Where the root certificates come from, before looking at the disk.
enum RootSource {
    System,
    File(PathBuf),
    /// No sslrootcert and no home directory for the default.
    Nowhere,
}

fn root_source(options: &TlsOptions<'_>) -> RootSource {
    match (non_empty(options.rootcert), options.home) {
        (Some("system"), _) => RootSource::System,
        (Some(path), _) => RootSource::File(PathBuf::from(path)),
        (None, Some(home)) => RootSource::File(home.join(ROOT_CERT_FILE)),
        (None, None) => RootSource::Nowhere,
    }
}

/// The trusted roots, or `None` when the server's certificate is not to be
/// verified at all (a weak mode and no root certificate file).
fn load_roots(options: &TlsOptions<'_>) -> Result<Option<RootCertStore>, TlsError> {
    let path = match root_source(options) {
        RootSource::System => return system_roots().map(Some),
        RootSource::Nowhere if is_verify(options.mode) => return Err(TlsError::NoHomeForRootCert),
        RootSource::Nowhere => return Ok(None),
        RootSource::File(path) => path,
    };
    // libpq stat()s the file: when it is not there, the weak modes go on
    // without verification (even for an explicit sslrootcert), and the
    // verify modes fail.
    if let Err(error) = fs::metadata(&path) {
        return match (is_verify(options.mode), error.kind()) {
            (false, _) => Ok(None),
            (true, io::ErrorKind::NotFound) => Err(TlsError::RootCertMissing { path }),
            (true, _) => Err(TlsError::Read {
                option: "sslrootcert",
                path,
                source: error,
            }),
        };
    }
    let certs = read_pem_certs("sslrootcert", &path)?;
    let mut roots = RootCertStore::empty();
    for (index, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            option: "sslrootcert",
            path: path.clone(),
            detail: format!("certificate {} is not a usable CA: {e}", index + 1),
        })?;
    }
    Ok(Some(roots))
}

/// The platform's trusted roots (honouring SSL_CERT_FILE and SSL_CERT_DIR,
/// as OpenSSL's default verify paths do for libpq).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let detail = if found.errors.is_empty() {
            "no certificates found".to_string()
        } else {
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(TlsError::SystemRoots { detail });
    }
    Ok(roots)
}

fn read_file(option: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        option,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a PEM file, in order; other PEM sections are skipped
/// (as OpenSSL skips them), and a file without any certificate is an error.
fn read_pem_certs(
    option: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(option, path)?;
    let invalid = |detail: String| TlsError::Invalid {
        option,
        path: path.to_path_buf(),
        detail,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in it".to_string()));
    }
    Ok(certs)
}

struct ClientAuth {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

/// The client certificate and its key, when the certificate file exists
/// (libpq goes on without one when it does not, even when sslcert names it).
fn load_client_cert(
    options: &TlsOptions<'_>,
    provider: &CryptoProvider,
) -> Result<Option<ClientAuth>, TlsError> {
    let cert_path = match (non_empty(options.cert), options.home) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(home)) => home.join(USER_CERT_FILE),
        (None, None) => return Ok(None),
    };
    if let Err(error) = fs::metadata(&cert_path) {
        return match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Ok(None),
            _ => Err(TlsError::Read {
                option: "sslcert",
                path: cert_path,
                source: error,
            }),
        };
    }
    let chain = read_pem_certs("sslcert", &cert_path)?;
    let key_path = match (non_empty(options.key), options.home) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(home)) => home.join(USER_KEY_FILE),
        (None, None) => return Err(TlsError::NoKeyFile { cert: cert_path }),
    };
    let key = read_private_key(&key_path)?;
    // Load it once here so that an unusable key is reported as the key
    // file's fault rather than as a configuration error.
    provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::Invalid {
            option: "sslkey",
            path: key_path.clone(),
            detail: format!("unsupported private key: {e}"),
        })?;
    Ok(Some(ClientAuth {
        chain,
        key,
        cert_path,
        key_path,
    }))
}

/// The client key, after libpq's checks: present, a regular file, and not
/// readable by group or others (root-owned files may be group-readable).
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let metadata = fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TlsError::KeyMissing {
            path: path.to_path_buf(),
        },
        _ => TlsError::Read {
            option: "sslkey",
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !metadata.is_file() {
        return Err(TlsError::KeyNotRegularFile {
            path: path.to_path_buf(),
        });
    }
    check_key_permissions(path, &metadata)?;
    let bytes = read_file("sslkey", path)?;
    let invalid = |detail: String| TlsError::Invalid {
        option: "sslkey",
        path: path.to_path_buf(),
        detail,
    };
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        // As libpq, try DER when there is no PEM key in the file.
        Err(pem::Error::NoItemsFound) => {
            if let Ok(key) = PrivateKeyDer::try_from(bytes.as_slice()) {
                return Ok(key.clone_key());
            }
            let text = String::from_utf8_lossy(&bytes);
            if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
                Err(invalid(
                    "the key is encrypted, and encrypted keys (sslpassword) are not supported: \
                     decrypt it (openssl pkey -in KEY -out KEY.plain)"
                        .to_string(),
                ))
            } else {
                Err(invalid(
                    "no PKCS#8, PKCS#1 or SEC1 private key in it (PEM or DER)".to_string(),
                ))
            }
        }
        Err(e) => Err(invalid(format!("not a PEM file: {e}"))),
    }
}

#[cfg(unix)]
fn check_key_permissions(path: &Path, metadata: &fs::Metadata) -> Result<(), TlsError> {
    use std::os::unix::fs::MetadataExt;
    // libpq: root-owned files may have u=rw,g=r (S_IWGRP|S_IXGRP|S_IRWXO
    // forbidden), any other owner u=rw (S_IRWXG|S_IRWXO forbidden). Whose
    // file it is need not be checked: we could read it.
    let forbidden = if metadata.uid() == 0 { 0o037 } else { 0o077 };
    let mode = metadata.mode();
    if mode & forbidden != 0 {
        return Err(TlsError::KeyPermissions {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_permissions(_path: &Path, _metadata: &fs::Metadata) -> Result<(), TlsError> {
    // libpq does not check permissions on Windows either.
    Ok(())
}

/// The verifier of every mode but verify-full, which is rustls's own.
///
/// Without roots (allow/prefer/require and no root certificate file) it is
/// encryption only: the certificate is not judged, but the handshake
/// signatures are verified against its key, so the peer must hold the key
/// of what it presented.
///
/// With roots (verify-ca, and the weak modes when a root certificate file
/// is there) the chain must lead to one of them, and the name is not looked
/// at. This calls rustls' own chain check,
/// `verify_server_cert_signed_by_trust_anchor` (the same webpki path
/// validation `WebPkiServerVerifier` runs: signatures, validity dates, CA
/// constraints, the serverAuth purpose) and simply does not call
/// `verify_server_name`. The alternative, wrapping `WebPkiServerVerifier`
/// and forgiving its `NotValidForName` errors, would be sound only as long
/// as that verifier happens to check the chain before the name, which is
/// not a documented guarantee: a version that checked the name first would
/// then let an unverified chain through. No revocation lists are checked,
/// as libpq without sslcrl checks none.
#[derive(Debug)]
struct LibpqVerifier {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An operator's sentence for a connection that failed in TLS, or `None`
/// when no rustls error is in `error`'s source chain. `options` are the ones
/// the connector was built from; they name the files in the sentence.
///
/// tokio-postgres reports a failed handshake as its `Error` whose source is
/// an `io::Error` carrying the `rustls::Error`; `io::Error::source` skips that
/// payload, so the payload is looked at directly.
pub fn describe_tls_failure(
    error: &(dyn StdError + 'static),
    options: &TlsOptions<'_>,
) -> Option<String> {
    find_rustls_error(error).map(|tls| describe_rustls_error(tls, options))
}

fn find_rustls_error<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e rustls::Error> {
    let mut next = Some(error);
    // Bounded, in case some error's source() ever loops.
    for _ in 0..32 {
        let current = next?;
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = current
            .downcast_ref::<io::Error>()
            .and_then(|io_error| io_error.get_ref())
        {
            if let Some(tls) = find_rustls_error(inner) {
                return Some(tls);
            }
        }
        next = current.source();
    }
    None
}

/// What the roots were, for the sentences: "sslrootcert (<path>)".
fn roots_phrase(options: &TlsOptions<'_>) -> String {
    match root_source(options) {
        RootSource::System => "the system's trusted roots (sslrootcert=system)".to_string(),
        RootSource::File(path) => format!("sslrootcert ({})", path.display()),
        RootSource::Nowhere => "sslrootcert".to_string(),
    }
}

fn describe_rustls_error(error: &rustls::Error, options: &TlsOptions<'_>) -> String {
    match error {
        rustls::Error::InvalidCertificate(certificate) => {
            describe_certificate_error(certificate, options)
        }
        rustls::Error::NoCertificatesPresented => {
            "the server presented no certificate in the TLS handshake".to_string()
        }
        rustls::Error::AlertReceived(alert) => describe_alert(*alert, options),
        rustls::Error::PeerIncompatible(why) => format!(
            "the server's TLS is incompatible with this client ({why:?}); this client speaks \
             TLS 1.2 and 1.3 only"
        ),
        other => format!("the TLS handshake with the server failed: {other}"),
    }
}

fn describe_certificate_error(error: &CertificateError, options: &TlsOptions<'_>) -> String {
    match error {
        CertificateError::UnknownIssuer => {
            let mut sentence = format!(
                "the server's certificate is not signed by a CA in {}",
                roots_phrase(options)
            );
            if !is_verify(options.mode) {
                sentence.push_str(&format!(
                    "; sslmode={} verifies the chain because that root certificate file exists, \
                     as libpq does",
                    options.mode
                ));
            }
            sentence
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let mut sentence = format!(
                "the server's certificate is not valid for host \"{}\" (sslmode=verify-full \
                 checks the host name; verify-ca does not)",
                expected.to_str()
            );
            if presented.is_empty() {
                sentence.push_str(
                    "; the certificate has no subjectAltName, and unlike libpq this client does \
                     not fall back to its Common Name: reissue it with the host name as a DNS \
                     (or IP) subjectAltName",
                );
            } else {
                sentence.push_str(&format!("; it names {}", presented.join(", ")));
            }
            sentence
        }
        CertificateError::NotValidForName => "the server's certificate is not valid for the host \
             name connected to (sslmode=verify-full checks the host name; verify-ca does not)"
            .to_string(),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "the server's certificate expired at {} (it is now {}): renew it on the server",
            format_time(*not_after),
            format_time(*time)
        ),
        CertificateError::Expired => {
            "the server's certificate (or one of its CAs) has expired: renew it on the server"
                .to_string()
        }
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "the server's certificate is not valid before {} (it is now {}): check the clocks of \
             this host and of the server",
            format_time(*not_before),
            format_time(*time)
        ),
        CertificateError::NotValidYet => "the server's certificate is not valid yet: check the \
             clocks of this host and of the server"
            .to_string(),
        CertificateError::Revoked => "the server's certificate has been revoked".to_string(),
        CertificateError::BadSignature => "a certificate in the server's chain is not correctly \
             signed by its issuer's key"
            .to_string(),
        CertificateError::BadEncoding => "the server's certificate is malformed".to_string(),
        CertificateError::UnhandledCriticalExtension => "the server's certificate has a critical \
             extension this client does not understand"
            .to_string(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not for TLS servers (its extended key usage lacks \
             serverAuth)"
                .to_string()
        }
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "the server's certificate chain is signed with an algorithm this client does not \
             support"
                .to_string()
        }
        CertificateError::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            "the server's own certificate is a CA certificate (basicConstraints CA:TRUE, as a \
             self-signed `openssl req -x509` makes); OpenSSL accepts that, rustls does not: sign \
             a server certificate with that CA and use it as ssl_cert_file"
                .to_string()
        }
        other => format!("the server's certificate was rejected: {other}"),
    }
}

fn describe_alert(alert: AlertDescription, options: &TlsOptions<'_>) -> String {
    let cert = match (non_empty(options.cert), options.home) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(home)) => home.join(USER_CERT_FILE),
        (None, None) => PathBuf::from("~").join(USER_CERT_FILE),
    };
    match alert {
        AlertDescription::CertificateRequired => format!(
            "the server requires a client certificate and none was sent: provide sslcert and \
             sslkey (no file at {})",
            cert.display()
        ),
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied => format!(
            "the server rejected this client's certificate (TLS alert {alert:?}): check that \
             sslcert ({}) is valid and signed by a CA in the server's ssl_ca_file",
            cert.display()
        ),
        AlertDescription::ProtocolVersion
        | AlertDescription::HandshakeFailure
        | AlertDescription::InsufficientSecurity => format!(
            "the server refused the TLS handshake (TLS alert {alert:?}): no TLS version or cipher \
             suite in common (this client speaks TLS 1.2 and 1.3)"
        ),
        AlertDescription::NoApplicationProtocol => {
            "the server refused the ALPN protocol \"postgresql\" (TLS alert NoApplicationProtocol)"
                .to_string()
        }
        other => format!("the server ended the TLS handshake with alert {other:?}"),
    }
}

/// "YYYY-MM-DD HH:MM:SS UTC", without a date crate.
fn format_time(time: UnixTime) -> String {
    let secs = time.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    /// The mode to give `tokio_postgres::Config::ssl_mode`, which decides only
    /// whether TLS is attempted and whether plaintext is acceptable (the checks
    /// themselves are in the connector). `allow`'s plaintext-first attempt is
    /// the caller's to make; on the wire it behaves as `prefer`.
    pub fn wire_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Wire;
        match mode {
            SslMode::Disable => Wire::Disable,
            SslMode::Allow | SslMode::Prefer => Wire::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Wire::Require,
        }
    }

    use super::*;

    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::server::WebPkiClientVerifier;
    use rustls::ServerConfig;
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    // ---- certificates, made fresh for each test -------------------------

    struct Ca {
        pem: String,
        der: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn make_ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    struct Leaf {
        pem: String,
        der: CertificateDer<'static>,
        key: KeyPair,
    }

    fn leaf_with(ca: &Ca, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Leaf {
        leaf_params(
            ca,
            CertificateParams::new(names_vec(names)).expect("params"),
            purpose,
        )
    }

    fn names_vec(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn leaf_params(
        ca: &Ca,
        mut params: CertificateParams,
        purpose: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        params
            .distinguished_name
            .push(DnType::CommonName, "pgfleet test");
        params.extended_key_usages = vec![purpose];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca.issuer).expect("signed");
        Leaf {
            pem: cert.pem(),
            der: cert.der().clone(),
            key,
        }
    }

    fn server_leaf(ca: &Ca, names: &[&str]) -> Leaf {
        leaf_with(ca, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client_leaf(ca: &Ca) -> Leaf {
        leaf_with(ca, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn pkcs8(key: &KeyPair) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
    }

    fn write(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, contents).expect("write");
        set_mode(&path, mode);
        path
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[cfg(not(unix))]
    fn set_mode(_path: &Path, _mode: u32) {}

    fn text(path: &Path) -> &str {
        path.to_str().expect("utf-8 path")
    }

    fn options<'a>(mode: SslMode, rootcert: Option<&'a str>) -> TlsOptions<'a> {
        TlsOptions {
            mode,
            rootcert,
            cert: None,
            key: None,
            home: None,
        }
    }

    // A tiny DER reader and base64 encoder: enough to turn rcgen's PKCS#8
    // key into the SEC1 ("EC PRIVATE KEY") it wraps.
    fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = input[0];
        let (len, header) = match input[1] {
            short if short < 0x80 => (short as usize, 2),
            long => {
                let count = (long & 0x7f) as usize;
                let len = input[2..2 + count]
                    .iter()
                    .fold(0usize, |acc, b| acc << 8 | *b as usize);
                (len, 2 + count)
            }
        };
        (tag, &input[header..header + len], &input[header + len..])
    }

    fn sec1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
        let (tag, body, _) = der_tlv(pkcs8);
        assert_eq!(tag, 0x30);
        let (_version, _, rest) = der_tlv(body);
        let (_algorithm, _, rest) = der_tlv(rest);
        let (tag, private_key, _) = der_tlv(rest);
        assert_eq!(tag, 0x04, "PKCS#8 privateKey OCTET STRING");
        private_key.to_vec()
    }

    fn to_pem(label: &str, der: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize] as char);
                } else {
                    b64.push('=');
                }
            }
        }
        let mut pem = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("ascii"));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {label}-----\n"));
        pem
    }

    // ---- a PostgreSQL server that only speaks TLS -----------------------

    /// Answers one SSLRequest with 'S', completes the TLS handshake, reads
    /// the startup message and replies with a FATAL "handshake ok", so a
    /// client that got through TLS fails with exactly that database error.
    async fn fake_postgres(config: ServerConfig) -> (u16, JoinHandle<io::Result<()>>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await?;
            let mut request = [0u8; 8];
            tcp.read_exact(&mut request).await?;
            assert_eq!(request, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], "SSLRequest");
            tcp.write_all(b"S").await?;
            let mut tls = acceptor.accept(tcp).await?;
            let mut len = [0u8; 4];
            tls.read_exact(&mut len).await?;
            let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
            tls.read_exact(&mut startup).await?;
            let mut fields = Vec::new();
            for (code, value) in [(b'S', "FATAL"), (b'C', "28000"), (b'M', "handshake ok")] {
                fields.push(code);
                fields.extend_from_slice(value.as_bytes());
                fields.push(0);
            }
            fields.push(0);
            let mut reply = vec![b'E'];
            reply.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
            reply.extend_from_slice(&fields);
            tls.write_all(&reply).await?;
            tls.shutdown().await?;
            Ok(())
        });
        (port, task)
    }

    fn server_config(leaf: &Leaf, client_ca: Option<&Ca>) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.der.clone()).expect("client CA");
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder
            .with_single_cert(vec![leaf.der.clone()], pkcs8(&leaf.key))
            .expect("server cert")
    }

    /// Connects through tokio-postgres exactly as the pool will: the
    /// connector from `connector()`, host name `host`, socket 127.0.0.1.
    async fn connect_through_postgres(
        server: ServerConfig,
        host: &str,
        options: &TlsOptions<'_>,
    ) -> tokio_postgres::Error {
        let (port, server_task) = fake_postgres(server).await;
        let tls = connector(options)
            .expect("connector")
            .expect("TLS for this mode");
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .hostaddr(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .port(port)
            .user("pgfleet")
            .ssl_mode(wire_mode(options.mode))
            .connect_timeout(Duration::from_secs(10));
        let outcome = tokio::time::timeout(Duration::from_secs(20), config.connect(tls))
            .await
            .expect("connect in time");
        server_task.abort();
        match outcome {
            Ok(_) => panic!("the fake server never lets a client in"),
            Err(error) => error,
        }
    }

    fn assert_got_through(error: &tokio_postgres::Error) {
        let db = error
            .as_db_error()
            .unwrap_or_else(|| panic!("expected the server's FATAL after TLS, got {error:?}"));
        assert_eq!(db.message(), "handshake ok");
    }

    fn certificate_error(error: &tokio_postgres::Error) -> CertificateError {
        match find_rustls_error(error) {
            Some(rustls::Error::InvalidCertificate(e)) => e.clone(),
            other => panic!("expected a certificate error, got {other:?} from {error:?}"),
        }
    }

    struct Setup {
        dir: tempfile::TempDir,
        ca: Ca,
        other_ca: Ca,
        server: Leaf,
    }

    impl Setup {
        fn new() -> Setup {
            let ca = make_ca("pgfleet test CA");
            let server = server_leaf(&ca, &["localhost"]);
            Setup {
                dir: tempfile::tempdir().expect("tempdir"),
                other_ca: make_ca("unrelated CA"),
                ca,
                server,
            }
        }

        fn ca_file(&self) -> PathBuf {
            write(self.dir.path(), "root.crt", self.ca.pem.as_bytes(), 0o644)
        }

        fn other_ca_file(&self) -> PathBuf {
            write(
                self.dir.path(),
                "other.crt",
                self.other_ca.pem.as_bytes(),
                0o644,
            )
        }
    }

    // ---- the modes, through a real handshake ----------------------------

    #[tokio::test]
    async fn verify_full_accepts_the_right_ca_and_host() {
        let setup = Setup::new();
        let root = setup.ca_file();
        let opts = options(SslMode::VerifyFull, Some(text(&root)));
        let error =
            connect_through_postgres(server_config(&setup.server, None), "localhost", &opts).await;
        assert_got_through(&error);
        assert_eq!(describe_tls_failure(&error, &opts), None);
    }

    #[tokio::test]
    async fn verify_full_refuses_a_wrong_host_name() {
        let setup = Setup::new();
        let root = setup.ca_file();
        let opts = options(SslMode::VerifyFull, Some(text(&root)));
        let error =
            connect_through_postgres(server_config(&setup.server, None), "db.example.com", &opts)
                .await;
        assert!(matches!(
            certificate_error(&error),
            CertificateError::NotValidForNameContext { .. }
        ));
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(
            sentence.starts_with(
                "the server's certificate is not valid for host \"db.example.com\" \
                 (sslmode=verify-full checks the host name; verify-ca does not)"
            ),
            "{sentence}"
        );
        assert!(sentence.contains("localhost"), "{sentence}");
    }

    #[tokio::test]
    async fn verify_full_refuses_an_unknown_ca() {
        let setup = Setup::new();
        let root = setup.other_ca_file();
        let opts = options(SslMode::VerifyFull, Some(text(&root)));
        let error =
            connect_through_postgres(server_config(&setup.server, None), "localhost", &opts).await;
        assert_eq!(certificate_error(&error), CertificateError::UnknownIssuer);
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert_eq!(
            sentence,
            format!(
                "the server's certificate is not signed by a CA in sslrootcert ({})",
                root.display()
            )
        );
    }

    #[tokio::test]
    async fn verify_full_checks_ip_addresses_against_ip_sans() {
        let setup = Setup::new();
        let root = setup.ca_file();
        let by_ip = server_leaf(&setup.ca, &["127.0.0.1"]);
        let opts = options(SslMode::VerifyFull, Some(text(&root)));
        let error = connect_through_postgres(server_config(&by_ip, None), "127.0.0.1", &opts).await;
        assert_got_through(&error);
        // A DNS-only certificate is not valid for an IP address.
        let error =
            connect_through_postgres(server_config(&setup.server, None), "127.0.0.1", &opts).await;
        assert!(matches!(
            certificate_error(&error),
            CertificateError::NotValidForNameContext { .. }
        ));
    }

    #[tokio::test]
    async fn verify_ca_ignores_the_host_name_but_not_the_ca() {
        let setup = Setup::new();
        let root = setup.ca_file();
        let opts = options(SslMode::VerifyCa, Some(text(&root)));
        let error =
            connect_through_postgres(server_config(&setup.server, None), "db.example.com", &opts)
                .await;
        assert_got_through(&error);

        let other = setup.other_ca_file();
        let opts = options(SslMode::VerifyCa, Some(text(&other)));
        let error =
            connect_through_postgres(server_config(&setup.server, None), "db.example.com", &opts)
                .await;
        assert_eq!(certificate_error(&error), CertificateError::UnknownIssuer);
    }

    #[tokio::test]
    async fn verify_ca_still_checks_dates_and_purpose() {
        let setup = Setup::new();
        let root = setup.ca_file();
        let opts = options(SslMode::VerifyCa, Some(text(&root)));

        let mut params = CertificateParams::new(names_vec(&["localhost"])).expect("params");
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let expired = leaf_params(&setup.ca, params, ExtendedKeyUsagePurpose::ServerAuth);
        let error =
            connect_through_postgres(server_config(&expired, None), "localhost", &opts).await;
        assert!(matches!(
            certificate_error(&error),
            CertificateError::ExpiredContext { .. }
        ));
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(
            sentence.starts_with("the server's certificate expired at 2001-01-01 00:00:00 UTC"),
            "{sentence}"
        );

        let client_only = client_leaf(&setup.ca);
        let error =
            connect_through_postgres(server_config(&client_only, None), "localhost", &opts).await;
        assert!(matches!(
            certificate_error(&error),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
        ));
    }

    #[tokio::test]
    async fn a_ca_certificate_as_the_server_certificate_is_explained() {
        let setup = Setup::new();
        // What `openssl req -x509 -subj /CN=localhost` makes: self-signed, CA:TRUE.
        let mut params = CertificateParams::new(names_vec(&["localhost"])).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let root = write(setup.dir.path(), "self.crt", cert.pem().as_bytes(), 0o644);
        let leaf = Leaf {
            pem: cert.pem(),
            der: cert.der().clone(),
            key,
        };
        let opts = options(SslMode::VerifyCa, Some(text(&root)));
        let error = connect_through_postgres(server_config(&leaf, None), "localhost", &opts).await;
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(sentence.contains("is a CA certificate"), "{sentence}");
    }

    #[tokio::test]
    async fn require_without_a_root_accepts_any_certificate() {
        let setup = Setup::new();
        // No rootcert, and a home without ~/.postgresql/root.crt.
        let home = setup.dir.path().join("home");
        fs::create_dir_all(&home).expect("home");
        for mode in [SslMode::Require, SslMode::Prefer, SslMode::Allow] {
            let opts = TlsOptions {
                home: Some(&home),
                ..options(mode, None)
            };
            let error = connect_through_postgres(
                server_config(&setup.server, None),
                "db.example.com",
                &opts,
            )
            .await;
            assert_got_through(&error);
        }
    }

    #[tokio::test]
    async fn require_with_a_root_file_verifies_the_chain_as_libpq_does() {
        let setup = Setup::new();
        let other = setup.other_ca_file();
        let opts = options(SslMode::Require, Some(text(&other)));
        let error =
            connect_through_postgres(server_config(&setup.server, None), "localhost", &opts).await;
        assert_eq!(certificate_error(&error), CertificateError::UnknownIssuer);
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(
            sentence.contains("sslmode=require verifies the chain because that root certificate"),
            "{sentence}"
        );

        // The default ~/.postgresql/root.crt counts too, and the host name
        // is still not checked.
        let home = setup.dir.path().join("home");
        fs::create_dir_all(home.join(".postgresql")).expect("home");
        fs::write(home.join(ROOT_CERT_FILE), setup.other_ca.pem.as_bytes()).expect("root.crt");
        let opts = TlsOptions {
            home: Some(&home),
            ..options(SslMode::Prefer, None)
        };
        let error =
            connect_through_postgres(server_config(&setup.server, None), "localhost", &opts).await;
        assert_eq!(certificate_error(&error), CertificateError::UnknownIssuer);
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(sentence.contains(".postgresql/root.crt"), "{sentence}");

        fs::write(home.join(ROOT_CERT_FILE), setup.ca.pem.as_bytes()).expect("root.crt");
        let error =
            connect_through_postgres(server_config(&setup.server, None), "db.example.com", &opts)
                .await;
        assert_got_through(&error);
    }

    #[tokio::test]
    async fn a_missing_explicit_root_file_is_ignored_by_the_weak_modes() {
        // libpq stat()s sslrootcert and, for require, goes on unverified.
        let setup = Setup::new();
        let missing = setup.dir.path().join("missing.crt");
        let opts = options(SslMode::Require, Some(text(&missing)));
        let error =
            connect_through_postgres(server_config(&setup.server, None), "localhost", &opts).await;
        assert_got_through(&error);
    }

    #[tokio::test]
    async fn client_certificates_reach_a_server_that_wants_them() {
        let setup = Setup::new();
        let root = setup.ca_file();
        let client = client_leaf(&setup.ca);
        let cert = write(setup.dir.path(), "client.crt", client.pem.as_bytes(), 0o644);
        let sec1 = to_pem(
            "EC PRIVATE KEY",
            &sec1_from_pkcs8(&client.key.serialize_der()),
        );
        let key = write(setup.dir.path(), "client.key", sec1.as_bytes(), 0o600);
        let opts = TlsOptions {
            cert: Some(text(&cert)),
            key: Some(text(&key)),
            ..options(SslMode::VerifyFull, Some(text(&root)))
        };
        let error = connect_through_postgres(
            server_config(&setup.server, Some(&setup.ca)),
            "localhost",
            &opts,
        )
        .await;
        assert_got_through(&error);

        // Without one, the server's alert is explained.
        let opts = options(SslMode::VerifyFull, Some(text(&root)));
        let error = connect_through_postgres(
            server_config(&setup.server, Some(&setup.ca)),
            "localhost",
            &opts,
        )
        .await;
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(
            sentence.starts_with("the server requires a client certificate"),
            "{sentence} from {error:?}"
        );
    }

    #[tokio::test]
    async fn default_client_certificate_comes_from_home() {
        let setup = Setup::new();
        let client = client_leaf(&setup.ca);
        let home = setup.dir.path().join("home");
        fs::create_dir_all(home.join(".postgresql")).expect("home");
        fs::write(home.join(USER_CERT_FILE), client.pem.as_bytes()).expect("crt");
        fs::write(home.join(USER_KEY_FILE), client.key.serialize_pem()).expect("key");
        set_mode(&home.join(USER_KEY_FILE), 0o600);
        let opts = TlsOptions {
            home: Some(&home),
            ..options(SslMode::Require, None)
        };
        let error = connect_through_postgres(
            server_config(&setup.server, Some(&setup.ca)),
            "localhost",
            &opts,
        )
        .await;
        assert_got_through(&error);
    }

    // ---- configuration errors -------------------------------------------

    #[test]
    fn disable_means_no_tls() {
        assert!(connector(&options(SslMode::Disable, None))
            .expect("ok")
            .is_none());
    }

    #[test]
    fn system_roots_need_verify_full() {
        for mode in [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
        ] {
            let error = client_config(&options(mode, Some("system"))).expect_err("refused");
            assert_eq!(
                error.to_string(),
                format!(
                    "weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \
                     \"verify-full\")"
                )
            );
        }
        // verify-full is allowed; whether the platform has roots is its business.
        match client_config(&options(SslMode::VerifyFull, Some("system"))) {
            Ok(config) => assert!(config.is_some()),
            Err(error) => assert!(matches!(error, TlsError::SystemRoots { .. }), "{error}"),
        }
    }

    #[test]
    fn verify_modes_need_a_root_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.crt");
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let error = client_config(&options(mode, Some(text(&missing)))).expect_err("refused");
            assert_eq!(
                error.to_string(),
                format!(
                    "root certificate file \"{}\" does not exist; either provide the file, use \
                     the system's trusted roots with sslrootcert=system, or change sslmode to \
                     disable server certificate verification",
                    missing.display()
                )
            );
            // The default under home, too.
            let opts = TlsOptions {
                home: Some(dir.path()),
                ..options(mode, None)
            };
            let error = client_config(&opts).expect_err("refused");
            assert!(matches!(&error, TlsError::RootCertMissing { path }
                if path == &dir.path().join(ROOT_CERT_FILE)));
            // And no home at all.
            let error = client_config(&options(mode, None)).expect_err("refused");
            assert!(matches!(error, TlsError::NoHomeForRootCert));
        }
    }

    #[test]
    fn unreadable_or_garbage_files_name_the_option_and_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = write(dir.path(), "garbage", b"not a certificate\n", 0o600);
        let error = client_config(&options(SslMode::VerifyFull, Some(text(&garbage))))
            .expect_err("refused");
        assert!(
            matches!(&error, TlsError::Invalid { option: "sslrootcert", path, .. } if path == &garbage),
            "{error}"
        );
        assert!(error.to_string().contains(text(&garbage)), "{error}");

        // A directory where a root file should be.
        let error = client_config(&options(SslMode::VerifyFull, Some(text(dir.path()))))
            .expect_err("refused");
        assert!(
            matches!(
                &error,
                TlsError::Read {
                    option: "sslrootcert",
                    ..
                }
            ),
            "{error}"
        );

        let ca = make_ca("CA");
        let root = write(dir.path(), "root.crt", ca.pem.as_bytes(), 0o644);
        let opts = TlsOptions {
            cert: Some(text(&garbage)),
            key: Some(text(&garbage)),
            ..options(SslMode::VerifyFull, Some(text(&root)))
        };
        let error = client_config(&opts).expect_err("refused");
        assert!(
            matches!(
                &error,
                TlsError::Invalid {
                    option: "sslcert",
                    ..
                }
            ),
            "{error}"
        );

        let client = client_leaf(&ca);
        let cert = write(dir.path(), "client.crt", client.pem.as_bytes(), 0o644);
        let opts = TlsOptions {
            cert: Some(text(&cert)),
            key: Some(text(&garbage)),
            ..options(SslMode::VerifyFull, Some(text(&root)))
        };
        let error = client_config(&opts).expect_err("refused");
        assert!(
            matches!(&error, TlsError::Invalid { option: "sslkey", path, .. } if path == &garbage),
            "{error}"
        );
        assert!(error
            .to_string()
            .starts_with(&format!("invalid sslkey file \"{}\"", garbage.display())));
    }

    #[test]
    fn a_missing_client_certificate_is_not_an_error_but_a_missing_key_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = TlsOptions {
            cert: Some("/nonexistent/postgresql.crt"),
            ..options(SslMode::Require, None)
        };
        assert!(client_config(&opts).expect("ok").is_some());

        let ca = make_ca("CA");
        let client = client_leaf(&ca);
        let cert = write(dir.path(), "client.crt", client.pem.as_bytes(), 0o644);
        let key = dir.path().join("client.key");
        let opts = TlsOptions {
            cert: Some(text(&cert)),
            key: Some(text(&key)),
            ..options(SslMode::Require, None)
        };
        let error = client_config(&opts).expect_err("refused");
        assert_eq!(
            error.to_string(),
            format!(
                "certificate present, but not private key file \"{}\"",
                key.display()
            )
        );
    }

    #[cfg(unix)]
    #[test]
    fn client_key_permissions_follow_libpq() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = make_ca("CA");
        let client = client_leaf(&ca);
        let cert = write(dir.path(), "client.crt", client.pem.as_bytes(), 0o644);
        let key_pem = client.key.serialize_pem();
        let key = write(dir.path(), "client.key", key_pem.as_bytes(), 0o644);
        let opts = TlsOptions {
            cert: Some(text(&cert)),
            key: Some(text(&key)),
            ..options(SslMode::Require, None)
        };
        let error = client_config(&opts).expect_err("refused");
        assert_eq!(
            error.to_string(),
            format!(
                "private key file \"{}\" has group or world access; file must have permissions \
                 u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) \
                 or less if owned by root",
                key.display()
            )
        );
        assert!(matches!(
            error,
            TlsError::KeyPermissions { mode: 0o644, .. }
        ));

        set_mode(&key, 0o600);
        assert!(client_config(&opts).expect("accepted").is_some());
        set_mode(&key, 0o400);
        assert!(client_config(&opts).expect("accepted").is_some());

        // u=rw,g=r passes only for a root-owned file.
        set_mode(&key, 0o640);
        let owned_by_root = fs::metadata(&key).expect("stat").uid() == 0;
        assert_eq!(client_config(&opts).is_ok(), owned_by_root);

        // Not a regular file.
        let opts = TlsOptions {
            key: Some(text(dir.path())),
            ..opts
        };
        assert!(matches!(
            client_config(&opts).expect_err("refused"),
            TlsError::KeyNotRegularFile { .. }
        ));
    }

    #[test]
    fn pkcs8_sec1_and_pkcs1_keys_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = make_ca("CA");
        let client = client_leaf(&ca);
        let cert = write(dir.path(), "client.crt", client.pem.as_bytes(), 0o644);
        let pkcs8_der = client.key.serialize_der();
        let sec1_der = sec1_from_pkcs8(&pkcs8_der);
        let cases: [(&str, Vec<u8>); 4] = [
            ("pkcs8.pem", client.key.serialize_pem().into_bytes()),
            ("pkcs8.der", pkcs8_der.clone()),
            ("sec1.pem", to_pem("EC PRIVATE KEY", &sec1_der).into_bytes()),
            ("sec1.der", sec1_der.clone()),
        ];
        for (name, contents) in cases {
            let key = write(dir.path(), name, &contents, 0o600);
            let loaded = read_private_key(&key).expect(name);
            let expected_sec1 = name.starts_with("sec1");
            assert_eq!(
                matches!(loaded, PrivateKeyDer::Sec1(_)),
                expected_sec1,
                "{name}"
            );
            let opts = TlsOptions {
                cert: Some(text(&cert)),
                key: Some(text(&key)),
                ..options(SslMode::Require, None)
            };
            assert!(client_config(&opts).expect(name).is_some(), "{name}");
        }
        // ring cannot make RSA keys, so PKCS#1 is checked as far as the file
        // format: an "RSA PRIVATE KEY" block is read as PKCS#1 (rustls' ring
        // provider loads those, and says so when the key itself is bad).
        let pkcs1 = write(
            dir.path(),
            "pkcs1.pem",
            to_pem("RSA PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]).as_bytes(),
            0o600,
        );
        assert!(matches!(
            read_private_key(&pkcs1).expect("read"),
            PrivateKeyDer::Pkcs1(_)
        ));
        let opts = TlsOptions {
            cert: Some(text(&cert)),
            key: Some(text(&pkcs1)),
            ..options(SslMode::Require, None)
        };
        let error = client_config(&opts).expect_err("not a real RSA key");
        assert!(
            error
                .to_string()
                .starts_with(&format!("invalid sslkey file \"{}\"", pkcs1.display())),
            "{error}"
        );

        let encrypted = write(
            dir.path(),
            "encrypted.pem",
            to_pem("ENCRYPTED PRIVATE KEY", &[0x30, 0x00]).as_bytes(),
            0o600,
        );
        let error = read_private_key(&encrypted).expect_err("refused");
        assert!(error.to_string().contains("sslpassword"), "{error}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = make_ca("CA");
        let client = client_leaf(&ca);
        let stranger = client_leaf(&ca);
        let cert = write(dir.path(), "client.crt", client.pem.as_bytes(), 0o644);
        let key = write(
            dir.path(),
            "client.key",
            stranger.key.serialize_pem().as_bytes(),
            0o600,
        );
        let opts = TlsOptions {
            cert: Some(text(&cert)),
            key: Some(text(&key)),
            ..options(SslMode::Require, None)
        };
        assert!(matches!(
            client_config(&opts).expect_err("refused"),
            TlsError::KeyMismatch { .. }
        ));
    }

    #[test]
    fn every_tls_mode_plugs_into_tokio_postgres() {
        fn takes_make_tls_connect<T>(_: &T)
        where
            T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone + Send + Sync,
        {
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = write(dir.path(), "root.crt", make_ca("CA").pem.as_bytes(), 0o644);
        for mode in [
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            let tls: MakeRustlsConnect = connector(&options(mode, Some(text(&root))))
                .expect("connector")
                .expect("TLS");
            takes_make_tls_connect(&tls);
            // Compiles only if the connector is what Config::connect takes.
            let config = tokio_postgres::Config::new();
            drop(config.connect(tls));
        }
        let config = client_config(&options(SslMode::Require, None))
            .expect("config")
            .expect("TLS");
        assert_eq!(config.alpn_protocols, vec![b"postgresql".to_vec()]);
    }

    #[test]
    fn describe_ignores_errors_without_tls_in_them() {
        let plain = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            describe_tls_failure(&plain, &options(SslMode::Require, None)),
            None
        );
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Revoked),
        );
        assert_eq!(
            describe_tls_failure(&wrapped, &options(SslMode::VerifyFull, None)).as_deref(),
            Some("the server's certificate has been revoked")
        );
    }

    #[test]
    fn times_are_formatted_in_utc() {
        let at = |secs| format_time(UnixTime::since_unix_epoch(Duration::from_secs(secs)));
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(at(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }
}
