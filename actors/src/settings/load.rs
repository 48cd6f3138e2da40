//! Merging the configuration layers, and saying exactly what is wrong.
//!
//! The `config` crate merges the layers (built-in defaults, each
//! `--config FILE`, then `PGFLEET__` variables) and remembers where each
//! value came from. That origin is what turns "invalid value" into "key
//! `workers.total` = \"two\" in /etc/pgfleet/site.yaml: expected an integer",
//! the message a tired operator needs. Keys unknown to `default.yaml` are
//! errors with a suggestion, because a typo that is silently ignored is a
//! setting that silently does not apply.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use config::{Config, Environment, File, FileFormat, Map, Source, Value, ValueKind};
use serde::Deserialize;

use super::Settings;

/// The compiled-in lowest layer; it holds every key.
pub const DEFAULTS_YAML: &str = include_str!("../../../config/default.yaml");

const ENV_PREFIX: &str = "PGFLEET";
const ENV_SEPARATOR: &str = "__";
/// What the `config` crate calls the origin of environment values.
const ENV_ORIGIN: &str = "the environment";

/// Where the configuration comes from; kept by the ConfigActor so that a
/// reload reads the very same layers again.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    pub files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read at all: missing file, YAML syntax.
    #[error("{0}")]
    Unreadable(String),
    /// The layers were read, and these keys are wrong.
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
}

/// A bad value as a check finds it: the key, the value as shown, why. The
/// loader adds where it came from.
pub type KeyProblem = (&'static str, String, String);

/// One bad key: which, with what value, from where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    /// The value as shown to the operator: a scalar quoted (`"soon"`), a
    /// list or map in YAML flow style (`[a, b]`), a secret masked.
    pub value: Option<String>,
    pub origin: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key `{}`", self.key)?;
        if let Some(value) = &self.value {
            write!(f, " = {value}")?;
        }
        write!(f, " ({}): {}", self.origin, self.reason)
    }
}

/// One problem on one line; several under a header, one indented line
/// each, so that a file with three mistakes reads as a list to work down.
fn display_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    match lines.as_slice() {
        [one] => format!("invalid configuration: {one}"),
        _ => format!(
            "invalid configuration, {} problems:\n  {}",
            lines.len(),
            lines.join("\n  ")
        ),
    }
}

impl ConfigError {
    /// The message on one line, problems joined with "; ": for a log line,
    /// which must stay one line per event (`Display` puts each problem on a
    /// line of its own, for a terminal).
    pub fn one_line(&self) -> String {
        self.to_string()
            .replace(":\n  ", ": ")
            .replace("\n  ", "; ")
    }
}

impl ConfigSources {
    pub fn new(files: Vec<PathBuf>) -> Self {
        ConfigSources { files }
    }

    /// Every layer, the process environment included.
    pub fn load(&self) -> Result<Settings, ConfigError> {
        let environment: Vec<(String, String)> = std::env::vars().collect();
        self.load_with_env(&environment)
    }

    /// Defaults and files only.
    pub fn load_without_env(&self) -> Result<Settings, ConfigError> {
        self.load_with_env(&[])
    }

    /// Every layer, with `environment` standing in for the process's.
    pub fn load_with_env(&self, environment: &[(String, String)]) -> Result<Settings, ConfigError> {
        self.load_and_build(environment, |_| Ok(()))
            .map(|(settings, ())| settings)
    }

