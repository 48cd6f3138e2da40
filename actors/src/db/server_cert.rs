//! The server certificates libpq accepts and rustls' webpki does not, what
//! OpenSSL refuses and webpki accepts, and libpq's host-name rules: what
//! `db::tls`'s verifier calls once a root certificate file is in play.
//!
//! PostgreSQL's own documentation ("Creating Certificates", in the "Secure
//! TCP/IP Connections with SSL" section) makes two kinds of certificate that
//! psql accepts with `sslmode=verify-full` and webpki refuses:
//!
//! - `openssl req -new -x509 … -subj "/CN=dbhost"`: a self-signed
//!   certificate marked CA:TRUE, used as the server's own and given to the
//!   client as `sslrootcert`. OpenSSL finds the server's certificate among
//!   the trusted ones and stops there; webpki refuses any CA certificate as a
//!   server's. Here a server certificate that is byte for byte one of the
//!   `sslrootcert` certificates, and self-issued, is *pinned*: trusted as its
//!   own anchor, CA flag or not. Its validity period, its extended key usage
//!   and its critical extensions are still checked; its self-signature is
//!   not (OpenSSL does not check a trust anchor's either: the file is the
//!   trust). A certificate that is in the file but not self-issued is not
//!   pinned, as OpenSSL without `X509_V_FLAG_PARTIAL_CHAIN` (libpq's case)
//!   does not stop at it either. A self-signed server certificate that is
//!   *not* byte for byte in the file is refused before any chain is looked
//!   for, even when a certificate of the file has its name and key (one made
//!   again, say): OpenSSL wants "an exact match to avoid possible
//!   impersonation via key substitution" (`build_chain`), and takes for
//!   self-signed what it flags `EXFLAG_SS` ([`openssl_self_signed`]).
//! - `openssl x509 -req -CA root.crt …` (OpenSSL 3.0 and older, without
//!   `-extfile`): an X.509 **version 1** certificate, which webpki cannot
//!   parse at all. Such a chain is verified here, with x509-parser for the
//!   parsing and ring (through x509-parser's `verify`) for the signatures:
//!   each signature up to a certificate of `sslrootcert`, through the
//!   intermediates the server sent (the docs' third recipe), the same
//!   signature algorithms as rustls' ring provider accepts (no SHA-1, RSA of
//!   2048 bits or more), the validity period of every certificate, and of
//!   every intermediate what webpki checks: version 3, basicConstraints
//!   CA:TRUE, its pathLenConstraint, an extended key usage that allows
//!   serverAuth when present, no critical extension it does not know; and,
//!   stricter than webpki, a keyUsage that allows keyCertSign when present.
//!   Name constraints on a CA above a v1 certificate are refused with a
//!   sentence rather than half checked.
//!
//! Not every certificate of `sslrootcert` may sign others: only those
//! OpenSSL's `X509_check_ca` accepts ([`may_sign_certificates`]) become
//! webpki's trust anchors and the roots of version 1 chains. The others (a
//! server's own self-signed certificate marked CA:FALSE, say) are only
//! pinned, so that one server's key cannot vouch for another host when one
//! file lists several servers' certificates. And of the root that ends a
//! chain, what OpenSSL checks and webpki does not (webpki reads only a trust
//! anchor's name, key and name constraints): its validity period, its
//! pathLenConstraint (counting the CAs below it that are not self-issued)
//! and its extended key usage; for version 3 chains through webpki's own
//! path building (`EndEntityCert::verify_for_usage`, whose `verify_path`
//! hook sees each candidate path's anchor), so that another path is tried
//! when one root is refused, as webpki tries them.
//!
//! Version 3 chains are otherwise verified by webpki exactly as rustls'
//! `verify_server_cert_signed_by_trust_anchor` verifies them, and its
//! errors are rustls' own.
//!
//! `verify-full` then checks the host name as libpq does
//! (`pgtls_verify_peer_name_matches_certificate_guts`): the subjectAltName
//! entries (dNSName by name, iPAddress by address); the Common Name only when
//! no subjectAltName entry of the host's own kind (DNS or IP) exists; names
//! compared without regard to ASCII case, and a leading `*.` matching one
//! label. Stricter than libpq, on purpose: a wildcard needs at least two
//! labels after `*.` (`*.com` matches nothing), and never matches a host
//! that is an IP address (or digits and dots, which libpq reads as one).
//!
//! Handshake signatures by a v1 certificate's key are verified from its
//! SubjectPublicKeyInfo with webpki's raw-key verification, since rustls'
//! own functions parse the certificate first.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, PeerMisbehaved, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    Oid, OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_CRL_DISTRIBUTION_POINTS,
    OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Version};

/// webpki's limit on intermediates between the server's certificate and a
/// root.
const MAX_SUB_CA_COUNT: usize = 6;

/// Why a server certificate was refused, where rustls has no variant that
/// says it. Carried inside `CertificateError::Other`, and turned into the
/// operator's sentence by `tls::describe_tls_failure`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerCertError {
    /// Self-signed (its own key verifies it), and not one of the root
    /// certificates.
    #[error(
        "the server's certificate ({subject}) is self-signed and is not itself in sslrootcert"
    )]
    SelfSignedNotTrusted { subject: String },
    /// Its issuer is its own name and nothing says another key signed it,
    /// so OpenSSL takes it for self-signed; but its own key does not verify
    /// it. Not one of the root certificates.
    #[error(
        "the server's certificate ({subject}) names itself as its issuer, without an authority \
         key identifier naming another key, and is not itself in sslrootcert: OpenSSL (libpq) \
         takes such a certificate for self-signed and trusts only that very certificate"
    )]
    SelfIssuedNotTrusted { subject: String },
    /// CA:TRUE, not self-issued: webpki refuses it whoever signed it.
    #[error(
        "the server's certificate ({subject}) is a CA certificate (basicConstraints CA:TRUE) \
         signed by {issuer}; rustls does not accept a CA certificate as a server's own unless \
         that very certificate is self-signed and in sslrootcert: reissue it without CA:TRUE"
    )]
    CaAsServerCertificate { subject: String, issuer: String },
    /// An intermediate of a v1 server certificate's chain is not a CA.
    #[error(
        "the certificate {subject} in the server's chain signs other certificates but is not a \
         CA certificate ({why})"
    )]
    NotACa { subject: String, why: &'static str },
    /// A certificate of the root file signed the chain, but is not one that
    /// may sign others (OpenSSL's `X509_check_ca`).
    #[error(
        "the server's chain is signed by {subject}, which is in sslrootcert but is not a CA \
         certificate ({why}): a certificate of sslrootcert that is not a CA is trusted only as \
         the server's own certificate, never as the issuer of another"
    )]
    RootNotACa { subject: String, why: &'static str },
    /// A CA (intermediate or root) with more CAs below it than its
    /// pathLenConstraint allows.
    #[error(
        "the CA certificate {subject} has more CA certificates below it in the server's chain \
         than its pathLenConstraint allows"
    )]
    PathLenExceeded { subject: String },
    /// A CA (intermediate or root) whose extended key usage lacks
    /// serverAuth.
    #[error(
        "the CA certificate {subject} is not for TLS servers (its extended key usage lacks \
         serverAuth), so it cannot vouch for the server's certificate"
    )]
    IssuerPurpose { subject: String },
    /// A CA (intermediate or root) past its notAfter.
    #[error(
        "the CA certificate {subject} expired at {not_after}: the server's chain or sslrootcert \
         needs a renewed one"
    )]
    CaExpired { subject: String, not_after: String },
    /// A CA (intermediate or root) before its notBefore.
    #[error(
        "the CA certificate {subject} is not valid before {not_before}: check the clocks of this \
         host and of the server"
    )]
    CaNotValidYet { subject: String, not_before: String },
    /// A CA of a v1 server certificate's chain has name constraints.
    #[error(
        "the CA certificate {subject} has name constraints, which this client does not check for \
         an X.509 version 1 server certificate: reissue the server certificate as version 3 \
         with a subjectAltName"
    )]
    NameConstraints { subject: String },
    /// Signed with an algorithm rustls' provider does not accept.
    #[error(
        "the certificate {subject} is signed with {algorithm}, which this client does not accept \
         (SHA-256 or stronger with RSA of 2048 bits or more, ECDSA P-256/P-384, or Ed25519)"
    )]
    UnsupportedSignature { subject: String, algorithm: String },
    /// A certificate of the chain (the server's or a CA's) that x509-parser
    /// read but that breaks a rule of the format.
    #[error("the certificate {subject} in the server's chain is malformed ({why})")]
    Malformed { subject: String, why: String },
    /// The TLS handshake's signature does not verify with the key of the
    /// certificate the server presented.
    #[error(
        "the server does not hold the private key of the certificate it presented (its TLS \
         handshake signature does not verify with the certificate's key)"
    )]
    HandshakeSignature,
    /// libpq: "SSL certificate's name contains embedded null".
    #[error("the server's certificate has a name with an embedded NUL byte")]
    NameWithNul,
    /// libpq: "certificate contains IP address with invalid length".
    #[error("the server's certificate has an IP address of {length} bytes (not 4 or 16)")]
    IpAddressLength { length: usize },
}

