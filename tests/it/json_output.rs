//! The JSON result (`--json`): every documented field is present with its type, the timeline
//! has one slot per `--slot` of the run and adds up to the totals (at most 2,048 slots, merged
//! as the run grows; sized to the run without `--slot`), and `--json -` puts the JSON alone on
//! stdout with the text report on stderr.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::support;
use crate::support::{Run, TestServer, at, f64_at, u64_at};
use serde_json::Value;

/// The JSON type a field must have.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// An unsigned integer.
    Count,
    /// Any number (integers and fractions).
    Number,
    /// A number or `null`.
    NumberOrNull,
    Bool,
    Str,
    Object,
    Array,
}

fn assert_kind(json: &Value, pointer: &str, kind: Kind) {
    let value = at(json, pointer);
    let ok = match kind {
        Kind::Count => value.is_u64(),
        Kind::Number => value.is_number(),
        Kind::NumberOrNull => value.is_number() || value.is_null(),
        Kind::Bool => value.is_boolean(),
        Kind::Str => value.is_string(),
        Kind::Object => value.is_object(),
        Kind::Array => value.is_array(),
    };
    assert!(ok, "{pointer} should be {kind:?}, is {value}");
}

const LATENCY_FIELDS: [(&str, Kind); 10] = [
    ("count", Kind::Count),
    ("min", Kind::Number),
    ("mean", Kind::Number),
    ("stddev", Kind::Number),
    ("p50", Kind::Number),
    ("p75", Kind::Number),
    ("p90", Kind::Number),
    ("p99", Kind::Number),
    ("p99_9", Kind::Number),
    ("max", Kind::Number),
];

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .expect("the clock is after 1970")
}

