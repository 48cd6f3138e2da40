//! Helpers shared by the unit tests of this module.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Options;

/// Writes a password file with `mode` into `dir`.
pub fn passfile(dir: &Path, contents: &str, mode: u32) -> PathBuf {
    let path = dir.join("pgpass");
    fs::write(&path, contents).expect("write pgpass");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// What a parse gave, as comparable pairs in keyword order.
pub fn pairs(options: &Options) -> Vec<(&'static str, String)> {
    options
        .iter()
        .map(|(keyword, value)| (keyword, value.to_owned()))
        .collect()
}

/// The pairs a test expects, in keyword order.
pub fn expect(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut expected: Vec<_> = pairs
        .iter()
        .map(|(keyword, value)| (*keyword, (*value).to_owned()))
        .collect();
    expected.sort();
    expected
}
