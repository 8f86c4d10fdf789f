//! The human text report, laid out like Fortio's so the numbers can be compared side by side.
//!
//! Rendered from the JSON result ([`RunResult`]), as every other report is, so a live run and
//! `gapless report RESULT.json` print the same text.

use std::fmt::Write as _;
use std::time::Duration;

use crate::measure::recorder::LATE_THRESHOLD;
use crate::result::{Latency, RunResult, StepEntry};
use crate::units::format_ms;

/// Renders the full text report of `r`, ending with the verdict line.
pub fn render(r: &RunResult) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, r);
    out
}

/// How many windows the text report lists (the JSON has them all, up to its cap).
const LISTED_WINDOWS: usize = 10;

/// How many events the text report lists (the JSON has them all, up to its cap).
const LISTED_EVENTS: usize = 40;

/// A time in milliseconds from the JSON as a [`Duration`] (the JSON rounds to microseconds).
fn duration(ms: f64) -> Duration {
    Duration::from_nanos((ms.max(0.0) * 1e6).round() as u64)
}

/// `+12.345s`: a time from the start of the run.
fn at(ms: f64) -> String {
    format!("+{:.3}s", ms / 1000.0)
}

fn write_report(out: &mut String, r: &RunResult) -> std::fmt::Result {
    let rate = match r.load.qps {
        Some(q) => format!("{} queries per second", trim_float(q)),
        None => "max queries per second (closed loop)".to_string(),
    };
    let protocol = if r.target.http2 { "HTTP/2" } else { "HTTP/1.1" };
    let human = |ms: f64| humantime::format_duration(duration(ms)).to_string();
    let span = match (r.load.warmup_ms, r.load.cooldown_ms) {
        (Some(warmup), Some(cooldown)) if !r.steps.is_empty() => format!(
            "for {} warmup, {} step{}, {} cooldown",
            human(warmup),
            r.steps.len(),
            if r.steps.len() == 1 { "" } else { "s" },
            human(cooldown)
        ),
        _ => format!(
            "for {}",
            human(r.load.duration_requested_ms.unwrap_or(r.load.duration_ms))
        ),
    };
    let target = if r.targets.is_empty() {
        r.target.url.clone()
    } else {
        format!("{} endpoints, interleaved", r.targets.len())
    };
    let each = if r.targets.is_empty() { "" } else { " each" };
    writeln!(
        out,
        "gapless {} running at {rate}, {} connections{each} ({protocol}), {span}: {target}",
        r.gapless_version, r.load.connections
    )?;
    writeln!(
        out,
        "Ended after {:.6}s : {} calls. qps={:.2}",
        r.elapsed_ms / 1000.0,
        r.requests.total,
        r.actual_qps
    )?;
    write_latency(
        out,
        "Latency from intended send (coordinated-omission corrected), ms",
        &r.latency_ms,
    )?;
    write_latency(out, "Service time from actual send, ms", &r.service_time_ms)?;
    let l = &r.lateness_ms;
    if l.count == 0 {
        writeln!(out, "Send lateness : no request was sent")?;
    } else {
        writeln!(
            out,
            "Send lateness, ms : p50 {} p99 {} max {} ; {} late (sent > {} ms after due, or never), {} unsent (no connection free in time for the deadline)",
            trim_float(l.p50),
            trim_float(l.p99),
            trim_float(l.max),
            r.requests.late,
            LATE_THRESHOLD.as_millis(),
            r.requests.unsent
        )?;
    }
    write_outcomes(out, r)?;
    if r.requests.interrupted > 0 {
        writeln!(
            out,
            "Interrupted : {} requests were due but cut off by the interruption (not counted above)",
            r.requests.interrupted
        )?;
    }
    // With several endpoints, -c is per origin (endpoints of one origin share a pool).
    let per_origin = if r.targets.len() > 1 {
        " per origin"
    } else {
        ""
    };
    writeln!(
        out,
        "Sockets used: {} (for perfect keepalive, would be {}{per_origin}); {} failed connection \
         attempts",
        r.connections.opened, r.load.connections, r.connections.connect_failures
    )?;
    write_rollout(out, r)?;
    write_versions(out, r)?;
    write_windows(out, r)?;
    for warning in &r.warnings {
        writeln!(out, "Warning: {warning}")?;
    }
    for hint in &r.hints {
        writeln!(
            out,
            "Hint: {}. Fix: {}. (Evidence: {}.)",
            hint.cause, hint.fix, hint.evidence
        )?;
    }
    writeln!(out, "{}", r.verdict.line)
}

