//! What the metrics endpoint publishes, one [`Snapshot`] at a time.
//!
//! While the load runs a snapshot is read from the run's recorders, under their locks, through
//! the same getters the live progress line reads (`crate::ui::progress`): totals, codes, error
//! classes, the failure windows closed so far and the latency histogram from the intended send
//! time. When the load ends the last live snapshot is kept until the result is judged; from then
//! on every value comes from the [`RunResult`] (the JSON result), so a scrape after the verdict
//! equals the JSON result's totals exactly.
//!
//! With several endpoints (`[[target]]`) the live counts are summed over the endpoints; their
//! windows are each endpoint's own (summed, the longest gap the longest of any) until the end,
//! when the run-wide values of the result (the times no endpoint answered) replace them.
//!
//! `passed` is passed-so-far: false as soon as a criterion of the verdict can no longer hold
//! (more failures than `--max-failures` on an endpoint, a gap longer than `--max-gap`, a stall
//! longer than `--max-stall`, failures in the warmup without `--allow-warmup-errors`); at the
//! end, the verdict's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::{Limits, RunConfig};
use crate::measure::outcome::ErrorClass;
use crate::measure::recorder::{LatencyHistogram, Phase, Recorder};
use crate::result::RunResult;
use crate::ui::progress::Status;

/// Where a run is, as `/status` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The load runs before the first step (a run with steps).
    Warmup,
    /// The load runs (without steps, or from the first step on).
    Running,
    /// The verdict is in; the final values are served for `--metrics-linger`.
    Lingering,
    /// The verdict is in.
    Finished,
}

/// The upper bounds of `gapless_latency_seconds`'s buckets (seconds), `+Inf` aside.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A latency histogram in Prometheus's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    /// Sum of the observations, seconds.
    pub sum: f64,
    /// Observations.
    pub count: u64,
    /// `(upper bound, observations in this bucket alone)`, the last one `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            sum: 0.0,
            count: 0,
            buckets: LATENCY_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .map(|le| (le, 0))
                .collect(),
        }
    }
}

impl Latency {
    /// `h` (µs) in [`LATENCY_BUCKETS`]: each value counts in the first bucket whose bound is at
    /// or above it (HdrHistogram's values are within 0.1 % of what was recorded).
    pub fn of(h: &LatencyHistogram) -> Latency {
        let mut latency = Latency::default();
        for v in h.iter_recorded() {
            let secs = v.value_iterated_to() as f64 / 1e6;
            let i = LATENCY_BUCKETS
                .iter()
                .position(|&le| secs <= le)
                .unwrap_or(LATENCY_BUCKETS.len());
            latency.buckets[i].1 += v.count_at_value();
        }
        latency.count = h.len();
        latency.sum = h.mean() * h.len() as f64 / 1e6;
        latency
    }
}

/// Everything published at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Where the run is.
    pub state: State,
    /// Requests due so far (sent, or not sent).
    pub total: u64,
    /// Successes.
    pub ok: u64,
    /// Failures.
    pub failed: u64,
    /// Responses per status code.
    pub codes: BTreeMap<u16, u64>,
    /// Failures per transport class (`not_sent` included), by wire name.
    pub errors: BTreeMap<&'static str, u64>,
    /// Failure windows found (closed) so far.
    pub windows: u64,
    /// Time without service so far: the sum of the gaps, seconds.
    pub gap_seconds: f64,
    /// The longest gap so far (0 without one), milliseconds.
    pub longest_gap_ms: f64,
    /// Latency from the intended send time.
    pub latency: Latency,
    /// Each step's label and status (`pending`, `running`, `ended` while the load runs; the
    /// result's status at the end), in scenario order.
    pub steps: Vec<(String, &'static str)>,
    /// The foreground step running (its label).
    pub step: Option<String>,
    /// Passed so far; at the end, the verdict's.
    pub passed: bool,
    /// The verdict, once judged.
    pub verdict: Option<bool>,
}

