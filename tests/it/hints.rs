//! Diagnosis hints end to end: the binary against in-process targets that fail in one way each,
//! with no rollout step (or one that never ran). Each must get the plain statement of what
//! happened, never advice about a rollout (preStop, Recreate, endpoints), and no fix that
//! suggests what the command line already did (`--cacert`, `--insecure`).
//!
//! Every load is at most 100 requests per second for at most one second.

use std::time::Duration;

use crate::support;
use crate::support::{Reply, Run, TempFile, TestServer, at, counts, counts_at, u64_at};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The rule names of the hints, in report order.
fn rules(json: &Value) -> Vec<String> {
    at(json, "/hints")
        .as_array()
        .expect("hints is an array")
        .iter()
        .map(|h| h["rule"].as_str().expect("a rule name").to_string())
        .collect()
}

/// The hint of `rule`.
fn hint<'a>(json: &'a Value, rule: &str) -> &'a Value {
    at(json, "/hints")
        .as_array()
        .expect("hints is an array")
        .iter()
        .find(|h| h["rule"] == rule)
        .unwrap_or_else(|| panic!("no {rule} hint: {:#}", at(json, "/hints")))
}

fn text<'a>(hint: &'a Value, field: &str) -> &'a str {
    hint[field].as_str().expect("a string field")
}

/// `gapless run URL -q 50 -d 1s -c 2 EXTRA...`: 50 requests.
fn load(url: &str, extra: &[&str]) -> (i32, Value) {
    Run::new(url)
        .qps(50)
        .duration("1s")
        .connections(2)
        .args(extra)
        .json()
}

#[test]
fn a_redirect_is_named_as_not_followed() {
    let server = TestServer::http(|_| Reply::status(301));
    let (code, json) = load(&server.url(), &[]);

    assert_eq!(code, 1, "{json:#}");
    assert_eq!(counts_at(&json, "/codes"), counts(&[("301", 50)]));
    assert_eq!(
        server.stats().requests(),
        50,
        "one attempt each, none followed"
    );
    assert_eq!(rules(&json), ["redirect-not-followed"]);
    let h = hint(&json, "redirect-not-followed");
    assert_eq!(
        text(h, "evidence"),
        "50 of 50 failures were redirects (301: 50), not followed"
    );
    assert!(text(h, "fix").contains("--ok-codes"), "{h:#}");

    // Accepted by --ok-codes, the same answers pass without a hint.
    let (code, json) = load(&server.url(), &["--ok-codes", "200-299,301"]);
    assert_eq!(code, 0, "{json:#}");
    assert!(rules(&json).is_empty(), "{:#}", at(&json, "/hints"));
}

#[test]
fn a_503_throughout_is_stated_without_rollout_advice() {
    let server = TestServer::http(|_| Reply::status(503));
    let (code, json) = load(&server.url(), &[]);

    assert_eq!(code, 1, "{json:#}");
    assert_eq!(u64_at(&json, "/gaps_total"), 1, "one gap, the whole run");
    assert_eq!(rules(&json), ["failing-throughout"]);
    assert_eq!(
        text(hint(&json, "failing-throughout"), "evidence"),
        "none of the 50 requests succeeded: the target answered 503 throughout (50 failing \
         responses)"
    );
}

#[test]
fn a_target_unreachable_in_the_warmup_gets_no_prestop_or_recreate_hint() {
    let url = format!("http://127.0.0.1:{}/", support::refused_port());
    let file = TempFile::with(
        "toml",
        &format!(
            r#"[target]
url = "{url}"

[load]
qps = 50
warmup = "500ms"
cooldown = "500ms"

[[step]]
name = "deploy"
run = "true"
"#
        ),
    );
    let (code, json) = Run::scenario(file.as_str()).quiet().json();

    assert_eq!(code, 4, "{json:#}");
    assert_eq!(at(&json, "/steps/0/status"), "skipped");
    let total = u64_at(&json, "/requests/total");
    assert_eq!(
        counts_at(&json, "/errors"),
        counts(&[("connect_refused", total)])
    );
    assert_eq!(rules(&json), ["connection-refused"]);
    assert_eq!(
        text(hint(&json, "connection-refused"), "evidence"),
        format!("{total} connection attempts were refused")
    );
}

#[test]
fn timeouts_are_stated_as_timeouts() {
    let server = TestServer::http(|_| Reply::ok().delayed(Duration::from_millis(200)));
    let (code, json) = Run::new(&server.url())
        .qps(20)
        .duration("1s")
        .connections(20)
        .timeout("50ms")
        .json();

    assert_eq!(code, 1, "{json:#}");
    assert_eq!(counts_at(&json, "/errors"), counts(&[("timeout", 20)]));
    assert_eq!(rules(&json), ["timeouts"]);
    assert_eq!(
        text(hint(&json, "timeouts"), "evidence"),
        "20 requests got no answer within the --timeout of 50 ms"
    );
}

#[test]
fn h2c_to_an_http1_only_server_is_named() {
    // What nginx without `http2 on` does with the h2c preface: 400, then it closes.
    let server = TestServer::raw(|mut stream| async move {
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await;
    });
    let (code, json) = load(&server.url(), &["--http2"]);

    assert_eq!(code, 1, "{json:#}");
    assert_eq!(u64_at(&json, "/requests/ok"), 0);
    assert_eq!(rules(&json), ["h2c-not-spoken"]);
    assert!(
        text(hint(&json, "h2c-not-spoken"), "fix").contains("drop --http2"),
        "{:#}",
        at(&json, "/hints")
    );
}

#[test]
fn tls_hints_never_suggest_the_options_given() {
    let (server, _) = TestServer::https_with_cert(|_| Reply::ok());
    // A bundle that does not hold the server's certificate: another server's.
    let (other, other_pem) = TestServer::https_with_cert(|_| Reply::ok());
    drop(other);
    let bundle = TempFile::with("pem", &other_pem);

    let (code, json) = load(&server.url(), &[]);
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(at(&json, "/target/cacert"), false);
    assert_eq!(at(&json, "/target/insecure"), false);
    assert_eq!(rules(&json), ["untrusted-certificate"]);
    let fix = text(hint(&json, "untrusted-certificate"), "fix");
    assert!(
        fix.contains("--cacert FILE") && fix.contains("--insecure"),
        "{fix}"
    );

    let (code, json) = load(&server.url(), &["--cacert", bundle.as_str()]);
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(at(&json, "/target/cacert"), true);
    assert_eq!(rules(&json), ["certificate-not-in-cacert"]);
    for h in at(&json, "/hints").as_array().unwrap() {
        assert!(!text(h, "fix").contains("with --cacert"), "{h:#}");
    }

    // https:// to a port that does not speak TLS, certificates not verified.
    let plain = TestServer::healthy();
    let url = plain.url().replace("http://", "https://");
    let (code, json) = load(&url, &["--insecure"]);
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(at(&json, "/target/insecure"), true);
    assert_eq!(rules(&json), ["tls-handshake-failed"]);
    for h in at(&json, "/hints").as_array().unwrap() {
        let fix = text(h, "fix");
        assert!(
            !fix.contains("--insecure") && !fix.contains("--cacert"),
            "{h:#}"
        );
    }
}
