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
//! With a root certificate, the chain is verified by webpki, except for the
//! certificates PostgreSQL's documentation makes that webpki refuses and
//! libpq accepts (a self-signed server certificate that is itself in
//! sslrootcert, CA flag or not; an X.509 version 1 server certificate), which
//! `db::server_cert` verifies; only the root certificates OpenSSL takes for
//! CAs may sign, and the root that ends a chain is held to OpenSSL's checks
//! (dates, path length, purpose), also there. verify-full checks the host
//! name by libpq's rules (subjectAltName, then the Common Name when there is
//! no subjectAltName of the host's kind), also in `db::server_cert`. A
//! handshake signature that does not verify with the presented
//! certificate's key is said to be that, not a fault of the chain.
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
use rustls::crypto::CryptoProvider;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::server_cert::{self, format_time, ServerCertError, Trust};

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
    // verify-ca, and require/prefer/allow with a root certificate file:
    // libpq sets SSL_VERIFY_PEER whenever a root certificate was loaded, and
    // only verify-full adds the host name check.
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(LibpqVerifier {
        trust: load_roots(options)?,
        check_host: options.mode == SslMode::VerifyFull,
        provider: provider.clone(),
    });
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
fn load_roots(options: &TlsOptions<'_>) -> Result<Option<Trust>, TlsError> {
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
    // Every certificate may pin the server's own; only those OpenSSL takes
    // for CAs may sign (server_cert::Trust).
    let trust = Trust::from_file(certs).map_err(|unusable| TlsError::Invalid {
        option: "sslrootcert",
        path,
        detail: unusable.to_string(),
    })?;
    Ok(Some(trust))
}

