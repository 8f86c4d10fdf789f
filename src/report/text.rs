//! The human text report, laid out like Fortio's so the numbers can be compared side by side.

use std::fmt::Write as _;
use std::time::Duration;

use crate::outcome::ErrorClass;
use crate::recorder::{LATE_THRESHOLD, LatencyHistogram};
use crate::report::json::HintEntry;
use crate::run::Finished;
use crate::verdict::format_ms;

/// Renders the full text report with the run's `hints` (from its JSON result), ending with the
/// verdict line.
pub fn render(f: &Finished, hints: &[HintEntry]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, f, hints);
    out
}

fn write_report(out: &mut String, f: &Finished, hints: &[HintEntry]) -> std::fmt::Result {
    let config = &f.config;
    let r = &f.recorder;
    let rate = match config.load.rate.qps() {
        Some(q) => format!("{} queries per second", trim_float(q)),
        None => "max queries per second (closed loop)".to_string(),
    };
    let protocol = if config.target.http2 {
        "HTTP/2"
    } else {
        "HTTP/1.1"
    };
    let span = if config.rollout.has_steps() {
        format!(
            "for {} warmup, {} step{}, {} cooldown",
            humantime::format_duration(config.rollout.warmup),
            config.rollout.steps.len(),
            if config.rollout.steps.len() == 1 {
                ""
            } else {
                "s"
            },
            humantime::format_duration(config.rollout.cooldown)
        )
    } else {
        format!("for {}", humantime::format_duration(config.load.duration))
    };
    writeln!(
        out,
        "gapless {} running at {rate}, {} connections ({protocol}), {span}: {}",
        env!("CARGO_PKG_VERSION"),
        config.load.connections,
        config.target.url
    )?;
    writeln!(
        out,
        "Ended after {:.6}s : {} calls. qps={:.2}",
        f.elapsed.as_secs_f64(),
        r.total(),
        f.actual_qps()
    )?;
    write_histogram(
        out,
        "Latency from intended send (coordinated-omission corrected), ms",
        r.corrected(),
    )?;
    write_histogram(out, "Service time from actual send, ms", r.service())?;
    let l = r.lateness();
    if l.is_empty() {
        writeln!(out, "Send lateness : no request was sent")?;
    } else {
        writeln!(
            out,
            "Send lateness, ms : p50 {} p99 {} max {} ; {} late (sent > {} ms after due, or never), {} unsent (no connection free in time for the deadline)",
            ms(l.value_at_quantile(0.5)),
            ms(l.value_at_quantile(0.99)),
            ms(l.max()),
            r.late(),
            LATE_THRESHOLD.as_millis(),
            r.unsent()
        )?;
    }
    let total = r.total().max(1) as f64;
    for (code, n) in r.codes() {
        let mark = if r.ok_codes().contains(code) {
            ""
        } else {
            " (failure)"
        };
        writeln!(
            out,
            "Code {code} : {n} ({:.1} %){mark}",
            100.0 * n as f64 / total
        )?;
    }
    for (class, new, reused) in r.errors() {
        writeln!(
            out,
            "Error {} : {} ({:.1} %) : {new} on new connections, {reused} on reused",
            class.as_str(),
            new + reused,
            100.0 * (new + reused) as f64 / total
        )?;
    }
    if r.unsent() > 0 {
        writeln!(
            out,
            "Error {} : {} ({:.1} %) : never sent, on no connection (no connection was free in time for the deadline)",
            ErrorClass::NotSent.as_str(),
            r.unsent(),
            100.0 * r.unsent() as f64 / total
        )?;
    }
    if f.stats.interrupted > 0 {
        writeln!(
            out,
            "Interrupted : {} requests were due but cut off by the interruption (not counted above)",
            f.stats.interrupted
        )?;
    }
    writeln!(
        out,
        "Sockets used: {} (for perfect keepalive, would be {}); {} failed connection attempts",
        f.stats.connections_opened, config.load.connections, f.stats.connect_failures
    )?;
    write_rollout(out, f)?;
    write_versions(out, f)?;
    write_windows(out, f)?;
    for warning in &f.warnings {
        writeln!(out, "Warning: {warning}")?;
    }
    for hint in hints {
        writeln!(
            out,
            "Hint: {}. Fix: {}. (Evidence: {}.)",
            hint.cause, hint.fix, hint.evidence
        )?;
    }
    writeln!(out, "{}", f.verdict)
}

/// How many windows the text report lists (the JSON has them all, up to its cap).
const LISTED_WINDOWS: usize = 10;

