//! The connection keywords libpq knows, with the environment variable each
//! falls back to.
//!
//! One table drives the parser (which keywords exist), the resolver (which
//! variable fills a gap) and the masker (which values are secret), so the
//! three can never disagree. It copies `PQconninfoOptions[]` from libpq's
//! `fe-connect.c` (PostgreSQL 17) plus the two protocol-version keywords of
//! PostgreSQL 18; a keyword missing here is refused as `invalid connection
//! option`, exactly as an older libpq refuses a newer keyword.
//!
//! [`MASK`], what a secret value is shown as, is here beside the table that
//! says which values are secret: `Debug` of [`Options`](super::Options) and
//! [`Target`](super::Target), the resolver's messages and the masker all
//! use it, and none of them has to depend on another to do so.

/// One libpq connection keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyword {
    /// The keyword as written in a connection string.
    pub name: &'static str,
    /// The environment variable libpq reads when the keyword is not given.
    pub env_var: Option<&'static str>,
    /// Whether the value is a secret that must never be shown.
    pub secret: bool,
}

const fn plain(name: &'static str, env_var: &'static str) -> Keyword {
    Keyword {
        name,
        env_var: Some(env_var),
        secret: false,
    }
}

const fn no_env(name: &'static str) -> Keyword {
    Keyword {
        name,
        env_var: None,
        secret: false,
    }
}

const fn secret(name: &'static str, env_var: Option<&'static str>) -> Keyword {
    Keyword {
        name,
        env_var,
        secret: true,
    }
}

/// Every keyword libpq accepts, in libpq's own order.
pub const KEYWORDS: &[Keyword] = &[
    plain("service", "PGSERVICE"),
    plain("user", "PGUSER"),
    secret("password", Some("PGPASSWORD")),
    plain("passfile", "PGPASSFILE"),
    plain("channel_binding", "PGCHANNELBINDING"),
    plain("connect_timeout", "PGCONNECT_TIMEOUT"),
    plain("dbname", "PGDATABASE"),
    plain("host", "PGHOST"),
    plain("hostaddr", "PGHOSTADDR"),
    plain("port", "PGPORT"),
    plain("client_encoding", "PGCLIENTENCODING"),
    plain("options", "PGOPTIONS"),
    plain("application_name", "PGAPPNAME"),
    no_env("fallback_application_name"),
    no_env("keepalives"),
    no_env("keepalives_idle"),
    no_env("keepalives_interval"),
    no_env("keepalives_count"),
    no_env("tcp_user_timeout"),
    plain("sslmode", "PGSSLMODE"),
    plain("sslnegotiation", "PGSSLNEGOTIATION"),
    plain("sslcompression", "PGSSLCOMPRESSION"),
    plain("sslcert", "PGSSLCERT"),
    plain("sslkey", "PGSSLKEY"),
    plain("sslcertmode", "PGSSLCERTMODE"),
    secret("sslpassword", None),
    plain("sslrootcert", "PGSSLROOTCERT"),
    plain("sslcrl", "PGSSLCRL"),
    plain("sslcrldir", "PGSSLCRLDIR"),
    plain("sslsni", "PGSSLSNI"),
    plain("requirepeer", "PGREQUIREPEER"),
    plain("require_auth", "PGREQUIREAUTH"),
    plain("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
    plain("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION"),
    plain("gssencmode", "PGGSSENCMODE"),
    plain("krbsrvname", "PGKRBSRVNAME"),
    plain("gsslib", "PGGSSLIB"),
    plain("gssdelegation", "PGGSSDELEGATION"),
    no_env("replication"),
    plain("target_session_attrs", "PGTARGETSESSIONATTRS"),
    plain("load_balance_hosts", "PGLOADBALANCEHOSTS"),
    secret("scram_client_key", None),
    secret("scram_server_key", None),
    plain("min_protocol_version", "PGMINPROTOCOLVERSION"),
    plain("max_protocol_version", "PGMAXPROTOCOLVERSION"),
];

/// The keyword named `name` (case-sensitive, as in libpq).
pub fn keyword(name: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|keyword| keyword.name == name)
}

