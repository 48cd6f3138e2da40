//! Hiding the passwords in a connection string before it reaches a log
//! line, an error message or a status page.
//!
//! Text that parses is masked exactly where the parser found a secret (the
//! URL rule of [`super::url`] is shared, not re-implemented). Text that does
//! not parse is masked generously: the guess may hide too much, never too
//! little, because a typo in a connection string is exactly when it gets
//! logged.

use std::ops::Range;

use super::key_value::{self, is_c_space, Pair};
use super::keywords::{self, KEYWORDS, MASK};
use super::percent;
use super::url::{find_userinfo, query_start, uri_prefix_len};
use super::url_parse;

/// `text` with every password (and other secret value) replaced by
/// [`MASK`]; everything else stays readable. Never panics.
///
/// - URL: the password of the userinfo, and the value of any `password`
///   (or other secret, or unknown) query parameter.
/// - key=value: every `password` value, quoted or not, and the value of any
///   unknown keyword (a misspelt `password`); a value that is itself a
///   connection string (`dbname='postgresql://…'`) is masked in turn.
/// - Text that does not parse, additionally: everything between the first
///   `:` after `://` and the first `@`, and every `password=` value up to the
///   next keyword (or `&` in a URL).
pub fn mask_passwords(text: &str) -> String {
    let mut replacements = Vec::new();
    match uri_prefix_len(text) {
        Some(prefix_len) => {
            mask_url(text, prefix_len, &mut replacements);
            if url_parse::parse(text, prefix_len).is_err() {
                mask_generously(text, &mut replacements);
            }
        }
        None => match key_value::tokenize(text) {
            Ok(pairs) => mask_key_values(text, &pairs, &mut replacements),
            Err(_) => mask_generously(text, &mut replacements),
        },
    }
    apply(text, replacements)
}

/// A span of the text and what to show instead.
struct Replacement {
    range: Range<usize>,
    with: String,
}

fn masked(range: Range<usize>) -> Replacement {
    Replacement {
        range,
        with: MASK.to_owned(),
    }
}

/// `range`, found in a suffix of the text starting at `by`, in the text.
fn shifted(range: Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
}

/// The userinfo password and the secret query values of a URL.
///
/// One guess even when the URL parses: an `@` left in the host list or
/// database name (`postgres://u:p@ss/word@h/db`) most likely ends a password
/// holding both `@` and `/` that should have been encoded, so everything
/// from the password (or the first `:`) up to that `@` is hidden too.
fn mask_url(text: &str, prefix_len: usize, replacements: &mut Vec<Replacement>) {
    let rest = &text[prefix_len..];
    let userinfo = find_userinfo(rest);
    let password = userinfo.as_ref().and_then(|u| u.password.clone());
    if let Some(password) = password.clone() {
        replacements.push(masked(shifted(password, prefix_len)));
    }
    let hosts_start = userinfo.map_or(0, |u| u.hosts_start());
    let query = query_start(rest, hosts_start);
    let path_end = query.map_or(rest.len(), |start| start - 1);
    if let Some(stray_at) = rest[hosts_start..path_end].rfind('@') {
        let stray_at = hosts_start + stray_at;
        let from = match password {
            Some(password) => Some(password.start),
            None => rest[..stray_at].find(':').map(|colon| colon + 1),
        };
        if let Some(from) = from {
            replacements.push(masked(shifted(from..stray_at, prefix_len)));
        }
    }
    if let Some(start) = query {
        mask_query(text, prefix_len + start, replacements);
    }
}

/// Masks `keyword=value` query values whose keyword is secret or unknown.
fn mask_query(text: &str, start: usize, replacements: &mut Vec<Replacement>) {
    let mut parameter_start = start;
    while parameter_start < text.len() {
        let parameter_end = text[parameter_start..]
            .find('&')
            .map_or(text.len(), |at| parameter_start + at);
        let parameter = &text[parameter_start..parameter_end];
        if let Some(equals) = parameter.find('=') {
            let keyword = percent::decode_leniently(&parameter[..equals]);
            if is_secret_or_unknown(&keyword) {
                replacements.push(masked(parameter_start + equals + 1..parameter_end));
            }
        }
        parameter_start = parameter_end + 1;
    }
}

