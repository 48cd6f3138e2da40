//! libpq's connection URLs, as `conninfo_uri_parse_options` reads them,
//! except for where the userinfo ends (see [`super::url`]).
//!
//! `postgresql://[user[:password]@][host][:port][,host[:port]...][/dbname][?keyword=value&...]`
//!
//! As in libpq: hosts and ports are collected into comma lists with one
//! entry per host, so `a:1,b` gives `host=a,b port=1,` (an empty port means
//! the default, 5432); an IPv6 address is written in brackets; empty parts
//! are not stored, so `postgresql:///db` leaves `host` to `PGHOST`; every
//! part is percent-decoded after it is split out; any keyword may appear in
//! the query, `ssl=true` meaning `sslmode=require`; `#` has no special
//! meaning.

use super::error::{ParseError, UrlPart};
use super::keywords;
use super::options::Options;
use super::percent;
use super::url::find_userinfo;

/// Parses `text`, whose first `prefix_len` bytes are `postgres[ql]://`.
pub(super) fn parse(text: &str, prefix_len: usize) -> Result<Options, ParseError> {
    let rest = &text[prefix_len..];
    let mut options = Options::new();
    let mut position = 0;

    if let Some(userinfo) = find_userinfo(rest) {
        store_decoded(
            &mut options,
            "user",
            &rest[userinfo.user.clone()],
            UrlPart::User,
        )?;
        if let Some(password) = userinfo.password.clone() {
            store_decoded(&mut options, "password", &rest[password], UrlPart::Password)?;
        }
        position = userinfo.hosts_start();
    }

    let hosts = read_hosts(rest, position, prefix_len)?;
    store_decoded(&mut options, "host", &hosts.hosts, UrlPart::Host)?;
    store_decoded(&mut options, "port", &hosts.ports, UrlPart::Port)?;
    position = hosts.end;

    if rest[position..].starts_with('/') {
        let start = position + 1;
        let end = rest[start..].find('?').map_or(rest.len(), |at| start + at);
        store_decoded(&mut options, "dbname", &rest[start..end], UrlPart::Dbname)?;
        position = end;
    }
    if rest[position..].starts_with('?') {
        parse_query(text, prefix_len + position + 1, &mut options)?;
    }
    Ok(options)
}

/// The host list of a URL, before decoding.
struct HostList {
    hosts: String,
    ports: String,
    /// Where the list ends: at `/`, `?` or the end of the text.
    end: usize,
}

/// Reads `host[:port][,host[:port]...]` from `rest[start..]`; `rest` starts
/// at `text_offset` in the whole text, for error positions.
fn read_hosts(rest: &str, start: usize, text_offset: usize) -> Result<HostList, ParseError> {
    let bytes = rest.as_bytes();
    let mut list = HostList {
        hosts: String::new(),
        ports: String::new(),
        end: start,
    };
    let mut position = start;
    loop {
        if bytes.get(position) == Some(&b'[') {
            let address_start = position + 1;
            let close = rest[address_start..]
                .find(']')
                .map(|at| address_start + at)
                .ok_or(ParseError::UnterminatedIpv6Host)?;
            if close == address_start {
                return Err(ParseError::EmptyIpv6Host);
            }
            list.hosts.push_str(&rest[address_start..close]);
            position = close + 1;
            if !matches!(bytes.get(position), None | Some(b':' | b'/' | b'?' | b',')) {
                return Err(ParseError::UnexpectedCharacterAfterIpv6Host {
                    offset: text_offset + position,
                });
            }
        } else {
            let end = find_from(rest, position, &[':', '/', '?', ',']);
            list.hosts.push_str(&rest[position..end]);
            position = end;
        }
        if bytes.get(position) == Some(&b':') {
            let port_start = position + 1;
            let end = find_from(rest, port_start, &['/', '?', ',']);
            list.ports.push_str(&rest[port_start..end]);
            position = end;
        }
        if bytes.get(position) != Some(&b',') {
            list.end = position;
            return Ok(list);
        }
        position += 1;
        list.hosts.push(',');
        list.ports.push(',');
    }
}

/// Parses `keyword=value&...` starting at `text[start..]`.
fn parse_query(text: &str, start: usize, options: &mut Options) -> Result<(), ParseError> {
    let mut parameter_start = start;
    while parameter_start < text.len() {
        let parameter_end = find_from(text, parameter_start, &['&']);
        let parameter = &text[parameter_start..parameter_end];
        let mut halves = parameter.split('=');
        let (raw_keyword, raw_value) = match (halves.next(), halves.next(), halves.next()) {
            (Some(keyword), Some(value), None) => (keyword, value),
            (Some(keyword), Some(_), Some(_)) => {
                return Err(ParseError::QueryParameterWithExtraEquals {
                    keyword: keywords::keyword(keyword).map(|known| known.name),
                    offset: parameter_start,
                })
            }
            _ => {
                return Err(ParseError::QueryParameterWithoutEquals {
                    offset: parameter_start,
                })
            }
        };
        let keyword = percent::decode(raw_keyword, UrlPart::QueryKeyword)?;
        let known = keywords::keyword(&keyword).map(|known| known.name);
        let value = percent::decode(raw_value, UrlPart::QueryValue(known))?;
        let stored = if keyword == "ssl" && value == "true" {
            options.set("sslmode", "require")
        } else {
            options.set(&keyword, value)
        };
        stored.map_err(|_| ParseError::InvalidQueryParameter {
            offset: parameter_start,
            suggestion: keywords::suggestion_for(&keyword),
        })?;
        parameter_start = parameter_end + 1;
    }
    Ok(())
}

