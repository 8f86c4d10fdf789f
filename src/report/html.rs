//! `--html FILE`: one self-contained page for release-readiness reviews, rendered from the JSON
//! result with the `maud` template engine (escaping by construction). Inline CSS and SVG only:
//! no script, no font, no URL is fetched when it is opened.
//!
//! The page: a verdict banner; the timeline (requests per second in each slot, stacked by
//! outcome; rollout steps as shaded bands, labelled above the chart; watcher and demo events as
//! markers with their lines as labels, in lanes so they do not overlap; failure windows shaded,
//! gaps darker); p50/p99 latency per slot; the version mix per slot; tables of windows, steps
//! (with their output tails, each line after the time it was read), events, codes and errors;
//! the hints; the command line and the scenario.
//!
//! Each slot is drawn as a rate over the time it covered, so the last slot of a run whose length
//! is not a whole number of slots reads as the rate it had, not as a drop. Labels are placed
//! from an estimate of the text's width (no font metrics without a browser): long step names and
//! event lines are cut with `…` (the full text is in the tooltip and the tables), events closer
//! than a few pixels share one label (`+N`), and events past the last lane keep their marker.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::measure::code::Shown;
use crate::measure::outcome::ErrorClass;
use crate::result::{EventEntry, RunResult, Slot, StepEntry};

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
svg text.label{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
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
                    @if r.targets.is_empty() { "Target " code { (r.target.url) } } @else { (r.targets.len()) " endpoints, interleaved" }
                    " · "
                    (r.load.qps.map_or("max".to_string(), |q| format!("{q} req/s")))
                    " · " (r.load.connections) " connections · started " (r.started_at)
                    " · " (r.requests.total) " requests, " (r.requests.failed) " failed · exit "
                    (r.verdict.exit_code)
                }
                @if r.verdict.criteria.iter().any(|c| c.skipped.is_none()) {
                    table {
                        tr { th { "criterion" } th { "" } th { "limit" } th { "measured" } th { "set by" } }
                        @for c in r.verdict.criteria.iter().filter(|c| c.skipped.is_none()) {
                            tr {
                                td { @if let Some(t) = &c.target { (t) ": " } (c.kind.title()) }
                                td { (if c.passed { "pass" } else { "FAIL" }) }
                                td class="n" { (c.limit.as_ref().map_or_else(|| "-".to_string(), ToString::to_string)) }
                                td class="n" { (c.measured.as_ref().map_or_else(|| "-".to_string(), ToString::to_string)) }
                                td { (c.source) }
                            }
                        }
                    }
                }
                h2 { "Timeline" }
                (legend(&series))
                (timeline(r, &series))
                @if !r.targets.is_empty() {
                    h2 { "Endpoints (" (r.targets.len()) "): which failed when" }
                    (endpoints(r))
                }
                @if !r.streams.is_empty() {
                    h2 { "Long-lived connections (" (r.streams.len()) "): disconnects beside the request windows" }
                    (streams(r))
                }
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
                                td { (w.codes.iter().map(|(&k, n)| format!("{}: {n}", Shown(k))).chain(w.errors.iter().map(|(k, n)| format!("{k}: {n}"))).collect::<Vec<_>>().join(", ")) }
                                td class="n" { (w.failed_on_new_connections) " / " (w.failed_on_reused_connections) }
                                td { (w.steps.join(", ")) @if let Some(a) = &w.after_step { "after " (a) } }
                            }
                        }
                    }
                }
                h2 { "Stalls (" (r.stalls_total) ")" }
                @if r.stalls.is_empty() {
                    p { "None. Longest silence: " (format!("{:.1}", r.longest_stall_ms)) " ms." }
                } @else {
                    table {
                        tr { th { "start" } th { "duration" } th { "held" } th { "failed" } th { "connect timeouts" } th { "unanswered new / reused" } th { "steps" } }
                        @for st in &r.stalls {
                            tr {
                                td class="n" { "+" (format!("{:.3}", st.start_ms / 1000.0)) " s" }
                                td class="n" { (format!("{:.1}", st.duration_ms)) " ms" @if st.open { " (open)" } }
                                td class="n" { (st.held) }
                                td class="n" { (st.failed) }
                                td class="n" { (st.connect_timeouts) }
                                td class="n" { (st.unanswered_new) " / " (st.unanswered_reused) }
                                td { (st.steps.join(", ")) @if let Some(a) = &st.after_step { "after " (a) } }
                            }
                        }
                    }
                }
                @if !r.shards.is_empty() {
                    h2 { "Shards (" (r.shards.len()) ")" }
                    table {
                        tr { th { "shard" } th { "label" } th { "requests" } th { "failed" } th { "windows" } th { "gaps" } th { "longest gap" } th { "" } }
                        @for sh in &r.shards {
                            tr {
                                td class="n" { (sh.index) }
                                td { (sh.label) }
                                td class="n" { (sh.requests.total) }
                                td class="n" { (sh.requests.failed) }
                                td class="n" { (sh.windows_total) }
                                td class="n" { (sh.gaps_total) }
                                td class="n" { (sh.longest_gap_ms.map_or(String::new(), |g| format!("{g:.1} ms"))) }
                                td { (if sh.missing { "no result" } else if sh.interrupted { "cut short" } else { "" }) }
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
                                td { code { (s.command) } @if !s.output_tail.is_empty() { pre { (tail(s)) } } }
                            }
                        }
                    }
                }
                @if !r.events.is_empty() {
                    h2 { "Events (" (r.events.len()) ")" }
                    table {
                        tr { th { "time" } th { "step" } th { "line" } }
                        @for e in r.events.iter().take(LISTED_EVENTS) {
                            tr {
                                td class="n" { "+" (format!("{:.3}", e.t_ms / 1000.0)) " s" }
                                td { (e.step) }
                                td { code { (e.line) } }
                            }
                        }
                    }
                    @if r.events.len() > LISTED_EVENTS || r.events_dropped > 0 {
                        p class="meta" {
                            (r.events.len().saturating_sub(LISTED_EVENTS) as u64 + r.events_dropped)
                            " more events: see the JSON result."
                        }
                    }
                }
                h2 { "Codes and errors" }
                table {
                    tr { th { "outcome" } th { "count" } th { "share" } }
                    @for (k, n) in r.codes.iter().map(|(&k, n)| (shown_code(k), n)).chain(r.errors.iter().map(|(k, n)| (k.to_string(), n))) {
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

/// How many events the page's table lists (the JSON has them all, up to its cap).
const LISTED_EVENTS: usize = 200;

/// A step's output tail, each line after the time it was read (when the result has the times).
fn tail(s: &StepEntry) -> String {
    s.output_tail
        .iter()
        .enumerate()
        .map(|(i, line)| match s.output_tail_ms.get(i) {
            Some(ms) => format!("+{:.3} s  {line}", ms / 1000.0),
            None => line.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The stacked series of the timeline: ok, then each failing code, then each error class.
struct Series {
    keys: Vec<(Key, &'static str)>,
    versions: Vec<(String, &'static str)>,
}

/// What one band of a slot's bar counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    /// Successes.
    Ok,
    /// A failing status code.
    Code(u16),
    /// A transport failure class.
    Class(ErrorClass),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Ok => f.write_str("ok"),
            Key::Code(code) => write!(f, "{}", Shown(*code)),
            Key::Class(class) => write!(f, "{class}"),
        }
    }
}

/// A code in the outcome table: `HTTP 503`, or a gRPC name as it is (`UNAVAILABLE`).
fn shown_code(code: u16) -> String {
    match crate::measure::code::name(code) {
        Some(name) => name.to_string(),
        None => format!("HTTP {code}"),
    }
}

impl Series {
    fn of(r: &RunResult) -> Series {
        let mut keys = vec![(Key::Ok, OK_COLOR)];
        let failing = r
            .codes
            .keys()
            .filter(|&&c| !r.load.ok_codes.contains(c))
            .map(|&c| Key::Code(c));
        let classes = r.errors.keys().map(|&c| Key::Class(c));
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

    fn count(slot: &Slot, key: &Key) -> u64 {
        match key {
            Key::Ok => slot.ok,
            Key::Code(code) => slot.codes.get(code).copied().unwrap_or(0),
            Key::Class(class) => slot.errors.get(class).copied().unwrap_or(0),
        }
    }
}

/// Stacks the non-zero counts of `keys`: `(key, color, base, count)`, bottom up.
fn stack<'a, K>(
    keys: &'a [(K, &'static str)],
    count: impl Fn(&K) -> u64,
) -> Vec<(&'a K, &'static str, f64, f64)> {
    let mut base = 0.0;
    let mut out = Vec::new();
    for (k, color) in keys {
        let n = count(k) as f64;
        if n > 0.0 {
            out.push((k, *color, base, n));
            base += n;
        }
    }
    out
}

fn legend(series: &Series) -> Markup {
    html! {
        div class="legend" {
            @for (k, color) in &series.keys { span { i style={ "background:" (color) } {} (k) } }
            span { i style={ "background:" (STEP_COLOR) ";opacity:.3" } {} "rollout step" }
            span { i style={ "background:rgba(192,57,43,.12);border:1px dashed " (GAP_COLOR) ";box-sizing:border-box" } {} "failure window (some requests failed)" }
            span { i style={ "background:" (GAP_COLOR) ";opacity:.35" } {} "availability gap (every request failed)" }
            span { i style={ "background:" (STALL_COLOR) } {} "stall (nothing answered while requests waited)" }
            span { i style={ "background:" (EVENT_COLOR) } {} "event" }
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

/// The run's length on the x axis: the load's length, or until the last attempt ended.
fn span_ms(r: &RunResult) -> f64 {
    let load = if r.load.duration_ms > 0.0 {
        r.load.duration_ms
    } else {
        r.timeline.len() as f64 * r.load.slot_ms
    };
    load.max(r.elapsed_ms).max(1.0)
}

fn x(r: &RunResult, ms: f64) -> f64 {
    LEFT + CHART * (ms / span_ms(r)).clamp(0.0, 1.0)
}

fn axis(r: &RunResult, height: f64) -> Markup {
    let span = span_ms(r) / 1000.0;
    let step = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ]
    .into_iter()
    .find(|s| span / s <= 12.0)
    .unwrap_or(1800.0);
    let ticks = (0..=((span / step + 1e-9) as usize)).map(|i| i as f64 * step);
    html! {
        line x1=(LEFT) y1=(height) x2=(LEFT + CHART) y2=(height) stroke="#999" {}
        @for t in ticks {
            line x1=(x(r, t * 1000.0)) y1=(height) x2=(x(r, t * 1000.0)) y2=(height + 4.0) stroke="#999" {}
            // The last label ends at the chart's edge rather than past the page's.
            @let anchor = if x(r, t * 1000.0) > WIDTH - 30.0 { "end" } else { "middle" };
            text x=(x(r, t * 1000.0)) y=(height + 16.0) text-anchor=(anchor) { (trim_seconds(t)) "s" }
        }
    }
}

/// `1`, `1.5`, `0.2`: seconds without trailing zeros.
fn trim_seconds(t: f64) -> String {
    let s = format!("{t:.1}");
    s.trim_end_matches(".0").to_string()
}

/// Where the slot at `i` starts and how long it covered, in ms: the last slot of a run whose
/// length is not a whole number of slots covers only up to the end of the load.
fn slot_span(r: &RunResult, i: usize) -> (f64, f64) {
    let t = r.timeline[i].t_ms;
    let end = if r.load.duration_ms > 0.0 {
        r.load.duration_ms
    } else {
        f64::INFINITY
    };
    (t, r.load.slot_ms.min(end - t).max(0.0))
}

/// The rate of `count` requests in the slot at `i`, per second of the time it covered. At a
/// fixed rate that time is counted in whole request intervals (the requests due in it), so a
/// last slot that covers a sliver of the run is not drawn as a spike or as a drop.
fn slot_rate(r: &RunResult, i: usize, count: u64) -> f64 {
    let (t, covered) = slot_span(r, i);
    let seconds = match r.load.qps {
        Some(q) if q > 0.0 => {
            // Requests are due at k / q: those in [t, t + covered).
            let due = |ms: f64| (ms * q / 1000.0 - 1e-9).ceil();
            let planned = due(t + covered) - due(t);
            if planned >= 1.0 {
                planned / q
            } else {
                covered / 1000.0
            }
        }
        _ => covered / 1000.0,
    };
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Width of `text` in the SVG's 11 px font, estimated (no font metrics without a browser).
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 6.3
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    }
}

/// Places labels, left to right, in the first lane where they do not overlap the previous
/// label: `(x, width)` in, the lane of each out (`None` once `lanes` are full).
fn lanes(items: &[(f64, f64)], lanes: usize) -> Vec<Option<usize>> {
    let mut ends: Vec<f64> = Vec::new();
    items
        .iter()
        .map(|&(x, w)| {
            let free = ends.iter().position(|&end| end + 6.0 <= x);
            let lane = match free {
                Some(l) => Some(l),
                None if ends.len() < lanes => {
                    ends.push(f64::MIN);
                    Some(ends.len() - 1)
                }
                None => None,
            };
            if let Some(l) = lane {
                ends[l] = x + w;
            }
            lane
        })
        .collect()
}

/// Where a label for position `x` starts: at `x`, or as far right as it fits on the page.
fn text_start(x: f64, text: &str) -> f64 {
    x.min(WIDTH - text_width(text) - 6.0).max(0.0)
}

/// A label of the timeline's top strips: where, what, and the full text for the tooltip.
struct Label {
    /// The time's position on the chart.
    x: f64,
    /// Where the text starts: at `x`, or left of it when it would pass the chart's right edge.
    text_x: f64,
    text: String,
    full: String,
    lane: Option<usize>,
}

/// Event labels: events closer than [`EVENT_GROUP_PX`] on the chart share one label (the first
/// line, cut to [`EVENT_LABEL_CHARS`], and `+N`; the tooltip has every line), placed in up to
/// [`EVENT_LANES`] lanes.
fn event_labels(r: &RunResult) -> Vec<Label> {
    // Disconnects have a row of their own (see `streams`).
    let mut events: Vec<_> = r.events.iter().filter(|e| e.disconnect.is_none()).collect();
    events.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    let mut groups: Vec<Vec<&EventEntry>> = Vec::new();
    for e in events {
        match groups.last_mut() {
            Some(g) if x(r, e.t_ms) - x(r, g[0].t_ms) < EVENT_GROUP_PX => g.push(e),
            _ => groups.push(vec![e]),
        }
    }
    let texts: Vec<String> = groups
        .iter()
        .map(|g| {
            let first = truncate(&g[0].line, EVENT_LABEL_CHARS);
            match g.len() {
                1 => first,
                n => format!("{first} +{}", n - 1),
            }
        })
        .collect();
    let starts: Vec<(f64, f64)> = groups
        .iter()
        .zip(&texts)
        .map(|(g, t)| (text_start(x(r, g[0].t_ms), t), text_width(t) + 4.0))
        .collect();
    let placed = lanes(&starts, EVENT_LANES);
    groups
        .iter()
        .zip(texts)
        .zip(placed)
        .zip(starts)
        .map(|(((g, text), lane), (text_x, _))| Label {
            x: x(r, g[0].t_ms),
            text_x,
            text,
            full: g
                .iter()
                .map(|e| format!("+{:.3} s [{}] {}", e.t_ms / 1000.0, e.step, e.line))
                .collect::<Vec<_>>()
                .join("\n"),
            lane,
        })
        .collect()
}

/// Step labels: the name, cut to fit its band (at least [`STEP_LABEL_MIN_CHARS`] characters,
/// at most [`STEP_LABEL_CHARS`]), in up to [`STEP_LANES`] lanes.
fn step_labels(r: &RunResult) -> Vec<(Label, f64)> {
    let steps: Vec<_> = r
        .steps
        .iter()
        .filter(|s| !s.background)
        .filter_map(|s| Some((s, s.start_ms?, s.end_ms?)))
        .collect();
    let texts: Vec<String> = steps
        .iter()
        .map(|&(s, a, b)| {
            let fits = ((x(r, b) - x(r, a)) / 6.3) as usize;
            truncate(&s.name, fits.clamp(STEP_LABEL_MIN_CHARS, STEP_LABEL_CHARS))
        })
        .collect();
    let starts: Vec<(f64, f64)> = steps
        .iter()
        .zip(&texts)
        .map(|(&(_, a, _), t)| (text_start(x(r, a), t), text_width(t) + 6.0))
        .collect();
    let placed = lanes(&starts, STEP_LANES);
    steps
        .iter()
        .zip(texts)
        .zip(placed)
        .zip(starts)
        .map(|(((&(s, a, b), text), lane), (text_x, _))| {
            (
                Label {
                    x: x(r, a),
                    text_x,
                    text,
                    full: format!(
                        "step {}: +{:.3} s to +{:.3} s",
                        s.name,
                        a / 1000.0,
                        b / 1000.0
                    ),
                    lane,
                },
                x(r, b),
            )
        })
        .collect()
}

const STEP_COLOR: &str = "#4c78a8";
const GAP_COLOR: &str = "#c0392b";
/// Stalls: a dark band along the bottom of the chart.
const STALL_COLOR: &str = "#4a2c6b";
const EVENT_COLOR: &str = "#555";
/// Height of one lane of labels above the timeline.
const LANE: f64 = 14.0;
const EVENT_LANES: usize = 6;
const EVENT_LABEL_CHARS: usize = 22;
/// Events closer than this on the chart (px) share a label.
const EVENT_GROUP_PX: f64 = 4.0;
const STEP_LANES: usize = 3;
const STEP_LABEL_CHARS: usize = 32;
const STEP_LABEL_MIN_CHARS: usize = 12;

fn timeline(r: &RunResult, series: &Series) -> Markup {
    let events = event_labels(r);
    let steps = step_labels(r);
    let used = |lanes: &mut dyn Iterator<Item = Option<usize>>| {
        lanes.flatten().max().map_or(0, |l| l + 1) as f64
    };
    let event_strip = used(&mut events.iter().map(|l| l.lane)) * LANE;
    let step_strip = used(&mut steps.iter().map(|(l, _)| l.lane)) * LANE;
    let top = event_strip + step_strip + 8.0;
    let height = top + 200.0;
    let rates: Vec<f64> = (0..r.timeline.len())
        .map(|i| slot_rate(r, i, r.timeline[i].ok + r.timeline[i].failed))
        .collect();
    let max = rates.iter().copied().fold(0.0, f64::max).max(1.0);
    let y = |v: f64| top + (height - top) * (1.0 - v / max);
    let unlabelled = events.iter().filter(|l| l.lane.is_none()).count();
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height + 24.0) role="img" {
            title { "Requests per second in each slot, stacked by outcome" }
            @for (i, slot) in r.timeline.iter().enumerate() {
                @let (t, covered) = slot_span(r, i);
                @let x0 = x(r, t);
                @let w = x(r, t + covered) - x0;
                // A 1 px gap between wide bars; narrow ones touch.
                @let w = if w >= 4.0 { w - 1.0 } else { w.max(0.5) };
                @for (k, color, base, n) in stack(&series.keys, |k| Series::count(slot, k)) {
                    @let (b, h) = (slot_rate(r, i, base as u64), slot_rate(r, i, (base + n) as u64));
                    rect x=(x0) y=(y(h)) width=(w) height=(y(b) - y(h)) fill=(color) {
                        title { (format!("+{:.3} s: {k} {n} ({:.0} req/s)", t / 1000.0, slot_rate(r, i, n as u64))) }
                    }
                }
            }
            @for (label, end) in &steps {
                rect x=(label.x) y=(top) width=((end - label.x).max(1.0)) height=(height - top) fill=(STEP_COLOR) fill-opacity="0.22" stroke=(STEP_COLOR) stroke-dasharray="3,2" {
                    title { (label.full) }
                }
                @if let Some(lane) = label.lane {
                    @let ly = event_strip + LANE * (lane as f64 + 1.0);
                    line x1=(label.x) y1=(ly + 2.0) x2=(end.max(label.x + 1.0)) y2=(ly + 2.0) stroke=(STEP_COLOR) stroke-width="2" {}
                }
            }
            @for w in &r.windows {
                @let (x0, x1) = (x(r, w.start_ms), x(r, w.end_ms));
                @let what = format!("{} of {:.1} ms at +{:.3} s: {} failed, {} ok", if w.ok == 0 { "gap" } else { "failure window" }, w.duration_ms, w.start_ms / 1000.0, w.failed, w.ok);
                @if w.ok == 0 {
                    rect x=(x0) y=(top) width=((x1 - x0).max(2.0)) height=(height - top) fill=(GAP_COLOR) fill-opacity="0.25" { title { (what) } }
                } @else {
                    rect x=(x0) y=(top) width=((x1 - x0).max(2.0)) height=(height - top) fill=(GAP_COLOR) fill-opacity="0.12" stroke=(GAP_COLOR) stroke-dasharray="4,2" { title { (what) } }
                }
            }
            // Stalls: a hatched band along the bottom of the chart while the target was silent.
            @for st in &r.stalls {
                @let (x0, x1) = (x(r, st.start_ms), x(r, st.end_ms));
                @let what = format!("stall of {:.1} ms at +{:.3} s: nothing answered; {} held, {} failed", st.duration_ms, st.start_ms / 1000.0, st.held, st.failed);
                rect x=(x0) y=(height - 14.0) width=((x1 - x0).max(2.0)) height="14" fill=(STALL_COLOR) fill-opacity="0.85" { title { (what) } }
            }
            @for label in &events {
                @let lane_y = label.lane.map_or(event_strip, |l| LANE * (l as f64 + 1.0));
                line x1=(label.x) y1=(lane_y - 10.0) x2=(label.x) y2=(height) stroke=(EVENT_COLOR) stroke-opacity="0.45" stroke-dasharray="2,2" {
                    title { (label.full) }
                }
            }
            // Labels last, over every line.
            @for (label, _) in &steps {
                @if let Some(lane) = label.lane {
                    text class="label" x=(label.text_x + 2.0) y=(event_strip + LANE * (lane as f64 + 1.0) - 1.0) style="font-weight:600;fill:#1f3b5a" {
                        title { (label.full) }
                        (label.text)
                    }
                }
            }
            @for label in &events {
                @if let Some(lane) = label.lane {
                    text class="label" x=(label.text_x + 2.0) y=(LANE * (lane as f64 + 1.0) - 2.0) {
                        title { (label.full) }
                        (label.text)
                    }
                }
            }
            text x="4" y=(top + 4.0) { (format!("{max:.0}")) }
            text x="4" y=(top + 16.0) { "req/s" }
            text x="4" y=(height) { "0" }
            (axis(r, height))
        }
        @if unlabelled > 0 {
            p class="meta" { (unlabelled) " more events are marked without a label (hover for the line; the Events table lists them)." }
        }
    }
}

/// The steps as bands `height` high across the rows of a chart (the endpoints', the probes').
fn step_bands(r: &RunResult, height: f64) -> Markup {
    let steps = step_labels(r);
    html! {
        @for (label, end) in &steps {
            rect x=(label.x) y="0" width=((end - label.x).max(1.0)) height=(height) fill=(STEP_COLOR) fill-opacity="0.18" stroke=(STEP_COLOR) stroke-dasharray="3,2" {
                title { (label.full) }
            }
        }
    }
}

/// A run of several endpoints: a row per endpoint on the timeline's time axis, with the steps as
/// bands across every row and each endpoint's failure windows in its own row (gaps dark, partial
/// windows light), then a table per endpoint.
fn endpoints(r: &RunResult) -> Markup {
    const ROW: f64 = 22.0;
    let height = ROW * r.targets.len() as f64 + 4.0;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height + 24.0) role="img" {
            title { "Each endpoint's failure windows, against the rollout steps" }
            (step_bands(r, height))
            @for (i, t) in r.targets.iter().enumerate() {
                @let y0 = ROW * i as f64 + 2.0;
                rect x=(LEFT) y=(y0 + 2.0) width=(CHART) height=(ROW - 4.0) fill=(OK_COLOR) fill-opacity="0.18" {
                    title { (t.name) ": " (t.result.requests.total) " requests, " (t.result.requests.failed) " failed" }
                }
                text class="label" x="2" y=(y0 + ROW - 8.0) {
                    title { (t.name) }
                    (truncate(&t.name, 8))
                }
                @for w in &t.result.windows {
                    @let (x0, x1) = (x(r, w.start_ms), x(r, w.end_ms));
                    @let what = format!("{}: {} of {:.1} ms at +{:.3} s: {} failed, {} ok{}", t.name, if w.ok == 0 { "gap" } else { "failure window" }, w.duration_ms, w.start_ms / 1000.0, w.failed, w.ok, if w.steps.is_empty() { String::new() } else { format!(" during {}", w.steps.join(", ")) });
                    rect x=(x0) y=(y0 + 2.0) width=((x1 - x0).max(2.0)) height=(ROW - 4.0) fill=(GAP_COLOR) fill-opacity=(if w.ok == 0 { "0.9" } else { "0.45" }) {
                        title { (what) }
                    }
                }
            }
            (axis(r, height))
        }
        table {
            tr { th { "endpoint" } th { "url" } th { "requests" } th { "failed" } th { "windows" } th { "longest gap" } th { "p99" } th { "" } th { "failed when" } }
            @for t in &r.targets {
                @let e = &t.result;
                tr {
                    td { (t.name) }
                    td { code { (t.url) } }
                    td class="n" { (e.requests.total) }
                    td class="n" { (e.requests.failed) }
                    td class="n" { (e.windows_total) }
                    td class="n" { (e.longest_gap_ms.map_or(String::new(), |g| format!("{g:.1} ms"))) }
                    td class="n" { (format!("{:.2}", e.latency_ms.p99)) " ms" }
                    td { (crate::result::Verdict::word(e.verdict.exit_code)) }
                    td {
                        @for w in e.windows.iter().take(5) {
                            (if w.ok == 0 { "gap" } else { "window" }) " +" (format!("{:.3}", w.start_ms / 1000.0)) " s, " (format!("{:.1}", w.duration_ms)) " ms"
                            @if !w.steps.is_empty() { " during " (w.steps.join(", ")) }
                            br;
                        }
                        @if e.windows_total > 5 { (e.windows_total - 5) " more" }
                    }
                }
            }
        }
    }
}