fn write_rollout(out: &mut String, f: &Finished) -> std::fmt::Result {
    let r = &f.recorder;
    if !f.config.rollout.has_steps() {
        return Ok(());
    }
    for p in r.phases() {
        writeln!(
            out,
            "Phase {:<8} : {:>9.3}s - {:>9.3}s : {} requests, {} ok, {} failed",
            p.phase.as_str(),
            p.start.as_secs_f64(),
            p.end.unwrap_or(f.length).as_secs_f64(),
            p.total,
            p.ok,
            p.failed
        )?;
    }
    for s in &f.rollout.steps {
        let when = match (s.start, s.end) {
            (Some(a), Some(b)) => format!("{:>9.3}s - {:>9.3}s", a.as_secs_f64(), b.as_secs_f64()),
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
            s.status.as_str(),
            if s.background { " (watcher)" } else { "" },
            s.command
        )?;
    }
    if !f.rollout.events.is_empty() {
        writeln!(
            out,
            "Events : {} on the timeline (watcher lines, demo orchestration){}",
            f.rollout.events.len(),
            if f.rollout.events_dropped > 0 {
                format!(" ({} more dropped)", f.rollout.events_dropped)
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

fn write_versions(out: &mut String, f: &Finished) -> std::fmt::Result {
    let r = &f.recorder;
    let seen = r.versions();
    if seen.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = seen
        .iter()
        .map(|v| {
            format!(
                "{} {} (+{:.3}s to +{:.3}s)",
                f.versions.name(v.version),
                v.count,
                v.first.as_secs_f64(),
                v.last.as_secs_f64()
            )
        })
        .collect();
    write!(out, "Versions : {}", list.join(", "))?;
    if let Some(cutover) = r.cutover() {
        write!(out, " ; cutover at +{:.3}s", cutover.as_secs_f64())?;
    }
    match r.mixed_window() {
        Some((a, b)) => writeln!(
            out,
            " ; mixed from +{:.3}s to +{:.3}s ({})",
            a.as_secs_f64(),
            b.as_secs_f64(),
            format_ms(b.saturating_sub(a))
        ),
        None => writeln!(out),
    }
}

fn write_windows(out: &mut String, f: &Finished) -> std::fmt::Result {
    let gaps = f.recorder.gaps();
    let totals = gaps.totals();
    if totals.windows == 0 {
        writeln!(out, "Failure windows : none")?;
    } else {
        writeln!(
            out,
            "Failure windows : {} ({} availability gaps, {} without service in total)",
            totals.windows,
            totals.gaps,
            format_ms(totals.gap_time)
        )?;
    }
    for w in gaps.windows().iter().take(LISTED_WINDOWS) {
        let mut what: Vec<String> = w.codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        what.extend(
            ErrorClass::ALL
                .into_iter()
                .filter(|c| w.errors[c.index()] > 0)
                .map(|c| format!("{}: {}", c.as_str(), w.errors[c.index()])),
        );
        let steps = f.rollout.steps_during(w.start, w.end);
        writeln!(
            out,
            "  {} +{:.3}s {:>9} : {} failed, {} ok ({}) ; {} on new connections, {} on reused{}{}",
            if w.is_gap() { "gap   " } else { "window" },
            w.start.as_secs_f64(),
            format_ms(w.duration()),
            w.failed,
            w.ok,
            what.join(", "),
            w.failed_on_new,
            w.failed_on_reused,
            if steps.is_empty() {
                f.rollout
                    .step_before(w.start)
                    .map(|s| format!(" ; after {s:?}"))
                    .unwrap_or_default()
            } else {
                format!(
                    " ; during {}",
                    steps
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            if w.open {
                " ; still failing when the load stopped"
            } else {
                ""
            }
        )?;
    }
    let listed = gaps.windows().len().min(LISTED_WINDOWS) as u64;
    if totals.windows > listed {
        writeln!(out, "  ... {} more (see --json)", totals.windows - listed)?;
    }
    for w in f.slow_windows() {
        writeln!(
            out,
            "Slow window +{:.3}s {} : p99 up to {}",
            w.start.as_secs_f64(),
            format_ms(w.end.saturating_sub(w.start)),
            format_ms(Duration::from_micros(w.p99_us))
        )?;
    }
    Ok(())
}

fn write_histogram(out: &mut String, title: &str, h: &LatencyHistogram) -> std::fmt::Result {
    if h.is_empty() {
        return writeln!(out, "{title} : no responses");
    }
    writeln!(
        out,
        "{title} : count {} avg {:.3} +/- {:.3} min {} max {}",
        h.len(),
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        ms(h.min()),
        ms(h.max())
    )?;
    for (label, q) in [
        ("50", 0.50),
        ("75", 0.75),
        ("90", 0.90),
        ("99", 0.99),
        ("99.9", 0.999),
    ] {
        writeln!(out, "# target {label}% {}", ms(h.value_at_quantile(q)))?;
    }
    Ok(())
}

fn ms(us: u64) -> String {
    trim_float(us as f64 / 1000.0)
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
