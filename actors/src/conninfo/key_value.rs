//! libpq's `keyword=value` connection strings, as `conninfo_parse` reads
//! them.
//!
//! The rules, all libpq's: pairs are separated by whitespace (C `isspace`:
//! space, `\t`, `\n`, `\v`, `\f`, `\r`); whitespace may surround `=`; a
//! value starting with `'` runs to the next unescaped `'` and may hold
//! whitespace; otherwise it ends at whitespace. In both, a backslash takes
//! the next character literally (`\'`, `\\`, `\ `). SQL's doubled quote is
//! *not* an escape: `'it''s'` is the value `it` followed by a stray word.
//! After `=`, whitespace is skipped even into the next pair, so `host= port=1`
//! sets `host` to `port=1`, as libpq does.
//!
//! The tokenizer keeps each value's byte range so the masker can replace
//! exactly the text a password occupies.

use std::ops::Range;

use super::error::ParseError;
use super::keywords;
use super::options::Options;

/// One `keyword=value` pair as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pair {
    /// Where the keyword is in the text.
    pub keyword: Range<usize>,
    /// The value with quotes and escapes removed.
    pub value: String,
    /// Where the value is in the text, quotes included.
    pub raw_value: Range<usize>,
}

/// C's `isspace` in the C locale.
pub(super) fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits `text` into pairs without judging the keywords.
pub(super) fn tokenize(text: &str) -> Result<Vec<Pair>, ParseError> {
    let bytes = text.as_bytes();
    let skip_spaces = |mut position: usize| {
        while bytes.get(position).is_some_and(|byte| is_c_space(*byte)) {
            position += 1;
        }
        position
    };
    let mut pairs = Vec::new();
    let mut position = skip_spaces(0);
    while position < bytes.len() {
        let keyword_start = position;
        while bytes
            .get(position)
            .is_some_and(|byte| *byte != b'=' && !is_c_space(*byte))
        {
            position += 1;
        }
        let keyword = keyword_start..position;
        position = skip_spaces(position);
        if bytes.get(position) != Some(&b'=') {
            return Err(ParseError::MissingEquals {
                keyword: known_keyword(&text[keyword]),
                offset: keyword_start,
            });
        }
        position = skip_spaces(position + 1);
        let value_start = position;
        let (value, value_end) = if bytes.get(position) == Some(&b'\'') {
            read_quoted(bytes, position + 1).ok_or_else(|| ParseError::UnterminatedQuote {
                keyword: known_keyword(&text[keyword.clone()]),
                offset: value_start,
            })?
        } else {
            read_unquoted(bytes, position)
        };
        pairs.push(Pair {
            keyword,
            value,
            raw_value: value_start..value_end,
        });
        position = skip_spaces(value_end);
    }
    Ok(pairs)
}

/// Parses a key=value string into options; unknown keywords are refused by
/// position, since a stray word may be half of an unquoted password.
pub(super) fn parse(text: &str) -> Result<Options, ParseError> {
    let mut options = Options::new();
    for pair in tokenize(text)? {
        let keyword = &text[pair.keyword.clone()];
        if options.set(keyword, pair.value).is_err() {
            return Err(ParseError::InvalidOption {
                offset: Some(pair.keyword.start),
                suggestion: keywords::suggestion_for(keyword),
            });
        }
    }
    Ok(options)
}

/// The keyword's canonical name if `word` is one, for error messages.
fn known_keyword(word: &str) -> Option<&'static str> {
    keywords::keyword(word).map(|keyword| keyword.name)
}

/// Reads a quoted value whose text starts at `start` (after the opening
/// quote); returns the value and the position after the closing quote.
fn read_quoted(bytes: &[u8], start: usize) -> Option<(String, usize)> {
    let mut value = Vec::new();
    let mut position = start;
    loop {
        match *bytes.get(position)? {
            b'\\' => {
                position += 1;
                if let Some(escaped) = bytes.get(position) {
                    value.push(*escaped);
                    position += 1;
                }
            }
            b'\'' => return Some((into_string(value), position + 1)),
            byte => {
                value.push(byte);
                position += 1;
            }
        }
    }
}

