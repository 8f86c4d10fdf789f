//! Connection reuse: against a keep-alive target gapless opens exactly `-c` connections and
//! reuses them; against a target that closes every connection after one response (with
//! `Connection: close`, or by closing the idle connection) it opens one connection per request,
//! and closing between requests fails none of them.

use crate::support::{
    Reply, Run, TestServer, at, counts, counts_at, read_request_head, u64_at, wait_for_close,
};
use tokio::io::AsyncWriteExt;

#[test]
fn keep_alive_target_gets_exactly_c_connections() {
    let server = TestServer::healthy();
    let (code, json) = Run::new(&server.url())
        .connections(8)
        .qps(200)
        .duration("1s")
        .json();

    assert_eq!(code, 0);
    assert_eq!(u64_at(&json, "/requests/total"), 200);
    assert_eq!(u64_at(&json, "/requests/ok"), 200);
    assert_eq!(u64_at(&json, "/connections/opened"), 8);
    assert_eq!(u64_at(&json, "/connections/connect_failures"), 0);
    assert_eq!(server.stats().connections(), 8);
    assert_eq!(server.stats().requests(), 200);
}

#[test]
fn connection_close_target_gets_one_connection_per_request() {
    let server = TestServer::http(|_| Reply::ok().closing());
    let (code, json) = Run::new(&server.url())
        .connections(8)
        .qps(200)
        .duration("1s")
        .json();

    assert_eq!(
        code, 0,
        "closing after a response is not a failure: {json:#}"
    );
    assert_eq!(u64_at(&json, "/requests/total"), 200);
    assert_eq!(u64_at(&json, "/requests/ok"), 200);
    assert_eq!(u64_at(&json, "/requests/failed"), 0);
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", 200)]));
    assert_eq!(counts_at(&json, "/errors"), counts(&[]));
    assert_eq!(u64_at(&json, "/connections/opened"), 200);
    assert_eq!(server.stats().connections(), 200);
    assert_eq!(at(&json, "/verdict/passed"), true);
}

#[test]
fn connection_closed_while_idle_is_reopened_without_a_failure() {
    // Answer one request per connection (keep-alive, no `Connection: close`), then close it while
    // idle, as a server being restarted does. The next request must go out on a new connection.
    // The server's close must reach gapless within the 20 ms before the next request: on a
    // machine loaded by the other tests the server's thread was once late by more, and the
    // request then met the close (a real race, counted as it should be). The run holds the
    // machine alone.
    let _machine = crate::support::exclusive();
    let server = TestServer::raw(|mut stream| async move {
        if read_request_head(&mut stream).await {
            let response = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
            if stream.write_all(response).await.is_ok() {
                let _ = stream.shutdown().await;
                wait_for_close(&mut stream).await;
            }
        }
    });
    let (code, json) = Run::new(&server.url())
        .connections(1)
        .qps(50)
        .duration("1s")
        .json();

    assert_eq!(code, 0, "an idle close is not a failure: {json:#}");
    assert_eq!(u64_at(&json, "/requests/total"), 50);
    assert_eq!(u64_at(&json, "/requests/ok"), 50);
    assert_eq!(counts_at(&json, "/errors"), counts(&[]));
    assert_eq!(u64_at(&json, "/connections/opened"), 50);
    assert_eq!(server.stats().connections(), 50);
}
