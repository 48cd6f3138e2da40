//! Who may use the HTTP actions (POST): decided here, as plain data.
//!
//! GETs stay open: they change nothing. An action changes what the fleet
//! does, so:
//! - a request another site's page made a browser send (an `Origin`
//!   header naming another host, or `Sec-Fetch-Site: cross-site`) is
//!   refused, token or not: the status page's buttons cannot be pressed
//!   from elsewhere;
//! - with `http.token_file`, the token is needed (as `Authorization:
//!   Bearer`, or the status page's cookie), compared in constant time;
//! - without one, actions are open on a loopback address (whoever can
//!   reach it is on this machine, and can NOTIFY or signal pgfleet as
//!   well), and refused on any other, saying what to set.

use crate::conninfo::percent;

/// What a request brings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The token presented, if any.
    pub token: Option<&'a str>,
    /// `Origin`'s host (and port), if the header was sent.
    pub origin: Option<&'a str>,
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// `Sec-Fetch-Site: cross-site`.
    pub cross_site: bool,
}

/// Why an action is refused: an HTTP status and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: &'static str,
}

/// Whether `request` may act; `loopback`: `http.listen` is a loopback
/// address; `expected`: the token from `http.token_file`, if set.
pub fn authorize(
    loopback: bool,
    expected: Option<&str>,
    request: Request<'_>,
) -> Result<(), Refusal> {
    let other_site = request.cross_site
        || match (request.origin, request.host) {
            (Some(origin), Some(host)) => origin != host,
            (Some(_), None) => true,
            (None, _) => false,
        };
    if other_site {
        return Err(Refusal {
            status: 403,
            why: "a request from another site's page is refused",
        });
    }
    match expected {
        Some(expected) => match request.token {
            Some(token) if same(token.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(Refusal {
                status: 403,
                why: "the token is wrong",
            }),
            None => Err(Refusal {
                status: 401,
                why:
                    "this action needs the token of http.token_file (Authorization: Bearer <token>)",
            }),
        },
        None if loopback => Ok(()),
        None => Err(Refusal {
            status: 403,
            why:
                "http.listen is not a loopback address: actions need a token (set http.token_file)",
        }),
    }
}

/// Equal, in a time that does not tell how much of it matched (the
/// length aside).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let differ = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    differ == 0
}

/// A token as a cookie value (a token may hold `;`, `,`, spaces).
pub fn cookie_value(token: &str) -> String {
    percent::encode(token)
}

/// The token a cookie value holds (see [`cookie_value`]).
pub fn token_of_cookie(value: &str) -> String {
    percent::decode_leniently(value)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// The host (and port) of an `Origin` value: `http://127.0.0.1:8187` →
/// `127.0.0.1:8187`; `null` and what does not parse, as written.
pub fn origin_host(origin: &str) -> &str {
    origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_this_page<'a>(token: Option<&'a str>) -> Request<'a> {
        Request {
            token,
            origin: Some("127.0.0.1:8187"),
            host: Some("127.0.0.1:8187"),
            cross_site: false,
        }
    }

    #[test]
    fn on_loopback_without_a_token_file_actions_are_open() {
        assert_eq!(authorize(true, None, Request::default()), Ok(()));
        assert_eq!(authorize(true, None, from_this_page(None)), Ok(()));
    }

    #[test]
    fn elsewhere_without_a_token_file_actions_are_refused() {
        let refused = authorize(false, None, Request::default()).expect_err("refused");
        assert_eq!(refused.status, 403);
        assert!(refused.why.contains("http.token_file"));
    }

    #[test]
    fn with_a_token_file_the_token_is_needed_everywhere() {
        for loopback in [true, false] {
            assert_eq!(
                authorize(loopback, Some("s3cret"), from_this_page(Some("s3cret"))),
                Ok(())
            );
            assert_eq!(
                authorize(loopback, Some("s3cret"), from_this_page(None)).map_err(|r| r.status),
                Err(401)
            );
            assert_eq!(
                authorize(loopback, Some("s3cret"), from_this_page(Some("s3cre")))
                    .map_err(|r| r.status),
                Err(403)
            );
        }
    }

    #[test]
    fn another_sites_page_is_refused_even_with_the_token() {
        let forged = Request {
            token: Some("s3cret"),
            origin: Some("evil.example"),
            host: Some("127.0.0.1:8187"),
            cross_site: false,
        };
        assert_eq!(
            authorize(true, Some("s3cret"), forged).map_err(|r| r.status),
            Err(403)
        );
        assert_eq!(
            authorize(true, None, forged).map_err(|r| r.status),
            Err(403)
        );
        let fetch = Request {
            cross_site: true,
            ..Request::default()
        };
        assert_eq!(authorize(true, None, fetch).map_err(|r| r.status), Err(403));
    }

    #[test]
    fn a_token_goes_through_its_cookie_unchanged() {
        for token in ["s3cret", "with; odd, chars =%", "ünïcode"] {
            let value = cookie_value(token);
            assert!(value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"%-._~".contains(&b)));
            let header = format!("other=1; pgfleet_token={value}; x=y");
            let read = cookie(&header, "pgfleet_token").map(token_of_cookie);
            assert_eq!(read.as_deref(), Some(token));
        }
        assert_eq!(cookie("a=1", "pgfleet_token"), None);
    }

    #[test]
    fn an_origin_is_read_as_its_host() {
        assert_eq!(origin_host("http://127.0.0.1:8187"), "127.0.0.1:8187");
        assert_eq!(origin_host("https://pgfleet.example/"), "pgfleet.example");
        assert_eq!(origin_host("null"), "null");
    }
}
