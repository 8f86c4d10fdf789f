//! Stalls with real faults: the target answering nothing for 1.5 s at 500 requests per second
//! must fail the run by default (`--max-stall 1s`), as one stall attributed to the rollout step
//! that made it, with the hint its evidence fits; a healthy run beside a CPU hog must not stall;
//! a window of 503s is a window and a gap, never a stall (503s are answers); a saved stall is
//! judged again with another `--max-stall`.
//!
//! Each fault lasts 1.5 s, made by a rollout step (so it is attributed) between a 1 s warmup and
//! a 2 s cooldown:
//!
//! - iptables DROP on the target's port inside a network namespace of the test's own
//!   ([`Netns`]; needs root, `ip` and `iptables`),
//! - a userspace proxy that stops forwarding ([`PausingProxy`]; no root needed),
//! - SIGSTOP and SIGCONT of a real nginx worker (needs nginx).
//!
//! Times from the step's scripts are wall-clock stamps (Unix ms, bash's `$EPOCHREALTIME`) taken
//! around each action, compared with the run's clock through `started_at_unix_ms`. The tolerance
//! is two request intervals plus 50 ms (a loaded 2-core machine), plus 1 ms for the rounding of
//! `started_at_unix_ms` to the millisecond.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::netns::{self, Netns};
use crate::support::pausing::PausingProxy;
use crate::support::proxy::{self, BASH_PRELUDE, Backend, Nginx, Scratch};
use crate::support::{
    Reply, Run, TempFile, TestServer, at, count_at, exclusive, f64_at, needs,
    run_json_with_command, shared, u64_at,
};

/// Requests per second of every faulted run.
const QPS: u32 = 500;

/// How long each fault lasts.
const FAULT: Duration = Duration::from_millis(1500);

/// The default `--max-stall`, in ms.
const DEFAULT_MAX_STALL_MS: f64 = 1000.0;

/// The stall hints: exactly one of them names a stall of 500 ms or more.
const STALL_HINTS: [&str; 3] = ["packets-dropped", "process-paused", "target-silent"];

/// How far a stall's boundary may be from the fault's, in ms: two request intervals and 50 ms,
/// plus 1 ms because `started_at_unix_ms` is rounded down to the millisecond.
fn tolerance_ms() -> f64 {
    2.0 * 1000.0 / f64::from(QPS) + 50.0 + 1.0
}

/// `gapless run URL -q 500 --warmup 1s --cooldown 2s --step-name STEP EXTRA... -- bash -c
/// SCRIPT`: `(exit code, stderr, JSON result)`.
fn faulted_run(url: &str, step: &str, extra: &[&str], script: &str) -> (i32, String, Value) {
    let qps = QPS.to_string();
    let mut args = vec!["run", url, "-q", &qps, "--warmup", "1s", "--cooldown", "2s"];
    args.extend_from_slice(&["--step-name", step]);
    args.extend_from_slice(extra);
    let (code, _stdout, stderr, json) = run_json_with_command(&args, &["bash", "-c", script]);
    (code, stderr, json)
}

/// A bash script (after [`BASH_PRELUDE`]): `stamp NAME_before`, `action`, `stamp NAME_after`,
/// nap for [`FAULT`], the same around `undo`, then one line of the four stamps,
/// `NAME_before=... NAME_after=... UNDO_before=... UNDO_after=...` (Unix ms).
fn fault_script(name: &str, action: &str, undo_name: &str, undo: &str) -> String {
    format!(
        "{BASH_PRELUDE}\
         stamp {name}_before\n\
         {action}\n\
         stamp {name}_after\n\
         nap {seconds}\n\
         stamp {undo_name}_before\n\
         {undo}\n\
         stamp {undo_name}_after\n\
         echo \"{name}_before=${name}_before {name}_after=${name}_after \
         {undo_name}_before=${undo_name}_before {undo_name}_after=${undo_name}_after\"\n",
        seconds = FAULT.as_secs_f64()
    )
}

