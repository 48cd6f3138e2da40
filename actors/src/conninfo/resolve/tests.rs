//! Resolution against a fake environment: every fallback and check, with
//! no dependence on the machine's `PG*` variables or user.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::conninfo::parse::parse;
use crate::conninfo::test_support::passfile;

const SOCKET_DIR: &str = "/var/run/postgresql";

#[derive(Default)]
struct FakeEnvironment {
    vars: HashMap<&'static str, &'static str>,
    user: Option<&'static str>,
    home: Option<&'static str>,
}

impl FakeEnvironment {
    fn new() -> Self {
        FakeEnvironment {
            user: Some("osuser"),
            home: Some("/home/osuser"),
            ..Self::default()
        }
    }

    fn with(mut self, name: &'static str, value: &'static str) -> Self {
        self.vars.insert(name, value);
        self
    }
}

impl Environment for FakeEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .filter(|value| !value.is_empty())
            .map(|value| (*value).to_owned())
    }

    fn os_user(&self) -> Option<String> {
        self.user.map(str::to_owned)
    }

    fn home_dir(&self) -> Option<PathBuf> {
        self.home.map(PathBuf::from)
    }

    fn default_socket_dir(&self) -> PathBuf {
        PathBuf::from(SOCKET_DIR)
    }
}

