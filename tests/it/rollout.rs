//! The rollout runner, end to end: a scenario's steps run on the load's clock, failures found
//! while they run become windows attributed to the step, and each way a run can end has its exit
//! code (0 pass, 1 dropped requests, 2 bad scenario, 3 failed step, 4 unhealthy before the
//! rollout, 130 interrupted).
//!
//! The fault-injection tests use [`FaultServer`]: the step dials the server's control port (with
//! bash's `/dev/tcp`) and waits for its `on`; the server misbehaves for a length measured on its
//! own clock. The timing-sensitive test holds [`LOAD`] exclusively so that no other test of this
//! file loads the machine meanwhile; the other load tests share it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::{
    Fault, FaultServer, GAPLESS, Reply, Run, TempFile, TestServer, at, count_at, counts, counts_at,
    exclusive, f64_at, is_running, run_json_with_command, shared, u64_at, wait_for_line,
    wait_not_running,
};
use serde_json::Value;

/// Writes a scenario file.
fn scenario(text: &str) -> TempFile {
    TempFile::with("toml", text)
}

/// Runs `gapless run --scenario FILE --quiet` and returns the exit code and the JSON result.
fn run_scenario(file: &TempFile) -> (i32, Value) {
    Run::scenario(file.as_str()).quiet().json()
}

fn str_at<'a>(json: &'a Value, pointer: &str) -> &'a str {
    at(json, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string:\n{json:#}"))
}

fn array_at<'a>(json: &'a Value, pointer: &str) -> &'a Vec<Value> {
    at(json, pointer)
        .as_array()
        .unwrap_or_else(|| panic!("{pointer} is not an array:\n{json:#}"))
}

/// The names in a JSON array of strings (`steps` of a window).
fn names_at(json: &Value, pointer: &str) -> Vec<String> {
    array_at(json, pointer)
        .iter()
        .map(|v| v.as_str().expect("a name").to_string())
        .collect()
}

/// `(name, requests)` of every phase, in order.
fn phases(json: &Value) -> Vec<(String, u64)> {
    array_at(json, "/phases")
        .iter()
        .map(|p| (str_at(p, "/name").to_string(), u64_at(p, "/requests")))
        .collect()
}