/// Secret keywords, and words that are no keyword at all (perhaps a
/// misspelt `password`); `ssl` and `requiressl` are libpq spellings.
fn is_secret_or_unknown(keyword: &str) -> bool {
    match keywords::keyword(keyword) {
        Some(known) => known.secret,
        None => !matches!(keyword, "ssl" | "requiressl"),
    }
}

/// Masks the values of a key=value string that tokenized.
fn mask_key_values(text: &str, pairs: &[Pair], replacements: &mut Vec<Replacement>) {
    for pair in pairs {
        let keyword = &text[pair.keyword.clone()];
        if is_secret_or_unknown(keyword) {
            replacements.push(masked(pair.raw_value.clone()));
        } else if looks_like_connection_string(&pair.value) {
            let inner = mask_passwords(&pair.value);
            if inner != pair.value {
                replacements.push(Replacement {
                    range: pair.raw_value.clone(),
                    with: quote(&inner),
                });
            }
        }
    }
}

/// libpq's `recognized_connection_string`: a URL, or text with an `=`.
fn looks_like_connection_string(value: &str) -> bool {
    uri_prefix_len(value).is_some() || value.contains('=')
}

/// `value` as a single-quoted key=value value.
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for character in value.chars() {
        if matches!(character, '\'' | '\\') {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('\'');
    quoted
}

/// The guesses for text that does not parse.
fn mask_generously(text: &str, replacements: &mut Vec<Replacement>) {
    let url_like = text.find("://");
    if let Some(scheme_end) = url_like.map(|at| at + 3) {
        let rest = &text[scheme_end..];
        if let (Some(colon), Some(at)) = (rest.find(':'), rest.find('@')) {
            if colon < at {
                replacements.push(masked(scheme_end + colon + 1..scheme_end + at));
            }
        }
        if let Some(password) = find_userinfo(rest).and_then(|userinfo| userinfo.password) {
            replacements.push(masked(shifted(password, scheme_end)));
        }
    }
    for keyword in KEYWORDS.iter().filter(|keyword| keyword.secret) {
        for value_start in assignments_of(text, keyword.name) {
            let value_end = if text[value_start..].starts_with('\'') {
                closing_quote_end(text, value_start + 1)
            } else if url_like.is_some() {
                text[value_start..]
                    .find('&')
                    .map_or(text.len(), |at| value_start + at)
            } else {
                next_assignment_start(text, value_start)
            };
            replacements.push(masked(value_start..value_end));
        }
    }
}

/// Where the values start of every `keyword = value` in `text`, matching
/// the keyword in any case and anywhere, to err on the side of hiding.
fn assignments_of(text: &str, keyword: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut search_from = 0;
    while let Some(found) = find_ignoring_case(bytes, keyword.as_bytes(), search_from) {
        search_from = found + keyword.len();
        let mut position = skip_c_spaces(bytes, search_from);
        if bytes.get(position) == Some(&b'=') {
            position = skip_c_spaces(bytes, position + 1);
            starts.push(position);
        }
    }
    starts
}

/// The position after the quote closing a quoted value, or the end.
fn closing_quote_end(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    let mut position = from;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'\\' => position += 2,
            b'\'' => return position + 1,
            _ => position += 1,
        }
    }
    text.len()
}

/// Where the next `<space>keyword=` after `from` starts (its space), or the
/// end: an unquoted value that broke the parse may well contain spaces.
fn next_assignment_start(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    (from..bytes.len())
        .filter(|position| is_c_space(bytes[*position]))
        .find(|position| {
            let word_start = skip_c_spaces(bytes, *position);
            KEYWORDS.iter().any(|keyword| {
                let word_end = word_start + keyword.name.len();
                bytes.get(word_start..word_end) == Some(keyword.name.as_bytes())
                    && bytes.get(skip_c_spaces(bytes, word_end)) == Some(&b'=')
            })
        })
        .unwrap_or(text.len())
}

fn skip_c_spaces(bytes: &[u8], mut position: usize) -> usize {
    while bytes.get(position).is_some_and(|byte| is_c_space(*byte)) {
        position += 1;
    }
    position
}

fn find_ignoring_case(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from >= haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
        .map(|at| from + at)
}

