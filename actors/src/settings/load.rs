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

/// One bad key: which, with what value, from where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub value: Option<String>,
    pub origin: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key `{}`", self.key)?;
        if let Some(value) = &self.value {
            write!(f, " = {value:?}")?;
        }
        write!(f, " ({}): {}", self.origin, self.reason)
    }
}

fn display_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    match lines.len() {
        1 => format!("invalid configuration: {}", lines[0]),
        n => format!("invalid configuration, {n} problems: {}", lines.join("; ")),
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
        let known = known_keys()?;
        let (mut problems, warnings) = single_underscore_variables(environment, &known);
        let env_map: Map<String, String> = environment
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
            .cloned()
            .collect();

        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULTS_YAML, FileFormat::Yaml));
        for path in &self.files {
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
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        let mut settings: Settings = merged
            .clone()
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(vec![problem_from_config_error(&merged, e)]))?;
        let unreadable_password = read_password_file(&mut settings, &merged);
        let problems: Vec<Problem> = settings
            .problems()
            .into_iter()
            .map(|(key, value, reason)| Problem {
                origin: origin_of(&merged, key),
                key: key.to_owned(),
                value: Some(mask_if_secret(key, value)),
                reason,
            })
            .chain(unreadable_password)
            .collect();
        if problems.is_empty() {
            settings.load_warnings = warnings;
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
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

fn known_keys() -> Result<BTreeSet<String>, ConfigError> {
    let defaults = Config::builder()
        .add_source(File::from_str(DEFAULTS_YAML, FileFormat::Yaml))
        .build()
        .and_then(|c| c.collect())
        .map_err(|e| ConfigError::Unreadable(unreadable_message(e)))?;
    let mut keys = Vec::new();
    leaves("", &defaults, &mut keys);
    Ok(keys.into_iter().map(|(key, _)| key).collect())
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
            let value = mask_if_secret(&key, value.to_string());
            Problem {
                origin: describe_origin(value_origin, &key),
                value: Some(value),
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
            let value =
                value_at(merged, &key).map_or_else(|| unexpected.to_string(), |v| v.to_string());
            Problem {
                origin: match origin {
                    Some(origin) => describe_origin(Some(&origin), &key),
                    None => origin_of(merged, &key),
                },
                value: Some(mask_if_secret(&key, value)),
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
            let value = value_at(merged, &key).map(|v| mask_if_secret(&key, v.to_string()));
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

/// Reads `database.password_file`, at start and on every reload.
fn read_password_file(settings: &mut Settings, merged: &Config) -> Option<Problem> {
    let path = &settings.database.password_file;
    if path.is_empty() {
        return None;
    }
    let problem = |reason: String| Problem {
        key: "database.password_file".into(),
        value: Some(path.clone()),
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
        assert_eq!(settings.workers.table, "counted");
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
        assert_eq!(settings.workers.table, "hits");
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
    fn secrets_stay_out_of_errors() {
        let file = yaml_file("database:\n  url: 42\n  pool_size: -1\n");
        let _ = problems(ConfigSources::new(vec![file.0.clone()]).load_without_env());
        let file = yaml_file("database:\n  url: \"postgres://u:hunter2@h:notaport/d\"\n");
        let text = ConfigSources::new(vec![file.0.clone()])
            .load_without_env()
            .unwrap_err()
            .to_string();
        assert!(text.contains("database.url"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
