//! `--html FILE`: one self-contained page for release-readiness reviews, rendered from the JSON
//! result with the `maud` template engine (escaping by construction). Inline CSS and SVG only:
//! no script, no font, no URL is fetched when it is opened.
//!
//! The page: a verdict banner; the timeline (requests per slot stacked by outcome, rollout steps
//! as shaded bands, watcher and demo events as markers, gaps highlighted); p50/p99 latency per
//! slot; the version mix per slot; tables of windows, steps (with their output tails), codes and
//! errors; the hints; the command line and the scenario.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::json::{RunResult, Slot};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 56.0;
const CHART: f64 = WIDTH - LEFT - 16.0;

const OK_COLOR: &str = "#3a9d5d";
const PALETTE: [&str; 8] = [
    "#d64545", "#e8833a", "#8e44ad", "#c0392b", "#f1c40f", "#7f8c8d", "#16a085", "#2c3e50",
];
const VERSION_PALETTE: [&str; 6] = [
    "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#9d755d", "#72b7b2",
];

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:20px;margin:0 0 8px} h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.banner{padding:14px 18px;border-radius:6px;color:#fff;font-weight:600;font-size:16px}
.pass{background:#2e8b57}.fail{background:#c0392b}
.meta{color:#555;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f6f6f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px;margin:4px 0}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg text{font:11px system-ui,sans-serif;fill:#444}
.hint{margin:8px 0;padding:8px 12px;border-left:4px solid #e8833a;background:#fff8f0}
";

/// Renders the page.
pub fn render(r: &RunResult) -> String {
    let series = Series::of(r);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "gapless: " (r.verdict.line) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "gapless release report" }
                div class={ "banner " (if r.verdict.passed { "pass" } else { "fail" }) } {
                    (r.verdict.line)
                }
                p class="meta" {
                    "Target " code { (r.target.url) } " · "
                    (r.load.qps.map_or("max".to_string(), |q| format!("{q} req/s")))
                    " · " (r.load.connections) " connections · started " (r.started_at)
                    " · " (r.requests.total) " requests, " (r.requests.failed) " failed · exit "
                    (r.verdict.exit_code)
                }
                h2 { "Timeline" }
                (legend(&series))
                (timeline(r, &series))
                h2 { "Latency per slot (from intended send time)" }
                (latency(r))
                @if !series.versions.is_empty() {
                    h2 { "Version mix per slot" }
                    (version_legend(&series))
                    (versions(r, &series))
                }
                @if !r.hints.is_empty() {
                    h2 { "Likely causes" }
                    @for h in &r.hints {
                        div class="hint" {
                            strong { (h.cause) } ". Fix: " (h.fix) "."
                            br; small { "Evidence: " (h.evidence) "." }
                        }
                    }
                }
                h2 { "Failure windows (" (r.windows_total) ")" }
                @if r.windows.is_empty() { p { "None." } } @else {
                    table {
                        tr { th { "kind" } th { "start" } th { "duration" } th { "failed" } th { "ok" } th { "codes / errors" } th { "new / reused" } th { "steps" } }
                        @for w in &r.windows {
                            tr {
                                td { (if w.ok == 0 { "gap" } else { "partial" }) }
                                td class="n" { "+" (format!("{:.3}", w.start_ms / 1000.0)) " s" }
                                td class="n" { (format!("{:.1}", w.duration_ms)) " ms" }
                                td class="n" { (w.failed) }
                                td class="n" { (w.ok) }
                                td { (w.codes.iter().chain(w.errors.iter()).map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")) }
                                td class="n" { (w.failed_on_new_connections) " / " (w.failed_on_reused_connections) }
                                td { (w.steps.join(", ")) @if let Some(a) = &w.after_step { "after " (a) } }
                            }
                        }
                    }
                }
                @if !r.steps.is_empty() {
                    h2 { "Steps" }
                    table {
                        tr { th { "step" } th { "status" } th { "start" } th { "end" } th { "exit" } th { "command and output" } }
                        @for s in &r.steps {
                            tr {
                                td { (s.name) @if s.background { " (watcher)" } }
                                td { (s.status) @if let Some(p) = &s.problem { br; small { (p) } } }
                                td class="n" { (s.start_ms.map_or("-".to_string(), |m| format!("+{:.3} s", m / 1000.0))) }
                                td class="n" { (s.end_ms.map_or("-".to_string(), |m| format!("+{:.3} s", m / 1000.0))) }
                                td class="n" { (s.exit_code.map_or("-".to_string(), |c| c.to_string())) }
                                td { code { (s.command) } @if !s.output_tail.is_empty() { pre { (s.output_tail.join("\n")) } } }
                            }
                        }
                    }
                }
                h2 { "Codes and errors" }
                table {
                    tr { th { "outcome" } th { "count" } th { "share" } }
                    @for (k, n) in r.codes.iter().map(|(k, n)| (format!("HTTP {k}"), n)).chain(r.errors.iter().map(|(k, n)| (k.clone(), n))) {
                        tr { td { (k) } td class="n" { (n) } td class="n" { (format!("{:.2} %", 100.0 * *n as f64 / r.requests.total.max(1) as f64)) } }
                    }
                }
                h2 { "Latency" }
                table {
                    tr { th { "" } th { "p50" } th { "p90" } th { "p99" } th { "p99.9" } th { "max" } }
                    @for (name, l) in [("from intended send", &r.latency_ms), ("service time", &r.service_time_ms), ("send lateness", &r.lateness_ms)] {
                        tr { td { (name) } td class="n" { (l.p50) " ms" } td class="n" { (l.p90) " ms" } td class="n" { (l.p99) " ms" } td class="n" { (l.p99_9) " ms" } td class="n" { (l.max) " ms" } }
                    }
                }
                h2 { "How it was run" }
                pre { (r.command_line.join(" ")) }
                @if let Some(s) = &r.scenario {
                    p { "Scenario " code { (s.path) } }
                    pre { (s.text) }
                }
                p class="meta" { "gapless " (r.gapless_version) ", JSON schema " (r.schema_version) }
            }
        }
    };
    page.into_string()
}

/// The stacked series of the timeline: ok, then each failing code, then each error class.
struct Series {
    keys: Vec<(String, &'static str)>,
    versions: Vec<(String, &'static str)>,
}

impl Series {
    fn of(r: &RunResult) -> Series {
        let ok = |code: &str| {
            code.parse::<u16>()
                .ok()
                .is_some_and(|c| ok_codes_contain(&r.load.ok_codes, c))
        };
        let mut keys = vec![("ok".to_string(), OK_COLOR)];
        let failing = r.codes.keys().filter(|c| !ok(c)).cloned();
        let classes = r.errors.keys().cloned();
        for (i, k) in failing.chain(classes).enumerate() {
            keys.push((k, PALETTE[i % PALETTE.len()]));
        }
        let versions = r
            .versions
            .keys()
            .enumerate()
            .map(|(i, v)| (v.clone(), VERSION_PALETTE[i % VERSION_PALETTE.len()]))
            .collect();
        Series { keys, versions }
    }

    fn count(slot: &Slot, key: &str) -> u64 {
        if key == "ok" {
            slot.ok
        } else {
            slot.codes
                .get(key)
                .or_else(|| slot.errors.get(key))
                .copied()
                .unwrap_or(0)
        }
    }
}

/// `200-299,304` contains `code`.
fn ok_codes_contain(list: &str, code: u16) -> bool {
    list.split(',').any(|part| match part.split_once('-') {
        Some((a, b)) => match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
            (Ok(a), Ok(b)) => (a..=b).contains(&code),
            _ => false,
        },
        None => part.trim().parse::<u16>().ok() == Some(code),
    })
}

/// Stacks the non-zero counts of `keys`: `(key, color, base, count)`, bottom up.
fn stack<'a>(
    keys: &'a [(String, &'static str)],
    count: impl Fn(&str) -> u64,
) -> Vec<(&'a str, &'static str, f64, f64)> {
    let mut base = 0.0;
    let mut out = Vec::new();
    for (k, color) in keys {
        let n = count(k) as f64;
        if n > 0.0 {
            out.push((k.as_str(), *color, base, n));
            base += n;
        }
    }
    out
}

