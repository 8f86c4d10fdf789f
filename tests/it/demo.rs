//! The shipped demo scenarios (`scenarios/demo-*.toml`), run end to end against the embedded demo
//! cluster: each must give its documented verdict, with failures where the model puts them.
//!
//! Every run is on loopback at 300 or 500 requests (or gRPC calls) per second for about five
//! seconds; the gRPC ones also hold four Health/Watch streams through the proxy, the WebSocket
//! ones six WebSockets.

use crate::support;
use crate::support::{Run, at, f64_at, u64_at};
use serde_json::Value;

fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"))
}

fn run(name: &str) -> (i32, Value) {
    quiet_run(&scenario(name))
}

/// `gapless run --scenario FILE --quiet`: the exit code and the JSON result. Quiet, a run
/// prints its verdict line and nothing else: no demo orchestration line, no notice.
/// The demo's windows are timed against its own orchestration on the same 2 cores: the run
/// holds the machine alone (seen beside the other load tests of a busy CI run: a kill's window
/// split in two).
fn quiet_run(file: &str) -> (i32, Value) {
    let _machine = crate::support::exclusive();
    let (code, stdout, stderr, json) = Run::scenario(file).quiet().output();
    let json = json.unwrap_or_else(|| panic!("no JSON result: {stdout}{stderr}"));
    assert_eq!(stderr, "", "--quiet prints nothing on stderr");
    assert_eq!(
        stdout,
        format!("{}\n", at(&json, "/verdict/line").as_str().unwrap())
    );
    (code, json)
}

/// `(t_ms, line)` of the timeline events whose line contains `word`.
fn events(json: &Value, word: &str) -> Vec<(f64, String)> {
    at(json, "/events")
        .as_array()
        .expect("events is an array")
        .iter()
        .filter_map(|e| {
            let line = e["line"].as_str()?.to_string();
            line.contains(word)
                .then(|| (e["t_ms"].as_f64().unwrap_or(-1.0), line))
        })
        .collect()
}

/// Checks that each old replica's termination (an event containing `word`) comes after the
/// "ready" event of the new replica that allowed it, and before the next one: with max_surge 1
/// and max_unavailable 0, the k-th termination follows exactly k "ready" events.
fn assert_ready_before_each_termination(json: &Value, word: &str) {
    let ready: Vec<(f64, String)> = events(json, " ready")
        .into_iter()
        .filter(|(_, line)| line.ends_with(" ready"))
        .collect();
    let terminations = events(json, word);
    assert_eq!(ready.len(), 3, "three new replicas: {ready:?}");
    assert_eq!(
        terminations.len(),
        3,
        "three old replicas: {terminations:?}"
    );
    let line_order = |line: &str| {
        at(json, "/events")
            .as_array()
            .expect("events")
            .iter()
            .position(|e| e["line"] == line)
            .expect("the event is listed")
    };
    for (k, (t, line)) in terminations.iter().enumerate() {
        let before: Vec<&(f64, String)> = ready.iter().filter(|(r, _)| r <= t).collect();
        assert_eq!(
            before.len(),
            k + 1,
            "{line} at {t} ms should follow exactly {} ready events: {ready:?}",
            k + 1
        );
        // Listed in that order too (a tie on the millisecond keeps the order they were said in).
        assert!(
            line_order(&ready[k].1) < line_order(line),
            "{ready:?} {terminations:?}"
        );
    }
}

fn windows(json: &Value) -> Vec<Value> {
    at(json, "/windows").as_array().expect("windows").clone()
}

fn assert_clean_pass(json: &Value, code: i32) {
    assert_eq!(code, 0, "{}", at(json, "/verdict/line"));
    assert_eq!(u64_at(json, "/requests/failed"), 0);
    assert_eq!(u64_at(json, "/windows_total"), 0);
    assert_eq!(at(json, "/verdict/line"), "PASS: every request succeeded");
    assert_eq!(at(json, "/steps/0/status"), "ok");
}