/// Checks what every finished run with steps shares: the phases are contiguous and split the
/// requests exactly, each outcome is counted once, and the verdict matches the exit code.
fn assert_consistent(code: i32, json: &Value) {
    let total = u64_at(json, "/requests/total");
    assert_eq!(
        u64_at(json, "/requests/ok") + u64_at(json, "/requests/failed"),
        total
    );
    let by_phase: u64 = phases(json).iter().map(|(_, n)| n).sum();
    assert_eq!(by_phase, total, "the phases split the requests: {json:#}");
    let list = array_at(json, "/phases");
    for pair in list.windows(2) {
        assert_eq!(
            f64_at(&pair[0], "/end_ms"),
            f64_at(&pair[1], "/start_ms"),
            "phases are contiguous: {json:#}"
        );
    }
    assert_eq!(f64_at(&list[0], "/start_ms"), 0.0);
    assert_eq!(
        f64_at(list.last().expect("a phase"), "/end_ms"),
        f64_at(json, "/load/duration_ms")
    );
    let outcomes: u64 = counts_at(json, "/codes")
        .iter()
        .map(|(_, n)| n)
        .sum::<u64>()
        + counts_at(json, "/errors")
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>();
    assert_eq!(outcomes, total, "one outcome per request: {json:#}");
    assert_eq!(
        i64::from(code),
        at(json, "/verdict/exit_code").as_i64().unwrap()
    );
    assert_eq!(at(json, "/verdict/passed"), code == 0);
    assert_eq!(
        u64_at(json, "/windows_total"),
        array_at(json, "/windows").len() as u64
    );
    // The warmup's row has failures exactly when the run exited 4 (unhealthy before the
    // rollout): the phase table and the exit code tell the same story.
    if str_at(&list[0], "/name") == "warmup" {
        assert_eq!(
            u64_at(&list[0], "/failed") > 0,
            code == 4,
            "warmup row vs exit code {code}: {:#}",
            at(json, "/phases")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Failure windows caused by a step
// ---------------------------------------------------------------------------------------------

/// The fault begins this long after the step dialed the control port. The step's `bash` starting
/// up takes CPU from the load on this 2-core machine; a fault that began at the call would put
/// the requests that startup delayed right on the window's first boundary (observed: the
/// window then came out 2 to 4 ms too long, every request counted correctly).
const FAULT_AFTER: Duration = Duration::from_millis(100);

/// A scenario loading `url` at `qps` with a 1 s warmup and cooldown around one step.
fn one_step_scenario(url: &str, qps: u32, step: &str, run: &str) -> TempFile {
    scenario(&format!(
        r#"[target]
url = "{url}"

[load]
qps = {qps}
warmup = "1s"
cooldown = "1s"

[[step]]
name = "{step}"
run = "{run}"
"#
    ))
}

/// How far a window's length may be from the length of the fault that caused it, in ms.
///
/// A gap's length is exact: its failed requests are consecutive, so it lasts `failed` intervals
/// (checked exactly below). Which requests fail is decided by the server's clock when each one
/// arrives, so the count can be off by one at each end, plus the requests whose arrival was
/// delayed across a boundary: by at most the largest send lateness gapless measured (the VM is
/// noisy: other work shares its two cores). `intervals` intervals plus that lateness.
fn window_tolerance_ms(json: &Value, intervals: f64) -> f64 {
    intervals * 1000.0 / f64_at(json, "/load/qps") + f64_at(json, "/lateness_ms/max")
}

/// Checks that a gap lasts its failed requests' intervals (its boundaries are send times, each
/// off its due time by that request's send lateness), and that this is `expected_ms` within
/// [`window_tolerance_ms`] of two intervals.
fn assert_gap_length(json: &Value, w: &Value, expected_ms: f64) {
    let interval_ms = 1000.0 / f64_at(json, "/load/qps");
    let duration = f64_at(w, "/duration_ms");
    assert_eq!(u64_at(w, "/ok"), 0, "a gap: nothing succeeded inside");
    // (Times are rounded to the microsecond.)
    let lateness = f64_at(json, "/lateness_ms/max");
    assert!(
        (duration - u64_at(w, "/failed") as f64 * interval_ms).abs() <= lateness + 0.002,
        "a gap is as long as its consecutive failures, within the send lateness: {w:#}"
    );
    assert!((f64_at(w, "/end_ms") - f64_at(w, "/start_ms") - duration).abs() < 0.002);
    let tolerance = window_tolerance_ms(json, 2.0);
    assert!(
        (duration - expected_ms).abs() <= tolerance,
        "window of {duration} ms for a fault of {expected_ms} ms (± {tolerance} ms): {w:#}"
    );
}

#[test]
fn a_503_window_is_found_measured_and_attributed_to_the_step() {
    let _machine = exclusive();
    assert_one_503_window(1000, Duration::from_millis(500));
}

/// Runs `qps` requests per second at a [`FaultServer`] that a step named `flip` makes answer 503
/// for `fault_len`, and checks the one window it makes: every 503 served counted in it, a gap
/// as long as the fault (within [`window_tolerance_ms`]), attributed to the step, and the
/// verdict line naming it. Returns the JSON result. The caller holds the machine
/// [`exclusive`]ly: the window is measured to the millisecond.
pub fn assert_one_503_window(qps: u32, fault_len: Duration) -> Value {
    let server = FaultServer::start(Fault::Status503, FAULT_AFTER, fault_len);
    let file = one_step_scenario(&server.url(), qps, "flip", &server.trigger_command());
    let (code, json) = run_scenario(&file);

    assert_eq!(code, 1, "dropped requests exit 1: {json:#}");
    assert_consistent(code, &json);
    assert_eq!(
        server.triggers(),
        1,
        "the step dialed the control port once"
    );
    assert_eq!(str_at(&json, "/steps/0/status"), "ok");
    let served_503 = server.faulted();
    let windows = array_at(&json, "/windows");
    assert_eq!(windows.len(), 1, "one window: {:#}", at(&json, "/windows"));
    let w = &windows[0];
    let duration = f64_at(w, "/duration_ms");
    eprintln!(
        "503 window: {duration} ms ({}..{}), {} failed; the server served {served_503} 503s, \
         first to last {:?}; send lateness max {} ms",
        f64_at(w, "/start_ms"),
        f64_at(w, "/end_ms"),
        u64_at(w, "/failed"),
        server.faulted_span(),
        f64_at(&json, "/lateness_ms/max"),
    );

    // Exactly what the server did.
    assert_eq!(
        u64_at(w, "/failed"),
        served_503,
        "every 503 served is counted"
    );
    assert_eq!(counts_at(w, "/codes"), counts(&[("503", served_503)]));
    assert_eq!(counts_at(w, "/errors"), counts(&[]));
    assert_eq!(counts_at(&json, "/errors"), counts(&[]));
    assert_eq!(count_at(&json, "/codes/503"), served_503);
    assert_eq!(u64_at(&json, "/requests/failed"), served_503);
    assert_eq!(
        server.ok() + served_503,
        u64_at(&json, "/requests/total"),
        "every request reached the server and was answered"
    );
    assert_eq!(count_at(&json, "/codes/200"), server.ok());

    // A gap, as long as the server was unavailable.
    assert_eq!(u64_at(w, "/ok"), 0, "a gap: nothing succeeded inside");
    assert_eq!(at(w, "/open"), false);
    assert_eq!(u64_at(&json, "/gaps_total"), 1);
    assert_eq!(at(&json, "/gaps/0"), w, "the window is also the gap");
    assert_gap_length(&json, w, fault_len.as_secs_f64() * 1000.0);
    assert_eq!(f64_at(&json, "/longest_gap_ms"), duration);
    assert_eq!(f64_at(&json, "/total_gap_ms"), duration);

    // Attributed to the step: it starts while the step runs (the step waits for the server's
    // "on") and goes on into the cooldown, long after the step is over.
    assert_eq!(names_at(w, "/steps"), ["flip"]);
    assert!(f64_at(&json, "/steps/0/start_ms") <= f64_at(w, "/start_ms"));
    assert!(f64_at(w, "/start_ms") <= f64_at(&json, "/steps/0/end_ms"));
    let list = array_at(&json, "/phases");
    assert_eq!(
        phases(&json)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["warmup", "steps", "cooldown"]
    );
    assert_eq!(
        u64_at(&list[0], "/failed"),
        0,
        "nothing failed during warmup"
    );
    assert_eq!(
        u64_at(&list[1], "/failed") + u64_at(&list[2], "/failed"),
        served_503
    );

    let line = str_at(&json, "/verdict/line");
    assert!(
        line.starts_with(&format!("FAIL: {served_503} of ")),
        "{line}"
    );
    assert!(line.contains(" in 1 window;"), "{line}");
    assert!(line.contains("; longest gap "), "{line}");
    assert!(line.ends_with(r#" during step "flip""#), "{line}");
    json
}

/// Error classes a closed port and closed connections may produce, none of them `other`.
const REFUSAL_CLASSES: [&str; 3] = ["closed_before_response", "connect_refused", "reset"];

#[test]
fn a_closed_port_is_a_connect_refused_window_attributed_to_the_step() {
    let _machine = shared();
    let server = FaultServer::start(Fault::Refuse, FAULT_AFTER, Duration::from_millis(300));
    let file = one_step_scenario(&server.url(), 500, "restart", &server.trigger_command());
    let (code, json) = run_scenario(&file);

    assert_eq!(code, 1, "dropped requests exit 1: {json:#}");
    assert_consistent(code, &json);
    assert_eq!(str_at(&json, "/steps/0/status"), "ok");
    let outage = server.fault_length().expect("the step closed the port");
    let windows = array_at(&json, "/windows");
    eprintln!(
        "refused: outage {outage:?}, windows {:#}, connections {}",
        at(&json, "/windows"),
        at(&json, "/connections")
    );
    assert_eq!(windows.len(), 1, "one window: {:#}", at(&json, "/windows"));
    let w = &windows[0];
    let failed = u64_at(&json, "/requests/failed");
    assert_eq!(
        u64_at(w, "/failed"),
        failed,
        "every failure is in the window"
    );
    assert_eq!(u64_at(w, "/ok"), 0, "a gap");
    assert_eq!(
        u64_at(&json, "/requests/ok"),
        server.ok(),
        "every success was served by the server"
    );
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", server.ok())]));
    assert_eq!(counts_at(w, "/codes"), counts(&[]));
    let errors = counts_at(w, "/errors");
    assert_eq!(errors, counts_at(&json, "/errors"));
    assert!(
        count_at(w, "/errors/connect_refused") > 0,
        "a closed port refuses connections: {errors:?}"
    );
    for (class, _) in &errors {
        assert!(
            REFUSAL_CLASSES.contains(&class.as_str()),
            "{class} is not a class a closed port produces: {errors:?}"
        );
    }
    let refused = count_at(w, "/errors/connect_refused");
    assert_eq!(
        refused,
        u64_at(&json, "/connections/connect_failures"),
        "each refusal is one failed connection attempt"
    );
    assert_eq!(
        u64_at(&json, "/errors_by_connection/connect_refused/new"),
        refused
    );
    // Apart from the requests in flight when the server closed their connection (at most one
    // per connection), every failure is a refused connection attempt.
    assert!(
        failed - refused <= u64_at(&json, "/load/connections"),
        "{failed} failed, {refused} refused: {errors:?}"
    );
    assert_gap_length(&json, w, outage.as_secs_f64() * 1000.0);
    assert_eq!(names_at(w, "/steps"), ["restart"]);
    let line = str_at(&json, "/verdict/line");
    assert!(line.starts_with("FAIL: "), "{line}");
    assert!(line.contains("connect_refused: "), "{line}");
    assert!(line.ends_with(r#" during step "restart""#), "{line}");
    // Nothing listened at the target's address (a proxy stopped and started again): not stale
    // endpoints behind a live proxy, nor replicas all down behind one.
    let hints: Vec<&str> = array_at(&json, "/hints")
        .iter()
        .map(|h| h["rule"].as_str().expect("a rule"))
        .collect();
    assert!(hints.contains(&"listener-down"), "{hints:?}");
    assert!(!hints.contains(&"endpoints-removed-late"), "{hints:?}");
    assert!(!hints.contains(&"full-outage"), "{hints:?}");
}

#[test]
fn reset_connections_are_a_reset_window_attributed_to_the_step() {
    let _machine = shared();
    let server = FaultServer::start(Fault::Reset, FAULT_AFTER, Duration::from_millis(300));
    let file = one_step_scenario(&server.url(), 500, "recycle", &server.trigger_command());
    let (code, json) = run_scenario(&file);

    assert_eq!(code, 1, "dropped requests exit 1: {json:#}");
    assert_consistent(code, &json);
    assert_eq!(str_at(&json, "/steps/0/status"), "ok");
    let resets = server.faulted();
    let windows = array_at(&json, "/windows");
    eprintln!(
        "reset: {resets} resets over {:?}, windows {:#}, connections {}",
        server.faulted_span(),
        at(&json, "/windows"),
        at(&json, "/connections")
    );
    assert_eq!(windows.len(), 1, "one window: {:#}", at(&json, "/windows"));
    let w = &windows[0];
    assert_eq!(u64_at(w, "/failed"), resets, "one failure per reset");
    assert_eq!(u64_at(&json, "/requests/failed"), resets);
    assert_eq!(u64_at(w, "/ok"), 0, "a gap");
    assert_eq!(
        server.ok() + resets,
        u64_at(&json, "/requests/total"),
        "every request reached the server"
    );
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", server.ok())]));
    assert_eq!(counts_at(w, "/errors"), counts(&[("reset", resets)]));
    assert_eq!(counts_at(&json, "/errors"), counts(&[("reset", resets)]));
    // The connections that were kept alive fail once each; every later attempt opens a new
    // connection, which the server resets too.
    let reused = u64_at(&json, "/errors_by_connection/reset/reused");
    let new = u64_at(&json, "/errors_by_connection/reset/new");
    assert_eq!(reused + new, resets);
    assert!(
        (1..=u64_at(&json, "/load/connections")).contains(&reused),
        "at most one per kept-alive connection: {reused}"
    );
    assert_eq!(
        u64_at(&json, "/connections/opened"),
        server.connections(),
        "every connection opened was accepted by the server"
    );
    assert_eq!(u64_at(w, "/failed_on_reused_connections"), reused);
    assert_eq!(u64_at(w, "/failed_on_new_connections"), new);
    assert_gap_length(&json, w, 300.0);
    assert_eq!(names_at(w, "/steps"), ["recycle"]);
    let line = str_at(&json, "/verdict/line");
    assert!(line.starts_with(&format!("FAIL: {resets} of ")), "{line}");
    assert!(line.contains(&format!("(reset: {resets})")), "{line}");
    assert!(line.ends_with(r#" during step "recycle""#), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Steps that go well, fail, hang, or never run
// ---------------------------------------------------------------------------------------------

/// A scenario loading `url` at 200 qps with a 300 ms warmup and cooldown around `steps` (TOML
/// `[[step]]` tables).
fn scenario_with_steps(url: &str, steps: &str) -> TempFile {
    scenario(&format!(
        r#"[target]
url = "{url}"

[load]
qps = 200
warmup = "300ms"
cooldown = "300ms"

{steps}"#
    ))
}

fn assert_no_windows(json: &Value) {
    assert_eq!(array_at(json, "/windows").len(), 0, "{json:#}");
    assert_eq!(u64_at(json, "/windows_total"), 0);
    assert_eq!(array_at(json, "/gaps").len(), 0);
    assert_eq!(u64_at(json, "/gaps_total"), 0);
    assert!(at(json, "/longest_gap_ms").is_null());
    assert_eq!(f64_at(json, "/total_gap_ms"), 0.0);
}

#[test]
fn a_rollout_that_changes_nothing_passes() {
    let _machine = shared();
    let server = TestServer::healthy();
    let file = scenario(&format!(
        r#"[target]
url = "{}"

[load]
qps = 200
warmup = "500ms"
cooldown = "500ms"

[[step]]
name = "noop"
run = "true"

[[step]]
name = "pause"
sleep = "300ms"
"#,
        server.url()
    ));
    let (code, json) = run_scenario(&file);

    assert_eq!(code, 0, "{json:#}");
    assert_consistent(code, &json);
    assert_no_windows(&json);
    assert_eq!(
        str_at(&json, "/verdict/line"),
        "PASS: every request succeeded"
    );
    assert_eq!(array_at(&json, "/verdict/reasons").len(), 0);
    let total = u64_at(&json, "/requests/total");
    assert_eq!(u64_at(&json, "/requests/ok"), total);
    assert_eq!(counts_at(&json, "/codes"), counts(&[("200", total)]));
    assert_eq!(
        server.stats().requests(),
        total,
        "every attempt reached the target"
    );
    // The load lasts warmup + steps + cooldown, one request every 5 ms.
    let length = f64_at(&json, "/load/duration_ms");
    assert!(
        (total as f64 - length / 5.0).abs() <= 1.0,
        "{total} requests in {length} ms at 200 qps"
    );

    let phases = phases(&json);
    let names: Vec<&str> = phases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["warmup", "steps", "cooldown"]);
    assert_eq!(phases.iter().map(|(_, n)| n).sum::<u64>(), total);
    // Exactly the requests intended in the first 500 ms at 200 qps: those due while the
    // warmup's last answers came in count in the steps phase.
    assert_eq!(phases[0].1, 100, "warmup: {phases:?}");
    assert_eq!(f64_at(&array_at(&json, "/phases")[0], "/end_ms"), 500.0);
    assert!(
        phases[1].1 >= 60,
        "the steps took 300 ms or more: {phases:?}"
    );
    assert!((99..=101).contains(&phases[2].1), "cooldown: {phases:?}");
    for phase in array_at(&json, "/phases") {
        assert_eq!(u64_at(phase, "/failed"), 0);
        assert_eq!(u64_at(phase, "/ok"), u64_at(phase, "/requests"));
    }

    let steps = array_at(&json, "/steps");
    assert_eq!(steps.len(), 2);
    assert_eq!(str_at(&steps[0], "/name"), "noop");
    assert_eq!(str_at(&steps[0], "/command"), "true");
    assert_eq!(str_at(&steps[0], "/status"), "ok");
    assert_eq!(at(&steps[0], "/exit_code"), 0);
    assert!(at(&steps[0], "/problem").is_null());
    assert_eq!(str_at(&steps[1], "/name"), "pause");
    assert_eq!(str_at(&steps[1], "/command"), "sleep 300ms");
    assert_eq!(str_at(&steps[1], "/status"), "ok");
    assert!(
        at(&steps[1], "/exit_code").is_null(),
        "a pause runs no command"
    );
    // In order, inside the steps phase.
    let list = array_at(&json, "/phases");
    let (steps_start, steps_end) = (f64_at(&list[1], "/start_ms"), f64_at(&list[1], "/end_ms"));
    assert!(steps_start >= 500.0);
    assert!(steps_start <= f64_at(&steps[0], "/start_ms"));
    assert!(f64_at(&steps[0], "/end_ms") <= f64_at(&steps[1], "/start_ms"));
    assert!(f64_at(&steps[1], "/end_ms") - f64_at(&steps[1], "/start_ms") >= 300.0);
    assert!(f64_at(&steps[1], "/end_ms") <= steps_end);
    assert!(
        (length - steps_end - 500.0).abs() < 0.01,
        "a 500 ms cooldown"
    );
}

#[test]
fn a_failing_step_exits_3_and_skips_the_rest() {
    let _machine = shared();
    let server = TestServer::healthy();
    let file = scenario_with_steps(
        &server.url(),
        r#"[[step]]
name = "bad"
run = "echo about to fail; exit 7"

[[step]]
name = "never"
run = "echo should not run"
"#,
    );
    let (code, json) = run_scenario(&file);

    assert_eq!(code, 3, "{json:#}");
    assert_consistent(code, &json);
    assert_no_windows(&json);
    assert_eq!(u64_at(&json, "/requests/failed"), 0);
    let bad = at(&json, "/steps/0");
    assert_eq!(str_at(bad, "/status"), "failed");
    assert_eq!(at(bad, "/exit_code"), 7);
    assert!(at(bad, "/signal").is_null());
    assert_eq!(str_at(bad, "/problem"), "exited 7 (expected 0)");
    assert_eq!(names_at(bad, "/output_tail"), ["about to fail"]);
    let never = at(&json, "/steps/1");
    assert_eq!(str_at(never, "/name"), "never");
    assert_eq!(str_at(never, "/status"), "skipped");
    for field in ["/start_ms", "/end_ms", "/exit_code", "/signal", "/problem"] {
        assert!(at(never, field).is_null(), "{field} of a skipped step");
    }
    assert_eq!(array_at(never, "/output_tail").len(), 0);
    assert_eq!(
        str_at(&json, "/verdict/line"),
        r#"FAIL: step "bad" exited 7 (expected 0)"#
    );
}

#[test]
fn a_step_past_its_timeout_is_killed_with_its_children() {
    let _machine = shared();
    let server = TestServer::healthy();
    let pids = TempFile::new("pids");
    let file = scenario_with_steps(
        &server.url(),
        &format!(
            r#"[[step]]
name = "hang"
run = "sleep 30 & echo $$ $! > {pids}; wait"
timeout = "500ms"

[[step]]
name = "after"
run = "true"
"#,
            pids = pids.as_str()
        ),
    );
    let began = Instant::now();
    let (code, json) = run_scenario(&file);
    let lasted = began.elapsed();

    assert_eq!(code, 3, "{json:#}");
    assert_consistent(code, &json);
    assert!(lasted < Duration::from_secs(10), "ran {lasted:?}");
    let hang = at(&json, "/steps/0");
    assert_eq!(str_at(hang, "/status"), "timed_out");
    assert_eq!(at(hang, "/signal"), 9, "SIGKILL");
    assert!(at(hang, "/exit_code").is_null());
    assert_eq!(
        str_at(hang, "/problem"),
        "timed out after 500ms and was killed"
    );
    let ran = f64_at(hang, "/end_ms") - f64_at(hang, "/start_ms");
    assert!(
        (500.0..2000.0).contains(&ran),
        "killed at its 500 ms timeout, after {ran} ms"
    );
    assert_eq!(str_at(&json, "/steps/1/status"), "skipped");
    let line = str_at(&json, "/verdict/line");
    assert_eq!(
        line,
        r#"FAIL: step "hang" timed out after 500ms and was killed"#
    );

    let words = wait_for_line(pids.path(), Duration::ZERO).expect("the step wrote its pids");
    let [shell, child] = [&words[0], &words[1]].map(|w| w.parse::<u32>().expect("a pid"));
    for (what, pid) in [("shell", shell), ("background child", child)] {
        assert!(
            wait_not_running(pid, Duration::from_secs(2)),
            "the step's {what} {pid} survived its timeout (state {:?})",
            support::process_state(pid)
        );
    }
}

#[test]
fn a_target_failing_during_warmup_exits_4_before_any_step() {
    let _machine = shared();
    let server = TestServer::http(|_| Reply::status(503));
    let file = scenario(&format!(
        r#"[target]
url = "{}"

[load]
qps = 100
warmup = "1s"
cooldown = "10s"

[[step]]
name = "deploy"
run = "true"
"#,
        server.url()
    ));
    let began = Instant::now();
    let (code, json) = run_scenario(&file);
    let lasted = began.elapsed();

    assert_eq!(code, 4, "{json:#}");
    // The load stops once the warmup is judged, instead of going on through a 10 s cooldown.
    assert!(lasted < Duration::from_secs(5), "ran {lasted:?}");
    let elapsed = f64_at(&json, "/elapsed_ms");
    assert!(
        (1000.0..1500.0).contains(&elapsed),
        "the run should end right after the 1 s warmup, not after {elapsed} ms"
    );
    let total = u64_at(&json, "/requests/total");
    assert!((100..=105).contains(&total), "1 s at 100 qps: {total}");
    assert_eq!(u64_at(&json, "/requests/failed"), total);
    assert_eq!(counts_at(&json, "/codes"), counts(&[("503", total)]));
    assert_eq!(server.stats().requests(), total);
    assert_eq!(phases(&json), [("warmup".to_string(), total)]);
    let deploy = at(&json, "/steps/0");
    assert_eq!(str_at(deploy, "/status"), "skipped");
    assert!(at(deploy, "/start_ms").is_null(), "the step never ran");
    assert_eq!(u64_at(&json, "/verdict/exit_code"), 4);
    // The warmup is judged when it ends, on the requests intended before then (100, or 101
    // when the one due at the boundary was already in); the load stops right after.
    let line = str_at(&json, "/verdict/line");
    let judged = line
        .strip_prefix("FAIL: by the end of the warmup ")
        .and_then(|rest| rest.split_once(" requests had failed: "))
        .and_then(|(counts, rest)| {
            let (failed, of) = counts.split_once(" of ")?;
            let (failed, of) = (failed.parse::<u64>().ok()?, of.parse::<u64>().ok()?);
            (failed == of
                && rest.starts_with("the target was unhealthy before the rollout, so no step ran"))
            .then_some(failed)
        })
        .unwrap_or_else(|| panic!("not a warmup verdict: {line}"));
    assert!((100..=total).contains(&judged), "{line}");
    assert!(!line.contains("during step"), "{line}");
}

#[test]
fn a_failure_at_the_very_end_of_the_warmup_is_a_warmup_failure() {
    let _machine = shared();
    // The last request of a 1 s warmup at 100 qps (intended at 990 ms) fails, answered after
    // the warmup ended: the check waits for it.
    let server = TestServer::http(|req| {
        if req.index == 99 {
            Reply::status(503).delayed(Duration::from_millis(40))
        } else {
            Reply::ok()
        }
    });
    let file = scenario(&format!(
        r#"[target]
url = "{}"

[load]
qps = 100
warmup = "1s"
cooldown = "1s"

[[step]]
name = "deploy"
run = "true"
"#,
        server.url()
    ));
    let (code, json) = run_scenario(&file);

    assert_eq!(code, 4, "{json:#}");
    assert_consistent(code, &json);
    let total = u64_at(&json, "/requests/total");
    assert_eq!(
        counts_at(&json, "/codes"),
        counts(&[("200", total - 1), ("503", 1)])
    );
    let warmup = &array_at(&json, "/phases")[0];
    assert_eq!(str_at(warmup, "/name"), "warmup");
    assert_eq!(u64_at(warmup, "/failed"), 1);
    assert_eq!(str_at(&json, "/steps/0/status"), "skipped");
    let line = str_at(&json, "/verdict/line");
    assert!(
        line.starts_with("FAIL: by the end of the warmup 1 of 100 requests had failed"),
        "{line}"
    );
}

#[test]
fn quiet_prints_only_the_verdict_line_and_keeps_the_step_output() {
    let _machine = shared();
    let server = TestServer::healthy();
    let file = scenario(&format!(
        r#"[target]
url = "{}"

[load]
qps = 50
warmup = "300ms"
cooldown = "300ms"

[[step]]
name = "talker"
run = "echo h3-said-on-stdout; echo h3-said-on-stderr >&2"

[[step]]
name = "watcher"
run = "echo h3-watched; sleep 30"
background = true
"#,
        server.url()
    ));
    let (code, stdout, stderr, json) = Run::scenario(file.as_str()).quiet().output();
    let json = json.expect("a JSON result");

    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, format!("{}\n", str_at(&json, "/verdict/line")));
    assert_eq!(stderr, "", "nothing but the verdict line");
    let mut tail = names_at(&json, "/steps/0/output_tail");
    tail.sort();
    assert_eq!(tail, ["h3-said-on-stderr", "h3-said-on-stdout"]);
    assert_eq!(names_at(&json, "/steps/1/output_tail"), ["h3-watched"]);
    assert_eq!(str_at(&json, "/events/0/line"), "h3-watched");

    // Without --quiet the same run shows the steps.
    let (_, _, stderr, _) = Run::scenario(file.as_str()).output();
    for line in [
        "[talker] h3-said-on-stdout",
        "[watcher] h3-watched",
        "step \"talker\"",
    ] {
        assert!(stderr.contains(line), "{line} missing from:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario errors, interruption, the quick form, watchers
// ---------------------------------------------------------------------------------------------

/// Runs gapless on a scenario file holding `text`; returns the exit code and stderr, and checks
/// that nothing ran (no JSON result, nothing on stdout).
fn bad_scenario(text: &str) -> (i32, String, String) {
    let file = scenario(text);
    let (code, stdout, stderr, json) = Run::scenario(file.as_str()).output();
    assert!(json.is_none(), "a bad scenario runs nothing");
    assert_eq!(stdout, "");
    (code, stderr, file.as_str().to_string())
}

#[test]
fn a_malformed_scenario_exits_2_naming_file_line_column_and_key() {
    let (code, stderr, path) =
        bad_scenario("[target]\nurl = \"http://127.0.0.1:9/\"\n\n[load]\nqps = -3\n");
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("gapless: {path}:5:7: load.qps: must be a finite number, 0 or more (got -3)")
    );

    let (code, stderr, path) = bad_scenario("[load]\nqps = -3\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{path}:2:7: load.qps: must be a finite number")),
        "{stderr}"
    );
}

#[test]
fn an_unknown_key_exits_2_naming_it() {
    let (code, stderr, path) = bad_scenario("[load]\nqps = 5\nqpss = 6\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{path}:3:1: load.qpss: unknown field `qpss`")),
        "{stderr}"
    );

    let (code, stderr, path) = bad_scenario(
        "[[step]]\nname = \"a\"\nrun = \"true\"\n\n[[step]]\nname = \"b\"\nrun = \"true\"\ntimout = \"1s\"\n",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{path}:8:1: step[2].timout: unknown field `timout`"
        )),
        "{stderr}"
    );
}

/// The pids a step wrote to `file` (`echo $$ $!`), once it has; kills `child` and fails if the
/// step did not start within 10 s.
fn pids_written(child: &mut std::process::Child, file: &TempFile) -> Vec<u32> {
    let Some(words) = wait_for_line(file.path(), Duration::from_secs(10)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("a step did not start within 10 s");
    };
    words
        .iter()
        .map(|w| w.parse::<u32>().expect("a pid"))
        .collect()
}

/// Sends `SIG<name>` to `child` with kill(1).
fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill(1)");
    assert!(sent.success(), "kill -{name}");
}

#[test]
fn sigint_during_a_step_kills_it_and_writes_the_partial_result() {
    let _machine = shared();
    let server = TestServer::healthy();
    let pids = TempFile::new("pids");
    let file = scenario_with_steps(
        &server.url(),
        &format!(
            r#"[[step]]
name = "long"
run = "sleep 30 & echo $$ $! > {pids}; wait"

[[step]]
name = "later"
run = "true"
"#,
            pids = pids.as_str()
        ),
    );
    let json_path = TempFile::new("json");
    let mut child = Command::new(GAPLESS)
        .args(["run", "--scenario", file.as_str(), "--quiet", "--json"])
        .arg(json_path.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gapless binary should start");
    let [shell, sleeper] = pids_written(&mut child, &pids)[..] else {
        panic!("the step wrote two pids");
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        is_running(sleeper),
        "the step's child runs until the signal"
    );
    signal(&child, "INT");
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for gapless") {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gapless did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stopped_after = signalled.elapsed();
    eprintln!("SIGINT: gapless exited {stopped_after:?} after the signal");

    assert_eq!(status.code(), Some(130));
    assert!(
        stopped_after < Duration::from_secs(5),
        "stopped {stopped_after:?} after the signal"
    );
    for (what, pid) in [("shell", shell), ("child", sleeper)] {
        assert!(
            wait_not_running(pid, Duration::from_secs(2)),
            "the step's {what} {pid} survived the interruption (state {:?})",
            support::process_state(pid)
        );
    }
    let text = std::fs::read_to_string(json_path.path()).expect("an interrupted run writes JSON");
    let json: Value = serde_json::from_str(&text).expect("the JSON result parses");
    assert_eq!(at(&json, "/interrupted"), true);
    assert_eq!(at(&json, "/verdict/passed"), false);
    assert_eq!(u64_at(&json, "/verdict/exit_code"), 130);
    let line = str_at(&json, "/verdict/line");
    assert!(line.starts_with("INTERRUPTED: "), "{line}");
    let long = at(&json, "/steps/0");
    assert_eq!(str_at(long, "/status"), "interrupted");
    assert_eq!(
        str_at(long, "/problem"),
        "was killed: the run was interrupted"
    );
    assert_eq!(at(long, "/signal"), 9);
    assert_eq!(str_at(&json, "/steps/1/status"), "skipped");
    // The partial result: the warmup and the steps so far, no cooldown, nothing failed.
    let names: Vec<String> = phases(&json).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["warmup", "steps"]);
    let total = u64_at(&json, "/requests/total");
    assert!(
        total >= 60,
        "at least the 300 ms warmup at 200 qps: {total}"
    );
    assert_eq!(u64_at(&json, "/requests/ok"), total);
    assert_eq!(phases(&json).iter().map(|(_, n)| n).sum::<u64>(), total);
    assert_no_windows(&json);
}

#[test]
fn the_quick_form_runs_one_command_step() {
    let _machine = shared();
    let server = TestServer::healthy();
    let (code, stdout, stderr, json) = run_json_with_command(
        &[
            "run",
            &server.url(),
            "-q",
            "200",
            "--warmup",
            "500ms",
            "--cooldown",
            "500ms",
            "--quiet",
        ],
        &["sh", "-c", "exit 0"],
    );

    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_consistent(code, &json);
    assert_eq!(stdout, "PASS: every request succeeded\n");
    let steps = array_at(&json, "/steps");
    assert_eq!(steps.len(), 1, "{json:#}");
    assert_eq!(str_at(&steps[0], "/name"), "sh -c 'exit 0'");
    assert_eq!(str_at(&steps[0], "/command"), "sh -c 'exit 0'");
    assert_eq!(str_at(&steps[0], "/status"), "ok");
    assert_eq!(at(&steps[0], "/exit_code"), 0);
    assert_eq!(at(&steps[0], "/background"), false);
    let names: Vec<String> = phases(&json).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["warmup", "steps", "cooldown"]);
    assert_no_windows(&json);
    assert_eq!(u64_at(&json, "/requests/failed"), 0);
}

#[test]
fn a_watcher_records_timestamped_events_and_is_stopped_at_the_end() {
    let _machine = shared();
    let server = TestServer::healthy();
    let pid = TempFile::new("pid");
    let file = scenario_with_steps(
        &server.url(),
        &format!(
            r#"[[step]]
name = "watch"
background = true
run = "echo $$ > {pid}; for i in 1 2 3; do echo tick $i; sleep 0.1; done; exec sleep 30"

[[step]]
name = "pause"
sleep = "800ms"
"#,
            pid = pid.as_str()
        ),
    );
    let (code, json) = run_scenario(&file);

    assert_eq!(code, 0, "{json:#}");
    assert_consistent(code, &json);
    assert_no_windows(&json);
    let watch = at(&json, "/steps/0");
    assert_eq!(str_at(watch, "/name"), "watch");
    assert_eq!(at(watch, "/background"), true);
    assert_eq!(str_at(watch, "/status"), "stopped");
    assert_eq!(at(watch, "/signal"), 9, "killed when the run ended");
    assert!(at(watch, "/problem").is_null());
    assert_eq!(
        names_at(watch, "/output_tail"),
        ["tick 1", "tick 2", "tick 3"]
    );
    assert_eq!(str_at(&json, "/steps/1/status"), "ok");

    let events = array_at(&json, "/events");
    let lines: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (str_at(e, "/step"), str_at(e, "/line")))
        .collect();
    assert_eq!(
        lines,
        [
            ("watch", "tick 1"),
            ("watch", "tick 2"),
            ("watch", "tick 3")
        ]
    );
    assert_eq!(u64_at(&json, "/events_dropped"), 0);
    let times: Vec<f64> = events.iter().map(|e| f64_at(e, "/t_ms")).collect();
    assert!(
        times.windows(2).all(|t| t[0] < t[1]),
        "increasing times: {times:?}"
    );
    assert!(
        times[2] - times[0] >= 100.0,
        "the lines were printed 100 ms apart: {times:?}"
    );
    assert!(f64_at(watch, "/start_ms") <= times[0]);
    assert!(
        times[2] <= f64_at(&json, "/steps/1/end_ms"),
        "printed during the pause"
    );
    // Stopped when the load ended, after the cooldown, and its process is gone.
    // (The last request is due less than one 5 ms interval before the planned end.)
    assert!(
        f64_at(watch, "/end_ms") >= f64_at(&json, "/load/duration_ms") - 5.0,
        "{json:#}"
    );
    let words = wait_for_line(pid.path(), Duration::ZERO).expect("the watcher wrote its pid");
    let pid: u32 = words[0].parse().expect("a pid");
    assert!(
        wait_not_running(pid, Duration::from_secs(2)),
        "the watcher {pid} survived the run (state {:?})",
        support::process_state(pid)
    );
}

#[test]
fn sigterm_with_a_watcher_and_a_hanging_step_leaves_no_process_behind() {
    let _machine = shared();
    let server = TestServer::healthy();
    let (watcher_pids, step_pids) = (TempFile::new("pids"), TempFile::new("pids"));
    let file = scenario_with_steps(
        &server.url(),
        &format!(
            r#"[[step]]
name = "watch"
run = "sleep 30 & echo $$ $! > {w}; echo watching; wait"
background = true

[[step]]
name = "hang"
run = "sleep 30 & echo $$ $! > {s}; wait"
"#,
            w = watcher_pids.as_str(),
            s = step_pids.as_str()
        ),
    );
    let json_path = TempFile::new("json");
    let mut child = Command::new(GAPLESS)
        .args(["run", "--scenario", file.as_str(), "--json"])
        .arg(json_path.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gapless binary should start");
    let mut pids = pids_written(&mut child, &watcher_pids);
    pids.extend(pids_written(&mut child, &step_pids));
    assert_eq!(pids.len(), 4);
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "TERM");
    let output = child.wait_with_output().expect("gapless ends");
    assert_eq!(output.status.code(), Some(143));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("INTERRUPTED: "),
        "the partial text report: {stdout}"
    );
    for pid in pids {
        assert!(
            wait_not_running(pid, Duration::from_secs(2)),
            "process {pid} survived the interruption (state {:?})",
            support::process_state(pid)
        );
    }
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(json_path.path()).expect("partial JSON"))
            .expect("valid JSON");
    assert_eq!(at(&json, "/interrupted"), true);
    assert_eq!(str_at(&json, "/steps/0/status"), "stopped");
    assert_eq!(str_at(&json, "/steps/1/status"), "interrupted");
    assert_eq!(str_at(&json, "/events/0/line"), "watching");
}