impl From<ServerCertError> for rustls::Error {
    fn from(error: ServerCertError) -> Self {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
    }
}

/// A certificate of the root file that cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate {number} {why}")]
pub struct UnusableRoot {
    /// 1 for the file's first certificate.
    pub number: usize,
    pub why: String,
}

/// The root certificates: every one, for pinning; and those that may sign
/// others, as webpki's trust anchors and as the roots of version 1 chains.
#[derive(Debug)]
pub struct Trust {
    /// webpki's trust anchors: the certificates of `cas`.
    pub store: Arc<RootCertStore>,
    /// The certificates OpenSSL lets sign others ([`may_sign_certificates`]).
    cas: Vec<CertificateDer<'static>>,
    /// Every certificate, CA or not: a self-issued server certificate that
    /// is one of these, byte for byte, is pinned.
    pins: Vec<CertificateDer<'static>>,
}

impl Trust {
    /// The certificates of `sslrootcert`: each must be readable, and each
    /// that may sign others must be one webpki takes as an anchor.
    pub fn from_file(certs: Vec<CertificateDer<'static>>) -> Result<Trust, UnusableRoot> {
        let (trust, mut unusable) = Trust::build(certs);
        match unusable.is_empty() {
            true => Ok(trust),
            false => Err(unusable.swap_remove(0)),
        }
    }

    /// The platform's roots (`sslrootcert=system`): those that cannot be
    /// read or used are left out, as rustls' `add_parsable_certificates`
    /// leaves them out.
    pub fn from_system(certs: Vec<CertificateDer<'static>>) -> Trust {
        Trust::build(certs).0
    }

    /// The trust, and the certificates that could not be used, in order.
    fn build(certs: Vec<CertificateDer<'static>>) -> (Trust, Vec<UnusableRoot>) {
        let mut store = RootCertStore::empty();
        let mut cas = Vec::new();
        let mut unusable = Vec::new();
        for (index, der) in certs.iter().enumerate() {
            let why = match parse(der) {
                Err(_) => Some("cannot be read as an X.509 certificate".to_string()),
                Ok(cert) if may_sign_certificates(&cert).is_err() => None,
                Ok(_) => match store.add(der.clone()) {
                    Ok(()) => {
                        cas.push(der.clone());
                        None
                    }
                    Err(error) => Some(format!("is not a usable CA: {error}")),
                },
            };
            if let Some(why) = why {
                unusable.push(UnusableRoot {
                    number: index + 1,
                    why,
                });
            }
        }
        let trust = Trust {
            store: Arc::new(store),
            cas,
            pins: certs,
        };
        (trust, unusable)
    }

    /// How many certificates may sign others.
    pub fn ca_count(&self) -> usize {
        self.cas.len()
    }

    /// Whether the server's certificate is itself one of the roots, and
    /// self-issued.
    fn pins(&self, end_entity: &CertificateDer<'_>, leaf: &X509Certificate<'_>) -> bool {
        self.pins
            .iter()
            .any(|root| root.as_ref() == end_entity.as_ref())
            && self_issued(leaf)
    }

    /// What OpenSSL checks of the trust anchor that ends a path webpki
    /// built, and webpki does not ([`check_root`]). More than one
    /// certificate of the file may have the anchor's name and key (a root
    /// renewed with the same key): one that passes is enough.
    fn check_anchor(
        &self,
        path: &webpki::VerifiedPath<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let anchor = path.anchor();
        let below = path
            .intermediate_certificates()
            .filter(|ca| ca.subject() != ca.issuer())
            .count();
        let mut refusal = None;
        for der in &self.cas {
            let same = webpki::anchor_from_trusted_cert(der).is_ok_and(|candidate| {
                candidate.subject.as_ref() == anchor.subject.as_ref()
                    && candidate.subject_public_key_info.as_ref()
                        == anchor.subject_public_key_info.as_ref()
            });
            let Some(root) = same.then(|| parse(der).ok()).flatten() else {
                continue;
            };
            match check_root(&root, now, below) {
                Ok(()) => return Ok(()),
                Err(error) => refusal = Some(error),
            }
        }
        // The store holds only certificates of `cas`: no match cannot
        // happen, and is not trusted.
        Err(refusal.unwrap_or_else(|| CertificateError::UnknownIssuer.into()))
    }

    /// A certificate of the file that signed `cert` but may not sign
    /// (which is why no chain was found): the root and why it is not a CA.
    fn non_ca_signer(&self, cert: &X509Certificate<'_>) -> Option<ServerCertError> {
        self.pins.iter().find_map(|der| {
            let root = parse(der).ok()?;
            let why = may_sign_certificates(&root).err()?;
            (root.subject().as_raw() == cert.issuer().as_raw()
                && verify_signed_by(cert, root.public_key()).is_ok())
            .then(|| ServerCertError::RootNotACa {
                subject: root.subject().to_string(),
                why,
            })
        })
    }
}

/// The certificate, parsed; trailing bytes or a bad encoding are
/// `BadEncoding`, as webpki says it.
pub fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, rustls::Error> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(CertificateError::BadEncoding.into()),
    }
}

fn self_issued(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
}

fn is_v3(cert: &X509Certificate<'_>) -> bool {
    cert.version() == X509Version::V3
}

/// The kind of key a signature algorithm or a public key is of, as
/// OpenSSL's `check_sig_alg_match` compares them (by dotted OID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    RsaPss,
    Ec,
    Ed25519,
}

fn signature_key_kind(algorithm: &Oid<'_>) -> Option<KeyKind> {
    let oid = algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.113549.1.1.10" => Some(KeyKind::RsaPss),
        // sha1/sha224/sha256/sha384/sha512/md5 WithRSAEncryption.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.113549.1.1.12"
        | "1.2.840.113549.1.1.13"
        | "1.2.840.113549.1.1.14"
        | "1.3.14.3.2.29" => Some(KeyKind::Rsa),
        "1.3.101.112" => Some(KeyKind::Ed25519),
        _ if oid.starts_with("1.2.840.10045.4.") => Some(KeyKind::Ec),
        _ => None,
    }
}

fn public_key_kind(key: &SubjectPublicKeyInfo<'_>) -> Option<KeyKind> {
    match key.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => Some(KeyKind::Rsa),
        "1.2.840.113549.1.1.10" => Some(KeyKind::RsaPss),
        "1.2.840.10045.2.1" => Some(KeyKind::Ec),
        "1.3.101.112" => Some(KeyKind::Ed25519),
        _ => None,
    }
}

/// OpenSSL's idea of a self-signed certificate (`EXFLAG_SS`,
/// `ossl_x509v3_cache_extensions`): its issuer is its own name, its
/// authority key identifier (if any) names neither another key identifier
/// (when it has one of its own) nor another serial number, and it is signed
/// with an algorithm of its own key's kind. Its signature is not looked at,
/// as OpenSSL does not look at it to decide. (OpenSSL also compares an
/// authority key identifier's issuer name; that form is not read here.)
fn openssl_self_signed(cert: &X509Certificate<'_>) -> bool {
    if !self_issued(cert) {
        return false;
    }
    let mut authority = None;
    let mut own_key_id = None;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(akid) => authority = Some(akid),
            ParsedExtension::SubjectKeyIdentifier(skid) => own_key_id = Some(skid.0),
            _ => {}
        }
    }
    if let Some(akid) = authority {
        let other_key = matches!(
            (&akid.key_identifier, own_key_id),
            (Some(key_id), Some(own)) if key_id.0 != own
        );
        let other_serial = akid
            .authority_cert_serial
            .is_some_and(|serial| serial != cert.raw_serial());
        if other_key || other_serial {
            return false;
        }
    }
    match (
        signature_key_kind(&cert.signature_algorithm.algorithm),
        public_key_kind(cert.public_key()),
    ) {
        (Some(KeyKind::RsaPss), Some(KeyKind::Rsa | KeyKind::RsaPss)) => true,
        (Some(signed), Some(key)) => signed == key,
        _ => false,
    }
}

