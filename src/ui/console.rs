//! The run's stderr: step output lines and the live progress line, without tearing each other.
//!
//! On a terminal the progress is one line rewritten in place; a step's output line clears it,
//! prints, and redraws it. Elsewhere (CI logs) every progress update is a plain line. A quiet
//! console (`--quiet`) prints neither: the steps' output still reaches the report's tails.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, PoisonError};

use crate::redact::Redactor;

/// The shared stderr writer of one run.
#[derive(Debug)]
pub struct Console {
    terminal: bool,
    /// Progress and run lines are printed (not `--quiet`).
    progress: bool,
    /// The progress line currently drawn (terminal only).
    status: Mutex<Option<String>>,
    /// Keeps secrets out of the lines printed.
    redactor: Option<Redactor>,
}

/// Clears the current terminal line.
const CLEAR_LINE: &str = "\r\x1b[2K";

impl Console {
    /// A console on stderr; `progress` false (`--quiet`) silences the progress line and every
    /// run line (step output, step start and end, demo orchestration events).
    pub fn stderr(progress: bool) -> Console {
        Console {
            terminal: std::io::stderr().is_terminal(),
            progress,
            status: Mutex::new(None),
            redactor: None,
        }
    }

    /// This console, with every line it prints redacted by `redactor`.
    pub fn redacting(self, redactor: Redactor) -> Console {
        Console {
            redactor: Some(redactor),
            ..self
        }
    }

    /// A console that prints nothing (library use, tests).
    pub fn silent() -> Console {
        Console {
            terminal: false,
            progress: false,
            status: Mutex::new(None),
            redactor: None,
        }
    }

    /// True when progress and run lines are printed.
    pub fn shows_progress(&self) -> bool {
        self.progress
    }

    /// Prints one full line (step output, notices), redacted, unless the console is quiet.
    pub fn line(&self, text: &str) {
        if !self.progress {
            return;
        }
        let redacted;
        let text = match &self.redactor {
            Some(r) => {
                redacted = r.text(text);
                redacted.as_str()
            }
            None => text,
        };
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let mut err = std::io::stderr().lock();
        let _ = match status.as_deref() {
            Some(s) if self.terminal => write!(err, "{CLEAR_LINE}{text}\n{s}"),
            _ => writeln!(err, "{text}"),
        };
        let _ = err.flush();
    }

    /// Shows the progress line.
    pub fn progress(&self, text: &str) {
        if !self.progress {
            return;
        }
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "{CLEAR_LINE}{text}");
            *status = Some(text.to_string());
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
    }

    /// Removes the progress line (before the report is printed).
    pub fn clear(&self) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if status.take().is_some() && self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{CLEAR_LINE}");
            let _ = err.flush();
        }
    }
}
