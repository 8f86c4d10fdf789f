//! `gapless diff`'s renderings of one [`Comparison`]: the text table (stdout), `--json FILE` and
//! `--markdown FILE`. Each shows the rows and the judgement `crate::judge::diff` computed; none
//! judges again.

use std::fmt::Write as _;
use std::path::Path;

use crate::judge::diff::{
    Change, Comparison, DiffCriterion, LimitKind, Metric, Row, Scope, Value, millis_text,
    signed_count, signed_ms, signed_percent,
};
use crate::units::format_ms;

/// One line of the table: a section heading, or the cells of a row (name, BASE, NEW, change,
/// limit).
enum Line {
    Heading(String),
    Cells([String; 5]),
}

/// The table's header.
const HEADER: [&str; 5] = ["", "BASE", "NEW", "change", "limit"];

/// `480`, `12 ms`, or `-` when the run has none.
fn value(v: Option<Value>) -> String {
    match v {
        Some(Value::Count(n)) => n.to_string(),
        Some(Value::Millis(ms)) => millis_text(ms),
        None => "-".to_string(),
    }
}

/// `+60`, `+300 ms (+25.0 %)`, or `-` when either run has none.
fn change(row: &Row) -> String {
    let mut text = match row.change {
        Some(Change::Count(n)) => signed_count(n),
        Some(Change::Number(ms)) => signed_ms(ms),
        None => return "-".to_string(),
    };
    if let Some(p) = row.change_percent.filter(|p| *p != 0.0) {
        let _ = write!(text, " ({})", signed_percent(p));
    }
    text
}

/// A limit as given: `+0`, `+0 ms`, `+20 %`.
fn limit_text(c: &DiffCriterion) -> String {
    match (c.kind, c.limit) {
        (LimitKind::P99, limit) => format!("+{} %", limit.as_f64()),
        (_, Change::Count(n)) => format!("+{n}"),
        (_, Change::Number(ms)) => format!("+{}", millis_text(ms)),
    }
}

/// The limit cell: `max +0: WORSE`, `max +20 %: ok`, `not judged: no response in NEW`.
fn limit(c: Option<&DiffCriterion>) -> String {
    let Some(c) = c else {
        return String::new();
    };
    if let Some(why) = &c.skipped {
        return format!("not judged: {why}");
    }
    let verdict = if c.passed { "ok" } else { "WORSE" };
    let by = if c.source.is_given() {
        format!(", {}", c.source)
    } else {
        String::new()
    };
    format!("max {}{by}: {verdict}", limit_text(c))
}

fn cells(name: String, row: &Row, criterion: Option<&DiffCriterion>) -> Line {
    Line::Cells([
        name,
        value(row.base),
        value(row.new),
        change(row),
        limit(criterion),
    ])
}

/// The rows of a run or an endpoint, names indented by `indent`.
fn scope_lines(out: &mut Vec<Line>, scope: &Scope, indent: &str) {
    for m in Metric::ALL {
        if let Some(row) = scope.metrics.get(&m) {
            out.push(cells(
                format!("{indent}{}", m.title()),
                row,
                scope.criterion(m),
            ));
        }
    }
    let mut section = |title: &str, rows: Vec<(String, &Row)>| {
        if !rows.is_empty() {
            out.push(Line::Heading(format!("{indent}{title}")));
            for (name, row) in rows {
                out.push(cells(format!("{indent}  {name}"), row, None));
            }
        }
    };
    section(
        "status codes",
        scope
            .codes
            .iter()
            .map(|(&c, r)| (crate::measure::code::Shown(c).to_string(), r))
            .collect(),
    );
    section(
        "error classes",
        scope.errors.iter().map(|(c, r)| (c.clone(), r)).collect(),
    );
    section(
        "versions (successful responses)",
        scope.versions.iter().map(|(v, r)| (v.clone(), r)).collect(),
    );
}