/// The stamp `key` that the step printed, in ms on the run's clock.
fn stamp_ms(json: &Value, key: &str) -> f64 {
    let values = proxy::step_values(at(json, "/steps/0"), key);
    proxy::value(&values, key) - u64_at(json, "/started_at_unix_ms") as f64
}

fn array_at<'a>(json: &'a Value, pointer: &str) -> &'a Vec<Value> {
    at(json, pointer)
        .as_array()
        .unwrap_or_else(|| panic!("{pointer} is not an array:\n{json:#}"))
}

fn str_at<'a>(json: &'a Value, pointer: &str) -> &'a str {
    at(json, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string:\n{json:#}"))
}

/// The verdict's criterion of `kind`.
fn criterion<'a>(json: &'a Value, kind: &str) -> &'a Value {
    array_at(json, "/verdict/criteria")
        .iter()
        .find(|c| c["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} criterion:\n{:#}", at(json, "/verdict")))
}

/// The rule names of the hints, in report order.
fn hint_rules(json: &Value) -> Vec<&str> {
    array_at(json, "/hints")
        .iter()
        .map(|h| h["rule"].as_str().expect("a rule name"))
        .collect()
}

/// Requests of the schedule (one every 1/qps from 0) due in `[from_ms, to_ms)`; `slack_ms`
/// widens (positive) or narrows (negative) the interval at both ends, for times rounded to the
/// microsecond.
fn due_between(json: &Value, from_ms: f64, to_ms: f64, slack_ms: f64) -> u64 {
    let interval = 1000.0 / f64_at(json, "/load/qps");
    let first = ((from_ms - slack_ms) / interval).ceil().max(0.0);
    let end = ((to_ms + slack_ms) / interval).ceil().max(0.0);
    (end - first).max(0.0) as u64
}

