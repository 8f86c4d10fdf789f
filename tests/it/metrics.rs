//! Live metrics (`--metrics-listen`, `--metrics-linger`, `--metrics-push`): the address is bound
//! before any load (a bad one is exit 2 naming it), a bare port binds loopback only, `/status`
//! has the documented shape, no label holds a secret or a step's command, and (with Debian's
//! real Prometheus and Pushgateway) what Prometheus scraped after the linger and what was pushed
//! equal the JSON result's totals exactly, a 503 window included.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    self, Fault, FaultServer, GAPLESS, TempFile, TestServer, count_at, needs, u64_at,
};

/// A free loopback port: bound, read and released.
fn free_port() -> u16 {
    support::refused_port()
}

/// `GET path` over HTTP/1.0 on `addr`: `(status, body)`, `None` when nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Polls `GET path` until it answers 200, for at most `limit`.
fn get_when_up(addr: SocketAddr, path: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Some((200, body)) = get(addr, path) {
            return body;
        }
        assert!(
            started.elapsed() < limit,
            "nothing answered GET {path} on {addr} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `gapless run` in the background, its JSON result in a temp file; killed on drop.
struct Background {
    child: Child,
    json: TempFile,
    stderr: TempFile,
    _machine: support::Machine,
}

impl Background {
    /// `gapless ARGS... --json FILE [-- COMMAND...]`.
    fn start(args: &[&str], command: &[&str]) -> Background {
        let machine = support::shared();
        let (json, stderr) = (TempFile::new("json"), TempFile::new("stderr"));
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--json", json.as_str()]);
        if !command.is_empty() {
            all.push("--");
            all.extend(command);
        }
        let child = Command::new(GAPLESS)
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(stderr.path())
                    .map(Stdio::from)
                    .expect("a stderr file"),
            )
            .spawn()
            .expect("the gapless binary should start");
        Background {
            child,
            json,
            stderr,
            _machine: machine,
        }
    }

    /// Waits for the exit: `(code, stderr, JSON result)`.
    fn wait(mut self) -> (i32, String, Value) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for gapless") {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "gapless did not finish"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        assert!(!stderr.contains("panicked"), "{stderr}");
        let text = std::fs::read_to_string(self.json.path())
            .unwrap_or_else(|e| panic!("no JSON result ({e}):\n{stderr}"));
        let json = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("gapless exited {status} and wrote JSON that does not parse ({e}):\n{text}\n{stderr}")
        });
        (status.code().unwrap_or(-1), stderr, json)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn an_address_that_cannot_be_bound_is_exit_2_before_any_load() {
    let server = TestServer::healthy();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = taken.local_addr().expect("the bound address").to_string();
    let started = Instant::now();
    let (code, _, stderr, json) = support::run_gapless(&[
        "run",
        &server.url(),
        "-q",
        "50",
        "-d",
        "2s",
        "--metrics-listen",
        &addr,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on --metrics-listen {addr}")),
        "{stderr}"
    );
    assert!(json.is_none(), "no run, no result");
    assert_eq!(server.stats().requests(), 0, "not one request was sent");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "before the load"
    );
    // A value that is not an address is a usage error naming the flag.
    let (code, _, stderr, _) =
        support::run_gapless(&["run", &server.url(), "--metrics-listen", "nowhere"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--metrics-listen"), "{stderr}");
}

#[test]
fn a_push_that_fails_is_said_and_exits_5_after_every_report() {
    let server = TestServer::healthy();
    let refused = free_port();
    let json = TempFile::new("json");
    let (code, _, stderr, _) = support::run_gapless(&[
        "run",
        &server.url(),
        "-q",
        "50",
        "-d",
        "300ms",
        "--json",
        json.as_str(),
        "--metrics-push",
        &format!("http://127.0.0.1:{refused}"),
    ]);
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot push the metrics to http://127.0.0.1:{refused}/metrics/job/gapless/run_id/"
        )),
        "{stderr}"
    );
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).expect("the JSON result"))
            .expect("JSON");
    assert_eq!(
        result["verdict"]["passed"], true,
        "the verdict is the run's own"
    );
}

