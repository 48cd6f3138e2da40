//! What a control message says, read from a NOTIFY payload: a verb, and
//! for some verbs a schema (or `*`). Plain data, so the listener and the
//! Supervisor only carry it out.
//!
//! The schema is the rest of the payload after the verb, as written: names
//! are case-sensitive, as worker_spi quotes them. A name with spaces at
//! its ends, or one that is `*`, is written in double quotes, SQL's way
//! (`fold "My Tenant"`, `""` for a quote inside).

/// Which workers a pause or resume is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `*`: every worker, and those started while the pause lasts.
    All,
    Schema(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Look for schemas now (`workers.match`).
    Rescan,
    /// What SIGHUP does.
    Reload,
    /// Fold this schema now; its next tick stays where it was.
    Fold(String),
    /// Skip this schema's ticks until resumed.
    Pause(Target),
    Resume(Target),
}

impl Command {
    /// The payload read, or why it is not understood (for the warning).
    pub fn parse(payload: &str) -> Result<Command, String> {
        let text = payload.trim();
        let (verb, rest) = match text.split_once(char::is_whitespace) {
            Some((verb, rest)) => (verb, rest.trim()),
            None => (text, ""),
        };
        let target = || -> Result<Target, String> {
            match rest {
                "" => Err(format!("{verb:?} needs a schema, or *")),
                "*" => Ok(Target::All),
                name => unquote(name).map(Target::Schema),
            }
        };
        let no_argument = |command: Command| {
            if rest.is_empty() {
                Ok(command)
            } else {
                Err(format!("{verb:?} takes nothing after it, found {rest:?}"))
            }
        };
        match verb.to_ascii_lowercase().as_str() {
            "rescan" => no_argument(Command::Rescan),
            "reload" => no_argument(Command::Reload),
            "fold" => match target()? {
                Target::All => Err("\"fold\" needs one schema; * is for pause and resume".into()),
                Target::Schema(name) => Ok(Command::Fold(name)),
            },
            "pause" => target().map(Command::Pause),
            "resume" => target().map(Command::Resume),
            "" => Err("the payload is empty".into()),
            other => Err(format!(
                "{other:?} is not a command (rescan, reload, fold <schema>, pause <schema>|*, \
                 resume <schema>|*)"
            )),
        }
    }

    /// For the metrics' `kind` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Rescan => "rescan",
            Command::Reload => "reload",
            Command::Fold(_) => "fold",
            Command::Pause(_) => "pause",
            Command::Resume(_) => "resume",
        }
    }
}

/// `name` as written, or the inside of `"…"` with `""` read as `"`.
fn unquote(name: &str) -> Result<String, String> {
    let Some(inner) = name
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return Ok(name.to_owned());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' && chars.next() != Some('"') {
            return Err(format!("{name} has a lone \" inside: write \"\" for one"));
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verbs_are_read_with_their_schema() {
        assert_eq!(Command::parse("rescan"), Ok(Command::Rescan));
        assert_eq!(Command::parse("  RELOAD "), Ok(Command::Reload));
        assert_eq!(
            Command::parse("fold tenant_1"),
            Ok(Command::Fold("tenant_1".into()))
        );
        assert_eq!(Command::parse("pause *"), Ok(Command::Pause(Target::All)));
        assert_eq!(
            Command::parse("resume Tenant_2"),
            Ok(Command::Resume(Target::Schema("Tenant_2".into())))
        );
    }

    #[test]
    fn a_name_is_taken_as_written_or_unquoted() {
        assert_eq!(
            Command::parse("fold My Tenant"),
            Ok(Command::Fold("My Tenant".into()))
        );
        assert_eq!(
            Command::parse("pause \"*\""),
            Ok(Command::Pause(Target::Schema("*".into())))
        );
        assert_eq!(
            Command::parse("fold \"a\"\"b\""),
            Ok(Command::Fold("a\"b".into()))
        );
        assert!(Command::parse("fold \"a\"b\"").is_err());
    }

    #[test]
    fn what_is_not_understood_says_why() {
        for (payload, says) in [
            ("", "empty"),
            ("fold", "needs a schema"),
            ("fold *", "needs one schema"),
            ("rescan now", "takes nothing"),
            ("drop tenant_1", "is not a command"),
        ] {
            let error = Command::parse(payload).expect_err(payload);
            assert!(error.contains(says), "{payload:?}: {error}");
        }
    }
}