/// Checks what every run with one fault of [`FAULT`] shares, and returns its stall: exit 1, one
/// stall (closed) attributed to `step`, `max_stall` the broken criterion at its default of 1 s,
/// the requests that waited across it counted, and of the stall hints exactly `hint`, with the
/// stall's numbers as its evidence (and no cold-pod hint: the stall explains the latency).
fn assert_one_stall(code: i32, json: &Value, step: &str, hint: &str) -> Value {
    assert_eq!(code, 1, "a 1.5 s silence fails by default: {json:#}");
    assert_eq!(u64_at(json, "/verdict/exit_code"), 1);
    assert_eq!(str_at(json, "/steps/0/status"), "ok", "{json:#}");
    assert_eq!(
        u64_at(json, "/stalls_total"),
        1,
        "{:#}",
        at(json, "/stalls")
    );
    let stalls = array_at(json, "/stalls");
    assert_eq!(stalls.len(), 1);
    let stall = stalls[0].clone();
    eprintln!("{step}: stall {stall}");
    assert_eq!(stall["open"], false, "{stall:#}");
    assert_eq!(stall["steps"], serde_json::json!([step]), "{stall:#}");
    let (start, end, duration) = (
        f64_at(&stall, "/start_ms"),
        f64_at(&stall, "/end_ms"),
        f64_at(&stall, "/duration_ms"),
    );
    assert!((end - start - duration).abs() < 0.002, "{stall:#}");
    assert_eq!(f64_at(json, "/longest_stall_ms"), duration);

    // The verdict: max_stall at its default is what broke.
    let max_stall = criterion(json, "max_stall");
    assert_eq!(max_stall["passed"], false, "{max_stall:#}");
    assert_eq!(f64_at(max_stall, "/limit"), DEFAULT_MAX_STALL_MS);
    assert_eq!(f64_at(max_stall, "/measured"), duration);
    assert_eq!(max_stall["source"], "default");
    let reason = str_at(max_stall, "/reason");
    assert!(
        array_at(json, "/verdict/reasons")
            .iter()
            .any(|r| r == reason),
        "{reason:?} is one of the verdict's reasons: {:#}",
        at(json, "/verdict")
    );
    assert!(
        str_at(json, "/verdict/line").contains(reason),
        "{}",
        at(json, "/verdict/line")
    );
    assert_eq!(
        f64_at(json, "/thresholds/max_stall_ms"),
        DEFAULT_MAX_STALL_MS
    );

    // Every request due during the stall waited across it; beside them at most the requests in
    // flight when it began (one per connection) and the one whose answer was its start.
    let waited = u64_at(&stall, "/held") + u64_at(&stall, "/failed");
    let due = due_between(json, start, end, -0.001);
    let most = due_between(json, start, end, 0.001) + u64_at(json, "/load/connections") + 1;
    assert!(
        (due..=most).contains(&waited),
        "held + failed = {waited}, {due} requests were due in the stall (at most {most}): \
         {stall:#}"
    );

    // Exactly one stall hint, with the stall's own numbers.
    let rules = hint_rules(json);
    let named: Vec<&str> = rules
        .iter()
        .copied()
        .filter(|r| STALL_HINTS.contains(r))
        .collect();
    assert_eq!(named, [hint], "hints: {:#}", at(json, "/hints"));
    assert!(
        !rules.contains(&"cold-pods-in-rotation"),
        "the stall is what raised the p99: {rules:?}"
    );
    let evidence = array_at(json, "/hints")
        .iter()
        .find(|h| h["rule"] == hint)
        .and_then(|h| h["evidence"].as_str())
        .expect("the hint's evidence");
    let expected_start = format!(
        "the target answered nothing for {duration:.0} ms at +{:.1} s, during step {step:?}; ",
        start / 1000.0
    );
    let n = |key: &str| u64_at(&stall, key);
    let expected_rest = match hint {
        "packets-dropped" => format!(
            "{} connect attempts timed out and {} requests on kept-alive connections got no \
             answer in it",
            n("/connect_timeouts"),
            n("/unanswered_reused")
        ),
        "process-paused" => format!(
            "{} requests on connections it had just accepted got no answer",
            n("/unanswered_new")
        ),
        _ => format!(
            "{} requests waited across it and were answered late, {} failed",
            n("/held"),
            n("/failed")
        ),
    };
    assert_eq!(evidence, format!("{expected_start}{expected_rest}"));
    stall
}

/// Checks that nothing failed and no connection was left unanswered: every request waited and
/// was answered.
fn assert_nothing_failed(json: &Value, stall: &Value) {
    assert_eq!(u64_at(json, "/requests/failed"), 0, "{json:#}");
    assert_eq!(
        u64_at(json, "/requests/ok"),
        u64_at(json, "/requests/total")
    );
    for key in [
        "/failed",
        "/connect_timeouts",
        "/unanswered_new",
        "/unanswered_reused",
    ] {
        assert_eq!(u64_at(stall, key), 0, "{key}: {stall:#}");
    }
}

// ---------------------------------------------------------------------------------------------
// Packets dropped: iptables DROP inside the test's own network namespace
// ---------------------------------------------------------------------------------------------

/// The step that drops every packet to the server's port for [`FAULT`]: `iptables -I INPUT -p
/// tcp --dport 8080 -j DROP` in the namespace, then `-D`, stamped around both.
fn drop_script(ns: &Netns) -> String {
    let rule = format!("INPUT -p tcp --dport {} -j DROP", netns::PORT);
    fault_script(
        "insert",
        &ns.iptables_command(&format!("-I {rule}")),
        "delete",
        &ns.iptables_command(&format!("-D {rule}")),
    )
}

