//! Reading a connection string into [`Options`], as libpq's
//! `parse_connection_string` does: a text starting with `postgresql://` or
//! `postgres://` is a URL, anything else a `keyword=value` list.
//!
//! Its errors are in [`super::error`], below every parser.

use super::error::ParseError;
use super::key_value;
use super::options::Options;
use super::url::uri_prefix_len;
use super::url_parse;

/// Parses a libpq connection string (URL or key=value); no defaults are
/// added. An empty string gives empty options.
///
/// One departure from libpq, where the userinfo of a URL ends (libpq: at
/// the first `@` before any `/`). With *authority* the text after `://` up
/// to the first `/` or `?`:
///
/// 1. if the authority contains `@`, the userinfo ends at its **last** `@`
///    (`postgres://bob:p@ss@db/app`: password `p@ss`);
/// 2. else, if a later `@` exists and the text before that first `@` has a
///    `:` whose preceding part (the user) contains none of `/ ? # [`, the
///    userinfo ends at that `@` (`postgres://u:a/b?c#d@h/db`: password
///    `a/b?c#d`);
/// 3. else there is none (`postgres://h/db?user=u@srv`: user `u@srv`).
///
/// Rule 2 reads `postgres://h:5432/db?application_name=a@b` as user `h`
/// with a password; write such an `@` as `%40`. The full reasoning is in
/// `url.rs`, shared with [`mask_passwords`](super::mask_passwords).
pub fn parse(text: &str) -> Result<Options, ParseError> {
    match uri_prefix_len(text) {
        Some(prefix_len) => url_parse::parse(text, prefix_len),
        None => key_value::parse(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conninfo::test_support::{expect, pairs};

    fn parsed(text: &str) -> Vec<(&'static str, String)> {
        pairs(&parse(text).unwrap_or_else(|error| panic!("{text}: {error}")))
    }

    #[test]
    fn libpq_documentation_url_examples() {
        assert_eq!(parsed("postgresql://"), expect(&[]));
        assert_eq!(
            parsed("postgresql://localhost"),
            expect(&[("host", "localhost")])
        );
        assert_eq!(
            parsed("postgresql://localhost:5433"),
            expect(&[("host", "localhost"), ("port", "5433")])
        );
        assert_eq!(
            parsed("postgresql://localhost/mydb"),
            expect(&[("dbname", "mydb"), ("host", "localhost")])
        );
        assert_eq!(
            parsed("postgresql://user@localhost"),
            expect(&[("host", "localhost"), ("user", "user")])
        );
        assert_eq!(
            parsed("postgresql://user:secret@localhost"),
            expect(&[
                ("host", "localhost"),
                ("password", "secret"),
                ("user", "user")
            ])
        );
        assert_eq!(
            parsed(
                "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp"
            ),
            expect(&[
                ("application_name", "myapp"),
                ("connect_timeout", "10"),
                ("dbname", "otherdb"),
                ("host", "localhost"),
                ("user", "other"),
            ])
        );
        assert_eq!(
            parsed(
                "postgresql://host1:123,host2:456/somedb?target_session_attrs=any&application_name=myapp"
            ),
            expect(&[
                ("application_name", "myapp"),
                ("dbname", "somedb"),
                ("host", "host1,host2"),
                ("port", "123,456"),
                ("target_session_attrs", "any"),
            ])
        );
        assert_eq!(
            parsed("postgresql://[2001:db8::1234]/database"),
            expect(&[("dbname", "database"), ("host", "2001:db8::1234")])
        );
        assert_eq!(
            parsed("postgresql://[::1]:5433"),
            expect(&[("host", "::1"), ("port", "5433")])
        );
        assert_eq!(
            parsed("postgresql:///dbname?host=/var/lib/postgresql"),
            expect(&[("dbname", "dbname"), ("host", "/var/lib/postgresql")])
        );
        assert_eq!(
            parsed("postgresql://%2Fvar%2Flib%2Fpostgresql/dbname"),
            expect(&[("dbname", "dbname"), ("host", "/var/lib/postgresql")])
        );
        assert_eq!(
            parsed("postgresql://localhost/mydb?user=other&password=secret"),
            expect(&[
                ("dbname", "mydb"),
                ("host", "localhost"),
                ("password", "secret"),
                ("user", "other"),
            ])
        );
        assert_eq!(
            parsed("postgres:///db?host=/var/run/postgresql"),
            expect(&[("dbname", "db"), ("host", "/var/run/postgresql")])
        );
    }

    #[test]
    fn libpq_documentation_key_value_examples() {
        assert_eq!(
            parsed("host=localhost port=5432 dbname=mydb connect_timeout=10"),
            expect(&[
                ("connect_timeout", "10"),
                ("dbname", "mydb"),
                ("host", "localhost"),
                ("port", "5432"),
            ])
        );
        assert_eq!(
            parsed("host=localhost,host2 port=5432,5433 target_session_attrs=read-write"),
            expect(&[
                ("host", "localhost,host2"),
                ("port", "5432,5433"),
                ("target_session_attrs", "read-write"),
            ])
        );
        assert_eq!(
            parsed(r"password='it\'s' user = 'a b'"),
            expect(&[("password", "it's"), ("user", "a b")])
        );
    }

    #[test]
    fn empty_text_gives_empty_options() {
        assert!(parse("").expect("empty parses").is_empty());
        assert!(parse("   ").expect("blank parses").is_empty());
    }

    #[test]
    fn unknown_keywords_are_refused_as_libpq_does() {
        assert_eq!(
            parse("host=h tty=x"),
            Err(ParseError::InvalidOption {
                offset: Some(7),
                suggestion: None
            })
        );
        assert_eq!(
            parse("postgres://h?hots=x"),
            Err(ParseError::InvalidQueryParameter {
                offset: 13,
                suggestion: Some("host")
            })
        );
    }

    #[test]
    fn a_url_scheme_is_only_recognised_at_the_very_start() {
        assert!(matches!(
            parse(" postgres://h"),
            Err(ParseError::MissingEquals { .. })
        ));
    }

    #[test]
    fn messages_name_keywords_and_never_values() {
        let secret = "s3cr3t-V@lue";
        let cases = [
            format!("password='{secret}"),
            format!("password={secret} {secret}"),
            format!("{secret}=x"),
            format!("postgres://u:{secret}%@h"),
            format!("postgres://h?password={secret}%"),
            format!("postgres://h?{secret}=x"),
            format!("postgres://h?options={secret}={secret}"),
            format!("postgres://u:{secret}@[::1"),
        ];
        for text in &cases {
            let error = parse(text).expect_err(text);
            let message = error.to_string();
            assert!(!message.contains(secret), "{text}: {message}");
            assert!(!message.contains("s3cr3t"), "{text}: {message}");
        }
        assert_eq!(
            parse("password='abc").map_err(|error| error.to_string()),
            Err("unterminated quoted value for \"password\"".to_owned())
        );
        assert_eq!(
            parse("host localhost").map_err(|error| error.to_string()),
            Err("missing \"=\" after \"host\" in connection info string".to_owned())
        );
        assert_eq!(
            parse("postgres://u:50%@h").map_err(|error| error.to_string()),
            Err("invalid percent-encoding in the URL's password".to_owned())
        );
    }
}