/// The platform's trusted roots (honouring SSL_CERT_FILE and SSL_CERT_DIR,
/// as OpenSSL's default verify paths do for libpq).
fn system_roots() -> Result<Trust, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let trust = Trust::from_system(found.certs);
    if trust.ca_count() == 0 {
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
    Ok(trust)
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

/// The verifier of every mode.
///
/// Without roots (allow/prefer/require and no root certificate file) it is
/// encryption only: the certificate is not judged, but the handshake
/// signatures are verified against its key, so the peer must hold the key
/// of what it presented.
///
/// With roots (verify-ca, verify-full, and the weak modes when a root
/// certificate file is there) the chain must lead to one of them
/// ([`server_cert::verify_chain`]: rustls' own
/// `verify_server_cert_signed_by_trust_anchor`, the webpki path validation
/// `WebPkiServerVerifier` runs, for version 3 chains; libpq's pinned
/// self-signed certificates and version 1 chains beside it), and only
/// verify-full then looks at the name, by libpq's rules
/// ([`server_cert::check_host_name`]). The chain is always checked first and
/// whole; the name check never stands in for it. No revocation lists are
/// checked, as libpq without sslcrl checks none.
#[derive(Debug)]
struct LibpqVerifier {
    trust: Option<Trust>,
    check_host: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(trust) = &self.trust {
            let leaf = server_cert::verify_chain(
                end_entity,
                intermediates,
                trust,
                now,
                &self.provider.signature_verification_algorithms,
            )?;
            if self.check_host {
                server_cert::check_host(leaf.as_ref(), end_entity, server_name)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        server_cert::handshake_signature(match server_cert::legacy_key(cert) {
            Some(key) => {
                server_cert::verify_tls12_signature_with_raw_key(message, &key, dss, algorithms)
            }
            None => rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms),
        })
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        server_cert::handshake_signature(match server_cert::legacy_key(cert) {
            Some(key) => {
                rustls::crypto::verify_tls13_signature_with_raw_key(message, &key, dss, algorithms)
            }
            None => rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms),
        })
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
            let sentence = format!(
                "the server's certificate is not signed by a CA in {}",
                roots_phrase(options)
            );
            with_weak_mode_note(sentence, options)
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
                    "; the certificate names no host (no subjectAltName DNS or IP entry, no \
                     Common Name)",
                );
            } else {
                // libpq's order: the subjectAltName entries, then the Common
                // Name when no entry of the host's kind (DNS or IP) exists.
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
        // A chain's signature: the handshake's own is HandshakeSignature.
        CertificateError::BadSignature => format!(
            "a certificate in the server's chain is not correctly signed by its issuer's key \
             (a CA of the same name but another key in {}, such as a root made again, does this)",
            roots_phrase(options)
        ),
        CertificateError::BadEncoding => "the server's certificate, or a CA certificate of its \
             chain, is malformed (it does not parse as an X.509 certificate)"
            .to_string(),
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
        CertificateError::Other(other) => match other.0.downcast_ref::<ServerCertError>() {
            Some(ServerCertError::SelfSignedNotTrusted { subject }) => with_weak_mode_note(
                format!(
                    "the server's certificate ({subject}) is self-signed and is not itself in {}: \
                     a self-signed server certificate is trusted only when sslrootcert holds \
                     that very certificate (a copy of the server's ssl_cert_file), as with libpq",
                    roots_phrase(options)
                ),
                options,
            ),
            Some(ServerCertError::SelfIssuedNotTrusted { subject }) => with_weak_mode_note(
                format!(
                    "the server's certificate ({subject}) names itself as its issuer, without an \
                     authority key identifier naming another key, and is not itself in {}: \
                     OpenSSL (libpq) takes such a certificate for self-signed and trusts only \
                     that very certificate",
                    roots_phrase(options)
                ),
                options,
            ),
            Some(ServerCertError::RootNotACa { subject, why }) => with_weak_mode_note(
                format!(
                    "the server's chain is signed by {subject}, which is in {} but is not a CA \
                     certificate ({why}): a certificate of sslrootcert that is not a CA is \
                     trusted only as the server's own certificate, never as the issuer of \
                     another, as with libpq",
                    roots_phrase(options)
                ),
                options,
            ),
            Some(known) => known.to_string(),
            None => match other.0.downcast_ref::<webpki::Error>() {
                // Not expected (version 1 chains are verified in
                // server_cert), but should one ever come through, say so.
                Some(webpki::Error::UnsupportedCertVersion) => {
                    "the server's certificate is an X.509 version 1 certificate, which rustls \
                     cannot verify: reissue it as version 3, e.g. the same `openssl x509 -req` \
                     with `-extfile <(printf \"subjectAltName=DNS:dbhost.yourdomain.com\")`"
                        .to_string()
                }
                _ => format!("the server's certificate was rejected: {other}"),
            },
        },
        other => format!("the server's certificate was rejected: {other}"),
    }
}