/// One line per status code, then one per transport failure class.
fn write_outcomes(out: &mut String, r: &RunResult) -> std::fmt::Result {
    let total = r.requests.total.max(1) as f64;
    for (&code, &n) in &r.codes {
        let failure = !r.load.ok_codes.contains(code);
        writeln!(
            out,
            "Code {} : {n} ({:.1} %){}",
            crate::measure::code::Shown(code),
            100.0 * n as f64 / total,
            if failure { " (failure)" } else { "" }
        )?;
    }
    // The maps are in the order of ErrorClass::ALL.
    for (class, split) in &r.errors_by_connection {
        let n = split.new + split.reused;
        writeln!(
            out,
            "Error {class} : {n} ({:.1} %) : {} on new connections, {} on reused",
            100.0 * n as f64 / total,
            split.new,
            split.reused
        )?;
        if let Some(sample) = r.error_samples.get(class) {
            writeln!(out, "  first: {sample}")?;
        }
    }
    if r.requests.unsent > 0 {
        writeln!(
            out,
            "Error not_sent : {} ({:.1} %) : never sent, on no connection (no connection was free in time for the deadline)",
            r.requests.unsent,
            100.0 * r.requests.unsent as f64 / total
        )?;
    }
    Ok(())
}

fn write_rollout(out: &mut String, r: &RunResult) -> std::fmt::Result {
    if r.steps.is_empty() {
        return Ok(());
    }
    for p in &r.phases {
        writeln!(
            out,
            "Phase {:<8} : {:>9.3}s - {:>9.3}s : {} requests, {} ok, {} failed",
            p.name,
            p.start_ms / 1000.0,
            p.end_ms / 1000.0,
            p.requests,
            p.ok,
            p.failed
        )?;
    }
    for s in &r.steps {
        let when = match (s.start_ms, s.end_ms) {
            (Some(a), Some(b)) => format!("{:>9.3}s - {:>9.3}s", a / 1000.0, b / 1000.0),
            _ => "not run".to_string(),
        };
        let exit = match (s.exit_code, s.signal) {
            (Some(code), _) => format!(", exit {code}"),
            (None, Some(sig)) => format!(", signal {sig}"),
            _ => String::new(),
        };
        writeln!(
            out,
            "Step {:?} : {when} : {}{exit}{} : {}",
            s.name,
            s.status,
            if s.background { " (watcher)" } else { "" },
            s.command
        )?;
        if matches!(s.status.as_str(), "failed" | "timed_out") {
            write_tail(out, s)?;
        }
    }
    if !r.events.is_empty() {
        writeln!(
            out,
            "Events : {} on the timeline (watcher lines, demo orchestration){}",
            r.events.len(),
            if r.events_dropped > 0 {
                format!(" ({} more dropped)", r.events_dropped)
            } else {
                String::new()
            }
        )?;
        for e in r.events.iter().take(LISTED_EVENTS) {
            writeln!(out, "  {} [{}] {}", at(e.t_ms), e.step, e.line)?;
        }
        if r.events.len() > LISTED_EVENTS {
            writeln!(
                out,
                "  ... {} more (see --json)",
                r.events.len() - LISTED_EVENTS
            )?;
        }
    }
    Ok(())
}

/// The last output lines of a step that failed, each with the time it was read (results saved
/// before those times were recorded show the lines alone).
fn write_tail(out: &mut String, s: &StepEntry) -> std::fmt::Result {
    if s.output_tail.is_empty() {
        return Ok(());
    }
    writeln!(out, "  last output:")?;
    for (i, line) in s.output_tail.iter().enumerate() {
        match s.output_tail_ms.get(i) {
            Some(&ms) => writeln!(out, "  {} {line}", at(ms))?,
            None => writeln!(out, "  {line}")?,
        }
    }
    Ok(())
}

