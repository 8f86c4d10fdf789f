//! The verdict: did the release keep every request? Exit codes are the interface.
//!
//! The verdict is a list of typed criteria ([`Criterion`]), each judged from the run's result
//! alone ([`RunResult`]): thresholds (`--max-failures`, `--max-failure-ratio`, `--max-gap`,
//! `--max-p99`, `--expect-version`) and the criteria that are not thresholds (the run completed,
//! requests were sent, the target was healthy before the rollout, the steps succeeded). The exit
//! code and the verdict line follow from the criteria; every report renders them and none judges
//! again. A saved result is judged again, with other thresholds, by the same [`judge`]
//! (`gapless report RESULT.json --max-gap 100ms`).

use std::time::Duration;

use crate::config::{Limits, Source};
use crate::measure::recorder::Phase;
use crate::result::{
    Criterion, CriterionKind, HintEntry, Quantity, RunResult, StallEntry, Thresholds, Verdict,
    WindowEntry,
};
use crate::run::{Finished, Interruption};
use crate::units::{breakdown, format_ms};

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
    /// 5: gapless itself failed (a worker panicked, the engine could not start, or a report
    /// could not be written at the end).
    Internal,
    /// 6: a merged result is incomplete: a shard's result is missing, or a signal cut a shard
    /// short (`gapless merge`).
    Incomplete,
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
            Exit::Incomplete => 6,
            Exit::Interrupted => 130,
            Exit::Terminated => 143,
        }
    }

    /// The exit whose code is `code` (an unknown code counts as a dropped request).
    pub fn from_code(code: u8) -> Exit {
        [
            Exit::Pass,
            Exit::Dropped,
            Exit::Usage,
            Exit::StepFailed,
            Exit::UnhealthyBefore,
            Exit::Internal,
            Exit::Incomplete,
            Exit::Interrupted,
            Exit::Terminated,
        ]
        .into_iter()
        .find(|e| e.code() == code)
        .unwrap_or(Exit::Dropped)
    }

    /// The exit of an interruption.
    pub fn of(interruption: Interruption) -> Exit {
        match interruption {
            Interruption::Interrupt => Exit::Interrupted,
            Interruption::Terminate => Exit::Terminated,
        }
    }
}

/// The result of a finished run, judged against its own thresholds: measurements, thresholds,
/// verdict and hints.
/// (A run of several endpoints is judged by `crate::merge::endpoints`.)
pub fn judged(f: &Finished) -> RunResult {
    let mut result = RunResult::new(f);
    conclude(&mut result, &f.config.verdict.limits);
    result
}

/// Judges `result` against `limits`: sets its thresholds, its verdict and its hints. In a run
/// of several endpoints each endpoint's result is judged first (with the run's steps), and the
/// run's verdict holds each endpoint's criteria.
pub fn conclude(result: &mut RunResult, limits: &Limits) {
    for target in &mut result.targets {
        let own = &mut target.result;
        own.steps = result.steps.clone();
        own.interrupted = result.interrupted;
        own.interruption = result.interruption;
        conclude(own, limits);
        own.steps = Vec::new();
    }
    result.thresholds = Thresholds {
        max_failures: limits.max_failures.as_ref().map(|s| s.value),
        max_failure_ratio: limits.max_failure_ratio.as_ref().map(|s| s.value),
        max_gap_ms: limits.max_gap.as_ref().map(|s| millis(s.value)),
        max_p99_ms: limits.max_p99.as_ref().map(|s| millis(s.value)),
        expect_version: limits.expect_version.as_ref().map(|s| s.value.clone()),
        max_stall_ms: limits.max_stall.as_ref().map(|s| millis(s.value)),
        allow_warmup_errors: limits.allow_warmup_errors,
        // Judged only in a run with probes: a run without keeps its thresholds as they were.
        max_ungraceful_disconnects: limits
            .max_ungraceful_disconnects
            .as_ref()
            .filter(|_| !result.streams.is_empty())
            .map(|s| s.value),
        max_stream_gap_ms: limits
            .max_stream_gap
            .as_ref()
            .filter(|_| !result.streams.is_empty())
            .map(|s| millis(s.value)),
    };
    result.verdict = judge(result, limits);
    result.hints = crate::judge::hints::diagnose(result)
        .into_iter()
        .map(|h| HintEntry {
            rule: h.rule.to_string(),
            cause: h.cause.to_string(),
            fix: h.fix.to_string(),
            evidence: h.evidence,
        })
        .collect();
}

