//! Each transport failure class, produced for real by a misbehaving loopback target, lands in its
//! own class, fails the run (exit 1), and leaves the request count exact.

use std::time::Duration;

use crate::support;
use crate::support::{
    Run, TestServer, at, count_at, counts, counts_at, read_request_head, refused_port, u64_at,
    wait_for_close,
};
use tokio::io::AsyncWriteExt;

/// 50 qps for 1 s on 2 connections: 50 attempts.
const TOTAL: u64 = 50;

fn load(url: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    Run::new(url)
        .qps(50)
        .duration("1s")
        .connections(2)
        .args(extra)
        .json()
}

/// Checks what every transport-failure run shares: exit 1, no responses, the exact total.
fn assert_all_failed(code: i32, json: &serde_json::Value) {
    assert_eq!(code, 1, "any failure exits 1");
    assert_eq!(u64_at(json, "/requests/total"), TOTAL);
    assert_eq!(u64_at(json, "/requests/ok"), 0);
    assert_eq!(u64_at(json, "/requests/failed"), TOTAL);
    assert_eq!(
        counts_at(json, "/codes"),
        counts(&[]),
        "no response had a status"
    );
    assert_eq!(
        u64_at(json, "/latency_ms/count"),
        0,
        "only responses have a latency"
    );
    assert_eq!(at(json, "/verdict/passed"), false);
    assert_eq!(u64_at(json, "/verdict/exit_code"), 1);
}

#[test]
fn refused_connections_are_connect_refused() {
    let url = format!("http://127.0.0.1:{}/", refused_port());
    let (code, json) = load(&url, &[]);

    assert_all_failed(code, &json);
    assert_eq!(
        counts_at(&json, "/errors"),
        counts(&[("connect_refused", TOTAL)])
    );
    assert_eq!(
        u64_at(&json, "/errors_by_connection/connect_refused/new"),
        TOTAL
    );
    assert_eq!(
        u64_at(&json, "/errors_by_connection/connect_refused/reused"),
        0
    );
    assert_eq!(u64_at(&json, "/connections/opened"), 0);
    assert_eq!(u64_at(&json, "/connections/connect_failures"), TOTAL);
    assert_eq!(
        u64_at(&json, "/connections/failed_on_new_connections"),
        TOTAL
    );
    assert_eq!(
        u64_at(&json, "/connections/failed_on_reused_connections"),
        0
    );
}

#[test]
fn reset_after_the_request_is_reset() {
    // Read the request, then close with SO_LINGER 0: the kernel sends RST instead of FIN.
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await {
            stream
                .set_zero_linger()
                .expect("SO_LINGER 0 on a connected socket");
        }
        drop(stream);
    });
    let (code, json) = load(&server.url(), &[]);

    assert_all_failed(code, &json);
    let reset = count_at(&json, "/errors/reset");
    let closed = count_at(&json, "/errors/closed_before_response");
    assert!(reset > 0, "an RST should be classified as reset: {json:#}");
    assert_eq!(
        reset + closed,
        TOTAL,
        "every failure should be reset (or closed_before_response): {json:#}"
    );
    // Every connection carries exactly one request, so every failure is on a new connection.
    assert_eq!(u64_at(&json, "/connections/opened"), TOTAL);
    assert_eq!(
        u64_at(&json, "/connections/failed_on_new_connections"),
        TOTAL
    );
    assert_eq!(
        u64_at(&json, "/connections/failed_on_reused_connections"),
        0
    );
    assert_eq!(server.stats().connections(), TOTAL);
}

#[test]
fn clean_close_without_answer_is_closed_before_response() {
    // Read the whole request (so closing sends FIN, not RST), then close without a byte.
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await {
            let _ = stream.shutdown().await;
        }
    });
    let (code, json) = load(&server.url(), &[]);

    assert_all_failed(code, &json);
    assert_eq!(
        counts_at(&json, "/errors"),
        counts(&[("closed_before_response", TOTAL)])
    );
    assert_eq!(
        u64_at(&json, "/errors_by_connection/closed_before_response/new"),
        TOTAL
    );
    assert_eq!(
        u64_at(&json, "/errors_by_connection/closed_before_response/reused"),
        0
    );
    assert_eq!(u64_at(&json, "/connections/opened"), TOTAL);
    assert_eq!(server.stats().connections(), TOTAL);
}

#[test]
fn no_answer_before_the_deadline_is_timeout() {
    // Read the request and hold the connection open, silent, until gapless gives up on it.
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await {
            wait_for_close(&mut stream).await;
        }
    });
    let (code, json) = load(&server.url(), &["--timeout", "200ms"]);

    assert_all_failed(code, &json);
    assert_eq!(counts_at(&json, "/errors"), counts(&[("timeout", TOTAL)]));
    assert_eq!(support::f64_at(&json, "/load/timeout_ms"), 200.0);
    // A timed-out HTTP/1.1 connection is discarded: each sent attempt opened its own, and an
    // attempt whose deadline passed in the backlog opened none.
    let unsent = u64_at(&json, "/requests/unsent");
    assert_eq!(u64_at(&json, "/connections/opened") + unsent, TOTAL);
    assert_eq!(server.stats().connections() + unsent, TOTAL);
}