/// Where the drop's stall begins and ends compared with the rule's insertion and deletion:
/// it begins while the rule goes in, and ends no earlier than the rule goes out.
fn assert_within_the_drop(json: &Value, stall: &Value) {
    let tolerance = tolerance_ms();
    let (start, end) = (f64_at(stall, "/start_ms"), f64_at(stall, "/end_ms"));
    let (inserting, inserted) = (
        stamp_ms(json, "insert_before"),
        stamp_ms(json, "insert_after"),
    );
    let (deleting, deleted) = (
        stamp_ms(json, "delete_before"),
        stamp_ms(json, "delete_after"),
    );
    eprintln!(
        "iptables -I from {inserting:.1} to {inserted:.1} ms, -D from {deleting:.1} to \
         {deleted:.1} ms; stall {start:.1} to {end:.1} ms ({:.1} ms after -D began)",
        end - deleting
    );
    assert!(
        inserting - tolerance <= start && start <= inserted + tolerance,
        "the stall starts at {start} ms, while the rule went in ({inserting}..{inserted} ms, \
         ± {tolerance} ms)"
    );
    // Nothing is answered before the rule is gone (1 ms: the rounding of started_at_unix_ms).
    // TCP then resends what was dropped only at its next retransmission, so the client sees
    // the answers later than the drop's end; never as late as 2.5 s after it.
    assert!(
        end >= deleting - 1.0 && end <= deleting + 2500.0,
        "the stall ends at {end} ms; the rule went out from {deleting} ms"
    );
}

#[test]
#[ignore = "needs root, ip netns and iptables"]
fn dropped_packets_are_one_stall_that_the_requests_wait_across() {
    let _machine = exclusive();
    let ns = Netns::with_server();
    let (code, _, json) = faulted_run(&ns.url(), "drop", &[], &drop_script(&ns));

    let stall = assert_one_stall(code, &json, "drop", "target-silent");
    assert_within_the_drop(&json, &stall);
    // With the default 3 s timeout every request waited out the drop and was answered.
    assert_nothing_failed(&json, &stall);
    assert!(u64_at(&stall, "/held") > 0);
}

#[test]
#[ignore = "needs root, ip netns and iptables"]
fn dropped_packets_with_a_short_timeout_time_out_connecting_and_reading() {
    let _machine = exclusive();
    let ns = Netns::with_server();
    let (code, _, json) = faulted_run(
        &ns.url(),
        "drop",
        &["--timeout", "500ms"],
        &drop_script(&ns),
    );

    let stall = assert_one_stall(code, &json, "drop", "packets-dropped");
    assert_within_the_drop(&json, &stall);
    // The kept-alive connections got no answer, and the new ones were never accepted: those
    // are all the failures, all in the stall.
    let failed = u64_at(&json, "/requests/failed");
    let connects = u64_at(&stall, "/connect_timeouts");
    let reused = u64_at(&stall, "/unanswered_reused");
    assert!(connects > 0 && reused > 0, "{stall:#}");
    assert_eq!(u64_at(&stall, "/unanswered_new"), 0, "{stall:#}");
    assert_eq!(connects + reused, failed, "{stall:#}");
    assert_eq!(u64_at(&stall, "/failed"), failed, "{stall:#}");
    assert_eq!(count_at(&json, "/errors/connect_timeout"), connects);
    assert_eq!(
        count_at(&json, "/errors_by_connection/timeout/reused"),
        reused
    );
    assert_eq!(count_at(&json, "/errors/timeout"), reused);
}

// ---------------------------------------------------------------------------------------------
// A proxy that stops forwarding
// ---------------------------------------------------------------------------------------------