/// The thresholds a saved result was judged against, with who set each (from its criteria; a
/// result written before criteria existed counts every threshold as given).
pub fn limits_of(result: &RunResult) -> Limits {
    use crate::config::Setting;
    let source = |kind: CriterionKind| {
        result
            .verdict
            .criteria
            .iter()
            .find(|c| c.kind == kind)
            .map_or_else(
                || Source::Key("thresholds".to_string()),
                |c| c.source.clone(),
            )
    };
    let t = &result.thresholds;
    let ms = |v: f64| Duration::from_nanos((v.max(0.0) * 1e6).round() as u64);
    Limits {
        max_failures: t
            .max_failures
            .map(|v| Setting::from(v, source(CriterionKind::MaxFailures))),
        max_failure_ratio: t
            .max_failure_ratio
            .map(|v| Setting::from(v, source(CriterionKind::MaxFailureRatio))),
        max_gap: t
            .max_gap_ms
            .map(|v| Setting::from(ms(v), source(CriterionKind::MaxGap))),
        max_p99: t
            .max_p99_ms
            .map(|v| Setting::from(ms(v), source(CriterionKind::MaxP99))),
        expect_version: t
            .expect_version
            .clone()
            .map(|v| Setting::from(v, source(CriterionKind::ExpectVersion))),
        max_stall: t
            .max_stall_ms
            .map(|v| Setting::from(ms(v), source(CriterionKind::MaxStall))),
        allow_warmup_errors: t.allow_warmup_errors,
        max_ungraceful_disconnects: t
            .max_ungraceful_disconnects
            .map(|v| Setting::from(v, source(CriterionKind::MaxUngracefulDisconnects)))
            .or_else(|| Limits::default().max_ungraceful_disconnects),
        max_stream_gap: t
            .max_stream_gap_ms
            .map(|v| Setting::from(ms(v), source(CriterionKind::MaxStreamGap))),
    }
}

