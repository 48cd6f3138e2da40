//! Percent-encoding, and the decoding of URL parts as libpq's
//! `conninfo_uri_decode`.
//!
//! libpq decodes every part of a URL (user, password, hosts, ports, database
//! and each query keyword and value), refuses a `%` not followed by two hex
//! digits and refuses `%00`. Rust strings add one rule: the decoded bytes
//! must be UTF-8. [`encode`] is the other way, for whatever must travel
//! inside a URL or a cookie: a schema's name in the status page's links, a
//! token in its cookie.

use super::error::{ParseError, UrlPart};

/// Decodes `text` strictly; errors name the part, never its content.
pub(super) fn decode(text: &str, part: UrlPart) -> Result<String, ParseError> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let byte =
                escaped_byte(bytes, index).ok_or(ParseError::InvalidPercentEncoding { part })?;
            if byte == 0 {
                return Err(ParseError::PercentEncodedNul { part });
            }
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| ParseError::PercentEncodingNotUtf8 { part })
}

/// Every byte but RFC 3986's unreserved ones (`A-Z a-z 0-9 - . _ ~`) as
/// `%XX`: safe in a URL path segment, a query value and a cookie value.
pub fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Decodes what can be decoded and keeps the rest as written; for the
/// masker, which must understand even text that does not parse.
pub fn decode_leniently(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match (bytes[index], escaped_byte(bytes, index)) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The byte written as `%XY` at `bytes[percent]`, if the two digits follow.
fn escaped_byte(bytes: &[u8], percent: usize) -> Option<u8> {
    let high = hex_digit(*bytes.get(percent + 1)?)?;
    let low = hex_digit(*bytes.get(percent + 2)?)?;
    Some(high << 4 | low)
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_either_case_of_hex() {
        assert_eq!(
            decode("%2Fvar%2flib", UrlPart::Host),
            Ok("/var/lib".to_owned())
        );
        assert_eq!(decode("p%40ss", UrlPart::Password), Ok("p@ss".to_owned()));
        assert_eq!(decode("caf%C3%A9", UrlPart::Dbname), Ok("café".to_owned()));
    }

    #[test]
    fn leaves_unencoded_text_alone() {
        assert_eq!(decode("a+b c", UrlPart::User), Ok("a+b c".to_owned()));
    }

    #[test]
    fn refuses_bad_escapes_naming_only_the_part() {
        for bad in ["50%", "50%off", "%4", "%G0"] {
            let error = decode(bad, UrlPart::Password).expect_err(bad);
            assert_eq!(
                error,
                ParseError::InvalidPercentEncoding {
                    part: UrlPart::Password
                }
            );
            assert!(!error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn refuses_nul_and_non_utf8() {
        assert_eq!(
            decode("a%00b", UrlPart::User),
            Err(ParseError::PercentEncodedNul {
                part: UrlPart::User
            })
        );
        assert_eq!(
            decode("%FF", UrlPart::User),
            Err(ParseError::PercentEncodingNotUtf8 {
                part: UrlPart::User
            })
        );
    }

    #[test]
    fn lenient_decoding_keeps_what_it_cannot_decode() {
        assert_eq!(decode_leniently("pass%77ord"), "password");
        assert_eq!(decode_leniently("50%off%"), "50%off%");
    }
}