#[test]
fn a_proxy_that_stops_forwarding_is_one_stall_as_long_as_its_pause() {
    let _machine = shared();
    let server = TestServer::healthy();
    // The pause begins 100 ms after the step called: bash starting up takes CPU from the load.
    let proxy = PausingProxy::start(server.addr(), Duration::from_millis(100), FAULT);
    let script = proxy.trigger_command();
    let (code, _, json) = faulted_run(&proxy.url(), "pause", &[], &script);

    assert_eq!(proxy.triggers(), 1, "the step called once");
    let stall = assert_one_stall(code, &json, "pause", "target-silent");
    let (paused, resumed) = proxy.pause_unix_ms().expect("the pause happened");
    let started = u64_at(&json, "/started_at_unix_ms") as f64;
    let (paused, resumed) = (paused - started, resumed - started);
    let (start, duration) = (f64_at(&stall, "/start_ms"), f64_at(&stall, "/duration_ms"));
    eprintln!(
        "pause {paused:.1} to {resumed:.1} ms ({:.1} ms); stall from {start:.1} ms, {duration:.1} \
         ms",
        resumed - paused
    );
    let tolerance = tolerance_ms();
    assert!(
        (start - paused).abs() <= tolerance,
        "the stall starts at {start} ms, the pause at {paused} ms (± {tolerance} ms)"
    );
    assert!(
        (duration - (resumed - paused)).abs() <= tolerance,
        "a stall of {duration} ms for a pause of {} ms (± {tolerance} ms)",
        resumed - paused
    );
    // Nothing failed, and every request reached the target once.
    assert_nothing_failed(&json, &stall);
    assert_eq!(
        server.stats().requests(),
        u64_at(&json, "/requests/total"),
        "every request reached the target once"
    );
    assert_eq!(
        proxy.connections(),
        u64_at(&json, "/connections/opened"),
        "every connection gapless opened went through the proxy"
    );
}

// ---------------------------------------------------------------------------------------------
// A paused process: SIGSTOP and SIGCONT of a real nginx worker
// ---------------------------------------------------------------------------------------------

/// Sends SIGCONT to a process on drop: a stopped nginx worker is never left behind, even by a
/// failing test.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
        }
    }
}

/// The children of `parent`, from `/proc/*/stat` (the field after the state).
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
                    after.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// nginx with one worker answering `return 200` on a free loopback port, and that worker's pid.
