//! Several endpoints in one run, each judged (issue 18): `[[target]]` in a scenario and `--targets
//! FILE` in vegeta's format. One endpoint failing fails the run and only that endpoint; each
//! endpoint's requests are its interleaved share of one schedule (equal, weighted, or its own
//! rate); a vegeta file's headers and
//! body reach the server as written; a malformed file is a usage error naming `FILE:LINE`.
//! Endpoints of one origin share its pool of `-c` connections, each keeping its own timeout and
//! counts.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::proxy::{Backend, Nginx, Scratch, free_port, run_gapless, serial, toml_str};
use crate::support::{Run, TempFile, TestServer, at, f64_at, needs, u64_at};

fn targets(json: &Value) -> &Vec<Value> {
    at(json, "/targets")
        .as_array()
        .unwrap_or_else(|| panic!("no targets array:\n{json:#}"))
}

/// Checks what every result of several endpoints holds: the run's counts are the sums of the
/// endpoints', and each criterion of the run's verdict is the run's own or names an endpoint.
fn check_sums(json: &Value) {
    let list = targets(json);
    for field in ["total", "ok", "failed", "unsent"] {
        let sum: u64 = list
            .iter()
            .map(|t| u64_at(t, &format!("/requests/{field}")))
            .sum();
        assert_eq!(
            sum,
            u64_at(json, &format!("/requests/{field}")),
            "requests.{field}"
        );
    }
    let names: Vec<&str> = list.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for c in at(json, "/verdict/criteria").as_array().unwrap() {
        match c["target"].as_str() {
            Some(name) => assert!(names.contains(&name), "{c}"),
            None => assert!(
                ["steps", "healthy_before_rollout", "completed"]
                    .contains(&c["kind"].as_str().unwrap()),
                "a run-wide criterion of several endpoints: {c}"
            ),
        }
    }
}