    /// Every layer, with `environment` standing in for the process's; then
    /// `build` makes what the settings are for (the database connector,
    /// which reads the TLS files) from settings that passed their own
    /// checks. Its problems are reported with the settings' own, under the
    /// key each names, in one error: the settings stay plain data and know
    /// nothing of what is built from them.
    pub fn load_and_build<T>(
        &self,
        environment: &[(String, String)],
        build: impl FnOnce(&Settings) -> Result<T, Vec<KeyProblem>>,
    ) -> Result<(Settings, T), ConfigError> {
        let defaults = defaults()?;
        let known = known_keys_of(&defaults);
        let (mut problems, warnings) = single_underscore_variables(environment, &known);
        let env_map: Map<String, String> = environment
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
            .cloned()
            .collect();

        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULTS_YAML, FileFormat::Yaml));
        for path in &self.files {
            // The `config` crate says "not found" for a directory, which
            // sends the operator looking for a file that is there.
            if path.is_dir() {
                return Err(ConfigError::Unreadable(format!(
                    "cannot read configuration: {} is a directory, not a YAML file",
                    display_path(&path.display().to_string())
                )));
            }
            builder = builder.add_source(
                File::from(path.as_path())
                    .format(FileFormat::Yaml)
                    .required(true),
            );
        }
        let merged = builder
            .add_source(
                Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator(ENV_SEPARATOR)
                    .separator(ENV_SEPARATOR)
                    .ignore_empty(true)
                    .source(Some(env_map)),
            )
            .build()
            .map_err(|e| ConfigError::Unreadable(unreadable_message(e)))?;

        problems.extend(unknown_keys(&merged, &known)?);
        let table = merged
            .collect()
            .map_err(|e| ConfigError::Unreadable(unreadable_message(e)))?;
        let (readable, wrong_types) = check_each_key(&table, &defaults, &known);
        let wrong_keys: Vec<String> = wrong_types.iter().map(|(key, _)| key.clone()).collect();
        problems.extend(wrong_types.into_iter().map(|(key, error)| Problem {
            origin: origin_of(&merged, &key),
            value: get_at(&table, &key).map(|value| shown(&key, value)),
            reason: reason_of(error),
            key,
        }));
        // Every key that reached `readable` passed on its own, so this
        // succeeds; the fallback is for a type that depends on two keys.
        let mut settings = match Settings::deserialize(Value::new(None, readable)) {
            Ok(settings) => settings,
            Err(e) => {
                problems.push(problem_from_config_error(&merged, e));
                return Err(ConfigError::Invalid(sorted(problems)));
            }
        };
        // A key of the wrong type stands at its default here; a check
        // involving it would judge a value the operator did not write.
        let involves_wrong_key = |key: &str, reason: &str| {
            wrong_keys
                .iter()
                .any(|wrong| wrong == key || reason.contains(wrong.as_str()))
        };
        let password_problem = if involves_wrong_key("database.password_file", "") {
            None
        } else {
            read_password_file(&mut settings, &merged)
        };
        let token_problem = if involves_wrong_key("http.token_file", "") {
            None
        } else {
            check_token_file(&settings, &merged)
        };
        let (built, build_problems) = match build(&settings) {
            Ok(built) => (Some(built), Vec::new()),
            Err(problems) => (None, problems),
        };
        problems.extend(
            build_problems
                .into_iter()
                .chain(settings.problems())
                .filter(|(key, _, reason)| !involves_wrong_key(key, reason))
                .map(|(key, value, reason)| Problem {
                    origin: origin_of(&merged, key),
                    key: key.to_owned(),
                    value: Some(quoted(&mask_if_secret(key, value))),
                    reason,
                }),
        );
        problems.extend(password_problem);
        problems.extend(token_problem);
        match built {
            Some(built) if problems.is_empty() => {
                settings.load_warnings = warnings;
                Ok((settings, built))
            }
            _ => Err(ConfigError::Invalid(sorted(problems))),
        }
    }
}

/// Problems in key order, so that one section's read together; the sort
/// is stable, so two problems of one key keep the order they were found in.
fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by(|a, b| a.key.cmp(&b.key));
    problems
}

/// Checks each known key's merged value on its own, by deserialising the
/// defaults with only that value in place: serde stops at the first error,
/// and an operator who wrote three wrong values should not need three runs
/// to find them. The messages are the very ones a whole deserialisation
/// gives, and no table of types can fall out of step with `Settings`.
/// Returns the defaults with every value that passed, and each key that did
/// not, with its error.
fn check_each_key(
    merged: &Map<String, Value>,
    defaults: &Map<String, Value>,
    known: &BTreeSet<String>,
) -> (ValueKind, Vec<(String, config::ConfigError)>) {
    let mut readable = defaults.clone();
    let mut wrong = Vec::new();
    for key in known {
        // Absent when its section was given a value instead of keys; that
        // is reported as an unknown key, and the default stands.
        let Some(value) = get_at(merged, key) else {
            continue;
        };
        let mut alone = defaults.clone();
        set_at(&mut alone, key, value.clone());
        match Settings::deserialize(Value::new(None, alone)) {
            Ok(_) => set_at(&mut readable, key, value.clone()),
            Err(error) => wrong.push((key.clone(), error)),
        }
    }
    (ValueKind::Table(readable), wrong)
}

/// Why a single value did not deserialise, without the key and origin the
/// `config` crate adds (the problem line has them already).
fn reason_of(error: config::ConfigError) -> String {
    match error {
        config::ConfigError::Type { expected, .. } => format!("expected {expected}"),
        config::ConfigError::At { error, .. } => reason_of(*error),
        config::ConfigError::Message(message) => message,
        other => other.to_string(),
    }
}

fn get_at<'a>(table: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let (section, rest) = match key.split_once('.') {
        Some((section, rest)) => (section, Some(rest)),
        None => (key, None),
    };
    let value = table.get(section)?;
    match (rest, &value.kind) {
        (None, _) => Some(value),
        (Some(rest), ValueKind::Table(inner)) => get_at(inner, rest),
        (Some(_), _) => None,
    }
}