/// For the weak modes, why a certificate was judged at all.
fn with_weak_mode_note(mut sentence: String, options: &TlsOptions<'_>) -> String {
    if !is_verify(options.mode) {
        sentence.push_str(&format!(
            "; sslmode={} verifies the chain because that root certificate file exists, as \
             libpq does",
            options.mode
        ));
    }
    sentence
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

#[cfg(test)]
pub(super) mod tests {
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
    use rustls::{RootCertStore, ServerConfig};
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

    // ---- libpq's certificates that webpki refuses (server_cert) ---------

    fn server_cert_error(error: &tokio_postgres::Error) -> ServerCertError {
        match certificate_error(error) {
            CertificateError::Other(other) => other
                .0
                .downcast_ref::<ServerCertError>()
                .cloned()
                .unwrap_or_else(|| panic!("not a ServerCertError: {other:?}")),
            other => panic!("expected CertificateError::Other, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_servers_certificate_in_sslrootcert_does_not_vouch_for_another() {
        // One root file listing two servers' own self-signed certificates,
        // neither a CA (keyUsage without keyCertSign): each is pinned, and
        // neither key signs for another host.
        let setup = Setup::new();
        let own = |name: &str| {
            self_signed(name, |p| {
                p.is_ca = IsCa::ExplicitNoCa;
                p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            })
        };
        let (db1, db2) = (own("db1.example.com"), own("db2.example.com"));
        let both = format!("{}{}", db1.pem, db2.pem);
        let root = write(setup.dir.path(), "servers.crt", both.as_bytes(), 0o644);
        let opts = options(SslMode::VerifyFull, Some(text(&root)));
        for (cert, host) in [(&db1, "db1.example.com"), (&db2, "db2.example.com")] {
            let error = connect_through_postgres(server_config(cert, None), host, &opts).await;
            assert_got_through(&error);
        }
        // db1's key (a compromised db1) signs a certificate for db2.
        let mut params = CertificateParams::new(names_vec(&["db2.example.com"])).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "db2.example.com");
        let key = KeyPair::generate().expect("key");
        let mut db1_name = CertificateParams::new(Vec::<String>::new()).expect("params");
        db1_name
            .distinguished_name
            .push(DnType::CommonName, "db1.example.com");
        let db1_issuer = Issuer::new(db1_name, &db1.key);
        let cert = params.signed_by(&key, &db1_issuer).expect("signed");
        let forged = Leaf {
            pem: cert.pem(),
            der: cert.der().clone(),
            key,
        };
        for mode in [SslMode::VerifyFull, SslMode::VerifyCa, SslMode::Require] {
            let opts = options(mode, Some(text(&root)));
            let error =
                connect_through_postgres(server_config(&forged, None), "db2.example.com", &opts)
                    .await;
            assert_eq!(
                server_cert_error(&error),
                ServerCertError::RootNotACa {
                    subject: "CN=db1.example.com".to_string(),
                    why: "its keyUsage lacks keyCertSign",
                }
            );
            let sentence = describe_tls_failure(&error, &opts).expect("described");
            assert!(
                sentence.starts_with(&format!(
                    "the server's chain is signed by CN=db1.example.com, which is in sslrootcert \
                     ({}) but is not a CA certificate (its keyUsage lacks keyCertSign)",
                    root.display()
                )),
                "{sentence}"
            );
        }
    }

    /// What `openssl req -new -x509 -subj "/CN=<cn>"` makes: self-signed,
    /// CA:TRUE, the host only in the Common Name; `adjust` changes it.
    fn self_signed(cn: &str, adjust: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        adjust(&mut params);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        Leaf {
            pem: cert.pem(),
            der: cert.der().clone(),
            key,
        }
    }

    /// A server certificate signed by `ca` with these subjectAltNames and
    /// Common Name.
    fn leaf_named(ca: &Ca, names: &[&str], cn: &str) -> Leaf {
        let mut params = CertificateParams::new(names_vec(names)).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca.issuer).expect("signed");
        Leaf {
            pem: cert.pem(),
            der: cert.der().clone(),
            key,
        }
    }

    #[tokio::test]
    async fn a_self_signed_certificate_in_sslrootcert_is_trusted_ca_flag_or_not() {
        let setup = Setup::new();
        let docs = self_signed("localhost", |_| {});
        let not_ca = self_signed("localhost", |p| p.is_ca = IsCa::ExplicitNoCa);
        for cert in [&docs, &not_ca] {
            let root = write(setup.dir.path(), "server.crt", cert.pem.as_bytes(), 0o644);
            // verify-full takes the host from the Common Name (there is no
            // subjectAltName), without regard to case; verify-ca and
            // require with a root file do not look at it.
            for (mode, host) in [
                (SslMode::VerifyFull, "localhost"),
                (SslMode::VerifyFull, "LocalHost"),
                (SslMode::VerifyCa, "db.example.com"),
                (SslMode::Require, "db.example.com"),
            ] {
                let opts = options(mode, Some(text(&root)));
                let error = connect_through_postgres(server_config(cert, None), host, &opts).await;
                assert_got_through(&error);
            }
        }
        // Among other certificates in the file, too.
        let bundle = format!("{}{}", setup.ca.pem, docs.pem);
        let root = write(setup.dir.path(), "bundle.crt", bundle.as_bytes(), 0o644);
        let opts = options(SslMode::VerifyFull, Some(text(&root)));
        let error = connect_through_postgres(server_config(&docs, None), "localhost", &opts).await;
        assert_got_through(&error);
    }

    #[tokio::test]
    async fn a_pinned_certificate_is_still_checked_for_host_dates_and_purpose() {
        let setup = Setup::new();
        let pinned = |cert: &Leaf| {
            let root = write(setup.dir.path(), "server.crt", cert.pem.as_bytes(), 0o644);
            text(&root).to_owned()
        };

        let docs = self_signed("localhost", |_| {});
        let root = pinned(&docs);
        let opts = options(SslMode::VerifyFull, Some(&root));
        for host in ["db.example.com", "127.0.0.1"] {
            let error = connect_through_postgres(server_config(&docs, None), host, &opts).await;
            assert!(matches!(
                certificate_error(&error),
                CertificateError::NotValidForNameContext { .. }
            ));
            let sentence = describe_tls_failure(&error, &opts).expect("described");
            assert_eq!(
                sentence,
                format!(
                    "the server's certificate is not valid for host \"{host}\" \
                     (sslmode=verify-full checks the host name; verify-ca does not); it names \
                     CN=localhost"
                )
            );
        }

        let expired = self_signed("localhost", |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        });
        let root = pinned(&expired);
        for mode in [SslMode::VerifyFull, SslMode::VerifyCa, SslMode::Require] {
            let opts = options(mode, Some(&root));
            let error =
                connect_through_postgres(server_config(&expired, None), "localhost", &opts).await;
            assert!(matches!(
                certificate_error(&error),
                CertificateError::ExpiredContext { .. }
            ));
            let sentence = describe_tls_failure(&error, &opts).expect("described");
            assert!(
                sentence.starts_with(
                    "the server's certificate expired at 2001-01-01 00:00:00 UTC (it is now "
                ),
                "{sentence}"
            );
        }

        let future = self_signed("localhost", |p| {
            p.not_before = rcgen::date_time_ymd(2100, 1, 1);
            p.not_after = rcgen::date_time_ymd(2101, 1, 1);
        });
        let root = pinned(&future);
        let opts = options(SslMode::VerifyCa, Some(&root));
        let error =
            connect_through_postgres(server_config(&future, None), "localhost", &opts).await;
        assert!(matches!(
            certificate_error(&error),
            CertificateError::NotValidYetContext { .. }
        ));

        let client_only = self_signed("localhost", |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        });
        let root = pinned(&client_only);
        let opts = options(SslMode::VerifyCa, Some(&root));
        let error =
            connect_through_postgres(server_config(&client_only, None), "localhost", &opts).await;
        assert_eq!(certificate_error(&error), CertificateError::InvalidPurpose);
    }

    #[tokio::test]
    async fn another_self_signed_certificate_is_refused_whatever_its_name() {
        let setup = Setup::new();
        let served = self_signed("localhost", |_| {});
        // What running the docs' command a second time makes: same name,
        // another key.
        let other = self_signed("localhost", |_| {});
        let root = write(setup.dir.path(), "other.crt", other.pem.as_bytes(), 0o644);
        for mode in [SslMode::VerifyFull, SslMode::VerifyCa, SslMode::Require] {
            let opts = options(mode, Some(text(&root)));
            let error =
                connect_through_postgres(server_config(&served, None), "localhost", &opts).await;
            assert_eq!(
                server_cert_error(&error),
                ServerCertError::SelfSignedNotTrusted {
                    subject: "CN=localhost".to_string()
                }
            );
            let sentence = describe_tls_failure(&error, &opts).expect("described");
            assert!(
                sentence.starts_with(&format!(
                    "the server's certificate (CN=localhost) is self-signed and is not itself in \
                     sslrootcert ({}): a self-signed server certificate is trusted only when \
                     sslrootcert holds that very certificate",
                    root.display()
                )),
                "{sentence}"
            );
            assert_eq!(
                sentence.contains("sslmode=require verifies the chain because that root"),
                mode == SslMode::Require,
                "{sentence}"
            );
        }
        // A CA that signed other certificates does not vouch for it either.
        let ca = setup.ca_file();
        let opts = options(SslMode::VerifyCa, Some(text(&ca)));
        let error =
            connect_through_postgres(server_config(&served, None), "localhost", &opts).await;
        assert!(matches!(
            server_cert_error(&error),
            ServerCertError::SelfSignedNotTrusted { .. }
        ));
    }

    #[tokio::test]
    async fn only_a_self_issued_certificate_is_pinned() {
        let setup = Setup::new();
        // A CA-signed server certificate alone in the root file: its CA is
        // missing, and OpenSSL (no partial chains in libpq) refuses it too.
        let root = write(
            setup.dir.path(),
            "leaf.crt",
            setup.server.pem.as_bytes(),
            0o644,
        );
        let opts = options(SslMode::VerifyCa, Some(text(&root)));
        let error =
            connect_through_postgres(server_config(&setup.server, None), "localhost", &opts).await;
        assert_eq!(certificate_error(&error), CertificateError::UnknownIssuer);

        // A CA certificate signed by a CA: rustls refuses it as a server's,
        // and says so.
        let mut params = CertificateParams::new(names_vec(&["localhost"])).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "a CA as a server");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &setup.ca.issuer).expect("signed");
        let ca_leaf = Leaf {
            pem: cert.pem(),
            der: cert.der().clone(),
            key,
        };
        let ca = setup.ca_file();
        let opts = options(SslMode::VerifyFull, Some(text(&ca)));
        let error =
            connect_through_postgres(server_config(&ca_leaf, None), "localhost", &opts).await;
        assert!(matches!(
            server_cert_error(&error),
            ServerCertError::CaAsServerCertificate { .. }
        ));
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(
            sentence.starts_with(
                "the server's certificate (CN=a CA as a server) is a CA certificate \
                 (basicConstraints CA:TRUE) signed by CN=pgfleet test CA"
            ),
            "{sentence}"
        );
    }

    #[tokio::test]
    async fn verify_full_reads_host_names_as_libpq_does() {
        let setup = Setup::new();
        let root = setup.ca_file();
        let opts = options(SslMode::VerifyFull, Some(text(&root)));
        let attempt = |leaf: Leaf, host: &'static str| async move {
            connect_through_postgres(server_config(&leaf, None), host, &opts).await
        };
        let presented = |error: &tokio_postgres::Error| match certificate_error(error) {
            CertificateError::NotValidForNameContext { presented, .. } => presented,
            other => panic!("expected a name mismatch, got {other:?}"),
        };

        // No subjectAltName: the Common Name.
        let cn_only = || leaf_named(&setup.ca, &[], "db.example.com");
        assert_got_through(&attempt(cn_only(), "db.example.com").await);
        let error = attempt(cn_only(), "other.example.com").await;
        assert_eq!(presented(&error), vec!["CN=db.example.com"]);

        // A DNS subjectAltName: the Common Name is not looked at.
        let both = || leaf_named(&setup.ca, &["db.example.com"], "localhost");
        assert_got_through(&attempt(both(), "db.example.com").await);
        let error = attempt(both(), "localhost").await;
        assert_eq!(presented(&error), vec!["DNS:db.example.com"]);

        // An IP host and no IP subjectAltName: the Common Name, even beside
        // a DNS entry (libpq's rule; RFC 6125 would not).
        let ip_in_cn = || leaf_named(&setup.ca, &["db.example.com"], "127.0.0.1");
        assert_got_through(&attempt(ip_in_cn(), "127.0.0.1").await);
        // With an IP subjectAltName, only that.
        let ip_san = || leaf_named(&setup.ca, &["10.0.0.1"], "127.0.0.1");
        let error = attempt(ip_san(), "127.0.0.1").await;
        assert_eq!(presented(&error), vec!["IP:10.0.0.1"]);

        // A wildcard stands for one label.
        let wildcard = || leaf_named(&setup.ca, &["*.example.com"], "wildcard");
        assert_got_through(&attempt(wildcard(), "db.example.com").await);
        let error = attempt(wildcard(), "a.db.example.com").await;
        assert_eq!(presented(&error), vec!["DNS:*.example.com"]);

        // Nothing to compare with.
        let nameless = leaf_named(&setup.ca, &[], "");
        let error = attempt(nameless, "localhost").await;
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(sentence.ends_with("; it names CN="), "{sentence}");
    }

    // ---- X.509 version 1 server certificates ----------------------------
    //
    // rcgen makes only version 3 certificates; these come from the openssl
    // program, as PostgreSQL's docs make them.

    /// Runs the `openssl` program in `dir` (also for `server_cert`'s tests).
    pub(in crate::db) fn openssl(dir: &Path, args: &[&str]) {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl program (these tests make X.509 v1 certificates with it)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
        read_pem_certs("test", path).expect("PEM certificates")
    }

    fn pem_key(path: &Path) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_file(path).expect("PEM key")
    }

    /// A server with this chain and key, on TLS 1.3 or on TLS 1.2 only
    /// (`with_single_cert` would refuse a v1 certificate: it parses it).
    fn chain_config(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        tls12: bool,
    ) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider
            .key_provider
            .load_private_key(key)
            .expect("server key");
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                rustls::sign::CertifiedKey::new(chain, signing),
            )))
    }

    /// A CA as the docs make one, in `dir`: `<name>.crt`, `<name>.key`.
    fn docs_root(dir: &Path, name: &str) {
        let (csr, key, crt) = (
            format!("{name}.csr"),
            format!("{name}.key"),
            format!("{name}.crt"),
        );
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-nodes",
                "-text",
                "-out",
                &csr,
                "-keyout",
                &key,
                "-subj",
                "/CN=root.yourdomain.com",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-text",
                "-days",
                "3650",
                "-extfile",
                &openssl_cnf(),
                "-extensions",
                "v3_ca",
                "-signkey",
                &key,
                "-out",
                &crt,
            ],
        );
    }

    /// The default OpenSSL configuration file the docs' `-extfile` names.
    fn openssl_cnf() -> String {
        let debian = Path::new("/etc/ssl/openssl.cnf");
        if debian.exists() {
            return text(debian).to_owned();
        }
        let output = std::process::Command::new("openssl")
            .args(["version", "-d"])
            .output()
            .expect("openssl version -d");
        let line = String::from_utf8_lossy(&output.stdout).into_owned();
        let dir = line
            .trim()
            .trim_start_matches("OPENSSLDIR: ")
            .trim_matches('"')
            .to_owned();
        format!("{dir}/openssl.cnf")
    }

    /// `<name>.crt` for `cn`, signed by `<ca>.crt` the docs' way (`openssl
    /// x509 -req`, no extensions: X.509 version 1 with OpenSSL 3.0) plus
    /// `extra` arguments.
    fn docs_leaf(dir: &Path, ca: &str, name: &str, cn: &str, extra: &[&str]) {
        let (csr, key, crt) = (
            format!("{name}.csr"),
            format!("{name}.key"),
            format!("{name}.crt"),
        );
        let subject = format!("/CN={cn}");
        openssl(
            dir,
            &[
                "req", "-new", "-nodes", "-text", "-out", &csr, "-keyout", &key, "-subj", &subject,
            ],
        );
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-text",
            "-days",
            "365",
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
        ];
        args.extend_from_slice(extra);
        openssl(dir, &args);
    }

    fn version_of(der: &CertificateDer<'_>) -> u32 {
        server_cert::parse(der).expect("parse").version().0 + 1
    }

    #[tokio::test]
    async fn an_x509_v1_server_certificate_is_verified_against_its_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        docs_root(dir.path(), "root");
        docs_leaf(dir.path(), "root", "server", "localhost", &[]);
        let leaf = pem_certs(&dir.path().join("server.crt"));
        assert_eq!(version_of(&leaf[0]), 1, "openssl made a v3 certificate");
        let key = || pem_key(&dir.path().join("server.key"));
        let root = dir.path().join("root.crt");

        for tls12 in [false, true] {
            let server = || chain_config(leaf.clone(), key(), tls12);
            for (mode, host) in [
                (SslMode::VerifyFull, "localhost"),
                (SslMode::VerifyCa, "db.example.com"),
                (SslMode::Require, "db.example.com"),
            ] {
                let opts = options(mode, Some(text(&root)));
                assert_got_through(&connect_through_postgres(server(), host, &opts).await);
            }
            // Encryption only: the handshake is signed by the v1 key.
            let opts = options(SslMode::Require, None);
            assert_got_through(&connect_through_postgres(server(), "localhost", &opts).await);

            let opts = options(SslMode::VerifyFull, Some(text(&root)));
            let error = connect_through_postgres(server(), "db.example.com", &opts).await;
            let sentence = describe_tls_failure(&error, &opts).expect("described");
            assert!(sentence.ends_with("; it names CN=localhost"), "{sentence}");
        }

        // The docs' root made again: same name, another key.
        let again = tempfile::tempdir().expect("tempdir");
        docs_root(again.path(), "root");
        let other_root = again.path().join("root.crt");
        let opts = options(SslMode::VerifyFull, Some(text(&other_root)));
        let error =
            connect_through_postgres(chain_config(leaf.clone(), key(), false), "localhost", &opts)
                .await;
        assert_eq!(certificate_error(&error), CertificateError::BadSignature);

        // An unrelated CA.
        let setup = Setup::new();
        let unrelated = setup.ca_file();
        let opts = options(SslMode::VerifyCa, Some(text(&unrelated)));
        let error =
            connect_through_postgres(chain_config(leaf.clone(), key(), false), "localhost", &opts)
                .await;
        assert_eq!(certificate_error(&error), CertificateError::UnknownIssuer);
    }

    #[tokio::test]
    async fn a_v1_chain_is_held_to_webpkis_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |name: &str| dir.path().join(name);
        docs_root(dir.path(), "root");
        let root = at("root.crt");
        let opts = options(SslMode::VerifyFull, Some(text(&root)));
        let served = |names: &[&str], key: &str| {
            let chain = names
                .iter()
                .flat_map(|name| pem_certs(&at(name)))
                .collect::<Vec<_>>();
            chain_config(chain, pem_key(&at(key)), false)
        };

        // Through the docs' intermediate (v3, CA:TRUE), sent by the server.
        docs_leaf(
            dir.path(),
            "root",
            "intermediate",
            "intermediate.yourdomain.com",
            &["-extfile", &openssl_cnf(), "-extensions", "v3_ca"],
        );
        docs_leaf(dir.path(), "intermediate", "server", "localhost", &[]);
        let server = || served(&["server.crt", "intermediate.crt"], "server.key");
        assert_got_through(&connect_through_postgres(server(), "localhost", &opts).await);
        // Without the intermediate, there is no way to the root.
        let error =
            connect_through_postgres(served(&["server.crt"], "server.key"), "localhost", &opts)
                .await;
        assert_eq!(certificate_error(&error), CertificateError::UnknownIssuer);

        // An "intermediate" that is not a CA.
        fs::write(at("leafish.ext"), "basicConstraints=CA:FALSE\n").expect("ext");
        docs_leaf(
            dir.path(),
            "root",
            "notca",
            "not a CA",
            &["-extfile", "leafish.ext"],
        );
        docs_leaf(dir.path(), "notca", "under", "localhost", &[]);
        let error = connect_through_postgres(
            served(&["under.crt", "notca.crt"], "under.key"),
            "localhost",
            &opts,
        )
        .await;
        assert_eq!(
            server_cert_error(&error),
            ServerCertError::NotACa {
                subject: "CN=not a CA".to_string(),
                why: "no basicConstraints CA:TRUE"
            }
        );

        // SHA-1, which rustls accepts nowhere.
        docs_leaf(dir.path(), "root", "sha1", "localhost", &["-sha1"]);
        let error =
            connect_through_postgres(served(&["sha1.crt"], "sha1.key"), "localhost", &opts).await;
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(
            sentence.starts_with(
                "the certificate CN=localhost is signed with sha1WithRSAEncryption, which this \
                 client does not accept"
            ),
            "{sentence}"
        );

        // Expired: `openssl ca` with dates of its own, still version 1.
        fs::write(at("index.txt"), "").expect("index");
        fs::write(at("serial"), "01\n").expect("serial");
        fs::write(
            at("ca.cnf"),
            "[ca]\ndefault_ca = old\n[old]\ndatabase = index.txt\nnew_certs_dir = .\n\
             serial = serial\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n",
        )
        .expect("ca.cnf");
        openssl(
            dir.path(),
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-cert",
                "root.crt",
                "-keyfile",
                "root.key",
                "-in",
                "server.csr",
                "-startdate",
                "20000101000000Z",
                "-enddate",
                "20010101000000Z",
                "-out",
                "old.crt",
            ],
        );
        let old = pem_certs(&at("old.crt"));
        assert_eq!(version_of(&old[0]), 1);
        let error = connect_through_postgres(
            chain_config(old, pem_key(&at("server.key")), false),
            "localhost",
            &opts,
        )
        .await;
        let sentence = describe_tls_failure(&error, &opts).expect("described");
        assert!(
            sentence.starts_with("the server's certificate expired at 2001-01-01 00:00:00 UTC"),
            "{sentence}"
        );
    }

    #[tokio::test]
    async fn a_server_without_the_key_of_its_certificate_is_named() {
        let setup = Setup::new();
        // The docs' self-signed certificate, pinned, served with another key.
        let pinned = self_signed("localhost", |_| {});
        let root = write(setup.dir.path(), "server.crt", pinned.pem.as_bytes(), 0o644);
        let stranger = KeyPair::generate().expect("key");
        // A version 1 certificate, served with the key of another.
        let dir = tempfile::tempdir().expect("tempdir");
        docs_root(dir.path(), "root");
        docs_leaf(dir.path(), "root", "server", "localhost", &[]);
        docs_leaf(dir.path(), "root", "other", "localhost", &[]);
        let v1 = pem_certs(&dir.path().join("server.crt"));
        let v1_root = dir.path().join("root.crt");
        let cases = [
            (&root, vec![pinned.der.clone()], pkcs8(&stranger)),
            (&v1_root, v1, pem_key(&dir.path().join("other.key"))),
            // A key of another kind (RSA for a P-256 certificate).
            (
                &root,
                vec![pinned.der.clone()],
                pem_key(&dir.path().join("other.key")),
            ),
        ];
        for (root, chain, key) in cases {
            for tls12 in [false, true] {
                for opts in [
                    options(SslMode::VerifyFull, Some(text(root))),
                    options(SslMode::Require, None),
                ] {
                    let server = chain_config(chain.clone(), key.clone_key(), tls12);
                    let error = connect_through_postgres(server, "localhost", &opts).await;
                    assert_eq!(
                        server_cert_error(&error),
                        ServerCertError::HandshakeSignature
                    );
                    assert_eq!(
                        describe_tls_failure(&error, &opts).expect("described"),
                        "the server does not hold the private key of the certificate it \
                         presented (its TLS handshake signature does not verify with the \
                         certificate's key)"
                    );
                }
            }
        }
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