#[test]
fn several_endpoints_publish_the_run_wide_totals() {
    let (a, b) = (
        TestServer::healthy(),
        TestServer::http(|_| support::Reply::status(503)),
    );
    let targets = TempFile::with("txt", &format!("GET {}\n\nGET {}\n", a.url(), b.url()));
    let port = free_port();
    let run = Background::start(
        &[
            "run",
            "--targets",
            targets.as_str(),
            "-q",
            "100",
            "-d",
            "1s",
            "--metrics-listen",
            &port.to_string(),
            "--metrics-linger",
            "3s",
        ],
        &[],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let text = loop {
        let text = get_when_up(addr, "/metrics", Duration::from_secs(10));
        if text.contains("gapless_verdict_passed") {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(100));
    };
    let (code, _, json) = run.wait();
    assert_eq!(code, 1);
    let run_id = json["run_id"].as_str().expect("run_id").to_string();
    let value = |metric: &str, with: &[(&str, &str)]| {
        let mut all = vec![("run_id", run_id.as_str())];
        all.extend_from_slice(with);
        pushed(&text, metric, &all).unwrap_or_else(|| panic!("{metric} {with:?}:\n{text}"))
    };
    assert_eq!(
        value("gapless_requests_total", &[("outcome", "ok")]),
        u64_at(&json, "/requests/ok") as f64
    );
    assert_eq!(
        value("gapless_requests_total", &[("outcome", "failed")]),
        u64_at(&json, "/requests/failed") as f64
    );
    for (code, n) in as_counts(&json, "/codes") {
        assert_eq!(value("gapless_responses_total", &[("code", &code)]), n);
    }
    assert_eq!(
        value("gapless_failure_windows_total", &[]),
        u64_at(&json, "/windows_total") as f64
    );
    assert!(u64_at(&json, "/requests/failed") > 0 && u64_at(&json, "/requests/ok") > 0);
}

/// The local address of the listening TCP socket on `port`, from `/proc/net/tcp` (IPv4).
fn listening_on(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            let (ip, p) = local.split_once(':')?;
            (*state == "0A" && u16::from_str_radix(p, 16).ok()? == port).then(|| ip.to_string())
        })
        .collect()
}