/// A duration limit as a reason names it: `--max-stall 2s`, or `--max-stall 1s, the default`
/// when nobody set it.
fn limit_note(flag: &str, max: &crate::config::Setting<std::time::Duration>) -> String {
    let value = humantime::format_duration(max.value);
    match max.source {
        crate::config::Source::Default => format!("{flag} {value}, the default"),
        _ => format!("{flag} {value}"),
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1000.0
}

/// Judges a result against `limits`.
///
/// Exit precedence: interrupted (130/143), then failures during warmup (4: the rollout never
/// started), then a failed step (3), then dropped requests or a broken threshold (1).
pub fn judge(r: &RunResult, limits: &Limits) -> Verdict {
    let criteria = criteria(r, limits);
    let failed = |kind| criteria.iter().any(|c| c.kind == kind && !c.passed);
    let exit = match r.interruption {
        Some(i) if failed(CriterionKind::Completed) => Exit::of(i),
        _ if failed(CriterionKind::Completed) => Exit::Interrupted,
        _ if failed(CriterionKind::Shards) => Exit::Incomplete,
        _ if failed(CriterionKind::HealthyBeforeRollout) => Exit::UnhealthyBefore,
        _ if failed(CriterionKind::Steps) => Exit::StepFailed,
        _ if criteria.iter().any(|c| !c.passed) => Exit::Dropped,
        _ => Exit::Pass,
    };
    let reasons = reasons(&criteria);
    let word = Verdict::word(exit.code());
    let line = match exit {
        Exit::Pass => format!("{word}: {}", summary(r)),
        _ => format!("{word}: {}", reasons.join("; ")),
    };
    Verdict {
        passed: exit == Exit::Pass,
        exit_code: exit.code(),
        line,
        reasons,
        criteria,
    }
}

/// The sentences of the verdict line, in the order a reader needs them: why no step ran, what
/// was dropped, then the other thresholds, the steps and the interruption. When too many
/// requests failed, that sentence names the longest gap too, so the gap's own is not repeated.
fn reasons(criteria: &[Criterion]) -> Vec<String> {
    const ORDER: [CriterionKind; 13] = [
        CriterionKind::Shards,
        CriterionKind::HealthyBeforeRollout,
        CriterionKind::MaxFailures,
        CriterionKind::MaxFailureRatio,
        CriterionKind::MaxGap,
        CriterionKind::MaxStall,
        CriterionKind::MaxUngracefulDisconnects,
        CriterionKind::MaxStreamGap,
        CriterionKind::MaxP99,
        CriterionKind::RequestsSent,
        CriterionKind::ExpectVersion,
        CriterionKind::Steps,
        CriterionKind::Completed,
    ];
    // Per endpoint (`None`: the run's own, or a run of one target).
    let broken = |kind, target: Option<&str>| {
        criteria
            .iter()
            .find(|c| c.kind == kind && !c.passed && c.target.as_deref() == target)
            .and_then(|c| c.reason.as_deref())
    };
    let mut out: Vec<String> = Vec::new();
    for kind in ORDER {
        for c in criteria.iter().filter(|c| c.kind == kind && !c.passed) {
            let target = c.target.as_deref();
            let Some(reason) = c.reason.as_deref() else {
                continue;
            };
            let too_many = broken(CriterionKind::MaxFailures, target)
                .or(broken(CriterionKind::MaxFailureRatio, target));
            let said = match kind {
                CriterionKind::MaxFailureRatio => {
                    broken(CriterionKind::MaxFailures, target).is_some()
                }
                CriterionKind::MaxGap => too_many.is_some(),
                _ => false,
            };
            if !said {
                // A version criterion can hold several sentences, one per line.
                out.extend(reason.lines().map(str::to_string));
            }
        }
    }
    out
}

/// The kinds a run of several endpoints judges once for the run, not per endpoint.
const RUN_WIDE: [CriterionKind; 6] = [
    CriterionKind::Steps,
    CriterionKind::HealthyBeforeRollout,
    CriterionKind::Completed,
    CriterionKind::Shards,
    CriterionKind::MaxUngracefulDisconnects,
    CriterionKind::MaxStreamGap,
];

/// Every criterion, in the order of the JUnit cases. With several endpoints: the run's own
/// ([`RUN_WIDE`]), after every endpoint's others, each named after its endpoint (and its
/// sentence too).
fn criteria(r: &RunResult, limits: &Limits) -> Vec<Criterion> {
    let own = criteria_of(r, limits);
    if r.targets.is_empty() {
        return own;
    }
    let mut list: Vec<Criterion> = Vec::new();
    for target in &r.targets {
        list.extend(
            target
                .result
                .verdict
                .criteria
                .iter()
                .filter(|c| !RUN_WIDE.contains(&c.kind))
                .map(|c| Criterion {
                    reason: c.reason.as_ref().map(|why| {
                        why.lines()
                            .map(|line| format!("{}: {line}", target.name))
                            .collect::<Vec<_>>()
                            .join("\n")
                    }),
                    target: Some(target.name.clone()),
                    ..c.clone()
                }),
        );
    }
    list.extend(own.into_iter().filter(|c| RUN_WIDE.contains(&c.kind)));
    list
}

/// The criteria of one result, on its own.
fn criteria_of(r: &RunResult, limits: &Limits) -> Vec<Criterion> {
    let total = r.requests.total;
    let failed = r.requests.failed;
    let has_steps = !r.steps.is_empty();
    let longest = longest_gap(r);
    let dropped = || {
        let mut sentence = format!(
            "{failed} of {total} requests failed ({})",
            failure_breakdown(r)
        );
        // Requests never sent are in no window: all of them, and no window to name.
        if r.windows_total > 0 {
            sentence.push_str(&format!(
                " in {} window{}",
                r.windows_total,
                plural(r.windows_total)
            ));
        }
        if let Some(gap) = longest {
            sentence.push_str("; ");
            sentence.push_str(&describe_gap(gap));
        }
        sentence
    };
    let mut list = Vec::new();

    list.push(match &limits.max_failures {
        Some(max) => assessed(
            CriterionKind::MaxFailures,
            failed <= max.value,
            Quantity::Count(max.value),
            Some(Quantity::Count(failed)),
            &max.source,
            dropped,
        ),
        None => skipped(CriterionKind::MaxFailures, "no --max-failures"),
    });

    let ratio = if total > 0 {
        failed as f64 / total as f64
    } else {
        0.0
    };
    list.push(match &limits.max_failure_ratio {
        Some(max) => assessed(
            CriterionKind::MaxFailureRatio,
            total == 0 || ratio <= max.value,
            Quantity::Number(max.value),
            Some(Quantity::Number(ratio)),
            &max.source,
            dropped,
        ),
        None => skipped(CriterionKind::MaxFailureRatio, "no --max-failure-ratio"),
    });

    let gap_ms = r.longest_gap_ms.unwrap_or(0.0);
    list.push(match &limits.max_gap {
        Some(max) => {
            let limit = millis(max.value);
            let too_long = r.longest_gap_ms.is_some() && (max.value.is_zero() || gap_ms > limit);
            assessed(
                CriterionKind::MaxGap,
                !too_long,
                Quantity::Number(limit),
                Some(Quantity::Number(gap_ms)),
                &max.source,
                || {
                    let gap = longest.map_or_else(
                        || format!("longest gap {}", format_ms(gap_ms)),
                        describe_gap,
                    );
                    format!("{gap} ({})", limit_note("--max-gap", max))
                },
            )
        }
        None => skipped(CriterionKind::MaxGap, "no --max-gap"),
    });

    list.push(match &limits.max_stall {
        Some(max) => {
            let limit = millis(max.value);
            let longest = r.longest_stall_ms;
            assessed(
                CriterionKind::MaxStall,
                longest <= limit,
                Quantity::Number(limit),
                Some(Quantity::Number(longest)),
                &max.source,
                || {
                    let at = longest_stall(r).map_or_else(String::new, describe_stall);
                    format!(
                        "the target answered nothing for {}{at} ({})",
                        format_ms(longest),
                        limit_note("--max-stall", max)
                    )
                },
            )
        }
        None => skipped(CriterionKind::MaxStall, "no --max-stall"),
    });

    list.push(match &limits.max_p99 {
        Some(max) => {
            let measured = (r.latency_ms.count > 0).then_some(r.latency_ms.p99);
            let p99 = measured.unwrap_or(0.0);
            assessed(
                CriterionKind::MaxP99,
                measured.is_none() || p99 <= millis(max.value),
                Quantity::Number(millis(max.value)),
                measured.map(Quantity::Number),
                &max.source,
                || {
                    format!(
                        "p99 latency {} is above --max-p99 {}",
                        format_ms(p99),
                        humantime::format_duration(max.value)
                    )
                },
            )
        }
        None => skipped(CriterionKind::MaxP99, "no --max-p99"),
    });

    list.push(match &limits.expect_version {
        Some(expected) => {
            let (others, sentences) = wrong_versions(r, &expected.value);
            assessed(
                CriterionKind::ExpectVersion,
                sentences.is_empty(),
                Quantity::Text(expected.value.clone()),
                Some(Quantity::Count(others)),
                &expected.source,
                || sentences.join("\n"),
            )
        }
        None => skipped(CriterionKind::ExpectVersion, "no --expect-version"),
    });

    let broken_steps: Vec<_> = r.steps.iter().filter(|s| s.status.is_failure()).collect();
    list.push(if has_steps {
        assessed(
            CriterionKind::Steps,
            broken_steps.is_empty(),
            Quantity::Count(0),
            Some(Quantity::Count(broken_steps.len() as u64)),
            &Source::Default,
            || {
                let step = broken_steps[0];
                format!(
                    "step {:?} {}",
                    step.name,
                    step.problem.as_deref().unwrap_or("failed")
                )
            },
        )
    } else {
        skipped(CriterionKind::Steps, "no rollout steps")
    });

    // Decided when the warmup ended: a failure intended after it belongs to the rollout.
    list.push(match &r.unhealthy_warmup {
        _ if !has_steps => skipped(CriterionKind::HealthyBeforeRollout, "no rollout steps"),
        _ if limits.allow_warmup_errors => Criterion {
            source: Source::Flag("--allow-warmup-errors".to_string()),
            ..skipped(CriterionKind::HealthyBeforeRollout, "--allow-warmup-errors")
        },
        None => assessed(
            CriterionKind::HealthyBeforeRollout,
            true,
            Quantity::Count(0),
            Some(Quantity::Count(0)),
            &Source::Default,
            String::new,
        ),
        Some(w) => assessed(
            CriterionKind::HealthyBeforeRollout,
            false,
            Quantity::Count(0),
            Some(Quantity::Count(w.failed)),
            &Source::Default,
            || {
                format!(
                    "by the end of the warmup {} of {} requests had failed: the target was \
                     unhealthy before the rollout, so no step ran (--allow-warmup-errors judges \
                     anyway)",
                    w.failed, w.requests
                )
            },
        ),
    });

    list.push(assessed(
        CriterionKind::RequestsSent,
        total > 0,
        Quantity::Count(1),
        Some(Quantity::Count(total)),
        &Source::Default,
        || "no request was made".to_string(),
    ));

    list.push(Criterion {
        kind: CriterionKind::Completed,
        passed: !r.interrupted,
        limit: None,
        measured: Some(Quantity::Text(
            match r.interruption {
                None if !r.interrupted => "completed",
                Some(Interruption::Terminate) => "terminate",
                _ => "interrupt",
            }
            .to_string(),
        )),
        source: Source::Default,
        skipped: None,
        reason: r
            .interrupted
            .then(|| "the run was interrupted before it finished".to_string()),
        target: None,
    });

    if !r.streams.is_empty() {
        list.extend(stream_criteria(r, limits));
    }

    // A merged result: every shard's part is in it, whole.
    if !r.shards.is_empty() {
        let whole = r
            .shards
            .iter()
            .filter(|s| !s.missing && !s.interrupted)
            .count() as u64;
        list.push(assessed(
            CriterionKind::Shards,
            whole == r.shards.len() as u64,
            Quantity::Count(r.shards.len() as u64),
            Some(Quantity::Count(whole)),
            &Source::Default,
            || {
                let mut said: Vec<String> = r
                    .shards
                    .iter()
                    .filter(|s| s.missing)
                    .map(|s| format!("shard {} sent no result", s.index))
                    .collect();
                said.extend(
                    r.shards
                        .iter()
                        .filter(|s| !s.missing && s.interrupted)
                        .map(|s| format!("shard {} ({}) was cut short", s.index, s.label)),
                );
                format!("{}: the merged run is incomplete", said.join(", "))
            },
        ));
    }
    list
}

/// The long-lived probes' criteria: ungraceful disconnects (over every probe) and the longest
/// time a connection went without a stream.
fn stream_criteria(r: &RunResult, limits: &Limits) -> Vec<Criterion> {
    let ungraceful: u64 = r.streams.iter().map(|s| s.disconnects.ungraceful).sum();
    let mut list = Vec::new();
    list.push(match &limits.max_ungraceful_disconnects {
        Some(max) => assessed(
            CriterionKind::MaxUngracefulDisconnects,
            ungraceful <= max.value,
            Quantity::Count(max.value),
            Some(Quantity::Count(ungraceful)),
            &max.source,
            || {
                let per_probe: Vec<String> = r
                    .streams
                    .iter()
                    .filter(|s| s.disconnects.ungraceful > 0)
                    .map(|s| {
                        let classes = breakdown(
                            s.disconnects
                                .by_class
                                .iter()
                                .filter(|(c, _)| !c.is_graceful())
                                .map(|(c, &n)| (c.to_string(), n)),
                        );
                        let first = r
                            .events
                            .iter()
                            .filter_map(|e| Some((e.t_ms, e.disconnect.as_ref()?)))
                            .find(|(_, d)| {
                                d.probe == s.name
                                    && !d.graceful
                                    && d.class != crate::result::StreamClass::NotServing
                            })
                            .map_or_else(String::new, |(t, _)| {
                                format!(", first at +{:.1} s", t / 1000.0)
                            });
                        format!(
                            "stream {:?} lost {} connection{} ungracefully ({classes}{first})",
                            s.name,
                            s.disconnects.ungraceful,
                            plural(s.disconnects.ungraceful)
                        )
                    })
                    .collect();
                let note = match max.source {
                    Source::Default => ", the default",
                    _ => "",
                };
                format!(
                    "{} (--max-ungraceful-disconnects {}{note})",
                    per_probe.join("; "),
                    max.value
                )
            },
        ),
        None => skipped(
            CriterionKind::MaxUngracefulDisconnects,
            "no --max-ungraceful-disconnects",
        ),
    });
    let longest = r
        .streams
        .iter()
        .max_by(|a, b| a.stream_gap_ms.longest.total_cmp(&b.stream_gap_ms.longest));
    let longest_ms = longest.map_or(0.0, |s| s.stream_gap_ms.longest);
    list.push(match &limits.max_stream_gap {
        Some(max) => assessed(
            CriterionKind::MaxStreamGap,
            longest_ms <= millis(max.value),
            Quantity::Number(millis(max.value)),
            Some(Quantity::Number(longest_ms)),
            &max.source,
            || {
                format!(
                    "stream {:?} had no connected stream for {} ({})",
                    longest.map_or("", |s| s.name.as_str()),
                    format_ms(longest_ms),
                    limit_note("--max-stream-gap", max)
                )
            },
        ),
        None => skipped(CriterionKind::MaxStreamGap, "no --max-stream-gap"),
    });
    list
}

/// A judged criterion; `reason` says why when it broke.
fn assessed(
    kind: CriterionKind,
    passed: bool,
    limit: Quantity,
    measured: Option<Quantity>,
    source: &Source,
    reason: impl FnOnce() -> String,
) -> Criterion {
    Criterion {
        kind,
        passed,
        limit: Some(limit),
        measured,
        source: source.clone(),
        skipped: None,
        reason: (!passed).then(reason),
        target: None,
    }
}

/// A criterion not judged, and why.
fn skipped(kind: CriterionKind, why: &str) -> Criterion {
    Criterion {
        kind,
        passed: true,
        limit: None,
        measured: None,
        source: Source::Default,
        skipped: Some(why.to_string()),
        reason: None,
        target: None,
    }
}

/// The summary when passed: `every request succeeded`, or the failures within thresholds.
fn summary(r: &RunResult) -> String {
    if r.requests.failed == 0 {
        "every request succeeded".to_string()
    } else {
        format!(
            "{} of {} requests failed ({}), within the thresholds",
            r.requests.failed,
            r.requests.total,
            failure_breakdown(r)
        )
    }
}

/// The longest gap among the listed ones (the first among equals), if the list holds it.
fn longest_gap(r: &RunResult) -> Option<&WindowEntry> {
    let longest = r.longest_gap_ms?;
    r.gaps.iter().find(|g| g.duration_ms == longest)
}

/// The longest listed stall (the first among equals).
fn longest_stall(r: &RunResult) -> Option<&StallEntry> {
    r.stalls
        .iter()
        .filter(|s| s.duration_ms >= r.longest_stall_ms)
        .min_by(|a, b| a.start_ms.total_cmp(&b.start_ms))
}

/// ` from +3.2 s during step "drop"`, or ` from +3.2 s, until the load ended`.
fn describe_stall(stall: &StallEntry) -> String {
    let open = if stall.open {
        ", until the load ended"
    } else {
        ""
    };
    format!(
        " from +{:.1} s{}{open}",
        stall.start_ms / 1000.0,
        during(&stall.steps, stall.after_step.as_deref())
    )
}

/// ` during step "a"`, ` during steps "a", "b"`, ` after step "a"` or nothing.
fn during(steps: &[String], after: Option<&str>) -> String {
    match steps {
        [] => after.map_or_else(String::new, |step| format!(" after step {step:?}")),
        [one] => format!(" during step {one:?}"),
        many => format!(
            " during steps {}",
            many.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `(successful responses from other versions, one sentence per other version)` after the last
/// step (in the cooldown; the whole load for a run without steps): `version v1 answered 40 times
/// after the last step ended (first at +12.3 s); expected only v2`.
fn wrong_versions(r: &RunResult, expected: &str) -> (u64, Vec<String>) {
    let phase = r
        .phases
        .iter()
        .find(|p| p.name == Phase::Cooldown)
        .or_else(|| r.phases.iter().find(|p| p.name == Phase::Load));
    let Some(phase) = phase else {
        return (0, Vec::new());
    };
    let when = if phase.name == Phase::Cooldown {
        "after the last step ended"
    } else {
        "during the run"
    };
    let mut others = 0;
    let mut sentences: Vec<String> = Vec::new();
    let mut order: Vec<_> = phase
        .versions
        .iter()
        .filter(|(v, _)| v.as_str() != expected)
        .collect();
    order.sort_by(|a, b| a.1.first_ms.total_cmp(&b.1.first_ms));
    for (v, seen) in order {
        others += seen.count;
        sentences.push(format!(
            "version {v} answered {} time{} {when} (first at +{:.1} s); expected only {expected}",
            seen.count,
            plural(seen.count),
            seen.first_ms / 1000.0
        ));
    }
    if sentences.is_empty() && phase.ok > 0 && !phase.versions.contains_key(expected) {
        sentences.push(format!(
            "no response named version {expected} {when}; expected only {expected}"
        ));
    }
    (others, sentences)
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `longest gap 120 ms at +12.3 s during step "set image"`.
fn describe_gap(gap: &WindowEntry) -> String {
    format!(
        "longest gap {} at +{:.1} s{}",
        format_ms(gap.duration_ms),
        gap.start_ms / 1000.0,
        during(&gap.steps, gap.after_step.as_deref())
    )
}

/// `503: 40, reset: 2`: failing status codes, then error classes, by count.
fn failure_breakdown(r: &RunResult) -> String {
    breakdown(
        r.codes
            .iter()
            .filter(|&(&code, _)| !r.load.ok_codes.contains(code))
            .map(|(&code, &n)| (crate::measure::code::Shown(code).to_string(), n))
            .chain(r.errors.iter().map(|(class, &n)| (class.to_string(), n))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::config::OkCodes;
    use crate::config::Setting;
    use crate::measure::gaps::GapDetector;
    use crate::measure::outcome::{Completion, ConnectionUse, ErrorClass, Outcome};
    use crate::measure::recorder::Recorder;
    use crate::measure::version::Labels;
    use crate::rollout::RolloutReport;
    use crate::rollout::{StepRecord, StepStatus};
    use std::time::Instant;

    /// One request per millisecond from the start, in `phase` from `phase_at` ms on.
    fn recorder(outcomes: &[Outcome], phase_at: Option<u64>) -> Recorder {
        let start = Instant::now();
        let ms = Duration::from_millis(1);
        let mut r = Recorder::new(
            start,
            crate::measure::timeline::Timeline::new(Duration::from_secs(1)),
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

    /// The judged result of a run that recorded `r`, with the steps of `ro`.
    fn result(
        r: &Recorder,
        ro: &RolloutReport,
        labels: &Labels,
        t: &Limits,
        interruption: Option<Interruption>,
    ) -> RunResult {
        let Command::Run(args) = Cli::parse_from(["gapless", "run", "http://127.0.0.1:1/"])
            .unwrap()
            .command
        else {
            unreachable!("a run")
        };
        let mut config = args.validate(None, &|_| None).unwrap().config;
        config.verdict.limits = t.clone();
        let finished = Finished {
            config,
            started_at: std::time::SystemTime::now(),
            elapsed: Duration::from_secs(1),
            length: Duration::from_secs(1),
            recorder: r.clone(),
            stats: Default::default(),
            rollout: ro.clone(),
            versions: labels.clone(),
            interruption,
            warnings: Vec::new(),
            parts: Vec::new(),
            streams: Vec::new(),
        };
        judged(&finished)
    }

    fn judge(r: &Recorder, ro: &RolloutReport, t: &Limits) -> Verdict {
        result(r, ro, &Labels::default(), t, None).verdict
    }

    fn limit<T>(value: T) -> Option<Setting<T>> {
        Some(Setting::from(value, Source::Flag("--x".to_string())))
    }

    #[test]
    fn clean_run_passes() {
        let r = recorder(&[OK, Outcome::Status(204)], None);
        let v = judge(&r, &RolloutReport::default(), &Limits::default());
        assert!(v.passed);
        assert_eq!(v.exit_code, 0);
        assert_eq!(v.line, "PASS: every request succeeded");
    }

    #[test]
    fn failures_name_windows_and_the_longest_gap_with_its_step() {
        let r = recorder(&[OK, E503, E503, OK, RESET, OK], None);
        let ro = rollout(&[("set image", 0, 3, StepStatus::Ok)]);
        let v = judge(&r, &ro, &Limits::default());
        assert_eq!(v.exit_code, Exit::Dropped.code());
        assert_eq!(
            v.line,
            "FAIL: 3 of 6 requests failed (503: 2, reset: 1) in 2 windows; longest gap 2.0 ms \
             at +0.0 s during step \"set image\""
        );
    }

    #[test]
    fn thresholds_allow_some_failures_but_not_a_long_gap() {
        let r = recorder(&[OK, E503, E503, OK], None);
        let allow = Limits {
            max_failures: limit(2),
            max_gap: limit(Duration::from_millis(2)),
            ..Limits::default()
        };
        let v = judge(&r, &RolloutReport::default(), &allow);
        assert!(v.passed, "{}", v.line);
        assert_eq!(
            v.line,
            "PASS: 2 of 4 requests failed (503: 2), within the thresholds"
        );
        let short_gap = Limits {
            max_gap: limit(Duration::from_millis(1)),
            ..allow.clone()
        };
        let v = judge(&r, &RolloutReport::default(), &short_gap);
        assert_eq!(v.exit_code, Exit::Dropped.code());
        assert_eq!(
            v.reasons,
            vec!["longest gap 2.0 ms at +0.0 s (--max-gap 1ms)"]
        );
        let ratio = Limits {
            max_failure_ratio: limit(0.25),
            ..allow
        };
        assert_eq!(
            judge(&r, &RolloutReport::default(), &ratio).exit_code,
            Exit::Dropped.code()
        );
    }

    #[test]
    fn p99_threshold() {
        let r = recorder(&[OK, OK], None);
        let t = Limits {
            max_p99: limit(Duration::from_micros(500)),
            ..Limits::default()
        };
        let v = judge(&r, &RolloutReport::default(), &t);
        assert_eq!(v.exit_code, Exit::Dropped.code());
        assert!(
            v.reasons[0].starts_with("p99 latency 1.0 ms is above --max-p99 500us"),
            "{}",
            v.line
        );
    }

    #[test]
    fn step_failure_is_exit_3_and_warmup_failure_exit_4() {
        let r = recorder(&[OK, OK, OK], Some(1));
        let ro = rollout(&[("deploy", 1, 2, StepStatus::Failed)]);
        let v = judge(&r, &ro, &Limits::default());
        assert_eq!(v.exit_code, Exit::StepFailed.code());
        assert_eq!(v.line, "FAIL: step \"deploy\" exited 7 (expected 0)");

        let r = recorder(&[E503, OK, OK], Some(1));
        let unhealthy = RolloutReport {
            unhealthy_warmup: Some((1, 1)),
            ..rollout(&[("deploy", 1, 2, StepStatus::Skipped)])
        };
        let v = judge(&r, &unhealthy, &Limits::default());
        assert_eq!(v.exit_code, Exit::UnhealthyBefore.code());
        assert!(
            v.reasons[0].starts_with("by the end of the warmup 1 of 1 requests had failed"),
            "{}",
            v.line
        );
        // Judged anyway (--allow-warmup-errors: the rollout went ahead): an ordinary failure.
        let ran = rollout(&[("deploy", 1, 2, StepStatus::Ok)]);
        let v = judge(&r, &ran, &Limits::default());
        assert_eq!(v.exit_code, Exit::Dropped.code());
    }

    #[test]
    fn expected_version_after_the_last_step() {
        let labels = Labels::default();
        let (v1, v2) = (labels.intern("v1"), labels.intern("v2"));
        let start = Instant::now();
        let ms = Duration::from_millis(1);
        let mut r = Recorder::new(
            start,
            crate::measure::timeline::Timeline::new(Duration::from_secs(1)),
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
        let expect = |v: &str| Limits {
            expect_version: limit(v.to_string()),
            ..Limits::default()
        };
        let ro = RolloutReport::default();
        let v = result(&r, &ro, &labels, &expect("v1"), None).verdict;
        assert_eq!(v.exit_code, Exit::Dropped.code(), "v2 answered in cooldown");
        let v = result(&r, &ro, &labels, &expect("v2"), None).verdict;
        assert_eq!(v.exit_code, Exit::Dropped.code());
        assert_eq!(
            v.reasons,
            vec![
                "version v1 answered 1 time after the last step ended (first at +0.0 s); expected only v2"
            ]
        );
        assert_eq!(r.phase(Phase::Cooldown).unwrap().versions.len(), 2);
    }

    #[test]
    fn stream_criteria_are_judged_only_with_probes_and_survive_a_saved_result() {
        use crate::result::{Disconnects, StreamClass, StreamEntry, StreamGap};
        let mut r = result(
            &recorder(&[OK, OK], None),
            &RolloutReport::default(),
            &Labels::default(),
            &Limits::default(),
            None,
        );
        let kinds = |r: &RunResult| -> Vec<CriterionKind> {
            r.verdict.criteria.iter().map(|c| c.kind).collect()
        };
        assert!(!kinds(&r).contains(&CriterionKind::MaxUngracefulDisconnects));
        assert_eq!(r.thresholds.max_ungraceful_disconnects, None);
        r.streams.push(StreamEntry {
            name: "chat".into(),
            disconnects: Disconnects {
                graceful: 1,
                ungraceful: 2,
                by_class: [(StreamClass::CloseFrame, 1), (StreamClass::Reset, 2)].into(),
            },
            stream_gap_ms: StreamGap {
                total: 30.0,
                longest: 20.0,
            },
            ..StreamEntry::default()
        });
        let given = Limits {
            max_stream_gap: limit(Duration::from_millis(10)),
            ..Limits::none()
        };
        conclude(&mut r, &Limits::default().with(given));
        assert_eq!(r.verdict.exit_code, Exit::Dropped.code());
        assert_eq!(
            r.verdict.reasons,
            vec![
                "stream \"chat\" lost 2 connections ungracefully (reset: 2) \
                 (--max-ungraceful-disconnects 0, the default)",
                "stream \"chat\" had no connected stream for 20 ms (--max-stream-gap 10ms)",
            ]
        );
        assert_eq!(r.thresholds.max_ungraceful_disconnects, Some(0));
        assert_eq!(r.thresholds.max_stream_gap_ms, Some(10.0));
        // Judged again from the saved result: the same limits, the same sources.
        let saved = limits_of(&r);
        assert_eq!(
            saved.max_ungraceful_disconnects,
            Some(Setting::default_value(0))
        );
        assert_eq!(saved.max_stream_gap, limit(Duration::from_millis(10)));
        let allowed = saved.with(Limits {
            max_ungraceful_disconnects: limit(2),
            max_stream_gap: limit(Duration::from_millis(20)),
            ..Limits::none()
        });
        conclude(&mut r, &allowed);
        assert!(r.verdict.passed, "{}", r.verdict.line);
    }

    #[test]
    fn interruption_wins() {
        let r = recorder(&[OK], None);
        let v = result(
            &r,
            &RolloutReport::default(),
            &Labels::default(),
            &Limits::default(),
            Some(Interruption::Terminate),
        )
        .verdict;
        assert_eq!(v.exit_code, 143);
        assert!(!v.passed);
        assert!(v.line.starts_with("INTERRUPTED: "));
    }
}
