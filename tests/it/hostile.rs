//! Hostile targets: each misbehaviour ends as a classified outcome within the request timeout,
//! never a panic, a hang or a stored body. 20 requests at 20 qps on 2 connections, 300 ms timeout.

use std::time::Duration;

use crate::support::{
    Run, TestServer, at, counts, counts_at, read_request_head, u64_at, wait_for_close,
};
use tokio::io::AsyncWriteExt;

const TOTAL: u64 = 20;

fn load(url: &str) -> (i32, serde_json::Value) {
    Run::new(url)
        .qps(20)
        .duration("1s")
        .connections(2)
        .timeout("300ms")
        .json()
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
    assert_eq!(
        at(&json, "/error_samples/protocol"),
        "response head larger than 400 KiB"
    );
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

/// A server that answers every request on a connection with `reply`, keeping the connection
/// open for the next one, until the client closes it.
fn answering(reply: Vec<u8>) -> TestServer {
    let reply = std::sync::Arc::new(reply);
    TestServer::raw(move |mut stream| {
        let reply = reply.clone();
        async move {
            while read_request_head(&mut stream).await {
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// Every request failed as `protocol`, each on a connection of its own (none is reused after
/// a refused response), and the first failure said `why`.
fn assert_all_protocol(server: &TestServer, why: &str) {
    let (code, json) = load(&server.url());
    assert_all(code, &json, "protocol");
    assert_eq!(u64_at(&json, "/connections/opened"), TOTAL, "{json:#}");
    assert_eq!(at(&json, "/error_samples/protocol"), why, "{json:#}");
}

const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

#[test]
fn a_1_mib_chunk_extension_is_protocol() {
    let reply = format!("{CHUNKED}2;{}\r\nok\r\n0\r\n\r\n", "e".repeat(1 << 20));
    let server = answering(reply.into_bytes());
    assert_all_protocol(&server, "chunk extensions larger than 16 KiB");
}

#[test]
fn five_thousand_trailers_are_protocol() {
    let reply = format!("{CHUNKED}2\r\nok\r\n0\r\n{}\r\n", "t: 1\r\n".repeat(5000));
    let server = answering(reply.into_bytes());
    assert_all_protocol(&server, "more than 100 trailer fields");
}

#[test]
fn a_1_mib_trailer_is_protocol() {
    let reply = format!(
        "{CHUNKED}2\r\nok\r\n0\r\nt: {}\r\n\r\n",
        "v".repeat(1 << 20)
    );
    let server = answering(reply.into_bytes());
    assert_all_protocol(&server, "trailer section larger than 16 KiB");
}

#[test]
fn bare_lf_trailer_lines_are_protocol() {
    let reply = format!("{CHUNKED}2\r\nok\r\n0\r\nt: 1\nu: 2\n\n");
    let server = answering(reply.into_bytes());
    assert_all_protocol(&server, "bare LF in the trailer section (CR LF required)");
}

#[test]
fn endless_interim_responses_are_protocol() {
    let mut reply = b"HTTP/1.1 102 Processing\r\n\r\n".repeat(100_000);
    reply.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let server = answering(reply);
    assert_all_protocol(
        &server,
        "more than 5 interim (1xx) responses before the final one",
    );
}

/// Transfer-Encoding frames the response (RFC 9112 §6.3), which counts by its status; the
/// connection is never reused after it.
#[test]
fn a_response_with_both_length_headers_counts_but_ends_its_connection() {
    let server = answering(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            .to_vec(),
    );
    let (code, json) = load(&server.url());
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(u64_at(&json, "/requests/ok"), TOTAL);
    assert_eq!(u64_at(&json, "/requests/body_bytes"), 2 * TOTAL);
    assert_eq!(u64_at(&json, "/connections/opened"), TOTAL, "{json:#}");
    assert_eq!(server.stats().connections(), TOTAL);
}
