//! `gapless diff BASE.json NEW.json`: two saved results side by side, and whether NEW is worse.
//!
//! The comparison is typed data ([`Comparison`]) computed once, by [`compare`], from the two
//! [`RunResult`]s alone: every row (base, new, change), the limits judged ([`DiffCriterion`]),
//! the exit code and the line. The text table, the Markdown and the JSON
//! (`crate::report::diff`) render it; none judges again.
//!
//! What is compared, for the run and for every endpoint both results have (`targets[]`,
//! matched by name): requests (total, ok, failed, not sent), failure windows, gaps, the longest
//! and the total gap, p50 and p99 of the latency (from the intended send time) and of the
//! service time, each status code, error class and version; and for the run, the failed
//! requests attributed to each rollout step (by the listed windows' `steps` and `after_step`).
//!
//! NEW is worse (exit 1) when, in the run or in any endpoint both have, one limit breaks:
//!
//! - failed requests rose by more than `--max-failed-increase` (default 0: any rise);
//! - the longest gap (0 without gaps) grew by more than `--max-gap-increase` (default 0s);
//! - the p99 latency rose by more than `--max-p99-increase` percent of BASE's (default 20; not
//!   judged, and said so, when either run has no response).
//!
//! Counts are compared as they are: two runs of different rates or lengths are still compared,
//! with a note.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::config::{Setting, Source};
use crate::judge::verdict::Exit;
use crate::result::{Latency, RunResult, WindowEntry};
use crate::rollout::StepStatus;
use crate::units::format_ms;

/// The limits of a diff: how much worse NEW may be, each with who set it.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffLimits {
    /// Most failed requests NEW may have beyond BASE's.
    pub max_failed_increase: Setting<u64>,
    /// How much longer NEW's longest gap may be.
    pub max_gap_increase: Setting<Duration>,
    /// How much higher NEW's p99 latency may be, in percent of BASE's.
    pub max_p99_increase: Setting<f64>,
}

impl Default for DiffLimits {
    /// The documented defaults: no more failures, no longer gap, a p99 at most 20 % higher.
    fn default() -> DiffLimits {
        DiffLimits {
            max_failed_increase: Setting::default_value(0),
            max_gap_increase: Setting::default_value(Duration::ZERO),
            max_p99_increase: Setting::default_value(20.0),
        }
    }
}

/// A value of a row: a count, or milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A count.
    Count(u64),
    /// Milliseconds.
    Millis(f64),
}

/// NEW minus BASE, or a criterion's measured rise: a count, milliseconds or percent (by kind).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Change {
    /// A difference of counts.
    Count(i64),
    /// A difference of milliseconds, or a percentage.
    Number(f64),
}

/// One quantity in both runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// In BASE; `null` when it has none (a percentile without responses).
    pub base: Option<Value>,
    /// In NEW.
    pub new: Option<Value>,
    /// NEW minus BASE; `null` unless both have one.
    pub change: Option<Change>,
    /// The change in percent of BASE's; `null` when BASE's is 0 or missing.
    pub change_percent: Option<f64>,
}

/// The quantities compared for a run or an endpoint, in the order the table shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `requests.total`.
    Requests,
    /// `requests.ok`.
    Ok,
    /// `requests.failed`.
    Failed,
    /// `requests.unsent`.
    NotSent,
    /// `windows_total`.
    Windows,
    /// `gaps_total`.
    Gaps,
    /// `longest_gap_ms` (0 without gaps).
    LongestGapMs,
    /// `total_gap_ms`.
    TotalGapMs,
    /// `latency_ms.p50`.
    LatencyP50Ms,
    /// `latency_ms.p99`.
    LatencyP99Ms,
    /// `service_time_ms.p50`.
    ServiceP50Ms,
    /// `service_time_ms.p99`.
    ServiceP99Ms,
}

impl Metric {
    /// Every metric, in order.
    pub const ALL: [Metric; 12] = [
        Metric::Requests,
        Metric::Ok,
        Metric::Failed,
        Metric::NotSent,
        Metric::Windows,
        Metric::Gaps,
        Metric::LongestGapMs,
        Metric::TotalGapMs,
        Metric::LatencyP50Ms,
        Metric::LatencyP99Ms,
        Metric::ServiceP50Ms,
        Metric::ServiceP99Ms,
    ];

