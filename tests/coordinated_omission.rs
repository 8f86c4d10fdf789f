//! Coordinated omission: when the target stalls, the requests that queue up behind the stall are
//! charged the time they waited. Latency is measured from each request's intended send time, so
//! one 1 s stall on a single connection shows in the latency percentiles, while the service time
//! (from the actual send) shows only the one slow response.

mod support;

use std::time::Duration;

use support::{Reply, TestServer, counts, counts_at, f64_at, run_json, u64_at};

/// The request the server stalls on: at 100 qps over one connection, the 51st request to arrive
/// is request 50, due 0.5 s into the run.
const STALLED: u64 = 50;

#[test]
fn a_stall_shows_in_corrected_latency_but_not_in_service_time() {
    let server = TestServer::http(|r| {
        if r.index == STALLED {
            Reply::ok().delayed(Duration::from_secs(1))
        } else {
            Reply::ok()
        }
    });
    let (code, json) = run_json(&[
        "run",
        &server.url(),
        "-q",
        "100",
        "-d",
        "3s",
        "-c",
        "1",
        "--timeout",
        "5s",
    ]);

    assert_eq!(
        code, 0,
        "a stall within the timeout is not a failure: {json:#}"
    );
    assert_eq!(u64_at(&json, "/requests/total"), 300);
    assert_eq!(u64_at(&json, "/requests/failed"), 0);
    assert_eq!(u64_at(&json, "/requests/unsent"), 0);
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", 300)]));
    assert_eq!(server.stats().requests(), 300);
    assert_eq!(u64_at(&json, "/latency_ms/count"), 300);
    assert_eq!(u64_at(&json, "/service_time_ms/count"), 300);

    // Requests 51..=149 were due during the stall (0.51 s to 1.49 s) and waited behind it: their
    // corrected latencies run from about 990 ms down to 10 ms, so the top 1 % is near 1 s.
    let latency_p99 = f64_at(&json, "/latency_ms/p99");
    let latency_max = f64_at(&json, "/latency_ms/max");
    assert!(
        latency_p99 >= 500.0,
        "corrected p99 {latency_p99} ms should reflect the 1 s stall"
    );
    assert!(
        latency_max >= 950.0,
        "corrected max {latency_max} ms should include the stalled request"
    );

    // Only request 50 itself took long once sent: 1 of 300 samples is above the 99th percentile.
    let service_p99 = f64_at(&json, "/service_time_ms/p99");
    let service_max = f64_at(&json, "/service_time_ms/max");
    assert!(
        service_p99 < 100.0,
        "service-time p99 {service_p99} ms should not show the single stall"
    );
    assert!(
        service_max >= 950.0,
        "service-time max {service_max} ms should be the stalled response"
    );

    // Those 99 queued requests were each sent at least 10 ms after they were due.
    let late = u64_at(&json, "/requests/late");
    assert!(
        late >= 99,
        "{late} late requests; at least 99 queued behind the stall"
    );
    let lateness_max = f64_at(&json, "/lateness_ms/max");
    assert!(
        lateness_max >= 950.0,
        "request 51 was sent about 990 ms late, max lateness is {lateness_max} ms"
    );
}

#[test]
fn the_deadline_counts_from_the_intended_send_time() {
    // Every answer takes 300 ms; requests are due every 100 ms on one connection, so each waits
    // 200 ms longer than the one before: latencies from the intended send time would be 300,
    // 500, 700, ... ms. With a 600 ms timeout counted from the intended send time, requests 0 and
    // 1 succeed and every later one times out, although no answer takes 600 ms once sent.
    let server = TestServer::http(|_| Reply::ok().delayed(Duration::from_millis(300)));
    let (code, json) = run_json(&[
        "run",
        &server.url(),
        "-q",
        "10",
        "-d",
        "1s",
        "-c",
        "1",
        "--timeout",
        "600ms",
    ]);

    assert_eq!(code, 1);
    assert_eq!(u64_at(&json, "/requests/total"), 10);
    assert_eq!(u64_at(&json, "/requests/ok"), 2, "{json:#}");
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", 2)]));
    assert_eq!(counts_at(&json, "/errors"), counts(&[("timeout", 8)]));
    // Each later request is claimed 100 ms before its deadline: sent, never left unsent.
    assert_eq!(u64_at(&json, "/requests/unsent"), 0);
    assert_eq!(server.stats().requests(), 10);
}