/// Puts `value` at a dotted key of a tree whose sections are tables (the
/// defaults, and copies of them).
fn set_at(table: &mut Map<String, Value>, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_owned(), value);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| Value::new(None, ValueKind::Table(Map::new())));
            if !matches!(entry.kind, ValueKind::Table(_)) {
                *entry = Value::new(None, ValueKind::Table(Map::new()));
            }
            if let ValueKind::Table(inner) = &mut entry.kind {
                set_at(inner, rest, value);
            }
        }
    }
}

/// A value in a problem line: a scalar quoted, as it was always shown; a
/// list or a map in YAML flow style, as the operator wrote it (`[a, b]`;
/// the `config` crate's own rendering is `"a, b, "`); a secret masked.
fn shown(key: &str, value: &Value) -> String {
    match &value.kind {
        ValueKind::Array(_) | ValueKind::Table(_) | ValueKind::Nil => {
            let text = flow(value);
            if key == "database.url" || mask_if_secret(key, text.clone()) != text {
                quoted(super::secret::MASK)
            } else {
                text
            }
        }
        _ => quoted(&mask_if_secret(key, value.to_string())),
    }
}

fn quoted(text: &str) -> String {
    format!("{text:?}")
}

/// YAML flow style, near enough to read back: plain words bare, other
/// text quoted, map keys sorted (the merged tree does not keep file order).
fn flow(value: &Value) -> String {
    match &value.kind {
        ValueKind::Nil => "null".into(),
        ValueKind::String(text) => {
            let plain = !text.is_empty()
                && !text.starts_with('-')
                && text
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_-./@+".contains(c));
            if plain {
                text.clone()
            } else {
                quoted(text)
            }
        }
        ValueKind::Array(items) => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Table(table) => {
            let sorted: std::collections::BTreeMap<&String, &Value> = table.iter().collect();
            let pairs: Vec<String> = sorted
                .into_iter()
                .map(|(key, value)| format!("{}: {}", flow_key(key), flow(value)))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }
        _ => value.to_string(),
    }
}

fn flow_key(key: &str) -> String {
    flow(&Value::new(None, ValueKind::String(key.to_owned())))
}

fn unreadable_message(error: config::ConfigError) -> String {
    match error {
        config::ConfigError::FileParse {
            uri: Some(uri),
            cause,
        } => {
            format!("cannot parse config file {}: {cause}", display_path(&uri))
        }
        config::ConfigError::FileParse { uri: None, cause } => {
            format!("cannot parse the built-in defaults: {cause}")
        }
        other => format!("cannot read configuration: {other}"),
    }
}

/// `PGFLEET_NAPTIME` (one underscore) would be silently ignored by the
/// `config` crate; an operator who set it meant something, so a variable
/// that reads as a known key with its double underscores shortened is an
/// error with the fix. Any other `PGFLEET_` variable is somebody else's:
/// Kubernetes injects `PGFLEET_PORT=tcp://…`, `PGFLEET_SERVICE_HOST`, … for
/// a Service named `pgfleet` into every pod. Those must never stop the
/// service; they are named in one warning.
fn single_underscore_variables(
    environment: &[(String, String)],
    known: &BTreeSet<String>,
) -> (Vec<Problem>, Vec<String>) {
    let single = format!("{ENV_PREFIX}_");
    let double = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    let mut problems = Vec::new();
    let mut foreign = Vec::new();
    for (name, _) in environment {
        if !name.starts_with(&single) || name.starts_with(&double) {
            continue;
        }
        let rest = &name[single.len()..];
        let flattened = rest.to_lowercase().replace(ENV_SEPARATOR, "_");
        match known
            .iter()
            .find(|key| key.replace('.', "_") == flattened)
        {
            Some(key) => problems.push(Problem {
                key: name.clone(),
                value: None,
                origin: "environment".into(),
                reason: format!(
                    "pgfleet reads PGFLEET__<SECTION>__<KEY> with double underscores; did you mean {double}{}?",
                    key.to_uppercase().replace('.', ENV_SEPARATOR)
                ),
            }),
            None => foreign.push(name.clone()),
        }
    }
    let warnings = if foreign.is_empty() {
        Vec::new()
    } else {
        foreign.sort();
        vec![format!(
            "ignoring environment variables that match no pgfleet key (such as Kubernetes service links): {}; \
             pgfleet's own are PGFLEET__<SECTION>__<KEY>",
            foreign.join(", ")
        )]
    };
    (problems, warnings)
}

/// Leaf keys of a merged tree; lists are leaves.
fn leaves(prefix: &str, table: &Map<String, Value>, out: &mut Vec<(String, Value)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match &value.kind {
            ValueKind::Table(inner) if !inner.is_empty() => leaves(&path, inner, out),
            _ => out.push((path, value.clone())),
        }
    }
}