/// Every line of the table, in order.
fn lines(c: &Comparison) -> Vec<Line> {
    let mut out = Vec::new();
    scope_lines(&mut out, &c.run, "");
    if !c.steps.is_empty() {
        out.push(Line::Heading(
            "failed requests per step (listed windows)".to_string(),
        ));
        if let Some(before) = &c.failed_before_steps {
            out.push(cells("  before any step".to_string(), before, None));
        }
        for s in &c.steps {
            let status = |st: Option<crate::rollout::StepStatus>| {
                st.map_or_else(|| "absent".to_string(), |s| s.to_string())
            };
            let name = if s.base_status == s.new_status {
                format!("{} ({})", s.name, status(s.new_status))
            } else {
                format!(
                    "{} ({} → {})",
                    s.name,
                    status(s.base_status),
                    status(s.new_status)
                )
            };
            out.push(cells(format!("  {name}: during"), &s.failed_during, None));
            out.push(cells(format!("  {name}: after"), &s.failed_after, None));
        }
    }
    for t in &c.targets {
        out.push(Line::Heading(format!("target {}", t.name)));
        scope_lines(&mut out, &t.scope, "  ");
    }
    out
}

/// The two files, one line each.
fn sides(c: &Comparison) -> [(&'static str, String); 2] {
    let side = |s: &crate::judge::diff::RunInfo| {
        let rate = s
            .qps
            .map_or_else(|| "closed loop".to_string(), |q| format!("{q} req/s"));
        format!(
            "{} ({}, {}, {rate}, {}): {}",
            s.file,
            s.started_at,
            s.url,
            format_ms(s.duration_ms),
            s.verdict_line
        )
    };
    [("BASE", side(&c.base)), ("NEW", side(&c.new))]
}

/// Endpoints, notes: the sentences after the table.
fn remarks(c: &Comparison) -> Vec<String> {
    let mut out = Vec::new();
    if !c.targets_only_in_base.is_empty() {
        out.push(format!(
            "only in BASE (not compared): {}",
            c.targets_only_in_base.join(", ")
        ));
    }
    if !c.targets_only_in_new.is_empty() {
        out.push(format!(
            "only in NEW (not compared): {}",
            c.targets_only_in_new.join(", ")
        ));
    }
    out.extend(c.notes.iter().map(|n| format!("note: {n}")));
    out
}

/// The text table, ending with the line.
pub fn text(c: &Comparison) -> String {
    let lines = lines(c);
    let mut width = HEADER.map(str::len);
    for line in &lines {
        if let Line::Cells(cells) = line {
            for (w, cell) in width.iter_mut().zip(cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let pad = |cells: [&str; 5]| {
        let mut row = format!("{:<w$}", cells[0], w = width[0]);
        for (i, cell) in cells.iter().enumerate().take(4).skip(1) {
            let _ = write!(row, "  {:>w$}", cell, w = width[i]);
        }
        if !cells[4].is_empty() {
            let _ = write!(row, "  {}", cells[4]);
        }
        row.trim_end().to_string() + "\n"
    };
    let mut out = String::from("gapless diff\n");
    for (name, side) in sides(c) {
        let _ = writeln!(out, "{name:<4}  {side}");
    }
    out.push('\n');
    out.push_str(&pad(HEADER));
    for line in &lines {
        match line {
            Line::Heading(title) => {
                out.push_str(title);
                out.push('\n');
            }
            Line::Cells(cells) => out.push_str(&pad(cells.each_ref().map(String::as_str))),
        }
    }
    out.push('\n');
    for remark in remarks(c) {
        out.push_str(&remark);
        out.push('\n');
    }
    out.push_str(&c.line);
    out.push('\n');
    out
}

fn md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown summary: the line, the two files, the table.
pub fn markdown(c: &Comparison) -> String {
    let word = if c.passed { "NOT WORSE" } else { "WORSE" };
    let mut out = format!("## gapless diff: {word} (exit {})\n\n", c.exit_code);
    let _ = writeln!(out, "`{}`\n", md(&c.line));
    for (name, side) in sides(c) {
        let _ = writeln!(out, "- **{name}** {}", md(&side));
    }
    out.push('\n');
    out.push_str("| | BASE | NEW | change | limit |\n|---|---:|---:|---:|---|\n");
    for line in lines(c) {
        match line {
            Line::Heading(title) => {
                let _ = writeln!(out, "| **{}** | | | | |", md(title.trim()));
            }
            Line::Cells([name, base, new, change, limit]) => {
                let limit = if limit.ends_with(": WORSE") {
                    format!("**{}**", md(&limit))
                } else {
                    md(&limit)
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {limit} |",
                    md(name.trim()),
                    md(&base),
                    md(&new),
                    md(&change)
                );
            }
        }
    }
    let remarks = remarks(c);
    if !remarks.is_empty() {
        out.push('\n');
        for remark in remarks {
            let _ = writeln!(out, "- {}", md(&remark));
        }
    }
    out
}

/// The comparison as JSON (the wire form of [`Comparison`]).
pub fn json(c: &Comparison) -> Result<String, super::Error> {
    Ok(serde_json::to_string_pretty(c)? + "\n")
}

/// Writes the text table (to stdout, or to stderr when the JSON goes to stdout) and the files
/// asked for; returns how many could not be written (each named on stderr).
pub fn deliver(c: &Comparison, json_file: Option<&Path>, markdown_file: Option<&Path>) -> usize {
    let mut failed = 0;
    let mut written = |outcome: Result<(), super::Error>| {
        if let Err(err) = outcome {
            let mut message = format!("gapless: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                let _ = write!(message, ": {cause}");
                source = cause.source();
            }
            super::to_stderr(&(message + "\n"));
            failed += 1;
        }
    };
    let table = text(c);
    let to = |path: &Path, rendered: &str| {
        if path == Path::new("-") {
            super::to_stdout(rendered)
        } else {
            super::write_file(path, rendered)
        }
    };
    if json_file == Some(Path::new("-")) {
        super::to_stderr(&table);
    } else {
        written(super::to_stdout(&table));
    }
    if let Some(path) = json_file {
        written(json(c).and_then(|rendered| to(path, &rendered)));
    }
    if let Some(path) = markdown_file {
        written(to(path, &markdown(c)));
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::diff::{DiffLimits, compare};
    use crate::result::{Latency, RunResult};

    fn result(failed: u64, gap: Option<f64>, p99: f64) -> RunResult {
        let mut r = RunResult::default();
        r.requests.total = 1000;
        r.requests.ok = 1000 - failed;
        r.requests.failed = failed;
        r.longest_gap_ms = gap;
        r.latency_ms = Latency {
            count: 1000,
            p50: 1.0,
            p99,
            ..Latency::default()
        };
        r.verdict.line = "PASS".into();
        r
    }

    #[test]
    fn the_table_shows_each_row_and_which_limit_broke() {
        let c = compare(
            ("a.json", &result(0, None, 10.0)),
            ("b.json", &result(40, Some(120.0), 10.0)),
            &DiffLimits::default(),
        );
        let table = text(&c);
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(row("failed"), "failed 0 40 +40 max +0: WORSE");
        assert_eq!(
            row("longest gap"),
            "longest gap 0 ms 120 ms +120 ms max +0 ms: WORSE"
        );
        assert_eq!(
            row("p99 latency"),
            "p99 latency 10 ms 10 ms 0 ms max +20 %: ok"
        );
        assert_eq!(row("requests"), "requests 1000 1000 0");
        assert!(table.ends_with(&format!("{}\n", c.line)), "{table}");
        assert!(table.contains("BASE  a.json"), "{table}");
    }

    #[test]
    fn the_json_and_markdown_carry_the_same_judgement() {
        let c = compare(
            ("a.json", &result(0, None, 10.0)),
            ("b.json", &result(0, None, 13.0)),
            &DiffLimits::default(),
        );
        assert_eq!(c.exit_code, 1);
        let value: serde_json::Value = serde_json::from_str(&json(&c).unwrap()).unwrap();
        assert_eq!(value["passed"], false);
        assert_eq!(value["exit_code"], 1);
        assert_eq!(value["line"], c.line.as_str());
        assert_eq!(
            value["run"]["metrics"]["latency_p99_ms"]["change_percent"],
            30.0
        );
        assert_eq!(value["run"]["criteria"][2]["kind"], "max_p99_increase");
        assert_eq!(value["run"]["criteria"][2]["passed"], false);
        assert_eq!(value["run"]["criteria"][2]["source"], "default");
        let md = markdown(&c);
        assert!(md.starts_with("## gapless diff: WORSE (exit 1)\n"), "{md}");
        assert!(
            md.contains(
                "| p99 latency | 10 ms | 13 ms | +3.0 ms (+30.0 %) | **max +20 %: WORSE** |"
            ),
            "{md}"
        );
    }
}