/// Reads an unquoted value up to whitespace or the end.
fn read_unquoted(bytes: &[u8], start: usize) -> (String, usize) {
    let mut value = Vec::new();
    let mut position = start;
    while let Some(&byte) = bytes.get(position) {
        if is_c_space(byte) {
            break;
        }
        if byte == b'\\' {
            position += 1;
            if let Some(escaped) = bytes.get(position) {
                value.push(*escaped);
                position += 1;
            }
        } else {
            value.push(byte);
            position += 1;
        }
    }
    (into_string(value), position)
}

/// Only ASCII backslashes are ever dropped, so the bytes stay UTF-8; the
/// lossy fallback is unreachable but keeps this free of panics.
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(String, String)> {
        tokenize(text)
            .expect("tokenizes")
            .into_iter()
            .map(|pair| (text[pair.keyword].to_owned(), pair.value))
            .collect()
    }

    fn pair(keyword: &str, value: &str) -> (String, String) {
        (keyword.to_owned(), value.to_owned())
    }

    #[test]
    fn empty_and_blank_strings_have_no_pairs() {
        assert_eq!(values(""), []);
        assert_eq!(values(" \t\n "), []);
    }

    #[test]
    fn whitespace_around_equals_is_allowed() {
        assert_eq!(
            values("host = a\tport=\n5432 "),
            [pair("host", "a"), pair("port", "5432")]
        );
    }

    #[test]
    fn quoted_values_keep_whitespace_and_unescape() {
        assert_eq!(
            values(r"password='it\'s a \\ secret' user=u"),
            [pair("password", r"it's a \ secret"), pair("user", "u")]
        );
        assert_eq!(values("password=''"), [pair("password", "")]);
    }

    #[test]
    fn unquoted_values_unescape_and_end_at_whitespace() {
        assert_eq!(
            values(r"password=a\ b\\c\'d host=h"),
            [pair("password", r"a b\c'd"), pair("host", "h")]
        );
        assert_eq!(values("host=a'b"), [pair("host", "a'b")]);
        assert_eq!(values(r"host=a\"), [pair("host", "a")]);
    }

    #[test]
    fn a_closing_quote_needs_no_following_space() {
        assert_eq!(
            values("password='x'host=h"),
            [pair("password", "x"), pair("host", "h")]
        );
    }

    #[test]
    fn an_empty_value_swallows_the_next_pair_as_libpq_does() {
        assert_eq!(values("host= port=1"), [pair("host", "port=1")]);
        assert_eq!(values("host="), [pair("host", "")]);
    }

    #[test]
    fn raw_ranges_cover_the_quotes() {
        let text = "user=u password='p q' x=y";
        let pairs = tokenize(text).expect("tokenizes");
        assert_eq!(&text[pairs[1].raw_value.clone()], "'p q'");
        assert_eq!(&text[pairs[0].raw_value.clone()], "u");
    }

    #[test]
    fn missing_equals_names_only_known_keywords() {
        assert_eq!(
            tokenize("host localhost"),
            Err(ParseError::MissingEquals {
                keyword: Some("host"),
                offset: 0
            })
        );
        assert_eq!(
            tokenize("password=my secret phrase"),
            Err(ParseError::MissingEquals {
                keyword: None,
                offset: 12
            })
        );
    }

    #[test]
    fn doubled_quotes_are_not_an_escape() {
        assert_eq!(
            tokenize("password='it''s'"),
            Err(ParseError::MissingEquals {
                keyword: None,
                offset: 13
            })
        );
    }

    #[test]
    fn unterminated_quotes_are_refused() {
        assert_eq!(
            tokenize("password='abc host=h"),
            Err(ParseError::UnterminatedQuote {
                keyword: Some("password"),
                offset: 9
            })
        );
        assert_eq!(
            tokenize(r"password='abc\'"),
            Err(ParseError::UnterminatedQuote {
                keyword: Some("password"),
                offset: 9
            })
        );
    }

    #[test]
    fn unknown_keywords_are_refused_by_position() {
        let error = parse("host=a hots=b").expect_err("hots is unknown");
        assert_eq!(
            error,
            ParseError::InvalidOption {
                offset: Some(7),
                suggestion: Some("host")
            }
        );
        assert!(!error.to_string().contains("hots"), "{error}");
    }

    #[test]
    fn non_ascii_values_survive() {
        assert_eq!(
            values("password='pä\\ß' dbname=日本"),
            [pair("password", "päß"), pair("dbname", "日本")]
        );
    }
}
