//! Interruption: SIGINT or SIGTERM stops the load at once and still produces the report and the
//! JSON result, marked interrupted, with exit code 130 or 143.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{GAPLESS, TestServer, at, temp_path, u64_at};

/// Starts a 3 s run, sends `signal` after 1 s, and returns the exit code, how long the process
/// lived, and the JSON result.
fn interrupted_run(signal: &str) -> (i32, Duration, Value) {
    let server = TestServer::healthy();
    let json_path = temp_path("json");
    let started = Instant::now();
    let mut child = Command::new(GAPLESS)
        .args(["run", &server.url(), "-q", "100", "-d", "3s", "-c", "2"])
        .arg("--json")
        .arg(&json_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gapless binary should start");
    std::thread::sleep(Duration::from_secs(1));
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("run kill(1)");
    assert!(sent.success(), "kill {signal} failed");
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for gapless") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gapless did not stop after {signal}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let lived = started.elapsed();
    let text = std::fs::read_to_string(&json_path).expect("an interrupted run still writes JSON");
    let _ = std::fs::remove_file(&json_path);
    let json = serde_json::from_str(&text).expect("the JSON result parses");
    (status.code().unwrap_or(-1), lived, json)
}

fn assert_interrupted(json: &Value, exit_code: u64) {
    assert_eq!(at(json, "/interrupted"), true);
    assert_eq!(at(json, "/verdict/passed"), false);
    assert_eq!(u64_at(json, "/verdict/exit_code"), exit_code);
    // About 100 requests were due in the first second; a 3 s run would have made 300.
    let total = u64_at(json, "/requests/total");
    assert!(
        (50..250).contains(&total),
        "{total} requests in about 1 s at 100 qps"
    );
    assert_eq!(
        u64_at(json, "/requests/ok"),
        total,
        "nothing failed before the signal"
    );
}

#[test]
fn sigint_stops_the_run_with_exit_130() {
    let (code, lived, json) = interrupted_run("-INT");
    assert_eq!(code, 130);
    assert!(
        lived < Duration::from_millis(2500),
        "stopped after {lived:?}"
    );
    assert_interrupted(&json, 130);
}

#[test]
fn sigterm_stops_the_run_with_exit_143() {
    let (code, lived, json) = interrupted_run("-TERM");
    assert_eq!(code, 143);
    assert!(
        lived < Duration::from_millis(2500),
        "stopped after {lived:?}"
    );
    assert_interrupted(&json, 143);
}
