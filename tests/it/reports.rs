//! Version tracking, and every report format: HTML (rendered in headless Chromium by the tests
//! marked `#[ignore = "needs chromium"]`), Markdown (and the CI job summary), JUnit XML, Fortio's
//! JSON schema, and `gapless report` re-rendering a saved result. Loads are on loopback at 200 to
//! 500 requests per second for a few seconds.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support;
use crate::support::{
    GAPLESS, Reply, Run, TempFile, TestServer, at, f64_at, run_gapless, run_json_with_command,
    u64_at,
};
use serde_json::Value;

/// A target that answers as `v1` until 1.5 s after its first request, then as `v2`, and as `v1`
/// again after `back` if given.
fn switching(back: Option<Duration>) -> TestServer {
    TestServer::http(move |info| {
        let t = info.since_first;
        let v2 = t >= Duration::from_millis(1500) && back.is_none_or(|b| t < b);
        Reply::ok().versioned(if v2 { "v2" } else { "v1" })
    })
}

/// Warmup 1 s, one 1 s pause step, cooldown 1 s, 100 ms slots, at 200 qps.
fn rollout_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        url,
        "-q",
        "200",
        "--slot",
        "100ms",
        "--warmup",
        "1s",
        "--cooldown",
        "1s",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args
}

fn with_step(mut args: Vec<&str>) -> Vec<&str> {
    args.extend_from_slice(&["--", "sleep", "1"]);
    args
}

#[test]
fn the_cutover_is_found_within_one_slot_and_the_expected_version_passes() {
    let server = switching(None);
    let url = server.url();
    let json_file = TempFile::new("json");
    let args = with_step(rollout_args(
        &url,
        &[
            "--version-header",
            "x-version",
            "--expect-version",
            "v2",
            "--json",
            json_file.as_str(),
        ],
    ));
    let (code, _, stderr, _) = run_gapless(&args);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(json_file.path()).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(code, 0, "{}", at(&json, "/verdict/line"));
    let (v1, v2) = (at(&json, "/versions/v1"), at(&json, "/versions/v2"));
    assert_eq!(
        u64_at(v1, "/count") + u64_at(v2, "/count"),
        u64_at(&json, "/requests/ok")
    );
    // The server switched 1.5 s after its first request, which arrived at about +0 ms.
    let cutover = f64_at(&json, "/cutover_ms");
    assert!((1400.0..=1600.0).contains(&cutover), "cutover {cutover}");
    assert!(
        (f64_at(v2, "/first_ms") - cutover).abs() <= 100.0,
        "within one slot"
    );
    assert!(at(&json, "/mixed_window").is_null(), "a clean cut");
    // Per slot: only v1 before the cutover's slot, only v2 after it.
    for slot in at(&json, "/timeline").as_array().unwrap() {
        let t = f64_at(slot, "/t_ms");
        let versions: Vec<&String> = slot["versions"].as_object().unwrap().keys().collect();
        if t + 100.0 <= cutover {
            assert_eq!(versions, ["v1"], "slot {t}");
        } else if t > cutover {
            assert_eq!(versions, ["v2"], "slot {t}");
        }
    }
}

#[test]
fn an_old_version_answering_during_cooldown_fails_the_expected_version() {
    // Back to v1 at 2.4 s: after the step (1 s .. 2 s), during the cooldown.
    let server = switching(Some(Duration::from_millis(2400)));
    let url = server.url();
    let (code, _, _, json) = run_json_with_command(
        &rollout_args(
            &url,
            &[
                "--version-regex",
                r#""version":"([^"]+)""#,
                "--expect-version",
                "v2",
            ],
        ),
        &["sleep", "1"],
    );
    assert_eq!(code, 1, "{}", at(&json, "/verdict/line"));
    assert_eq!(u64_at(&json, "/requests/failed"), 0, "no request failed");
    let reasons = at(&json, "/verdict/reasons").as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    let reason = reasons[0].as_str().unwrap();
    assert!(
        reason.starts_with("version v1 answered ") && reason.contains("after the last step ended"),
        "{reason}"
    );
    assert!(reason.ends_with("expected only v2"), "{reason}");
    // The cutover is the last time v1 answered: in the cooldown.
    assert!(f64_at(&json, "/cutover_ms") > 2300.0);
}

