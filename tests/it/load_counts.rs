//! Request and status-code counts are exact: a paced run makes exactly `ceil(qps × duration)`
//! attempts, each reaches the server exactly once, and every status is counted where it belongs.

use crate::support::{Reply, Run, TestServer, at, counts, counts_at, u64_at};

/// Every 4th request the server receives (indices 3, 7, 11, ...) gets a 503.
fn every_fourth_503() -> TestServer {
    TestServer::http(|r| {
        if r.index % 4 == 3 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
}

#[test]
fn healthy_run_makes_exactly_qps_times_duration_requests() {
    let server = TestServer::healthy();
    let (code, stdout, stderr, json) = Run::new(&server.url())
        .qps(200)
        .duration("2s")
        .connections(4)
        .output();
    let json =
        json.unwrap_or_else(|| panic!("no JSON result\nstdout:\n{stdout}\nstderr:\n{stderr}"));

    assert_eq!(code, 0, "stderr:\n{stderr}");
    assert_eq!(u64_at(&json, "/requests/total"), 400);
    assert_eq!(u64_at(&json, "/requests/ok"), 400);
    assert_eq!(u64_at(&json, "/requests/failed"), 0);
    assert_eq!(u64_at(&json, "/requests/unsent"), 0);
    assert_eq!(u64_at(&json, "/requests/interrupted"), 0);
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", 400)]));
    assert_eq!(counts_at(&json, "/errors"), counts(&[]));
    assert_eq!(at(&json, "/verdict/passed"), true);
    assert_eq!(u64_at(&json, "/verdict/exit_code"), 0);
    // No retries, no extra probes: the server saw exactly the attempts gapless counted.
    assert_eq!(server.stats().requests(), 400);
    // The text report goes to stdout when the JSON goes to a file.
    assert!(
        stdout.contains("PASS"),
        "the text report should end with the verdict:\n{stdout}"
    );
}

#[test]
fn status_codes_are_counted_exactly_and_fail_the_run() {
    let server = every_fourth_503();
    let (code, json) = Run::new(&server.url())
        .qps(200)
        .duration("2s")
        .connections(4)
        .json();

    assert_eq!(code, 1);
    assert_eq!(u64_at(&json, "/requests/total"), 400);
    assert_eq!(
        counts_at(&json, "/codes"),
        counts(&[("200", 300), ("503", 100)])
    );
    assert_eq!(u64_at(&json, "/requests/ok"), 300);
    assert_eq!(u64_at(&json, "/requests/failed"), 100);
    assert_eq!(
        counts_at(&json, "/errors"),
        counts(&[]),
        "a 503 is not a transport error"
    );
    assert_eq!(at(&json, "/verdict/passed"), false);
    assert_eq!(u64_at(&json, "/verdict/exit_code"), 1);
    let reasons = at(&json, "/verdict/reasons").to_string();
    assert!(
        reasons.contains("100 of 400") && reasons.contains("503: 100"),
        "the verdict should say what failed: {reasons}"
    );
    // Responses with a bad status still have a latency: all 400 are in the histogram.
    assert_eq!(u64_at(&json, "/latency_ms/count"), 400);
    assert_eq!(server.stats().requests(), 400);
}

#[test]
fn ok_codes_turn_a_status_into_a_success() {
    let server = every_fourth_503();
    let (code, json) = Run::new(&server.url())
        .qps(200)
        .duration("2s")
        .connections(4)
        .opt("--ok-codes", "200-299,503")
        .json();

    assert_eq!(code, 0);
    assert_eq!(u64_at(&json, "/requests/total"), 400);
    assert_eq!(
        counts_at(&json, "/codes"),
        counts(&[("200", 300), ("503", 100)])
    );
    assert_eq!(u64_at(&json, "/requests/ok"), 400);
    assert_eq!(u64_at(&json, "/requests/failed"), 0);
    assert_eq!(at(&json, "/load/ok_codes"), "200-299,503");
    assert_eq!(at(&json, "/verdict/passed"), true);
    assert_eq!(u64_at(&json, "/verdict/exit_code"), 0);
}

#[test]
fn fractional_rate_rounds_the_count_up() {
    // 7 qps for 1.5 s: requests are due at 0, 1/7, ..., 10/7 s; 10/7 s < 1.5 s, so 11 requests.
    let server = TestServer::healthy();
    let (code, json) = Run::new(&server.url())
        .qps(7)
        .duration("1500ms")
        .connections(2)
        .json();

    assert_eq!(code, 0);
    assert_eq!(u64_at(&json, "/requests/total"), 11);
    assert_eq!(u64_at(&json, "/requests/ok"), 11);
    assert_eq!(server.stats().requests(), 11);
}

#[test]
fn sharded_engine_keeps_the_count_exact() {
    // Two engine threads split the schedule between them; together they still make 400.
    let server = TestServer::healthy();
    let (code, json) = Run::new(&server.url())
        .qps(200)
        .duration("2s")
        .connections(4)
        .opt("--threads", "2")
        .json();

    assert_eq!(code, 0);
    assert_eq!(u64_at(&json, "/requests/total"), 400);
    assert_eq!(u64_at(&json, "/requests/ok"), 400);
    assert_eq!(server.stats().requests(), 400);
}
