//! A plan the connections cannot carry: requests that cannot make their deadline are not sent
//! (class `not_sent`, a failure), rather than sent moments before their deadline only to be
//! abandoned there, each taking the connection down with it.
//!
//! The rule (README, "Bounded backlog"): when a connection becomes free, a due request whose
//! time left before its deadline is shorter than the median of that connection's last 8
//! service times and a margin (a quarter of it and 5 ms; at most half the timeout), or has run
//! out, is not sent.

use std::time::Duration;

use crate::support::{Reply, Run, TestServer, at, count_at, counts, counts_at, u64_at};

#[test]
fn one_connection_at_a_50_ms_target_sends_only_what_it_can_answer_in_time() {
    // 100 req/s on one connection to a target that takes 50 ms: 20 req/s can be carried. Before,
    // each late request was sent moments before its deadline, timed out, and dropped the only
    // connection (128 connects and as many requests abandoned at the target in 3 s).
    let server = TestServer::http(|_| Reply::ok().delayed(Duration::from_millis(50)));
    let (code, stdout, stderr, json) = Run::new(&server.url())
        .qps(100)
        .connections(1)
        .duration("2s")
        .timeout("1s")
        .output();
    let json = json.unwrap_or_else(|| panic!("no JSON\n{stdout}\n{stderr}"));
    assert_eq!(code, 1, "requests not sent fail the run: {stderr}");

    // Exact books: 100 × 2 s, each either answered or not sent.
    let total = u64_at(&json, "/requests/total");
    let ok = u64_at(&json, "/requests/ok");
    let not_sent = count_at(&json, "/errors/not_sent");
    assert_eq!(total, 200);
    assert_eq!(ok + u64_at(&json, "/requests/failed"), total);
    // A request is sent when the time left is at least the connection's median service time
    // and a margin (67.5 ms here): a prediction, so a response more than 17.5 ms slower than
    // the median can still time out, on a loaded machine at worst about one in a hundred
    // (measured beside `stress-ng --cpu 2`, 6 runs: none; with no margin: 0 to 5 a run).
    let timeouts = count_at(&json, "/errors/timeout");
    assert!(timeouts <= 2, "{json:#}");
    assert_eq!(ok + not_sent + timeouts, total, "{json:#}");
    let mut expected = vec![("not_sent", not_sent)];
    if timeouts > 0 {
        expected.push(("timeout", timeouts));
    }
    assert_eq!(counts_at(&json, "/errors"), counts(&expected));
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", ok)]));
    assert_eq!(u64_at(&json, "/requests/unsent"), not_sent);
    // About 20 a second for the 3 s the backlog lasts (2 s of load + the 1 s timeout).
    assert!((40..=70).contains(&ok), "{ok} answered");

    // At the target: one connection, and every request it received was answered and read.
    // (A timed-out request closes its connection: one more connect each.)
    assert_eq!(
        server.stats().connections(),
        1 + timeouts,
        "connects at the target"
    );
    assert_eq!(
        server.stats().requests(),
        ok + timeouts,
        "requests the target received but gapless abandoned"
    );
    assert_eq!(u64_at(&json, "/connections/opened"), 1 + timeouts);
    assert!(
        u64_at(&json, "/connections/failed_on_new_connections") <= timeouts,
        "not sent is on no connection"
    );

    // Warned once while it ran, and in the report with what would carry the rate.
    assert_eq!(
        stderr.matches("requests are not being sent").count(),
        1,
        "{stderr}"
    );
    let warnings = at(&json, "/warnings").to_string();
    assert!(
        warnings.contains(&format!("{not_sent} of 200 requests were not sent")),
        "{warnings}"
    );
    // 100 req/s × a median service time a little above 50 ms: 6 (7 or 8 on a slow machine).
    let needed = warnings
        .split("needs about ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(matches!(needed, Some(6..=8)), "{warnings}");
    assert!(stdout.contains("Warning: "), "{stdout}");
    assert!(stdout.contains("Error not_sent"), "{stdout}");
    // No failure window but the timeouts' (requests not sent are in none).
    assert!(u64_at(&json, "/windows_total") <= timeouts, "{json:#}");
}

#[test]
fn enough_connections_send_everything() {
    // The same target with the connections the rate needs: nothing is held back.
    let server = TestServer::http(|_| Reply::ok().delayed(Duration::from_millis(50)));
    let (code, stdout, stderr, json) = Run::new(&server.url())
        .qps(100)
        .connections(12)
        .duration("1s")
        .timeout("1s")
        .output();
    let json = json.unwrap_or_else(|| panic!("no JSON\n{stdout}\n{stderr}"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(u64_at(&json, "/requests/ok"), 100);
    assert_eq!(u64_at(&json, "/requests/unsent"), 0);
    assert!(!stderr.contains("not being sent"), "{stderr}");
    assert_eq!(at(&json, "/warnings").as_array().map(Vec::len), Some(0));
}

#[test]
fn one_stall_does_not_hold_back_the_requests_queued_behind_it() {
    // One answer takes 700 ms; the 13 requests due meanwhile queue behind it on the one
    // connection, the first with 350 ms left when it is free. The rule goes by the median recent
    // service time (1 ms here), not the slowest: every one of them is sent, and answered in time.
    let server = TestServer::http(|r| {
        if r.index == 10 {
            Reply::ok().delayed(Duration::from_millis(700))
        } else {
            Reply::ok()
        }
    });
    let (code, stdout, stderr, json) = Run::new(&server.url())
        .qps(20)
        .connections(1)
        .duration("2s")
        .timeout("1s")
        .output();
    let json = json.unwrap_or_else(|| panic!("no JSON\n{stdout}\n{stderr}"));
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(u64_at(&json, "/requests/ok"), 40);
    assert_eq!(u64_at(&json, "/requests/unsent"), 0);
    assert_eq!(server.stats().requests(), 40);
}
