//! Connection strings carry passwords; nothing that reaches a log line, an
//! error message or `--print-config` may show one.
//!
//! `DatabaseUrl` holds the real string and only ever displays, debugs or
//! serialises the masked form; the real one leaves it only through
//! [`DatabaseUrl::expose`], on the way to the driver.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const MASK: &str = "********";

#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The connection string with its password, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The connection string with any password replaced by a mask.
    pub fn masked(&self) -> String {
        mask_password(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.masked())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(DatabaseUrl)
    }
}

/// A password from `database.password` or `database.password_file`:
/// shown as a mask, or as "" when empty so `--print-config` says whether
/// one is set.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn masked(&self) -> &'static str {
        if self.0.is_empty() {
            ""
        } else {
            MASK
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?})", self.masked())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.masked())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Masks the password of a `postgres://` URL or of a libpq `key=value`
/// string. Anything else is returned unchanged.
pub fn mask_password(conn: &str) -> String {
    let trimmed = conn.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        mask_url_password(conn)
    } else {
        mask_keyword_password(conn)
    }
}

fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    // The userinfo ends at the last '@' of the authority.
    let Some(at) = authority.rfind('@') else {
        return mask_url_query_password(url);
    };
    let userinfo = &authority[..at];
    let masked_userinfo = match userinfo.find(':') {
        Some(colon) => format!("{}:{MASK}", &userinfo[..colon]),
        None => userinfo.to_owned(),
    };
    let masked = format!(
        "{}{}{}{}",
        &url[..scheme_end],
        masked_userinfo,
        &authority[at..],
        &rest[authority_end..]
    );
    mask_url_query_password(&masked)
}

/// `postgres://host/db?password=secret` is valid libpq too.
fn mask_url_query_password(url: &str) -> String {
    let Some(query_start) = url.find('?') else {
        return url.to_owned();
    };
    let (base, query) = url.split_at(query_start + 1);
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={MASK}"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}{}", params.join("&"))
}

/// libpq's `password=secret` or `password='it''s secret'` (spaces allowed
/// around `=`, backslash escapes inside quotes).
fn mask_keyword_password(conn: &str) -> String {
    let mut out = String::with_capacity(conn.len());
    let mut rest = conn;
    loop {
        let Some(pos) = find_keyword(rest, "password") else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..pos]);
        let after_key = &rest[pos + "password".len()..];
        let after_eq = after_key.trim_start();
        let Some(value) = after_eq.strip_prefix('=') else {
            out.push_str(&rest[pos..pos + "password".len()]);
            rest = after_key;
            continue;
        };
        let value = value.trim_start();
        let consumed = value_length(value);
        out.push_str("password=");
        out.push_str(MASK);
        rest = &value[consumed..];
    }
}

/// Position of `keyword` where it starts a key (at the start or after
/// whitespace), case-sensitive as libpq is.
fn find_keyword(text: &str, keyword: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(keyword) {
        let pos = from + found;
        let starts_key = pos == 0 || text[..pos].ends_with(char::is_whitespace);
        let ends_key = text[pos + keyword.len()..].trim_start().starts_with('=');
        if starts_key && ends_key {
            return Some(pos);
        }
        from = pos + keyword.len();
    }
    None
}

/// Length of a libpq value: quoted with '' and backslash escapes, or up to
/// the next whitespace.
fn value_length(value: &str) -> usize {
    let mut chars = value.char_indices();
    if !value.starts_with('\'') {
        return value.find(char::is_whitespace).unwrap_or(value.len());
    }
    chars.next();
    let mut escaped = false;
    for (i, c) in chars {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '\'' => return i + 1,
            _ => {}
        }
    }
    value.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_passwords() {
        assert_eq!(
            mask_password("postgres://bob:s3cret@db:5432/app"),
            format!("postgres://bob:{MASK}@db:5432/app")
        );
        assert_eq!(
            mask_password("postgresql://bob:p@ss@db/app?sslmode=require"),
            format!("postgresql://bob:{MASK}@db/app?sslmode=require")
        );
        assert_eq!(
            mask_password("postgres://db/app?user=bob&password=s3cret&sslmode=require"),
            format!("postgres://db/app?user=bob&password={MASK}&sslmode=require")
        );
        assert_eq!(
            mask_password("postgres://bob@db/app"),
            "postgres://bob@db/app"
        );
    }

    #[test]
    fn masks_keyword_passwords() {
        assert_eq!(
            mask_password("host=db password=s3cret user=bob"),
            format!("host=db password={MASK} user=bob")
        );
        assert_eq!(
            mask_password("host=db password = 'it\\'s a secret' user=bob"),
            format!("host=db password={MASK} user=bob")
        );
        assert_eq!(
            mask_password("host=db user=password"),
            "host=db user=password"
        );
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        let url = DatabaseUrl::new("postgres://bob:s3cret@db/app");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(!format!("{url}").contains("s3cret"));
        assert_eq!(url.expose(), "postgres://bob:s3cret@db/app");
    }
}
