//! Certificates made by the `openssl` program with the exact commands of
//! PostgreSQL's documentation ("Creating Certificates", in "Secure TCP/IP
//! Connections with SSL"), `dbhost.yourdomain.com` replaced by the host the
//! test connects to; and what certificate a server presents, as
//! `openssl s_client` sees it. Each recipe runs in a directory of its own,
//! since the docs' file names (`server.crt`, `root.srl`, ...) repeat.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A server certificate file (the server's certificate, then any
/// intermediates), its key, and the root the client is to trust (for the
/// self-signed recipe, the certificate itself).
pub struct Made {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub root: PathBuf,
}

/// Runs `program args` in `dir`; panics with its output if it fails.
fn run(dir: &Path, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program} (needed by this test): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} in {} failed ({}):\n{}{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(dir, "openssl", args);
}

fn fresh_dir(dir: &Path) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
}

/// The file the docs' `-extfile /etc/ssl/openssl.cnf` names ("the default
/// OpenSSL configuration file location on Linux"), or where this openssl
/// keeps its own.
fn openssl_cnf() -> String {
    let linux = Path::new("/etc/ssl/openssl.cnf");
    if linux.exists() {
        return linux.to_string_lossy().into_owned();
    }
    let output = Command::new("openssl")
        .args(["version", "-d"])
        .output()
        .unwrap_or_else(|e| panic!("running openssl version -d: {e}"));
    let line = String::from_utf8_lossy(&output.stdout).into_owned();
    let dir = line
        .trim()
        .trim_start_matches("OPENSSLDIR: ")
        .trim_matches('"')
        .to_owned();
    format!("{dir}/openssl.cnf")
}

/// The docs' simple self-signed certificate:
///
/// ```text
/// openssl req -new -x509 -days 365 -nodes -text -out server.crt \
///   -keyout server.key -subj "/CN=dbhost.yourdomain.com"
/// chmod og-rwx server.key
/// ```
pub fn self_signed(dir: &Path, host: &str) -> Made {
    fresh_dir(dir);
    let subject = format!("/CN={host}");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "365",
            "-nodes",
            "-text",
            "-out",
            "server.crt",
            "-keyout",
            "server.key",
            "-subj",
            &subject,
        ],
    );
    run(dir, "chmod", &["og-rwx", "server.key"]);
    Made {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        root: dir.join("server.crt"),
    }
}

/// The docs' root certificate authority, `root.crt` and `root.key` in `dir`:
///
/// ```text
/// openssl req -new -nodes -text -out root.csr \
///   -keyout root.key -subj "/CN=root.yourdomain.com"
/// chmod og-rwx root.key
/// openssl x509 -req -in root.csr -text -days 3650 \
///   -extfile /etc/ssl/openssl.cnf -extensions v3_ca \
///   -signkey root.key -out root.crt
/// ```
pub fn root_ca(dir: &Path) -> PathBuf {
    fresh_dir(dir);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-text",
            "-out",
            "root.csr",
            "-keyout",
            "root.key",
            "-subj",
            "/CN=root.yourdomain.com",
        ],
    );
    run(dir, "chmod", &["og-rwx", "root.key"]);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "root.csr",
            "-text",
            "-days",
            "3650",
            "-extfile",
            &openssl_cnf(),
            "-extensions",
            "v3_ca",
            "-signkey",
            "root.key",
            "-out",
            "root.crt",
        ],
    );
    dir.join("root.crt")
}

/// The docs' server certificate signed by the root CA of `dir` ([`root_ca`]):
///
/// ```text
/// openssl req -new -nodes -text -out server.csr \
///   -keyout server.key -subj "/CN=dbhost.yourdomain.com"
/// chmod og-rwx server.key
/// openssl x509 -req -in server.csr -text -days 365 \
///   -CA root.crt -CAkey root.key -CAcreateserial \
///   -out server.crt
/// ```
///
/// With OpenSSL 3.0 (and older) this is an X.509 version 1 certificate.
pub fn signed_by_root(dir: &Path, host: &str) -> Made {
    let root = root_ca(dir);
    server_request(dir, host);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-text",
            "-days",
            "365",
            "-CA",
            "root.crt",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
        ],
    );
    Made {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        root,
    }
}

fn server_request(dir: &Path, host: &str) {
    let subject = format!("/CN={host}");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-text",
            "-out",
            "server.csr",
            "-keyout",
            "server.key",
            "-subj",
            &subject,
        ],
    );
    run(dir, "chmod", &["og-rwx", "server.key"]);
}