/// The built-in defaults as a tree: every key, each with a valid value.
fn defaults() -> Result<Map<String, Value>, ConfigError> {
    Config::builder()
        .add_source(File::from_str(DEFAULTS_YAML, FileFormat::Yaml))
        .build()
        .and_then(|c| c.collect())
        .map_err(|e| ConfigError::Unreadable(unreadable_message(e)))
}

fn known_keys_of(defaults: &Map<String, Value>) -> BTreeSet<String> {
    let mut keys = Vec::new();
    leaves("", defaults, &mut keys);
    keys.into_iter().map(|(key, _)| key).collect()
}

fn known_keys() -> Result<BTreeSet<String>, ConfigError> {
    defaults().map(|defaults| known_keys_of(&defaults))
}

fn unknown_keys(merged: &Config, known: &BTreeSet<String>) -> Result<Vec<Problem>, ConfigError> {
    let table = merged
        .collect()
        .map_err(|e| ConfigError::Unreadable(unreadable_message(e)))?;
    let mut keys = Vec::new();
    leaves("", &table, &mut keys);
    Ok(keys
        .into_iter()
        .filter(|(key, _)| {
            // A value below a known leaf (`workers.schemas.x`) is a type
            // error, reported by deserialisation with a better message.
            !known.contains(key)
                && !known
                    .iter()
                    .any(|leaf| key.starts_with(&format!("{leaf}.")))
        })
        .map(|(key, value)| {
            let value_origin = value.origin();
            let section = format!("{key}.");
            let reason = match known.iter().find(|leaf| leaf.starts_with(&section)) {
                Some(leaf) => format!("is a section: it takes keys such as `{leaf}`, not a value"),
                None => match closest(&key, known) {
                    Some(near) => format!("unknown key; did you mean `{near}`?"),
                    None => "unknown key".into(),
                },
            };
            Problem {
                origin: describe_origin(value_origin, &key),
                value: Some(shown(&key, &value)),
                reason,
                key,
            }
        })
        .collect())
}

/// The known key nearest to a typo, if one is near enough to be meant.
fn closest<'a>(key: &str, known: &'a BTreeSet<String>) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, _)| *distance <= 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The merged value at a dotted key, with its origin. (`Config::get`
/// goes through serde and loses the origin, so walk the tree instead.)
fn value_at(merged: &Config, key: &str) -> Option<Value> {
    let mut table = merged.collect().ok()?;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = table.remove(part)?;
        if parts.peek().is_none() {
            return Some(value);
        }
        table = value.into_table().ok()?;
    }
    None
}

fn origin_of(merged: &Config, key: &str) -> String {
    let origin = value_at(merged, key).and_then(|v| first_origin(&v));
    describe_origin(origin.as_deref(), key)
}

/// A table has no origin of its own; its first leaf does.
fn first_origin(value: &Value) -> Option<String> {
    if let Some(origin) = value.origin() {
        return Some(origin.to_owned());
    }
    match &value.kind {
        ValueKind::Table(table) => table.values().find_map(first_origin),
        ValueKind::Array(items) => items.iter().find_map(first_origin),
        _ => None,
    }
}

fn describe_origin(origin: Option<&str>, key: &str) -> String {
    match origin {
        None => "built-in default".into(),
        Some(ENV_ORIGIN) => format!(
            "environment variable {ENV_PREFIX}{ENV_SEPARATOR}{}",
            key.to_uppercase().replace('.', ENV_SEPARATOR)
        ),
        Some(file) => format!("in {}", display_path(file)),
    }
}

/// The crate reports files relative to the working directory; an absolute
/// path is unambiguous in a log read later.
fn display_path(file: &str) -> String {
    match std::fs::canonicalize(file) {
        Ok(path) => path.display().to_string(),
        Err(_) => file.to_owned(),
    }
}

/// What `Problem::key` says when the `config` crate did not say which key.
pub const UNKNOWN_KEY: &str = "(unknown key)";

fn problem_from_config_error(merged: &Config, error: config::ConfigError) -> Problem {
    match error {
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => {
            let key = key.unwrap_or_else(|| UNKNOWN_KEY.into());
            let value = value_at(merged, &key).map_or_else(
                || quoted(&mask_if_secret(&key, unexpected.to_string())),
                |v| shown(&key, &v),
            );
            Problem {
                origin: match origin {
                    Some(origin) => describe_origin(Some(&origin), &key),
                    None => origin_of(merged, &key),
                },
                value: Some(value),
                reason: format!("expected {expected}"),
                key,
            }
        }
        config::ConfigError::At { error, origin, key } => {
            let key = key.unwrap_or_else(|| UNKNOWN_KEY.into());
            let origin = match origin {
                Some(origin) => describe_origin(Some(&origin), &key),
                None => origin_of(merged, &key),
            };
            let value = value_at(merged, &key).map(|v| shown(&key, &v));
            Problem {
                origin,
                value,
                reason: error.to_string(),
                key,
            }
        }
        other => Problem {
            key: UNKNOWN_KEY.into(),
            value: None,
            origin: "configuration".into(),
            reason: other.to_string(),
        },
    }
}

