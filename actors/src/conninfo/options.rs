//! What a connection string said, keyword by keyword, before any default.
//!
//! Kept apart from the resolved [`Target`](super::Target) because libpq
//! distinguishes "not given" (fall back to the environment) from "given,
//! even if empty" (no fallback): `host=''` ignores `PGHOST`. A map that
//! holds exactly what was written keeps that difference.

use std::collections::BTreeMap;
use std::fmt;

use super::error::ParseError;
use super::keywords::{self, Keyword, MASK};

/// The keywords and values of one connection string, ordered by keyword.
/// Only libpq keywords can be stored; `Debug` masks secret values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options {
    values: BTreeMap<&'static str, String>,
}

impl Options {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value given for `keyword`, if any (possibly empty).
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.values.get(keyword).map(String::as_str)
    }

    /// Sets `keyword`, replacing an earlier value as a later one does in a
    /// connection string. Fails for a word that is not a libpq keyword;
    /// `requiressl` is stored as libpq stores it, as `sslmode`.
    pub fn set(&mut self, keyword: &str, value: impl Into<String>) -> Result<(), ParseError> {
        let value = value.into();
        if let Some(sslmode) = keywords::translate_requiressl(keyword, &value) {
            self.values.insert("sslmode", sslmode.to_owned());
            return Ok(());
        }
        let Some(&Keyword { name, .. }) = keywords::keyword(keyword) else {
            return Err(ParseError::InvalidOption {
                offset: None,
                suggestion: keywords::suggestion_for(keyword),
            });
        };
        self.values.insert(name, value);
        Ok(())
    }

    /// Removes `keyword`, returning its value.
    pub fn remove(&mut self, keyword: &str) -> Option<String> {
        self.values.remove(keyword)
    }

    /// Every keyword given, with its value, in keyword order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.values
            .iter()
            .map(|(keyword, value)| (*keyword, value.as_str()))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(keyword, value)| {
                let shown = if keywords::is_secret(keyword) {
                    MASK
                } else {
                    value
                };
                (keyword, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_value_replaces_an_earlier_one() {
        let mut options = Options::new();
        options.set("host", "a").expect("host is a keyword");
        options.set("host", "b").expect("host is a keyword");
        assert_eq!(options.get("host"), Some("b"));
        assert_eq!(options.len(), 1);
    }

    #[test]
    fn an_empty_value_is_kept_as_given() {
        let mut options = Options::new();
        options.set("host", "").expect("host is a keyword");
        assert_eq!(options.get("host"), Some(""));
        assert_eq!(options.get("port"), None);
    }

    #[test]
    fn unknown_keywords_are_refused() {
        let mut options = Options::new();
        let error = options.set("hots", "x").expect_err("hots is not a keyword");
        assert!(error.to_string().contains("\"host\""), "{error}");
        assert!(options.is_empty());
    }

    #[test]
    fn requiressl_is_stored_as_sslmode() {
        let mut options = Options::new();
        options
            .set("requiressl", "1")
            .expect("requiressl is accepted");
        assert_eq!(options.get("sslmode"), Some("require"));
        assert_eq!(options.get("requiressl"), None);
    }

    #[test]
    fn iteration_is_in_keyword_order() {
        let mut options = Options::new();
        options.set("user", "u").expect("keyword");
        options.set("dbname", "d").expect("keyword");
        let keywords: Vec<_> = options.iter().map(|(keyword, _)| keyword).collect();
        assert_eq!(keywords, ["dbname", "user"]);
        assert_eq!(options.remove("user").as_deref(), Some("u"));
    }

    #[test]
    fn debug_masks_secrets() {
        let mut options = Options::new();
        options.set("user", "alice").expect("keyword");
        options.set("password", "hunter2").expect("keyword");
        options.set("sslpassword", "keypass").expect("keyword");
        let shown = format!("{options:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("keypass"), "{shown}");
        assert!(shown.contains(MASK), "{shown}");
    }
}