fn nginx_one_worker(dir: &Scratch) -> (Nginx, u16, u32) {
    let binary = needs("nginx");
    let port = proxy::free_port();
    let config = Nginx::config(dir.path(), port, "", "            return 200;");
    let nginx = Nginx::start(&binary, dir, port, &config);
    let master: u32 = dir
        .read("nginx.pid")
        .trim()
        .parse()
        .expect("nginx wrote its pid");
    // The master forks its worker after it listens: wait for it.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let workers = children(master);
        if let [worker] = workers[..] {
            return (nginx, port, worker);
        }
        assert!(
            std::time::Instant::now() < until,
            "nginx master {master} should have one worker: {workers:?}\n{}",
            dir.read("error.log")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The step that stops the worker for [`FAULT`], stamped around SIGSTOP and SIGCONT.
fn pause_script(worker: u32) -> String {
    fault_script(
        "stop",
        &format!("kill -STOP {worker}"),
        "cont",
        &format!("kill -CONT {worker}"),
    )
}

#[test]
#[ignore = "needs nginx"]
fn a_stopped_nginx_worker_is_one_stall_as_long_as_its_pause() {
    let _machine = exclusive();
    let dir = Scratch::new("stall-nginx");
    let (_nginx, port, worker) = nginx_one_worker(&dir);
    let _resume = Resume(worker);
    let url = format!("http://127.0.0.1:{port}/");
    let (code, stderr, json) = faulted_run(&url, "sigstop", &[], &pause_script(worker));

    let stall = assert_one_stall(code, &json, "sigstop", "target-silent");
    let (start, duration) = (f64_at(&stall, "/start_ms"), f64_at(&stall, "/duration_ms"));
    let (stopping, stopped) = (
        stamp_ms(&json, "stop_before"),
        stamp_ms(&json, "stop_after"),
    );
    let (continuing, continued) = (
        stamp_ms(&json, "cont_before"),
        stamp_ms(&json, "cont_after"),
    );
    eprintln!(
        "SIGSTOP {stopping:.1}..{stopped:.1} ms, SIGCONT {continuing:.1}..{continued:.1} ms; \
         stall from {start:.1} ms, {duration:.1} ms"
    );
    let tolerance = tolerance_ms();
    assert!(
        stopping - tolerance <= start && start <= stopped + tolerance,
        "the stall starts at {start} ms, the worker stopped at {stopping}..{stopped} ms"
    );
    let (shortest, longest) = (continuing - stopped, continued - stopping);
    assert!(
        shortest - tolerance <= duration && duration <= longest + tolerance,
        "a stall of {duration} ms for a pause of {shortest}..{longest} ms (± {tolerance} ms)"
    );
    assert_nothing_failed(&json, &stall);
    // Someone watching saw it live.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("step \"sigstop\"") && l.contains("  stalled ")),
        "the progress line shows the stall:\n{stderr}"
    );
}

#[test]
#[ignore = "needs nginx"]
fn a_stopped_nginx_worker_with_a_short_timeout_leaves_accepted_connections_unanswered() {
    let _machine = exclusive();
    let dir = Scratch::new("stall-nginx-timeout");
    let (_nginx, port, worker) = nginx_one_worker(&dir);
    let _resume = Resume(worker);
    let url = format!("http://127.0.0.1:{port}/");
    let (code, _, json) = faulted_run(
        &url,
        "sigstop",
        &["--timeout", "500ms"],
        &pause_script(worker),
    );

    let stall = assert_one_stall(code, &json, "sigstop", "process-paused");
    // The kernel kept accepting connections for the stopped worker: requests timed out on
    // accepted connections, and no connect attempt did.
    assert!(u64_at(&stall, "/unanswered_new") > 0, "{stall:#}");
    assert_eq!(u64_at(&stall, "/connect_timeouts"), 0, "{stall:#}");
    assert_eq!(count_at(&json, "/errors/connect_timeout"), 0, "{json:#}");
    assert!(count_at(&json, "/errors/timeout") > 0, "{json:#}");
    assert_eq!(
        u64_at(&stall, "/failed"),
        u64_at(&json, "/requests/failed"),
        "every failure is in the stall: {stall:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// No stall where none is
// ---------------------------------------------------------------------------------------------

/// `stress-ng --cpu 2` in its own process group, killed by group on drop.
struct Hog(Child);

impl Hog {
    fn start() -> Hog {
        use std::os::unix::process::CommandExt;
        let child = Command::new(needs("stress-ng"))
            .args(["--cpu", "2", "--timeout", "120s", "--quiet"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stress-ng");
        // Let its workers start before the load does.
        std::thread::sleep(Duration::from_millis(500));
        Hog(child)
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs stress-ng"]
fn a_healthy_run_beside_a_cpu_hog_has_no_stall() {
    let _machine = exclusive();
    let backend = Backend::start("v1");
    let _hog = Hog::start();
    let url = format!("http://127.0.0.1:{}/", backend.port());
    let (code, json) = Run::new(&url).qps(QPS).duration("5s").quiet().json();

    let longest = f64_at(&json, "/longest_stall_ms");
    eprintln!("beside stress-ng --cpu 2 at {QPS} req/s: longest silence {longest} ms");
    assert_eq!(code, 0, "{:#}", at(&json, "/verdict"));
    assert_eq!(u64_at(&json, "/requests/total"), 2500);
    assert_eq!(u64_at(&json, "/requests/ok"), 2500);
    assert_eq!(
        u64_at(&json, "/stalls_total"),
        0,
        "{:#}",
        at(&json, "/stalls")
    );
    assert!(array_at(&json, "/stalls").is_empty());
    let max_stall = criterion(&json, "max_stall");
    assert_eq!(max_stall["passed"], true);
    assert_eq!(f64_at(max_stall, "/measured"), longest);
    assert!(longest < DEFAULT_MAX_STALL_MS);
}

#[test]
fn a_short_503_window_is_a_window_and_a_gap_not_a_stall() {
    let _machine = exclusive();
    // 503s are answers: the window and its gap are reported exactly as without stalls.
    let json = crate::rollout::assert_one_503_window(QPS, Duration::from_millis(300));
    assert_eq!(
        u64_at(&json, "/stalls_total"),
        0,
        "{:#}",
        at(&json, "/stalls")
    );
    assert!(array_at(&json, "/stalls").is_empty());
    let max_stall = criterion(&json, "max_stall");
    assert_eq!(max_stall["passed"], true, "{max_stall:#}");
    assert!(f64_at(max_stall, "/measured") < DEFAULT_MAX_STALL_MS);
}

// ---------------------------------------------------------------------------------------------
// A saved stall, judged again
// ---------------------------------------------------------------------------------------------

/// The failing JUnit test cases' names.
fn junit_failures(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).expect("JUnit XML parses");
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .filter_map(|c| c.attribute("name").map(str::to_string))
        .collect()
}

/// `gapless report SAVED --json F --junit F EXTRA...`: `(exit code, JSON, JUnit XML)`.
fn report(saved: &TempFile, extra: &[&str]) -> (i32, Value, String) {
    let (json, junit) = (TempFile::new("json"), TempFile::new("xml"));
    let out = Command::new(crate::support::GAPLESS)
        .args(["report", saved.as_str(), "--json", json.as_str()])
        .args(["--junit", junit.as_str()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run gapless report");
    let text = std::fs::read_to_string(json.path()).expect("gapless report wrote JSON");
    let xml = std::fs::read_to_string(junit.path()).expect("gapless report wrote JUnit");
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&text).expect("JSON"),
        xml,
    )
}

#[test]
fn a_saved_stall_is_judged_again_with_another_max_stall() {
    // One connection, request 50 (due at 0.5 s) held 1.2 s: the requests behind it wait.
    let server = TestServer::http(|r| {
        if r.index == 50 {
            Reply::ok().delayed(Duration::from_millis(1200))
        } else {
            Reply::ok()
        }
    });
    let saved = TempFile::new("json");
    let junit = TempFile::new("xml");
    let (code, _, _, _) = Run::new(&server.url())
        .qps(100)
        .duration("3s")
        .connections(1)
        .quiet()
        .opt("--json", saved.as_str())
        .opt("--junit", junit.as_str())
        .output();
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(saved.path()).expect("the saved result"))
            .expect("JSON");
    assert_eq!(code, 1, "a 1.2 s stall fails by default: {original:#}");
    assert_eq!(u64_at(&original, "/requests/failed"), 0);
    assert_eq!(u64_at(&original, "/stalls_total"), 1);
    let duration = f64_at(&original, "/stalls/0/duration_ms");
    assert!(
        (1100.0..1300.0).contains(&duration),
        "a stall of about 1.2 s: {duration} ms"
    );
    let xml = std::fs::read_to_string(junit.path()).expect("the JUnit report");
    assert_eq!(junit_failures(&xml), ["no stall"], "{xml}");

    // A looser --max-stall passes it; the stall is still reported.
    let (code, loose, xml) = report(&saved, &["--max-stall", "5s"]);
    assert_eq!(code, 0, "{:#}", loose["verdict"]);
    let max_stall = criterion(&loose, "max_stall");
    assert_eq!(max_stall["passed"], true);
    assert_eq!(f64_at(max_stall, "/limit"), 5000.0);
    assert_eq!(max_stall["source"], "--max-stall");
    assert_eq!(f64_at(max_stall, "/measured"), duration);
    assert_eq!(f64_at(&loose, "/thresholds/max_stall_ms"), 5000.0);
    assert_eq!(loose["stalls"], original["stalls"]);
    assert_eq!(loose["stalls_total"], 1);
    assert!(junit_failures(&xml).is_empty(), "{xml}");
    assert!(xml.contains(r#"failures="0""#), "{xml}");

    // Its own thresholds: the same failing verdict.
    let (code, same, xml) = report(&saved, &[]);
    assert_eq!(code, 1);
    assert_eq!(same["verdict"], original["verdict"]);
    assert_eq!(junit_failures(&xml), ["no stall"]);
}
