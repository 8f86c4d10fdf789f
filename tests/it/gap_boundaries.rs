//! When an outage began and ended is a fact about the target: a failure window is bounded by
//! when requests were actually sent, not when they were due. Here the sends are late on purpose
//! (one connection to a target that takes 20 ms, at 75 req/s: each request is sent about 6.7 ms
//! later than the one before it, relative to its due time, about a third of a second late by
//! the time the target breaks). A window placed by due times starts and ends that much too
//! early (before the target broke); placed by send times, it starts within a request of the
//! break, and says how uncertain each boundary is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support;
use crate::support::{Reply, Run, TestServer, at, f64_at, u64_at};

/// When the target breaks and recovers, after its first request (on its own clock).
const BREAK: Duration = Duration::from_millis(1000);
const RECOVER: Duration = Duration::from_millis(1400);
/// What each answer takes.
const SERVICE: Duration = Duration::from_millis(20);
/// How far a boundary may be from the server's instant: the time a request takes to reach the
/// server after gapless began it, on a busy machine.
const TOLERANCE_MS: f64 = 15.0;

/// Unix time in ms of `instant` (taken in this process).
fn unix_ms(instant: Instant) -> f64 {
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0;
    now_wall - instant.elapsed().as_secs_f64() * 1000.0
}

#[test]
fn a_window_starts_and_ends_when_the_target_broke_and_recovered_though_sends_were_late() {
    let served_503 = Arc::new(AtomicU64::new(0));
    let server = {
        let served_503 = served_503.clone();
        TestServer::http(move |r| {
            if (BREAK..RECOVER).contains(&r.since_first) {
                served_503.fetch_add(1, Ordering::SeqCst);
                Reply::status(503).delayed(SERVICE)
            } else {
                Reply::ok().delayed(SERVICE)
            }
        })
    };
    let (code, json) = Run::new(&server.url())
        .qps(75)
        .connections(1)
        .duration("2s")
        .timeout("10s")
        .json();
    let first = *server
        .stats()
        .first_request
        .get()
        .expect("the target saw requests");
    let (broke, recovered) = (unix_ms(first + BREAK), unix_ms(first + RECOVER));

    // Exact books first: every request sent and answered, the 503s all in one window.
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(u64_at(&json, "/requests/total"), 150);
    assert_eq!(server.stats().requests(), 150);
    let served_503 = served_503.load(Ordering::SeqCst);
    assert!(served_503 > 10, "{served_503} 503s");
    assert_eq!(support::count_at(&json, "/codes/503"), served_503);
    let windows = at(&json, "/windows").as_array().expect("windows is a list");
    assert_eq!(windows.len(), 1, "{json:#}");
    let w = &windows[0];
    assert_eq!(u64_at(w, "/failed"), served_503);

    // The sends were late on purpose: by a third of a second when the target broke.
    assert!(
        f64_at(&json, "/lateness_ms/p99") > 300.0,
        "sends were not late: {json:#}"
    );

    let run_start = u64_at(&json, "/started_at_unix_ms") as f64;
    let start = run_start + f64_at(w, "/start_ms");
    let end = run_start + f64_at(w, "/end_ms");
    eprintln!(
        "window {:.1} .. {:.1} ms after the break, {:.1} ms after the recovery; uncertainty {} / {}",
        start - broke,
        end - broke,
        end - recovered,
        w["start_uncertainty_ms"],
        w["end_uncertainty_ms"]
    );
    // Started when the first failure was sent: no earlier than the break (less the time a request
    // takes to reach the target; and `started_at_unix_ms` is truncated to the ms), and within one
    // request after it.
    assert!(
        start >= broke - TOLERANCE_MS,
        "the window starts {:.1} ms before the target broke",
        broke - start
    );
    assert!(start <= broke + SERVICE.as_millis() as f64 + TOLERANCE_MS);
    // Ended when the first success after it was sent: at the recovery, within one request.
    assert!(
        end >= recovered - TOLERANCE_MS,
        "the window ends {:.1} ms before the target recovered",
        recovered - end
    );
    assert!(end <= recovered + SERVICE.as_millis() as f64 + TOLERANCE_MS);
    // Each boundary's uncertainty: the time between two sends on the one connection.
    for key in ["/start_uncertainty_ms", "/end_uncertainty_ms"] {
        let u = f64_at(w, key);
        assert!(
            u > 0.0 && u <= SERVICE.as_millis() as f64 + TOLERANCE_MS,
            "{key} {u}"
        );
    }
}
