//! `--junit FILE`: JUnit XML with one test case per verdict criterion, so CI systems show the
//! result natively. Rendered from the JSON result (`gapless report` re-renders it).
//!
//! Test cases: `requests kept` (failures against `--max-failures` / `--max-failure-ratio`),
//! `availability gap` (against `--max-gap`), `p99 latency` (against `--max-p99`; skipped when
//! not set), `version` (against `--expect-version`; skipped when not set), `rollout steps`, and
//! `healthy before the rollout` (warmup).

use std::fmt::Write as _;

use super::json::RunResult;

/// One test case: its name, and the failure message if it failed (`Some("")` is never used).
struct Case {
    name: &'static str,
    outcome: Outcome,
}

enum Outcome {
    Passed,
    Failed(String),
    Skipped(&'static str),
}

fn reason(r: &RunResult, needle: &str) -> Option<String> {
    r.verdict
        .reasons
        .iter()
        .find(|s| s.contains(needle))
        .cloned()
}

fn cases(r: &RunResult) -> Vec<Case> {
    let t = &r.thresholds;
    let ratio = r.requests.failed as f64 / r.requests.total.max(1) as f64;
    let too_many = t.max_failures.is_some_and(|max| r.requests.failed > max)
        || t.max_failure_ratio.is_some_and(|max| ratio > max);
    let kept = if too_many {
        Outcome::Failed(reason(r, "requests failed (").unwrap_or_else(|| {
            format!(
                "{} of {} requests failed",
                r.requests.failed, r.requests.total
            )
        }))
    } else {
        Outcome::Passed
    };
    let gap = match (r.longest_gap_ms, t.max_gap_ms) {
        (Some(g), Some(max)) if max == 0.0 || g > max => Outcome::Failed(format!(
            "longest gap {g:.1} ms (allowed: {})",
            if max == 0.0 {
                "none".to_string()
            } else {
                format!("{max} ms")
            }
        )),
        _ => Outcome::Passed,
    };
    let p99 = match t.max_p99_ms {
        None => Outcome::Skipped("no --max-p99"),
        Some(max) if r.latency_ms.count > 0 && r.latency_ms.p99 > max => Outcome::Failed(format!(
            "p99 latency {:.2} ms is above {max} ms",
            r.latency_ms.p99
        )),
        Some(_) => Outcome::Passed,
    };
    let version = match &t.expect_version {
        None => Outcome::Skipped("no --expect-version"),
        Some(_) => match reason(r, "expected only") {
            Some(m) => Outcome::Failed(m),
            None => Outcome::Passed,
        },
    };
    let steps = match r.steps.iter().find(|s| s.status.is_failure()) {
        Some(s) => Outcome::Failed(format!(
            "step {:?} {}",
            s.name,
            s.problem.as_deref().unwrap_or(s.status.as_str())
        )),
        None if r.steps.is_empty() => Outcome::Skipped("no rollout steps"),
        None => Outcome::Passed,
    };
    let warmup = match reason(r, "by the end of the warmup") {
        Some(m) => Outcome::Failed(m),
        None if r.steps.is_empty() => Outcome::Skipped("no rollout steps"),
        None => Outcome::Passed,
    };
    vec![
        Case {
            name: "requests kept",
            outcome: kept,
        },
        Case {
            name: "availability gap",
            outcome: gap,
        },
        Case {
            name: "p99 latency",
            outcome: p99,
        },
        Case {
            name: "version",
            outcome: version,
        },
        Case {
            name: "rollout steps",
            outcome: steps,
        },
        Case {
            name: "healthy before the rollout",
            outcome: warmup,
        },
    ]
}

/// Escapes text for XML attributes and content.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Renders the JUnit XML.
pub fn render(r: &RunResult) -> String {
    let cases = cases(r);
    let failures = cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .count();
    let skipped = cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Skipped(_)))
        .count();
    let seconds = r.elapsed_ms / 1000.0;
    let mut out = String::new();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<testsuites name="gapless" tests="{}" failures="{failures}" skipped="{skipped}" time="{seconds:.3}">"#,
        cases.len()
    );
    let _ = writeln!(
        out,
        r#"  <testsuite name="gapless {}" tests="{}" failures="{failures}" skipped="{skipped}" time="{seconds:.3}" timestamp="{}">"#,
        xml(&r.target.url),
        cases.len(),
        xml(&r.started_at)
    );
    for case in &cases {
        let _ = write!(
            out,
            r#"    <testcase classname="gapless" name="{}""#,
            xml(case.name)
        );
        match &case.outcome {
            Outcome::Passed => {
                let _ = writeln!(out, "/>");
            }
            Outcome::Failed(message) => {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"gapless\">{}</failure>\n    </testcase>",
                    xml(message),
                    xml(&r.verdict.line)
                );
            }
            Outcome::Skipped(why) => {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml(why)
                );
            }
        }
    }
    let _ = writeln!(out, "  </testsuite>\n</testsuites>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_case_per_criterion() {
        let mut r = RunResult::default();
        r.target.url = "http://x/?a=1&b=<2>".into();
        r.requests.total = 100;
        r.requests.failed = 3;
        r.longest_gap_ms = Some(4.0);
        r.thresholds.max_failures = Some(0);
        r.thresholds.max_gap_ms = Some(0.0);
        r.verdict.line = "FAIL: 3 of 100 requests failed (503: 3) in 1 window".into();
        r.verdict.reasons = vec!["3 of 100 requests failed (503: 3) in 1 window".into()];
        let xml = render(&r);
        assert!(
            xml.contains(r#"tests="6" failures="2" skipped="4""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"name="gapless http://x/?a=1&amp;b=&lt;2&gt;""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="3 of 100 requests failed (503: 3) in 1 window""#)
        );
        assert!(xml.contains(r#"<failure message="longest gap 4.0 ms (allowed: none)""#));
        assert!(xml.contains(r#"<skipped message="no --max-p99"/>"#));
    }
}
