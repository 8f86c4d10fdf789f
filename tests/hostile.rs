//! Hostile targets: each misbehaviour ends as a classified outcome within the request timeout,
//! never a panic, a hang or a stored body. 20 requests at 20 qps on 2 connections, 300 ms timeout.

mod support;

use std::time::Duration;

use support::{TestServer, counts, counts_at, read_request_head, run_json, u64_at, wait_for_close};
use tokio::io::AsyncWriteExt;

const TOTAL: u64 = 20;

fn load(url: &str) -> (i32, serde_json::Value) {
    run_json(&[
        "run",
        url,
        "-q",
        "20",
        "-d",
        "1s",
        "-c",
        "2",
        "--timeout",
        "300ms",
    ])
}

/// Every request failed, all in `class`.
fn assert_all(code: i32, json: &serde_json::Value, class: &str) {
    assert_eq!(code, 1);
    assert_eq!(u64_at(json, "/requests/total"), TOTAL);
    assert_eq!(
        counts_at(json, "/errors"),
        counts(&[(class, TOTAL)]),
        "{json:#}"
    );
}

#[test]
fn a_response_that_never_ends_times_out_and_is_not_stored() {
    let server = TestServer::raw(|mut stream| async move {
        if !read_request_head(&mut stream).await {
            return;
        }
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        if stream.write_all(head).await.is_err() {
            return;
        }
        let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
        while stream.write_all(chunk.as_bytes()).await.is_ok() {}
    });
    let (code, json) = load(&server.url());
    assert_all(code, &json, "timeout");
    // Counted by size as it streamed in, never stored: at least one 16 KiB chunk per request.
    assert!(
        u64_at(&json, "/requests/body_bytes") >= TOTAL * 0x4000,
        "{json:#}"
    );
}

#[test]
fn headers_beyond_hypers_limits_are_protocol() {
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await {
            let big = format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
                "y".repeat(1 << 20)
            );
            let _ = stream.write_all(big.as_bytes()).await;
            wait_for_close(&mut stream).await;
        }
    });
    let (code, json) = load(&server.url());
    assert_all(code, &json, "protocol");
}

#[test]
fn a_server_trickling_one_byte_a_second_times_out() {
    let server = TestServer::raw(|mut stream| async move {
        if !read_request_head(&mut stream).await {
            return;
        }
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let (code, json) = load(&server.url());
    assert_all(code, &json, "timeout");
}

#[test]
fn a_connection_closed_mid_body_is_closed_before_response() {
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                .await;
        }
    });
    let (code, json) = load(&server.url());
    assert_all(code, &json, "closed_before_response");
}

#[test]
fn malformed_chunked_framing_is_protocol() {
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await
            && stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nnot a chunk\r\n",
                )
                .await
                .is_ok()
        {
            wait_for_close(&mut stream).await;
        }
    });
    let (code, json) = load(&server.url());
    assert_all(code, &json, "protocol");
}

#[test]
fn a_server_that_accepts_but_never_reads_times_out() {
    let server = TestServer::raw(|stream| async move {
        // Hold the connection without reading a byte.
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(stream);
    });
    let (code, json) = load(&server.url());
    assert_all(code, &json, "timeout");
}

#[test]
fn http_1_0_without_keep_alive_uses_a_connection_per_request() {
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await {
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                .await;
        }
    });
    let (code, json) = load(&server.url());
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(u64_at(&json, "/requests/ok"), TOTAL);
    assert_eq!(u64_at(&json, "/connections/opened"), TOTAL, "sockets used");
}