/// `/status`: the run's state for Argo Rollouts' Web metric provider (`jsonPath`).
#[derive(Clone, Debug, Serialize)]
pub struct StatusDoc {
    /// The run's id (also the `run_id` label and the JSON result's `run_id`).
    pub run_id: String,
    /// `{"index", "count"}` for a shard of a split load, else `null`.
    pub shard: Option<ShardDoc>,
    /// `warmup`, `running`, `lingering` or `finished`.
    pub state: State,
    /// Requests due so far.
    pub total: u64,
    /// Successes.
    pub ok: u64,
    /// Failures.
    pub failed: u64,
    /// Failure windows so far.
    pub windows: u64,
    /// The longest gap so far (0 without one).
    pub longest_gap_ms: f64,
    /// The foreground step running, if any.
    pub step: Option<String>,
    /// Passed so far; at the end, the verdict's.
    pub passed: bool,
    /// True once the verdict is in.
    pub finished: bool,
}

/// `/status`'s `shard`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ShardDoc {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards.
    pub count: u32,
}

/// The published state of one run, shared by the run (which feeds it) and the server (which
/// reads it on each request).
#[derive(Debug)]
pub struct Board {
    run_id: String,
    shard: Option<ShardDoc>,
    limits: Limits,
    /// The steps' names as the rollout reports them (to follow the running one), labels and
    /// kinds, in scenario order.
    names: Vec<String>,
    labels: Vec<String>,
    background: Vec<bool>,
    first_phase: Phase,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    recorders: Vec<Arc<Mutex<Recorder>>>,
    phase: Option<Phase>,
    /// The foreground step running.
    running: Option<usize>,
    /// Steps started so far (the index after the last one started).
    started: usize,
    /// The last live snapshot (once the load ended), or the final one.
    frozen: Option<Snapshot>,
    lingering: bool,
}

/// A step's label: its name, or `step N` when the name is its command (the quick form's
/// default), which may hold a secret; redacted either way.
pub fn step_label(index: usize, name: &str, command: &str, config: &RunConfig) -> String {
    if name.is_empty() || name == command {
        format!("step {}", index + 1)
    } else {
        config.redact.text(name)
    }
}

