//! Interruption: SIGINT or SIGTERM stops the load at once and still produces the report and the
//! JSON result, marked interrupted, with exit code 130 or 143. A second signal exits at once,
//! and kills every step's process group first.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::{
    GAPLESS, TempFile, TestServer, at, temp_path, u64_at, wait_for_line, wait_not_running,
};
use serde_json::Value;

/// Starts a 3 s run, sends `signal` after 1 s, and returns the exit code, how long the process
/// lived, and the JSON result.
fn interrupted_run(signal: &str) -> (i32, Duration, Value) {
    let _machine = support::shared();
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
    // On a loaded machine the binary may not have installed its handlers yet after 1 s: the
    // default action would kill it with no result, which is not what this test is about.
    wait_until_catching(child.id(), signal);
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
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("gapless exited {status} and wrote JSON that does not parse ({e}):\n{text}")
    });
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

/// Waits (up to 20 s) until process `pid` catches `signal` (`-INT` or `-TERM`): its bit in
/// `SigCgt` of `/proc/PID/status` (bit `signo - 1`).
fn wait_until_catching(pid: u32, signal: &str) {
    let signo = match signal {
        "-INT" => 2,
        "-TERM" => 15,
        other => panic!("no signal number known for {other}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signo - 1)) != 0);
        if caught {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gapless {pid} installed no handler for {signal} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to `pid` with kill(1).
fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(sent.success(), "kill {signal} {pid} failed");
}

#[test]
fn a_second_sigint_exits_at_once_and_leaves_no_step_running() {
    let _machine = support::shared();
    // A watcher (background step) whose group holds a `sleep 300`, and a foreground step that
    // leaves a process outside its group holding its output pipe: after the first SIGINT, the
    // run waits up to 500 ms for that output to drain, still before the watchers are stopped.
    // The second SIGINT comes then. Before, `process::exit` skipped every destructor and the
    // watcher's `sleep 300` outlived gapless.
    let server = TestServer::healthy();
    let watcher_pid = TempFile::new("pid");
    let escaped_pid = TempFile::new("pid");
    let scenario = TempFile::with(
        "toml",
        &format!(
            r#"[target]
url = "{url}"

[load]
qps = 20
warmup = "200ms"
cooldown = "1s"

[[step]]
name = "watch"
run = "sleep 300 & echo $! > {watcher}; wait"
background = true

[[step]]
name = "hold"
run = "setsid sh -c 'echo $$ > {escaped}; exec sleep 5' & sleep 30"
"#,
            url = server.url(),
            watcher = watcher_pid.as_str(),
            escaped = escaped_pid.as_str(),
        ),
    );
    let started = Instant::now();
    let mut child = Command::new(GAPLESS)
        .args(["run", "--scenario", scenario.as_str(), "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gapless binary should start");
    let watcher: u32 = wait_for_line(watcher_pid.path(), Duration::from_secs(10))
        .and_then(|words| words.first()?.parse().ok())
        .expect("the watcher started its sleep");
    let escaped: u32 = wait_for_line(escaped_pid.path(), Duration::from_secs(10))
        .and_then(|words| words.first()?.parse().ok())
        .expect("the foreground step started");
    signal(child.id(), "-INT");
    std::thread::sleep(Duration::from_millis(150));
    signal(child.id(), "-INT");
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for gapless") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gapless did not exit after two SIGINTs");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = Command::new("kill")
        .args(["-KILL", &escaped.to_string()])
        .status();
    let survived = !wait_not_running(watcher, Duration::from_secs(2));
    if survived {
        let _ = Command::new("kill")
            .args(["-KILL", &watcher.to_string()])
            .status();
    }
    assert_eq!(status.code(), Some(130));
    assert!(!survived, "the watcher's sleep {watcher} outlived gapless");
}
