//! Why a connection string could not be read: [`ParseError`], and the
//! [`UrlPart`] a percent-decoding error is in.
//!
//! Errors never repeat a value, and name a word only when it is a libpq
//! keyword: an unknown word may be half of a password that was meant to be
//! quoted, so it is pointed at by byte offset instead.
//!
//! Every reader (percent-decoding, `keyword=value`, URLs) and [`Options`]
//! itself report these, and [`parse()`] sits above them all; declared here,
//! depending on nothing, so the parsers depend on it and never on each
//! other's callers.
//!
//! [`Options`]: super::Options
//! [`parse()`]: super::parse()

use std::error::Error;
use std::fmt;

/// The part of a URL a percent-decoding error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlPart {
    User,
    Password,
    Host,
    Port,
    Dbname,
    QueryKeyword,
    /// The value of a query parameter, named when it is a known keyword.
    QueryValue(Option<&'static str>),
}

impl fmt::Display for UrlPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlPart::User => f.write_str("the URL's user name"),
            UrlPart::Password => f.write_str("the URL's password"),
            UrlPart::Host => f.write_str("the URL's host"),
            UrlPart::Port => f.write_str("the URL's port"),
            UrlPart::Dbname => f.write_str("the URL's database name"),
            UrlPart::QueryKeyword => f.write_str("a URL query parameter's name"),
            UrlPart::QueryValue(Some(keyword)) => {
                write!(f, "the URL query parameter \"{keyword}\"")
            }
            UrlPart::QueryValue(None) => f.write_str("a URL query parameter's value"),
        }
    }
}

/// Why a connection string could not be read. Offsets are byte offsets
/// into the connection string; keywords are always libpq's own names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A word not followed by `=` in a key=value string.
    MissingEquals {
        keyword: Option<&'static str>,
        offset: usize,
    },
    /// A `'` with no closing `'`.
    UnterminatedQuote {
        keyword: Option<&'static str>,
        offset: usize,
    },
    /// A word that is not a libpq keyword (`offset` is `None` when the word
    /// came from code, through [`Options::set`](super::Options::set)).
    InvalidOption {
        offset: Option<usize>,
        suggestion: Option<&'static str>,
    },
    /// A URL query parameter that is not a libpq keyword.
    InvalidQueryParameter {
        offset: usize,
        suggestion: Option<&'static str>,
    },
    QueryParameterWithoutEquals {
        offset: usize,
    },
    QueryParameterWithExtraEquals {
        keyword: Option<&'static str>,
        offset: usize,
    },
    InvalidPercentEncoding {
        part: UrlPart,
    },
    PercentEncodedNul {
        part: UrlPart,
    },
    PercentEncodingNotUtf8 {
        part: UrlPart,
    },
    UnterminatedIpv6Host,
    EmptyIpv6Host,
    UnexpectedCharacterAfterIpv6Host {
        offset: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::MissingEquals {
                keyword: Some(keyword),
                ..
            } => write!(
                f,
                "missing \"=\" after \"{keyword}\" in connection info string"
            ),
            ParseError::MissingEquals {
                keyword: None,
                offset,
            } => write!(
                f,
                "missing \"=\" after the word at byte {offset} of the connection info string \
                 (a value containing spaces must be single-quoted)"
            ),
            ParseError::UnterminatedQuote {
                keyword: Some(keyword),
                ..
            } => write!(f, "unterminated quoted value for \"{keyword}\""),
            ParseError::UnterminatedQuote {
                keyword: None,
                offset,
            } => write!(f, "unterminated quoted value at byte {offset}"),
            ParseError::InvalidOption { offset, suggestion } => {
                f.write_str("invalid connection option")?;
                if let Some(offset) = offset {
                    write!(f, " at byte {offset}")?;
                }
                write_suggestion(f, *suggestion)
            }
            ParseError::InvalidQueryParameter { offset, suggestion } => {
                write!(f, "invalid URI query parameter at byte {offset}")?;
                write_suggestion(f, *suggestion)
            }
            ParseError::QueryParameterWithoutEquals { offset } => write!(
                f,
                "missing key/value separator \"=\" in the URI query parameter at byte {offset}"
            ),
            ParseError::QueryParameterWithExtraEquals {
                keyword: Some(keyword),
                ..
            } => write!(
                f,
                "extra key/value separator \"=\" in URI query parameter \"{keyword}\" \
                 (write \"=\" in a value as %3D)"
            ),
            ParseError::QueryParameterWithExtraEquals {
                keyword: None,
                offset,
            } => write!(
                f,
                "extra key/value separator \"=\" in the URI query parameter at byte {offset}"
            ),
            ParseError::InvalidPercentEncoding { part } => {
                write!(f, "invalid percent-encoding in {part}")
            }
            ParseError::PercentEncodedNul { part } => {
                write!(f, "forbidden value %00 in percent-encoded {part}")
            }
            ParseError::PercentEncodingNotUtf8 { part } => {
                write!(f, "percent-encoded {part} does not decode to UTF-8")
            }
            ParseError::UnterminatedIpv6Host => f.write_str(
                "end of string reached when looking for matching \"]\" in IPv6 host address in URI",
            ),
            ParseError::EmptyIpv6Host => f.write_str("IPv6 host address may not be empty in URI"),
            ParseError::UnexpectedCharacterAfterIpv6Host { offset } => write!(
                f,
                "unexpected character at byte {offset} in URI (expected \":\" or \"/\" after \"]\")"
            ),
        }
    }
}

fn write_suggestion(f: &mut fmt::Formatter<'_>, suggestion: Option<&str>) -> fmt::Result {
    match suggestion {
        Some(keyword) => write!(f, " (did you mean \"{keyword}\"?)"),
        None => Ok(()),
    }
}

impl Error for ParseError {}