/// Values that may hold a password, masked in error messages and logs.
/// A typo still holds the secret: `databse: {url: postgres://u:pw@h/d}`,
/// `PGFLEET__DATABASE_URL=…`, `pasword: hunter2`. So besides the known
/// secret keys, a value is masked whole when its key is named like a
/// secret or sits under a `database`-like section, or when the value reads
/// like a connection string.
fn mask_if_secret(key: &str, value: String) -> String {
    match key {
        "database.url" => super::secret::mask_password(&value),
        "database.password" => super::secret::MASK.to_owned(),
        _ if known_keys().is_ok_and(|known| known.contains(key)) => value,
        _ if named_like_a_secret(key) || reads_like_a_connection_string(&value) => {
            super::secret::MASK.to_owned()
        }
        _ => value,
    }
}

/// Words in a key's name that say its value may be a secret.
const SECRET_WORDS: &[&str] = &[
    "pass", "pwd", "secret", "token", "url", "uri", "dsn", "conn", "key", "cred", "auth",
];

fn named_like_a_secret(key: &str) -> bool {
    let key = key.to_lowercase();
    let section = key.split(['.', '_']).next().unwrap_or("");
    edit_distance(section, "database") <= 2 || SECRET_WORDS.iter().any(|word| key.contains(word))
}

fn reads_like_a_connection_string(value: &str) -> bool {
    let lower = value.to_lowercase();
    lower.contains("://") || lower.contains("password") || lower.contains('@')
}

/// Checks that `http.token_file` holds a token (the HTTP actions read it
/// again at each request).
fn check_token_file(settings: &Settings, merged: &Config) -> Option<Problem> {
    let path = &settings.http.token_file;
    if path.is_empty() {
        return None;
    }
    let problem = |reason: String| Problem {
        key: "http.token_file".into(),
        value: Some(quoted(path)),
        origin: origin_of(merged, "http.token_file"),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Some(problem("the file is empty".into())),
        Ok(_) => None,
        Err(e) => Some(problem(format!("cannot read it: {e}"))),
    }
}

