//! Protocols: HTTP/2 with prior knowledge over plain TCP (h2c), HTTPS with a self-signed
//! certificate (accepted with `--insecure`, rejected as `tls` without it), and HTTP/2 over TLS
//! negotiated by ALPN. The server counts which requests really arrived over HTTP/2.

use std::time::Duration;

use crate::support;
use crate::support::{Reply, Run, TestServer, at, counts, counts_at, f64_at, u64_at};

/// 100 qps for 1 s on 4 connections: 100 attempts.
fn load(url: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    Run::new(url)
        .qps(100)
        .duration("1s")
        .connections(4)
        .args(extra)
        .json()
}

fn assert_all_200(code: i32, json: &serde_json::Value) {
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(u64_at(json, "/requests/total"), 100);
    assert_eq!(u64_at(json, "/requests/ok"), 100);
    assert_eq!(u64_at(json, "/requests/failed"), 0);
    assert_eq!(counts_at(json, "/codes"), counts(&[("200", 100)]));
    assert_eq!(counts_at(json, "/errors"), counts(&[]));
}

#[test]
fn h2c_prior_knowledge() {
    let server = TestServer::healthy();
    let (code, json) = load(&server.url(), &["--http2"]);

    assert_all_200(code, &json);
    assert_eq!(at(&json, "/target/http2"), true);
    assert_eq!(server.stats().requests(), 100);
    assert_eq!(
        server.stats().h2_requests(),
        100,
        "every request should arrive over HTTP/2"
    );
    assert_eq!(u64_at(&json, "/connections/opened"), 4);
    assert_eq!(server.stats().connections(), 4);
}

#[test]
fn h2c_streams_share_one_connection() {
    // 100 ms answers at 20 qps need two requests in flight: four streams on one HTTP/2
    // connection carry them without queueing (one stream would fall ~1 s behind by the end).
    let server = TestServer::http(|_| Reply::ok().delayed(Duration::from_millis(100)));
    let (code, json) = Run::new(&server.url())
        .arg("--http2")
        .connections(1)
        .opt("--streams", "4")
        .qps(20)
        .duration("1s")
        .json();

    assert_eq!(code, 0, "{json:#}");
    assert_eq!(u64_at(&json, "/requests/total"), 20);
    assert_eq!(u64_at(&json, "/requests/ok"), 20);
    assert_eq!(u64_at(&json, "/connections/opened"), 1);
    assert_eq!(server.stats().connections(), 1);
    assert_eq!(server.stats().h2_requests(), 20);
    let max = f64_at(&json, "/latency_ms/max");
    assert!(
        max < 500.0,
        "latency max {max} ms: the streams should run concurrently"
    );
}

#[test]
fn http1_is_the_default() {
    let server = TestServer::healthy();
    let (code, json) = load(&server.url(), &[]);

    assert_all_200(code, &json);
    assert_eq!(at(&json, "/target/http2"), false);
    assert_eq!(server.stats().h2_requests(), 0);
}

#[test]
fn https_self_signed_with_insecure() {
    let server = TestServer::https(|_| Reply::ok());
    let (code, json) = load(&server.url(), &["--insecure"]);

    assert_all_200(code, &json);
    assert_eq!(server.stats().requests(), 100);
    assert_eq!(
        server.stats().h2_requests(),
        0,
        "ALPN http/1.1 without --http2"
    );
    assert_eq!(u64_at(&json, "/connections/opened"), 4);
}

#[test]
fn https_self_signed_without_insecure_is_tls() {
    let server = TestServer::https(|_| Reply::ok());
    let (code, json) = load(&server.url(), &[]);

    assert_eq!(code, 1);
    assert_eq!(u64_at(&json, "/requests/total"), 100);
    assert_eq!(u64_at(&json, "/requests/failed"), 100);
    assert_eq!(counts_at(&json, "/codes"), counts(&[]));
    assert_eq!(counts_at(&json, "/errors"), counts(&[("tls", 100)]));
    assert_eq!(u64_at(&json, "/connections/opened"), 0);
    assert_eq!(u64_at(&json, "/connections/connect_failures"), 100);
    assert_eq!(
        server.stats().requests(),
        0,
        "no request passes a rejected handshake"
    );
    assert_eq!(at(&json, "/verdict/passed"), false);
}

#[test]
fn https_http2_by_alpn() {
    let server = TestServer::https(|_| Reply::ok());
    let (code, json) = load(&server.url(), &["--http2", "-k"]);

    assert_all_200(code, &json);
    assert_eq!(at(&json, "/target/http2"), true);
    assert_eq!(server.stats().requests(), 100);
    assert_eq!(
        server.stats().h2_requests(),
        100,
        "ALPN should have chosen h2"
    );
}

#[test]
fn https_self_signed_trusted_with_cacert() {
    let (server, pem) = TestServer::https_with_cert(|_| Reply::ok());
    let bundle = support::TempFile::with("pem", &pem);
    let (code, json) = load(&server.url(), &["--cacert", bundle.as_str()]);
    assert_all_200(code, &json);
    assert_eq!(server.stats().requests(), 100);
}

