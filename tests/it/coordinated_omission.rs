//! Coordinated omission: when the target stalls, the requests that queue up behind the stall are
//! charged the time they waited. Latency is measured from each request's intended send time, so
//! one 1 s stall on a single connection shows in the latency percentiles, while the service time
//! (from the actual send) shows only the one slow response.

use std::time::Duration;

use crate::support::{Reply, Run, TestServer, counts, counts_at, f64_at, u64_at};

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
    let (code, json) = Run::new(&server.url())
        .qps(100)
        .duration("3s")
        .connections(1)
        .timeout("5s")
        // The 1 s silence is the point here: allowed, so that only latency is looked at (it
        // is found as a stall, see stalls.rs).
        .opt("--max-stall", "5s")
        .json();

    assert_eq!(
        code, 0,
        "a stall within the timeout and --max-stall is not a failure: {json:#}"
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
    // Every answer takes 300 ms; requests are due every 100 ms on one connection, so they queue:
    // latencies from the intended send time grow by 200 ms a request. The 650 ms timeout counts
    // from the intended send time, and a request with less time left than the connection's
    // recent service time (300 ms) is not sent. Worked through (t = when the connection is free,
    // "left" = deadline - t):
    //   t=0    req 0 sent (left 650)                        -> 200 at 300 ms
    //   t=300  req 1 sent (left 450)                        -> 200 at 600 ms (latency 500)
    //   t=600  req 2 not sent (left 250), req 3 sent (350)  -> 200 at 900 ms (latency 600)
    //   t=900  reqs 4, 5 not sent (150, 250), req 6 sent    -> 200 at 1200 ms (latency 600)
    //   t=1200 reqs 7, 8 not sent, req 9 sent (left 350)    -> 200 at 1500 ms (latency 600)
    // Every decision has 40 ms or more of margin. Requests fail although no answer takes more
    // than 300 ms once sent, and none is sent only to be abandoned at its deadline.
    let server = TestServer::http(|_| Reply::ok().delayed(Duration::from_millis(300)));
    let (code, json) = Run::new(&server.url())
        .qps(10)
        .duration("1s")
        .connections(1)
        .timeout("650ms")
        .json();

    assert_eq!(code, 1);
    assert_eq!(u64_at(&json, "/requests/total"), 10);
    assert_eq!(u64_at(&json, "/requests/ok"), 5, "{json:#}");
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", 5)]));
    assert_eq!(counts_at(&json, "/errors"), counts(&[("not_sent", 5)]));
    assert_eq!(u64_at(&json, "/requests/unsent"), 5);
    // Only what was sent reached the server, all of it on the one connection.
    assert_eq!(server.stats().requests(), 5);
    assert_eq!(server.stats().connections(), 1);
    // The answers that came took 300 ms once sent, 500 to 600 ms from their intended times.
    assert!(f64_at(&json, "/service_time_ms/max") < 400.0, "{json:#}");
    assert!(f64_at(&json, "/latency_ms/max") >= 590.0, "{json:#}");
}