/// The docs' chain of trust with an intermediate certificate: [`root_ca`],
///
/// ```text
/// # intermediate
/// openssl req -new -nodes -text -out intermediate.csr \
///   -keyout intermediate.key -subj "/CN=intermediate.yourdomain.com"
/// chmod og-rwx intermediate.key
/// openssl x509 -req -in intermediate.csr -text -days 1825 \
///   -extfile /etc/ssl/openssl.cnf -extensions v3_ca \
///   -CA root.crt -CAkey root.key -CAcreateserial \
///   -out intermediate.crt
///
/// # leaf
/// openssl req -new -nodes -text -out server.csr \
///   -keyout server.key -subj "/CN=dbhost.yourdomain.com"
/// chmod og-rwx server.key
/// openssl x509 -req -in server.csr -text -days 365 \
///   -CA intermediate.crt -CAkey intermediate.key -CAcreateserial \
///   -out server.crt
/// ```
///
/// and "server.crt and intermediate.crt should be concatenated into a
/// certificate file bundle": `cert` is that bundle.
pub fn signed_through_intermediate(dir: &Path, host: &str) -> Made {
    let root = root_ca(dir);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-text",
            "-out",
            "intermediate.csr",
            "-keyout",
            "intermediate.key",
            "-subj",
            "/CN=intermediate.yourdomain.com",
        ],
    );
    run(dir, "chmod", &["og-rwx", "intermediate.key"]);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "intermediate.csr",
            "-text",
            "-days",
            "1825",
            "-extfile",
            &openssl_cnf(),
            "-extensions",
            "v3_ca",
            "-CA",
            "root.crt",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-out",
            "intermediate.crt",
        ],
    );
    server_request(dir, host);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-text",
            "-days",
            "365",
            "-CA",
            "intermediate.crt",
            "-CAkey",
            "intermediate.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
        ],
    );
    let read = |name: &str| {
        fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("reading {name} in {}: {e}", dir.display()))
    };
    let bundle = dir.join("bundle.crt");
    fs::write(&bundle, read("server.crt") + &read("intermediate.crt"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", bundle.display()));
    Made {
        cert: bundle,
        key: dir.join("server.key"),
        root,
    }
}

/// Not in the docs: their self-signed certificate, but valid only in 2020.
/// `openssl req -x509` cannot date a certificate in the past; `openssl ca
/// -selfsign` can, with the same extensions (`basicConstraints` CA:TRUE,
/// key identifiers).
pub fn expired_self_signed(dir: &Path, host: &str) -> Made {
    fresh_dir(dir);
    server_request(dir, host);
    fs::write(dir.join("index.txt"), "").unwrap_or_else(|e| panic!("index.txt: {e}"));
    fs::write(dir.join("serial"), "01\n").unwrap_or_else(|e| panic!("serial: {e}"));
    fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = expired\n\
         [expired]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
         default_md = sha256\npolicy = any\nx509_extensions = like_req_x509\n\
         [any]\ncommonName = supplied\n\
         [like_req_x509]\nbasicConstraints = critical,CA:TRUE\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n",
    )
    .unwrap_or_else(|e| panic!("ca.cnf: {e}"));
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            "server.key",
            "-in",
            "server.csr",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
            "-out",
            "server.crt",
        ],
    );
    Made {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        root: dir.join("server.crt"),
    }
}

/// Not in the docs: a server's own self-signed certificate that is not a CA
/// (CA:FALSE, a keyUsage without keyCertSign), as a careful operator makes
/// one for each server and lists them all in one root file.
pub fn self_signed_not_a_ca(dir: &Path, host: &str) -> Made {
    fresh_dir(dir);
    fs::write(
        dir.join("own.cnf"),
        format!(
            "[req]\ndistinguished_name = dn\nx509_extensions = own\nprompt = no\n\
             [dn]\nCN = {host}\n\
             [own]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:{host}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("own.cnf: {e}"));
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "365",
            "-nodes",
            "-config",
            "own.cnf",
            "-out",
            "server.crt",
            "-keyout",
            "server.key",
        ],
    );
    run(dir, "chmod", &["og-rwx", "server.key"]);
    Made {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        root: dir.join("server.crt"),
    }
}

/// Not in the docs: the docs' `openssl x509 -req -CA …` with `issuer`'s
/// certificate and key, whatever it is (a version 1 certificate for
/// `host`); `root` is `issuer`'s certificate.
pub fn signed_by(dir: &Path, issuer: &Made, host: &str) -> Made {
    fresh_dir(dir);
    server_request(dir, host);
    let (ca, ca_key) = (issuer.cert.to_string_lossy(), issuer.key.to_string_lossy());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-days",
            "365",
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAserial",
            "issuer.srl",
            "-CAcreateserial",
            "-out",
            "server.crt",
        ],
    );
    Made {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        root: issuer.cert.clone(),
    }
}

/// Not in the docs: the docs' self-signed certificate made as version 1
/// (`openssl x509 -req -signkey`), twice from the same request and key,
/// with serial numbers 1 and 2: (the first, the second).
pub fn self_signed_v1_twice(dir: &Path, host: &str) -> (Made, Made) {
    fresh_dir(dir);
    server_request(dir, host);
    let made = |name: &str, serial: &str| {
        let crt = format!("{name}.crt");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-days",
                "365",
                "-signkey",
                "server.key",
                "-set_serial",
                serial,
                "-out",
                &crt,
            ],
        );
        Made {
            cert: dir.join(&crt),
            key: dir.join("server.key"),
            root: dir.join(&crt),
        }
    };
    (made("first", "1"), made("second", "2"))
}

/// The X.509 version (1, 2 or 3) of the first certificate of a PEM file.
pub fn version(cert: &Path) -> u32 {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert)
        .output()
        .unwrap_or_else(|e| panic!("openssl x509 -text: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("Version: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no version in openssl's text of {}", cert.display()))
}

/// The first PEM certificate block of `text`, whitespace trimmed per line.
pub fn first_pem(text: &str) -> Option<String> {
    let mut lines = text.lines().map(str::trim);
    lines
        .by_ref()
        .find(|l| *l == "-----BEGIN CERTIFICATE-----")?;
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in lines {
        pem.push_str(line);
        pem.push('\n');
        if line == "-----END CERTIFICATE-----" {
            return Some(pem);
        }
    }
    None
}

/// The certificate the PostgreSQL server on 127.0.0.1:`port` presents to a
/// new connection, as `openssl s_client -starttls postgres` shows it; `None`
/// when the handshake did not happen.
pub fn presented_certificate(port: u16) -> Option<String> {
    let output = Command::new("openssl")
        .args(["s_client", "-starttls", "postgres", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    first_pem(&String::from_utf8_lossy(&output.stdout))
}