    /// Its name in the table.
    pub fn title(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Ok => "ok",
            Metric::Failed => "failed",
            Metric::NotSent => "not sent",
            Metric::Windows => "failure windows",
            Metric::Gaps => "gaps",
            Metric::LongestGapMs => "longest gap",
            Metric::TotalGapMs => "total gap",
            Metric::LatencyP50Ms => "p50 latency",
            Metric::LatencyP99Ms => "p99 latency",
            Metric::ServiceP50Ms => "p50 service time",
            Metric::ServiceP99Ms => "p99 service time",
        }
    }
}

/// What a limit of the diff checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LimitKind {
    /// `--max-failed-increase`: failed requests (`limit`, `measured`: counts).
    #[serde(rename = "max_failed_increase")]
    Failed,
    /// `--max-gap-increase`: the longest gap (milliseconds).
    #[serde(rename = "max_gap_increase")]
    Gap,
    /// `--max-p99-increase`: the p99 latency from the intended send time (percent of BASE's).
    #[serde(rename = "max_p99_increase")]
    P99,
}

impl LimitKind {
    /// The row it judges.
    pub fn metric(self) -> Metric {
        match self {
            LimitKind::Failed => Metric::Failed,
            LimitKind::Gap => Metric::LongestGapMs,
            LimitKind::P99 => Metric::LatencyP99Ms,
        }
    }

    /// The flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            LimitKind::Failed => "--max-failed-increase",
            LimitKind::Gap => "--max-gap-increase",
            LimitKind::P99 => "--max-p99-increase",
        }
    }
}

/// One limit, judged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiffCriterion {
    /// What it checks.
    pub kind: LimitKind,
    /// True unless it broke (a skipped one passes).
    pub passed: bool,
    /// The rise allowed: a count, milliseconds or percent (by kind).
    pub limit: Change,
    /// The rise measured (negative: NEW is better); `null` when skipped.
    pub measured: Option<Change>,
    /// Who set the limit: the flag, or `default`.
    pub source: Source,
    /// Why it was not judged, if it was not.
    pub skipped: Option<String>,
    /// The sentence of the line, when it broke.
    pub reason: Option<String>,
    /// The endpoint it judges (absent for the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The run, or one endpoint, in both results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scope {
    /// Every [`Metric`], in order.
    pub metrics: BTreeMap<Metric, Row>,
    /// Per HTTP status (or gRPC code, by name) seen in either.
    #[serde(serialize_with = "crate::measure::code::map::serialize")]
    pub codes: BTreeMap<u16, Row>,
    /// Per transport error class seen in either.
    pub errors: BTreeMap<String, Row>,
    /// Successful responses per version seen in either.
    pub versions: BTreeMap<String, Row>,
    /// The limits, judged: failed requests, longest gap, p99.
    pub criteria: Vec<DiffCriterion>,
}

impl Scope {
    /// The criterion that judges `metric`, if one does.
    pub fn criterion(&self, metric: Metric) -> Option<&DiffCriterion> {
        self.criteria.iter().find(|c| c.kind.metric() == metric)
    }
}

/// One endpoint both results have.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetScope {
    /// Its name in both.
    pub name: String,
    /// Its rows and criteria.
    #[serde(flatten)]
    pub scope: Scope,
}

/// The failed requests attributed to one rollout step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepRow {
    /// The step's name.
    pub name: String,
    /// How it ended in BASE; `null` when BASE has no step of that name.
    pub base_status: Option<StepStatus>,
    /// How it ended in NEW.
    pub new_status: Option<StepStatus>,
    /// Failed requests in the windows that overlap it.
    pub failed_during: Row,
    /// Failed requests in the windows that began after it ended, while no step ran.
    pub failed_after: Row,
}

/// Which result a side is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunInfo {
    /// The file, as given.
    pub file: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The gapless that wrote it.
    pub gapless_version: String,
    /// The target loaded.
    pub url: String,
    /// Its rate; `null` for a closed loop.
    pub qps: Option<f64>,
    /// How long its load lasted.
    pub duration_ms: f64,
    /// Its own verdict line.
    pub verdict_line: String,
}

impl RunInfo {
    /// The side of `result`, read from `file`.
    pub fn of(file: &str, result: &RunResult) -> RunInfo {
        RunInfo {
            file: file.to_string(),
            started_at: result.started_at.clone(),
            gapless_version: result.gapless_version.clone(),
            url: result.target.url.clone(),
            qps: result.load.qps,
            duration_ms: result.load.duration_ms,
            verdict_line: result.verdict.line.clone(),
        }
    }
}