/// OpenSSL's `X509_check_ca`, for a certificate of the root file: whether
/// it may sign other certificates, or why not. A keyUsage, when present,
/// must allow keyCertSign; then basicConstraints CA:TRUE, or, without
/// basicConstraints, a version 1 self-signed certificate or a keyUsage
/// (OpenSSL's Netscape certificate types are not read: such a root is
/// refused).
fn may_sign_certificates(cert: &X509Certificate<'_>) -> Result<(), &'static str> {
    let key_usage = cert
        .key_usage()
        .map_err(|_| "its keyUsage cannot be read")?;
    if key_usage
        .as_ref()
        .is_some_and(|usage| !usage.value.key_cert_sign())
    {
        return Err("its keyUsage lacks keyCertSign");
    }
    match cert
        .basic_constraints()
        .map_err(|_| "its basicConstraints cannot be read")?
    {
        Some(constraints) if constraints.value.ca => Ok(()),
        Some(_) => Err("basicConstraints CA:FALSE"),
        None if cert.version() == X509Version::V1 && openssl_self_signed(cert) => Ok(()),
        None if key_usage.is_some() => Ok(()),
        None => Err("no basicConstraints CA:TRUE, and no keyUsage with keyCertSign"),
    }
}

/// The chain of the server's certificate `end_entity` up to `trust`:
/// pinned, version 1, or webpki's. Returns the certificate as x509-parser
/// read it, for the host-name check; `None` when x509-parser cannot read
/// it, and then webpki alone judged the chain (as before this module), and
/// [`check_host`] uses webpki's rules.
pub fn verify_chain<'a>(
    end_entity: &'a CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    trust: &Trust,
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<Option<X509Certificate<'a>>, rustls::Error> {
    let Ok(leaf) = parse(end_entity) else {
        verify_by_webpki(end_entity, intermediates, trust, now, algorithms)?;
        return Ok(None);
    };
    if trust.pins(end_entity, &leaf) {
        check_validity(&leaf, now)?;
        check_extensions(&leaf)?;
        check_server_purpose(&leaf)?;
        return Ok(Some(leaf));
    }
    if openssl_self_signed(&leaf) {
        let subject = leaf.subject().to_string();
        let error = if leaf.verify_signature(Some(leaf.public_key())).is_ok() {
            ServerCertError::SelfSignedNotTrusted { subject }
        } else {
            ServerCertError::SelfIssuedNotTrusted { subject }
        };
        return Err(error.into());
    }
    let verified = if is_v3(&leaf) {
        verify_by_webpki(end_entity, intermediates, trust, now, algorithms)
    } else {
        verify_legacy_chain(&leaf, intermediates, trust, now)
    };
    verified.map_err(|error| explain_refusal(error, &leaf, intermediates, trust, now))?;
    Ok(Some(leaf))
}

/// webpki's path building, as rustls' `verify_server_cert_signed_by_trust_
/// anchor` runs it, with the anchor of each path found then held to
/// [`Trust::check_anchor`]; a refused anchor makes webpki try the next
/// path. When none is left, a refused anchor is the reason given; else
/// rustls' own function is asked, for its error (webpki's, in rustls'
/// terms).
fn verify_by_webpki(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    trust: &Trust,
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(), rustls::Error> {
    if let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) {
        let anchor_refusal = RefCell::new(None);
        let check_anchor = |path: &webpki::VerifiedPath<'_>| {
            trust.check_anchor(path, now).map_err(|refusal| {
                *anchor_refusal.borrow_mut() = Some(refusal);
                webpki::Error::UnknownIssuer
            })
        };
        let verified = cert.verify_for_usage(
            algorithms.all,
            &trust.store.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&check_anchor),
        );
        if verified.is_ok() {
            return Ok(());
        }
        if let Some(refusal) = anchor_refusal.into_inner() {
            return Err(refusal);
        }
    }
    let parsed = ParsedCertificate::try_from(end_entity)?;
    verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &trust.store,
        intermediates,
        now,
        algorithms.all,
    )?;
    // The same search without the anchor's check found a path: it can only
    // have been refused for its anchor, which was recorded. Not trusted.
    Err(CertificateError::UnknownIssuer.into())
}

/// Refusals that have a better sentence: a CA certificate as a server's; a
/// chain signed by a root that may not sign; a CA (not the server's
/// certificate) for other purposes, or out of its dates, where webpki does
/// not say which certificate it was.
fn explain_refusal(
    error: rustls::Error,
    leaf: &X509Certificate<'_>,
    intermediates: &[CertificateDer<'_>],
    trust: &Trust,
    now: UnixTime,
) -> rustls::Error {
    let rustls::Error::InvalidCertificate(certificate_error) = &error else {
        return error;
    };
    let cas = || {
        intermediates
            .iter()
            .filter_map(|der| parse(der).ok())
            .collect::<Vec<_>>()
    };
    match certificate_error {
        CertificateError::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            ServerCertError::CaAsServerCertificate {
                subject: leaf.subject().to_string(),
                issuer: leaf.issuer().to_string(),
            }
            .into()
        }
        CertificateError::UnknownIssuer => std::iter::once(trust.non_ca_signer(leaf))
            .chain(cas().iter().map(|ca| trust.non_ca_signer(ca)))
            .flatten()
            .next()
            .map_or(error, rustls::Error::from),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
            if check_server_purpose(leaf).is_ok() =>
        {
            cas()
                .iter()
                .find_map(|ca| check_issuer_purpose(ca).err())
                .unwrap_or(error)
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. }
            if check_validity(leaf, now).is_ok() =>
        {
            cas()
                .iter()
                .find_map(|ca| check_ca_validity(ca, now).err())
                .unwrap_or(error)
        }
        _ => error,
    }
}

fn unix_time(timestamp: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(timestamp).unwrap_or(0)))
}

/// "YYYY-MM-DD HH:MM:SS UTC", without a date crate.
pub fn format_time(time: UnixTime) -> String {
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

/// notBefore ≤ now ≤ notAfter, with rustls' errors (which name the times,
/// and say "the server's certificate"): for the server's own.
fn check_validity(cert: &X509Certificate<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if at < not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: unix_time(not_before),
        }
        .into());
    }
    if at > not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: unix_time(not_after),
        }
        .into());
    }
    Ok(())
}

/// notBefore ≤ now ≤ notAfter for a CA (an intermediate or a root), with a
/// sentence that names it.
fn check_ca_validity(ca: &X509Certificate<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    check_validity(ca, now).map_err(|error| {
        let subject = ca.subject().to_string();
        match error {
            rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext {
                not_before,
                ..
            }) => ServerCertError::CaNotValidYet {
                subject,
                not_before: format_time(not_before),
            }
            .into(),
            rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
                not_after,
                ..
            }) => ServerCertError::CaExpired {
                subject,
                not_after: format_time(not_after),
            }
            .into(),
            other => other,
        }
    })
}

/// The critical extensions webpki understands (the rest, when critical,
/// make it refuse the certificate).
fn understood(oid: &Oid<'_>) -> bool {
    [
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_SUBJECT_ALT_NAME,
        OID_X509_EXT_BASIC_CONSTRAINTS,
        OID_X509_EXT_NAME_CONSTRAINTS,
        OID_X509_EXT_CRL_DISTRIBUTION_POINTS,
        OID_X509_EXT_EXTENDED_KEY_USAGE,
    ]
    .iter()
    .any(|known| known == oid)
}

/// An OID's short name, when x509-parser's registry or this list knows it
/// (the algorithms the registry lacks that a refusal names), else dotted.
fn oid_name(oid: &Oid<'_>) -> String {
    let dotted = oid.to_id_string();
    let known = match dotted.as_str() {
        "1.2.840.10045.4.1" => Some("ecdsa-with-SHA1"),
        "1.2.840.10045.4.3.1" => Some("ecdsa-with-SHA224"),
        "1.2.840.10045.4.3.4" => Some("ecdsa-with-SHA512"),
        _ => None,
    };
    known.map(str::to_owned).unwrap_or_else(|| {
        x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
            .map(str::to_owned)
            .unwrap_or(dotted)
    })
}

/// What webpki checks of any certificate's extensions: well formed, none
/// twice, none only in a version 3 certificate, no critical extension it
/// does not know.
fn check_extensions(cert: &X509Certificate<'_>) -> Result<(), rustls::Error> {
    let malformed = |why: String| ServerCertError::Malformed {
        subject: cert.subject().to_string(),
        why,
    };
    if !is_v3(cert) && !cert.extensions().is_empty() {
        return Err(malformed(
            "it has extensions and is not an X.509 version 3 certificate".to_string(),
        )
        .into());
    }
    cert.extensions_map()
        .map_err(|_| malformed("an extension appears twice".to_string()))?;
    for extension in cert.extensions() {
        if let ParsedExtension::ParseError { .. } = extension.parsed_extension() {
            let name = oid_name(&extension.oid);
            return Err(malformed(format!("its {name} extension cannot be read")).into());
        }
        if extension.critical && !understood(&extension.oid) {
            return Err(CertificateError::UnhandledCriticalExtension.into());
        }
    }
    Ok(())
}