/// The keys of a JSON object, recursively for the nested objects named in `nested`.
fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The browser of the tests marked `#[ignore = "needs chromium"]`: `chromium` (or
/// `chromium-browser`, `google-chrome`), the first that runs; fails the test when none does.
fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "this test needs chromium, which is not installed (it is ignored by a plain \
             `cargo test`; .ci/run installs chromium and runs it with --include-ignored)",
        )
}

/// Takes a screenshot of `page` in headless `browser` at `size` (`WIDTH,HEIGHT`) into `png`,
/// and checks that something was drawn (more than 10 kB of PNG).
fn screenshot(browser: &str, page: &Path, png: &Path, size: &str) {
    let _ = std::fs::remove_file(png);
    let shot = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg("--disable-background-networking")
        .arg(format!("--window-size={size}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let size = std::fs::metadata(png).map_or(0, |m| m.len());
    assert!(
        size > 10_000,
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
}

#[test]
fn every_report_format_from_one_run_and_from_the_saved_result() {
    let _machine = support::shared();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reports");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name).display().to_string();
    let summary = TempFile::new("md");
    let scenario = format!(
        "{}/scenarios/demo-recreate.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = Command::new(GAPLESS)
        .args([
            "run",
            "--scenario",
            &scenario,
            "--quiet",
            "--version-header",
            "x-version",
        ])
        .args(["--slot", "100ms"])
        .args([
            "--json",
            &file("result.json"),
            "--html",
            &file("report.html"),
        ])
        .args([
            "--markdown",
            &file("summary.md"),
            "--junit",
            &file("junit.xml"),
        ])
        .args(["--fortio-json", &file("fortio.json")])
        .env("GITHUB_STEP_SUMMARY", summary.path())
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let json: Value = serde_json::from_str(&read("result.json")).unwrap();
    let line = at(&json, "/verdict/line").as_str().unwrap().to_string();

    // HTML: self-contained, the verdict on top, then rendered by a real browser.
    let html = read("report.html");
    for fetch in ["src=", "href=", "url(", "@import", "<link", "<script"] {
        assert!(
            !html.contains(fetch),
            "the page must not fetch anything: {fetch}"
        );
    }
    assert!(html.contains(&line.replace('"', "&quot;")));
    assert!(html.contains("recreate with v2"));
    // Rendered by a real browser: the_html_report_renders_in_chromium.

    // Markdown, also appended to the CI job summary.
    let markdown = read("summary.md");
    assert!(markdown.starts_with("## gapless: FAIL (exit 1)"));
    assert!(markdown.contains("| gap |"));
    assert_eq!(std::fs::read_to_string(summary.path()).unwrap(), markdown);

    // JUnit: valid XML, one case per criterion.
    let junit = read("junit.xml");
    let doc = roxmltree::Document::parse(&junit).expect("JUnit XML parses");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases.iter().filter_map(|c| c.attribute("name")).collect();
    assert_eq!(
        names,
        [
            "requests kept",
            "failure ratio",
            "availability gap",
            "no stall",
            "p99 latency",
            "version",
            "rollout steps",
            "healthy before the rollout",
            "requests sent",
            "run completed"
        ]
    );
    let failed: Vec<&str> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .filter_map(|c| c.attribute("name"))
        .collect();
    assert_eq!(failed, ["requests kept", "availability gap"]);

    // Fortio: every key of Fortio's own results.
    let fortio: Value = serde_json::from_str(&read("fortio.json")).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fortio");
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        for key in keys(&reference) {
            assert!(fortio.get(&key).is_some(), "Fortio key {key} missing");
        }
        for nested in ["DurationHistogram", "ErrorsDurationHistogram"] {
            for key in keys(&reference[nested]) {
                if key != "Percentiles" || nested == "DurationHistogram" {
                    assert!(fortio[nested].get(&key).is_some(), "{nested}.{key} missing");
                }
            }
        }
    }
    let codes: u64 = fortio["RetCodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(codes, u64_at(&json, "/requests/total"));
    assert_eq!(
        fortio["DurationHistogram"]["Count"],
        json["latency_ms"]["count"]
    );

    // `gapless report` renders the saved result exactly as the run did, with the same exit code.
    for (flag, name) in [
        ("--markdown", "summary.md"),
        ("--junit", "junit.xml"),
        ("--html", "report.html"),
        ("--fortio-json", "fortio.json"),
        ("--json", "result.json"),
    ] {
        let again = Command::new(GAPLESS)
            .args(["report", &file("result.json"), flag, "-"])
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(1));
        assert_eq!(
            String::from_utf8(again.stdout).unwrap(),
            read(name),
            "{flag}"
        );
    }
}

/// A saved result judged again with looser thresholds, through the same verdict function: the
/// exit code and every report follow the new verdict; the same thresholds give the same verdict.
#[test]
fn a_saved_result_is_judged_again_with_other_thresholds() {
    let server = TestServer::http(|info| {
        if (20..25).contains(&info.index) {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let saved = TempFile::new("json");
    let (code, _, _, _) = run_gapless(&[
        "run",
        &server.url(),
        "-q",
        "100",
        "-d",
        "1s",
        "-c",
        "1",
        "--quiet",
        "--json",
        saved.as_str(),
    ]);
    assert_eq!(code, 1, "5 of 100 failed, no threshold given");
    let report = |extra: &[&str]| {
        let junit = TempFile::new("xml");
        let json = TempFile::new("json");
        let out = Command::new(GAPLESS)
            .args(["report", saved.as_str(), "--junit", junit.as_str()])
            .args(["--json", json.as_str()])
            .args(extra)
            .output()
            .unwrap();
        let judged: Value =
            serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
        let xml = std::fs::read_to_string(junit.path()).unwrap();
        (out.status.code(), judged, xml)
    };
    // Its own thresholds: the same verdict.
    let (code, same, _) = report(&[]);
    assert_eq!(code, Some(1));
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(saved.path()).unwrap()).unwrap();
    assert_eq!(same["verdict"], original["verdict"]);
    // Looser: a ratio alone replaces the default count and gap limits.
    let (code, loose, xml) = report(&["--max-failure-ratio", "0.1"]);
    assert_eq!(code, Some(0), "{}", loose["verdict"]["line"]);
    assert_eq!(
        loose["verdict"]["line"],
        "PASS: 5 of 100 requests failed (503: 5), within the thresholds"
    );
    let ratio = loose["verdict"]["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "max_failure_ratio")
        .unwrap()
        .clone();
    assert_eq!(ratio["source"], "--max-failure-ratio");
    assert_eq!(ratio["limit"], 0.1);
    assert_eq!(ratio["measured"], 0.05);
    assert!(xml.contains(r#"failures="0""#), "{xml}");
    // Stricter again: a count below what failed.
    let (code, strict, _) = report(&["--max-failures", "4"]);
    assert_eq!(code, Some(1));
    assert!(
        strict["verdict"]["line"]
            .as_str()
            .unwrap()
            .starts_with("FAIL: 5 of 100 requests failed (503: 5) in 1 window"),
        "{}",
        strict["verdict"]["line"]
    );
    // Windows are found while the load runs: they cannot be re-shaped afterwards.
    let out = Command::new(GAPLESS)
        .args(["report", saved.as_str(), "--merge-gap", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn secrets_never_reach_a_report() {
    let _machine = support::shared();
    let server = TestServer::healthy();
    let scenario = TempFile::with(
        "toml",
        &format!(
            r#"
[target]
url = "{}"
headers = {{ Authorization = "Bearer ${{GAPLESS_TEST_SECRET}}", X-Custom = "custom-secret-2", "Cookie" = 'session=cookie-secret-3' }}

[load]
qps = 100
warmup = "300ms"
cooldown = "300ms"

[[step]]
name = "echo"
run = "echo 'X-Api-Key: step-secret-5'; echo done"
"#,
            server.url()
        ),
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name).display().to_string();
    let output = Command::new(GAPLESS)
        .args(["run", "--scenario", scenario.as_str()])
        .args(["-H", "X-Api-Key: apikey-secret-4", "--redact", "x-custom"])
        .args(["--json", &file("r.json"), "--html", &file("r.html")])
        .args(["--markdown", &file("r.md"), "--junit", &file("r.xml")])
        .args(["--fortio-json", &file("f.json")])
        .env("GAPLESS_TEST_SECRET", "env-secret-1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let secrets = [
        "env-secret-1",
        "custom-secret-2",
        "cookie-secret-3",
        "apikey-secret-4",
        "step-secret-5",
    ];
    let mut reports = vec![("stdout".to_string(), stdout)];
    for name in ["r.json", "r.html", "r.md", "r.xml", "f.json"] {
        reports.push((
            name.to_string(),
            std::fs::read_to_string(dir.join(name)).unwrap(),
        ));
    }
    for (name, text) in &reports {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked into {name}");
        }
    }
    let json: Value = serde_json::from_str(&reports[1].1).unwrap();
    let command_line = at(&json, "/command_line").to_string();
    assert!(
        command_line.contains("X-Api-Key: <redacted>"),
        "{command_line}"
    );
    let text = at(&json, "/scenario/text").as_str().unwrap();
    assert!(text.contains(r#"Authorization = "<redacted>""#), "{text}");
    assert!(text.contains(r#"X-Custom = "<redacted>""#), "{text}");
    assert_eq!(at(&json, "/steps/0/output_tail/0"), "X-Api-Key: <redacted>");
}

#[test]
fn gapless_report_prints_the_text_report_the_run_printed_with_events_and_timed_tails() {
    let _machine = support::shared();
    let server = TestServer::healthy();
    let scenario = TempFile::with(
        "toml",
        &format!(
            r#"
[target]
url = "{}"

[load]
qps = 100
warmup = "300ms"
cooldown = "300ms"

[[step]]
name = "watch"
run = "echo pod-a Running; sleep 0.2; echo pod-b Terminating; sleep 30"
background = true

[[step]]
name = "flip"
run = "sleep 0.4; echo about to fail; exit 7"
"#,
            server.url()
        ),
    );
    let json = TempFile::new("json");
    let (code, live, stderr, _) = Run::scenario(scenario.as_str())
        .opt("--json", json.as_str())
        .output();
    assert_eq!(code, 3, "the step failed:\n{live}\n{stderr}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();

    // The events, each with its time, in the text.
    let events = at(&saved, "/events").as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(live.contains("Events : 2 on the timeline"), "{live}");
    for (e, line) in events.iter().zip(["pod-a Running", "pod-b Terminating"]) {
        let listed = format!("  +{:.3}s [watch] {line}\n", f64_at(e, "/t_ms") / 1000.0);
        assert!(live.contains(&listed), "{listed:?} not in\n{live}");
    }
    // The failed step's output tail, each line with the time it was read, in the JSON and the
    // text; the line came 0.4 s into the step.
    let flip = &at(&saved, "/steps").as_array().unwrap()[1];
    assert_eq!(
        at(flip, "/output_tail"),
        &serde_json::json!(["about to fail"])
    );
    let read = at(flip, "/output_tail_ms").as_array().unwrap();
    assert_eq!(read.len(), 1);
    let t = read[0].as_f64().unwrap();
    assert!(
        t >= f64_at(flip, "/start_ms") + 390.0 && t <= f64_at(flip, "/end_ms"),
        "read at {t} ms, step {flip}"
    );
    let tail = format!("  last output:\n  +{:.3}s about to fail\n", t / 1000.0);
    assert!(live.contains(&tail), "{tail:?} not in\n{live}");
    let watch = &at(&saved, "/steps").as_array().unwrap()[0];
    assert_eq!(
        at(watch, "/output_tail_ms").as_array().unwrap().len(),
        2,
        "a watcher's tail lines carry times too"
    );

    // `gapless report` alone prints the same text, and exits with the saved code.
    let again = Command::new(GAPLESS)
        .args(["report", json.as_str()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(3));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), live);
}

/// The HTML report of the run above (the same scenario and flags), rendered by a real browser.
#[test]
#[ignore = "needs chromium"]
fn the_html_report_renders_in_chromium() {
    let browser = chromium();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reports-chromium");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = format!(
        "{}/scenarios/demo-recreate.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let page = dir.join("report.html");
    let (code, _, stderr, _) = Run::scenario(&scenario)
        .quiet()
        .opt("--version-header", "x-version")
        .opt("--slot", "100ms")
        .opt("--html", page.to_str().unwrap())
        .output();
    assert_eq!(code, 1, "{stderr}");
    let png = dir.join("report.png");
    screenshot(browser, &page, &png, "1040,2400");
    println!("screenshot of the HTML report: {}", png.display());
}

/// Renders `html` in headless Chromium with a script that measures the labels of the timeline
/// (`svg text.label`): `(labels, overlapping pairs, labels past the chart's edge)`. The script is
/// added to a copy of the page only: the report itself has none.
fn measure_labels(browser: &str, html: &str, dir: &Path) -> (u64, u64, u64) {
    let script = r#"<script>
const boxes = [...document.querySelectorAll('svg text.label')].map(t => t.getBoundingClientRect());
let overlaps = 0;
for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
  const a = boxes[i], b = boxes[j];
  if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) overlaps++;
}
const svg = document.querySelector('svg').getBoundingClientRect();
const outside = boxes.filter(r => r.right > svg.right + 0.5 || r.left < svg.left - 0.5).length;
const pre = document.createElement('pre');
pre.id = 'layout';
pre.textContent = `labels=${boxes.length} overlaps=${overlaps} outside=${outside}`;
document.body.appendChild(pre);
</script></body>"#;
    let page = dir.join("measure.html");
    std::fs::write(&page, html.replace("</body>", script)).unwrap();
    let dom = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg("--disable-background-networking")
        .arg("--window-size=1040,1200")
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    let line = dom
        .split("<pre id=\"layout\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no layout line in the DOM:\n{dom}"));
    let value = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {line:?}"))
    };
    (value("labels"), value("overlaps"), value("outside"))
}

#[test]
fn a_short_rollout_is_drawn_in_slots_sized_to_it_with_its_windows_and_events_labelled() {
    // The demo rollout: about 5 s, three windows of about 170 ms, nine orchestration events.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("short-rollout");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = format!(
        "{}/scenarios/demo-rolling-no-drain.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let html_path = dir.join("report.html");
    let (code, _, stderr, json) = Run::scenario(&scenario)
        .quiet()
        .opt("--html", html_path.to_str().unwrap())
        .output();
    let json = json.unwrap_or_else(|| panic!("no JSON result:\n{stderr}"));
    assert_eq!(code, 1, "{}", at(&json, "/verdict/line"));

    // No --slot: 2 s warmup + 2 s cooldown sized the slots at 20 ms, doubled to 40 ms if the
    // rollout made the run pass 300 slots; either way 100 to 300 slots.
    let slot = f64_at(&json, "/load/slot_ms");
    assert!(slot == 20.0 || slot == 40.0, "slot {slot} ms");
    assert!(at(&json, "/load/slot_requested_ms").is_null());
    let slots = at(&json, "/timeline").as_array().unwrap().len();
    assert!((100..=300).contains(&slots), "{slots} slots");
    let windows = at(&json, "/windows").as_array().unwrap();
    assert_eq!(windows.len(), 3, "{windows:?}");
    for w in windows {
        // Each window spans several slots, so the chart shows it as a window, not one red cap.
        assert!(f64_at(w, "/duration_ms") >= 2.0 * slot, "{w}");
    }

    let html = std::fs::read_to_string(&html_path).unwrap();
    // The three partial windows are shaded (none of them is a gap: 2 of 3 replicas answered).
    assert_eq!(u64_at(&json, "/gaps_total"), 0);
    assert_eq!(
        html.matches(r##"fill="#c0392b" fill-opacity="0.12" stroke="#c0392b""##)
            .count(),
        3
    );
    // The events are labelled on the page, not only in tooltips.
    let events = at(&json, "/events").as_array().unwrap();
    assert_eq!(events.len(), 9);
    assert!(html.contains("v1-0 killed"), "an event label");
    assert!(html.contains(r#"class="label""#));
    // As a browser lays it out: a_short_rollout_s_labels_neither_overlap_nor_overflow_in_chromium.
}

/// The HTML report of the short rollout above, laid out by a real browser: every label drawn,
/// none overlapping, none cut off.
#[test]
#[ignore = "needs chromium"]
fn a_short_rollout_s_labels_neither_overlap_nor_overflow_in_chromium() {
    let browser = chromium();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("short-rollout-chromium");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = format!(
        "{}/scenarios/demo-rolling-no-drain.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let html_path = dir.join("report.html");
    let (code, _, stderr, _) = Run::scenario(&scenario)
        .quiet()
        .opt("--html", html_path.to_str().unwrap())
        .output();
    assert_eq!(code, 1, "{stderr}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    let png = dir.join("report.png");
    screenshot(browser, &html_path, &png, "1040,700");
    println!("screenshot of the short rollout: {}", png.display());
    let (labels, overlaps, outside) = measure_labels(browser, &html, &dir);
    assert!(labels >= 4, "the step and the events: {labels} labels");
    assert_eq!((overlaps, outside), (0, 0), "{labels} labels");
}