/// Decodes and stores `raw` unless it is empty, as libpq skips empty parts.
fn store_decoded(
    options: &mut Options,
    keyword: &str,
    raw: &str,
    part: UrlPart,
) -> Result<(), ParseError> {
    if raw.is_empty() {
        return Ok(());
    }
    let decoded = percent::decode(raw, part)?;
    // The keywords stored here are constants of this file, all known.
    options
        .set(keyword, decoded)
        .map_err(|_| ParseError::InvalidOption {
            offset: None,
            suggestion: None,
        })
}

/// The position of the first of `stops` in `text[from..]`, or the end.
fn find_from(text: &str, from: usize, stops: &[char]) -> usize {
    text[from..].find(stops).map_or(text.len(), |at| from + at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conninfo::test_support::{self, expect};
    use crate::conninfo::url::uri_prefix_len;

    fn parse_url(text: &str) -> Result<Options, ParseError> {
        parse(text, uri_prefix_len(text).expect("a URL"))
    }

    fn pairs(text: &str) -> Vec<(&'static str, String)> {
        test_support::pairs(&parse_url(text).expect("parses"))
    }

    #[test]
    fn hosts_without_ports_leave_empty_port_entries() {
        assert_eq!(
            pairs("postgres://a:1,b,[::1]:3/db"),
            expect(&[("dbname", "db"), ("host", "a,b,::1"), ("port", "1,,3")])
        );
        assert_eq!(
            pairs("postgres://a,b"),
            expect(&[("host", "a,b"), ("port", ",")])
        );
    }

    #[test]
    fn empty_user_password_and_dbname_are_not_stored() {
        assert_eq!(pairs("postgres://:@h/"), expect(&[("host", "h")]));
        assert_eq!(pairs("postgres://@/?"), expect(&[]));
    }

    #[test]
    fn a_decoded_comma_in_a_host_splits_like_a_written_one() {
        assert_eq!(pairs("postgres://a%2Cb"), expect(&[("host", "a,b")]));
    }

    #[test]
    fn query_parameters_may_set_any_keyword_and_override_the_path() {
        assert_eq!(
            pairs("postgres://h/a?dbname=b&options=-c%20x%3Dy&requiressl=1"),
            expect(&[
                ("dbname", "b"),
                ("host", "h"),
                ("options", "-c x=y"),
                ("sslmode", "require"),
            ])
        );
    }

    #[test]
    fn ssl_true_means_sslmode_require_and_nothing_else_does() {
        assert_eq!(
            pairs("postgres://h?ssl=true"),
            expect(&[("host", "h"), ("sslmode", "require")])
        );
        assert_eq!(
            parse_url("postgres://h?ssl=false"),
            Err(ParseError::InvalidQueryParameter {
                offset: 13,
                suggestion: None
            })
        );
    }

    #[test]
    fn a_trailing_ampersand_is_fine_and_an_empty_parameter_is_not() {
        assert_eq!(
            pairs("postgres://h?port=1&"),
            expect(&[("host", "h"), ("port", "1")])
        );
        assert_eq!(
            parse_url("postgres://h?port=1&&user=u"),
            Err(ParseError::QueryParameterWithoutEquals { offset: 20 })
        );
    }

    #[test]
    fn query_parameter_errors() {
        assert_eq!(
            parse_url("postgres://h?options=-c a=b"),
            Err(ParseError::QueryParameterWithExtraEquals {
                keyword: Some("options"),
                offset: 13
            })
        );
        assert_eq!(
            parse_url("postgres://h?password"),
            Err(ParseError::QueryParameterWithoutEquals { offset: 13 })
        );
        assert_eq!(
            parse_url("postgres://h?pass%2=x"),
            Err(ParseError::InvalidPercentEncoding {
                part: UrlPart::QueryKeyword
            })
        );
        assert_eq!(
            parse_url("postgres://h?password=50%"),
            Err(ParseError::InvalidPercentEncoding {
                part: UrlPart::QueryValue(Some("password"))
            })
        );
    }

    #[test]
    fn ipv6_errors() {
        assert_eq!(
            parse_url("postgres://[::1/db"),
            Err(ParseError::UnterminatedIpv6Host)
        );
        assert_eq!(
            parse_url("postgres://[]/db"),
            Err(ParseError::EmptyIpv6Host)
        );
        assert_eq!(
            parse_url("postgres://[::1]x/db"),
            Err(ParseError::UnexpectedCharacterAfterIpv6Host { offset: 16 })
        );
    }

    #[test]
    fn hash_is_an_ordinary_character() {
        assert_eq!(
            pairs("postgres://h/db#frag"),
            expect(&[("dbname", "db#frag"), ("host", "h")])
        );
    }

    #[test]
    fn userinfo_follows_the_pgfleet_rule() {
        assert_eq!(
            pairs("postgres://bob:p@ss@db/app"),
            expect(&[
                ("dbname", "app"),
                ("host", "db"),
                ("password", "p@ss"),
                ("user", "bob"),
            ])
        );
        assert_eq!(
            pairs("postgres://u:a/b?c#d@h/db"),
            expect(&[
                ("dbname", "db"),
                ("host", "h"),
                ("password", "a/b?c#d"),
                ("user", "u"),
            ])
        );
        assert_eq!(
            pairs("postgres://h/db?user=u@srv"),
            expect(&[("dbname", "db"), ("host", "h"), ("user", "u@srv")])
        );
    }
}