impl Board {
    /// The board of the run `run_id` configured by `config`.
    pub fn new(run_id: String, config: &RunConfig) -> Board {
        let steps = &config.rollout.steps;
        Board {
            run_id,
            shard: config.load.shard.as_ref().map(|s| ShardDoc {
                index: s.index,
                count: s.count.get(),
            }),
            limits: config.verdict.limits.clone(),
            names: steps.iter().map(|s| s.name.clone()).collect(),
            labels: steps
                .iter()
                .enumerate()
                .map(|(i, s)| step_label(i, &s.name, &s.command, config))
                .collect(),
            background: steps.iter().map(|s| s.background).collect(),
            first_phase: if config.rollout.has_steps() {
                Phase::Warmup
            } else {
                Phase::Load
            },
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The shard, for a shard of a split load.
    pub fn shard(&self) -> Option<ShardDoc> {
        self.shard
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, live values are read from `recorders` (one per endpoint).
    pub fn attach(&self, recorders: &[Arc<Mutex<Recorder>>]) {
        self.inner().recorders = recorders.to_vec();
    }

    /// Follows the run's phase and running step until `status`'s sender is gone (then never
    /// returns).
    pub async fn follow(&self, mut status: watch::Receiver<Status>) {
        loop {
            let now = status.borrow_and_update().clone();
            {
                let mut inner = self.inner();
                inner.phase = Some(now.phase);
                inner.running = now.step.as_ref().and_then(|name| {
                    // Steps start in order: the first of that name not started yet, else the
                    // last one started (a name seen again).
                    (inner.started..self.names.len())
                        .find(|&i| !self.background[i] && &self.names[i] == name)
                        .or_else(|| inner.started.checked_sub(1))
                });
                if let Some(i) = inner.running {
                    inner.started = inner.started.max(i + 1);
                }
            }
            if status.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// The load is over: the last live values stay published until [`Board::finish`], and the
    /// recorders are let go.
    pub fn detach(&self) {
        let last = self.snapshot();
        let mut inner = self.inner();
        inner.recorders.clear();
        inner.frozen = Some(last);
    }

    /// The verdict is in: from now on every value is `result`'s.
    pub fn finish(&self, result: &RunResult) {
        let labels = |i: usize, s: &crate::result::StepEntry| match self.labels.get(i) {
            Some(label) => label.clone(),
            None if s.name == s.command => format!("step {}", i + 1),
            None => s.name.clone(),
        };
        let snapshot = Snapshot {
            state: State::Finished,
            total: result.requests.total,
            ok: result.requests.ok,
            failed: result.requests.failed,
            codes: result.codes.clone(),
            errors: result
                .errors
                .iter()
                .map(|(c, &n)| (c.as_str(), n))
                .collect(),
            windows: result.windows_total,
            gap_seconds: result.total_gap_ms / 1000.0,
            longest_gap_ms: result.longest_gap_ms.unwrap_or(0.0),
            latency: result
                .histograms
                .latency()
                .map(|h| Latency::of(&h))
                .unwrap_or_default(),
            steps: result
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| (labels(i, s), s.status.as_str()))
                .collect(),
            step: None,
            passed: result.verdict.passed,
            verdict: Some(result.verdict.passed),
        };
        let mut inner = self.inner();
        inner.recorders.clear();
        inner.frozen = Some(snapshot);
    }

    /// The final values are served for `--metrics-linger`.
    pub fn linger(&self, lingering: bool) {
        self.inner().lingering = lingering;
    }

    /// What is published now.
    pub fn snapshot(&self) -> Snapshot {
        let (recorders, phase, running, started) = {
            let inner = self.inner();
            if let Some(frozen) = &inner.frozen {
                let mut s = frozen.clone();
                if s.verdict.is_some() && inner.lingering {
                    s.state = State::Lingering;
                }
                return s;
            }
            (
                inner.recorders.clone(),
                inner.phase.unwrap_or(self.first_phase),
                inner.running,
                inner.started,
            )
        };
        let mut s = Snapshot {
            state: if phase == Phase::Warmup {
                State::Warmup
            } else {
                State::Running
            },
            total: 0,
            ok: 0,
            failed: 0,
            codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            windows: 0,
            gap_seconds: 0.0,
            longest_gap_ms: 0.0,
            latency: Latency::default(),
            steps: Vec::new(),
            step: running.and_then(|i| self.labels.get(i).cloned()),
            passed: true,
            verdict: None,
        };
        let mut latency: Option<LatencyHistogram> = None;
        for recorder in &recorders {
            let r = recorder.lock().unwrap_or_else(PoisonError::into_inner);
            s.total += r.total();
            s.ok += r.ok();
            s.failed += r.failed();
            for (code, n) in r.codes() {
                *s.codes.entry(code).or_insert(0) += n;
            }
            for (class, new, reused) in r.errors() {
                *s.errors.entry(class.as_str()).or_insert(0) += new + reused;
            }
            if r.unsent() > 0 {
                *s.errors.entry(ErrorClass::NotSent.as_str()).or_insert(0) += r.unsent();
            }
            let totals = r.gaps().totals();
            s.windows += totals.windows;
            s.gap_seconds += totals.gap_time.as_secs_f64();
            let longest = totals.longest_gap.as_ref().map(|w| w.duration());
            if let Some(gap) = longest {
                s.longest_gap_ms = s.longest_gap_ms.max(gap.as_secs_f64() * 1000.0);
            }
            s.passed &= self.holds(&r, longest);
            match &mut latency {
                Some(sum) => r.corrected().add_to(sum),
                None => latency = Some(r.corrected().histogram()),
            }
        }
        if let Some(h) = &latency {
            s.latency = Latency::of(h);
        }
        s.steps = (0..self.labels.len())
            .map(|i| {
                let status = if running == Some(i) {
                    "running"
                } else if self.background[i] {
                    // A watcher starts once every foreground step before it has.
                    let before = (0..i).filter(|&j| !self.background[j]).max();
                    let reached = phase != Phase::Warmup
                        && phase != Phase::Load
                        && before.is_none_or(|j| j < started);
                    if reached { "running" } else { "pending" }
                } else if i < started {
                    "ended"
                } else {
                    "pending"
                };
                (self.labels[i].clone(), status)
            })
            .collect();
        s
    }

    /// False when `r`, whose longest closed gap is `longest`, already broke a criterion that
    /// can only get worse.
    fn holds(&self, r: &Recorder, longest: Option<std::time::Duration>) -> bool {
        let l = &self.limits;
        if l.max_failures
            .as_ref()
            .is_some_and(|m| r.failed() > m.value)
        {
            return false;
        }
        if let (Some(max), Some(gap)) = (&l.max_gap, longest)
            && (max.value.is_zero() || gap > max.value)
        {
            return false;
        }
        if l.max_stall
            .as_ref()
            .is_some_and(|m| r.stalls().longest_silence() > m.value)
        {
            return false;
        }
        let warmup_failed = r.phase(Phase::Warmup).is_some_and(|p| p.failed > 0);
        !warmup_failed || l.allow_warmup_errors
    }

    /// `/status` now.
    pub fn status(&self) -> StatusDoc {
        let s = self.snapshot();
        StatusDoc {
            run_id: self.run_id.clone(),
            shard: self.shard,
            state: s.state,
            total: s.total,
            ok: s.ok,
            failed: s.failed,
            windows: s.windows,
            longest_gap_ms: s.longest_gap_ms,
            step: s.step,
            passed: s.passed,
            finished: s.verdict.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_count_each_value_once() {
        let mut h = LatencyHistogram::new(3).unwrap();
        h.record(500).unwrap(); // 0.5 ms
        h.record(3_000).unwrap(); // 3 ms
        h.record(3_000).unwrap();
        h.record(400_000_000).unwrap(); // 400 s
        let l = Latency::of(&h);
        assert_eq!(l.count, 4);
        assert_eq!(l.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(l.buckets[0], (0.001, 1));
        assert_eq!(l.buckets[2], (0.005, 2));
        assert_eq!(l.buckets.last().map(|b| b.1), Some(1));
        assert_eq!(l.buckets.iter().map(|b| b.1).sum::<u64>(), 4);
        assert!((l.sum - 400.0065).abs() < 0.5, "{}", l.sum);
    }

    fn config(extra: &[&str]) -> RunConfig {
        let mut argv = vec!["gapless", "run", "http://127.0.0.1:9/"];
        argv.extend_from_slice(extra);
        let crate::cli::Command::Run(run) = crate::cli::Cli::parse_from(argv).unwrap().command
        else {
            unreachable!("a run command")
        };
        run.validate(None, &|_| None).unwrap().config
    }

    #[test]
    fn a_quick_form_step_is_labelled_by_position_not_by_its_command() {
        let c = config(&[
            "--",
            "curl",
            "-H",
            "Authorization: Bearer s3cret",
            "http://x",
        ]);
        let board = Board::new("r".into(), &c);
        let s = board.snapshot();
        assert_eq!(s.steps, [("step 1".to_string(), "pending")]);
        assert_eq!(s.state, State::Warmup);
        assert_eq!(board.status().step, None);
        let named = config(&["--step-name", "restart", "--", "true"]);
        let board = Board::new("r".into(), &named);
        assert_eq!(board.snapshot().steps[0].0, "restart");
    }

    #[test]
    fn the_final_values_are_the_results() {
        let board = Board::new("r".into(), &config(&[]));
        let mut result = RunResult::default();
        result.requests.total = 10;
        result.requests.ok = 7;
        result.requests.failed = 3;
        result.codes.insert(200, 7);
        result.codes.insert(503, 3);
        result.windows_total = 1;
        result.longest_gap_ms = Some(12.5);
        result.total_gap_ms = 12.5;
        result.verdict.passed = false;
        board.finish(&result);
        let s = board.snapshot();
        assert_eq!((s.total, s.ok, s.failed, s.windows), (10, 7, 3, 1));
        assert_eq!(s.codes[&503], 3);
        assert_eq!(s.state, State::Finished);
        board.linger(true);
        let status = board.status();
        assert_eq!(status.state, State::Lingering);
        assert!(status.finished && !status.passed);
        assert_eq!(status.longest_gap_ms, 12.5);
        assert!((board.snapshot().gap_seconds - 0.0125).abs() < 1e-12);
    }
}