/// The server's own certificate: an extended key usage, when present, that
/// allows serverAuth (rustls' error, which says "the server's certificate").
fn check_server_purpose(cert: &X509Certificate<'_>) -> Result<(), rustls::Error> {
    match cert.extended_key_usage() {
        Ok(Some(usage)) if !usage.value.server_auth => Err(CertificateError::InvalidPurpose.into()),
        Ok(_) => Ok(()),
        Err(_) => Err(ServerCertError::Malformed {
            subject: cert.subject().to_string(),
            why: "its extendedKeyUsage cannot be read".to_string(),
        }
        .into()),
    }
}

/// A CA (an intermediate or a root): an extended key usage, when present,
/// that allows serverAuth, with a sentence that names it.
fn check_issuer_purpose(ca: &X509Certificate<'_>) -> Result<(), rustls::Error> {
    check_server_purpose(ca).map_err(|error| match error {
        rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose) => {
            ServerCertError::IssuerPurpose {
                subject: ca.subject().to_string(),
            }
            .into()
        }
        other => other,
    })
}

/// A pathLenConstraint that `below` CAs exceed.
fn check_path_length(ca: &X509Certificate<'_>, below: usize) -> Result<(), rustls::Error> {
    let limit = match ca.basic_constraints() {
        Ok(Some(constraints)) => constraints.value.path_len_constraint,
        _ => None,
    };
    if limit.is_some_and(|limit| usize::try_from(limit).is_ok_and(|limit| below > limit)) {
        return Err(ServerCertError::PathLenExceeded {
            subject: ca.subject().to_string(),
        }
        .into());
    }
    Ok(())
}

/// An intermediate `sub_ca_count` CAs above the server's certificate.
fn check_issuer(
    ca: &X509Certificate<'_>,
    now: UnixTime,
    sub_ca_count: usize,
) -> Result<(), rustls::Error> {
    let not_a_ca = |why| ServerCertError::NotACa {
        subject: ca.subject().to_string(),
        why,
    };
    if !is_v3(ca) {
        return Err(not_a_ca("it is not an X.509 version 3 certificate").into());
    }
    check_ca_validity(ca, now)?;
    check_extensions(ca)?;
    check_issuer_purpose(ca)?;
    match ca.basic_constraints() {
        Ok(Some(constraints)) if constraints.value.ca => check_path_length(ca, sub_ca_count)?,
        _ => return Err(not_a_ca("no basicConstraints CA:TRUE").into()),
    }
    if let Ok(Some(usage)) = ca.key_usage() {
        if !usage.value.key_cert_sign() {
            return Err(not_a_ca("its keyUsage lacks keyCertSign").into());
        }
    }
    check_no_name_constraints(ca)
}

/// What OpenSSL checks of a trust anchor and webpki does not: its validity
/// period, its pathLenConstraint against the `below` CAs under it that are
/// not self-issued (OpenSSL's count), and its extended key usage.
fn check_root(
    root: &X509Certificate<'_>,
    now: UnixTime,
    below: usize,
) -> Result<(), rustls::Error> {
    check_ca_validity(root, now)?;
    check_path_length(root, below)?;
    check_issuer_purpose(root)
}

fn check_no_name_constraints(ca: &X509Certificate<'_>) -> Result<(), rustls::Error> {
    match ca.name_constraints() {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(ServerCertError::NameConstraints {
            subject: ca.subject().to_string(),
        }
        .into()),
        Err(_) => Err(ServerCertError::Malformed {
            subject: ca.subject().to_string(),
            why: "its nameConstraints cannot be read".to_string(),
        }
        .into()),
    }
}

/// The signature algorithms of rustls' ring provider, by certificate OID.
fn accepted_signature(oid: &Oid<'_>) -> bool {
    [
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
        OID_PKCS1_RSASSAPSS,
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ED25519,
    ]
    .iter()
    .any(|accepted| accepted == oid)
}

/// `cert`'s signature, by the key `issuer`.
fn verify_signed_by(
    cert: &X509Certificate<'_>,
    issuer: &SubjectPublicKeyInfo<'_>,
) -> Result<(), rustls::Error> {
    // RFC 5280 4.1.1.2: the signed and the unsigned algorithm must agree.
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(ServerCertError::Malformed {
            subject: cert.subject().to_string(),
            why: "its signature algorithm is not the one it signed".to_string(),
        }
        .into());
    }
    let algorithm = &cert.signature_algorithm.algorithm;
    let unsupported = |algorithm: String| ServerCertError::UnsupportedSignature {
        subject: cert.subject().to_string(),
        algorithm,
    };
    if !accepted_signature(algorithm) {
        return Err(unsupported(oid_name(algorithm)).into());
    }
    // ring refuses RSA keys below 2048 bits as a bad signature would be:
    // say which it is.
    if let Ok(PublicKey::RSA(key)) = issuer.parsed() {
        let bits = key.key_size();
        if bits < 2048 {
            let name = oid_name(algorithm);
            return Err(unsupported(format!("{name} by an RSA key of {bits} bits")).into());
        }
    }
    cert.verify_signature(Some(issuer))
        .map_err(|error| match error {
            X509Error::SignatureUnsupportedAlgorithm => unsupported(oid_name(algorithm)).into(),
            _ => CertificateError::BadSignature.into(),
        })
}

/// A version 1 server certificate: its dates, then signatures up to a root,
/// through the intermediates the server sent (each used once, at most
/// [`MAX_SUB_CA_COUNT`]). The first issuer whose name and signature match is
/// taken, roots before intermediates; a root that signed but is refused
/// ([`check_root`], name constraints) does not end the search, and is the
/// reason given when nothing else is found.
fn verify_legacy_chain(
    leaf: &X509Certificate<'_>,
    intermediates: &[CertificateDer<'_>],
    trust: &Trust,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    check_validity(leaf, now)?;
    check_extensions(leaf)?;
    check_server_purpose(leaf)?;
    let roots: Vec<X509Certificate<'_>> =
        trust.cas.iter().filter_map(|der| parse(der).ok()).collect();
    let cas: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .filter_map(|der| parse(der).ok())
        .collect();
    let mut used = vec![false; cas.len()];
    let mut refusal: Option<rustls::Error> = None;
    let mut root_refusal: Option<rustls::Error> = None;
    let mut current = leaf;
    // The CAs so far that are not self-issued: OpenSSL's count for a root's
    // pathLenConstraint.
    let mut below = 0;
    for sub_ca_count in 0..=MAX_SUB_CA_COUNT {
        let issuer_name = current.issuer().as_raw();
        for root in roots.iter().filter(|r| r.subject().as_raw() == issuer_name) {
            match verify_signed_by(current, root.public_key()) {
                Ok(()) => match check_root(root, now, below)
                    .and_then(|()| check_no_name_constraints(root))
                {
                    Ok(()) => return Ok(()),
                    Err(error) => root_refusal = Some(error),
                },
                Err(error) => refusal = Some(error),
            }
        }
        if sub_ca_count == MAX_SUB_CA_COUNT {
            break;
        }
        let mut next = None;
        for (index, ca) in cas.iter().enumerate() {
            if used[index] || ca.subject().as_raw() != issuer_name {
                continue;
            }
            match verify_signed_by(current, ca.public_key()) {
                Ok(()) => {
                    next = Some(index);
                    break;
                }
                Err(error) => refusal = Some(error),
            }
        }
        let Some(index) = next else { break };
        check_issuer(&cas[index], now, sub_ca_count)?;
        used[index] = true;
        current = &cas[index];
        if !self_issued(current) {
            below += 1;
        }
    }
    Err(root_refusal
        .or(refusal)
        .unwrap_or_else(|| CertificateError::UnknownIssuer.into()))
}

/// The host name, as libpq sees it: the text connected to, and its address
/// when it is one. An address is written canonically (`::1`), not as typed
/// (libpq compares a Common Name with the text given, `0:0::1` say).
fn host_text(expected: &ServerName<'_>) -> (String, Option<IpAddr>) {
    match expected {
        ServerName::IpAddress(address) => {
            let address = IpAddr::from(*address);
            (address.to_string(), Some(address))
        }
        other => (other.to_str().into_owned(), None),
    }
}

/// libpq's `wildcard_certificate_match`: `*.` then a suffix, the `*`
/// standing for one label (no dot), ASCII case ignored. Stricter than
/// libpq: the suffix has at least two labels, none empty (`*.com` matches
/// nothing).
fn wildcard_matches(pattern: &[u8], host: &[u8]) -> bool {
    let Some(suffix) = pattern.strip_prefix(b"*.") else {
        return false;
    };
    let labels = suffix.split(|&b| b == b'.');
    if suffix.split(|&b| b == b'.').count() < 2 || labels.clone().any(<[u8]>::is_empty) {
        return false;
    }
    if pattern.len() > host.len() {
        return false;
    }
    let suffix_start = host.len() - pattern.len() + 1;
    if !pattern[1..].eq_ignore_ascii_case(&host[suffix_start..]) {
        return false;
    }
    // The `*` covers no dot: the host's first dot may not come before
    // len(host) - len(pattern) (libpq's bound, which lets a dot sit right
    // ahead of the suffix's own, as in `a..example.com`).
    host.iter()
        .position(|&b| b == b'.')
        .is_none_or(|first_dot| first_dot >= host.len() - pattern.len())
}

/// A host a wildcard never matches: an address, or digits and dots (what
/// libpq's `inet_aton` reads as one, `127.1`).
fn is_address(host: &str, address: Option<IpAddr>) -> bool {
    address.is_some() || host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// libpq's `pq_verify_peer_name_matches_certificate_name`, wildcards only
/// for a host name that is not an address.
fn name_matches(name: &[u8], host: &str, address: Option<IpAddr>) -> Result<bool, ServerCertError> {
    if name.contains(&0) {
        return Err(ServerCertError::NameWithNul);
    }
    Ok(name.eq_ignore_ascii_case(host.as_bytes())
        || (!is_address(host, address) && wildcard_matches(name, host.as_bytes())))
}

/// libpq's `pq_verify_peer_name_matches_certificate_ip`.
fn address_matches(octets: &[u8], host: Option<IpAddr>) -> Result<bool, ServerCertError> {
    match (octets.len(), host) {
        (4, Some(IpAddr::V4(host))) => Ok(octets == host.octets()),
        (16, Some(IpAddr::V6(host))) => Ok(octets == host.octets()),
        (4 | 16, _) => Ok(false),
        (length, _) => Err(ServerCertError::IpAddressLength { length }),
    }
}

fn address_text(octets: &[u8]) -> String {
    match octets.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(octets).unwrap_or_default()).to_string(),
        16 => IpAddr::from(<[u8; 16]>::try_from(octets).unwrap_or_default()).to_string(),
        _ => octets.iter().fold(String::new(), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        }),
    }
}