/// Two results compared and judged: every renderer renders this.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The baseline.
    pub base: RunInfo,
    /// The run judged against it.
    pub new: RunInfo,
    /// True unless NEW is worse.
    pub passed: bool,
    /// The exit code: 0, or 1 when NEW is worse.
    pub exit_code: u8,
    /// `NOT WORSE: ...` or `WORSE: ...`: the last line of the text.
    pub line: String,
    /// One sentence per broken limit.
    pub reasons: Vec<String>,
    /// The whole run.
    pub run: Scope,
    /// Failed requests per rollout step (empty when neither run had steps).
    pub steps: Vec<StepRow>,
    /// Failed requests in windows before any step ran (`null` without steps).
    pub failed_before_steps: Option<Row>,
    /// The endpoints both results have, in BASE's order.
    pub targets: Vec<TargetScope>,
    /// Endpoints only BASE has (not judged).
    pub targets_only_in_base: Vec<String>,
    /// Endpoints only NEW has (not judged).
    pub targets_only_in_new: Vec<String>,
    /// What to keep in mind reading it: different rates, a run cut short, windows not listed.
    pub notes: Vec<String>,
}

impl Comparison {
    /// The exit code, typed.
    pub fn exit(&self) -> Exit {
        Exit::from_code(self.exit_code)
    }

    /// Every criterion: the run's, then each endpoint's.
    pub fn criteria(&self) -> impl Iterator<Item = &DiffCriterion> {
        self.run
            .criteria
            .iter()
            .chain(self.targets.iter().flat_map(|t| t.scope.criteria.iter()))
    }
}

/// Compares NEW with BASE (each with the file it came from) and judges NEW against `limits`.
pub fn compare(
    (base_file, base): (&str, &RunResult),
    (new_file, new): (&str, &RunResult),
    limits: &DiffLimits,
) -> Comparison {
    let run = scope(base, new, limits, None);
    let mut targets = Vec::new();
    let mut only_in_base = Vec::new();
    for b in &base.targets {
        match new.targets.iter().find(|n| n.name == b.name) {
            Some(n) => targets.push(TargetScope {
                name: b.name.clone(),
                scope: scope(&b.result, &n.result, limits, Some(&b.name)),
            }),
            None => only_in_base.push(b.name.clone()),
        }
    }
    let only_in_new: Vec<String> = new
        .targets
        .iter()
        .filter(|n| !base.targets.iter().any(|b| b.name == n.name))
        .map(|n| n.name.clone())
        .collect();
    let (steps, failed_before_steps) = steps(base, new);
    let mut comparison = Comparison {
        base: RunInfo::of(base_file, base),
        new: RunInfo::of(new_file, new),
        passed: true,
        exit_code: Exit::Pass.code(),
        line: String::new(),
        reasons: Vec::new(),
        run,
        steps,
        failed_before_steps,
        targets,
        targets_only_in_base: only_in_base,
        targets_only_in_new: only_in_new,
        notes: notes(base, new),
    };
    comparison.reasons = comparison
        .criteria()
        .filter_map(|c| c.reason.clone())
        .collect();
    comparison.passed = comparison.reasons.is_empty();
    comparison.exit_code = if comparison.passed {
        Exit::Pass
    } else {
        Exit::Dropped
    }
    .code();
    comparison.line = if comparison.passed {
        format!("NOT WORSE: {}", summary(&comparison.run))
    } else {
        format!("WORSE: {}", comparison.reasons.join("; "))
    };
    comparison
}

/// The run's (or an endpoint's) rows and criteria.
fn scope(b: &RunResult, n: &RunResult, limits: &DiffLimits, target: Option<&str>) -> Scope {
    let metrics = Metric::ALL
        .into_iter()
        .map(|m| (m, Row::new(value(b, m), value(n, m))))
        .collect();
    let codes = union(b.codes.keys(), n.codes.keys())
        .into_iter()
        .map(|c| (c, count_row(b.codes.get(&c), n.codes.get(&c))))
        .collect();
    let errors = union(b.errors.keys(), n.errors.keys())
        .into_iter()
        .map(|c| {
            (
                c.as_str().to_string(),
                count_row(b.errors.get(&c), n.errors.get(&c)),
            )
        })
        .collect();
    let versions = union(b.versions.keys(), n.versions.keys())
        .into_iter()
        .map(|v| {
            let count = |r: &RunResult| r.versions.get(&v).map(|e| e.count);
            let row = count_row(count(b).as_ref(), count(n).as_ref());
            (v, row)
        })
        .collect();
    Scope {
        metrics,
        codes,
        errors,
        versions,
        criteria: criteria(b, n, limits, target),
    }
}