/// Reads `database.password_file`, at start and on every reload.
fn read_password_file(settings: &mut Settings, merged: &Config) -> Option<Problem> {
    let path = &settings.database.password_file;
    if path.is_empty() {
        return None;
    }
    let problem = |reason: String| Problem {
        key: "database.password_file".into(),
        value: Some(quoted(path)),
        origin: origin_of(merged, "database.password_file"),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let password = text.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                return Some(problem("the file is empty".into()));
            }
            settings.database.password_from_file = super::Secret::new(password);
            None
        }
        Err(e) => Some(problem(format!("cannot read it: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn yaml_file(text: &str) -> tempfile_path::TempPath {
        tempfile_path::write(text)
    }

    /// A tiny temp-file helper, to keep `tempfile` out of the dependencies.
    mod tempfile_path {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub struct TempPath(pub PathBuf);
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        pub fn write(text: &str) -> TempPath {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "pgfleet-test-{}-{}.yaml",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let mut file = std::fs::File::create(&path).expect("create temp yaml");
            super::Write::write_all(&mut file, text.as_bytes()).expect("write temp yaml");
            TempPath(path)
        }
    }

    fn problems(result: Result<Settings, ConfigError>) -> Vec<Problem> {
        match result {
            Err(ConfigError::Invalid(problems)) => problems,
            other => panic!("expected invalid configuration, got {other:?}"),
        }
    }

    #[test]
    fn defaults_alone_are_valid() {
        let settings = ConfigSources::default().load_without_env().expect("valid");
        assert_eq!(settings.naptime, std::time::Duration::from_secs(10));
        assert_eq!(&*settings.workers.table, "counted");
    }

    #[test]
    fn files_apply_in_order_then_environment() {
        let first = yaml_file("naptime: 3\nworkers:\n  total: 5\n");
        let second = yaml_file("naptime: 250ms\n");
        let sources = ConfigSources::new(vec![first.0.clone(), second.0.clone()]);
        let settings = sources
            .load_with_env(&env(&[("PGFLEET__WORKERS__TABLE", "hits")]))
            .expect("valid");
        assert_eq!(settings.naptime, std::time::Duration::from_millis(250));
        assert_eq!(settings.workers.total, 5);
        assert_eq!(&*settings.workers.table, "hits");
        let from_env = sources
            .load_with_env(&env(&[
                ("PGFLEET__NAPTIME", "7"),
                ("PGFLEET__WORKERS__SCHEMAS", "a, b"),
            ]))
            .expect("valid");
        assert_eq!(from_env.naptime, std::time::Duration::from_secs(7));
        assert_eq!(from_env.workers.schemas, ["a", "b"]);
    }

    #[test]
    fn unknown_keys_name_the_file_and_suggest() {
        let file = yaml_file("workers:\n  totl: 3\n");
        let found = problems(ConfigSources::new(vec![file.0.clone()]).load_without_env());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "workers.totl");
        assert!(
            found[0].origin.contains(&file.0.display().to_string()),
            "{:?}",
            found[0]
        );
        assert!(
            found[0].reason.contains("did you mean `workers.total`"),
            "{:?}",
            found[0]
        );
    }

    #[test]
    fn unknown_environment_keys_name_the_variable() {
        let found = problems(
            ConfigSources::default()
                .load_with_env(&env(&[("PGFLEET__DATABASE_URL", "postgres://x")])),
        );
        assert_eq!(
            found[0].origin,
            "environment variable PGFLEET__DATABASE_URL"
        );
        assert!(found[0].reason.contains("`database.url`"), "{:?}", found[0]);
        let found =
            problems(ConfigSources::default().load_with_env(&env(&[("PGFLEET_NAPTIME", "5")])));
        assert!(
            found[0].reason.contains("PGFLEET__NAPTIME"),
            "{:?}",
            found[0]
        );
    }

    #[test]
    fn foreign_single_underscore_variables_only_warn() {
        // What Kubernetes injects for a Service named `pgfleet`.
        let settings = ConfigSources::default()
            .load_with_env(&env(&[
                ("PGFLEET_PORT", "tcp://10.0.0.7:8080"),
                ("PGFLEET_PORT_8080_TCP_ADDR", "10.0.0.7"),
                ("PGFLEET_SERVICE_HOST", "10.0.0.7"),
            ]))
            .expect("Kubernetes service links must not stop the service");
        assert_eq!(
            settings.load_warnings.len(),
            1,
            "{:?}",
            settings.load_warnings
        );
        let warning = &settings.load_warnings[0];
        assert!(
            warning.contains("PGFLEET_PORT, PGFLEET_PORT_8080_TCP_ADDR, PGFLEET_SERVICE_HOST"),
            "{warning}"
        );
        assert!(!warning.contains("10.0.0.7"), "{warning}");
        let found = problems(
            ConfigSources::default().load_with_env(&env(&[("PGFLEET_DATABASE_POOL_SIZE", "3")])),
        );
        assert!(
            found[0].reason.contains("PGFLEET__DATABASE__POOL_SIZE"),
            "{:?}",
            found[0]
        );
    }

    #[test]
    fn secrets_under_misspelt_keys_are_masked() {
        let found = problems(ConfigSources::default().load_with_env(&env(&[(
            "PGFLEET__DATABASE_URL",
            "postgres://u:hunter2@h/d",
        )])));
        let text = found[0].to_string();
        assert!(
            !text.contains("hunter2") && text.contains("database_url"),
            "{text}"
        );
        for yaml in [
            "databse:\n  url: postgres://u:hunter2@h/d\n",
            "database:\n  pasword: hunter2\n",
            "dsn: host=h password=hunter2\n",
            "extra:\n  thing: postgres://u:hunter2@h/d\n",
        ] {
            let file = yaml_file(yaml);
            let text = ConfigSources::new(vec![file.0.clone()])
                .load_without_env()
                .unwrap_err()
                .to_string();
            assert!(!text.contains("hunter2"), "{yaml}: {text}");
        }
        // Values under keys that hold no secret stay readable.
        let file = yaml_file("colour: blue\n");
        let text = ConfigSources::new(vec![file.0.clone()])
            .load_without_env()
            .unwrap_err()
            .to_string();
        assert!(text.contains("blue"), "{text}");
    }

    #[test]
    fn bad_values_name_key_value_and_origin() {
        let file = yaml_file("workers:\n  total: two\n");
        let found = problems(ConfigSources::new(vec![file.0.clone()]).load_without_env());
        let text = found[0].to_string();
        assert!(text.contains("workers.total"), "{text}");
        assert!(text.contains("two"), "{text}");
        assert!(text.contains(&file.0.display().to_string()), "{text}");

        let found =
            problems(ConfigSources::default().load_with_env(&env(&[("PGFLEET__NAPTIME", "soon")])));
        let text = found[0].to_string();
        assert!(text.contains("naptime") && text.contains("soon"), "{text}");
        assert!(text.contains("PGFLEET__NAPTIME"), "{text}");

        let file = yaml_file("restart:\n  jitter: 1.5\n  multiplier: 0.5\n");
        let found = problems(ConfigSources::new(vec![file.0.clone()]).load_without_env());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found
            .iter()
            .all(|p| p.origin.contains(&file.0.display().to_string())));

        let file = yaml_file("log:\n  level: verbose\n");
        let text =
            problems(ConfigSources::new(vec![file.0.clone()]).load_without_env())[0].to_string();
        assert!(
            text.contains("log.level") && text.contains("verbose"),
            "{text}"
        );
    }

    #[test]
    fn missing_and_broken_files_are_named() {
        let missing =
            ConfigSources::new(vec!["/nonexistent/pgfleet.yaml".into()]).load_without_env();
        assert!(
            matches!(&missing, Err(ConfigError::Unreadable(m)) if m.contains("/nonexistent/pgfleet.yaml")),
            "{missing:?}"
        );
        let broken = yaml_file("naptime: [\n");
        let result = ConfigSources::new(vec![broken.0.clone()]).load_without_env();
        assert!(
            matches!(&result, Err(ConfigError::Unreadable(m)) if m.contains(&broken.0.display().to_string())),
            "{result:?}"
        );
    }

    #[test]
    fn password_file_is_read_and_masked() {
        let secret = yaml_file("hunter2\n");
        let file = yaml_file(&format!(
            "database:\n  password_file: {}\n",
            secret.0.display()
        ));
        let settings = ConfigSources::new(vec![file.0.clone()])
            .load_without_env()
            .expect("valid");
        assert_eq!(settings.database.password_from_file.expose(), "hunter2");
        let printed = serde_norway::to_string(&settings).expect("yaml");
        assert!(!printed.contains("hunter2"), "{printed}");

        let both = yaml_file(&format!(
            "database:\n  password: other\n  password_file: {}\n",
            secret.0.display()
        ));
        let text = ConfigSources::new(vec![both.0.clone()])
            .load_without_env()
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("database.password_file")
                && !text.contains("hunter2")
                && !text.contains("other"),
            "{text}"
        );

        let missing = yaml_file("database:\n  password_file: /nonexistent/secret\n");
        let text = ConfigSources::new(vec![missing.0.clone()])
            .load_without_env()
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("/nonexistent/secret") && text.contains("cannot read"),
            "{text}"
        );
    }

    #[test]
    fn every_wrong_value_is_named_in_one_run() {
        let file = yaml_file(
            "naptime: soon\nworkers:\n  total: many\n  totl: 3\nrestart:\n  jitter: lots\n  multiplier: 0.5\n",
        );
        let found = problems(ConfigSources::new(vec![file.0.clone()]).load_without_env());
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "naptime",
                "restart.jitter",
                "restart.multiplier",
                "workers.total",
                "workers.totl"
            ],
            "{found:?}"
        );
        let path = file.0.display().to_string();
        assert!(found.iter().all(|p| p.origin.contains(&path)), "{found:?}");

        let text = ConfigError::Invalid(found).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "invalid configuration, 5 problems:", "{text}");
        assert_eq!(lines.len(), 6, "{text}");
        assert!(
            lines[1..]
                .iter()
                .all(|line| line.starts_with("  key `") && line.contains(&path)),
            "{text}"
        );
        assert!(lines[4].contains("\"many\""), "{text}");
        let one_line = ConfigError::Invalid(problems(
            ConfigSources::new(vec![file.0.clone()]).load_without_env(),
        ))
        .one_line();
        assert!(
            one_line.starts_with("invalid configuration, 5 problems: key `naptime`")
                && one_line.contains("; key `restart.jitter`")
                && !one_line.contains('\n'),
            "{one_line}"
        );
    }

    #[test]
    fn every_known_key_is_checked_on_its_own() {
        // A map fits no key, so each must be reported, alone and by name,
        // however many others are wrong with it.
        let known = known_keys().expect("defaults");
        let mut text = String::new();
        let mut section = "";
        for key in &known {
            let (head, leaf) = key.split_once('.').unwrap_or(("", key));
            if head != section && !head.is_empty() {
                text.push_str(&format!("{head}:\n"));
            }
            section = head;
            let indent = if head.is_empty() { "" } else { "  " };
            text.push_str(&format!("{indent}{leaf}: {{x: 1}}\n"));
        }
        let file = yaml_file(&text);
        let found = problems(ConfigSources::new(vec![file.0.clone()]).load_without_env());
        let named: BTreeSet<String> = found.iter().map(|p| p.key.clone()).collect();
        assert_eq!(named, known, "{text}\n{found:#?}");
        assert_eq!(found.len(), known.len(), "{found:#?}");
    }

    #[test]
    fn a_check_of_two_keys_skips_a_key_it_could_not_read() {
        // restart.delay stands at its default (5s) once rejected; "max_delay
        // is shorter than restart.delay (5s)" would be about a value nobody
        // wrote.
        let file = yaml_file("restart:\n  delay: soon\n  max_delay: 1s\n");
        let found = problems(ConfigSources::new(vec![file.0.clone()]).load_without_env());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "restart.delay");
    }

    #[test]
    fn lists_and_maps_are_shown_as_written() {
        let file = yaml_file("workers:\n  table: [a, b]\nlog:\n  level: {b: [1, x y], a: ~}\n");
        let text = ConfigSources::new(vec![file.0.clone()])
            .load_without_env()
            .unwrap_err()
            .to_string();
        assert!(text.contains("key `workers.table` = [a, b] ("), "{text}");
        assert!(
            text.contains("key `log.level` = {a: null, b: [1, \"x y\"]} ("),
            "{text}"
        );
        assert!(!text.contains("\\\""), "{text}");
        // Under a secret key, a list is masked whole.
        let file = yaml_file("database:\n  url: [\"postgres://u:hunter2@h/d\"]\n");
        let text = ConfigSources::new(vec![file.0.clone()])
            .load_without_env()
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("database.url") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn a_directory_is_not_a_config_file() {
        let dir = std::env::temp_dir();
        let result = ConfigSources::new(vec![dir.clone()]).load_without_env();
        let canonical = dir.canonicalize().expect("temp dir").display().to_string();
        assert!(
            matches!(&result, Err(ConfigError::Unreadable(m))
                if m.contains(&canonical) && m.contains("is a directory, not a YAML file")),
            "{result:?}"
        );
        let missing =
            ConfigSources::new(vec!["/nonexistent/pgfleet.yaml".into()]).load_without_env();
        assert!(
            matches!(&missing, Err(ConfigError::Unreadable(m)) if m.contains("not found")),
            "{missing:?}"
        );
    }

    #[test]
    fn schemas_from_the_environment_are_a_list_or_an_error() {
        for value in ["[a, b]", "[\"a\",\"b\"]", "a,b", " a , b "] {
            let settings = ConfigSources::default()
                .load_with_env(&env(&[("PGFLEET__WORKERS__SCHEMAS", value)]))
                .expect(value);
            assert_eq!(settings.workers.schemas, ["a", "b"], "{value}");
        }
        for value in ["a, b]", "[a, b", "[a"] {
            let found = problems(
                ConfigSources::default()
                    .load_with_env(&env(&[("PGFLEET__WORKERS__SCHEMAS", value)])),
            );
            assert_eq!(found.len(), 1, "{value}: {found:?}");
            assert_eq!(
                found[0].origin, "environment variable PGFLEET__WORKERS__SCHEMAS",
                "{value}"
            );
        }
    }

    #[test]
    fn secrets_stay_out_of_errors() {
        let file = yaml_file("database:\n  url: 42\n  pool_size: -1\n");
        let _ = problems(ConfigSources::new(vec![file.0.clone()]).load_without_env());
        // What is built from the settings may name the URL as written: the
        // loader masks it. (The connector's own errors: `config_actor`.)
        let file = yaml_file("database:\n  url: \"postgres://u:hunter2@h:notaport/d\"\n");
        let text = ConfigSources::new(vec![file.0.clone()])
            .load_and_build(&[], |settings| {
                Err::<(), _>(vec![(
                    "database.url",
                    settings.database.url.expose().to_owned(),
                    "cannot be used".to_owned(),
                )])
            })
            .unwrap_err()
            .to_string();
        assert!(text.contains("key `database.url`"), "{text}");
        assert!(text.contains("cannot be used"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn what_is_built_is_handed_over_only_when_everything_passed() {
        let (settings, built) = ConfigSources::default()
            .load_and_build(&[], |settings| Ok(settings.workers.total))
            .expect("defaults are valid");
        assert_eq!(built, settings.workers.total);

        // Its problems and the settings' own, in one error, in key order.
        let file = yaml_file("workers:\n  fold_batch: 0\nnaptime: 0s\n");
        let found = problems(
            ConfigSources::new(vec![file.0.clone()])
                .load_and_build(&[], |_| {
                    Err::<(), _>(vec![("database.url", "x".into(), "no".into())])
                })
                .map(|(settings, ())| settings),
        );
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["database.url", "naptime", "workers.fold_batch"]);

        // Built, but another key is wrong: nothing is handed over.
        let file = yaml_file("naptime: 0s\n");
        let result =
            ConfigSources::new(vec![file.0.clone()]).load_and_build(&[], |_| Ok::<_, Vec<_>>(()));
        assert!(matches!(result, Err(ConfigError::Invalid(_))));
    }
}