#[test]
fn a_bare_port_binds_loopback_only_and_status_has_its_shape() {
    let server = TestServer::healthy();
    let port = free_port();
    let run = Background::start(
        &[
            "run",
            &server.url(),
            "-q",
            "100",
            "-d",
            "1500ms",
            "--metrics-listen",
            &port.to_string(),
            "--metrics-linger",
            "3s",
        ],
        &[],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let live: Value = serde_json::from_str(&get_when_up(addr, "/status", Duration::from_secs(5)))
        .expect("/status is JSON");
    // 127.0.0.1 only (0100007F in /proc/net/tcp), not 0.0.0.0.
    assert_eq!(listening_on(port), ["0100007F"]);
    let keys: Vec<&str> = live
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "run_id",
        "shard",
        "state",
        "total",
        "ok",
        "failed",
        "windows",
        "longest_gap_ms",
        "step",
        "passed",
        "finished",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected, "{live}");
    assert_eq!(live["shard"], Value::Null);
    assert_eq!(live["step"], Value::Null);
    assert_eq!(live["finished"], false);
    assert_eq!(live["passed"], true);
    assert_eq!(live["state"], "running");
    assert!(live["longest_gap_ms"].is_f64());
    // During the linger: finished, and the JSON result's totals.
    let started = Instant::now();
    let done = loop {
        let body = get(addr, "/status").expect("served through the linger").1;
        let status: Value = serde_json::from_str(&body).expect("/status is JSON");
        if status["finished"] == true {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{status}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done["state"], "lingering");
    let (code, _, json) = run.wait();
    assert_eq!(code, 0);
    assert_eq!(done["run_id"], json["run_id"]);
    assert_eq!(json["run_id"].as_str().map(str::len), Some(16));
    assert_eq!(done["total"], json["requests"]["total"]);
    assert_eq!(done["ok"], json["requests"]["ok"]);
    assert_eq!(done["failed"], 0);
    assert_eq!(done["passed"], json["verdict"]["passed"]);
    assert!(
        get(addr, "/status").is_none(),
        "the server ends with the run"
    );
}

#[test]
fn no_label_carries_a_header_value_a_url_password_or_a_step_command() {
    let server = TestServer::healthy();
    let port = free_port();
    let url = server.url().replace("http://", "http://alice:pa55word@");
    let run = Background::start(
        &[
            "run",
            &url,
            "-H",
            "X-Custom: headervalue42",
            "-q",
            "50",
            "--warmup",
            "300ms",
            "--cooldown",
            "300ms",
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-linger",
            "2s",
        ],
        &["sh", "-c", "sleep 0.8 && echo stepcommand77"],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut scraped = Vec::new();
    let started = Instant::now();
    // Live (the step running) and final scrapes.
    while started.elapsed() < Duration::from_secs(20) {
        match get(addr, "/metrics") {
            Some((200, body)) => {
                let finished = body.contains("gapless_verdict_passed");
                scraped.push(body);
                if finished {
                    break;
                }
            }
            _ if !scraped.is_empty() => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = get(addr, "/status").map(|s| s.1).unwrap_or_default();
    let (code, _, json) = run.wait();
    assert_eq!(code, 0, "{json:#}");
    assert!(
        scraped
            .iter()
            .any(|s| s.contains("step=\"step 1\",status=\"running\"} 1")),
        "the step was seen running, labelled by its position"
    );
    let last = scraped.last().expect("scraped");
    assert!(last.contains("step=\"step 1\",status=\"ok\"} 1"), "{last}");
    for text in scraped.iter().chain([&status]) {
        for secret in ["pa55word", "headervalue42", "stepcommand77", "alice"] {
            assert!(!text.contains(secret), "{secret} in:\n{text}");
        }
    }
    // Every label is one of the closed set.
    for line in last.lines().filter(|l| !l.starts_with('#')) {
        for (name, _) in labels(line) {
            assert!(
                ["run_id", "outcome", "code", "class", "le", "step", "status"]
                    .contains(&name.as_str()),
                "label {name} in {line}"
            );
        }
    }
}

#[test]
fn status_is_failed_as_soon_as_the_verdict_can_no_longer_pass() {
    let fault = FaultServer::start(
        Fault::Status503,
        Duration::from_millis(50),
        Duration::from_millis(300),
    );
    let port = free_port();
    let run = Background::start(
        &[
            "run",
            &fault.url(),
            "-q",
            "100",
            "--warmup",
            "500ms",
            "--cooldown",
            "1500ms",
            "--metrics-listen",
            &port.to_string(),
            "--metrics-linger",
            "1s",
            "--step-name",
            "flip",
        ],
        &["sh", "-c", &fault.trigger_command()],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut seen: Vec<Value> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        match get(addr, "/status") {
            Some((200, body)) => {
                let status: Value = serde_json::from_str(&body).expect("/status is JSON");
                let finished = status["finished"] == true;
                seen.push(status);
                if finished {
                    break;
                }
            }
            _ if !seen.is_empty() => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, json) = run.wait();
    assert_eq!(code, 1);
    assert!(
        seen.iter()
            .any(|s| s["state"] == "warmup" && s["passed"] == true),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s["step"] == "flip"),
        "the running step is named: {seen:?}"
    );
    let early = seen
        .iter()
        .find(|s| s["passed"] == false)
        .expect("passed turned false");
    assert_eq!(early["finished"], false, "before the verdict: {early}");
    assert!(early["failed"].as_u64() > Some(0));
    let last = seen.last().expect("seen");
    assert_eq!(last["finished"], true);
    assert_eq!(last["passed"], false);
    assert_eq!(last["failed"], json["requests"]["failed"]);
    assert_eq!(last["windows"], json["windows_total"]);
    assert_eq!(last["longest_gap_ms"], json["longest_gap_ms"]);
}

/// The labels of one sample line, `name{a="x",b="y"} value`.
fn labels(line: &str) -> Vec<(String, String)> {
    let Some((_, rest)) = line.split_once('{') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if name.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&'}') {
            break;
        }
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// A program started for a test, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(program: &'static str, args: &[String], log: &TempFile) -> Daemon {
    let log = std::fs::File::create(log.path()).expect("a log file");
    let child = Command::new(needs(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    Daemon(child)
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's answer to the instant query `query`: `(labels, value)` per series.
fn query(prometheus: SocketAddr, query: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let (status, body) = get(
        prometheus,
        &format!("/api/v1/query?query={}", encode(query)),
    )
    .expect("Prometheus answers");
    assert_eq!(status, 200, "{query}: {body}");
    let answer: Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
    answer["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let value = series["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("a sample value");
            (labels, value)
        })
        .collect()
}

/// The last value Prometheus scraped of `metric{run_id=...}` (stale markers aside), by the
/// values of label `by` (`""` for a series without labels of its own).
fn scraped(prometheus: SocketAddr, metric: &str, run_id: &str, by: &str) -> BTreeMap<String, f64> {
    query(
        prometheus,
        &format!("last_over_time({metric}{{run_id=\"{run_id}\"}}[5m])"),
    )
    .into_iter()
    .map(|(labels, value)| (labels.get(by).cloned().unwrap_or_default(), value))
    .collect()
}

/// The value of `metric` with labels `with` in Prometheus text `text`.
fn pushed(text: &str, metric: &str, with: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .find(|l| {
            let labels = labels(l);
            with.iter()
                .all(|(k, v)| labels.iter().any(|(n, x)| n == k && x == v))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn as_counts(json: &Value, pointer: &str) -> BTreeMap<String, f64> {
    json.pointer(pointer)
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0) as f64))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "needs prometheus and prometheus-pushgateway"]
fn prometheus_scrapes_and_the_pushgateway_holds_the_json_results_totals() {
    let (prom_port, gw_port, metrics_port) = (free_port(), free_port(), free_port());
    let storage = support::temp_path("prometheus");
    std::fs::create_dir_all(&storage).expect("a storage directory");
    let _storage = RemoveDir(storage.clone());
    let config = TempFile::with(
        "yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: gapless\n    static_configs:\n      \
             - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    );
    let (prom_log, gw_log) = (TempFile::new("log"), TempFile::new("log"));
    let _prometheus = daemon(
        "prometheus",
        &[
            format!("--config.file={}", config.as_str()),
            format!("--storage.tsdb.path={}", storage.display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        &prom_log,
    );
    let _pushgateway = daemon(
        "prometheus-pushgateway",
        &[format!("--web.listen-address=127.0.0.1:{gw_port}")],
        &gw_log,
    );
    let prometheus = SocketAddr::from(([127, 0, 0, 1], prom_port));
    let gateway = SocketAddr::from(([127, 0, 0, 1], gw_port));
    let up = Duration::from_secs(30);
    get_when_up(prometheus, "/-/ready", up);
    get_when_up(gateway, "/-/ready", up);
    // Prometheus's scrape loop runs (its first scrape finds nothing yet, up == 0), so the run is
    // scraped live from its start.
    let started = Instant::now();
    while query(prometheus, "up{job=\"gapless\"}").is_empty() {
        assert!(started.elapsed() < up, "Prometheus never scraped");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A real 503 window: the step turns the fault on for 400 ms.
    let fault = FaultServer::start(
        Fault::Status503,
        Duration::from_millis(50),
        Duration::from_millis(400),
    );
    let run = Background::start(
        &[
            "run",
            &fault.url(),
            "-q",
            "100",
            "--warmup",
            "1s",
            "--cooldown",
            "1s",
            "--metrics-listen",
            &metrics_port.to_string(),
            "--metrics-linger",
            "4s",
            "--metrics-push",
            &format!("http://127.0.0.1:{gw_port}"),
            "--step-name",
            "flip",
        ],
        &["sh", "-c", &fault.trigger_command()],
    );
    let (code, stderr, json) = run.wait();
    assert_eq!(code, 1, "the 503s fail the verdict: {stderr}");
    let run_id = json["run_id"].as_str().expect("a run_id").to_string();
    let failed = u64_at(&json, "/requests/failed");
    assert!(failed > 0, "the window has failures");
    assert_eq!(count_at(&json, "/codes/503"), failed);

    // What Prometheus scraped last (during the linger) is the JSON result's.
    let p = |metric: &str, by: &str| scraped(prometheus, metric, &run_id, by);
    let requests = p("gapless_requests_total", "outcome");
    assert_eq!(
        requests,
        BTreeMap::from([
            ("failed".to_string(), failed as f64),
            ("ok".to_string(), u64_at(&json, "/requests/ok") as f64),
        ]),
        "{}",
        std::fs::read_to_string(prom_log.path()).unwrap_or_default()
    );
    assert_eq!(
        p("gapless_responses_total", "code"),
        as_counts(&json, "/codes")
    );
    assert_eq!(
        p("gapless_errors_total", "class"),
        as_counts(&json, "/errors")
    );
    let one = |values: BTreeMap<String, f64>| {
        assert_eq!(values.len(), 1, "{values:?}");
        values.into_values().next().unwrap_or(f64::NAN)
    };
    assert_eq!(
        one(p("gapless_failure_windows_total", "")),
        u64_at(&json, "/windows_total") as f64
    );
    assert_eq!(u64_at(&json, "/windows_total"), 1);
    let longest_ms = json["longest_gap_ms"].as_f64().expect("a gap");
    assert!((one(p("gapless_longest_gap_seconds", "")) - longest_ms / 1000.0).abs() < 1e-9);
    assert_eq!(one(p("gapless_verdict_passed", "")), 0.0);
    assert_eq!(
        one(p("gapless_latency_seconds_count", "")),
        u64_at(&json, "/latency_ms/count") as f64
    );
    let steps = p("gapless_step_info", "status");
    assert_eq!(steps.get("ok"), Some(&1.0), "{steps:?}");
    assert_eq!(
        steps.values().sum::<f64>(),
        1.0,
        "one status at a time: {steps:?}"
    );
    // The live values were scraped too: the ok count grew from scrape to scrape.
    let first = one(query(
        prometheus,
        &format!("min_over_time(gapless_requests_total{{run_id=\"{run_id}\",outcome=\"ok\"}}[5m])"),
    )
    .into_iter()
    .map(|(_, v)| (String::new(), v))
    .collect());
    assert!(
        first < u64_at(&json, "/requests/ok") as f64,
        "a live scrape saw {first} of {}",
        u64_at(&json, "/requests/ok")
    );

    // The push: the same totals in the run's group.
    let text = get(gateway, "/metrics").expect("the Pushgateway answers").1;
    let with = |extra: &[(&'static str, String)]| {
        let mut all = vec![("job", "gapless".to_string()), ("run_id", run_id.clone())];
        all.extend(extra.iter().cloned());
        all
    };
    let value = |metric: &str, extra: &[(&'static str, String)]| {
        let labels = with(extra);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pushed(&text, metric, &labels).unwrap_or_else(|| panic!("{metric} {labels:?} in:\n{text}"))
    };
    assert_eq!(
        value("gapless_requests_total", &[("outcome", "ok".into())]),
        u64_at(&json, "/requests/ok") as f64
    );
    assert_eq!(
        value("gapless_requests_total", &[("outcome", "failed".into())]),
        failed as f64
    );
    for (code, n) in as_counts(&json, "/codes") {
        assert_eq!(value("gapless_responses_total", &[("code", code)]), n);
    }
    assert_eq!(value("gapless_failure_windows_total", &[]), 1.0);
    assert_eq!(value("gapless_verdict_passed", &[]), 0.0);
}

/// A directory removed on drop.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