/// Whether `name` is a keyword whose value is secret.
pub fn is_secret(name: &str) -> bool {
    keyword(name).is_some_and(|keyword| keyword.secret)
}

/// What every hidden value is replaced with.
pub const MASK: &str = "********";

/// libpq's backwards-compatible spelling of `sslmode`: `requiressl=1` means
/// `sslmode=require`, anything else `sslmode=prefer` (`conninfo_storeval`).
pub(super) fn translate_requiressl<'v>(name: &str, value: &'v str) -> Option<&'v str> {
    (name == "requiressl").then(|| {
        if value.starts_with('1') {
            "require"
        } else {
            "prefer"
        }
    })
}

/// A known keyword close to `word` (a typo such as `hots`), to suggest in an
/// error message without repeating `word`, which might be part of a secret.
pub(super) fn suggestion_for(word: &str) -> Option<&'static str> {
    const MAX_DISTANCE: usize = 2;
    KEYWORDS
        .iter()
        .map(|keyword| (edit_distance(word, keyword.name), keyword.name))
        .filter(|(distance, _)| *distance <= MAX_DISTANCE)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance over chars; keywords are short, so the quadratic
/// table is no concern.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            let insertion = current[j] + 1;
            let deletion = previous[j + 1] + 1;
            current.push(substitution.min(insertion).min(deletion));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_is_listed_once() {
        for (i, keyword) in KEYWORDS.iter().enumerate() {
            assert!(
                KEYWORDS[i + 1..].iter().all(|k| k.name != keyword.name),
                "{} listed twice",
                keyword.name
            );
        }
    }

    #[test]
    fn the_keywords_pgfleet_was_asked_to_accept_are_known() {
        for name in [
            "host",
            "hostaddr",
            "port",
            "dbname",
            "user",
            "password",
            "passfile",
            "connect_timeout",
            "application_name",
            "fallback_application_name",
            "options",
            "sslmode",
            "sslrootcert",
            "sslcert",
            "sslkey",
            "sslcrl",
            "sslpassword",
            "sslnegotiation",
            "sslcompression",
            "sslsni",
            "channel_binding",
            "target_session_attrs",
            "load_balance_hosts",
            "keepalives",
            "keepalives_idle",
            "keepalives_interval",
            "keepalives_count",
            "tcp_user_timeout",
            "require_auth",
            "gssencmode",
            "krbsrvname",
            "service",
        ] {
            assert!(keyword(name).is_some(), "{name} is not known");
        }
    }

    #[test]
    fn keywords_are_case_sensitive_as_in_libpq() {
        assert!(keyword("HOST").is_none());
    }

    #[test]
    fn environment_variables_match_libpq() {
        let env = |name| keyword(name).and_then(|k| k.env_var);
        assert_eq!(env("host"), Some("PGHOST"));
        assert_eq!(env("dbname"), Some("PGDATABASE"));
        assert_eq!(env("application_name"), Some("PGAPPNAME"));
        assert_eq!(env("target_session_attrs"), Some("PGTARGETSESSIONATTRS"));
        assert_eq!(env("fallback_application_name"), None);
        assert_eq!(env("sslpassword"), None);
    }

    #[test]
    fn passwords_are_secret() {
        assert!(is_secret("password"));
        assert!(is_secret("sslpassword"));
        assert!(!is_secret("user"));
        assert!(!is_secret("nonsense"));
    }

    #[test]
    fn requiressl_translates_like_libpq() {
        assert_eq!(translate_requiressl("requiressl", "1"), Some("require"));
        assert_eq!(translate_requiressl("requiressl", "0"), Some("prefer"));
        assert_eq!(translate_requiressl("sslmode", "1"), None);
    }

    #[test]
    fn typos_get_a_suggestion_and_nonsense_does_not() {
        assert_eq!(suggestion_for("hots"), Some("host"));
        assert_eq!(suggestion_for("dbnmae"), Some("dbname"));
        assert_eq!(suggestion_for("xq7!Lp0"), None);
    }
}