fn legend(series: &Series) -> Markup {
    html! {
        div class="legend" {
            @for (k, color) in &series.keys { span { i style={ "background:" (color) } {} (k) } }
            span { i style="background:#4c78a8;opacity:.3" {} "rollout step" }
            span { i style="background:#c0392b;opacity:.25" {} "availability gap" }
            span { i style="background:#555" {} "event" }
        }
    }
}

fn version_legend(series: &Series) -> Markup {
    html! {
        div class="legend" {
            @for (k, color) in &series.versions { span { i style={ "background:" (color) } {} (k) } }
        }
    }
}

/// The run's length on the x axis.
fn span_ms(r: &RunResult) -> f64 {
    let slots = r.timeline.len() as f64 * r.load.slot_ms;
    slots.max(r.elapsed_ms).max(1.0)
}

fn x(r: &RunResult, ms: f64) -> f64 {
    LEFT + CHART * (ms / span_ms(r)).clamp(0.0, 1.0)
}

fn axis(r: &RunResult, height: f64) -> Markup {
    let span = span_ms(r) / 1000.0;
    let step = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|s| span / s <= 12.0)
        .unwrap_or(1800.0);
    let ticks = (0..=((span / step) as usize)).map(|i| i as f64 * step);
    html! {
        line x1=(LEFT) y1=(height) x2=(LEFT + CHART) y2=(height) stroke="#999" {}
        @for t in ticks {
            line x1=(x(r, t * 1000.0)) y1=(height) x2=(x(r, t * 1000.0)) y2=(height + 4.0) stroke="#999" {}
            text x=(x(r, t * 1000.0)) y=(height + 16.0) text-anchor="middle" { (format!("{t}s")) }
        }
    }
}

