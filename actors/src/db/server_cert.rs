//! The server certificates libpq accepts and rustls' webpki does not, and
//! libpq's host-name rules: what `db::tls`'s verifier calls once a root
//! certificate file is in play.
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
//!   does not stop at it either.
//! - `openssl x509 -req -CA root.crt …` (OpenSSL 3.0 and older, without
//!   `-extfile`): an X.509 **version 1** certificate, which webpki cannot
//!   parse at all. Such a chain is verified here, with x509-parser for the
//!   parsing and ring (through x509-parser's `verify`) for the signatures:
//!   each signature up to a certificate of `sslrootcert`, through the
//!   intermediates the server sent (the docs' third recipe), the same
//!   signature algorithms as rustls' ring provider accepts (no SHA-1, RSA of
//!   2048 bits or more), the validity period of every certificate but the
//!   root (as webpki), and of every intermediate what webpki checks: version
//!   3, basicConstraints CA:TRUE, its pathLenConstraint, an extended key
//!   usage that allows serverAuth when present, no critical extension it
//!   does not know; and, stricter than webpki, a keyUsage that allows
//!   keyCertSign when present. Name constraints on a CA above a v1
//!   certificate are refused with a sentence rather than half checked.
//!
//! Version 3 chains are verified by webpki exactly as before
//! (`verify_server_cert_signed_by_trust_anchor`).
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

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
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
use x509_parser::x509::{SubjectPublicKeyInfo, X509Version};

/// webpki's limit on intermediates between the server's certificate and a
/// root.
const MAX_SUB_CA_COUNT: usize = 6;

/// Why a server certificate was refused, where rustls has no variant that
/// says it. Carried inside `CertificateError::Other`, and turned into the
/// operator's sentence by `tls::describe_tls_failure`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerCertError {
    /// Self-issued, and not one of the root certificates.
    #[error(
        "the server's certificate ({subject}) is self-signed and is not itself in sslrootcert"
    )]
    SelfSignedNotTrusted { subject: String },
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

/// The root certificates: webpki's store, and the certificates themselves
/// for pinning and for the v1 chains.
#[derive(Debug)]
pub struct Trust {
    pub store: Arc<RootCertStore>,
    pub certs: Vec<CertificateDer<'static>>,
}

impl Trust {
    /// Whether the server's certificate is itself one of the roots, and
    /// self-issued.
    fn pins(&self, end_entity: &CertificateDer<'_>, leaf: &X509Certificate<'_>) -> bool {
        self.certs
            .iter()
            .any(|root| root.as_ref() == end_entity.as_ref())
            && self_issued(leaf)
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

/// The chain of the server's certificate `end_entity` up to `trust`: pinned,
/// version 1, or webpki's. `leaf` is `end_entity` as x509-parser read it;
/// when it could not, webpki alone judges (and refuses, or not, as before).
pub fn verify_chain(
    end_entity: &CertificateDer<'_>,
    leaf: Option<&X509Certificate<'_>>,
    intermediates: &[CertificateDer<'_>],
    trust: &Trust,
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(), rustls::Error> {
    let by_webpki = || {
        ParsedCertificate::try_from(end_entity).and_then(|parsed| {
            verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &trust.store,
                intermediates,
                now,
                algorithms.all,
            )
        })
    };
    let Some(leaf) = leaf else {
        return by_webpki();
    };
    if trust.pins(end_entity, leaf) {
        check_validity(leaf, now)?;
        return check_extensions(leaf);
    }
    let verified = if is_v3(leaf) {
        by_webpki()
    } else {
        verify_legacy_chain(leaf, intermediates, trust, now)
    };
    verified.map_err(|error| explain_refusal(error, leaf))
}

/// Refusals that have a better sentence: a self-signed certificate that is
/// not in the root file (whether a root of the same name exists, with
/// another key, or none), a CA certificate as a server's.
fn explain_refusal(error: rustls::Error, leaf: &X509Certificate<'_>) -> rustls::Error {
    let ca_as_leaf = matches!(
        &error,
        rustls::Error::InvalidCertificate(CertificateError::Other(other))
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            )
    );
    let unknown_issuer = matches!(
        &error,
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature
        )
    );
    if (ca_as_leaf || unknown_issuer) && self_issued(leaf) {
        return ServerCertError::SelfSignedNotTrusted {
            subject: leaf.subject().to_string(),
        }
        .into();
    }
    if ca_as_leaf {
        return ServerCertError::CaAsServerCertificate {
            subject: leaf.subject().to_string(),
            issuer: leaf.issuer().to_string(),
        }
        .into();
    }
    error
}

fn unix_time(timestamp: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(timestamp).unwrap_or(0)))
}

/// notBefore ≤ now ≤ notAfter, with rustls' errors (which name the times).
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