/// `verify-full`'s host-name check for the certificate [`verify_chain`]
/// returned: by libpq's rules ([`check_host_name`]); by webpki's
/// (subjectAltName only, as rustls checks it) when x509-parser could not
/// read the certificate.
pub fn check_host(
    leaf: Option<&X509Certificate<'_>>,
    end_entity: &CertificateDer<'_>,
    expected: &ServerName<'_>,
) -> Result<(), rustls::Error> {
    match leaf {
        Some(leaf) => check_host_name(leaf, expected),
        None => verify_server_name(&ParsedCertificate::try_from(end_entity)?, expected),
    }
}

/// `verify-full`'s host-name check, by libpq's rules (see the module
/// comment). A mismatch is rustls' `NotValidForNameContext`, with the names
/// looked at: `DNS:…`, `IP:…`, `CN=…`.
pub fn check_host_name(
    cert: &X509Certificate<'_>,
    expected: &ServerName<'_>,
) -> Result<(), rustls::Error> {
    let (host, address) = host_text(expected);
    let mut presented = Vec::new();
    let mut check_common_name = true;
    let alt_names = cert
        .subject_alternative_name()
        .map_err(|_| rustls::Error::from(CertificateError::BadEncoding))?;
    for name in alt_names
        .iter()
        .flat_map(|names| names.value.general_names.iter())
    {
        let matched = match name {
            GeneralName::DNSName(dns) => {
                check_common_name &= address.is_some();
                presented.push(format!("DNS:{dns}"));
                name_matches(dns.as_bytes(), &host, address)?
            }
            GeneralName::IPAddress(octets) => {
                check_common_name &= address.is_none();
                presented.push(format!("IP:{}", address_text(octets)));
                address_matches(octets, address)?
            }
            // A dNSName that is not text (x509-parser keeps its bytes):
            // present, of the DNS kind, and matching nothing printable.
            GeneralName::Invalid(tag, bytes) if tag.0 == 2 => {
                check_common_name &= address.is_some();
                presented.push(format!("DNS:{}", String::from_utf8_lossy(bytes)));
                name_matches(bytes, &host, address)?
            }
            _ => false,
        };
        if matched {
            return Ok(());
        }
    }
    if check_common_name {
        if let Some(common_name) = cert.subject().iter_common_name().next() {
            let bytes = common_name.as_slice();
            presented.push(format!("CN={}", String::from_utf8_lossy(bytes)));
            if name_matches(bytes, &host, address)? {
                return Ok(());
            }
        }
    }
    Err(CertificateError::NotValidForNameContext {
        expected: expected.to_owned(),
        presented,
    }
    .into())
}

/// The SubjectPublicKeyInfo of a certificate rustls' signature functions
/// cannot read (not X.509 version 3), or `None` for any other certificate,
/// or one with trailing bytes, as [`parse`] refuses them (rustls' own
/// functions then verify the handshake signature, or refuse).
pub fn legacy_key<'a>(cert: &'a CertificateDer<'_>) -> Option<SubjectPublicKeyInfoDer<'a>> {
    let parsed = parse(cert).ok()?;
    let raw: &'a [u8] = parsed.tbs_certificate.subject_pki.raw;
    (!is_v3(&parsed)).then(|| SubjectPublicKeyInfoDer::from(raw))
}

/// A handshake signature that does not verify with the presented
/// certificate's key (a bad signature, or one by a key of another kind):
/// the server does not hold that key. Not the chain's fault, so not the
/// chain's sentence.
pub fn handshake_signature(
    verified: Result<HandshakeSignatureValid, rustls::Error>,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verified.map_err(|error| match error {
        rustls::Error::InvalidCertificate(
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. },
        ) => ServerCertError::HandshakeSignature.into(),
        other => other,
    })
}