/// The keys of two maps, each once, in order.
fn union<'a, K: Ord + Clone + 'a>(
    a: impl Iterator<Item = &'a K>,
    b: impl Iterator<Item = &'a K>,
) -> BTreeSet<K> {
    a.chain(b).cloned().collect()
}

/// A count absent from one side's map is 0 there.
fn count_row(b: Option<&u64>, n: Option<&u64>) -> Row {
    Row::new(
        Some(Value::Count(b.copied().unwrap_or(0))),
        Some(Value::Count(n.copied().unwrap_or(0))),
    )
}

/// `r`'s value of `m`; `None` for a percentile of a run without responses.
fn value(r: &RunResult, m: Metric) -> Option<Value> {
    let q = &r.requests;
    let percentile =
        |l: &Latency, p: fn(&Latency) -> f64| (l.count > 0).then(|| Value::Millis(p(l)));
    match m {
        Metric::Requests => Some(Value::Count(q.total)),
        Metric::Ok => Some(Value::Count(q.ok)),
        Metric::Failed => Some(Value::Count(q.failed)),
        Metric::NotSent => Some(Value::Count(q.unsent)),
        Metric::Windows => Some(Value::Count(r.windows_total)),
        Metric::Gaps => Some(Value::Count(r.gaps_total)),
        Metric::LongestGapMs => Some(Value::Millis(r.longest_gap_ms.unwrap_or(0.0))),
        Metric::TotalGapMs => Some(Value::Millis(r.total_gap_ms)),
        Metric::LatencyP50Ms => percentile(&r.latency_ms, |l| l.p50),
        Metric::LatencyP99Ms => percentile(&r.latency_ms, |l| l.p99),
        Metric::ServiceP50Ms => percentile(&r.service_time_ms, |l| l.p50),
        Metric::ServiceP99Ms => percentile(&r.service_time_ms, |l| l.p99),
    }
}

impl Row {
    /// The row of `base` and `new`, with the change when both are there.
    pub fn new(base: Option<Value>, new: Option<Value>) -> Row {
        let (change, percent) = match (base, new) {
            (Some(Value::Count(b)), Some(Value::Count(n))) => (
                Some(Change::Count(signed(n) - signed(b))),
                percent(b as f64, n as f64),
            ),
            (Some(b), Some(n)) => {
                let (b, n) = (b.as_f64(), n.as_f64());
                (Some(Change::Number(round3(n - b))), percent(b, n))
            }
            _ => (None, None),
        };
        Row {
            base,
            new,
            change,
            change_percent: percent,
        }
    }
}

impl Value {
    /// As a number.
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Count(n) => n as f64,
            Value::Millis(ms) => ms,
        }
    }
}

impl Change {
    /// As a number.
    pub fn as_f64(self) -> f64 {
        match self {
            Change::Count(n) => n as f64,
            Change::Number(x) => x,
        }
    }
}