#[test]
fn untrusted_certificate_hint_names_cacert_and_insecure() {
    let server = TestServer::https(|_| Reply::ok());
    let (code, json) = load(&server.url(), &[]);
    assert_eq!(code, 1);
    let hint = at(&json, "/hints/0");
    assert_eq!(hint["rule"], "untrusted-certificate");
    let fix = hint["fix"].as_str().unwrap();
    assert!(
        fix.contains("--cacert FILE") && fix.contains("--insecure"),
        "{fix}"
    );
}

#[test]
fn an_unusable_cacert_is_a_usage_error() {
    let not_pem = support::TempFile::with("pem", "hello");
    for bundle in [not_pem.as_str(), "/nonexistent/ca.pem"] {
        let (code, _, stderr, json) = Run::new("http://127.0.0.1:1/")
            .opt("--cacert", bundle)
            .output();
        assert_eq!(code, 2, "{stderr}");
        assert!(json.is_none());
        assert!(
            stderr.starts_with(&format!("gapless: --cacert {bundle}: ")),
            "{stderr}"
        );
    }
}

/// `openssl req -x509` makes a certificate marked `CA:TRUE`, which webpki refuses as a server's
/// own certificate. Given with `--cacert`, it is trusted as itself (as curl and Go's clients
/// trust it); the name is still checked, and without `--cacert` it is still refused.
#[test]
#[ignore = "needs openssl"]
fn an_openssl_self_signed_certificate_is_trusted_with_cacert() {
    let (cert, key) = support::openssl_self_signed();
    let server = TestServer::https_with_identity(&cert, &key, |_| Reply::ok());
    let bundle = support::TempFile::with("pem", &cert);
    let (code, json) = load(&server.url(), &["--cacert", bundle.as_str()]);
    assert_all_200(code, &json);
    assert_eq!(server.stats().requests(), 100);

    // HTTP/2 negotiated by ALPN goes through the same verification.
    let (code, json) = load(&server.url(), &["--cacert", bundle.as_str(), "--http2"]);
    assert_all_200(code, &json);

    // The certificate names localhost, not 127.0.0.1.
    let by_ip = format!("https://127.0.0.1:{}/", server.addr().port());
    let (code, json) = load(&by_ip, &["--cacert", bundle.as_str()]);
    assert_all_tls(code, &json);
    let sample = at(&json, "/error_samples/tls").as_str().unwrap();
    assert!(
        sample.starts_with("invalid peer certificate: certificate not valid for name"),
        "{sample}"
    );

    let (code, json) = load(&server.url(), &[]);
    assert_all_tls(code, &json);
    assert_eq!(
        at(&json, "/error_samples/tls"),
        "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
        "rustls's reason, as it says it"
    );
    assert_eq!(
        server.stats().requests(),
        200,
        "no request passed a refusal"
    );
}

/// Every request failed in the TLS handshake.
fn assert_all_tls(code: i32, json: &serde_json::Value) {
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(counts_at(json, "/errors"), counts(&[("tls", 100)]));
    assert_eq!(u64_at(json, "/connections/opened"), 0);
}

#[test]
fn a_tls_failure_says_why_in_json_and_text() {
    let server = TestServer::https(|_| Reply::ok());
    let (code, stdout, _, json) = Run::new(&server.url())
        .qps(100)
        .duration("1s")
        .connections(4)
        .output();
    let json = json.expect("a JSON result");
    assert_all_tls(code, &json);
    let why = "invalid peer certificate: UnknownIssuer";
    assert_eq!(
        at(&json, "/error_samples"),
        &serde_json::json!({ "tls": why })
    );
    let line = stdout
        .lines()
        .position(|l| l.starts_with("Error tls : 100"))
        .expect("the tls line");
    assert_eq!(
        stdout.lines().nth(line + 1),
        Some(format!("  first: {why}").as_str()),
        "{stdout}"
    );
}

/// An HTTP/2 server that refuses every stream with `RST_STREAM(REFUSED_STREAM)` (as a server
/// shutting down does): each request is a `reset`, found in h2's own error, not in a message.
#[test]
fn an_http2_stream_reset_by_the_peer_is_reset() {
    let server = TestServer::raw(|stream| async move {
        let Ok(mut connection) = h2::server::handshake(stream).await else {
            return;
        };
        while let Some(Ok((_request, mut respond))) = connection.accept().await {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
        }
    });
    let (code, json) = Run::new(&server.url())
        .arg("--http2")
        .qps(20)
        .duration("500ms")
        .json();
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(u64_at(&json, "/requests/total"), 10);
    assert_eq!(counts_at(&json, "/errors"), counts(&[("reset", 10)]));
    let sample = at(&json, "/error_samples/reset").as_str().unwrap();
    assert!(sample.contains("refused"), "{sample}");
}