fn target_with(text: &str, env: &FakeEnvironment) -> Target {
    let options = parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
    resolve(&options, env).unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn target(text: &str) -> Target {
    target_with(text, &FakeEnvironment::new())
}

fn error_with(text: &str, env: &FakeEnvironment) -> ResolveError {
    let options = parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
    match resolve(&options, env) {
        Ok(target) => panic!("{text} resolved to {target:?}"),
        Err(error) => error,
    }
}

fn error(text: &str) -> ResolveError {
    error_with(text, &FakeEnvironment::new())
}

fn tcp(host: &str, port: u16) -> Endpoint {
    Endpoint {
        host: Host::Tcp(host.to_owned()),
        hostaddr: None,
        port,
    }
}

fn socket(dir: &str, port: u16) -> Endpoint {
    Endpoint {
        host: Host::Socket(PathBuf::from(dir)),
        hostaddr: None,
        port,
    }
}

#[test]
fn an_empty_string_gets_every_libpq_default() {
    let target = target("");
    assert_eq!(target.endpoints, [socket(SOCKET_DIR, 5432)]);
    assert!(target.endpoints[0].is_socket());
    assert_eq!(target.user, "osuser");
    assert_eq!(target.dbname, "osuser");
    assert_eq!(target.password, None);
    assert_eq!(
        target.passfile.as_deref(),
        Some(Path::new("/home/osuser/.pgpass"))
    );
    assert_eq!(target.sslmode, SslMode::Prefer);
    assert_eq!(target.sslnegotiation, SslNegotiation::Postgres);
    assert_eq!(target.target_session_attrs, TargetSessionAttrs::Any);
    assert_eq!(target.channel_binding, ChannelBinding::Prefer);
    assert_eq!(target.load_balance_hosts, LoadBalanceHosts::Disable);
    assert_eq!(target.connect_timeout, None);
    assert_eq!(target.keepalives, Keepalives::default());
    assert!(target.keepalives.enabled);
    assert_eq!(target.tcp_user_timeout, None);
    assert_eq!(target.application_name, None);
    assert_eq!(target.options, None);
    assert_eq!(target.default_socket_dir, Path::new(SOCKET_DIR));
    assert!(target.unhandled.is_empty());
}

#[test]
fn environment_variables_fill_what_the_string_leaves_out() {
    let env = FakeEnvironment::new()
        .with("PGHOST", "envhost")
        .with("PGPORT", "6543")
        .with("PGUSER", "envuser")
        .with("PGDATABASE", "envdb")
        .with("PGPASSWORD", "envpw")
        .with("PGPASSFILE", "/etc/pgpass")
        .with("PGAPPNAME", "envapp")
        .with("PGCONNECT_TIMEOUT", "7")
        .with("PGOPTIONS", "-c work_mem=1MB")
        .with("PGSSLMODE", "verify-ca")
        .with("PGSSLROOTCERT", "/ca.pem")
        .with("PGSSLCERT", "/cert.pem")
        .with("PGSSLKEY", "/key.pem")
        .with("PGSSLNEGOTIATION", "direct")
        .with("PGTARGETSESSIONATTRS", "read-write")
        .with("PGLOADBALANCEHOSTS", "random")
        .with("PGCHANNELBINDING", "require");
    let target = target_with("", &env);
    assert_eq!(target.endpoints, [tcp("envhost", 6543)]);
    assert_eq!(target.user, "envuser");
    assert_eq!(target.dbname, "envdb");
    assert_eq!(target.password.as_deref(), Some("envpw"));
    assert_eq!(target.passfile.as_deref(), Some(Path::new("/etc/pgpass")));
    assert_eq!(target.application_name.as_deref(), Some("envapp"));
    assert_eq!(target.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(target.options.as_deref(), Some("-c work_mem=1MB"));
    assert_eq!(target.sslmode, SslMode::VerifyCa);
    assert_eq!(target.sslrootcert.as_deref(), Some("/ca.pem"));
    assert_eq!(target.sslcert.as_deref(), Some("/cert.pem"));
    assert_eq!(target.sslkey.as_deref(), Some("/key.pem"));
    assert_eq!(target.sslnegotiation, SslNegotiation::Direct);
    assert_eq!(target.target_session_attrs, TargetSessionAttrs::ReadWrite);
    assert_eq!(target.load_balance_hosts, LoadBalanceHosts::Random);
    assert_eq!(target.channel_binding, ChannelBinding::Require);
}

#[test]
fn the_connection_string_beats_the_environment() {
    let env = FakeEnvironment::new()
        .with("PGHOST", "envhost")
        .with("PGUSER", "envuser")
        .with("PGSSLMODE", "disable");
    let target = target_with("postgres://bob@db.example.com/app?sslmode=require", &env);
    assert_eq!(target.endpoints, [tcp("db.example.com", 5432)]);
    assert_eq!(target.user, "bob");
    assert_eq!(target.dbname, "app");
    assert_eq!(target.sslmode, SslMode::Require);
}

#[test]
fn an_empty_value_in_the_string_blocks_the_environment_as_in_libpq() {
    let env = FakeEnvironment::new()
        .with("PGHOST", "envhost")
        .with("PGUSER", "envuser")
        .with("PGDATABASE", "envdb");
    let target = target_with("host='' user='' dbname=''", &env);
    assert_eq!(target.endpoints, [socket(SOCKET_DIR, 5432)]);
    assert_eq!(target.user, "osuser");
    assert_eq!(target.dbname, "osuser");
}

#[test]
fn a_url_without_host_leaves_pghost_in_force() {
    let env = FakeEnvironment::new().with("PGHOST", "envhost");
    let target = target_with("postgresql:///db", &env);
    assert_eq!(target.endpoints, [tcp("envhost", 5432)]);
}

#[test]
fn the_database_defaults_to_the_user() {
    assert_eq!(target("user=alice").dbname, "alice");
    let env = FakeEnvironment::new().with("PGUSER", "envuser");
    assert_eq!(target_with("", &env).dbname, "envuser");
}

#[test]
fn no_user_anywhere_is_an_error() {
    let env = FakeEnvironment {
        user: None,
        ..FakeEnvironment::new()
    };
    let error = error_with("host=h", &env);
    assert_eq!(error.problem, Problem::NoUser);
    assert!(error.to_string().contains("PGUSER"), "{error}");
}

#[test]
fn no_home_means_no_password_file() {
    let env = FakeEnvironment {
        home: None,
        ..FakeEnvironment::new()
    };
    assert_eq!(target_with("", &env).passfile, None);
}

#[test]
fn the_libpq_documentation_urls_resolve() {
    assert_eq!(
        target("postgresql://localhost:5433").endpoints,
        [tcp("localhost", 5433)]
    );
    assert_eq!(
        target("postgresql://[2001:db8::1234]/database").endpoints,
        [tcp("2001:db8::1234", 5432)]
    );
    assert_eq!(
        target("postgresql:///dbname?host=/var/lib/postgresql").endpoints,
        [socket("/var/lib/postgresql", 5432)]
    );
    assert_eq!(
        target("postgresql://%2Fvar%2Flib%2Fpostgresql/dbname").endpoints,
        [socket("/var/lib/postgresql", 5432)]
    );
    let target = target(
        "postgresql://host1:123,host2:456/somedb?target_session_attrs=any&application_name=myapp",
    );
    assert_eq!(target.endpoints, [tcp("host1", 123), tcp("host2", 456)]);
    assert_eq!(target.dbname, "somedb");
    assert_eq!(target.application_name.as_deref(), Some("myapp"));
}

#[test]
fn one_port_applies_to_every_host() {
    assert_eq!(
        target("host=a,b port=1").endpoints,
        [tcp("a", 1), tcp("b", 1)]
    );
    assert_eq!(
        target("host=a,b port=1,2").endpoints,
        [tcp("a", 1), tcp("b", 2)]
    );
}

#[test]
fn empty_list_entries_mean_the_defaults() {
    assert_eq!(
        target("host=a,,/tmp port=1,,3").endpoints,
        [tcp("a", 1), socket(SOCKET_DIR, 5432), socket("/tmp", 3)]
    );
    assert_eq!(
        target("postgres://a:1,b").endpoints,
        [tcp("a", 1), tcp("b", 5432)]
    );
}

#[test]
fn abstract_sockets_are_sockets_as_in_libpq() {
    assert_eq!(target("host=@pg").endpoints, [socket("@pg", 5432)]);
}

#[test]
fn a_port_list_of_the_wrong_length_is_an_error() {
    let error = error("host=a,b,c port=1,2");
    assert_eq!(error.keyword, "port");
    assert_eq!(
        error.to_string(),
        "could not match 2 port numbers (from the connection string) \
         to 3 hosts (from the connection string)"
    );
    let env = FakeEnvironment::new().with("PGPORT", "1,2");
    let error = error_with("host=a,b,c", &env);
    assert_eq!(error.origin, Origin::Environment("PGPORT"));
    assert!(error.to_string().contains("(from PGPORT)"), "{error}");
}

#[test]
fn hostaddr_gives_the_address_and_keeps_the_name() {
    let target = target("host=db.example.com hostaddr=10.0.0.5 port=6000");
    assert_eq!(
        target.endpoints,
        [Endpoint {
            host: Host::Tcp("db.example.com".to_owned()),
            hostaddr: Some("10.0.0.5".parse().expect("an address")),
            port: 6000,
        }]
    );
    assert!(!target.endpoints[0].is_socket());
}

#[test]
fn hostaddr_alone_names_the_host_by_its_address() {
    let target = target("hostaddr=10.0.0.5,::1");
    assert_eq!(
        target.endpoints,
        [
            Endpoint {
                host: Host::Tcp("10.0.0.5".to_owned()),
                hostaddr: Some("10.0.0.5".parse().expect("an address")),
                port: 5432,
            },
            Endpoint {
                host: Host::Tcp("::1".to_owned()),
                hostaddr: Some("::1".parse().expect("an address")),
                port: 5432,
            },
        ]
    );
}

#[test]
fn host_and_hostaddr_lists_must_match() {
    let env = FakeEnvironment::new().with("PGHOSTADDR", "10.0.0.1,10.0.0.2,10.0.0.3");
    let error = error_with("host=a,b", &env);
    assert_eq!(error.keyword, "host");
    assert_eq!(
        error.to_string(),
        "could not match 2 host names (from the connection string) \
         to 3 hostaddr values (from PGHOSTADDR)"
    );
}

#[test]
fn hostaddr_must_be_numeric() {
    let error = error("hostaddr=db.example.com");
    assert_eq!(error.keyword, "hostaddr");
    assert!(error.to_string().contains("db.example.com"), "{error}");
}

#[test]
fn ports_are_checked_like_libpq() {
    assert_eq!(target("host=h port=' 6000 '").endpoints, [tcp("h", 6000)]);
    assert_eq!(target("host=h port=65535").endpoints, [tcp("h", 65535)]);
    for (port, message) in [
        ("0", "invalid port number \"0\""),
        ("65536", "invalid port number \"65536\""),
        ("-1", "invalid port number \"-1\""),
        (
            "54x",
            "invalid integer value \"54x\" for connection option \"port\"",
        ),
        ("99999999999", "invalid integer value \"99999999999\""),
    ] {
        let error = error(&format!("host=h port={port}"));
        assert_eq!(error.keyword, "port");
        assert!(error.to_string().contains(message), "{error}");
        assert!(
            error.to_string().contains("the connection string"),
            "{error}"
        );
    }
    let env = FakeEnvironment::new().with("PGPORT", "70000");
    let error = error_with("host=h", &env);
    assert_eq!(
        error.to_string(),
        "invalid port number \"70000\" (from PGPORT); expected 1 to 65535"
    );
}

#[test]
fn sslmode_words_are_checked_and_listed() {
    let env = FakeEnvironment::new().with("PGSSLMODE", "verify_full");
    assert_eq!(
        error_with("", &env).to_string(),
        "invalid sslmode value \"verify_full\" (from PGSSLMODE); expected one of: \
         disable, allow, prefer, require, verify-ca, verify-full"
    );
    let empty = error("sslmode=''");
    assert_eq!(empty.keyword, "sslmode");
    assert_eq!(empty.origin, Origin::ConnectionString);
}

#[test]
fn other_words_are_checked() {
    for (text, keyword) in [
        ("target_session_attrs=readwrite", "target_session_attrs"),
        ("channel_binding=maybe", "channel_binding"),
        ("load_balance_hosts=on", "load_balance_hosts"),
        ("sslnegotiation=fast", "sslnegotiation"),
    ] {
        let error = error(text);
        assert_eq!(error.keyword, keyword, "{text}");
        assert!(
            matches!(error.problem, Problem::InvalidWord { .. }),
            "{text}"
        );
    }
    for word in TargetSessionAttrs::WORDS {
        assert_eq!(
            target(&format!("target_session_attrs={word}"))
                .target_session_attrs
                .as_word(),
            *word
        );
    }
}

#[test]
fn pgrequiressl_is_honoured_below_pgsslmode() {
    let env = FakeEnvironment::new().with("PGREQUIRESSL", "1");
    assert_eq!(target_with("", &env).sslmode, SslMode::Require);
    let env = env.with("PGSSLMODE", "verify-full");
    assert_eq!(target_with("", &env).sslmode, SslMode::VerifyFull);
    let env = FakeEnvironment::new().with("PGREQUIRESSL", "0");
    assert_eq!(target_with("", &env).sslmode, SslMode::Prefer);
}

#[test]
fn sslrootcert_system_strengthens_the_default_and_refuses_weaker_modes() {
    assert_eq!(target("sslrootcert=system").sslmode, SslMode::VerifyFull);
    let error = error("sslrootcert=system sslmode=require");
    assert_eq!(
        error.to_string(),
        "weak sslmode \"require\" (from the connection string) may not be used with \
         sslrootcert=system (use \"verify-full\")"
    );
}

#[test]
fn direct_ssl_negotiation_needs_a_requiring_sslmode() {
    let error = error("sslnegotiation=direct");
    assert_eq!(error.origin, Origin::Default);
    assert!(
        error
            .to_string()
            .starts_with("weak sslmode \"prefer\" (from libpq's default)"),
        "{error}"
    );
    assert_eq!(
        target("sslnegotiation=direct sslmode=require").sslnegotiation,
        SslNegotiation::Direct
    );
}

#[test]
fn connect_timeout_follows_libpq() {
    for (value, expected) in [
        ("0", None),
        ("-5", None),
        ("1", Some(2)),
        ("2", Some(2)),
        (" 10 ", Some(10)),
        ("+3", Some(3)),
    ] {
        assert_eq!(
            target(&format!("connect_timeout='{value}'")).connect_timeout,
            expected.map(Duration::from_secs),
            "{value}"
        );
    }
    for value in ["10s", "", "1.5", "2147483648"] {
        let error = error(&format!("connect_timeout='{value}'"));
        assert_eq!(error.keyword, "connect_timeout", "{value}");
    }
    let env = FakeEnvironment::new().with("PGCONNECT_TIMEOUT", "ten");
    assert!(error_with("", &env)
        .to_string()
        .contains("PGCONNECT_TIMEOUT"));
}

#[test]
fn keepalives_follow_libpq() {
    let target = target(
        "keepalives=1 keepalives_idle=30 keepalives_interval=-5 keepalives_count=3 \
         tcp_user_timeout=2500",
    );
    assert_eq!(
        target.keepalives,
        Keepalives {
            enabled: true,
            idle: Some(Duration::from_secs(30)),
            interval: Some(Duration::ZERO),
            count: Some(3),
        }
    );
    assert_eq!(target.tcp_user_timeout, Some(Duration::from_millis(2500)));
    assert!(!self::target("keepalives=0").keepalives.enabled);
    assert!(!self::target("keepalives=''").keepalives.enabled);
    assert!(self::target("keepalives=' 2'").keepalives.enabled);
    assert_eq!(error("keepalives='1 '").keyword, "keepalives");
    assert_eq!(error("keepalives=yes").keyword, "keepalives");
    assert_eq!(error("keepalives_idle=x").keyword, "keepalives_idle");
}

#[test]
fn passwords_come_from_the_string_or_pgpassword_only() {
    assert_eq!(
        target("password=secret").password.as_deref(),
        Some("secret")
    );
    assert_eq!(target("password=''").password, None);
    let env = FakeEnvironment::new().with("PGPASSWORD", "envpw");
    assert_eq!(
        target_with("password=strpw", &env).password.as_deref(),
        Some("strpw")
    );
}

#[test]
fn errors_never_show_the_password() {
    let secret = "S3cret-pw";
    let texts = [
        format!("password={secret} port=0"),
        format!("password={secret} sslmode=bogus"),
        format!("password={secret} host=a,b port=1,2,3"),
        format!("postgres://u:{secret}@h:99999/db"),
        format!("postgres://u:{secret}@h/db?connect_timeout=x"),
    ];
    for text in &texts {
        let message = error(text).to_string();
        assert!(!message.contains(secret), "{message}");
    }
}

#[test]
fn settings_the_target_does_not_carry_are_reported() {
    let env = FakeEnvironment::new()
        .with("PGSSLCRL", "/crl.pem")
        .with("PGSERVICE", "");
    let target = target_with("service=prod gssencmode=disable", &env);
    assert_eq!(
        target.unhandled,
        [
            UnhandledSetting {
                keyword: "service",
                origin: Origin::ConnectionString,
            },
            UnhandledSetting {
                keyword: "sslcrl",
                origin: Origin::Environment("PGSSLCRL"),
            },
            UnhandledSetting {
                keyword: "gssencmode",
                origin: Origin::ConnectionString,
            },
        ]
    );
}

#[test]
fn debug_masks_the_password() {
    let shown = format!("{:?}", target("user=alice password=hunter2"));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("alice"), "{shown}");
    assert!(shown.contains(MASK), "{shown}");
}

#[test]
fn password_for_prefers_the_explicit_password() {
    let target = target("host=h password=explicit passfile=/nonexistent");
    let mut warnings = Vec::new();
    let password = target.password_for(&target.endpoints[0], &mut |w| warnings.push(w));
    assert_eq!(password.as_deref(), Some("explicit"));
    assert!(warnings.is_empty());
}

#[test]
fn password_for_looks_each_endpoint_up_in_the_password_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let passfile = passfile(
        dir.path(),
        "# comment\n\
         h1:5432:app:alice:one\n\
         h2:6000:app:alice:two\n\
         localhost:5432:app:alice:socket\n\
         /tmp:5432:app:alice:tmpdir\n\
         *:*:other:*:wild\n",
        0o600,
    );
    let text = format!(
        "host=h1,h2,,/tmp,h3 port=5432,6000,5432,5432,5432 user=alice dbname=app passfile='{}'",
        passfile.display()
    );
    let target = target(&text);
    let mut warnings = Vec::new();
    let passwords: Vec<_> = target
        .endpoints
        .iter()
        .map(|endpoint| target.password_for(endpoint, &mut |w| warnings.push(w)))
        .collect();
    assert_eq!(
        passwords,
        [
            Some("one".to_owned()),
            Some("two".to_owned()),
            Some("socket".to_owned()),
            Some("tmpdir".to_owned()),
            None,
        ]
    );
    assert!(warnings.is_empty());
}

#[test]
fn password_for_reports_an_unsafe_password_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let passfile = passfile(dir.path(), "*:*:*:*:pw\n", 0o644);
    let text = format!("host=h passfile='{}'", passfile.display());
    let target = target(&text);
    let mut warnings = Vec::new();
    let password = target.password_for(&target.endpoints[0], &mut |w| warnings.push(w));
    assert_eq!(password, None);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("group or world access"),
        "{}",
        warnings[0]
    );
}

#[test]
fn the_integer_parser_matches_pq_parse_int_param() {
    assert_eq!(parse_int("42"), Some(42));
    assert_eq!(parse_int(" \t-7\n"), Some(-7));
    assert_eq!(parse_int("+7"), Some(7));
    assert_eq!(parse_int("-2147483648"), Some(i32::MIN));
    assert_eq!(parse_int("2147483648"), None);
    assert_eq!(parse_int(""), None);
    assert_eq!(parse_int("-"), None);
    assert_eq!(parse_int("1 2"), None);
    assert_eq!(parse_int("0x10"), None);
    assert_eq!(parse_int("+-1"), None);
}
