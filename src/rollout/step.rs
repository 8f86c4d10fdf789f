//! A rollout step as the configuration holds it: its name, its command as written, and what it
//! does (a shell command line, a program and its arguments, a pause, or a rollout strategy).

use std::fmt;
use std::time::Duration;

/// What a rollout step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A shell command line, run with `sh -c`.
    Shell(String),
    /// A program and its arguments, run directly (the quick form: `gapless run URL -- cmd args`).
    Exec(Vec<String>),
    /// A pause.
    Sleep(Duration),
    /// A rollout strategy, performed by the run's orchestrator (the embedded demo cluster).
    Orchestrated(super::strategy::Strategy),
}

impl fmt::Display for Action {
    /// The command as a user would type it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Shell(line) => f.write_str(line),
            Action::Exec(argv) => {
                let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
                f.write_str(&words.join(" "))
            }
            Action::Sleep(d) => write!(f, "sleep {}", humantime::format_duration(*d)),
            Action::Orchestrated(strategy) => strategy.fmt(f),
        }
    }
}

/// `word` as a POSIX shell would need it written: unchanged when it is plain, else in single
/// quotes.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%^".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// One step of the rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Shown in the output and the reports.
    pub name: String,
    /// The command as the user wrote it (`${VAR}` unexpanded), for the output and the reports.
    pub command: String,
    /// What it does.
    pub action: Action,
    /// Start no earlier than this offset from the start of the steps phase.
    pub at: Option<Duration>,
    /// The process group is killed and the step fails after this long.
    pub timeout: Duration,
    /// The exit status that means success.
    pub expect_exit: i32,
    /// A watcher: started and left running; each line it prints becomes a timeline event; stopped
    /// at the end of the run.
    pub background: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_display_with_shell_quoting() {
        let exec = Action::Exec(vec!["sh".into(), "-c".into(), "echo 'hi'; true".into()]);
        assert_eq!(exec.to_string(), r#"sh -c 'echo '\''hi'\''; true'"#);
        assert_eq!(shell_quote("deploy/web"), "deploy/web");
        assert_eq!(shell_quote(""), "''");
    }
}