/// Applies the replacements; overlapping ones merge into one mask. Spans
/// come from ASCII delimiters, so they fall on char boundaries; should one
/// not, everything is masked rather than risk a panic or a leak.
fn apply(text: &str, mut replacements: Vec<Replacement>) -> String {
    replacements.retain(|replacement| !replacement.range.is_empty());
    replacements.sort_by_key(|replacement| replacement.range.start);
    let mut merged: Vec<Replacement> = Vec::with_capacity(replacements.len());
    for replacement in replacements {
        match merged.last_mut() {
            Some(last) if replacement.range.start < last.range.end => {
                last.range.end = last.range.end.max(replacement.range.end);
                last.with = MASK.to_owned();
            }
            _ => merged.push(replacement),
        }
    }
    let mut shown = String::with_capacity(text.len());
    let mut copied_to = 0;
    for replacement in &merged {
        let on_boundaries = text.get(replacement.range.clone()).is_some();
        match text.get(copied_to..replacement.range.start) {
            Some(kept) if on_boundaries => shown.push_str(kept),
            _ => return MASK.to_owned(),
        }
        shown.push_str(&replacement.with);
        copied_to = replacement.range.end;
    }
    match text.get(copied_to..) {
        Some(tail) => shown.push_str(tail),
        None => return MASK.to_owned(),
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conninfo::parse::parse;

    const AWKWARD_PASSWORDS: &[&str] = &[
        "p@ss",
        "p@ss@word",
        "a/b?c#d",
        "with space",
        "  leading and trailing  ",
        "colon:inside:",
        "%40",
        "p%40ss",
        "100%",
        "eq=ual=s",
        "it's",
        "\\back\\slash\\",
        "quote\"d",
        "amp&ersand",
        "ünïcødé-✓",
        "@@@",
        "::",
        "/?#",
        "a:b@c/d?e#f",
        ",comma,",
        "[bracket]",
        "password=nested",
        "'single'",
        "tab\there",
    ];

    /// Encodes only what the pgfleet URL rule cannot take raw.
    fn percent_encode_minimally(password: &str) -> String {
        let encoded = password.replace('%', "%25");
        if password.contains('@') && password.contains(['/', '?']) {
            encoded.replace('@', "%40")
        } else {
            encoded
        }
    }

    fn quote_key_value(text: &str) -> String {
        format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
    }

    fn assert_hidden(shown: &str, secrets: &[&str], readable: &[&str]) {
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret:?} shown in {shown:?}");
        }
        for part in readable {
            assert!(shown.contains(part), "{part:?} hidden in {shown:?}");
        }
        assert!(shown.contains(MASK), "nothing masked in {shown:?}");
    }

    #[test]
    fn awkward_passwords_in_url_userinfo_parse_exactly_and_never_show() {
        for password in AWKWARD_PASSWORDS {
            for encoded in [
                percent::encode(password),
                percent_encode_minimally(password),
            ] {
                let url =
                    format!("postgres://alice:{encoded}@db.example.com:5432/app?sslmode=require");
                let options = parse(&url).unwrap_or_else(|error| panic!("{url}: {error}"));
                assert_eq!(options.get("password"), Some(*password), "{url}");
                assert_eq!(options.get("host"), Some("db.example.com"), "{url}");
                assert_eq!(options.get("user"), Some("alice"), "{url}");
                assert_hidden(
                    &mask_passwords(&url),
                    &[password, &encoded],
                    &["alice", "db.example.com:5432/app", "sslmode=require"],
                );
            }
        }
    }

    #[test]
    fn awkward_passwords_in_url_queries_parse_exactly_and_never_show() {
        for password in AWKWARD_PASSWORDS {
            let encoded = percent::encode(password);
            let url = format!(
                "postgresql://db.example.com/app?user=alice&password={encoded}&sslmode=require"
            );
            let options = parse(&url).unwrap_or_else(|error| panic!("{url}: {error}"));
            assert_eq!(options.get("password"), Some(*password), "{url}");
            assert_hidden(
                &mask_passwords(&url),
                &[password, &encoded],
                &["user=alice", "db.example.com/app", "sslmode=require"],
            );
        }
    }

    #[test]
    fn awkward_passwords_in_key_values_parse_exactly_and_never_show() {
        for password in AWKWARD_PASSWORDS {
            let quoted = quote_key_value(password);
            let text = format!("host=db.example.com user=alice password={quoted} dbname=app");
            let options = parse(&text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(options.get("password"), Some(*password), "{text}");
            assert_hidden(
                &mask_passwords(&text),
                &[password, &quoted],
                &["host=db.example.com", "user=alice", "dbname=app"],
            );
        }
    }

    #[test]
    fn unquoted_escaped_key_value_passwords_never_show() {
        let text = r"password=a\ b\'c user=alice";
        assert_eq!(parse(text).expect("parses").get("password"), Some("a b'c"));
        assert_eq!(mask_passwords(text), "password=******** user=alice");
    }

    #[test]
    fn exact_masks_keep_everything_else() {
        assert_eq!(
            mask_passwords("postgresql://user:secret@localhost:5432/db?sslmode=require"),
            "postgresql://user:********@localhost:5432/db?sslmode=require"
        );
        assert_eq!(
            mask_passwords("postgres://u:a/b?c#d@h/db?password=x&application_name=a"),
            "postgres://u:********@h/db?password=********&application_name=a"
        );
        assert_eq!(
            mask_passwords("host=h password = 'p w' sslpassword=k port=1"),
            "host=h password = ******** sslpassword=******** port=1"
        );
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for text in [
            "",
            "postgresql://",
            "postgresql://user@localhost/db",
            "postgres://h/db?user=u@srv",
            "postgres://u:@h/db",
            "host=h port=5432 user=u",
        ] {
            assert_eq!(mask_passwords(text), text);
        }
    }

    #[test]
    fn an_at_sign_left_after_the_userinfo_extends_the_mask() {
        // Parses (as host `ss`, database `word@h/db`), but the `@` betrays a
        // password `p@ss/word` that should have been encoded.
        assert_eq!(
            mask_passwords("postgres://u:p@ss/word@h/db?sslmode=require"),
            "postgres://u:********@h/db?sslmode=require"
        );
        assert_eq!(
            mask_passwords("postgres://h:5432/x@y"),
            "postgres://h:********@y"
        );
    }

    #[test]
    fn encoded_password_keywords_in_a_query_are_masked() {
        assert_eq!(
            mask_passwords("postgres://h?pass%77ord=secret"),
            "postgres://h?pass%77ord=********"
        );
    }

    #[test]
    fn unparseable_urls_are_masked_generously() {
        let shown = mask_passwords("postgres://u:pa%ss@h/db?sslmode=require&password=x%");
        assert_hidden(
            &shown,
            &["pa%ss", "x%"],
            &["postgres://u:", "@h/db?sslmode=require"],
        );
        let shown = mask_passwords("jdbc:postgresql://u:secret@h/db");
        assert_eq!(shown, "jdbc:postgresql://u:********@h/db");
    }

    #[test]
    fn unparseable_key_values_are_masked_generously() {
        assert_eq!(
            mask_passwords("host=h password=my secret phrase port=5432"),
            "host=h password=******** port=5432"
        );
        assert_eq!(
            mask_passwords("host=h password='unterminated port=5432"),
            "host=h password=********"
        );
        assert_eq!(
            mask_passwords("host=h PASSWORD=secret garbage"),
            "host=h PASSWORD=********"
        );
    }

    #[test]
    fn misspelt_keywords_are_masked() {
        assert_eq!(
            mask_passwords("host=h passwrd=secret"),
            "host=h passwrd=********"
        );
        assert_eq!(
            mask_passwords("postgres://h/db?passwrd=secret&sslmode=require"),
            "postgres://h/db?passwrd=********&sslmode=require"
        );
    }

    #[test]
    fn nested_connection_strings_are_masked() {
        let shown = mask_passwords("dbname='postgresql://u:secret@h/db' application_name=x");
        assert_eq!(
            shown,
            "dbname='postgresql://u:********@h/db' application_name=x"
        );
        let shown = mask_passwords(r"dbname='host=h password=\'s e\'' user=u");
        assert_hidden(&shown, &["s e"], &["host=h", "user=u"]);
    }

    #[test]
    fn never_panics_on_odd_text() {
        let alphabet = [
            ":", "@", "/", "?", "=", "'", "\\", " ", "p", "é", "&", "%", "[", "#",
        ];
        let prefixes = ["", "postgres://", "password=", "x://", "postgres://u:"];
        for prefix in prefixes {
            for a in alphabet {
                for b in alphabet {
                    for c in alphabet {
                        let text = format!("{prefix}{a}{b}{c}");
                        let _ = mask_passwords(&text);
                        let _ = parse(&text);
                    }
                }
            }
        }
    }
}
