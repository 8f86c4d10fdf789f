//! The human text report, laid out like Fortio's so the numbers can be compared side by side.

use std::fmt::Write as _;

use crate::recorder::{LATE_THRESHOLD, LatencyHistogram};
use crate::run::Finished;

/// Renders the full text report, ending with the verdict line.
pub fn render(f: &Finished) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, f);
    out
}

fn write_report(out: &mut String, f: &Finished) -> std::fmt::Result {
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
    writeln!(
        out,
        "gapless {} running at {rate}, {} connections ({protocol}), for {}: {}",
        env!("CARGO_PKG_VERSION"),
        config.load.connections,
        humantime::format_duration(config.load.duration),
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
            "Send lateness, ms : p50 {} p99 {} max {} ; {} late (sent > {} ms after due), {} unsent (deadline passed in the backlog)",
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
    writeln!(out, "{}", f.verdict)
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