/// Checks a rollout without drain: three kills, one failure window right after each (from the
/// kill, less one `latency` in flight, to the removal's propagation, 150 ms), each a partial
/// outage, every failure inside one, and in-flight requests reset.
fn assert_one_window_after_each_kill(json: &Value, latency_ms: f64) {
    let kills = events(json, "killed");
    assert_eq!(kills.len(), 3, "three old replicas: {kills:?}");
    let windows = windows(json);
    // One window per termination (windows closer than 50 ms merge; 1 of 3 endpoints is dead).
    assert_eq!(windows.len(), 3, "{windows:#?}");
    for (w, (killed_at, line)) in windows.iter().zip(&kills) {
        let (start, end) = (f64_at(w, "/start_ms"), f64_at(w, "/end_ms"));
        // Failures start at the kill (in-flight requests are reset; their intended time can be
        // up to one latency before it) and end once the removal propagated (150 ms).
        assert!(
            start >= killed_at - latency_ms - 20.0 && start <= killed_at + 20.0,
            "window {start}..{end} vs {line} at {killed_at}"
        );
        assert!(
            end <= killed_at + 150.0 + 40.0,
            "window {start}..{end} vs {killed_at}"
        );
        assert!(
            u64_at(w, "/ok") > 0,
            "a partial outage: 2 of 3 replicas still serve"
        );
    }
    let failed = u64_at(json, "/requests/failed");
    let in_windows: u64 = windows.iter().map(|w| u64_at(w, "/failed")).sum();
    assert_eq!(failed, in_windows, "every failure is inside a window");
    assert!(
        u64_at(json, "/errors/reset") > 0,
        "killed in-flight requests are reset"
    );
    let classes: Vec<&String> = at(json, "/errors").as_object().unwrap().keys().collect();
    assert_eq!(classes, vec!["reset"]);
    assert_ready_before_each_termination(json, "killed");
}