/// What webpki checks of any certificate's extensions: well formed, none
/// twice, none only in a version 3 certificate, an extended key usage that
/// allows serverAuth, no critical extension it does not know.
fn check_extensions(cert: &X509Certificate<'_>) -> Result<(), rustls::Error> {
    if !is_v3(cert) && !cert.extensions().is_empty() {
        return Err(CertificateError::BadEncoding.into());
    }
    cert.extensions_map()
        .map_err(|_| rustls::Error::from(CertificateError::BadEncoding))?;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::ParseError { .. } => {
                return Err(CertificateError::BadEncoding.into());
            }
            ParsedExtension::ExtendedKeyUsage(usage) if !usage.server_auth => {
                return Err(CertificateError::InvalidPurpose.into());
            }
            _ => {}
        }
        if extension.critical && !understood(&extension.oid) {
            return Err(CertificateError::UnhandledCriticalExtension.into());
        }
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
    check_validity(ca, now)?;
    check_extensions(ca)?;
    match ca.basic_constraints() {
        Ok(Some(constraints)) if constraints.value.ca => {
            if let Some(length) = constraints.value.path_len_constraint {
                if usize::try_from(length).is_ok_and(|length| sub_ca_count > length) {
                    return Err(not_a_ca("its pathLenConstraint is exceeded").into());
                }
            }
        }
        _ => return Err(not_a_ca("no basicConstraints CA:TRUE").into()),
    }
    if let Ok(Some(usage)) = ca.key_usage() {
        if !usage.value.key_cert_sign() {
            return Err(not_a_ca("its keyUsage lacks keyCertSign").into());
        }
    }
    check_no_name_constraints(ca)
}

fn check_no_name_constraints(ca: &X509Certificate<'_>) -> Result<(), rustls::Error> {
    match ca.name_constraints() {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(ServerCertError::NameConstraints {
            subject: ca.subject().to_string(),
        }
        .into()),
        Err(_) => Err(CertificateError::BadEncoding.into()),
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
        return Err(CertificateError::BadEncoding.into());
    }
    let algorithm = &cert.signature_algorithm.algorithm;
    let unsupported = || ServerCertError::UnsupportedSignature {
        subject: cert.subject().to_string(),
        algorithm: x509_parser::objects::oid2sn(algorithm, x509_parser::objects::oid_registry())
            .map(str::to_owned)
            .unwrap_or_else(|_| algorithm.to_id_string()),
    };
    if !accepted_signature(algorithm) {
        return Err(unsupported().into());
    }
    cert.verify_signature(Some(issuer))
        .map_err(|error| match error {
            X509Error::SignatureUnsupportedAlgorithm => unsupported().into(),
            _ => CertificateError::BadSignature.into(),
        })
}

/// A version 1 server certificate: its dates, then signatures up to a root,
/// through the intermediates the server sent (each used once, at most
/// [`MAX_SUB_CA_COUNT`]). The first issuer whose name and signature match is
/// taken, roots before intermediates.
fn verify_legacy_chain(
    leaf: &X509Certificate<'_>,
    intermediates: &[CertificateDer<'_>],
    trust: &Trust,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    check_validity(leaf, now)?;
    check_extensions(leaf)?;
    let roots: Vec<X509Certificate<'_>> = trust
        .certs
        .iter()
        .filter_map(|der| parse(der).ok())
        .collect();
    let cas: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .filter_map(|der| parse(der).ok())
        .collect();
    let mut used = vec![false; cas.len()];
    let mut refusal: Option<rustls::Error> = None;
    let mut current = leaf;
    for sub_ca_count in 0..=MAX_SUB_CA_COUNT {
        let issuer_name = current.issuer().as_raw();
        for root in roots.iter().filter(|r| r.subject().as_raw() == issuer_name) {
            match verify_signed_by(current, root.public_key()) {
                Ok(()) => return check_no_name_constraints(root),
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
    }
    Err(refusal.unwrap_or_else(|| CertificateError::UnknownIssuer.into()))
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
/// cannot read (not X.509 version 3), or `None` for any other certificate
/// (rustls' own functions then verify the handshake signature).
pub fn legacy_key<'a>(cert: &'a CertificateDer<'_>) -> Option<SubjectPublicKeyInfoDer<'a>> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
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
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let ca = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let mut by_san = rcgen::CertificateParams::new(vec!["*.0.0.1".to_string()]).expect("san");
        by_san.distinguished_name = rcgen::DistinguishedName::new();
        let mut by_cn = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        by_cn.distinguished_name = rcgen::DistinguishedName::new();
        by_cn
            .distinguished_name
            .push(rcgen::DnType::CommonName, "*.0.0.1");
        let host = ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().expect("ip").into());
        for params in [by_san, by_cn] {
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca).expect("signed");
            let parsed = parse(cert.der()).expect("parse");
            assert!(matches!(
                check_host_name(&parsed, &host),
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext { .. }
                ))
            ));
        }
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

    #[test]
    fn only_the_ring_providers_algorithms_are_accepted() {
        use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
        assert!(accepted_signature(&OID_PKCS1_SHA256WITHRSA));
        assert!(accepted_signature(&OID_SIG_ECDSA_WITH_SHA256));
        assert!(!accepted_signature(&OID_PKCS1_SHA1WITHRSA));
        assert!(!accepted_signature(&OID_SHA1_WITH_RSA));
    }
}
