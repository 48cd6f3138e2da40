//! Where a connection URL's userinfo and query are, shared by the parser and
//! the masker so that what is parsed as a password is exactly what is masked.
//!
//! # The userinfo rule (a deliberate departure from libpq)
//!
//! libpq ends the userinfo at the first `@` before the first `/`, so a
//! password must percent-encode `@`, `/`, `?` and `#`. Generated passwords
//! often contain them unencoded, and tokio-postgres accepts them, so pgfleet
//! does too. With *authority* meaning the text after `://` up to the first
//! `/` or `?`:
//!
//! 1. If the authority contains `@`, the userinfo ends at the **last** `@` in
//!    the authority: `postgres://bob:p@ss@db/app` has password `p@ss`.
//! 2. Otherwise, if an `@` comes later in the string, and the text before
//!    that first `@` contains a `:` whose preceding part (the user) contains
//!    none of `/ ? # [`, the userinfo ends at that first `@`:
//!    `postgres://u:a/b?c#d@h/db` has password `a/b?c#d`. (`[` is refused so
//!    an IPv6 host such as `[::1]` is never read as a user.)
//! 3. Otherwise there is no userinfo: `postgres://h/db?user=u@srv` has user
//!    `u@srv`.
//!
//! Rule 2 cannot tell a password from a port followed by an `@` in the
//! query: `postgres://h:5432/db?application_name=a@b` reads as user `h` with
//! password `5432/db?application_name=a`. Write such an `@` as `%40`. The
//! ambiguity errs towards a password, so such text is masked, never shown.

use std::ops::Range;

/// The two URL schemes libpq recognises, case-sensitively.
const URI_PREFIXES: [&str; 2] = ["postgresql://", "postgres://"];

/// The length of the `postgresql://` or `postgres://` prefix of `text`, or
/// `None` when `text` is not a URL (and so is a key=value string).
pub(super) fn uri_prefix_len(text: &str) -> Option<usize> {
    URI_PREFIXES
        .iter()
        .find(|prefix| text.starts_with(**prefix))
        .map(|prefix| prefix.len())
}

/// The userinfo of a URL, as byte ranges into the text after the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Userinfo {
    pub user: Range<usize>,
    /// After the first `:` of the userinfo, if it has one.
    pub password: Option<Range<usize>>,
    /// The `@` that ends the userinfo.
    pub at: usize,
}

impl Userinfo {
    /// Where the host list starts.
    pub fn hosts_start(&self) -> usize {
        self.at + 1
    }
}

/// Finds the userinfo of `rest` (the URL after its prefix) by the rule in
/// the module documentation.
pub(super) fn find_userinfo(rest: &str) -> Option<Userinfo> {
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let at = match rest[..authority_end].rfind('@') {
        Some(at) => at,
        None => {
            let at = rest.find('@')?;
            let colon = rest[..at].find(':')?;
            if rest[..colon].contains(['/', '?', '#', '[']) {
                return None;
            }
            at
        }
    };
    Some(match rest[..at].find(':') {
        Some(colon) => Userinfo {
            user: 0..colon,
            password: Some(colon + 1..at),
            at,
        },
        None => Userinfo {
            user: 0..at,
            password: None,
            at,
        },
    })
}

/// Where the query string (after `?`) starts in `rest`, given where the
/// host list starts: libpq's host list and database name both end at `?`.
pub(super) fn query_start(rest: &str, hosts_start: usize) -> Option<usize> {
    rest[hosts_start..]
        .find('?')
        .map(|question| hosts_start + question + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(rest: &str) -> Option<(&str, Option<&str>, &str)> {
        find_userinfo(rest).map(|userinfo| {
            (
                &rest[userinfo.user.clone()],
                userinfo.password.clone().map(|range| &rest[range]),
                &rest[userinfo.hosts_start()..],
            )
        })
    }

    #[test]
    fn prefixes_are_recognised_case_sensitively() {
        assert_eq!(uri_prefix_len("postgresql://h"), Some(13));
        assert_eq!(uri_prefix_len("postgres://h"), Some(11));
        assert_eq!(uri_prefix_len("POSTGRES://h"), None);
        assert_eq!(uri_prefix_len(" postgres://h"), None);
        assert_eq!(uri_prefix_len("host=h"), None);
    }

    #[test]
    fn plain_userinfo() {
        assert_eq!(parts("u:p@h/db"), Some(("u", Some("p"), "h/db")));
        assert_eq!(parts("u@h"), Some(("u", None, "h")));
        assert_eq!(parts("h/db"), None);
    }

    #[test]
    fn rule_one_ends_at_the_last_at_sign_of_the_authority() {
        assert_eq!(
            parts("bob:p@ss@db/app"),
            Some(("bob", Some("p@ss"), "db/app"))
        );
        assert_eq!(
            parts("bob:a:b@c@h?x=y"),
            Some(("bob", Some("a:b@c"), "h?x=y"))
        );
    }

    #[test]
    fn rule_two_allows_slash_question_and_hash_in_the_password() {
        assert_eq!(
            parts("u:a/b?c#d@h/db"),
            Some(("u", Some("a/b?c#d"), "h/db"))
        );
    }

    #[test]
    fn rule_three_leaves_an_at_sign_in_the_query_alone() {
        assert_eq!(parts("h/db?user=u@srv"), None);
        assert_eq!(parts("[::1]/db?user=u@srv"), None);
        assert_eq!(parts("h/x:y@z"), None);
    }

    #[test]
    fn rule_two_reads_a_port_before_a_query_at_sign_as_a_password() {
        // The documented ambiguity: encode the `@` as %40 to avoid it.
        assert_eq!(
            parts("h:5432/db?application_name=a@b"),
            Some(("h", Some("5432/db?application_name=a"), "b"))
        );
    }

    #[test]
    fn the_query_starts_after_the_userinfo() {
        let rest = "u:a?b@h/db?sslmode=require";
        let userinfo = find_userinfo(rest).expect("has userinfo");
        let start = query_start(rest, userinfo.hosts_start()).expect("has a query");
        assert_eq!(&rest[start..], "sslmode=require");
    }
}