/// Two endpoints on two backends; the second backend is killed during a step: that endpoint has
/// the failure window, during the step, and fails the run (exit 1); the other is clean.
#[test]
fn one_endpoint_killed_fails_the_run_and_only_that_endpoint() {
    let _serial = serial();
    let dir = Scratch::new("targets-kill");
    let (site, api) = (Backend::start("site"), Backend::start("api"));
    let scenario = dir.write(
        "scenario.toml",
        &format!(
            "[[target]]\nname = \"site\"\nurl = {}\n\n\
             [[target]]\nname = \"api\"\nurl = {}\nmethod = \"POST\"\nbody = \"{{}}\"\n\
             version_header = \"x-version\"\n\n\
             [load]\nqps = 400\nwarmup = \"1s\"\ncooldown = \"1s\"\nmax_connect_rate = 20000\n\n\
             [[step]]\nname = \"kill api\"\nrun = {}\n",
            toml_str(&format!("http://127.0.0.1:{}/", site.port())),
            toml_str(&format!("http://127.0.0.1:{}/api", api.port())),
            toml_str(&format!("kill -KILL {} && sleep 0.5", api.pid())),
        ),
    );
    let (html, junit, markdown, fortio) = (
        dir.file("report.html"),
        dir.file("junit.xml"),
        dir.file("summary.md"),
        dir.file("fortio.json"),
    );
    let run = run_gapless(
        &dir,
        &[
            "--scenario",
            &scenario,
            "--html",
            &html,
            "--junit",
            &junit,
            "--markdown",
            &markdown,
            "--fortio-json",
            &fortio,
        ],
        &[],
    );
    let json = &run.json;
    assert_eq!(run.code, 1, "{run:?}");
    check_sums(json);
    let list = targets(json);
    assert_eq!(list.len(), 2);
    check_reports(&dir, json);
    let (site_r, api_r) = (&list[0], &list[1]);
    assert_eq!(site_r["name"], "site");
    assert_eq!(u64_at(site_r, "/requests/failed"), 0, "{run:?}");
    assert_eq!(site_r["verdict"]["passed"], true);
    assert_eq!(u64_at(site_r, "/windows_total"), 0);
    assert_eq!(api_r["name"], "api");
    assert_eq!(api_r["verdict"]["passed"], false);
    assert!(u64_at(api_r, "/requests/failed") > 0, "{run:?}");
    // A killed backend refuses new connections; a request in flight on a kept-alive one as it
    // died is reset or closed (at most one per connection).
    let failed = u64_at(api_r, "/requests/failed");
    let refused = u64_at(api_r, "/errors/connect_refused");
    let broken: u64 = ["reset", "closed_before_response"]
        .iter()
        .map(|c| api_r["errors"][c].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(failed, refused + broken, "{run:?}");
    assert!(broken <= 16, "{run:?}");
    // Its one window starts within the step (plus two of its intervals) and lasts to the end.
    let step_start = f64_at(json, "/steps/0/start_ms");
    let windows = at(api_r, "/windows").as_array().unwrap();
    assert_eq!(windows.len(), 1, "{run:?}");
    let w = &windows[0];
    assert!(
        f64_at(w, "/start_ms") >= step_start - 5.0 && f64_at(w, "/start_ms") <= step_start + 60.0,
        "window at {} ms, step at {step_start} ms",
        w["start_ms"]
    );
    assert_eq!(w["open"], true);
    assert_eq!(w["steps"][0], "kill api");
    // The equal interleave: each endpoint had half of the requests, within one.
    let (a, b) = (
        u64_at(site_r, "/requests/total"),
        u64_at(api_r, "/requests/total"),
    );
    assert!(a.abs_diff(b) <= 1, "{a} vs {b}");
    // The verdict names the endpoint; the text report has a line for each.
    let line = json["verdict"]["line"].as_str().unwrap();
    assert!(line.starts_with("FAIL: api: "), "{line}");
    assert!(!line.contains("site"), "{line}");
    assert!(run.stdout.contains("  site: "), "{}", run.stdout);
    assert!(run.stdout.contains("  api: "), "{}", run.stdout);
    // Nothing answered nowhere: the site kept answering, so the run has no window of its own.
    assert_eq!(u64_at(json, "/windows_total"), 0, "{run:?}");
}

/// The reports of the run above: each names the failing endpoint, and a saved result is judged
/// again per endpoint.
fn check_reports(dir: &Scratch, json: &Value) {
    let html = dir.read("report.html");
    assert!(html.contains("Endpoints (2): which failed when"));
    assert!(
        html.contains("api: gap of ") && html.contains(" during kill api"),
        "the api's gap, in its row, during the step"
    );
    assert!(!html.contains("site: gap") && !html.contains("site: failure window"));
    let junit = dir.read("junit.xml");
    assert!(junit.contains(r#"<testsuite name="gapless 2 endpoints" tests="17" failures="2""#));
    assert!(junit.contains(r#"<testcase classname="gapless.site" name="site: requests kept"/>"#));
    assert!(junit.contains(r#"<testcase classname="gapless.api" name="api: requests kept">"#));
    assert_eq!(
        junit.matches("<failure ").count(),
        2,
        "api: requests kept, availability gap"
    );
    let markdown = dir.read("summary.md");
    assert!(
        markdown.contains("| site | `http://127.0.0.1:"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| **fail** |") && markdown.contains("| api: requests kept | **fail**")
    );
    let fortio: Value = serde_json::from_str(&dir.read("fortio.json")).unwrap();
    assert_eq!(fortio["URL"], json["targets"][0]["url"]);
    assert_eq!(
        fortio["DurationHistogram"]["Count"],
        json["targets"][0]["latency_ms"]["count"]
    );
    assert!(
        fortio["Labels"]
            .as_str()
            .unwrap()
            .contains("endpoint 1 of 2, site")
    );
    // A saved result: judged again with thresholds that allow the api's failures, it passes;
    // as it was, it fails as the run did.
    let saved = dir.write("saved.json", &json.to_string());
    let again = crate::support::run_json(&["report", &saved]);
    assert_eq!(again.0, 1);
    assert_eq!(again.1["verdict"], json["verdict"]);
    assert_eq!(again.1["targets"], json["targets"]);
    let relaxed = crate::support::run_json(&["report", &saved, "--max-failures", "100000"]);
    assert_eq!(relaxed.0, 0, "{:#}", relaxed.1["verdict"]);
    assert_eq!(relaxed.1["targets"][1]["verdict"]["passed"], true);
}

/// The share of each endpoint in every timeline slot: the interleave sends request `k` to endpoint
/// `k mod n`, so in any slot their counts differ by at most one.
#[test]
fn every_endpoint_gets_its_share_in_every_slot() {
    let servers: Vec<TestServer> = (0..3).map(|_| TestServer::healthy()).collect();
    let file = TempFile::with(
        "txt",
        &servers
            .iter()
            .enumerate()
            .map(|(i, s)| format!("GET {}e{i}\n", s.url()))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let (code, json) = Run::targets(file.as_str())
        .qps(300)
        .duration("2s")
        .opt("--slot", "100ms")
        .quiet()
        .json();
    assert_eq!(code, 0, "{json:#}");
    check_sums(&json);
    let list = targets(&json);
    assert_eq!(u64_at(&json, "/requests/total"), 600);
    let slots: Vec<Vec<u64>> = list.iter().map(slot_counts).collect();
    assert_eq!(slots[0].len(), 20);
    for i in 0..slots[0].len() {
        let counts: Vec<u64> = slots.iter().map(|s| s[i]).collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "slot {i}: {counts:?}");
        assert_eq!(counts.iter().sum::<u64>(), 30, "slot {i}: {counts:?}");
    }
    for (i, (t, s)) in list.iter().zip(&servers).enumerate() {
        assert_eq!(u64_at(t, "/requests/total"), 200);
        assert_eq!(s.stats().requests(), 200, "endpoint {i}");
        assert_eq!(t["name"], format!("GET {}e{i}", s.url()));
    }
}

/// Each endpoint's count per slot: ok plus failed.
fn slot_counts(t: &Value) -> Vec<u64> {
    t["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| u64_at(s, "/ok") + u64_at(s, "/failed"))
        .collect()
}

/// Weights share the rate: weight 1 and 3 of 400 req/s send 100 and 300 req/s, evenly spaced,
/// so each slot holds each endpoint's share to within one request; each server sees exactly
/// its endpoint's requests.
#[test]
fn weights_share_the_rate_within_one_request_per_slot() {
    let _machine = crate::support::shared();
    let servers: Vec<TestServer> = (0..2).map(|_| TestServer::healthy()).collect();
    let scenario = TempFile::with(
        "toml",
        &format!(
            "[[target]]\nname = \"light\"\nurl = \"{}a\"\n\n\
             [[target]]\nname = \"heavy\"\nurl = \"{}b\"\nweight = 3\n",
            servers[0].url(),
            servers[1].url()
        ),
    );
    let (code, json) = Run::scenario(scenario.as_str())
        .qps(400)
        .duration("2s")
        .opt("--slot", "100ms")
        .quiet()
        .json();
    assert_eq!(code, 0, "{json:#}");
    check_sums(&json);
    let list = targets(&json);
    assert_eq!(u64_at(&json, "/requests/total"), 800);
    for (t, (want, qps)) in list.iter().zip([(200, 100.0), (600, 300.0)]) {
        assert_eq!(u64_at(t, "/requests/total"), want, "{}", t["name"]);
        assert_eq!(f64_at(t, "/load/qps"), qps, "{}", t["name"]);
        let slots = slot_counts(t);
        assert_eq!(slots.len(), 20);
        let per_slot = qps * 0.1;
        for (i, &n) in slots.iter().enumerate() {
            assert!(
                (n as f64 - per_slot).abs() <= 1.0,
                "{} slot {i}: {n}, its share {per_slot}: {slots:?}",
                t["name"]
            );
        }
    }
    assert_eq!(servers[0].stats().requests(), 200);
    assert_eq!(servers[1].stats().requests(), 600);
}

/// A rate per endpoint: the run's rate is their sum, each endpoint sends its own.
#[test]
fn a_rate_per_endpoint_sets_the_runs_rate() {
    let _machine = crate::support::shared();
    let servers: Vec<TestServer> = (0..3).map(|_| TestServer::healthy()).collect();
    let text: String = servers
        .iter()
        .zip(["20", "30.5", "149.5"])
        .enumerate()
        .map(|(i, (s, q))| {
            format!(
                "[[target]]\nname = \"e{i}\"\nurl = \"{}\"\nqps = {q}\n\n",
                s.url()
            )
        })
        .collect();
    let scenario = TempFile::with("toml", &text);
    let (code, json) = Run::scenario(scenario.as_str())
        .duration("2s")
        .quiet()
        .json();
    assert_eq!(code, 0, "{json:#}");
    check_sums(&json);
    assert_eq!(f64_at(&json, "/load/qps"), 200.0);
    assert_eq!(u64_at(&json, "/requests/total"), 400);
    for ((t, s), (total, qps)) in
        targets(&json)
            .iter()
            .zip(&servers)
            .zip([(40, 20.0), (61, 30.5), (299, 149.5)])
    {
        assert_eq!(f64_at(t, "/load/qps"), qps, "{}", t["name"]);
        assert_eq!(u64_at(t, "/requests/total"), total, "{}", t["name"]);
        assert_eq!(s.stats().requests(), total, "{}", t["name"]);
    }
}

/// Weights and rates given wrong: a usage error (exit 2) on one line saying what to give.
#[test]
fn weights_and_rates_given_wrong_are_usage_errors() {
    let cases: [(&str, &[&str], &str); 5] = [
        (
            "weight = 2\nqps = 10\n",
            &[],
            "endpoint \"a\" has both a weight and a qps: give one",
        ),
        (
            "qps = 10\n",
            &[],
            "endpoint \"b\" has no qps while others have one",
        ),
        (
            "qps = 10\n",
            &["-q", "50"],
            "endpoint \"b\" has no qps while others have one",
        ),
        (
            "weight = 0\n",
            &[],
            "target.weight: must be at least 1 (got 0)",
        ),
        (
            "weight = 65536\n",
            &[],
            "the weights sum to 65537 (reduced), more than 65536",
        ),
    ];
    for (first, args, message) in cases {
        let scenario = TempFile::with(
            "toml",
            &format!(
                "[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n{first}\n\
                 [[target]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/b\"\n"
            ),
        );
        let (code, stdout, stderr, _) = Run::scenario(scenario.as_str()).args(args).output();
        assert_eq!(code, 2, "{first}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains(message), "{first}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    let both = TempFile::with(
        "toml",
        "[[target]]\nurl = \"http://127.0.0.1:1/\"\nqps = 10\n\n\
         [[target]]\nurl = \"http://127.0.0.1:1/b\"\nqps = 5.0001\n",
    );
    let (code, _, stderr, _) = Run::scenario(both.as_str()).output();
    assert_eq!(code, 2);
    assert!(stderr.contains("to the thousandth"), "{stderr}");
    let total = TempFile::with(
        "toml",
        "[[target]]\nurl = \"http://127.0.0.1:1/\"\nqps = 10\n\n\
         [[target]]\nurl = \"http://127.0.0.1:1/b\"\nqps = 5\n",
    );
    let (code, _, stderr, _) = Run::scenario(total.as_str()).qps(50).output();
    assert_eq!(code, 2);
    assert!(
        stderr.contains("the [[target]] qps set the run's rate (their sum, 15 req/s)"),
        "{stderr}"
    );
}

/// Reads one request from `stream` (the head, then content-length bytes of body), `buf` holding
/// what was read past the previous one; `None` once the connection ends.
async fn read_request(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf.drain(..head_end + length).collect())
}

/// A raw server that keeps every request it is sent, byte for byte, and answers 200.
fn recording_server() -> (TestServer, Arc<Mutex<Vec<Vec<u8>>>>) {
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let kept = seen.clone();
    let server = TestServer::raw(move |mut stream| {
        let kept = kept.clone();
        async move {
            let mut buf = Vec::new();
            while let Some(request) = read_request(&mut stream, &mut buf).await {
                kept.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(request);
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    (server, seen)
}

/// Requests received, by path.
type PathCounts = Arc<Mutex<std::collections::BTreeMap<String, u64>>>;

/// A raw keep-alive server that counts the requests to each path and answers each with 200
/// after `delay(path)`.
fn path_server(delay: fn(&str) -> std::time::Duration) -> (TestServer, PathCounts) {
    let counts: PathCounts = Arc::default();
    let kept = counts.clone();
    let server = TestServer::raw(move |mut stream| {
        let kept = kept.clone();
        async move {
            let mut buf = Vec::new();
            while let Some(request) = read_request(&mut stream, &mut buf).await {
                let head = String::from_utf8_lossy(&request);
                let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                *kept
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(path.clone())
                    .or_default() += 1;
                tokio::time::sleep(delay(&path)).await;
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    (server, counts)
}

fn path_counts(counts: &PathCounts) -> Vec<(String, u64)> {
    counts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(p, n)| (p.clone(), *n))
        .collect()
}

/// Two endpoints on one origin share its pool: `-c 2` is the connections to the origin, not
/// per endpoint (as vegeta's `-connections` is per host). The server accepts at most 2, every
/// request is answered, and each endpoint's counts are its own, exactly; the run's connections
/// are the pool's, each counted once (under the endpoint whose request opened it).
#[test]
fn endpoints_on_one_origin_share_its_connections() {
    let (server, counts) = path_server(|_| std::time::Duration::ZERO);
    let base = server.url();
    let file = TempFile::with("txt", &format!("GET {base}a\n\nGET {base}b\n"));
    let (code, json) = Run::targets(file.as_str())
        .qps(200)
        .duration("2s")
        .connections(2)
        .quiet()
        .json();
    assert_eq!(code, 0, "{json:#}");
    check_sums(&json);
    let accepted = server.stats().connections();
    assert!((1..=2).contains(&accepted), "{accepted} connections");
    assert_eq!(
        path_counts(&counts),
        [("/a".to_string(), 200), ("/b".to_string(), 200)]
    );
    let list = targets(&json);
    for t in list {
        assert_eq!(u64_at(t, "/requests/total"), 200, "{}", t["name"]);
        assert_eq!(u64_at(t, "/requests/ok"), 200, "{}", t["name"]);
    }
    let opened: u64 = list.iter().map(|t| u64_at(t, "/connections/opened")).sum();
    assert_eq!(opened, accepted);
    assert_eq!(u64_at(&json, "/connections/opened"), accepted);
}

/// Endpoints on two origins: each origin has its own pool of `-c` connections. With `-c 1`,
/// each server accepts exactly one connection, though one of them serves two endpoints, and
/// every endpoint's counts are exact.
#[test]
fn endpoints_on_two_origins_open_their_own_pools() {
    let (one, one_counts) = path_server(|_| std::time::Duration::ZERO);
    let (two, two_counts) = path_server(|_| std::time::Duration::ZERO);
    let file = TempFile::with(
        "txt",
        &format!(
            "GET {}a\n\nGET {}b\n\nGET {}c\n",
            one.url(),
            two.url(),
            one.url()
        ),
    );
    let (code, json) = Run::targets(file.as_str())
        .qps(150)
        .duration("2s")
        .connections(1)
        .quiet()
        .json();
    assert_eq!(code, 0, "{json:#}");
    check_sums(&json);
    assert_eq!(
        (one.stats().connections(), two.stats().connections()),
        (1, 1)
    );
    assert_eq!(
        path_counts(&one_counts),
        [("/a".to_string(), 100), ("/c".to_string(), 100)]
    );
    assert_eq!(path_counts(&two_counts), [("/b".to_string(), 100)]);
    for t in targets(&json) {
        assert_eq!(u64_at(t, "/requests/ok"), 100, "{}", t["name"]);
    }
    assert_eq!(u64_at(&json, "/connections/opened"), 2);
}

/// Endpoints sharing a pool keep their own deadlines: two paths of one origin answer in
/// 300 ms; the one whose timeout is 150 ms times out every request (class `timeout`), the one
/// whose timeout is 1 s has every request ok, on the same connections. Exact counts each.
#[test]
fn each_endpoint_on_a_shared_pool_keeps_its_own_timeout() {
    let (server, counts) = path_server(|_| std::time::Duration::from_millis(300));
    let base = server.url();
    let scenario = TempFile::with(
        "toml",
        &format!(
            "[[target]]\nname = \"patient\"\nurl = \"{base}patient\"\ntimeout = \"1s\"\n\n\
             [[target]]\nname = \"hasty\"\nurl = \"{base}hasty\"\ntimeout = \"150ms\"\n"
        ),
    );
    let (code, json) = Run::scenario(scenario.as_str())
        .qps(20)
        .duration("2s")
        .connections(8)
        .quiet()
        .json();
    assert_eq!(code, 1, "{json:#}");
    check_sums(&json);
    let list = targets(&json);
    let (patient, hasty) = (&list[0], &list[1]);
    assert_eq!(
        (
            u64_at(patient, "/requests/total"),
            u64_at(patient, "/requests/ok")
        ),
        (20, 20),
        "{patient:#}"
    );
    assert!(f64_at(patient, "/latency_ms/min") >= 300.0, "{patient:#}");
    assert_eq!(patient["verdict"]["passed"], true);
    assert_eq!(
        (
            u64_at(hasty, "/requests/total"),
            u64_at(hasty, "/requests/failed")
        ),
        (20, 20),
        "{hasty:#}"
    );
    assert_eq!(u64_at(hasty, "/errors/timeout"), 20, "{hasty:#}");
    assert_eq!(hasty["verdict"]["passed"], false);
    // Every request was sent. A request that timed out took its connection with it (HTTP/1.1
    // cannot reuse it mid-request): the pool opened another, counted under the endpoint whose
    // request opened it.
    assert_eq!(
        path_counts(&counts),
        [("/hasty".to_string(), 20), ("/patient".to_string(), 20)]
    );
    assert_eq!(
        u64_at(&json, "/connections/opened"),
        server.stats().connections()
    );
}

/// A vegeta targets file with headers and a body file: the server sees each request's line,
/// every header as written (names in lower case, as HTTP/2 sends them) and the body byte for
/// byte, binary bytes and trailing newline included.
#[test]
fn a_vegeta_file_is_sent_as_written() {
    let (server, seen) = recording_server();
    let body: Vec<u8> = b"{\"order\": [1, 2, 3]}\n\x00\xff\r\n".to_vec();
    let body_file = TempFile::new("bin");
    std::fs::write(body_file.path(), &body).unwrap();
    let port = server.addr().port();
    let file = TempFile::with(
        "txt",
        &format!(
            "GET http://127.0.0.1:{port}/health\nX-Account-ID: 8675309\n\n\
             POST http://127.0.0.1:{port}/orders?dry=1\nContent-Type: application/json\n\
             Authorization: Bearer t0k3n\n@{}\n",
            body_file.as_str()
        ),
    );
    let (code, json) = Run::targets(file.as_str())
        .qps(100)
        .duration("500ms")
        .quiet()
        .json();
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(
        targets(&json)[1]["name"],
        format!("POST http://127.0.0.1:{port}/orders?dry=1")
    );
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert_eq!(seen.len(), 50);
    let (mut gets, mut posts) = (0, 0);
    for request in &seen {
        let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = std::str::from_utf8(&request[..head_end]).unwrap();
        let lines: Vec<&str> = head.split("\r\n").collect();
        if head.starts_with("GET ") {
            gets += 1;
            assert_eq!(lines[0], "GET /health HTTP/1.1");
            assert!(lines.contains(&"x-account-id: 8675309"), "{head}");
            assert_eq!(head_end, request.len(), "no body");
        } else {
            posts += 1;
            assert_eq!(lines[0], "POST /orders?dry=1 HTTP/1.1");
            assert!(lines.contains(&"content-type: application/json"), "{head}");
            assert!(lines.contains(&"authorization: Bearer t0k3n"), "{head}");
            assert!(
                lines.contains(&format!("content-length: {}", body.len()).as_str()),
                "{head}"
            );
            assert_eq!(&request[head_end..], &body[..], "the body, byte for byte");
        }
    }
    assert_eq!((gets, posts), (25, 25));
    // The header's secret is kept out of the result.
    assert!(!json.to_string().contains("t0k3n"));
}

/// A malformed targets file: exit 2 before any request, one line naming FILE:LINE and what was
/// expected; `-` reads the file from stdin.
#[test]
fn a_bad_targets_file_names_its_line() {
    let file = TempFile::with(
        "txt",
        "GET http://127.0.0.1:1/\nX-Fine: yes\n\nthis is not a request line\n",
    );
    let (code, stdout, stderr, json) = Run::targets(file.as_str()).output();
    assert_eq!(code, 2, "{stderr}");
    assert!(json.is_none() && stdout.is_empty());
    let line = stderr.trim_end();
    assert!(!line.contains('\n'), "one line: {stderr}");
    assert!(
        line.contains(&format!(
            "{}:4:1: targets: expected a request line, METHOD URL",
            file.as_str()
        )),
        "{stderr}"
    );
    let bad_url = TempFile::with("txt", "GET http://a/\n\nPUT ftp://b/\n");
    let (code, _, stderr, _) = Run::targets(bad_url.as_str()).output();
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("{}:3:5: target.url:", bad_url.as_str())),
        "{stderr}"
    );
    let missing = Run::targets("/nonexistent/targets.txt").output();
    assert_eq!(missing.0, 2);
    assert!(
        missing
            .2
            .contains("cannot read --targets /nonexistent/targets.txt"),
        "{}",
        missing.2
    );
}

/// A single target keeps today's JSON: no `targets` field, criteria without a `target`.
#[test]
fn one_target_has_no_targets_field() {
    let server = TestServer::healthy();
    let file = TempFile::with("txt", &format!("GET {}\n", server.url()));
    let (code, json) = Run::targets(file.as_str())
        .qps(50)
        .duration("200ms")
        .quiet()
        .json();
    assert_eq!(code, 0);
    assert!(json.get("targets").is_none(), "{json:#}");
    assert!(json.get("shard").is_none());
    for c in json["verdict"]["criteria"].as_array().unwrap() {
        assert!(c.get("target").is_none(), "{c}");
    }
    assert_eq!(u64_at(&json, "/requests/total"), 10);
}

/// nginx with two routes to two backends; one backend is killed during a step: that route's
/// endpoint has the window and fails the run, the other is clean, and each endpoint's count is
/// what nginx logged for its route.
#[test]
#[ignore = "needs nginx"]
fn two_routes_through_nginx_one_backend_killed() {
    let binary = needs("nginx");
    let _serial = serial();
    let dir = Scratch::new("targets-nginx");
    let (site, api) = (Backend::start("site"), Backend::start("api"));
    let port = free_port();
    let d = dir.path().display();
    let upstreams = format!(
        "    upstream site {{ server 127.0.0.1:{} max_fails=0; keepalive 16; }}\n\
         \x20   upstream api {{ server 127.0.0.1:{} max_fails=0; keepalive 16; }}",
        site.port(),
        api.port()
    );
    let location = format!(
        "            location /site {{ proxy_pass http://site; proxy_http_version 1.1; \
         proxy_set_header Connection \"\"; proxy_next_upstream off; access_log {d}/site.log; }}\n\
         \x20           location /api {{ proxy_pass http://api; proxy_http_version 1.1; \
         proxy_set_header Connection \"\"; proxy_next_upstream off; access_log {d}/api.log; }}"
    );
    let config = Nginx::config(dir.path(), port, &upstreams, &location);
    let _nginx = Nginx::start(&binary, &dir, port, &config);
    let scenario = dir.write(
        "scenario.toml",
        &format!(
            "[[target]]\nname = \"site\"\nurl = {}\n\n\
             [[target]]\nname = \"api\"\nurl = {}\n\n\
             [load]\nqps = 1000\nconnections = 16\nwarmup = \"1s\"\ncooldown = \"1s\"\n\
             max_connect_rate = 20000\n\n\
             [[step]]\nname = \"kill api\"\nrun = {}\n",
            toml_str(&format!("http://127.0.0.1:{port}/site")),
            toml_str(&format!("http://127.0.0.1:{port}/api")),
            toml_str(&format!("kill -KILL {} && sleep 1", api.pid())),
        ),
    );
    let run = run_gapless(&dir, &["--scenario", &scenario], &[]);
    eprintln!("{}", run.stdout);
    let json = &run.json;
    assert_eq!(run.code, 1, "{run:?}");
    check_sums(json);
    let list = targets(json);
    let logged = |name: &str| dir.read(name).lines().count() as u64;
    let (site_r, api_r) = (&list[0], &list[1]);
    // The site: clean, and exactly what nginx logged for its route.
    assert_eq!(u64_at(site_r, "/requests/failed"), 0, "{run:?}");
    assert_eq!(site_r["verdict"]["passed"], true);
    assert_eq!(u64_at(site_r, "/requests/total"), logged("site.log"));
    assert_eq!(u64_at(site_r, "/codes/200"), logged("site.log"));
    // The api: nginx answered 502 for the dead backend, from the step on, and logged each.
    assert_eq!(api_r["verdict"]["passed"], false);
    assert_eq!(u64_at(api_r, "/requests/total"), logged("api.log"));
    let bad = u64_at(api_r, "/codes/502");
    assert!(
        bad > 0 && bad == u64_at(api_r, "/requests/failed"),
        "{run:?}"
    );
    let step_start = f64_at(json, "/steps/0/start_ms");
    let windows = at(api_r, "/windows").as_array().unwrap();
    assert!(!windows.is_empty());
    assert!(
        f64_at(&windows[0], "/start_ms") >= step_start - 5.0,
        "{:#}",
        windows[0]
    );
    assert_eq!(windows[0]["steps"][0], "kill api");
    let line = json["verdict"]["line"].as_str().unwrap();
    assert!(line.starts_with("FAIL: api: "), "{line}");
}

/// `--targets -` reads the vegeta file from stdin (`vegeta`-style pipelines).
#[test]
fn targets_from_stdin() {
    use std::io::Write as _;
    let (a, b) = (TestServer::healthy(), TestServer::healthy());
    let json = TempFile::new("json");
    let _machine = crate::support::shared();
    let mut child = std::process::Command::new(crate::support::GAPLESS)
        .args([
            "run",
            "--targets",
            "-",
            "-q",
            "40",
            "-d",
            "500ms",
            "--quiet",
            "--json",
        ])
        .arg(json.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    write!(stdin, "GET {}a\n\nGET {}b\n", a.url(), b.url()).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
    assert_eq!(targets(&result).len(), 2);
    assert_eq!((a.stats().requests(), b.stats().requests()), (10, 10));
}