#[test]
fn garbage_instead_of_http_is_protocol() {
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await
            && stream.write_all(b"HELLO garbage\r\n\r\n").await.is_ok()
        {
            wait_for_close(&mut stream).await;
        }
    });
    let (code, json) = load(&server.url(), &[]);

    assert_all_failed(code, &json);
    assert_eq!(counts_at(&json, "/errors"), counts(&[("protocol", TOTAL)]));
    assert_eq!(u64_at(&json, "/errors_by_connection/protocol/new"), TOTAL);
    assert_eq!(u64_at(&json, "/connections/opened"), TOTAL);
}

#[test]
fn a_slow_server_within_the_timeout_is_not_a_failure() {
    // The counterpart of the timeout test: 100 ms answers under a 1 s deadline all succeed.
    let server = TestServer::http(|_| support::Reply::ok().delayed(Duration::from_millis(100)));
    let (code, json) = Run::new(&server.url())
        .qps(50)
        .duration("1s")
        .connections(8)
        .timeout("1s")
        .json();

    assert_eq!(code, 0);
    assert_eq!(u64_at(&json, "/requests/total"), TOTAL);
    assert_eq!(u64_at(&json, "/requests/ok"), TOTAL);
    assert_eq!(counts_at(&json, "/errors"), counts(&[]));
    assert!(support::f64_at(&json, "/latency_ms/min") >= 100.0);
}

#[test]
fn reset_on_a_reused_connection_is_counted_as_reused() {
    // Answer the first request on each connection, reset on the second. On one connection the
    // requests alternate: new connection ok, reused connection reset.
    let server = TestServer::raw(|mut stream| async move {
        if !read_request_head(&mut stream).await {
            return;
        }
        let response = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
        if stream.write_all(response).await.is_err() {
            return;
        }
        if read_request_head(&mut stream).await {
            stream
                .set_zero_linger()
                .expect("SO_LINGER 0 on a connected socket");
        }
    });
    let (code, json) = Run::new(&server.url())
        .qps(50)
        .duration("1s")
        .connections(1)
        .json();

    assert_eq!(code, 1);
    assert_eq!(u64_at(&json, "/requests/total"), TOTAL);
    assert_eq!(u64_at(&json, "/requests/ok"), TOTAL / 2);
    assert_eq!(u64_at(&json, "/requests/failed"), TOTAL / 2);
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", TOTAL / 2)]));
    assert_eq!(counts_at(&json, "/errors"), counts(&[("reset", TOTAL / 2)]));
    assert_eq!(u64_at(&json, "/errors_by_connection/reset/new"), 0);
    assert_eq!(
        u64_at(&json, "/errors_by_connection/reset/reused"),
        TOTAL / 2
    );
    assert_eq!(u64_at(&json, "/connections/failed_on_new_connections"), 0);
    assert_eq!(
        u64_at(&json, "/connections/failed_on_reused_connections"),
        TOTAL / 2
    );
    assert_eq!(u64_at(&json, "/connections/opened"), TOTAL / 2);
}

/// Runs the standard load and returns the JSON result and the text report.
fn load_with_text(url: &str) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr, json) = Run::new(url).qps(50).duration("1s").connections(2).output();
    (code, json.unwrap_or_else(|| panic!("{stderr}")), stdout)
}

/// The first failure of `class` said `why`: in the JSON's `error_samples`, the only sample, and
/// on the line under the class's line in the text report.
fn assert_sample(json: &serde_json::Value, text: &str, class: &str, why: &str) {
    assert_eq!(
        at(json, "/error_samples"),
        &serde_json::json!({ class: why }),
        "{json:#}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let line = lines
        .iter()
        .position(|l| l.starts_with(&format!("Error {class} : {TOTAL} ")))
        .unwrap_or_else(|| panic!("no line for {class}:\n{text}"));
    assert_eq!(
        lines.get(line + 1),
        Some(&format!("  first: {why}").as_str()),
        "{text}"
    );
}

#[test]
fn a_refused_connect_says_why_in_json_and_text() {
    let url = format!("http://127.0.0.1:{}/", refused_port());
    let (code, json, text) = load_with_text(&url);
    assert_all_failed(code, &json);
    assert_sample(
        &json,
        &text,
        "connect_refused",
        "Connection refused (os error 111)",
    );
}

#[test]
fn a_protocol_failure_says_why_in_json_and_text() {
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await
            && stream.write_all(b"HELLO garbage\r\n\r\n").await.is_ok()
        {
            wait_for_close(&mut stream).await;
        }
    });
    let (code, json, text) = load_with_text(&server.url());
    assert_all_failed(code, &json);
    assert_sample(
        &json,
        &text,
        "protocol",
        "malformed response head: invalid HTTP version",
    );
}

#[test]
fn a_timeout_says_which_timeout() {
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await {
            wait_for_close(&mut stream).await;
        }
    });
    let (code, json) = load(&server.url(), &["--timeout", "200ms"]);
    assert_all_failed(code, &json);
    assert_eq!(
        at(&json, "/error_samples/timeout"),
        "no complete response within the request timeout (200ms)"
    );
}
