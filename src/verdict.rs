//! The verdict: did the release keep every request? Exit codes are the interface.

use std::fmt;
use std::time::Duration;

use crate::config::VerdictConfig;
use crate::gaps::Window;
use crate::recorder::Phase;
use crate::recorder::Recorder;
use crate::rollout::RolloutReport;
use crate::version::Labels;

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
    /// 5: gapless itself failed: a load worker panicked, the engine could not start, or a
    /// report could not be written at the end (the other reports still were). Not a judgement
    /// of the target.
    Internal,
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
            Exit::Internal => 5,
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
    /// The summary when passed (`every request succeeded`, or the failures within thresholds).
    pub summary: String,
}

impl Verdict {
    /// Judges a finished (or interrupted) run against the thresholds.
    ///
    /// Exit precedence: interrupted (130/143), then failures during warmup (4: the rollout never
    /// started), then a failed step (3), then dropped requests or a broken threshold (1).
    pub fn judge(
        recorder: &Recorder,
        rollout: &RolloutReport,
        versions: &Labels,
        thresholds: &VerdictConfig,
        interruption: Option<Interruption>,
    ) -> Verdict {
        let mut reasons = Vec::new();
        let (total, failed) = (recorder.total(), recorder.failed());
        let gaps = recorder.gaps().totals();
        let longest = gaps.longest_gap.as_ref();
        let too_many = thresholds.max_failures.is_some_and(|max| failed > max)
            || thresholds
                .max_failure_ratio
                .is_some_and(|max| total > 0 && failed as f64 / total as f64 > max);
        let gap_too_long = longest.is_some_and(|g| {
            thresholds
                .max_gap
                .is_some_and(|max| max.is_zero() || g.duration() > max)
        });
        if too_many {
            let mut reason = format!(
                "{failed} of {total} requests failed ({})",
                failure_breakdown(recorder)
            );
            // Requests never sent are in no window: all of them, and no window to name.
            if gaps.windows > 0 {
                reason.push_str(&format!(
                    " in {} window{}",
                    gaps.windows,
                    plural(gaps.windows)
                ));
            }
            if let Some(gap) = longest {
                reason.push_str("; ");
                reason.push_str(&describe_gap(gap, rollout));
            }
            reasons.push(reason);
        } else if gap_too_long {
            if let (Some(gap), Some(max)) = (longest, thresholds.max_gap) {
                reasons.push(format!(
                    "{} (--max-gap {})",
                    describe_gap(gap, rollout),
                    humantime::format_duration(max)
                ));
            }
        }
        if let Some(max) = thresholds.max_p99 {
            let p99 = Duration::from_micros(recorder.corrected().value_at_quantile(0.99));
            if !recorder.corrected().is_empty() && p99 > max {
                reasons.push(format!(
                    "p99 latency {} is above --max-p99 {}",
                    format_ms(p99),
                    humantime::format_duration(max)
                ));
            }
        }
        if total == 0 {
            reasons.push("no request was made".to_string());
        }
        if let Some(expected) = &thresholds.expect_version {
            reasons.extend(wrong_versions(recorder, versions, expected));
        }
        let step_failed = rollout.failed_step();
        if let Some(step) = step_failed {
            reasons.push(format!(
                "step {:?} {}",
                step.name,
                step.problem.as_deref().unwrap_or("failed")
            ));
        }
        // Decided when the warmup ended: a failure recorded later but intended during warmup
        // (a request in flight when the first step broke something) belongs to the rollout.
        let warmup_failed = rollout.unhealthy_warmup;
        if let Some((warm_failed, warm_total)) = warmup_failed {
            reasons.insert(
                0,
                format!(
                    "by the end of the warmup {warm_failed} of {warm_total} requests had failed: \
                     the target was unhealthy before the rollout, so no step ran \
                     (--allow-warmup-errors judges anyway)"
                ),
            );
        }
        let exit = match interruption {
            Some(Interruption::Interrupt) => Exit::Interrupted,
            Some(Interruption::Terminate) => Exit::Terminated,
            None if warmup_failed.is_some() => Exit::UnhealthyBefore,
            None if step_failed.is_some() => Exit::StepFailed,
            None if reasons.is_empty() => Exit::Pass,
            None => Exit::Dropped,
        };
        if interruption.is_some() {
            reasons.push("the run was interrupted before it finished".to_string());
        }
        let summary = if failed == 0 {
            "every request succeeded".to_string()
        } else {
            format!(
                "{failed} of {total} requests failed ({}), within the thresholds",
                failure_breakdown(recorder)
            )
        };
        Verdict {
            passed: exit == Exit::Pass,
            exit,
            reasons,
            summary,
        }
    }
}

