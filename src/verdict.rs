//! The verdict: did the release keep every request? Exit codes are the interface.

use std::fmt;

use crate::engine::LoadStats;
use crate::recorder::Recorder;

/// How the process ends. The numeric values are a stable interface for CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: every request kept (within the thresholds).
    Pass,
    /// 1: the release dropped requests or broke a threshold.
    Dropped,
    /// 2: usage or configuration error.
    Usage,
    /// 3: a rollout step failed or timed out.
    StepFailed,
    /// 4: the target was already failing before the rollout.
    UnhealthyBefore,
    /// 130: interrupted by SIGINT.
    Interrupted,
    /// 143: terminated by SIGTERM.
    Terminated,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Pass => 0,
            Exit::Dropped => 1,
            Exit::Usage => 2,
            Exit::StepFailed => 3,
            Exit::UnhealthyBefore => 4,
            Exit::Interrupted => 130,
            Exit::Terminated => 143,
        }
    }
}

/// Why a run stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

/// The judgement of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// True when the run passed.
    pub passed: bool,
    /// How the process ends.
    pub exit: Exit,
    /// One sentence per broken criterion; empty when passed.
    pub reasons: Vec<String>,
}

impl Verdict {
    /// Judges a finished (or interrupted) run.
    pub fn judge(
        recorder: &Recorder,
        _stats: &LoadStats,
        interruption: Option<Interruption>,
    ) -> Verdict {
        let mut reasons = Vec::new();
        if recorder.failed() > 0 {
            reasons.push(format!(
                "{} of {} requests failed ({})",
                recorder.failed(),
                recorder.total(),
                failure_breakdown(recorder)
            ));
        }
        if recorder.total() == 0 {
            reasons.push("no request was made".to_string());
        }
        let exit = match interruption {
            Some(Interruption::Interrupt) => Exit::Interrupted,
            Some(Interruption::Terminate) => Exit::Terminated,
            None if reasons.is_empty() => Exit::Pass,
            None => Exit::Dropped,
        };
        if interruption.is_some() {
            reasons.push("the run was interrupted before it finished".to_string());
        }
        Verdict {
            passed: exit == Exit::Pass,
            exit,
            reasons,
        }
    }
}

impl fmt::Display for Verdict {
    /// The one line a human acts on: `PASS: ...` or `FAIL: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed {
            f.write_str("PASS: every request succeeded")
        } else {
            let word = match self.exit {
                Exit::Interrupted | Exit::Terminated => "INTERRUPTED",
                _ => "FAIL",
            };
            write!(f, "{word}: {}", self.reasons.join("; "))
        }
    }
}

/// `503: 40, reset: 2`: failing status codes, then error classes, by count.
pub fn failure_breakdown(recorder: &Recorder) -> String {
    let ok = recorder.ok_codes();
    let mut parts: Vec<(u64, String)> = recorder
        .codes()
        .filter(|&(code, _)| !ok.contains(code))
        .map(|(code, n)| (n, code.to_string()))
        .chain(
            recorder
                .errors()
                .map(|(class, new, reused)| (new + reused, class.as_str().to_string())),
        )
        .collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    parts
        .iter()
        .map(|(n, name)| format!("{name}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OkCodes;
    use crate::outcome::{Completion, ConnectionUse, ErrorClass, Outcome};
    use std::time::{Duration, Instant};

    fn recorder(outcomes: &[Outcome]) -> Recorder {
        let start = Instant::now();
        let mut r = Recorder::new(start, Duration::from_secs(1), OkCodes::default());
        for (i, &outcome) in outcomes.iter().enumerate() {
            r.record(&Completion {
                seq: i as u64,
                due: start,
                sent: Some(start),
                done: start,
                outcome,
                connection: ConnectionUse::Reused,
                body_bytes: 0,
            });
        }
        r
    }

    #[test]
    fn clean_run_passes() {
        let r = recorder(&[Outcome::Status(200), Outcome::Status(204)]);
        let v = Verdict::judge(&r, &LoadStats::default(), None);
        assert!(v.passed);
        assert_eq!(v.exit.code(), 0);
        assert_eq!(v.to_string(), "PASS: every request succeeded");
    }

    #[test]
    fn any_failure_fails_with_breakdown() {
        let r = recorder(&[
            Outcome::Status(200),
            Outcome::Status(503),
            Outcome::Status(503),
            Outcome::Failed(ErrorClass::Reset),
        ]);
        let v = Verdict::judge(&r, &LoadStats::default(), None);
        assert_eq!(v.exit, Exit::Dropped);
        assert_eq!(
            v.to_string(),
            "FAIL: 3 of 4 requests failed (503: 2, reset: 1)"
        );
    }

    #[test]
    fn interruption_wins() {
        let r = recorder(&[Outcome::Status(200)]);
        let v = Verdict::judge(&r, &LoadStats::default(), Some(Interruption::Terminate));
        assert_eq!(v.exit.code(), 143);
        assert!(!v.passed);
        assert!(v.to_string().starts_with("INTERRUPTED: "));
    }
}