fn write_versions(out: &mut String, r: &RunResult) -> std::fmt::Result {
    if r.versions.is_empty() {
        return Ok(());
    }
    let mut seen: Vec<_> = r.versions.iter().collect();
    seen.sort_by(|a, b| a.1.first_ms.total_cmp(&b.1.first_ms).then(a.0.cmp(b.0)));
    let list: Vec<String> = seen
        .iter()
        .map(|(name, v)| {
            format!(
                "{name} {} ({} to {})",
                v.count,
                at(v.first_ms),
                at(v.last_ms)
            )
        })
        .collect();
    write!(out, "Versions : {}", list.join(", "))?;
    if let Some(cutover) = r.cutover_ms {
        write!(out, " ; cutover at {}", at(cutover))?;
    }
    match &r.mixed_window {
        Some(m) => writeln!(
            out,
            " ; mixed from {} to {} ({})",
            at(m.start_ms),
            at(m.end_ms),
            format_ms(m.end_ms - m.start_ms)
        ),
        None => writeln!(out),
    }
}

fn write_windows(out: &mut String, r: &RunResult) -> std::fmt::Result {
    write_targets(out, r)?;
    let title = if r.targets.is_empty() {
        "Failure windows"
    } else {
        "Failure windows of every endpoint at once"
    };
    if r.windows_total == 0 {
        writeln!(out, "{title} : none")?;
    } else {
        writeln!(
            out,
            "{title} : {} ({} availability gaps, {} without service in total)",
            r.windows_total,
            r.gaps_total,
            format_ms(r.total_gap_ms)
        )?;
    }
    write_window_list(out, &r.windows, r.windows_total, "")?;
    for w in &r.slow_windows {
        writeln!(
            out,
            "Slow window {} {} : p99 up to {}",
            at(w.start_ms),
            format_ms(w.duration_ms),
            format_ms(w.p99_ms)
        )?;
    }
    write_stalls(out, r)?;
    write_streams(out, r)?;
    write_shards(out, r)
}

/// One line per long-lived probe: its disconnects by class, reconnect latency and the time
/// without a stream.
fn write_streams(out: &mut String, r: &RunResult) -> std::fmt::Result {
    for s in &r.streams {
        let classes = crate::units::breakdown(
            s.disconnects
                .by_class
                .iter()
                .map(|(c, &n)| (c.to_string(), n)),
        );
        let classes = if classes.is_empty() {
            String::new()
        } else {
            format!(" ({classes})")
        };
        write!(
            out,
            "Stream {:?} ({} x{}) : {} connects, {} graceful and {} ungraceful disconnects{classes}",
            s.name, s.kind, s.count, s.connects, s.disconnects.graceful, s.disconnects.ungraceful
        )?;
        if s.not_serving > 0 {
            let times = if s.not_serving == 1 { "time" } else { "times" };
            write!(out, " ; not serving {} {times}", s.not_serving)?;
        }
        if s.reconnect_ms.count > 0 {
            write!(
                out,
                " ; reconnect p50 {} max {}",
                format_ms(s.reconnect_ms.p50),
                format_ms(s.reconnect_ms.max)
            )?;
        }
        writeln!(
            out,
            " ; without a stream {} longest, {} in total",
            format_ms(s.stream_gap_ms.longest),
            format_ms(s.stream_gap_ms.total)
        )?;
    }
    Ok(())
}

/// The first windows of a list, one line each, indented by `indent`.
fn write_window_list(
    out: &mut String,
    windows: &[crate::result::WindowEntry],
    total: u64,
    indent: &str,
) -> std::fmt::Result {
    for w in windows.iter().take(LISTED_WINDOWS) {
        let mut what: Vec<String> = w
            .codes
            .iter()
            .map(|(&c, n)| format!("{}: {n}", crate::measure::code::Shown(c)))
            .collect();
        what.extend(w.errors.iter().map(|(c, n)| format!("{c}: {n}")));
        writeln!(
            out,
            "{indent}  {} {} {:>9} : {} failed, {} ok ({}) ; {} on new connections, {} on reused{}{}",
            if w.ok == 0 { "gap   " } else { "window" },
            at(w.start_ms),
            format_ms(w.duration_ms),
            w.failed,
            w.ok,
            what.join(", "),
            w.failed_on_new_connections,
            w.failed_on_reused_connections,
            steps_note(&w.steps, w.after_step.as_deref()),
            if w.open {
                " ; still failing when the load stopped"
            } else {
                ""
            }
        )?;
    }
    let listed = windows.len().min(LISTED_WINDOWS) as u64;
    if total > listed {
        writeln!(out, "{indent}  ... {} more (see --json)", total - listed)?;
    }
    Ok(())
}

