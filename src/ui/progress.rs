//! The live progress line, once a second on stderr (slow_cooker style): elapsed time, achieved
//! rate over the last second, successes, failures by code and class, p99 over the last second,
//! and the current phase and step.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::measure::recorder::{Phase, Recorder};
use crate::ui::console::Console;
use crate::units::breakdown;

/// Where the run is, for the progress line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The current phase.
    pub phase: Phase,
    /// The foreground step running, if any.
    pub step: Option<String>,
}

/// One progress line: everything it shows, so it can be formatted (and tested) apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Since the start of the run.
    pub elapsed: Duration,
    /// Attempts per second over the last interval.
    pub rate: f64,
    /// Successes so far.
    pub ok: u64,
    /// Failures so far.
    pub failed: u64,
    /// `503: 40, reset: 2`, empty without failures.
    pub breakdown: String,
    /// p99 of the corrected latency over the last interval (µs).
    pub p99_us: Option<u64>,
    /// How long the target has answered nothing while requests wait, when it is long enough
    /// to show ([`SHOW_STALL`]).
    pub stalled: Option<Duration>,
    /// Phase and step.
    pub status: Status,
}

/// A silence this long shows on the progress line as `stalled 1.2s`.
pub const SHOW_STALL: Duration = Duration::from_millis(300);

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{:>6.1}s] {:<8} {:>9.1} req/s  ok {}  failed {}",
            self.elapsed.as_secs_f64(),
            self.status.phase.as_str(),
            self.rate,
            self.ok,
            self.failed
        )?;
        if !self.breakdown.is_empty() {
            write!(f, " ({})", self.breakdown)?;
        }
        match self.p99_us {
            Some(us) => write!(f, "  p99 {:.2} ms", us as f64 / 1000.0)?,
            None => f.write_str("  p99 -")?,
        }
        if let Some(step) = &self.status.step {
            write!(f, "  step {step:?}")?;
        }
        if let Some(stalled) = self.stalled {
            write!(f, "  stalled {:.1}s", stalled.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Prints a progress line every `every` until dropped (it never returns). With several
/// recorders (one per endpoint) the counts are summed, the p99 is the largest endpoint's and a
/// stall shows when every endpoint is silent.
pub async fn show(
    recorders: &[Arc<Mutex<Recorder>>],
    console: &Console,
    start: Instant,
    status: watch::Receiver<Status>,
    every: Duration,
) {
    if !console.shows_progress() {
        return std::future::pending().await;
    }
    for recorder in recorders {
        recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .follow_recent();
    }
    let mut ticks = tokio::time::interval_at((start + every).into(), every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_total, mut last_at) = (0, start);
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let line = {
            let (mut total, mut ok, mut failed) = (0, 0, 0);
            let mut failures: BTreeMap<String, u64> = BTreeMap::new();
            let mut p99_us: Option<u64> = None;
            let mut silent: Option<Option<Duration>> = None;
            for recorder in recorders {
                let mut r = recorder.lock().unwrap_or_else(PoisonError::into_inner);
                total += r.total();
                ok += r.ok();
                failed += r.failed();
                for (name, n) in r.failures() {
                    *failures.entry(name).or_insert(0) += n;
                }
                p99_us = p99_us.max(r.take_recent_p99());
                let mine = r.silent_for(now);
                silent = Some(match silent {
                    None => mine,
                    Some(theirs) => theirs.zip(mine).map(|(a, b)| a.min(b)),
                });
            }
            let since = now.saturating_duration_since(last_at).as_secs_f64();
            let rate = if since > 0.0 {
                (total - last_total) as f64 / since
            } else {
                0.0
            };
            last_total = total;
            Line {
                elapsed: now.saturating_duration_since(start),
                rate,
                ok,
                failed,
                breakdown: if failed > 0 {
                    breakdown(failures)
                } else {
                    String::new()
                },
                p99_us,
                stalled: silent.flatten().filter(|d| *d >= SHOW_STALL),
                status: status.borrow().clone(),
            }
        };
        last_at = now;
        console.progress(&line.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let line = Line {
            elapsed: Duration::from_millis(12_040),
            rate: 999.5,
            ok: 11_960,
            failed: 40,
            breakdown: "503: 40".into(),
            p99_us: Some(3_210),
            stalled: None,
            status: Status {
                phase: Phase::Steps,
                step: Some("set image".into()),
            },
        };
        assert_eq!(
            line.to_string(),
            "[  12.0s] steps        999.5 req/s  ok 11960  failed 40 (503: 40)  p99 3.21 ms  step \"set image\""
        );
        let quiet = Line {
            breakdown: String::new(),
            failed: 0,
            p99_us: None,
            status: Status {
                phase: Phase::Warmup,
                step: None,
            },
            ..line
        };
        assert_eq!(
            quiet.to_string(),
            "[  12.0s] warmup       999.5 req/s  ok 11960  failed 0  p99 -"
        );
        let stalled = Line {
            stalled: Some(Duration::from_millis(1_240)),
            ..quiet
        };
        assert_eq!(
            stalled.to_string(),
            "[  12.0s] warmup       999.5 req/s  ok 11960  failed 0  p99 -  stalled 1.2s"
        );
    }
}