#[test]
fn every_documented_field_is_present_with_its_type() {
    let server = TestServer::healthy();
    let before = now_unix_ms();
    let (code, json) = Run::new(&server.url())
        .qps(100)
        .duration("2s")
        .connections(3)
        .opt("--slot", "500ms")
        .json();
    let after = now_unix_ms();
    assert_eq!(code, 0);

    let top = [
        ("/schema_version", Kind::Count),
        ("/gapless_version", Kind::Str),
        ("/started_at", Kind::Str),
        ("/started_at_unix_ms", Kind::Count),
        ("/elapsed_ms", Kind::Number),
        ("/actual_qps", Kind::Number),
        ("/interrupted", Kind::Bool),
        ("/target", Kind::Object),
        ("/target/url", Kind::Str),
        ("/target/method", Kind::Str),
        ("/target/http2", Kind::Bool),
        ("/load", Kind::Object),
        ("/load/qps", Kind::NumberOrNull),
        ("/load/connections", Kind::Count),
        ("/load/duration_ms", Kind::Number),
        ("/load/timeout_ms", Kind::Number),
        ("/load/slot_ms", Kind::Number),
        ("/load/slot_requested_ms", Kind::NumberOrNull),
        ("/load/ok_codes", Kind::Str),
        ("/requests", Kind::Object),
        ("/requests/total", Kind::Count),
        ("/requests/ok", Kind::Count),
        ("/requests/failed", Kind::Count),
        ("/requests/late", Kind::Count),
        ("/requests/unsent", Kind::Count),
        ("/requests/interrupted", Kind::Count),
        ("/codes", Kind::Object),
        ("/errors", Kind::Object),
        ("/errors_by_connection", Kind::Object),
        ("/latency_ms", Kind::Object),
        ("/service_time_ms", Kind::Object),
        ("/lateness_ms", Kind::Object),
        ("/connections", Kind::Object),
        ("/connections/opened", Kind::Count),
        ("/connections/connect_failures", Kind::Count),
        ("/connections/failed_on_new_connections", Kind::Count),
        ("/connections/failed_on_reused_connections", Kind::Count),
        ("/timeline", Kind::Array),
        ("/verdict", Kind::Object),
        ("/verdict/passed", Kind::Bool),
        ("/verdict/exit_code", Kind::Count),
        ("/verdict/reasons", Kind::Array),
    ];
    for (pointer, kind) in top {
        assert_kind(&json, pointer, kind);
    }
    for histogram in ["latency_ms", "service_time_ms", "lateness_ms"] {
        for (field, kind) in LATENCY_FIELDS {
            assert_kind(&json, &format!("/{histogram}/{field}"), kind);
        }
    }

    // Values that follow from the command line.
    assert_eq!(u64_at(&json, "/schema_version"), 1);
    assert_eq!(at(&json, "/gapless_version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(at(&json, "/interrupted"), false);
    assert_eq!(at(&json, "/target/url"), server.url().as_str());
    assert_eq!(at(&json, "/target/method"), "GET");
    assert_eq!(at(&json, "/target/http2"), false);
    assert_eq!(f64_at(&json, "/load/qps"), 100.0);
    assert_eq!(u64_at(&json, "/load/connections"), 3);
    assert_eq!(f64_at(&json, "/load/duration_ms"), 2000.0);
    assert_eq!(f64_at(&json, "/load/timeout_ms"), 3000.0);
    assert_eq!(f64_at(&json, "/load/slot_ms"), 500.0);
    assert_eq!(f64_at(&json, "/load/slot_requested_ms"), 500.0);
    assert_eq!(at(&json, "/load/ok_codes"), "200-299");
    assert_eq!(at(&json, "/verdict/passed"), true);
    assert_eq!(u64_at(&json, "/verdict/exit_code"), 0);
    assert_eq!(at(&json, "/verdict/reasons"), &Value::Array(vec![]));
    assert_eq!(at(&json, "/codes"), &serde_json::json!({"200": 200}));
    assert_eq!(at(&json, "/errors"), &serde_json::json!({}));
    assert_eq!(at(&json, "/errors_by_connection"), &serde_json::json!({}));

    // Times: the wall-clock start lies within the run, and the run lasted about 2 s.
    let started = u64_at(&json, "/started_at_unix_ms");
    assert!(
        (before..=after).contains(&started),
        "started_at_unix_ms {started} is not between {before} and {after}"
    );
    let started_at = at(&json, "/started_at")
        .as_str()
        .expect("started_at is a string");
    let rfc3339 = started_at.len() == 24
        && started_at.as_bytes()[4] == b'-'
        && started_at.as_bytes()[10] == b'T'
        && started_at.ends_with('Z');
    assert!(
        rfc3339,
        "started_at {started_at:?} is not RFC 3339 UTC with milliseconds"
    );
    let elapsed = f64_at(&json, "/elapsed_ms");
    assert!(
        (1980.0..4000.0).contains(&elapsed),
        "elapsed_ms {elapsed} for a 2 s run"
    );
    let actual_qps = f64_at(&json, "/actual_qps");
    assert!(
        (50.0..=101.0).contains(&actual_qps),
        "actual_qps {actual_qps} for 200 requests in about 2 s"
    );
    assert_eq!(u64_at(&json, "/latency_ms/count"), 200);
    assert_eq!(u64_at(&json, "/service_time_ms/count"), 200);
    assert_eq!(u64_at(&json, "/lateness_ms/count"), 200);
    assert!(f64_at(&json, "/latency_ms/min") <= f64_at(&json, "/latency_ms/p50"));
    assert!(f64_at(&json, "/latency_ms/p50") <= f64_at(&json, "/latency_ms/max"));

    // The timeline: 2 s in 500 ms slots is 4 slots of exactly 50 requests each (by due time).
    let timeline = at(&json, "/timeline")
        .as_array()
        .expect("timeline is an array");
    assert_eq!(timeline.len(), 4, "2 s / 500 ms");
    let mut sum = 0;
    for (i, slot) in timeline.iter().enumerate() {
        let field = |name: &str| format!("/timeline/{i}/{name}");
        for (name, kind) in [
            ("t_ms", Kind::Number),
            ("ok", Kind::Count),
            ("failed", Kind::Count),
            ("codes", Kind::Object),
            ("errors", Kind::Object),
            ("p50_ms", Kind::NumberOrNull),
            ("p99_ms", Kind::NumberOrNull),
        ] {
            assert_kind(&json, &field(name), kind);
        }
        assert_eq!(f64_at(&json, &field("t_ms")), 500.0 * i as f64);
        assert_eq!(u64_at(&json, &field("ok")), 50, "slot {i}: {slot}");
        assert_eq!(u64_at(&json, &field("failed")), 0, "slot {i}: {slot}");
        assert_eq!(at(&json, &field("codes")), &serde_json::json!({"200": 50}));
        assert!(
            at(&json, &field("p50_ms")).is_number(),
            "slot {i} had responses"
        );
        sum += u64_at(&json, &field("ok")) + u64_at(&json, &field("failed"));
    }
    assert_eq!(sum, u64_at(&json, "/requests/total"));
    assert_eq!(sum, 200);
}

#[test]
fn error_entries_have_their_documented_shape() {
    // A refused port gives transport errors, so `errors` and `errors_by_connection` have entries.
    let url = format!("http://127.0.0.1:{}/", support::refused_port());
    let (code, json) = Run::new(&url)
        .qps(20)
        .duration("1s")
        .connections(2)
        .opt("--slot", "250ms")
        .json();

    assert_eq!(code, 1);
    assert_eq!(
        at(&json, "/errors"),
        &serde_json::json!({"connect_refused": 20})
    );
    assert_eq!(
        at(&json, "/errors_by_connection"),
        &serde_json::json!({"connect_refused": {"new": 20, "reused": 0}})
    );
    let timeline = at(&json, "/timeline")
        .as_array()
        .expect("timeline is an array");
    assert_eq!(timeline.len(), 4, "1 s / 250 ms");
    for (i, slot) in timeline.iter().enumerate() {
        assert_eq!(
            slot,
            &serde_json::json!({
                "t_ms": 250.0 * i as f64,
                "ok": 0,
                "failed": 5,
                "codes": {},
                "errors": {"connect_refused": 5},
                "p50_ms": null,
                "p99_ms": null,
                "versions": {},
            }),
            "slot {i}: no responses, 5 refused connects"
        );
    }
    assert_eq!(at(&json, "/verdict/passed"), false);
    assert_eq!(u64_at(&json, "/verdict/exit_code"), 1);
    let reasons = at(&json, "/verdict/reasons")
        .as_array()
        .expect("reasons is an array");
    assert!(!reasons.is_empty() && reasons.iter().all(Value::is_string));
}

#[test]
fn json_to_stdout_moves_the_text_report_to_stderr() {
    let server = TestServer::healthy();
    let (code, stdout, stderr, json) = Run::new(&server.url())
        .qps(50)
        .duration("1s")
        .connections(2)
        .opt("--json", "-")
        .output();

    assert_eq!(code, 0, "stderr:\n{stderr}");
    assert!(json.is_none(), "no file was asked for");
    let parsed: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout should be one JSON document ({e}):\n{stdout}"));
    assert_eq!(u64_at(&parsed, "/requests/total"), 50);
    assert_eq!(u64_at(&parsed, "/requests/ok"), 50);
    assert!(
        stderr.contains("PASS"),
        "the text report (with the verdict) should be on stderr:\n{stderr}"
    );
}

/// `(slot_ms, slot_requested_ms, slots, sum of the slots' ok + failed)` of a result.
fn timeline_shape(json: &Value) -> (f64, Option<f64>, usize, u64) {
    let timeline = at(json, "/timeline")
        .as_array()
        .expect("timeline is an array");
    let sum = timeline
        .iter()
        .map(|s| u64_at(s, "/ok") + u64_at(s, "/failed"))
        .sum();
    (
        f64_at(json, "/load/slot_ms"),
        at(json, "/load/slot_requested_ms").as_f64(),
        timeline.len(),
        sum,
    )
}

#[test]
fn a_long_run_in_narrow_slots_keeps_at_most_2048_slots_and_every_request() {
    // 30 s in 10 ms slots would be 3,000 slots: past 2,048, pairs merge into 20 ms slots.
    let server = TestServer::healthy();
    let (code, json) = Run::new(&server.url())
        .qps(20)
        .duration("30s")
        .connections(2)
        .opt("--slot", "10ms")
        .json();
    assert_eq!(code, 0, "{}", at(&json, "/verdict/line"));
    let total = u64_at(&json, "/requests/total");
    assert_eq!(total, 600);
    let (slot, requested, slots, sum) = timeline_shape(&json);
    assert_eq!((slot, requested), (20.0, Some(10.0)));
    assert_eq!(slots, 1500, "30 s in 20 ms slots");
    assert_eq!(sum, total);
    // One request every 50 ms: each 20 ms slot holds one or none, by its due time.
    for (i, s) in at(&json, "/timeline")
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(f64_at(s, "/t_ms"), 20.0 * i as f64);
        let due = (0..600).filter(|k| (k * 50 / 20) as usize == i).count() as u64;
        assert_eq!(u64_at(s, "/ok"), due, "slot {i}");
    }
}

#[test]
fn without_slot_the_width_is_sized_to_the_run() {
    let server = TestServer::healthy();
    // 5 s without steps: 20 ms slots, 250 of them.
    let (code, json) = Run::new(&server.url())
        .qps(100)
        .duration("5s")
        .connections(2)
        .json();
    assert_eq!(code, 0, "{}", at(&json, "/verdict/line"));
    let (slot, requested, slots, sum) = timeline_shape(&json);
    assert_eq!((slot, requested, slots), (20.0, None, 250));
    assert_eq!(sum, 500);
}
