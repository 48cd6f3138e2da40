//! Passwords never leave pgfleet, however they are written: property tests
//! over generated passwords (printable ASCII, spaces and `/ ? # : ' \`
//! included), in a URL as written or percent-encoded, in a `key=value`
//! string, under a misspelt key, in YAML and in the environment. What is
//! checked is everything pgfleet prints from a configuration: the
//! `--print-config` YAML, the `changes` of `config_reloaded`, and every
//! configuration error.

use std::io::Write;

use pgfleet_actors::config_actor::Loaded;
use pgfleet_actors::conninfo;
use pgfleet_actors::settings::{ConfigSources, Settings};
use proptest::prelude::*;

/// Whatever pgfleet would print for this configuration.
fn outputs(yaml: &str, env: &[(&str, &str)]) -> String {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    file.write_all(yaml.as_bytes()).expect("write");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sources = ConfigSources::new(vec![file.path().to_path_buf()]);
    // As the service reads it: the connector's errors are among the outputs.
    let quiet = slog::Logger::root(slog::Discard, slog::o!());
    match Loaded::read_with_env(&sources, &env, &quiet) {
        Ok(Loaded { settings, .. }) => {
            let defaults: Settings = ConfigSources::default()
                .load_without_env()
                .expect("defaults are valid");
            format!(
                "{}\n{}\n{:?}",
                serde_norway::to_string(&settings).expect("yaml"),
                settings.changes_from(&defaults).join("; "),
                settings.database
            )
        }
        Err(error) => error.to_string(),
    }
}

fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn quoted_value(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a JSON string is a YAML string")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn no_output_shows_a_generated_password(password in "[ -~]{8,24}") {
        // A raw '@' in a URL password is ambiguous; the contract is
        // that it is written encoded (%40), as libpq requires.
        let raw_url = format!("postgres://app:{password}@db.example:5432/app?sslmode=disable");
        let encoded_url = format!(
            "postgres://app:{}@db.example:5432/app",
            percent_encoded(&password)
        );
        let key_value = format!("host=db.example password={} user=app", quoted_value(&password));
        let query = format!(
            "postgres://db.example/app?user=app&password={}",
            percent_encoded(&password)
        );
        let mut forms = vec![(encoded_url, true), (key_value, true), (query, true)];
        if !password.contains('@') {
            // A raw '%' is libpq's percent-encoding: such a URL may not
            // parse (an error, which must not show it either).
            forms.push((raw_url, !password.contains('%')));
        }
        for (url, parses_back) in &forms {
            let shown = [
                outputs("{}", &[("PGFLEET__DATABASE__URL", url)]),
                outputs("naptime: soon\n", &[("PGFLEET__DATABASE__URL", url)]),
                outputs("{}", &[("PGFLEET__DATABASE_URL", url)]),
                outputs(&format!("databse:\n  url: {}\n", yaml_string(url)), &[]),
                outputs(&format!("database:\n  url: {}\n", yaml_string(url)), &[]),
                outputs(&format!("database:\n  pasword: {}\n", yaml_string(&password)), &[]),
                outputs(&format!("database:\n  password: {}\n", yaml_string(&password)), &[]),
            ];
            for text in &shown {
                prop_assert!(!text.contains(&password), "{url:?} leaked in:\n{text}");
                prop_assert!(
                    !text.contains(&percent_encoded(&password)),
                    "{url:?} leaked encoded in:\n{text}"
                );
            }
            // And the masking is not bought by misreading: the connection
            // string still carries exactly that password.
            if *parses_back {
                let options = conninfo::parse(url).expect("parses");
                prop_assert_eq!(options.get("password"), Some(password.as_str()));
            }
        }
    }
}