/// `v1 answered 40 times after the last step ended (first at +12.3 s); expected only v2`: one
/// sentence per other version that answered in the phase after the rollout (the cooldown; the
/// whole load for a run without steps).
fn wrong_versions(recorder: &Recorder, versions: &Labels, expected: &str) -> Vec<String> {
    let phase = recorder
        .phase(Phase::Cooldown)
        .or_else(|| recorder.phase(Phase::Load));
    let Some(phase) = phase else {
        return Vec::new();
    };
    let when = if phase.phase == Phase::Cooldown {
        "after the last step ended"
    } else {
        "during the run"
    };
    let mut reasons: Vec<String> = phase
        .versions
        .iter()
        .filter(|(v, _, _)| versions.name(*v) != expected)
        .map(|&(v, n, first)| {
            format!(
                "version {} answered {n} time{} {when} (first at +{:.1} s); expected only {expected}",
                versions.name(v),
                plural(n),
                first.as_secs_f64()
            )
        })
        .collect();
    if reasons.is_empty()
        && phase.ok > 0
        && !phase
            .versions
            .iter()
            .any(|(v, _, _)| versions.name(*v) == expected)
    {
        reasons.push(format!(
            "no response named version {expected} {when}; expected only {expected}"
        ));
    }
    reasons
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `longest gap 120 ms at +12.3 s during step "set image"`.
fn describe_gap(gap: &Window, rollout: &RolloutReport) -> String {
    let steps = rollout.steps_during(gap.start, gap.end);
    let during = match steps.as_slice() {
        [] => match rollout.step_before(gap.start) {
            Some(step) => format!(" after step {step:?}"),
            None => String::new(),
        },
        [one] => format!(" during step {one:?}"),
        many => format!(
            " during steps {}",
            many.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "longest gap {} at +{:.1} s{during}",
        format_ms(gap.duration()),
        gap.start.as_secs_f64()
    )
}

/// `120 ms`, `1.5 ms`, `2350 ms`.
pub fn format_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

impl fmt::Display for Verdict {
    /// The one line a human acts on: `PASS: ...` or `FAIL: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed {
            write!(f, "PASS: {}", self.summary)
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
        .chain((recorder.unsent() > 0).then(|| {
            let class = crate::outcome::ErrorClass::NotSent;
            (recorder.unsent(), class.as_str().to_string())
        }))
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
    use crate::gaps::GapDetector;
    use crate::outcome::{Completion, ConnectionUse, ErrorClass, Outcome};
    use crate::rollout::{StepRecord, StepStatus};
    use std::time::Instant;

    /// One request per millisecond from the start, in `phase` from `phase_at` ms on.
    fn recorder(outcomes: &[Outcome], phase_at: Option<u64>) -> Recorder {
        let start = Instant::now();
        let ms = Duration::from_millis(1);
        let mut r = Recorder::new(
            start,
            crate::timeline::Timeline::new(Duration::from_secs(1)),
            OkCodes::default(),
            if phase_at.is_some() {
                Phase::Warmup
            } else {
                Phase::Load
            },
            GapDetector::new(Duration::ZERO, ms),
        );
        if let Some(at) = phase_at {
            r.begin_phase(Phase::Steps, ms * at as u32);
        }
        for (i, &outcome) in outcomes.iter().enumerate() {
            let due = start + ms * i as u32;
            r.record(&Completion {
                seq: i as u64,
                due,
                sent: Some(due),
                done: due + ms,
                outcome,
                connection: ConnectionUse::Reused,
                body_bytes: 0,
                version: None,
                envoy: None,
            });
        }
        r.finish(ms * outcomes.len() as u32);
        r
    }

    fn rollout(steps: &[(&str, u64, u64, StepStatus)]) -> RolloutReport {
        RolloutReport {
            steps: steps
                .iter()
                .map(|&(name, from, to, status)| StepRecord {
                    name: name.into(),
                    command: "true".into(),
                    background: false,
                    start: Some(Duration::from_millis(from)),
                    end: Some(Duration::from_millis(to)),
                    exit_code: Some(if status == StepStatus::Failed { 7 } else { 0 }),
                    signal: None,
                    status,
                    problem: (status == StepStatus::Failed)
                        .then(|| "exited 7 (expected 0)".to_string()),
                    output_tail: vec![],
                    output_tail_at: vec![],
                })
                .collect(),
            ..RolloutReport::default()
        }
    }

    const OK: Outcome = Outcome::Status(200);
    const E503: Outcome = Outcome::Status(503);
    const RESET: Outcome = Outcome::Failed(ErrorClass::Reset);

    fn judge(r: &Recorder, ro: &RolloutReport, t: &VerdictConfig) -> Verdict {
        Verdict::judge(r, ro, &Labels::default(), t, None)
    }

    #[test]
    fn clean_run_passes() {
        let r = recorder(&[OK, Outcome::Status(204)], None);
        let v = judge(&r, &RolloutReport::default(), &VerdictConfig::default());
        assert!(v.passed);
        assert_eq!(v.exit.code(), 0);
        assert_eq!(v.to_string(), "PASS: every request succeeded");
    }

    #[test]
    fn failures_name_windows_and_the_longest_gap_with_its_step() {
        let r = recorder(&[OK, E503, E503, OK, RESET, OK], None);
        let ro = rollout(&[("set image", 0, 3, StepStatus::Ok)]);
        let v = judge(&r, &ro, &VerdictConfig::default());
        assert_eq!(v.exit, Exit::Dropped);
        assert_eq!(
            v.to_string(),
            "FAIL: 3 of 6 requests failed (503: 2, reset: 1) in 2 windows; longest gap 2.0 ms \
             at +0.0 s during step \"set image\""
        );
    }

    #[test]
    fn thresholds_allow_some_failures_but_not_a_long_gap() {
        let r = recorder(&[OK, E503, E503, OK], None);
        let allow = VerdictConfig {
            max_failures: Some(2),
            max_gap: Some(Duration::from_millis(2)),
            ..VerdictConfig::default()
        };
        let v = judge(&r, &RolloutReport::default(), &allow);
        assert!(v.passed, "{v}");
        assert_eq!(
            v.to_string(),
            "PASS: 2 of 4 requests failed (503: 2), within the thresholds"
        );
        let short_gap = VerdictConfig {
            max_gap: Some(Duration::from_millis(1)),
            ..allow.clone()
        };
        let v = judge(&r, &RolloutReport::default(), &short_gap);
        assert_eq!(v.exit, Exit::Dropped);
        assert_eq!(
            v.reasons,
            vec!["longest gap 2.0 ms at +0.0 s (--max-gap 1ms)"]
        );
        let ratio = VerdictConfig {
            max_failure_ratio: Some(0.25),
            ..allow
        };
        assert_eq!(
            judge(&r, &RolloutReport::default(), &ratio).exit,
            Exit::Dropped
        );
    }

    #[test]
    fn p99_threshold() {
        let r = recorder(&[OK, OK], None);
        let t = VerdictConfig {
            max_p99: Some(Duration::from_micros(500)),
            ..VerdictConfig::default()
        };
        let v = judge(&r, &RolloutReport::default(), &t);
        assert_eq!(v.exit, Exit::Dropped);
        assert!(
            v.reasons[0].starts_with("p99 latency 1.0 ms is above --max-p99 500us"),
            "{v}"
        );
    }

    #[test]
    fn step_failure_is_exit_3_and_warmup_failure_exit_4() {
        let r = recorder(&[OK, OK, OK], Some(1));
        let ro = rollout(&[("deploy", 1, 2, StepStatus::Failed)]);
        let v = judge(&r, &ro, &VerdictConfig::default());
        assert_eq!(v.exit, Exit::StepFailed);
        assert_eq!(v.to_string(), "FAIL: step \"deploy\" exited 7 (expected 0)");

        let r = recorder(&[E503, OK, OK], Some(1));
        let unhealthy = RolloutReport {
            unhealthy_warmup: Some((1, 1)),
            ..RolloutReport::default()
        };
        let v = judge(&r, &unhealthy, &VerdictConfig::default());
        assert_eq!(v.exit, Exit::UnhealthyBefore);
        assert!(
            v.reasons[0].starts_with("by the end of the warmup 1 of 1 requests had failed"),
            "{v}"
        );
        // Judged anyway (--allow-warmup-errors: the rollout went ahead): an ordinary failure.
        let v = judge(&r, &RolloutReport::default(), &VerdictConfig::default());
        assert_eq!(v.exit, Exit::Dropped);
    }

    #[test]
    fn expected_version_after_the_last_step() {
        let labels = Labels::default();
        let (v1, v2) = (labels.intern("v1"), labels.intern("v2"));
        let start = Instant::now();
        let ms = Duration::from_millis(1);
        let mut r = Recorder::new(
            start,
            crate::timeline::Timeline::new(Duration::from_secs(1)),
            OkCodes::default(),
            Phase::Warmup,
            GapDetector::new(Duration::ZERO, ms),
        );
        r.begin_phase(Phase::Steps, ms * 2);
        r.begin_phase(Phase::Cooldown, ms * 4);
        for (i, version) in [v1, v1, v1, v2, v2, v1, v2].into_iter().enumerate() {
            let due = start + ms * i as u32;
            r.record(&Completion {
                seq: i as u64,
                due,
                sent: Some(due),
                done: due,
                outcome: OK,
                connection: ConnectionUse::Reused,
                body_bytes: 0,
                version: Some(version),
                envoy: None,
            });
        }
        r.finish(ms * 7);
        assert_eq!(r.cutover(), Some(ms * 5));
        assert_eq!(r.mixed_window(), Some((ms * 3, ms * 5)));
        let expect = |v: &str| VerdictConfig {
            expect_version: Some(v.to_string()),
            ..VerdictConfig::default()
        };
        let v = Verdict::judge(&r, &RolloutReport::default(), &labels, &expect("v1"), None);
        assert_eq!(v.exit, Exit::Dropped, "v2 answered in cooldown");
        let v = Verdict::judge(&r, &RolloutReport::default(), &labels, &expect("v2"), None);
        assert_eq!(v.exit, Exit::Dropped);
        assert_eq!(
            v.reasons,
            vec![
                "version v1 answered 1 time after the last step ended (first at +0.0 s); expected only v2"
            ]
        );
        assert_eq!(r.phase(Phase::Cooldown).unwrap().versions.len(), 2);
    }

    #[test]
    fn interruption_wins() {
        let r = recorder(&[OK], None);
        let v = Verdict::judge(
            &r,
            &RolloutReport::default(),
            &Labels::default(),
            &VerdictConfig::default(),
            Some(Interruption::Terminate),
        );
        assert_eq!(v.exit.code(), 143);
        assert!(!v.passed);
        assert!(v.to_string().starts_with("INTERRUPTED: "));
    }
}
