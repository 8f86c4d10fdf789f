//! `--junit FILE`: JUnit XML with one test case per verdict criterion (`verdict.criteria` of the
//! result), so CI systems show the result natively: a broken criterion is a failure with its
//! sentence, a criterion not judged is skipped with why (`no --max-p99`). Nothing is judged here.

use std::fmt::Write as _;

use crate::result::RunResult;

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
    let cases = &r.verdict.criteria;
    let failures = cases.iter().filter(|c| !c.passed).count();
    let skipped = cases.iter().filter(|c| c.skipped.is_some()).count();
    let seconds = r.elapsed_ms / 1000.0;
    let suite = if r.targets.is_empty() {
        r.target.url.clone()
    } else {
        format!("{} endpoints", r.targets.len())
    };
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
        xml(&suite),
        cases.len(),
        xml(&r.started_at)
    );
    for case in cases {
        // In a run of several endpoints, each endpoint's criteria are its own class.
        let (class, name) = match &case.target {
            Some(target) => (
                format!("gapless.{target}"),
                format!("{target}: {}", case.kind.title()),
            ),
            None => ("gapless".to_string(), case.kind.title().to_string()),
        };
        let _ = write!(
            out,
            r#"    <testcase classname="{}" name="{}""#,
            xml(&class),
            xml(&name)
        );
        if !case.passed {
            let message = case.reason.as_deref().unwrap_or("broken");
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\" type=\"gapless\">{}</failure>\n    </testcase>",
                xml(message),
                xml(&r.verdict.line)
            );
        } else if let Some(why) = &case.skipped {
            let _ = writeln!(
                out,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                xml(why)
            );
        } else {
            let _ = writeln!(out, "/>");
        }
    }
    if !r.shards.is_empty() {
        let lines: Vec<String> = r.shards.iter().map(super::shard_line).collect();
        let _ = writeln!(
            out,
            "    <system-out>{}</system-out>",
            xml(&lines.join("\n"))
        );
    }
    let _ = writeln!(out, "  </testsuite>\n</testsuites>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::run::Interruption;

    /// A result of `total` requests, `failed` of them 503s in one gap of 4 ms, judged.
    fn judged(total: u64, failed: u64, interruption: Option<Interruption>) -> RunResult {
        let mut r = RunResult::default();
        r.target.url = "http://x/?a=1&b=<2>".into();
        r.requests.total = total;
        r.requests.failed = failed;
        r.requests.ok = total - failed;
        if failed > 0 {
            r.codes.insert(503, failed);
            r.windows_total = 1;
            r.longest_gap_ms = Some(4.0);
        }
        r.interrupted = interruption.is_some();
        r.interruption = interruption;
        crate::judge::verdict::conclude(&mut r, &Limits::default());
        r
    }

    fn failures(xml: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(xml).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
            .filter_map(|c| c.attribute("name").map(str::to_string))
            .collect()
    }

    #[test]
    fn one_case_per_criterion() {
        let r = judged(100, 3, None);
        let xml = render(&r);
        assert!(
            xml.contains(r#"tests="10" failures="2" skipped="5""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"name="gapless http://x/?a=1&amp;b=&lt;2&gt;""#),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<failure message="3 of 100 requests failed (503: 3) in 1 window" type="gapless">"#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="longest gap 4.0 ms (--max-gap 0s, the default)""#),
            "{xml}"
        );
        assert!(xml.contains(r#"<skipped message="no --max-p99"/>"#));
        assert_eq!(failures(&xml), ["requests kept", "availability gap"]);
    }

    #[test]
    fn a_run_with_no_request_or_interrupted_has_a_failing_case() {
        // Both used to show 0 failures while the run exited 1 or 130.
        let none = judged(0, 0, None);
        assert_eq!(none.verdict.exit_code, 1);
        assert_eq!(failures(&render(&none)), ["requests sent"]);
        let interrupted = judged(10, 0, Some(Interruption::Interrupt));
        assert_eq!(interrupted.verdict.exit_code, 130);
        assert_eq!(failures(&render(&interrupted)), ["run completed"]);
    }
}