fn timeline(r: &RunResult, series: &Series) -> Markup {
    let height = 220.0;
    let top = 18.0;
    let max = r
        .timeline
        .iter()
        .map(|s| s.ok + s.failed)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot_w = CHART * r.load.slot_ms / span_ms(r);
    let y = |v: f64| top + (height - top) * (1.0 - v / max);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height + 24.0) role="img" {
            title { "Requests per slot, stacked by outcome" }
            @for (i, slot) in r.timeline.iter().enumerate() {
                @let x0 = LEFT + slot_w * i as f64;
                @for (k, color, base, n) in stack(&series.keys, |k| Series::count(slot, k)) {
                    rect x=(x0) y=(y(base + n)) width=((slot_w - 1.0).max(0.5)) height=(y(base) - y(base + n)) fill=(color) {
                        title { (format!("+{:.1} s: {k} {n}", slot.t_ms / 1000.0)) }
                    }
                }
            }
            @for s in r.steps.iter().filter(|s| !s.background) {
                @if let (Some(a), Some(b)) = (s.start_ms, s.end_ms) {
                    rect x=(x(r, a)) y=(top) width=((x(r, b) - x(r, a)).max(1.0)) height=(height - top) fill="#4c78a8" fill-opacity="0.22" stroke="#4c78a8" stroke-dasharray="3,2" {
                        title { "step " (s.name) }
                    }
                    text x=(x(r, a) + 3.0) y=(top + 12.0) style="font-weight:600;fill:#1f3b5a" { (s.name) }
                }
            }
            @for g in &r.gaps {
                rect x=(x(r, g.start_ms)) y=(top) width=((x(r, g.end_ms) - x(r, g.start_ms)).max(2.0)) height=(height - top) fill="#c0392b" fill-opacity="0.25" {
                    title { (format!("gap of {:.1} ms at +{:.3} s", g.duration_ms, g.start_ms / 1000.0)) }
                }
            }
            @for e in &r.events {
                line x1=(x(r, e.t_ms)) y1="2" x2=(x(r, e.t_ms)) y2=(top) stroke="#555" {
                    title { (format!("+{:.3} s [{}] {}", e.t_ms / 1000.0, e.step, e.line)) }
                }
            }
            text x="4" y=(top + 4.0) { (max as u64) }
            text x="4" y=(height) { "0" }
            (axis(r, height))
        }
    }
}