/// The long-lived probes: a row per probe on the timeline's time axis, a marker at each
/// disconnect (graceful green, ungraceful red), with the steps as bands and the request
/// windows shaded across every row; then a table per probe.
fn streams(r: &RunResult) -> Markup {
    const ROW: f64 = 22.0;
    let height = ROW * r.streams.len() as f64 + 4.0;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height + 24.0) role="img" {
            title { "Each probe's disconnects, against the rollout steps and the request windows" }
            (step_bands(r, height))
            @for w in &r.windows {
                @let (x0, x1) = (x(r, w.start_ms), x(r, w.end_ms));
                rect x=(x0) y="0" width=((x1 - x0).max(2.0)) height=(height) fill=(GAP_COLOR) fill-opacity=(if w.ok == 0 { "0.2" } else { "0.1" }) {
                    title { (format!("requests: {} of {:.1} ms at +{:.3} s", if w.ok == 0 { "gap" } else { "failure window" }, w.duration_ms, w.start_ms / 1000.0)) }
                }
            }
            @for (i, s) in r.streams.iter().enumerate() {
                @let y0 = ROW * i as f64 + 2.0;
                rect x=(LEFT) y=(y0 + 2.0) width=(CHART) height=(ROW - 4.0) fill=(OK_COLOR) fill-opacity="0.12" {
                    title { (s.name) ": " (s.count) " " (s.kind) " connections, " (s.disconnects.graceful) " graceful and " (s.disconnects.ungraceful) " ungraceful disconnects" }
                }
                text class="label" x="2" y=(y0 + ROW - 8.0) {
                    title { (s.name) }
                    (truncate(&s.name, 8))
                }
                @for e in r.events.iter().filter(|e| e.disconnect.as_ref().is_some_and(|d| d.probe == s.name)) {
                    @let graceful = e.disconnect.as_ref().is_some_and(|d| d.graceful);
                    // A health watch's answer other than SERVING: not a disconnect, its own mark.
                    @let not_serving = e.disconnect.as_ref().is_some_and(|d| d.class == crate::result::StreamClass::NotServing);
                    @let (class, fill) = if not_serving { ("not-serving", STALL_COLOR) } else if graceful { ("disconnect graceful", OK_COLOR) } else { ("disconnect ungraceful", GAP_COLOR) };
                    rect class=(class) x=(x(r, e.t_ms) - 1.0) y=(y0 + 2.0) width="2" height=(ROW - 4.0) fill=(fill) {
                        title { (format!("+{:.3} s [{}] {}", e.t_ms / 1000.0, e.step, e.line)) }
                    }
                }
            }
            (axis(r, height))
        }
        table {
            tr { th { "stream" } th { "url" } th { "connections" } th { "connects" } th { "graceful" } th { "ungraceful" } th { "by class" } th { "reconnect p50 / max" } th { "without a stream: longest / total" } }
            @for s in &r.streams {
                tr {
                    td { (s.name) " (" (s.kind) ")" }
                    td { code { (s.url) } }
                    td class="n" { (s.count) }
                    td class="n" { (s.connects) }
                    td class="n" { (s.disconnects.graceful) }
                    td class="n" { (s.disconnects.ungraceful) }
                    td { (crate::units::breakdown(s.disconnects.by_class.iter().map(|(c, &n)| (c.to_string(), n)))) }
                    td class="n" { (format!("{:.1} / {:.1} ms", s.reconnect_ms.p50, s.reconnect_ms.max)) }
                    td class="n" { (format!("{:.1} / {:.1} ms", s.stream_gap_ms.longest, s.stream_gap_ms.total)) }
                }
            }
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
    let point = |i: usize, v: f64| {
        let (t, covered) = slot_span(r, i);
        format!(
            "{:.1},{:.1}",
            x(r, t + covered / 2.0),
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
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height + 24.0) role="img" {
            title { "Share of successful responses per version, per slot" }
            @for (i, slot) in r.timeline.iter().enumerate() {
                @let total = slot.versions.values().sum::<u64>().max(1) as f64;
                @let (t, covered) = slot_span(r, i);
                @let w = x(r, t + covered) - x(r, t);
                @let w = if w >= 4.0 { w - 1.0 } else { w.max(0.5) };
                @for (v, color, base, n) in stack(&series.versions, |v| slot.versions.get(v).copied().unwrap_or(0)) {
                    rect x=(x(r, t)) y=(height * base / total) width=(w) height=(height * n / total) fill=(color) {
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
    use crate::config::OkCodes;
    use crate::result::{EventEntry, StepEntry, WindowEntry};

    #[test]
    fn page_is_self_contained_and_escaped() {
        let mut r = RunResult::default();
        r.verdict.line = "FAIL: <script>alert(1)</script>".into();
        r.load.slot_ms = 1000.0;
        r.load.ok_codes = OkCodes::default();
        r.elapsed_ms = 3000.0;
        r.codes = [(200, 10), (503, 2)].into();
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
                codes: [(503, 2)].into(),
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
        let gap = WindowEntry {
            start_ms: 1100.0,
            end_ms: 1200.0,
            failed: 2,
            ..WindowEntry::default()
        };
        r.windows.push(gap.clone());
        r.gaps.push(gap);
        r.events.push(EventEntry {
            t_ms: 1000.0,
            step: "w".into(),
            line: "pod <x>".into(),
            disconnect: None,
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
    }

    /// A 2.5 s run at 200 req/s in 1 s slots: 200, 200, then 100 requests in the last half slot.
    fn short_run() -> RunResult {
        let mut r = RunResult::default();
        r.load.qps = Some(200.0);
        r.load.slot_ms = 1000.0;
        r.load.duration_ms = 2500.0;
        r.elapsed_ms = 2503.0;
        r.load.ok_codes = OkCodes::default();
        r.codes = [(200, 490), (503, 10)].into();
        r.timeline = vec![
            Slot {
                t_ms: 0.0,
                ok: 200,
                ..Slot::default()
            },
            Slot {
                t_ms: 1000.0,
                ok: 190,
                failed: 10,
                codes: [(200, 190), (503, 10)].into(),
                ..Slot::default()
            },
            Slot {
                t_ms: 2000.0,
                ok: 100,
                ..Slot::default()
            },
        ];
        r
    }

    /// The `rect`s of the timeline chart whose tooltip starts with `+T s: ok`.
    fn ok_bars(page: &str) -> Vec<String> {
        let chart = &page[page.find("<svg").unwrap()..page.find("</svg>").unwrap()];
        chart
            .split("<rect ")
            .filter(|r| r.contains("<title>+") && r.contains(": ok "))
            .map(|r| r[..r.find('>').unwrap()].to_string())
            .collect()
    }

    fn attr(tag: &str, name: &str) -> f64 {
        let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        tag[start..start + tag[start..].find('"').unwrap()]
            .parse()
            .unwrap()
    }

    #[test]
    fn the_last_partial_slot_is_drawn_as_a_rate() {
        let page = render(&short_run());
        let bars = ok_bars(&page);
        assert_eq!(bars.len(), 3, "{bars:?}");
        // 200 req/s in each: the same top, not half height for the last half slot.
        let tops: Vec<f64> = bars.iter().map(|b| attr(b, "y")).collect();
        assert_eq!(tops[0], tops[2], "{bars:?}");
        assert_eq!(attr(&bars[0], "height"), attr(&bars[2], "height"));
        // It is half as wide: it covers half a slot.
        let (w0, w2) = (attr(&bars[0], "width") + 1.0, attr(&bars[2], "width") + 1.0);
        assert!((w2 / w0 - 0.5).abs() < 0.01, "{w0} {w2}");
        assert!(page.contains("+2.000 s: ok 100 (200 req/s)"));
        // A sliver of a slot: one request due in its 0.4 ms is still 200 req/s, not a spike.
        let mut r = short_run();
        r.load.duration_ms = 2000.4;
        r.timeline[2].ok = 1;
        assert!(render(&r).contains("+2.000 s: ok 1 (200 req/s)"));
        assert_eq!(slot_rate(&r, 2, 1), 200.0);
    }

    #[test]
    fn partial_windows_are_shaded_as_well_as_gaps() {
        let mut r = short_run();
        for (start, ok) in [(1200.0, 0), (1600.0, 12)] {
            r.windows.push(WindowEntry {
                start_ms: start,
                end_ms: start + 170.0,
                duration_ms: 170.0,
                failed: 5,
                ok,
                ..WindowEntry::default()
            });
        }
        let page = render(&r);
        assert_eq!(
            page.matches("fill=\"#c0392b\" fill-opacity=\"0.25\"")
                .count(),
            1,
            "the gap"
        );
        assert_eq!(
            page.matches("fill=\"#c0392b\" fill-opacity=\"0.12\" stroke=\"#c0392b\"")
                .count(),
            1,
            "the partial window"
        );
        assert!(page.contains("failure window of 170.0 ms at +1.600 s: 5 failed, 12 ok"));
    }

    #[test]
    fn event_labels_are_on_the_page_in_lanes_that_do_not_overlap() {
        let mut r = short_run();
        // Three events within a few ms (one label), then a burst 100 ms apart.
        for (t, line) in [
            (1000.0, "v1-0 killed"),
            (1001.0, "v2-3 ready"),
            (1002.0, "v2-4 ready"),
            (
                1300.0,
                "pod web-7d9f8-abcde Terminating after a long grace period",
            ),
            (1400.0, "pod web-7d9f8-fghij Running"),
            (1500.0, "pod web-7d9f8-klmno Running"),
        ] {
            r.events.push(EventEntry {
                t_ms: t,
                step: "pods".into(),
                line: line.into(),
                disconnect: None,
            });
        }
        let labels = event_labels(&r);
        assert_eq!(labels.len(), 4, "the three close events share a label");
        assert_eq!(labels[0].text, "v1-0 killed +2");
        assert!(
            labels[0].full.contains("v2-4 ready"),
            "every line in the tooltip"
        );
        assert_eq!(
            labels[1].text, "pod web-7d9f8-abcde T…",
            "cut to 22 characters"
        );
        for (i, a) in labels.iter().enumerate() {
            assert!(a.lane.is_some(), "{} has a lane", a.text);
            for b in &labels[i + 1..] {
                let apart = a.text_x + text_width(&a.text) + 4.0 <= b.text_x;
                assert!(a.lane != b.lane || apart, "{} overlaps {}", a.text, b.text);
            }
        }
        let page = render(&r);
        for label in &labels {
            let text = label.text.replace('&', "&amp;");
            assert!(page.contains(&format!("{text}</text>")), "{text} is drawn");
        }
        // Past the lanes, events keep their marker and are counted.
        for k in 0..40 {
            r.events.push(EventEntry {
                t_ms: 2000.0 + k as f64 * 5.0,
                step: "pods".into(),
                line: format!("line {k} of a chatty watcher"),
                disconnect: None,
            });
        }
        let labels = event_labels(&r);
        let unlabelled = labels.iter().filter(|l| l.lane.is_none()).count();
        assert!(unlabelled > 0);
        assert!(render(&r).contains(&format!(
            "{unlabelled} more events are marked without a label"
        )));
    }

    #[test]
    fn long_step_names_are_cut_with_the_full_name_on_hover() {
        let mut r = short_run();
        let name = "roll out web, api and worker to v2 in three waves with a canary first";
        r.steps.push(StepEntry {
            name: name.into(),
            start_ms: Some(1000.0),
            end_ms: Some(1100.0),
            ..StepEntry::default()
        });
        let labels = step_labels(&r);
        assert_eq!(
            labels[0].0.text, "roll out we…",
            "a 35 px band: the shortest label"
        );
        assert!(labels[0].0.full.contains(name));
        let page = render(&r);
        assert!(page.contains("roll out we…</text>"));
        assert!(page.contains(&format!("<title>step {name}: +1.000 s to +1.100 s</title>")));
        // A wide band shows more of the name, up to the cap.
        r.steps[0].end_ms = Some(2500.0);
        let labels = step_labels(&r);
        assert_eq!(labels[0].0.text.chars().count(), STEP_LABEL_CHARS);
    }
}
