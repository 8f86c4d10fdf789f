//! `--markdown FILE`: a compact summary for a pull request or a CI job summary (GitHub's
//! `GITHUB_STEP_SUMMARY`), rendered from the JSON result so `gapless report` can re-render it.

use std::fmt::Write as _;

use crate::result::RunResult;

/// Windows listed in the summary.
const LISTED: usize = 10;

/// Renders the summary.
pub fn render(r: &RunResult) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write(&mut out, r);
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn write(out: &mut String, r: &RunResult) -> std::fmt::Result {
    let word = crate::result::Verdict::word(r.verdict.exit_code);
    writeln!(out, "## gapless: {word} (exit {})\n", r.verdict.exit_code)?;
    writeln!(out, "`{}`\n", cell(&r.verdict.line))?;
    let judged: Vec<_> = r
        .verdict
        .criteria
        .iter()
        .filter(|c| c.skipped.is_none())
        .collect();
    if !judged.is_empty() {
        writeln!(out, "| criterion | | limit | measured | set by |")?;
        writeln!(out, "|---|---|---:|---:|---|")?;
        // A run of several endpoints: each endpoint's criteria carry its name.
        for c in judged {
            let show = |q: &Option<crate::result::Quantity>| {
                q.as_ref()
                    .map_or_else(|| "-".to_string(), ToString::to_string)
            };
            let title = match &c.target {
                Some(target) => format!("{}: {}", cell(target), c.kind.title()),
                None => c.kind.title().to_string(),
            };
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                title,
                if c.passed { "pass" } else { "**fail**" },
                show(&c.limit),
                show(&c.measured),
                cell(&c.source.to_string())
            )?;
        }
        writeln!(out)?;
    }
    let target = if r.targets.is_empty() {
        format!("Target `{}`", cell(&r.target.url))
    } else {
        format!("{} endpoints, interleaved,", r.targets.len())
    };
    writeln!(
        out,
        "{target} at {} req/s, {} connections.\n",
        r.load.qps.map_or("max".to_string(), |q| q.to_string()),
        r.load.connections
    )?;
    writeln!(
        out,
        "| requests | ok | failed | windows | longest gap | time without service | p99 latency |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|")?;
    writeln!(
        out,
        "| {} | {} | {} | {} | {} | {:.1} ms | {:.2} ms |\n",
        r.requests.total,
        r.requests.ok,
        r.requests.failed,
        r.windows_total,
        r.longest_gap_ms
            .map_or("none".to_string(), |g| format!("{g:.1} ms")),
        r.total_gap_ms,
        r.latency_ms.p99
    )?;
    if !r.versions.is_empty() {
        let list: Vec<String> = r
            .versions
            .iter()
            .map(|(v, e)| {
                format!(
                    "`{}` {} (+{:.1} s to +{:.1} s)",
                    cell(v),
                    e.count,
                    e.first_ms / 1000.0,
                    e.last_ms / 1000.0
                )
            })
            .collect();
        write!(out, "Versions: {}", list.join(", "))?;
        if let Some(c) = r.cutover_ms {
            write!(out, "; cutover at +{:.3} s", c / 1000.0)?;
        }
        writeln!(out, "\n")?;
    }
    if !r.steps.is_empty() {
        writeln!(out, "| step | status | start | end | exit |")?;
        writeln!(out, "|---|---|---:|---:|---:|")?;
        for s in &r.steps {
            let t =
                |ms: Option<f64>| ms.map_or("-".to_string(), |m| format!("+{:.3} s", m / 1000.0));
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&s.name),
                s.status,
                t(s.start_ms),
                t(s.end_ms),
                s.exit_code.map_or("-".to_string(), |c| c.to_string())
            )?;
        }
        writeln!(out)?;
    }
    if !r.streams.is_empty() {
        writeln!(
            out,
            "| stream | kind | connections | connects | graceful | ungraceful | by class | reconnect p50 / max | without a stream: longest / total |"
        )?;
        writeln!(out, "|---|---|---:|---:|---:|---:|---|---:|---:|")?;
        for st in &r.streams {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} / {:.1} ms | {:.1} / {:.1} ms |",
                cell(&st.name),
                st.kind,
                st.count,
                st.connects,
                st.disconnects.graceful,
                st.disconnects.ungraceful,
                crate::units::breakdown(
                    st.disconnects
                        .by_class
                        .iter()
                        .map(|(c, &n)| (c.to_string(), n))
                ),
                st.reconnect_ms.p50,
                st.reconnect_ms.max,
                st.stream_gap_ms.longest,
                st.stream_gap_ms.total
            )?;
        }
        writeln!(out)?;
    }
    if !r.stalls.is_empty() {
        writeln!(
            out,
            "| stall | start | duration | held | failed | connect timeouts | unanswered new / reused | during |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|")?;
        for st in r.stalls.iter().take(LISTED) {
            let during = if st.steps.is_empty() {
                st.after_step
                    .as_ref()
                    .map_or(String::new(), |s| format!("after {s}"))
            } else {
                st.steps.join(", ")
            };
            writeln!(
                out,
                "| {} | +{:.3} s | {:.1} ms | {} | {} | {} | {} / {} | {} |",
                if st.open { "open" } else { "stall" },
                st.start_ms / 1000.0,
                st.duration_ms,
                st.held,
                st.failed,
                st.connect_timeouts,
                st.unanswered_new,
                st.unanswered_reused,
                cell(&during)
            )?;
        }
        writeln!(out)?;
    }
    if !r.windows.is_empty() {
        writeln!(
            out,
            "| window | start | duration | failed | ok | what | during |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---|---|")?;
        for w in r.windows.iter().take(LISTED) {
            let what: Vec<String> = w
                .codes
                .iter()
                .map(|(&k, n)| format!("{}: {n}", crate::measure::code::Shown(k)))
                .chain(w.errors.iter().map(|(k, n)| format!("{k}: {n}")))
                .collect();
            let during = if w.steps.is_empty() {
                w.after_step
                    .as_ref()
                    .map_or(String::new(), |s| format!("after {s}"))
            } else {
                w.steps.join(", ")
            };
            writeln!(
                out,
                "| {} | +{:.3} s | {:.1} ms | {} | {} | {} | {} |",
                if w.ok == 0 { "gap" } else { "partial" },
                w.start_ms / 1000.0,
                w.duration_ms,
                w.failed,
                w.ok,
                cell(&what.join(", ")),
                cell(&during)
            )?;
        }
        if r.windows_total as usize > LISTED.min(r.windows.len()) {
            writeln!(
                out,
                "\n{} more windows in the JSON result.",
                r.windows_total as usize - LISTED.min(r.windows.len())
            )?;
        }
        writeln!(out)?;
    }
    if !r.targets.is_empty() {
        writeln!(out, "### Endpoints\n")?;
        writeln!(
            out,
            "| endpoint | url | requests | ok | failed | windows | longest gap | p99 latency | verdict |"
        )?;
        writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---|")?;
        for t in &r.targets {
            let e = &t.result;
            writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} | {} | {:.2} ms | {} |",
                cell(&t.name),
                cell(&t.url),
                e.requests.total,
                e.requests.ok,
                e.requests.failed,
                e.windows_total,
                e.longest_gap_ms
                    .map_or("none".to_string(), |g| format!("{g:.1} ms")),
                e.latency_ms.p99,
                crate::result::Verdict::word(e.verdict.exit_code)
            )?;
        }
        writeln!(out)?;
    }
    if !r.shards.is_empty() {
        writeln!(out, "### Shards\n")?;
        writeln!(
            out,
            "| shard | label | requests | failed | windows | gaps | longest gap | |"
        )?;
        writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---|")?;
        for s in &r.shards {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                s.index,
                cell(&s.label),
                s.requests.total,
                s.requests.failed,
                s.windows_total,
                s.gaps_total,
                s.longest_gap_ms
                    .map_or(String::new(), crate::units::format_ms),
                if s.missing {
                    "no result"
                } else if s.interrupted {
                    "cut short"
                } else {
                    ""
                }
            )?;
        }
        writeln!(out)?;
    }
    if !r.hints.is_empty() {
        writeln!(out, "### Likely causes\n")?;
        for h in &r.hints {
            writeln!(
                out,
                "- **{}**. Fix: {}. _Evidence: {}._",
                cell(&h.cause),
                cell(&h.fix),
                cell(&h.evidence)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{HintEntry, WindowEntry};

    #[test]
    fn summary_has_verdict_table_windows_and_hints() {
        let mut r = RunResult::default();
        r.verdict.line = "FAIL: 2 of 10 requests failed (503: 2) in 1 window".into();
        r.verdict.exit_code = 1;
        r.requests.total = 10;
        r.requests.failed = 2;
        r.windows_total = 1;
        r.windows.push(WindowEntry {
            start_ms: 1500.0,
            duration_ms: 2.0,
            failed: 2,
            codes: [(503, 2)].into(),
            steps: vec!["set | image".into()],
            ..WindowEntry::default()
        });
        r.hints.push(HintEntry {
            cause: "c".into(),
            fix: "f".into(),
            evidence: "e".into(),
            ..HintEntry::default()
        });
        let md = render(&r);
        assert!(md.starts_with("## gapless: FAIL (exit 1)\n"), "{md}");
        assert!(md.contains("| 10 | 0 | 2 | 1 | none |"), "{md}");
        assert!(
            md.contains("| gap | +1.500 s | 2.0 ms | 2 | 0 | 503: 2 | set \\| image |"),
            "{md}"
        );
        assert!(md.contains("- **c**. Fix: f. _Evidence: e._"), "{md}");
    }
}