fn latency(r: &RunResult) -> Markup {
    let height = 140.0;
    let top = 10.0;
    let max = r
        .timeline
        .iter()
        .filter_map(|s| s.p99_ms)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let slot_w = CHART * r.load.slot_ms / span_ms(r);
    let point = |i: usize, v: f64| {
        format!(
            "{:.1},{:.1}",
            LEFT + slot_w * (i as f64 + 0.5),
            top + (height - top) * (1.0 - v / max)
        )
    };
    let line = |pick: fn(&Slot) -> Option<f64>| {
        r.timeline
            .iter()
            .enumerate()
            .filter_map(|(i, s)| pick(s).map(|v| point(i, v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        div class="legend" { span { i style="background:#4c78a8" {} "p50" } span { i style="background:#d64545" {} "p99" } }
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height + 24.0) role="img" {
            title { "p50 and p99 latency per slot" }
            polyline points=(line(|s| s.p50_ms)) fill="none" stroke="#4c78a8" stroke-width="1.5" {}
            polyline points=(line(|s| s.p99_ms)) fill="none" stroke="#d64545" stroke-width="1.5" {}
            text x="4" y=(top + 4.0) { (format!("{max:.1} ms")) }
            text x="4" y=(height) { "0" }
            (axis(r, height))
        }
    }
}

fn versions(r: &RunResult, series: &Series) -> Markup {
    let height = 100.0;
    let slot_w = CHART * r.load.slot_ms / span_ms(r);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height + 24.0) role="img" {
            title { "Share of successful responses per version, per slot" }
            @for (i, slot) in r.timeline.iter().enumerate() {
                @let total = slot.versions.values().sum::<u64>().max(1) as f64;
                @for (v, color, base, n) in stack(&series.versions, |v| slot.versions.get(v).copied().unwrap_or(0)) {
                    rect x=(LEFT + slot_w * i as f64) y=(height * base / total) width=((slot_w - 1.0).max(0.5)) height=(height * n / total) fill=(color) {
                        title { (format!("+{:.1} s: {v} {n}", slot.t_ms / 1000.0)) }
                    }
                }
            }
            (axis(r, height))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::json::{EventEntry, StepEntry, WindowEntry};

    #[test]
    fn page_is_self_contained_and_escaped() {
        let mut r = RunResult::default();
        r.verdict.line = "FAIL: <script>alert(1)</script>".into();
        r.load.slot_ms = 1000.0;
        r.load.ok_codes = "200-299".into();
        r.elapsed_ms = 3000.0;
        r.codes = [("200".to_string(), 10), ("503".to_string(), 2)].into();
        r.timeline = vec![
            Slot {
                t_ms: 0.0,
                ok: 5,
                ..Slot::default()
            },
            Slot {
                t_ms: 1000.0,
                ok: 5,
                failed: 2,
                codes: [("503".to_string(), 2)].into(),
                p99_ms: Some(3.0),
                ..Slot::default()
            },
        ];
        r.steps.push(StepEntry {
            name: "flip".into(),
            start_ms: Some(1000.0),
            end_ms: Some(1500.0),
            output_tail: vec!["done & dusted".into()],
            ..StepEntry::default()
        });
        r.gaps.push(WindowEntry {
            start_ms: 1100.0,
            end_ms: 1200.0,
            ..WindowEntry::default()
        });
        r.events.push(EventEntry {
            t_ms: 1000.0,
            step: "w".into(),
            line: "pod <x>".into(),
        });
        let page = render(&r);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("<script>"), "text is escaped");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("done &amp; dusted"));
        // Nothing is fetched: no src, href, url() or @import; the SVG namespace is an identifier.
        for fetch in ["src=", "href=", "url(", "@import", "<link", "<script"] {
            assert!(!page.contains(fetch), "{fetch} in the page");
        }
        assert!(
            page.contains("fill=\"#c0392b\" fill-opacity=\"0.25\""),
            "gap highlighted"
        );
        assert!(ok_codes_contain("200-299,304", 304) && !ok_codes_contain("200-299", 503));
    }
}