/// The codes answered, by name.
fn codes(json: &Value) -> Vec<&str> {
    at(json, "/codes")
        .as_object()
        .expect("codes")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn rolling_update_without_drain_fails_right_after_each_kill() {
    let (code, json) = run("demo-rolling-no-drain");
    assert_eq!(code, 1, "{}", at(&json, "/verdict/line"));
    assert_one_window_after_each_kill(&json, 20.0);
    assert!(u64_at(&json, "/codes/503") > 0, "stale endpoints give 503s");
}

#[test]
fn grpc_rolling_update_without_drain_fails_unavailable_right_after_each_kill() {
    let (code, json) = run("demo-grpc-rolling-no-drain");
    assert_eq!(code, 1, "{}", at(&json, "/verdict/line"));
    // A call in flight at a kill went through two HTTP/2 hops: it can have been sent up to about
    // twice the replica's 20 ms latency before it (seen: 45 ms on a busy machine).
    assert_one_window_after_each_kill(&json, 50.0);
    // Calls routed to a killed endpoint still listed get Envoy's gRPC local reply; the others
    // are SERVING. About a third of 300 calls a second for the 150 ms of each propagation (15),
    // three times.
    assert_eq!(codes(&json), ["SERVING", "UNAVAILABLE"]);
    let unavailable = u64_at(&json, "/codes/UNAVAILABLE");
    assert!((20..=80).contains(&unavailable), "{unavailable}");
    assert_eq!(
        u64_at(&json, "/requests/failed"),
        unavailable + u64_at(&json, "/errors/reset")
    );
    // Each Watch stream on a killed replica is reset; one reopened at once to the killed
    // endpoint still listed gets the proxy's local reply.
    for (_, _, class, line) in assert_each_reset_by_a_kill(&json, 4, 3) {
        assert!(
            class == "grpc_status" && line.contains("UNAVAILABLE"),
            "{line}"
        );
    }
}

#[test]
fn grpc_rolling_update_with_prestop_keeps_every_call() {
    let (code, json) = run("demo-grpc-rolling-prestop");
    assert_clean_pass(&json, code);
    assert_eq!(codes(&json), ["SERVING"]);
    assert_eq!(
        u64_at(&json, "/codes/SERVING"),
        u64_at(&json, "/requests/total")
    );
    assert_ready_before_each_termination(&json, "graceful drain");
    // A drained replica sends each Watch NOT_SERVING, then ends it with status OK: one
    // not_serving event and one graceful end each time.
    let disconnects = assert_each_ended_by_a_drain(&json, "end_of_stream", 4, 3, 500.0);
    let probe = probe(&json);
    assert_eq!(
        u64_at(probe, "/not_serving"),
        u64_at(probe, "/disconnects/graceful")
    );
    for (_, _, class, line) in &disconnects {
        assert!(class == "end_of_stream" || class == "not_serving", "{line}");
    }
}

/// The disconnect events of the run (`not_serving` ones too): `(t_ms, connection, class, line)`.
fn disconnects(json: &Value) -> Vec<(f64, u64, String, String)> {
    at(json, "/events")
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e.get("disconnect").is_some())
        .map(|e| {
            (
                f64_at(e, "/t_ms"),
                u64_at(e, "/disconnect/connection"),
                at(e, "/disconnect/class").as_str().unwrap().to_string(),
                at(e, "/line").as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The connections that had a disconnect of `class`.
fn connections_with(disconnects: &[(f64, u64, String, String)], class: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = disconnects
        .iter()
        .filter(|d| d.2 == class)
        .map(|d| d.1)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The first (only) probe's results.
fn probe(json: &Value) -> &Value {
    &at(json, "/streams").as_array().expect("streams")[0]
}

/// Checks a drained rollout of `old` replicas with a probe of `count` connections: every
/// connection starts on an old replica and every old replica drains, so each connection ends
/// gracefully (`class`) at least once and at most once per old replica, each time at the end
/// of a replica's `prestop_ms` preStop sleep, and is reconnected each time; nothing ungraceful.
/// Returns the disconnect events.
fn assert_each_ended_by_a_drain(
    json: &Value,
    class: &str,
    count: u64,
    old: u64,
    prestop_ms: f64,
) -> Vec<(f64, u64, String, String)> {
    let probe = probe(json);
    assert_eq!(u64_at(probe, "/disconnects/ungraceful"), 0, "{probe:#}");
    assert!(
        at(probe, "/connect_failures")
            .as_object()
            .unwrap()
            .is_empty()
    );
    let graceful = u64_at(probe, "/disconnects/graceful");
    assert_eq!(
        u64_at(probe, &format!("/disconnects/by_class/{class}")),
        graceful
    );
    assert!((count..=count * old).contains(&graceful), "{probe:#}");
    assert_eq!(u64_at(probe, "/connects"), count + graceful);
    let disconnects = disconnects(json);
    let all: Vec<u64> = (0..count).collect();
    assert_eq!(connections_with(&disconnects, class), all);
    let drains = events(json, "graceful drain");
    assert_eq!(drains.len() as u64, old);
    for (t, _, _, line) in &disconnects {
        assert!(
            drains
                .iter()
                .any(|(d, _)| *t >= d + prestop_ms - 5.0 && *t <= d + prestop_ms + 250.0),
            "{line} at {t} ms is no drain's: {drains:?}"
        );
    }
    disconnects
}

/// Checks a rollout of `old` replicas killed without drain, with a probe of `count`
/// connections: every connection starts on an old replica and every old replica is killed, so
/// each connection is reset at least once, each reset right after a kill; nothing graceful.
/// Returns the other disconnects (a reconnect to a killed endpoint still listed).
fn assert_each_reset_by_a_kill(
    json: &Value,
    count: u64,
    old: usize,
) -> Vec<(f64, u64, String, String)> {
    assert_eq!(code_of(json), 1, "{}", at(json, "/verdict/line"));
    let probe = probe(json);
    assert_eq!(u64_at(probe, "/disconnects/graceful"), 0, "{probe:#}");
    assert!(
        u64_at(probe, "/disconnects/ungraceful") >= count,
        "{probe:#}"
    );
    let disconnects = disconnects(json);
    let all: Vec<u64> = (0..count).collect();
    assert_eq!(connections_with(&disconnects, "reset"), all);
    let kills = events(json, "killed");
    assert_eq!(kills.len(), old);
    for (t, _, _, line) in disconnects.iter().filter(|d| d.2 == "reset") {
        assert!(
            kills.iter().any(|(k, _)| *t >= *k && *t <= k + 250.0),
            "{line} at {t} ms is no kill's: {kills:?}"
        );
    }
    let name = at(probe, "/name").as_str().unwrap();
    let verdict = at(json, "/verdict/line").as_str().unwrap();
    assert!(
        verdict.contains(&format!("stream \"{name}\" lost")),
        "{verdict}"
    );
    disconnects.into_iter().filter(|d| d.2 != "reset").collect()
}

/// The exit code the result gives.
fn code_of(json: &Value) -> i32 {
    i32::try_from(u64_at(json, "/verdict/exit_code")).expect("an exit code")
}

#[test]
fn websocket_rolling_update_with_prestop_closes_each_session_with_1001() {
    let (code, json) = run("demo-websocket-rolling-prestop");
    assert_clean_pass(&json, code);
    for (_, _, _, line) in assert_each_ended_by_a_drain(&json, "close_frame", 6, 3, 500.0) {
        assert!(line.contains("1001"), "{line}");
    }
}

#[test]
fn websocket_rolling_update_without_drain_resets_each_session() {
    let (_, json) = run("demo-websocket-rolling-no-drain");
    // A handshake routed to the killed endpoint still listed gets the proxy's 503.
    for (_, _, class, line) in assert_each_reset_by_a_kill(&json, 6, 3) {
        assert!(class == "status" && line.contains("503"), "{line}");
    }
}

#[test]
fn rolling_update_with_prestop_keeps_every_request() {
    let (code, json) = run("demo-rolling-prestop");
    assert_clean_pass(&json, code);
    assert_eq!(events(&json, "graceful drain").len(), 3);
    assert_ready_before_each_termination(&json, "graceful drain");
}

#[test]
fn recreate_has_one_gap_as_long_as_the_startup() {
    let (code, json) = run("demo-recreate");
    assert_eq!(code, 1, "{}", at(&json, "/verdict/line"));
    assert_eq!(u64_at(&json, "/gaps_total"), 1, "{:#?}", windows(&json));
    let gap = f64_at(&json, "/longest_gap_ms");
    // Startup 1 s (+ 50 ms propagation): within 20 %.
    assert!((800.0..=1200.0).contains(&gap), "gap {gap} ms");
    assert_eq!(at(&json, "/gaps/0/steps/0"), "recreate with v2");
    assert_eq!(at(&json, "/verdict/exit_code"), 1);
    // The requests in flight when the old replicas were killed count in the steps phase: the
    // warmup (2 s at 500 qps) is clean, as the exit code says.
    assert_eq!(
        phase(&json, "warmup"),
        (1000, 0),
        "{:#}",
        at(&json, "/phases")
    );
}

/// `(requests, failed)` of the phase `name`.
fn phase(json: &Value, name: &str) -> (u64, u64) {
    let p = at(json, "/phases")
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} phase: {json:#}"));
    (u64_at(p, "/requests"), u64_at(p, "/failed"))
}

#[test]
fn blue_green_switch_keeps_every_request() {
    let (code, json) = run("demo-blue-green");
    assert_clean_pass(&json, code);
    assert_eq!(events(&json, "route weights [0, 100]").len(), 1);
}

#[test]
fn canary_weights_keep_every_request() {
    let (code, json) = run("demo-canary");
    assert_clean_pass(&json, code);
    let steps = at(&json, "/steps").as_array().unwrap();
    assert_eq!(steps.len(), 5);
    assert!(steps.iter().all(|s| s["status"] == "ok"));
}

#[test]
fn mesh_propagation_race_gives_a_small_share_of_503s() {
    let (code, json) = run("demo-mesh-propagation");
    assert_eq!(code, 1, "{}", at(&json, "/verdict/line"));
    let failed = u64_at(&json, "/requests/failed");
    let total = u64_at(&json, "/requests/total");
    assert_eq!(u64_at(&json, "/codes/503"), failed, "only 503s");
    assert!(at(&json, "/errors").as_object().unwrap().is_empty());
    // 10 % of 500 qps for the ~450 ms between the route and the endpoints reaching the proxy.
    assert!((10..=40).contains(&failed), "{failed} of {total}");
    let windows = windows(&json);
    assert_eq!(windows.len(), 1, "{windows:#?}");
    assert!(u64_at(&windows[0], "/ok") > u64_at(&windows[0], "/failed"));
    let step = &windows[0]["steps"];
    let after = &windows[0]["after_step"];
    assert!(
        step.as_array()
            .is_some_and(|s| s.iter().any(|n| n == "weights 90/10"))
            || after == "weights 90/10",
        "{:#?}",
        windows[0]
    );
}

/// A scenario written to a temporary file.
fn inline(text: &str) -> (i32, Value) {
    let file = support::TempFile::with("toml", text);
    quiet_run(file.as_str())
}

#[test]
fn rolling_without_readiness_sends_traffic_to_pods_that_are_not_listening_yet() {
    let (code, json) = inline(
        r#"
[target]
demo = { replicas = 2, startup = "400ms", latency = "2ms", propagation = "50ms", prestop = "600ms" }
[load]
qps = 300
warmup = "1s"
cooldown = "1s"
[[step]]
name = "no readiness"
demo = { action = "rolling", version = "v2", readiness = false }
"#,
    );
    assert_eq!(code, 1, "{}", at(&json, "/verdict/line"));
    // Both new pods are listed 50 ms after they start and listen 400 ms after: one full gap of
    // about 350 ms, answered by the proxy's "upstream connect error".
    assert_eq!(u64_at(&json, "/gaps_total"), 1, "{:#?}", windows(&json));
    let gap = f64_at(&json, "/longest_gap_ms");
    assert!((250.0..=450.0).contains(&gap), "gap {gap} ms");
    assert_eq!(
        u64_at(&json, "/failure_signatures/envoy_upstream_connect_error"),
        u64_at(&json, "/requests/failed")
    );
    let rules: Vec<&str> = at(&json, "/hints")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["rule"].as_str())
        .collect();
    assert_eq!(rules, ["endpoints-removed-late"]);
}

#[test]
fn rolling_restart_with_prestop_keeps_every_request() {
    let (code, json) = inline(
        r#"
[target]
demo = { replicas = 2, startup = "200ms", latency = "2ms", propagation = "50ms", prestop = "300ms" }
[load]
qps = 300
warmup = "1s"
cooldown = "1s"
[[step]]
name = "restart"
demo = { action = "restart" }
"#,
    );
    assert_clean_pass(&json, code);
    assert_eq!(events(&json, "graceful drain").len(), 2);
}

#[test]
fn requests_in_flight_when_the_first_step_acts_count_in_the_steps_phase() {
    // 50 ms answers at 200 qps: about ten requests are in flight when the recreate kills every
    // replica, right after the warmup; some of them were due before the step started.
    let (code, json) = inline(
        r#"
[target]
demo = { replicas = 2, startup = "300ms", latency = "50ms", propagation = "20ms" }
[load]
qps = 200
connections = 32
warmup = "1s"
cooldown = "500ms"
[[step]]
name = "recreate"
demo = { action = "recreate", version = "v2" }
"#,
    );
    assert_eq!(code, 1, "{}", at(&json, "/verdict/line"));
    assert!(
        u64_at(&json, "/errors/reset") > 0,
        "the kill reset requests in flight: {:#}",
        at(&json, "/errors")
    );
    // The warmup is exactly the first second of requests, all answered before the step began.
    assert_eq!(
        phase(&json, "warmup"),
        (200, 0),
        "{:#}",
        at(&json, "/phases")
    );
    let phases = at(&json, "/phases").as_array().unwrap();
    assert_eq!(f64_at(&phases[0], "/end_ms"), 1000.0);
    assert_eq!(f64_at(&phases[1], "/start_ms"), 1000.0);
    assert!(f64_at(&json, "/steps/0/start_ms") >= 1000.0);
    let (_, failed_in_steps) = phase(&json, "steps");
    assert!(failed_in_steps > 0, "{:#}", at(&json, "/phases"));
}

/// A rolling restart of two replicas with four SSE streams (`GET /events`) held through the
/// proxy, with the given preStop sleep.
fn events_through_a_restart(prestop: &str) -> (i32, Value) {
    inline(&format!(
        r#"
[target]
demo = {{ replicas = 2, startup = "200ms", latency = "2ms", propagation = "50ms", prestop = "{prestop}" }}
[load]
qps = 100
warmup = "1s"
cooldown = "1s"
[[stream]]
name = "events"
url = "http://127.0.0.1:0/events"
kind = "sse"
count = 4
timeout = "1s"
[[step]]
name = "restart"
demo = {{ action = "restart" }}
"#
    ))
}

#[test]
fn event_streams_end_when_their_replica_drains_and_are_reset_when_it_is_killed() {
    // Drained: each stream's response ends (HTTP's end of a body), the client reconnects.
    let (code, json) = events_through_a_restart("300ms");
    assert_clean_pass(&json, code);
    assert_each_ended_by_a_drain(&json, "end_of_stream", 4, 2, 300.0);

    // Killed: each stream on a killed replica is reset under the client; a request routed to
    // the killed endpoint still listed gets the proxy's 503.
    let (_, json) = events_through_a_restart("0s");
    for (_, _, class, line) in assert_each_reset_by_a_kill(&json, 4, 2) {
        assert!(class == "status" && line.contains("503"), "{line}");
    }
}