/// A run of several endpoints: a line per endpoint, with its own windows under it.
fn write_targets(out: &mut String, r: &RunResult) -> std::fmt::Result {
    if r.targets.is_empty() {
        return Ok(());
    }
    writeln!(out, "Endpoints : {} on one clock", r.targets.len())?;
    for t in &r.targets {
        writeln!(out, "  {}", super::target_line(t))?;
        write_window_list(out, &t.result.windows, t.result.windows_total, "  ")?;
    }
    Ok(())
}

/// ` ; during "a", "b"`, ` ; after "a"` or nothing: the steps a window or stall fell in.
fn steps_note(steps: &[String], after: Option<&str>) -> String {
    if steps.is_empty() {
        after.map(|s| format!(" ; after {s:?}")).unwrap_or_default()
    } else {
        let names: Vec<String> = steps.iter().map(|s| format!("{s:?}")).collect();
        format!(" ; during {}", names.join(", "))
    }
}

/// A merged result's shards, one line each.
fn write_shards(out: &mut String, r: &RunResult) -> std::fmt::Result {
    if r.shards.is_empty() {
        return Ok(());
    }
    writeln!(out, "Shards : {} merged", r.shards.len())?;
    for s in &r.shards {
        writeln!(out, "  {}", super::shard_line(s))?;
    }
    Ok(())
}

/// The stalls: when the target answered nothing while requests waited.
fn write_stalls(out: &mut String, r: &RunResult) -> std::fmt::Result {
    if r.stalls_total == 0 {
        return writeln!(
            out,
            "Stalls : none (longest silence {})",
            format_ms(r.longest_stall_ms)
        );
    }
    writeln!(
        out,
        "Stalls : {} (the target answered nothing while requests waited; longest {})",
        r.stalls_total,
        format_ms(r.longest_stall_ms)
    )?;
    for s in r.stalls.iter().take(LISTED_WINDOWS) {
        writeln!(
            out,
            "  stall  {} {:>9} : {} held, {} failed ; {} connect timeouts, {} unanswered on new connections, {} on reused{}{}",
            at(s.start_ms),
            format_ms(s.duration_ms),
            s.held,
            s.failed,
            s.connect_timeouts,
            s.unanswered_new,
            s.unanswered_reused,
            steps_note(&s.steps, s.after_step.as_deref()),
            if s.open {
                " ; still silent when the load stopped"
            } else {
                ""
            }
        )?;
    }
    let listed = r.stalls.len().min(LISTED_WINDOWS) as u64;
    if r.stalls_total > listed {
        writeln!(out, "  ... {} more (see --json)", r.stalls_total - listed)?;
    }
    Ok(())
}