/// A TLS 1.2 handshake signature by a raw key, as rustls'
/// `verify_tls12_signature` does it by a certificate's: every algorithm the
/// provider maps the scheme to, until one fits the key.
pub fn verify_tls12_signature_with_raw_key(
    message: &[u8],
    spki: &SubjectPublicKeyInfoDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, candidates)| *candidates)
        .ok_or(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
    let key = webpki::RawPublicKeyEntity::try_from(spki)
        .map_err(|_| rustls::Error::from(CertificateError::BadEncoding))?;
    for algorithm in candidates {
        match key.verify_signature(*algorithm, message, dss.signature()) {
            Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
            Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
            Err(_) => return Err(CertificateError::BadSignature.into()),
        }
    }
    Err(CertificateError::BadSignature.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs;
    use std::path::Path;

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
    };
    use rustls_pki_types::pem::PemObject;

    // ---- certificates: version 3 by rcgen, version 1 by openssl ---------

    /// A certificate made for a test, with what it takes to sign with it.
    struct Made {
        der: CertificateDer<'static>,
        pem: String,
        params: CertificateParams,
        key: KeyPair,
    }

    impl Made {
        fn issuer(&self) -> Issuer<'_, &KeyPair> {
            Issuer::from_params(&self.params, &self.key)
        }
    }

    fn named(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
    }

    /// A CA's parameters: CA:TRUE, keyCertSign and cRLSign.
    fn ca_params(cn: &str) -> CertificateParams {
        let mut params = named(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    fn made(params: CertificateParams, key: KeyPair, by: Option<&Made>) -> Made {
        let cert = match by {
            None => params.self_signed(&key),
            Some(issuer) => params.signed_by(&key, &issuer.issuer()),
        }
        .expect("certificate");
        Made {
            der: cert.der().clone(),
            pem: cert.pem(),
            params,
            key,
        }
    }

    fn self_signed(params: CertificateParams) -> Made {
        made(params, KeyPair::generate().expect("key"), None)
    }

    fn signed(params: CertificateParams, by: &Made) -> Made {
        made(params, KeyPair::generate().expect("key"), Some(by))
    }

    fn root(cn: &str) -> Made {
        self_signed(ca_params(cn))
    }

    fn root_with(cn: &str, adjust: impl FnOnce(&mut CertificateParams)) -> Made {
        let mut params = ca_params(cn);
        adjust(&mut params);
        self_signed(params)
    }

    fn sub_ca(cn: &str, by: &Made, adjust: impl FnOnce(&mut CertificateParams)) -> Made {
        let mut params = ca_params(cn);
        params.use_authority_key_identifier_extension = true;
        adjust(&mut params);
        signed(params, by)
    }

    /// A version 3 server certificate for `names`.
    fn server(names: &[&str], by: &Made) -> Made {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "pgfleet test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        signed(params, by)
    }

    /// The openssl program in a directory of its own, for what rcgen cannot
    /// make: X.509 version 1 certificates, as PostgreSQL's docs make them.
    struct OpenSsl {
        dir: tempfile::TempDir,
    }

    impl OpenSsl {
        fn new() -> OpenSsl {
            OpenSsl {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        fn run(&self, args: &[&str]) {
            crate::db::tls::tests::openssl(self.path(), args);
        }

        /// `<name>.key` (P-256, fast to make) and `<name>.csr` for `cn`.
        fn request(&self, name: &str, cn: &str) {
            let (key, csr, subject) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("/CN={cn}"),
            );
            self.run(&[
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject,
            ]);
        }

        /// `made` as `<name>.crt` and `<name>.key`, to sign with.
        fn write_ca(&self, name: &str, made: &Made) {
            fs::write(self.path().join(format!("{name}.crt")), &made.pem).expect("crt");
            fs::write(
                self.path().join(format!("{name}.key")),
                made.key.serialize_pem(),
            )
            .expect("key");
        }

        fn read(&self, name: &str) -> CertificateDer<'static> {
            let der = CertificateDer::from_pem_file(self.path().join(format!("{name}.crt")))
                .expect("PEM certificate");
            assert_eq!(version_of(&der), 1, "openssl made a v3 certificate");
            der
        }

        /// The docs' `openssl x509 -req -CA …`: `<name>.crt`, for `cn`,
        /// version 1, signed by `ca` (made by [`OpenSsl::write_ca`]).
        fn v1_signed(
            &self,
            name: &str,
            cn: &str,
            ca: &Made,
            extra: &[&str],
        ) -> CertificateDer<'static> {
            self.write_ca("ca", ca);
            self.request(name, cn);
            let (csr, crt) = (format!("{name}.csr"), format!("{name}.crt"));
            let mut args = vec![
                "x509",
                "-req",
                "-in",
                &csr,
                "-days",
                "365",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
            ];
            args.extend_from_slice(extra);
            self.run(&args);
            self.read(name)
        }

        /// `openssl x509 -req -signkey`: `<name>.crt`, version 1, signed by
        /// the key of `<key>.key` (made by [`OpenSsl::request`]).
        fn v1_self_signed(&self, name: &str, key: &str, serial: &str) -> CertificateDer<'static> {
            let (csr, signkey, crt) = (
                format!("{key}.csr"),
                format!("{key}.key"),
                format!("{name}.crt"),
            );
            self.run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-days",
                "365",
                "-signkey",
                &signkey,
                "-set_serial",
                serial,
                "-out",
                &crt,
            ]);
            self.read(name)
        }
    }

    fn version_of(der: &CertificateDer<'_>) -> u32 {
        parse(der).expect("parse").version().0 + 1
    }

    // ---- the verification, as the verifier calls it --------------------

    fn algorithms() -> WebPkiSupportedAlgorithms {
        rustls::crypto::ring::default_provider().signature_verification_algorithms
    }

    /// The chain of `leaf` (then `intermediates`) against the root file
    /// `roots`, now.
    fn verify(
        leaf: &CertificateDer<'_>,
        intermediates: &[&CertificateDer<'static>],
        roots: &[&CertificateDer<'static>],
    ) -> Result<(), rustls::Error> {
        let intermediates: Vec<CertificateDer<'static>> =
            intermediates.iter().map(|c| (*c).clone()).collect();
        let certs: Vec<CertificateDer<'static>> = roots.iter().map(|c| (*c).clone()).collect();
        let trust = Trust::from_file(certs).expect("usable roots");
        verify_chain(leaf, &intermediates, &trust, UnixTime::now(), &algorithms()).map(|_| ())
    }

    /// The `ServerCertError` of a refusal.
    fn refusal(result: Result<(), rustls::Error>) -> ServerCertError {
        match result {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => other
                .0
                .downcast_ref::<ServerCertError>()
                .cloned()
                .unwrap_or_else(|| panic!("not a ServerCertError: {other:?}")),
            other => panic!("expected a ServerCertError, got {other:?}"),
        }
    }

    fn certificate_error(result: Result<(), rustls::Error>) -> CertificateError {
        match result {
            Err(rustls::Error::InvalidCertificate(error)) => error,
            other => panic!("expected a certificate error, got {other:?}"),
        }
    }

    // ---- what may sign: OpenSSL's X509_check_ca ------------------------

    #[test]
    fn a_server_certificate_in_sslrootcert_is_pinned_but_signs_nothing() {
        // A server's own self-signed certificate, not a CA, as one of the
        // roots; its key then signs a certificate for another host.
        let mut params = named("db1.example.com");
        params.subject_alt_names = vec![rcgen::SanType::DnsName(
            "db1.example.com".try_into().expect("name"),
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let db1 = self_signed(params);
        let ca = root("pgfleet test CA");
        for roots in [vec![&db1.der], vec![&ca.der, &db1.der]] {
            // Pinned: it is itself the server's certificate.
            verify(&db1.der, &[], &roots).expect("pinned");
            let not_a_ca = ServerCertError::RootNotACa {
                subject: "CN=db1.example.com".to_string(),
                why: "its keyUsage lacks keyCertSign",
            };
            // Version 3 and version 1 certificates it signed: refused.
            let forged = server(&["db2.example.com"], &db1);
            assert_eq!(refusal(verify(&forged.der, &[], &roots)), not_a_ca);
            let openssl = OpenSsl::new();
            let forged = openssl.v1_signed("forged", "db2.example.com", &db1, &[]);
            assert_eq!(refusal(verify(&forged, &[], &roots)), not_a_ca);
        }
    }

    #[test]
    fn only_what_openssl_takes_for_a_ca_signs() {
        // CA:TRUE, but a keyUsage without keyCertSign.
        let no_cert_sign = root_with("no keyCertSign", |p| {
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        });
        let leaf = server(&["localhost"], &no_cert_sign);
        assert_eq!(
            refusal(verify(&leaf.der, &[], &[&no_cert_sign.der])),
            ServerCertError::RootNotACa {
                subject: "CN=no keyCertSign".to_string(),
                why: "its keyUsage lacks keyCertSign",
            }
        );
        // Version 3, neither basicConstraints nor keyUsage.
        let bare = root_with("bare", |p| {
            p.is_ca = IsCa::NoCa;
            p.key_usages = vec![];
        });
        let leaf = server(&["localhost"], &bare);
        assert_eq!(
            refusal(verify(&leaf.der, &[], &[&bare.der])),
            ServerCertError::RootNotACa {
                subject: "CN=bare".to_string(),
                why: "no basicConstraints CA:TRUE, and no keyUsage with keyCertSign",
            }
        );
        // No basicConstraints, but a keyUsage with keyCertSign: a CA.
        let usage_only = root_with("usage only", |p| p.is_ca = IsCa::NoCa);
        let leaf = server(&["localhost"], &usage_only);
        verify(&leaf.der, &[], &[&usage_only.der]).expect("keyCertSign");
        // A version 1 self-signed root: a CA, as in OpenSSL.
        let openssl = OpenSsl::new();
        openssl.request("root", "v1 root");
        let v1_root = openssl.v1_self_signed("root", "root", "1");
        openssl.request("leaf", "localhost");
        openssl.run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-days",
            "365",
            "-CA",
            "root.crt",
            "-CAkey",
            "root.key",
            "-set_serial",
            "2",
            "-out",
            "leaf.crt",
        ]);
        let leaf = openssl.read("leaf");
        verify(&leaf, &[], &[&v1_root]).expect("a v1 root");
    }

    // ---- self-signed and self-issued server certificates -----------------

    #[test]
    fn a_reissued_self_signed_certificate_is_not_pinned() {
        // Version 1: the same request signed twice by its own key.
        let openssl = OpenSsl::new();
        openssl.request("server", "localhost");
        let first = openssl.v1_self_signed("first", "server", "1");
        let second = openssl.v1_self_signed("second", "server", "2");
        verify(&first, &[], &[&first]).expect("pinned");
        let not_pinned = ServerCertError::SelfSignedNotTrusted {
            subject: "CN=localhost".to_string(),
        };
        assert_eq!(refusal(verify(&second, &[], &[&first])), not_pinned);

        // Version 3: the docs' CA:TRUE certificate pinned, another of the
        // same name and key (not a CA) presented.
        let pinned = root("localhost");
        let mut params = named("localhost");
        params.is_ca = IsCa::ExplicitNoCa;
        let again = made(
            params,
            KeyPair::from_pem(&pinned.key.serialize_pem()).expect("same key"),
            None,
        );
        verify(&pinned.der, &[], &[&pinned.der]).expect("pinned");
        assert_eq!(refusal(verify(&again.der, &[], &[&pinned.der])), not_pinned);
    }

    #[test]
    fn a_certificate_from_a_ca_of_its_own_name_is_not_called_self_signed() {
        let ca = root("same name");
        // Its own subject key identifier, and an authority key identifier
        // naming the CA's: OpenSSL looks for the issuer, and so does this.
        let mut params = named("same name");
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = signed(params, &ca);
        verify(&leaf.der, &[], &[&ca.der]).expect("signed by its CA");
        let other = root("another CA");
        assert_eq!(
            certificate_error(verify(&leaf.der, &[], &[&other.der])),
            CertificateError::UnknownIssuer
        );
        // Version 1 (no key identifiers): OpenSSL takes it for self-signed
        // and wants that very certificate in the root file; so does this,
        // without calling it self-signed.
        let openssl = OpenSsl::new();
        let v1 = openssl.v1_signed("leaf", "same name", &ca, &[]);
        assert_eq!(
            refusal(verify(&v1, &[], &[&ca.der])),
            ServerCertError::SelfIssuedNotTrusted {
                subject: "CN=same name".to_string()
            }
        );
    }

    // ---- the root: dates, path length, purpose (as OpenSSL) -------------

    #[test]
    fn the_roots_dates_are_checked() {
        let openssl = OpenSsl::new();
        let expired = root_with("expired root", |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        });
        let gone = ServerCertError::CaExpired {
            subject: "CN=expired root".to_string(),
            not_after: "2001-01-01 00:00:00 UTC".to_string(),
        };
        let v1 = openssl.v1_signed("v1", "localhost", &expired, &[]);
        assert_eq!(refusal(verify(&v1, &[], &[&expired.der])), gone);
        let v3 = server(&["localhost"], &expired);
        assert_eq!(refusal(verify(&v3.der, &[], &[&expired.der])), gone);

        let future = root_with("future root", |p| {
            p.not_before = rcgen::date_time_ymd(2100, 1, 1);
            p.not_after = rcgen::date_time_ymd(2101, 1, 1);
        });
        let v1 = openssl.v1_signed("v1", "localhost", &future, &[]);
        assert!(matches!(
            refusal(verify(&v1, &[], &[&future.der])),
            ServerCertError::CaNotValidYet { .. }
        ));

        // The expired root renewed with the same name and key, beside it in
        // the file: the renewed one ends the chain.
        let renewed = made(
            ca_params("expired root"),
            KeyPair::from_pem(&expired.key.serialize_pem()).expect("same key"),
            None,
        );
        for roots in [[&expired.der, &renewed.der], [&renewed.der, &expired.der]] {
            let v1 = openssl.v1_signed("v1", "localhost", &expired, &[]);
            verify(&v1, &[], &roots).expect("v1, through the renewed root");
            let v3 = server(&["localhost"], &expired);
            verify(&v3.der, &[], &roots).expect("v3, through the renewed root");
        }
    }

    #[test]
    fn the_roots_path_length_is_checked() {
        let openssl = OpenSsl::new();
        // pathlen:0 allows no CA below it.
        let strict = root_with("pathlen 0", |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        });
        let v1 = openssl.v1_signed("v1", "localhost", &strict, &[]);
        verify(&v1, &[], &[&strict.der]).expect("no intermediate");
        let intermediate = sub_ca("below pathlen 0", &strict, |_| {});
        let exceeded = ServerCertError::PathLenExceeded {
            subject: "CN=pathlen 0".to_string(),
        };
        let v1 = openssl.v1_signed("v1", "localhost", &intermediate, &[]);
        assert_eq!(
            refusal(verify(&v1, &[&intermediate.der], &[&strict.der])),
            exceeded
        );
        let v3 = server(&["localhost"], &intermediate);
        assert_eq!(
            refusal(verify(&v3.der, &[&intermediate.der], &[&strict.der])),
            exceeded
        );
    }

    #[test]
    fn the_roots_purpose_is_checked() {
        let openssl = OpenSsl::new();
        // A root for client certificates only.
        let clients = root_with("client CA", |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        });
        let purpose = ServerCertError::IssuerPurpose {
            subject: "CN=client CA".to_string(),
        };
        let v1 = openssl.v1_signed("v1", "localhost", &clients, &[]);
        assert_eq!(refusal(verify(&v1, &[], &[&clients.der])), purpose);
        let v3 = server(&["localhost"], &clients);
        assert_eq!(refusal(verify(&v3.der, &[], &[&clients.der])), purpose);
    }

    // ---- the intermediates of a version 1 chain ------------------------

    /// A version 1 server certificate signed by the first of
    /// `intermediates`, verified with them against `ca`.
    fn through(ca: &Made, intermediates: &[&Made]) -> Result<(), rustls::Error> {
        let openssl = OpenSsl::new();
        let v1 = openssl.v1_signed("v1", "localhost", intermediates[0], &[]);
        let ders: Vec<&CertificateDer<'static>> = intermediates.iter().map(|m| &m.der).collect();
        verify(&v1, &ders, &[&ca.der])
    }

    #[test]
    fn an_ordinary_intermediate_passes() {
        let ca = root("root");
        let ok = sub_ca("ok", &ca, |_| {});
        through(&ca, &[&ok]).expect("an ordinary intermediate");
    }

    #[test]
    fn an_intermediates_path_length_is_checked() {
        let ca = root("root");
        let strict = sub_ca("pathlen 0", &ca, |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        });
        let below = sub_ca("below", &strict, |_| {});
        assert_eq!(
            refusal(through(&ca, &[&below, &strict])),
            ServerCertError::PathLenExceeded {
                subject: "CN=pathlen 0".to_string()
            }
        );
        through(&ca, &[&strict]).expect("nothing below it but the server's");
    }

    #[test]
    fn an_intermediate_without_keycertsign_signs_nothing() {
        let ca = root("root");
        let no_cert_sign = sub_ca("no keyCertSign", &ca, |p| {
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        });
        assert_eq!(
            refusal(through(&ca, &[&no_cert_sign])),
            ServerCertError::NotACa {
                subject: "CN=no keyCertSign".to_string(),
                why: "its keyUsage lacks keyCertSign"
            }
        );
    }

    #[test]
    fn an_intermediate_for_client_certificates_only_is_named() {
        let ca = root("root");
        let clients = sub_ca("client CA", &ca, |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        });
        let purpose = ServerCertError::IssuerPurpose {
            subject: "CN=client CA".to_string(),
        };
        assert_eq!(refusal(through(&ca, &[&clients])), purpose);
        // webpki refuses it too in a version 3 chain; this says which.
        let v3 = server(&["localhost"], &clients);
        assert_eq!(
            refusal(verify(&v3.der, &[&clients.der], &[&ca.der])),
            purpose
        );
        // The server's own certificate for clients only is still the
        // server's.
        let mut params = named("client only");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_only = signed(params, &ca);
        assert!(matches!(
            certificate_error(verify(&client_only.der, &[], &[&ca.der])),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
        ));
    }

    #[test]
    fn name_constraints_above_a_v1_certificate_are_refused() {
        let constrained = |p: &mut CertificateParams| {
            p.name_constraints = Some(NameConstraints {
                permitted_subtrees: vec![GeneralSubtree::DnsName("example.com".to_string())],
                excluded_subtrees: vec![],
            });
        };
        let ca = root("root");
        let intermediate = sub_ca("constrained", &ca, constrained);
        assert_eq!(
            refusal(through(&ca, &[&intermediate])),
            ServerCertError::NameConstraints {
                subject: "CN=constrained".to_string()
            }
        );
        let constrained_root = root_with("constrained root", constrained);
        let openssl = OpenSsl::new();
        let v1 = openssl.v1_signed("v1", "localhost", &constrained_root, &[]);
        assert_eq!(
            refusal(verify(&v1, &[], &[&constrained_root.der])),
            ServerCertError::NameConstraints {
                subject: "CN=constrained root".to_string()
            }
        );
    }

    #[test]
    fn a_malformed_intermediate_is_named() {
        // Signed with one algorithm, saying another outside the signature
        // (ecdsa-with-SHA256 changed to ecdsa-with-SHA384).
        let ca = root("root");
        let ok = sub_ca("altered", &ca, |_| {});
        let mut altered = ok.der.to_vec();
        let sha256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let outer = altered
            .windows(sha256.len())
            .rposition(|w| w == sha256)
            .expect("the outer algorithm");
        altered[outer + sha256.len() - 1] = 0x03;
        let altered = CertificateDer::from(altered);
        let openssl = OpenSsl::new();
        let v1 = openssl.v1_signed("v1", "localhost", &ok, &[]);
        assert_eq!(
            refusal(verify(&v1, &[&altered], &[&ca.der])),
            ServerCertError::Malformed {
                subject: "CN=altered".to_string(),
                why: "its signature algorithm is not the one it signed".to_string(),
            }
        );
    }

    #[test]
    fn a_cross_signed_loop_ends() {
        // A signed by B and B by A, neither under a root.
        let a_key = KeyPair::generate().expect("key");
        let b_key = KeyPair::generate().expect("key");
        let (a_params, b_params) = (ca_params("A"), ca_params("B"));
        let a = a_params
            .signed_by(&a_key, &Issuer::from_params(&b_params, &b_key))
            .expect("A");
        let b = b_params
            .signed_by(&b_key, &Issuer::from_params(&a_params, &a_key))
            .expect("B");
        let a = Made {
            der: a.der().clone(),
            pem: a.pem(),
            params: a_params,
            key: a_key,
        };
        let b = b.der().clone();
        let unrelated = root("unrelated");
        let openssl = OpenSsl::new();
        let v1 = openssl.v1_signed("v1", "localhost", &a, &[]);
        assert_eq!(
            certificate_error(verify(&v1, &[&a.der, &b], &[&unrelated.der])),
            CertificateError::UnknownIssuer
        );
        let v3 = server(&["localhost"], &a);
        assert_eq!(
            certificate_error(verify(&v3.der, &[&a.der, &b], &[&unrelated.der])),
            CertificateError::UnknownIssuer
        );
    }

    #[test]
    fn a_v1_chain_has_at_most_six_intermediates() {
        let ca = root("root");
        let mut chain: Vec<Made> = Vec::new();
        for depth in 1..=7 {
            let above = chain.last().unwrap_or(&ca);
            let next = sub_ca(&format!("intermediate {depth}"), above, |_| {});
            chain.push(next);
        }
        let openssl = OpenSsl::new();
        let attempt = |count: usize| {
            let ders: Vec<&CertificateDer<'static>> =
                chain[..count].iter().rev().map(|m| &m.der).collect();
            let v1 = openssl.v1_signed("v1", "localhost", &chain[count - 1], &[]);
            verify(&v1, &ders, &[&ca.der])
        };
        attempt(6).expect("six intermediates");
        assert_eq!(
            certificate_error(attempt(7)),
            CertificateError::UnknownIssuer
        );
    }

    #[test]
    fn sha1_signatures_are_refused() {
        let ca = root("root");
        let openssl = OpenSsl::new();
        let v1 = openssl.v1_signed("v1", "localhost", &ca, &["-sha1"]);
        assert_eq!(
            refusal(verify(&v1, &[], &[&ca.der])),
            ServerCertError::UnsupportedSignature {
                subject: "CN=localhost".to_string(),
                algorithm: "ecdsa-with-SHA1".to_string(),
            }
        );
        let v1 = openssl.v1_signed("v1", "localhost", &ca, &["-sha256"]);
        verify(&v1, &[], &[&ca.der]).expect("SHA-256");
    }

    #[test]
    fn an_rsa_key_below_2048_bits_is_named() {
        let openssl = OpenSsl::new();
        openssl.run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-keyout",
            "weak.key",
            "-out",
            "weak.crt",
            "-days",
            "30",
            "-subj",
            "/CN=weak root",
        ]);
        let weak = CertificateDer::from_pem_file(openssl.path().join("weak.crt")).expect("root");
        openssl.request("v1", "localhost");
        openssl.run(&[
            "x509",
            "-req",
            "-in",
            "v1.csr",
            "-days",
            "30",
            "-CA",
            "weak.crt",
            "-CAkey",
            "weak.key",
            "-set_serial",
            "7",
            "-out",
            "v1.crt",
        ]);
        let v1 = openssl.read("v1");
        assert_eq!(
            refusal(verify(&v1, &[], &[&weak])),
            ServerCertError::UnsupportedSignature {
                subject: "CN=localhost".to_string(),
                algorithm: "sha256WithRSAEncryption by an RSA key of 1024 bits".to_string(),
            }
        );
    }

    #[test]
    fn a_v1_certificate_with_trailing_bytes_has_no_legacy_key() {
        let ca = root("root");
        let openssl = OpenSsl::new();
        let v1 = openssl.v1_signed("v1", "localhost", &ca, &[]);
        assert!(legacy_key(&v1).is_some());
        let mut trailing = v1.to_vec();
        trailing.push(0);
        assert!(legacy_key(&CertificateDer::from(trailing)).is_none());
    }

    // ---- host names ------------------------------------------------------

    fn matches(name: &str, host: &str) -> bool {
        name_matches(name.as_bytes(), host, None).expect("no NUL")
    }

    #[test]
    fn names_compare_without_ascii_case() {
        assert!(matches("db.example.com", "db.example.com"));
        assert!(matches("DB.Example.COM", "db.example.com"));
        assert!(!matches("db.example.com", "db.example.org"));
        assert!(!matches("db.example.com", "db.example.com."));
        assert!(!matches("", "db"));
    }

    #[test]
    fn wildcards_follow_libpq() {
        assert!(matches("*.example.com", "db.example.com"));
        assert!(matches("*.EXAMPLE.com", "DB.example.COM"));
        // One label only: the `*` does not match a dot.
        assert!(!matches("*.example.com", "a.db.example.com"));
        // Nothing for the `*` to stand for.
        assert!(!matches("*.example.com", ".example.com"));
        assert!(!matches("*.example.com", "example.com"));
        // Only a leading `*.` is a wildcard.
        assert!(!matches("db.*.com", "db.example.com"));
        assert!(!matches("d*.example.com", "db.example.com"));
        assert!(!matches("*", "db"));
        assert!(!matches("*.", "db."));
        // A literal `*.x` host matches itself, as in libpq.
        assert!(matches("*.example.com", "*.example.com"));
    }

    #[test]
    fn wildcards_are_stricter_than_libpqs() {
        // At least two labels after `*.` (libpq takes `*.com`).
        assert!(!matches("*.com", "evil.com"));
        assert!(!matches("*.COM", "evil.com"));
        assert!(!matches("*..com", "evil..com"));
        assert!(!matches("*.example.com.", "db.example.com."));
        assert!(matches("*.example.com", "db.example.com"));
        // A host of digits and dots (an address to libpq) is never matched
        // by a wildcard.
        assert!(!matches("*.0.1", "127.0.1"));
        // Nor an IP address host, by a name of either kind.
        let ca = root("root");
        let mut params = named("*.0.0.1");
        params.subject_alt_names =
            vec![rcgen::SanType::DnsName("*.0.0.1".try_into().expect("name"))];
        let by_san = signed(params, &ca);
        let by_cn = signed(named("*.0.0.1"), &ca);
        let host = ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().expect("ip").into());
        for cert in [&by_san, &by_cn] {
            let parsed = parse(&cert.der).expect("parse");
            assert!(matches!(
                check_host_name(&parsed, &host),
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext { .. }
                ))
            ));
        }
    }

    #[test]
    fn without_x509_parser_the_host_is_checked_by_webpkis_rules() {
        // What the verifier does when x509-parser cannot read a certificate
        // webpki accepted: the subjectAltName only, as rustls checks it.
        let ca = root("root");
        let mut params = named("cn.example.com");
        params.subject_alt_names = vec![rcgen::SanType::DnsName(
            "san.example.com".try_into().expect("name"),
        )];
        let leaf = signed(params, &ca);
        let parsed = parse(&leaf.der).expect("parse");
        let host = |name: &str| ServerName::try_from(name.to_string()).expect("host");
        check_host(None, &leaf.der, &host("san.example.com")).expect("subjectAltName");
        check_host(Some(&parsed), &leaf.der, &host("san.example.com")).expect("libpq too");
        assert!(check_host(None, &leaf.der, &host("cn.example.com")).is_err());
        // libpq's rules look at the Common Name only without a DNS entry.
        let cn_only = signed(named("cn.example.com"), &ca);
        let parsed = parse(&cn_only.der).expect("parse");
        check_host(Some(&parsed), &cn_only.der, &host("cn.example.com")).expect("CN");
        assert!(check_host(None, &cn_only.der, &host("cn.example.com")).is_err());
    }

    #[test]
    fn a_nul_in_a_name_is_an_error_not_a_mismatch() {
        assert_eq!(
            name_matches(b"db.example.com\0.evil.com", "db.example.com", None),
            Err(ServerCertError::NameWithNul)
        );
    }

    #[test]
    fn addresses_match_by_octets() {
        let v4: IpAddr = "127.0.0.1".parse().expect("v4");
        let v6: IpAddr = "::1".parse().expect("v6");
        assert_eq!(address_matches(&[127, 0, 0, 1], Some(v4)), Ok(true));
        assert_eq!(address_matches(&[127, 0, 0, 2], Some(v4)), Ok(false));
        assert_eq!(address_matches(&[127, 0, 0, 1], Some(v6)), Ok(false));
        let mut loopback6 = [0u8; 16];
        loopback6[15] = 1;
        assert_eq!(address_matches(&loopback6, Some(v6)), Ok(true));
        // A DNS host never matches an address.
        assert_eq!(address_matches(&[127, 0, 0, 1], None), Ok(false));
        assert_eq!(
            address_matches(&[1, 2, 3], Some(v4)),
            Err(ServerCertError::IpAddressLength { length: 3 })
        );
        assert_eq!(address_text(&[10, 0, 0, 7]), "10.0.0.7");
        assert_eq!(address_text(&loopback6), "::1");
    }
}