/// A count as a signed number (counts stay far below `i64::MAX`).
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `n` in percent above `b` (rounded to 0.001); `None` when `b` is 0.
fn percent(b: f64, n: f64) -> Option<f64> {
    (b > 0.0).then(|| round3((n - b) / b * 100.0))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `+40`, `-3`, `0`.
pub fn signed_count(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// `300 ms`, `1.5 ms`, and `0 ms` rather than `0.0 ms`.
pub fn millis_text(ms: f64) -> String {
    if ms == 0.0 {
        "0 ms".to_string()
    } else {
        format_ms(ms)
    }
}

/// `+300 ms`, `-1.5 ms`, `0 ms`.
pub fn signed_ms(ms: f64) -> String {
    if ms > 0.0 {
        format!("+{}", millis_text(ms))
    } else if ms < 0.0 {
        format!("-{}", millis_text(-ms))
    } else {
        millis_text(0.0)
    }
}

/// `+25.0 %`, `-3.2 %`, `0.0 %`.
pub fn signed_percent(p: f64) -> String {
    if p > 0.0 {
        format!("+{p:.1} %")
    } else {
        format!("{p:.1} %")
    }
}

/// `--max-failed-increase 0 (default)`: the limit as the user would give it, and who did.
fn allowed(kind: LimitKind, limit: &str, source: &Source) -> String {
    match source {
        Source::Default => format!("{} {limit} by default", kind.flag()),
        _ => format!("{} {limit}", kind.flag()),
    }
}

/// The three limits for one scope.
fn criteria(
    b: &RunResult,
    n: &RunResult,
    limits: &DiffLimits,
    target: Option<&str>,
) -> Vec<DiffCriterion> {
    let named = |sentence: String| match target {
        Some(name) => format!("{name}: {sentence}"),
        None => sentence,
    };
    let mut list = Vec::new();

    // Failed requests.
    let max = &limits.max_failed_increase;
    let rise = signed(n.requests.failed) - signed(b.requests.failed);
    let broke = rise > signed(max.value);
    list.push(DiffCriterion {
        kind: LimitKind::Failed,
        passed: !broke,
        limit: Change::Count(signed(max.value)),
        measured: Some(Change::Count(rise)),
        source: max.source.clone(),
        skipped: None,
        reason: broke.then(|| {
            named(format!(
                "failed requests {} ({} → {}), above {}",
                signed_count(rise),
                b.requests.failed,
                n.requests.failed,
                allowed(LimitKind::Failed, &max.value.to_string(), &max.source)
            ))
        }),
        target: target.map(str::to_string),
    });

    // The longest gap.
    let max = &limits.max_gap_increase;
    let (gb, gn) = (
        b.longest_gap_ms.unwrap_or(0.0),
        n.longest_gap_ms.unwrap_or(0.0),
    );
    let rise = round3(gn - gb);
    // To the microsecond, as results hold times: 299999us is 299.999 ms, not 299.99899...
    let limit_ms = round3(max.value.as_secs_f64() * 1000.0);
    let broke = rise > limit_ms;
    list.push(DiffCriterion {
        kind: LimitKind::Gap,
        passed: !broke,
        limit: Change::Number(limit_ms),
        measured: Some(Change::Number(rise)),
        source: max.source.clone(),
        skipped: None,
        reason: broke.then(|| {
            named(format!(
                "longest gap {} ({} → {}), above {}",
                signed_ms(rise),
                gap_text(b.longest_gap_ms),
                gap_text(n.longest_gap_ms),
                allowed(
                    LimitKind::Gap,
                    &humantime::format_duration(max.value).to_string(),
                    &max.source
                )
            ))
        }),
        target: target.map(str::to_string),
    });

    // The p99 latency.
    let max = &limits.max_p99_increase;
    let (lb, ln) = (&b.latency_ms, &n.latency_ms);
    let skipped = if lb.count == 0 {
        Some("no response in BASE".to_string())
    } else if ln.count == 0 {
        Some("no response in NEW".to_string())
    } else if lb.p99 <= 0.0 {
        Some("BASE's p99 is 0".to_string())
    } else {
        None
    };
    let rise = match skipped {
        None => percent(lb.p99, ln.p99),
        Some(_) => None,
    };
    let broke = rise.is_some_and(|r| r > max.value);
    list.push(DiffCriterion {
        kind: LimitKind::P99,
        passed: !broke,
        limit: Change::Number(max.value),
        measured: rise.map(Change::Number),
        source: max.source.clone(),
        skipped,
        reason: rise.filter(|_| broke).map(|r| {
            named(format!(
                "p99 latency {} ({} → {}), above {}",
                signed_percent(r),
                format_ms(lb.p99),
                format_ms(ln.p99),
                allowed(LimitKind::P99, &format!("{}%", max.value), &max.source)
            ))
        }),
        target: target.map(str::to_string),
    });
    list
}

/// `300 ms`, or `none`.
fn gap_text(gap: Option<f64>) -> String {
    gap.map_or_else(|| "none".to_string(), format_ms)
}

/// The line of a diff that passed: the three judged changes of the run.
fn summary(run: &Scope) -> String {
    let part = |kind: LimitKind| {
        let c = run.criterion(kind.metric())?;
        let name = match kind {
            LimitKind::Failed => "failed requests",
            LimitKind::Gap => "longest gap",
            LimitKind::P99 => "p99 latency",
        };
        let change = match (c.measured, &c.skipped) {
            (Some(Change::Count(n)), _) => signed_count(n),
            (Some(Change::Number(p)), _) if kind == LimitKind::P99 => signed_percent(p),
            (Some(Change::Number(ms)), _) => signed_ms(ms),
            (None, Some(why)) => format!("not judged ({why})"),
            (None, None) => return None,
        };
        Some(format!("{name} {change}"))
    };
    [LimitKind::Failed, LimitKind::Gap, LimitKind::P99]
        .into_iter()
        .filter_map(part)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The foreground steps of either run, BASE's order first, with the failed requests of the
/// listed windows attributed to each; and those of windows before any step.
fn steps(b: &RunResult, n: &RunResult) -> (Vec<StepRow>, Option<Row>) {
    let mut names: Vec<&str> = Vec::new();
    for s in b.steps.iter().chain(&n.steps).filter(|s| !s.background) {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    if names.is_empty() {
        return (Vec::new(), None);
    }
    let status = |r: &RunResult, name: &str| {
        r.steps
            .iter()
            .find(|s| !s.background && s.name == name)
            .map(|s| s.status)
    };
    let failed = |r: &RunResult, keep: &dyn Fn(&WindowEntry) -> bool| {
        r.windows
            .iter()
            .filter(|w| keep(w))
            .map(|w| w.failed)
            .sum::<u64>()
    };
    let counts = |keep: &dyn Fn(&WindowEntry) -> bool| {
        Row::new(
            Some(Value::Count(failed(b, keep))),
            Some(Value::Count(failed(n, keep))),
        )
    };
    let rows = names
        .iter()
        .map(|&name| StepRow {
            name: name.to_string(),
            base_status: status(b, name),
            new_status: status(n, name),
            failed_during: counts(&|w| w.steps.iter().any(|s| s == name)),
            failed_after: counts(&|w| w.steps.is_empty() && w.after_step.as_deref() == Some(name)),
        })
        .collect();
    let before = counts(&|w| w.steps.is_empty() && w.after_step.is_none());
    (rows, Some(before))
}

/// What a reader should know before trusting the changes.
fn notes(b: &RunResult, n: &RunResult) -> Vec<String> {
    let mut notes = Vec::new();
    if b.load.qps != n.load.qps {
        let rate = |q: Option<f64>| {
            q.map_or_else(|| "a closed loop".to_string(), |q| format!("{q} req/s"))
        };
        notes.push(format!(
            "BASE ran at {}, NEW at {}: counts are compared as they are",
            rate(b.load.qps),
            rate(n.load.qps)
        ));
    }
    for (side, r) in [("BASE", b), ("NEW", n)] {
        if r.interrupted {
            notes.push(format!("{side} was cut short by a signal"));
        }
        if (r.windows.len() as u64) < r.windows_total {
            notes.push(format!(
                "{side} lists {} of its {} failure windows: the failed requests per step are those of the listed ones",
                r.windows.len(),
                r.windows_total
            ));
        }
    }
    if b.target.url != n.target.url && b.targets.is_empty() && n.targets.is_empty() {
        notes.push(format!(
            "BASE loaded {}, NEW {}",
            b.target.url, n.target.url
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::outcome::ErrorClass;
    use crate::result::{StepEntry, TargetEntry, VersionEntry};

    /// A run of `total` requests, `failed` of them 503s in one gap of `gap_ms` during step
    /// `flip`, with a p99 of `p99` ms.
    fn run(total: u64, failed: u64, gap_ms: Option<f64>, p99: f64) -> RunResult {
        let mut r = RunResult::default();
        r.load.qps = Some(200.0);
        r.requests.total = total;
        r.requests.ok = total - failed;
        r.requests.failed = failed;
        r.codes.insert(200, total - failed);
        if failed > 0 {
            r.codes.insert(503, failed);
        }
        r.latency_ms = Latency {
            count: total,
            p50: p99 / 2.0,
            p99,
            ..Latency::default()
        };
        r.service_time_ms = r.latency_ms.clone();
        r.steps.push(StepEntry {
            name: "flip".into(),
            ..StepEntry::default()
        });
        if let Some(gap) = gap_ms {
            let w = WindowEntry {
                duration_ms: gap,
                failed,
                steps: vec!["flip".into()],
                ..WindowEntry::default()
            };
            r.windows = vec![w.clone()];
            r.gaps = vec![w];
            r.windows_total = 1;
            r.gaps_total = 1;
            r.longest_gap_ms = Some(gap);
            r.total_gap_ms = gap;
        }
        r.versions.insert(
            "v1".into(),
            VersionEntry {
                count: total - failed,
                ..VersionEntry::default()
            },
        );
        r
    }

    fn diff(b: &RunResult, n: &RunResult, limits: &DiffLimits) -> Comparison {
        compare(("base.json", b), ("new.json", n), limits)
    }

    fn broken(c: &Comparison) -> Vec<LimitKind> {
        c.criteria().filter(|c| !c.passed).map(|c| c.kind).collect()
    }

    #[test]
    fn a_run_compared_with_itself_is_not_worse() {
        let r = run(1000, 40, Some(200.0), 10.0);
        let c = diff(&r, &r, &DiffLimits::default());
        assert!(c.passed);
        assert_eq!(c.exit_code, 0);
        assert!(broken(&c).is_empty());
        assert_eq!(
            c.line,
            "NOT WORSE: failed requests 0, longest gap 0 ms, p99 latency 0.0 %"
        );
        for (m, row) in &c.run.metrics {
            assert_eq!(row.base, row.new, "{m:?}");
        }
        assert_eq!(
            c.run.metrics[&Metric::Failed].change,
            Some(Change::Count(0))
        );
    }

    #[test]
    fn more_failures_and_a_longer_gap_are_worse_and_named() {
        let (b, n) = (run(1000, 0, None, 10.0), run(1000, 60, Some(300.0), 10.0));
        let c = diff(&b, &n, &DiffLimits::default());
        assert_eq!(c.exit_code, 1);
        assert_eq!(broken(&c), [LimitKind::Failed, LimitKind::Gap]);
        assert_eq!(
            c.reasons,
            [
                "failed requests +60 (0 → 60), above --max-failed-increase 0 by default",
                "longest gap +300 ms (none → 300 ms), above --max-gap-increase 0s by default",
            ]
        );
        assert_eq!(c.line, format!("WORSE: {}", c.reasons.join("; ")));
        let failed = &c.run.metrics[&Metric::Failed];
        assert_eq!(failed.change, Some(Change::Count(60)));
        assert_eq!(failed.change_percent, None, "from 0: no percentage");
        assert_eq!(
            c.run.codes[&503],
            Row::new(Some(Value::Count(0)), Some(Value::Count(60)))
        );
        assert_eq!(
            c.run.metrics[&Metric::LongestGapMs].change,
            Some(Change::Number(300.0))
        );
        // The step's row: 60 failed during it in NEW, none in BASE.
        assert_eq!(c.steps.len(), 1);
        assert_eq!(c.steps[0].failed_during.change, Some(Change::Count(60)));
        assert_eq!(c.steps[0].failed_after.change, Some(Change::Count(0)));
        assert_eq!(
            c.failed_before_steps.as_ref().and_then(|r| r.change),
            Some(Change::Count(0))
        );
    }

    #[test]
    fn fewer_failures_are_an_improvement() {
        let (b, n) = (run(1000, 60, Some(300.0), 10.0), run(1000, 0, None, 10.0));
        let c = diff(&b, &n, &DiffLimits::default());
        assert!(c.passed, "{}", c.line);
        assert_eq!(
            c.line,
            "NOT WORSE: failed requests -60, longest gap -300 ms, p99 latency 0.0 %"
        );
        assert_eq!(c.run.metrics[&Metric::Failed].change_percent, Some(-100.0));
    }

    #[test]
    fn each_limit_is_its_own_flag() {
        let (b, n) = (run(1000, 0, None, 10.0), run(1000, 60, Some(300.0), 10.0));
        let mut limits = DiffLimits {
            max_failed_increase: Setting {
                value: 60,
                source: Source::Flag("--max-failed-increase".into()),
            },
            ..DiffLimits::default()
        };
        assert_eq!(broken(&diff(&b, &n, &limits)), [LimitKind::Gap]);
        limits.max_gap_increase = Setting {
            value: Duration::from_millis(299),
            source: Source::Flag("--max-gap-increase".into()),
        };
        let c = diff(&b, &n, &limits);
        assert_eq!(
            c.reasons,
            ["longest gap +300 ms (none → 300 ms), above --max-gap-increase 299ms"]
        );
        limits.max_gap_increase.value = Duration::from_millis(300);
        assert!(
            diff(&b, &n, &limits).passed,
            "a rise equal to the limit passes"
        );
        // A gap in whole microseconds against the same limit: equal, not above.
        let odd = run(1000, 60, Some(299.999), 10.0);
        limits.max_gap_increase.value = Duration::from_micros(299_999);
        assert!(diff(&b, &odd, &limits).passed);
        limits.max_gap_increase.value = Duration::from_micros(299_998);
        assert!(!diff(&b, &odd, &limits).passed);
    }

    #[test]
    fn a_p99_rise_is_judged_in_percent_of_the_base() {
        let b = run(1000, 0, None, 100.0);
        let limits = DiffLimits::default();
        let at = |p99: f64| diff(&b, &run(1000, 0, None, p99), &limits);
        assert!(at(120.0).passed, "20 % is not more than 20 %");
        let c = at(125.0);
        assert_eq!(broken(&c), [LimitKind::P99]);
        assert_eq!(
            c.reasons,
            ["p99 latency +25.0 % (100 ms → 125 ms), above --max-p99-increase 20% by default"]
        );
        let p99 = c.run.criterion(Metric::LatencyP99Ms).unwrap();
        assert_eq!(p99.measured, Some(Change::Number(25.0)));
        assert_eq!(p99.limit, Change::Number(20.0));
        assert!(at(50.0).passed, "lower is better");
        let raised = DiffLimits {
            max_p99_increase: Setting {
                value: 25.0,
                source: Source::Flag("--max-p99-increase".into()),
            },
            ..DiffLimits::default()
        };
        assert!(diff(&b, &run(1000, 0, None, 125.0), &raised).passed);
    }

    #[test]
    fn a_p99_without_responses_is_not_judged_and_says_why() {
        let b = run(1000, 0, None, 10.0);
        let mut n = run(1000, 0, None, 10.0);
        n.latency_ms = Latency::default();
        let c = diff(&b, &n, &DiffLimits::default());
        assert!(c.passed);
        let p99 = c.run.criterion(Metric::LatencyP99Ms).unwrap();
        assert_eq!(p99.skipped.as_deref(), Some("no response in NEW"));
        assert_eq!(
            c.line,
            "NOT WORSE: failed requests 0, longest gap 0 ms, p99 latency not judged (no response in NEW)"
        );
        assert_eq!(p99.measured, None);
        assert_eq!(c.run.metrics[&Metric::LatencyP99Ms].new, None);
        assert_eq!(c.run.metrics[&Metric::LatencyP99Ms].change, None);
    }

    #[test]
    fn endpoints_are_matched_by_name_and_judged_each() {
        let target = |name: &str, r: RunResult| TargetEntry {
            name: name.into(),
            url: format!("http://{name}/"),
            result: Box::new(r),
        };
        let mut b = run(2000, 0, None, 10.0);
        b.targets = vec![
            target("api", run(1000, 0, None, 10.0)),
            target("old", run(1000, 0, None, 10.0)),
        ];
        let mut n = run(2000, 5, Some(20.0), 10.0);
        n.targets = vec![
            target("web", run(1000, 0, None, 10.0)),
            target("api", run(1000, 5, Some(20.0), 10.0)),
        ];
        let c = diff(&b, &n, &DiffLimits::default());
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].name, "api");
        assert_eq!(c.targets_only_in_base, ["old"]);
        assert_eq!(c.targets_only_in_new, ["web"]);
        let api: Vec<_> = c
            .criteria()
            .filter(|k| !k.passed && k.target.as_deref() == Some("api"))
            .map(|k| k.kind)
            .collect();
        assert_eq!(api, [LimitKind::Failed, LimitKind::Gap]);
        assert!(
            c.reasons
                .iter()
                .any(|r| r.starts_with("api: failed requests +5 (0 → 5)")),
            "{:?}",
            c.reasons
        );
    }

    #[test]
    fn codes_errors_and_versions_of_either_run_are_rows() {
        let b = run(100, 0, None, 1.0);
        let mut n = run(100, 3, Some(5.0), 1.0);
        n.errors.insert(ErrorClass::Reset, 2);
        n.versions.insert(
            "v2".into(),
            VersionEntry {
                count: 7,
                ..VersionEntry::default()
            },
        );
        let c = diff(&b, &n, &DiffLimits::default());
        assert_eq!(c.run.codes.keys().copied().collect::<Vec<_>>(), [200, 503]);
        assert_eq!(
            c.run.errors["reset"],
            Row::new(Some(Value::Count(0)), Some(Value::Count(2)))
        );
        assert_eq!(c.run.versions["v2"].change, Some(Change::Count(7)));
        assert_eq!(c.run.versions["v1"].change, Some(Change::Count(-3)));
    }

    #[test]
    fn the_notes_say_what_differs() {
        let b = run(100, 0, None, 1.0);
        let mut n = run(100, 0, None, 1.0);
        n.load.qps = Some(50.0);
        n.interrupted = true;
        n.windows_total = 3;
        let c = diff(&b, &n, &DiffLimits::default());
        assert_eq!(
            c.notes,
            [
                "BASE ran at 200 req/s, NEW at 50 req/s: counts are compared as they are",
                "NEW was cut short by a signal",
                "NEW lists 0 of its 3 failure windows: the failed requests per step are those of the listed ones",
            ]
        );
    }
}