fn write_latency(out: &mut String, title: &str, l: &Latency) -> std::fmt::Result {
    if l.count == 0 {
        return writeln!(out, "{title} : no responses");
    }
    writeln!(
        out,
        "{title} : count {} avg {:.3} +/- {:.3} min {} max {}",
        l.count,
        l.mean,
        l.stddev,
        trim_float(l.min),
        trim_float(l.max)
    )?;
    for (label, q) in [
        ("50", l.p50),
        ("75", l.p75),
        ("90", l.p90),
        ("99", l.p99),
        ("99.9", l.p99_9),
    ] {
        writeln!(out, "# target {label}% {}", trim_float(q))?;
    }
    Ok(())
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{EventEntry, PhaseEntry};

    fn rollout() -> RunResult {
        let mut r = RunResult::default();
        r.load.ok_codes = "200-299".parse().unwrap();
        r.load.warmup_ms = Some(1000.0);
        r.load.cooldown_ms = Some(2000.0);
        r.phases.push(PhaseEntry {
            name: crate::measure::recorder::Phase::Warmup,
            end_ms: 1000.0,
            ..PhaseEntry::default()
        });
        r.steps.push(StepEntry {
            name: "deploy".into(),
            command: "./deploy.sh".into(),
            status: crate::rollout::StepStatus::Failed,
            start_ms: Some(1000.0),
            end_ms: Some(1800.0),
            exit_code: Some(7),
            output_tail: vec!["pushing".into(), "denied".into()],
            output_tail_ms: vec![1200.5, 1799.25],
            ..StepEntry::default()
        });
        r.verdict.line = "FAIL: step \"deploy\" exited 7 (expected 0)".into();
        r
    }

    #[test]
    fn a_failed_step_shows_its_output_tail_with_the_time_of_each_line() {
        let text = render(&rollout());
        assert!(
            text.contains(
                "Step \"deploy\" :     1.000s -     1.800s : failed, exit 7 : ./deploy.sh\n  last output:\n  +1.200s pushing\n  +1.799s denied\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("for 1s warmup, 1 step, 2s cooldown"),
            "{text}"
        );
        // A result saved before the times were recorded: the lines alone.
        let mut old = rollout();
        old.steps[0].output_tail_ms.clear();
        assert!(render(&old).contains("  last output:\n  pushing\n  denied\n"));
        // A step that went well keeps its tail to the JSON and the HTML.
        let mut ok = rollout();
        ok.steps[0].status = crate::rollout::StepStatus::Ok;
        assert!(!render(&ok).contains("last output"));
    }

    #[test]
    fn events_are_listed_with_their_times_up_to_a_cap() {
        let mut r = rollout();
        for k in 0..(LISTED_EVENTS + 5) {
            r.events.push(EventEntry {
                t_ms: 1000.0 + k as f64 * 12.0,
                step: "pods".into(),
                line: format!("pod {k} Running"),
                disconnect: None,
            });
        }
        r.events_dropped = 3;
        let text = render(&r);
        assert!(
            text.contains("Events : 45 on the timeline (watcher lines, demo orchestration) (3 more dropped)\n  +1.000s [pods] pod 0 Running\n  +1.012s [pods] pod 1 Running\n"),
            "{text}"
        );
        assert!(text.contains("  +1.468s [pods] pod 39 Running\n  ... 5 more (see --json)\n"));
        assert!(!text.contains("pod 40 Running"));
    }

    #[test]
    fn codes_and_errors_keep_the_order_of_the_live_report() {
        let mut r = RunResult::default();
        r.load.ok_codes = "200-299,304".parse().unwrap();
        r.requests.total = 10;
        r.codes = [(200, 5), (304, 1), (503, 1)].into();
        for (class, new, reused) in [
            ("timeout", 1, 0),
            ("connect_refused", 1, 0),
            ("reset", 0, 1),
        ] {
            r.errors_by_connection.insert(
                crate::measure::outcome::ErrorClass::from_name(class).unwrap(),
                crate::result::ByConnection { new, reused },
            );
        }
        let text = render(&r);
        assert!(
            text.contains("Code 200 : 5 (50.0 %)\nCode 304 : 1 (10.0 %)\nCode 503 : 1 (10.0 %) (failure)\nError connect_refused : 1 (10.0 %) : 1 on new connections, 0 on reused\nError reset : 1 (10.0 %) : 0 on new connections, 1 on reused\nError timeout : 1"),
            "{text}"
        );
    }

    #[test]
    fn sockets_are_per_origin_with_several_endpoints() {
        let mut r = RunResult::default();
        r.load.connections = 4;
        r.connections.opened = 4;
        assert!(render(&r).contains("Sockets used: 4 (for perfect keepalive, would be 4);"));
        r.targets = vec![crate::result::TargetEntry::default(); 2];
        assert!(
            render(&r).contains("Sockets used: 4 (for perfect keepalive, would be 4 per origin);")
        );
    }
}
