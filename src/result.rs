//! The result of a run: the wire types of the JSON result (`--json FILE`), kept apart from the
//! internal ones. Every report renders from a [`RunResult`] alone, and the verdict is judged from
//! one (`crate::judge::verdict`), so a saved result re-renders and re-judges as a live run does.
//!
//! CI scripts read these names; they are stable within a `schema_version`. Times are milliseconds
//! (fractions allowed) from the start of the run unless a name says otherwise.
//!
//! | field | meaning |
//! |---|---|
//! | `schema_version` | `1` |
//! | `gapless_version` | version of the tool that wrote it |
//! | `run_id` | the run's id (16 hex digits): the `run_id` label of its live metrics and `/status` (`--metrics-listen`, `--metrics-push`); every shard of one split load has the same (derived from `--start-at` and `--shards`); empty in results written before it existed |
//! | `started_at`, `started_at_unix_ms` | wall-clock start, RFC 3339 (UTC) and Unix milliseconds |
//! | `elapsed_ms` | from the start until the last attempt ended |
//! | `actual_qps` | requests sent per second of `elapsed_ms` (requests never sent are not counted) |
//! | `interrupted`, `interruption` | true when a signal cut the run short; which: `interrupt` (SIGINT) or `terminate` (SIGTERM), `null` otherwise |
//! | `target` | `url` (a password in it is shown as `<redacted>`), `method`, `http2`, `cacert` (a CA bundle was given with `--cacert`), `insecure` (`--insecure`: certificates not verified) |
//! | `load` | `qps` (`null` = closed loop), `connections`, `duration_ms` (how long the load was meant to last: warmup + steps + cooldown, or the duration; the elapsed time when interrupted), `duration_requested_ms` (`--duration`; `null` with steps), `warmup_ms`, `cooldown_ms` (`null` without steps), `timeout_ms`, `slot_ms` (the slot width used: as given or sized to the run, doubled once per merge, see `crate::measure::timeline`), `slot_requested_ms` (`--slot` as given; `null` when sized to the run; differs from `slot_ms` when the 2,048-slot cap merged slots), `ok_codes` |
//! | `requests` | `total` requests due (sent, or not sent), `ok`, `failed`, `late` (sent > 1 ms after due, or never sent), `unsent` (never sent: no connection was free in time for the request to make its deadline; counted in `failed` and in `errors` as `not_sent`), `interrupted` (due but cut off by a signal; not in `total`), `body_bytes` (response body bytes read and discarded, including bodies that never completed; never stored) |
//! | `codes` | count per response code: an HTTP status, e.g. `{"200": 9960, "503": 40}`, or with `--grpc`/`--grpc-health` a gRPC status or health answer by name, e.g. `{"OK": 9960, "UNAVAILABLE": 40}`, `{"SERVING": 990, "NOT_SERVING": 10}` (see `crate::measure::code`) |
//! | `errors` | count per transport class: `connect_refused`, `connect_timeout`, `dns`, `tls`, `reset`, `closed_before_response`, `timeout` (sent, no complete response by the deadline), `protocol`, `other`, `not_sent` (never sent, see `requests.unsent`), and with `--max-late` `answered_late` (a response that came later than that after its intended send time) |
//! | `errors_by_connection` | per class, `{"new": n, "reused": n}` (every class but `not_sent`, which was on no connection) |
//! | `error_samples` | per class, the first failure's message (at most 200 characters), e.g. `{"tls": "invalid peer certificate: UnknownIssuer", "connect_refused": "Connection refused (os error 111)"}`: the OS error, rustls's reason, hyper's error, or what was wrong with the bytes |
//! | `latency_ms` | from the intended send time (coordinated-omission corrected), responses only: `count min mean stddev p50 p75 p90 p99 p99_9 max` |
//! | `service_time_ms` | the same statistics from the actual send (to the kernel's receipt of the response's last bytes over HTTP/1.1 on Linux, see `crate::client::stamped`) |
//! | `lateness_ms` | actual send minus intended send, sent requests only |
//! | `histograms` | the three histograms behind those statistics, lossless: `latency_us`, `service_us`, `lateness_us`, each in HdrHistogram's V2 serialization (microseconds, 3 significant digits), base64 |
//! | `failure_signatures` | 5xx responses Envoy produced itself: `envoy_no_healthy_upstream`, `envoy_upstream_connect_error` (by body), `envoy_other` (`server: envoy`) |
//! | `connections` | `opened`, `connect_failures`, `failed_on_new_connections`, `failed_on_reused_connections` |
//! | `timeline` | one entry per slot: `t_ms` (slot start), `ok`, `failed`, `codes`, `errors`, `p50_ms`, `p99_ms` (`null` without responses) |
//! | `phases` | in order: `name` (`load` for a run without steps; else `warmup`, `steps`, `cooldown`), `start_ms`, `end_ms`, `requests`, `ok`, `failed` (by intended send time), `versions` (per version label: `count` successful responses in the phase, `first_ms`) |
//! | `unhealthy_warmup` | when requests failed during the warmup so no step ran: `failed`, `requests` (intended in the warmup); `null` otherwise |
//! | `steps` | in scenario order: `name`, `command`, `background`, `status` (`ok`, `failed`, `timed_out`, `interrupted`, `stopped`, `skipped`), `start_ms`, `end_ms` (`null` if it never ran), `exit_code`, `signal` (`null` unless one applies), `problem`, `output_tail` (last lines, a list of strings), `output_tail_ms` (when each of those lines was read, same length; absent from results of older versions) |
//! | `events` | lines printed by background steps and demo orchestration events: `t_ms` (when the line was read), `step`, `line`; `events_dropped` counts those beyond 10,000 per watcher (or per probe). With `[[stream]]` probes, also every disconnect, in time order: `step` the probe's name, `line` a sentence, and `disconnect`: `probe`, `connection` (from 0), `class` (`close_frame`, `end_of_stream`, `goaway`: graceful; `reset`, `closed`, `timeout`, `protocol`, `grpc_status`, and for the first failed reconnect attempt of an outage `refused`, `connect_timeout`, `dns`, `tls`, `status`, `grpc_status`, `other`; and `not_serving`, not a disconnect: a gRPC health watch answered other than SERVING on a connected stream), `graceful`, `code` (the close frame's code, the handshake's HTTP status, the `grpc-status` number, or for `not_serving` the serving status number; absent otherwise) |
//! | `streams` | with `[[stream]]` probes only (absent otherwise), per probe in order: `name`, `url`, `kind` (`websocket`, `sse`, `grpc`), `count` (connections held), `connects` (established, the first ones included), `disconnects` (`graceful`, `ungraceful`, `by_class`), `not_serving` (gRPC health watch only, absent when 0: times an answer turned from SERVING to another status), `connect_failures` (per class, every failed attempt; an outage is one disconnect), `reconnect_ms` (from a lost stream to the next connected one: `count min mean stddev p50 p75 p90 p99 p99_9 max`), `stream_gap_ms` (time without a connected stream, for a health watch without a SERVING one: `total` over the connections, `longest` of one), `events_dropped` |
//! | `windows` | failure windows in time order (at most 1,000; `windows_total` counts all): `start_ms` (when its first failure was sent), `end_ms` (when the success that ended it was sent), `start_uncertainty_ms` (the outage began after the last success before it was sent, this long before `start_ms`; `null` if none succeeded before), `end_uncertainty_ms` (it ended after the last failure was sent, this long before `end_ms`; `null` if open), `duration_ms`, `failed`, `ok`, `codes`, `errors`, `failed_on_new_connections`, `failed_on_reused_connections`, `steps` (foreground steps running at the time), `after_step` (when none ran: the last step that ended before it), `open` (the load ended inside it) |
//! | `gaps` | the windows with `ok == 0` (availability gaps), same fields; `gaps_total` counts all |
//! | `longest_gap_ms`, `total_gap_ms` | the longest gap (`null` without gaps) and the sum of all gaps |
//! | `merge_gap_ms` | windows closer than this were merged |
//! | `slow_windows` | runs of slots whose p99 exceeded `--slow`: `start_ms`, `end_ms`, `duration_ms`, `p99_ms` (largest slot p99), `steps` |
//! | `stalls` | silences of the target of 200 ms or more, on the completion clock, in time order (at most 1,000; `stalls_total` counts all; see `crate::measure::stalls`): `start_ms` (the last answer before it, or when the earliest request still unanswered then fell due, if later), `end_ms` (the next answer), `duration_ms`, `held` (requests that waited across it and succeeded), `failed` (that waited across it and failed), `connect_timeouts` (connect attempts that timed out during it), `unanswered_new` / `unanswered_reused` (requests that timed out during it on a connection opened for them / kept alive), `steps`, `after_step`, `open` (the load ended before an answer did) |
//! | `stalls_total` | every stall found |
//! | `longest_stall_ms` | the longest silence of the run, listed as a stall or not (0 when no request waited) |
//! | `versions` | with `--version-header`/`--version-regex`, per version label: `count` (successful responses), `first_ms`, `last_ms` (intended send times); also per timeline slot |
//! | `cutover_ms` | the last time a version other than the final one answered (`null` with one version) |
//! | `mixed_window` | `start_ms` (the final version's first response), `end_ms` (the cutover); `null` for a clean cut |
//! | `thresholds` | the limits judged: `max_failures`, `max_failure_ratio`, `max_gap_ms`, `max_p99_ms`, `expect_version`, `max_stall_ms` (`null` when not checked), `allow_warmup_errors`; with `[[stream]]` probes `max_ungraceful_disconnects` and `max_stream_gap_ms` (absent when not checked) |
//! | `command_line`, `scenario` | how the run was started: the arguments, and the scenario file's `path` and `text` |
//! | `hints` | likely causes: `rule`, `cause`, `fix`, `evidence`; rules about a rollout only when a step ran and the failures fall during or after it, plain statements otherwise (see `gapless::judge::hints` for the rules) |
//! | `warnings` | sentences about the run itself: a rate far above what the engine threads and connections can carry (also printed before the load), requests not sent (also printed when the first one is not) |
//! | `shard` | a shard's result only (`run --shards`): `index`, `count`, `label`, `start_at_unix_ms`; its `windows` then carry `first_seq` and `end_seq` (global sequence numbers of the first failure and of the success that ended the window) and its `timeline` slots `latency_us` (the slot's latency histogram, V2 base64), for `gapless merge` |
//! | `shards` | a merged result only (`gapless merge`): per shard `index`, `label`, `missing`, `interrupted`, `requests`, `windows_total`, `gaps_total`, `longest_gap_ms`, `longest_stall_ms` |
//! | `targets` | a run of several endpoints only (`[[target]]`, `--targets FILE`): per endpoint, in order, `name`, `url` and its own result with the fields above (`requests`, `codes`, `errors`, `latency_ms`, `histograms`, `timeline`, `phases`, `windows`, `gaps`, `stalls`, `versions`, `hints`, `verdict`, ...; not `steps`, `events`, `command_line`, `scenario`, which are the run's; its `connections` are those its own requests opened, from the pool it shares with the endpoints of its origin). The run-wide fields are then over every endpoint: counts, histograms and slots are the sums; `windows` and `gaps` are found over the global request order (a run-wide gap is a time in which no endpoint answered); `stalls` are the times every endpoint was silent; `target` is the first endpoint's. The run-wide `verdict.criteria` are then the run's own (`steps`, `healthy_before_rollout`, `completed`) and every endpoint's others, each with its `target` |
//! | `verdict` | `passed`, `exit_code`, `line` (the verdict line of the text report), `reasons` (one sentence per broken criterion), `criteria` (every criterion, in order: `kind`, `passed`, `limit`, `measured`, `source`, `skipped`, `reason`; see below) |
//!
//! `verdict.criteria[].kind` is one of `max_failures` (counts), `max_failure_ratio` (ratios),
//! `max_gap`, `max_stall` and `max_p99` (milliseconds), `expect_version` (`limit` the version, `measured` the
//! successful responses from others after the last step), `steps` (failed steps), `healthy_before_rollout`
//! (requests failed in the warmup), `requests_sent` (`limit` 1: the fewest due) and `completed`
//! (`measured`: `completed`, `interrupt` or `terminate`), with `[[stream]]` probes
//! `max_ungraceful_disconnects` (counts, over every probe) and `max_stream_gap` (milliseconds,
//! the longest time one connection went without a stream), and in a merged result `shards`
//! (`limit` the shards planned, `measured` those whose whole part is in; broken → exit 6). `source` says who set the limit: the
//! flag (`--max-gap`), the scenario key (`verdict.max_gap`) or `default`. A criterion that was
//! not judged passes, with `skipped` saying why (`no --max-p99`); `reason` is its sentence of
//! the verdict line when it broke. The exit code follows from the criteria: `completed` broken
//! → 130/143, `healthy_before_rollout` → 4, `steps` → 3, any other → 1.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::OkCodes;
use crate::measure::outcome::{ConnectionUse, EnvoyReply, ErrorClass};
use crate::measure::recorder::Phase;
use crate::measure::tally::LatencyHistogram;
use crate::rollout::StepStatus;
use crate::run::Finished;

/// The current schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole JSON result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Version of gapless that wrote the result.
    pub gapless_version: String,
    /// The run's id: also the `run_id` label of its live metrics (`--metrics-listen`) and of
    /// `/status`; shared by every shard of one split load. Empty in results written before it
    /// existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// Wall-clock start, RFC 3339 UTC.
    pub started_at: String,
    /// Wall-clock start, Unix milliseconds.
    pub started_at_unix_ms: u64,
    /// From the start until the last attempt ended.
    pub elapsed_ms: f64,
    /// Attempts per second of `elapsed_ms`.
    pub actual_qps: f64,
    /// True when a signal cut the run short.
    pub interrupted: bool,
    /// The signal that cut it short: `interrupt` (SIGINT) or `terminate` (SIGTERM).
    #[serde(default)]
    pub interruption: Option<crate::run::Interruption>,
    /// What was loaded.
    pub target: Target,
    /// How.
    pub load: Load,
    /// Request totals.
    pub requests: Requests,
    /// Count per response code (HTTP status, gRPC status or health answer).
    #[serde(with = "crate::measure::code::map")]
    pub codes: BTreeMap<u16, u64>,
    /// Count per transport failure class.
    pub errors: BTreeMap<ErrorClass, u64>,
    /// Per transport failure class, the split by connection.
    pub errors_by_connection: BTreeMap<ErrorClass, ByConnection>,
    /// Per transport failure class, the message of its first failure.
    #[serde(default)]
    pub error_samples: BTreeMap<ErrorClass, String>,
    /// Latency from the intended send time.
    pub latency_ms: Latency,
    /// Latency from the actual send.
    pub service_time_ms: Latency,
    /// Actual send minus intended send.
    pub lateness_ms: Latency,
    /// The three latency histograms, lossless (so a saved result renders Fortio's buckets and
    /// results merge exactly). Empty in results written before they existed.
    #[serde(default)]
    pub histograms: Histograms,
    /// Failed responses by who produced them.
    pub failure_signatures: BTreeMap<EnvoyReply, u64>,
    /// Connection totals.
    pub connections: Connections,
    /// Fixed slots, in time order.
    pub timeline: Vec<Slot>,
    /// The phases of the run.
    pub phases: Vec<PhaseEntry>,
    /// The rollout steps.
    pub steps: Vec<StepEntry>,
    /// Set when requests failed during the warmup, so no step ran: how many, of the requests
    /// intended in it (`null` otherwise, and in results written before it existed).
    #[serde(default)]
    pub unhealthy_warmup: Option<WarmupCheck>,
    /// Lines printed by background steps.
    pub events: Vec<EventEntry>,
    /// Events beyond the per-watcher cap, counted only.
    pub events_dropped: u64,
    /// Failure windows (capped list).
    pub windows: Vec<WindowEntry>,
    /// Every failure window found.
    pub windows_total: u64,
    /// Availability gaps (windows without a success), from the listed windows.
    pub gaps: Vec<WindowEntry>,
    /// Every gap found.
    pub gaps_total: u64,
    /// The longest gap; `null` without gaps.
    pub longest_gap_ms: Option<f64>,
    /// Time without service: the sum of all gaps.
    pub total_gap_ms: f64,
    /// Windows closer than this were merged.
    pub merge_gap_ms: f64,
    /// Runs of slots whose p99 exceeded `--slow`.
    pub slow_windows: Vec<SlowEntry>,
    /// Stalls: the target answering nothing for a while with requests waiting (capped list).
    #[serde(default)]
    pub stalls: Vec<StallEntry>,
    /// Every stall found.
    #[serde(default)]
    pub stalls_total: u64,
    /// The longest silence of the run, listed as a stall or not (0 without requests waiting).
    #[serde(default)]
    pub longest_stall_ms: f64,
    /// Which versions answered, and when.
    pub versions: BTreeMap<String, VersionEntry>,
    /// The last time an older version answered.
    pub cutover_ms: Option<f64>,
    /// When the final version and an older one both answered.
    pub mixed_window: Option<Span>,
    /// The verdict's criteria.
    pub thresholds: Thresholds,
    /// The command line that started the run.
    pub command_line: Vec<String>,
    /// The scenario file, if one was used.
    pub scenario: Option<ScenarioEntry>,
    /// Likely causes of the failures, with the fix.
    pub hints: Vec<HintEntry>,
    /// Warnings about the run itself: a rate far above what the plan can carry, requests not
    /// sent. Absent from results written before it existed.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// A shard's result: which part of the split load it holds (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardEntry>,
    /// A merged result: each shard's part, by index (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardSummary>,
    /// A run of several endpoints: each one's own result, in order (absent for one target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetEntry>,
    /// What each long-lived probe (`[[stream]]`) measured (absent without probes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamEntry>,
    /// The judgement.
    pub verdict: Verdict,
}

/// One entry of `targets`: an endpoint's name and URL, and its own result (the fields of a
/// run's result, measured on its requests alone, judged on its own: `requests`, `codes`,
/// `errors`, `latency_ms`, `timeline`, `windows`, `gaps`, `stalls`, `versions`, `hints`,
/// `verdict`, ...); the steps, events, command line and scenario are the run's, not repeated.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TargetEntry {
    /// Its name (`name` of its `[[target]]`, else `METHOD URL`).
    pub name: String,
    /// Its URL (a password in it shown as `<redacted>`).
    pub url: String,
    /// Its result.
    #[serde(flatten)]
    pub result: Box<RunResult>,
}

/// Read through a JSON value: serde's `flatten` would buffer the result's maps and lose their
/// numeric keys (`codes`).
impl<'de> Deserialize<'de> for TargetEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TargetEntry, D::Error> {
        use serde::de::Error as _;
        let mut value = serde_json::Value::deserialize(d)?;
        let mut text = |key: &str| match value.as_object_mut().and_then(|o| o.remove(key)) {
            Some(serde_json::Value::String(s)) => Ok(s),
            _ => Err(D::Error::missing_field("name")),
        };
        let (name, url) = (text("name")?, text("url")?);
        let result = RunResult::deserialize(value).map_err(D::Error::custom)?;
        Ok(TargetEntry {
            name,
            url,
            result: Box::new(result),
        })
    }
}

/// One entry of `phases`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseEntry {
    /// `load`, `warmup`, `steps` or `cooldown`.
    pub name: Phase,
    /// Start, from the run start.
    pub start_ms: f64,
    /// End, from the run start.
    pub end_ms: f64,
    /// Attempts intended in the phase.
    pub requests: u64,
    /// Of which successes.
    pub ok: u64,
    /// Of which failures.
    pub failed: u64,
    /// Successful responses per version in the phase (by intended send time), with the first.
    #[serde(default)]
    pub versions: BTreeMap<String, PhaseVersion>,
}

/// One version of a phase's `versions`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseVersion {
    /// Successful responses from it in the phase.
    pub count: u64,
    /// Intended send time of the first.
    pub first_ms: f64,
}

/// `unhealthy_warmup`: the check at the end of the warmup that stopped the rollout.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WarmupCheck {
    /// Requests intended in the warmup that failed.
    pub failed: u64,
    /// Requests intended in the warmup.
    pub requests: u64,
}

/// One entry of `steps`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StepEntry {
    /// Name.
    pub name: String,
    /// Command line (or `sleep 5s`).
    pub command: String,
    /// A watcher.
    pub background: bool,
    /// `ok`, `failed`, `timed_out`, `interrupted`, `stopped` or `skipped`.
    pub status: StepStatus,
    /// Start; `null` if it never ran.
    pub start_ms: Option<f64>,
    /// End; `null` if it never ran.
    pub end_ms: Option<f64>,
    /// Exit status when the command exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Why it did not end well.
    pub problem: Option<String>,
    /// Its last output lines.
    pub output_tail: Vec<String>,
    /// When each line of `output_tail` was read (same length; empty in results written before
    /// gapless recorded it).
    #[serde(default)]
    pub output_tail_ms: Vec<f64>,
}

/// One entry of `events`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EventEntry {
    /// When the line was read.
    pub t_ms: f64,
    /// The watcher's name (a disconnect: the probe's).
    pub step: String,
    /// The line.
    pub line: String,
    /// A long-lived probe's disconnect (absent for other events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<DisconnectEntry>,
}

/// `events[].disconnect`: a long-lived probe's disconnect.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DisconnectEntry {
    /// The probe's name.
    pub probe: String,
    /// Which of its connections, from 0.
    pub connection: usize,
    /// How the stream ended, or why the first reconnect attempt failed (`not_serving`: not a
    /// disconnect, a health watch's answer).
    pub class: StreamClass,
    /// A close frame, the end of an SSE or gRPC stream, or a GOAWAY.
    pub graceful: bool,
    /// The close frame's code, the status a handshake was answered with, the `grpc-status`, or
    /// the serving status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

/// One entry of `streams`: what a long-lived probe measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamEntry {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// `websocket`, `sse` or `grpc`.
    pub kind: String,
    /// Connections held at once.
    pub count: usize,
    /// Connections established, the first ones included.
    pub connects: u64,
    /// Disconnects.
    pub disconnects: Disconnects,
    /// Times a gRPC health watch's answer turned from SERVING to another status (absent when
    /// none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_serving: u64,
    /// Failed connect attempts by class (every attempt; an outage is one disconnect).
    pub connect_failures: BTreeMap<StreamClass, u64>,
    /// From a lost stream to the next connected one.
    pub reconnect_ms: Latency,
    /// Time without a connected stream.
    pub stream_gap_ms: StreamGap,
    /// Disconnect events beyond the cap of 10,000 per probe (counted in `events_dropped` too).
    pub events_dropped: u64,
}

/// True for 0 (a count left out of the JSON when there is nothing to count).
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `streams[].disconnects`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Disconnects {
    /// Close frames, ends of SSE and gRPC streams, GOAWAYs.
    pub graceful: u64,
    /// Every other class.
    pub ungraceful: u64,
    /// Count per class.
    pub by_class: BTreeMap<StreamClass, u64>,
}

/// `streams[].stream_gap_ms`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamGap {
    /// Summed over the probe's connections.
    pub total: f64,
    /// The longest time one connection went without a stream.
    pub longest: f64,
}

/// How a probe's stream ended (`close_frame`, `end_of_stream`, `reset`, `closed`, ...).
pub use crate::streams::Class as StreamClass;

/// One entry of `windows` or `gaps`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowEntry {
    /// When the first failure was sent.
    pub start_ms: f64,
    /// When the success that ended it was sent.
    pub end_ms: f64,
    /// The outage began within `[start_ms - start_uncertainty_ms, start_ms]` (after the last
    /// success before it was sent); `null` when nothing succeeded before it.
    pub start_uncertainty_ms: Option<f64>,
    /// The outage ended within `[end_ms - end_uncertainty_ms, end_ms]` (after its last failure
    /// was sent); `null` for an open window.
    pub end_uncertainty_ms: Option<f64>,
    /// `end_ms - start_ms`.
    pub duration_ms: f64,
    /// Failures inside.
    pub failed: u64,
    /// Successes inside (after a merge).
    pub ok: u64,
    /// Failing status codes.
    #[serde(with = "crate::measure::code::map")]
    pub codes: BTreeMap<u16, u64>,
    /// Transport failure classes.
    pub errors: BTreeMap<ErrorClass, u64>,
    /// Failures on new connections.
    pub failed_on_new_connections: u64,
    /// Failures on kept-alive connections.
    pub failed_on_reused_connections: u64,
    /// Foreground steps running during the window.
    pub steps: Vec<String>,
    /// When no step was running: the last step that ended before the window started.
    pub after_step: Option<String>,
    /// The load ended inside the window.
    pub open: bool,
    /// In a shard's result only: the global sequence number (request `k`, due at
    /// `k / qps`) of its first failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// In a shard's result only: the global sequence number of the success that ended it
    /// (`null` when open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_seq: Option<u64>,
}

/// `thresholds`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    /// Failed requests allowed; `null`: not checked.
    pub max_failures: Option<u64>,
    /// Share of failed requests allowed.
    pub max_failure_ratio: Option<f64>,
    /// Longest gap allowed (0: none); `null`: not checked.
    pub max_gap_ms: Option<f64>,
    /// Largest p99 allowed.
    pub max_p99_ms: Option<f64>,
    /// The version every response after the last step must come from.
    pub expect_version: Option<String>,
    /// Longest stall allowed; `null`: not checked (and in results written before stalls).
    #[serde(default)]
    pub max_stall_ms: Option<f64>,
    /// `--allow-warmup-errors`: failures during the warmup did not stop the rollout.
    #[serde(default)]
    pub allow_warmup_errors: bool,
    /// Ungraceful disconnects of the probes allowed (absent without probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ungraceful_disconnects: Option<u64>,
    /// Longest time a probe's connection may go without a stream (absent unless judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_gap_ms: Option<f64>,
}

/// `scenario`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ScenarioEntry {
    /// The file, as given.
    pub path: String,
    /// Its text.
    pub text: String,
}

/// One entry of `hints`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HintEntry {
    /// Stable rule name.
    pub rule: String,
    /// The likely cause.
    pub cause: String,
    /// The fix.
    pub fix: String,
    /// The numbers that triggered it.
    pub evidence: String,
}

/// One entry of `versions`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct VersionEntry {
    /// Successful responses from this version.
    pub count: u64,
    /// Intended send time of the first.
    pub first_ms: f64,
    /// Intended send time of the last.
    pub last_ms: f64,
}

/// A span of time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Span {
    /// Start, from the run start.
    pub start_ms: f64,
    /// End, from the run start.
    pub end_ms: f64,
}

/// One entry of `stalls`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StallEntry {
    /// When the silence began (completion clock).
    pub start_ms: f64,
    /// When the next answer arrived (or the load ended, `open`).
    pub end_ms: f64,
    /// `end_ms - start_ms`.
    pub duration_ms: f64,
    /// Requests that waited across it and succeeded in the end.
    pub held: u64,
    /// Requests that waited across it and failed.
    pub failed: u64,
    /// Connect attempts that timed out during it (SYNs unanswered).
    pub connect_timeouts: u64,
    /// Requests that timed out during it on connections opened for them (accepted, silent).
    pub unanswered_new: u64,
    /// Requests that timed out during it on kept-alive connections (reads idle).
    pub unanswered_reused: u64,
    /// Foreground steps running during it.
    pub steps: Vec<String>,
    /// When no step ran: the last step that ended before it.
    pub after_step: Option<String>,
    /// The load ended before an answer did.
    pub open: bool,
}

/// One entry of `slow_windows`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SlowEntry {
    /// Start of the first slow slot.
    pub start_ms: f64,
    /// End of the last slow slot.
    pub end_ms: f64,
    /// `end_ms - start_ms`.
    pub duration_ms: f64,
    /// The largest slot p99 inside.
    pub p99_ms: f64,
    /// Foreground steps running then.
    pub steps: Vec<String>,
}

/// `target`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Target {
    /// The URL loaded.
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// True for HTTP/2.
    pub http2: bool,
    /// True when a CA bundle was given (`--cacert`); `false` in results written before it.
    #[serde(default)]
    pub cacert: bool,
    /// True when certificates were not verified (`--insecure`); `false` in results written
    /// before it.
    #[serde(default)]
    pub insecure: bool,
}

/// `load`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Load {
    /// Requested rate; `null` for a closed loop (`--qps 0`).
    pub qps: Option<f64>,
    /// Connections.
    pub connections: usize,
    /// How long the load was meant to last (warmup + steps + cooldown, or the duration); the
    /// elapsed time when interrupted.
    pub duration_ms: f64,
    /// `--duration` as given or defaulted; `null` with steps.
    #[serde(default)]
    pub duration_requested_ms: Option<f64>,
    /// `--warmup`; `null` without steps.
    #[serde(default)]
    pub warmup_ms: Option<f64>,
    /// `--cooldown`; `null` without steps.
    #[serde(default)]
    pub cooldown_ms: Option<f64>,
    /// Per-request deadline from the intended send time.
    pub timeout_ms: f64,
    /// Timeline slot width, as used: the one given or sized to the run, doubled once per merge
    /// (a timeline holds at most 2,048 slots).
    pub slot_ms: f64,
    /// The slot width given (`--slot` or the scenario's `slot`); `null` when sized to the run.
    /// Differs from `slot_ms` when slots were merged.
    #[serde(default)]
    pub slot_requested_ms: Option<f64>,
    /// Status codes that count as success, e.g. `200-299,304`.
    pub ok_codes: OkCodes,
}

/// `requests`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Requests {
    /// Every attempt.
    pub total: u64,
    /// Successes.
    pub ok: u64,
    /// Failures (bad status or transport failure).
    pub failed: u64,
    /// Sent more than 1 ms after their intended time, or never sent.
    pub late: u64,
    /// Never sent: the deadline passed while every connection was busy (in `failed`).
    pub unsent: u64,
    /// Due but cut off by an interruption (not in `total`).
    pub interrupted: u64,
    /// Response body bytes read and discarded, including bodies that never completed.
    pub body_bytes: u64,
}

/// Split of failures by connection.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ByConnection {
    /// On a connection opened for the request (or a failed connect).
    pub new: u64,
    /// On a kept-alive connection.
    pub reused: u64,
}

/// `histograms`: each latency histogram (microseconds, 3 significant digits) in HdrHistogram's
/// V2 serialization, base64 (the format of HdrHistogram's log files and `hdrhistogram::serialization`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Histograms {
    /// Latency from the intended send time.
    pub latency_us: String,
    /// Service time from the actual send.
    pub service_us: String,
    /// Actual send minus intended send.
    pub lateness_us: String,
}

impl Histograms {
    /// The three histograms of a recorder.
    pub fn of(r: &crate::measure::recorder::Recorder) -> Histograms {
        Histograms {
            latency_us: encode_latency(&r.corrected().histogram()),
            service_us: encode_latency(&r.service().histogram()),
            lateness_us: encode_latency(&r.lateness().histogram()),
        }
    }

    /// The latency histogram, if the result has one.
    pub fn latency(&self) -> Option<LatencyHistogram> {
        decode(&self.latency_us)
    }
}

/// `h` in HdrHistogram's V2 serialization, base64.
pub(crate) fn encode<T: hdrhistogram::Counter>(h: &hdrhistogram::Histogram<T>) -> String {
    use base64::Engine as _;
    let mut bytes = Vec::new();
    use hdrhistogram::serialization::Serializer as _;
    match hdrhistogram::serialization::V2Serializer::new().serialize(h, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
        // Serializing into memory fails only for a histogram too large to encode: none here.
        Err(_) => String::new(),
    }
}

/// A latency histogram's text over the full range (1 µs to an hour, 3 significant digits),
/// whatever range it grew to while recording: one histogram's text, however it was recorded or
/// in which order merged histograms were added, and the text results always had.
pub(crate) fn encode_latency(h: &LatencyHistogram) -> String {
    let Ok(mut full) =
        LatencyHistogram::new_with_bounds(1, crate::measure::tally::MAX_TRACKED_US, 3)
    else {
        return encode(h);
    };
    if h.high() <= full.high() && full.add(h).is_ok() {
        encode(&full)
    } else {
        encode(h)
    }
}

/// The histogram of [`encode`]'s text; `None` when empty or not a histogram.
pub(crate) fn decode<T: hdrhistogram::Counter>(text: &str) -> Option<hdrhistogram::Histogram<T>> {
    use base64::Engine as _;
    if text.is_empty() {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()
}

/// Latency statistics in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stddev: f64,
    /// Median.
    pub p50: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// Statistics of a microsecond histogram, in milliseconds.
    pub fn from_histogram(h: &LatencyHistogram) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency {
                count: 0,
                min: 0.0,
                mean: 0.0,
                stddev: 0.0,
                p50: 0.0,
                p75: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
            };
        }
        Latency {
            count: h.len(),
            min: ms(h.min()),
            mean: round3(h.mean() / 1000.0),
            stddev: round3(h.stdev() / 1000.0),
            p50: ms(h.value_at_quantile(0.50)),
            p75: ms(h.value_at_quantile(0.75)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// `connections`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Connections {
    /// Connections opened.
    pub opened: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Failures on a connection opened for the request (or a failed connect).
    pub failed_on_new_connections: u64,
    /// Failures on a kept-alive connection.
    pub failed_on_reused_connections: u64,
}

/// One timeline slot.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Slot {
    /// Slot start, ms from the run start (by intended send time).
    pub t_ms: f64,
    /// Successes.
    pub ok: u64,
    /// Failures.
    pub failed: u64,
    /// Count per status code.
    #[serde(with = "crate::measure::code::map")]
    pub codes: BTreeMap<u16, u64>,
    /// Count per transport failure class.
    pub errors: BTreeMap<ErrorClass, u64>,
    /// Median latency from the intended send time; `null` without responses.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency from the intended send time; `null` without responses.
    pub p99_ms: Option<f64>,
    /// Successful responses per version.
    pub versions: BTreeMap<String, u64>,
    /// The slot's latency histogram (microseconds, from the intended send time), in
    /// HdrHistogram's V2 serialization, base64: in a shard's result only (`--shards`), so
    /// `gapless merge` computes each merged slot's percentiles exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<String>,
}

/// `shard`: the part of a split load this result holds (`--shards`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardEntry {
    /// This shard, from 0: it sent the requests `k` with `k mod count == index`.
    pub index: u32,
    /// How many shards split the load.
    pub count: u32,
    /// Its name (`--shard-label`: the node it ran on).
    pub label: String,
    /// The global schedule's origin (`--start-at`), Unix milliseconds: the start of the run.
    pub start_at_unix_ms: u64,
}

/// One entry of `shards`: a shard's part of a merged result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ShardSummary {
    /// The shard's index.
    pub index: u32,
    /// Its label; empty when its result is missing.
    pub label: String,
    /// No result came from it.
    pub missing: bool,
    /// A signal cut it short.
    pub interrupted: bool,
    /// Its requests.
    pub requests: Requests,
    /// Its own failure windows.
    pub windows_total: u64,
    /// Its own availability gaps.
    pub gaps_total: u64,
    /// Its longest gap.
    pub longest_gap_ms: Option<f64>,
    /// Its longest silence.
    pub longest_stall_ms: f64,
}

/// `verdict`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// True when the run passed.
    pub passed: bool,
    /// The process exit code.
    pub exit_code: u8,
    /// The verdict line, as printed at the end of the text report.
    pub line: String,
    /// One sentence per broken criterion.
    pub reasons: Vec<String>,
    /// Every criterion, judged or skipped (empty in results written before they existed).
    #[serde(default)]
    pub criteria: Vec<Criterion>,
}

impl Verdict {
    /// `PASS`, `FAIL` or `INTERRUPTED`: the first word of the verdict line, by exit code.
    pub fn word(exit_code: u8) -> &'static str {
        match exit_code {
            0 => "PASS",
            130 | 143 => "INTERRUPTED",
            6 => "INCOMPLETE",
            _ => "FAIL",
        }
    }
}

impl std::fmt::Display for Quantity {
    /// The value as the reports print it: counts whole, numbers with up to 3 decimals.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quantity::Count(n) => write!(f, "{n}"),
            Quantity::Number(x) => write!(f, "{}", (x * 1000.0).round() / 1000.0),
            Quantity::Text(t) => f.write_str(t),
        }
    }
}

/// What a criterion checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriterionKind {
    /// Failed requests against `--max-failures` (`limit` and `measured`: counts).
    MaxFailures,
    /// The failed share against `--max-failure-ratio` (ratios).
    MaxFailureRatio,
    /// The longest availability gap against `--max-gap` (milliseconds).
    MaxGap,
    /// The p99 latency from the intended send time against `--max-p99` (milliseconds).
    MaxP99,
    /// Successful responses after the last step from another version than `--expect-version`
    /// (`limit`: the version; `measured`: the count of others).
    ExpectVersion,
    /// Rollout steps that failed or timed out (counts; `limit` 0).
    Steps,
    /// Requests that failed during the warmup, before any step (counts; `limit` 0).
    HealthyBeforeRollout,
    /// Requests due (`limit`: the fewest allowed, 1).
    RequestsSent,
    /// The run ran to its end (`measured`: `completed`, `interrupt` or `terminate`).
    Completed,
    /// The longest stall (the target answering nothing while requests waited) against
    /// `--max-stall` (milliseconds).
    MaxStall,
    /// A merged result (`gapless merge`): the shards whose whole part is in it (`limit`: how
    /// many shards split the load; `measured`: those with a result not cut short).
    Shards,
    /// Ungraceful disconnects of the long-lived probes against `--max-ungraceful-disconnects`
    /// (counts).
    MaxUngracefulDisconnects,
    /// The longest time a probe's connection went without a stream against `--max-stream-gap`
    /// (milliseconds).
    MaxStreamGap,
}

impl CriterionKind {
    /// The name of its JUnit test case.
    pub fn title(self) -> &'static str {
        match self {
            CriterionKind::MaxFailures => "requests kept",
            CriterionKind::MaxFailureRatio => "failure ratio",
            CriterionKind::MaxGap => "availability gap",
            CriterionKind::MaxP99 => "p99 latency",
            CriterionKind::ExpectVersion => "version",
            CriterionKind::Steps => "rollout steps",
            CriterionKind::HealthyBeforeRollout => "healthy before the rollout",
            CriterionKind::RequestsSent => "requests sent",
            CriterionKind::Completed => "run completed",
            CriterionKind::MaxStall => "no stall",
            CriterionKind::Shards => "every shard",
            CriterionKind::MaxUngracefulDisconnects => "streams closed gracefully",
            CriterionKind::MaxStreamGap => "stream gap",
        }
    }
}

/// A criterion's limit or measured value: a count, a number (milliseconds or a ratio, by
/// kind) or a word.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    /// A count.
    Count(u64),
    /// Milliseconds, or a ratio.
    Number(f64),
    /// A version, or how the run ended.
    Text(String),
}

/// One criterion of the verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    /// What it checks.
    pub kind: CriterionKind,
    /// True unless it broke (a skipped criterion passes).
    pub passed: bool,
    /// The limit; `null` when it has none or was skipped.
    pub limit: Option<Quantity>,
    /// What the run measured; `null` when skipped or nothing was measured.
    pub measured: Option<Quantity>,
    /// Who set the limit: a flag (`--max-gap`), a scenario key (`verdict.max_gap`), or `default`.
    pub source: crate::config::Source,
    /// Why it was not judged (`no --max-p99`), if it was not.
    pub skipped: Option<String>,
    /// The sentence of the verdict line, when it broke.
    pub reason: Option<String>,
    /// In a run of several endpoints: the endpoint it judges (absent for the run's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Counters indexed by [`ErrorClass::index`], as a map of the classes seen.
fn class_counts(counts: &[u64; ErrorClass::COUNT]) -> BTreeMap<ErrorClass, u64> {
    ErrorClass::ALL
        .into_iter()
        .filter(|c| counts[c.index()] > 0)
        .map(|c| (c, counts[c.index()]))
        .collect()
}

fn window(w: &crate::measure::gaps::Window, f: &Finished) -> WindowEntry {
    WindowEntry {
        start_ms: millis(w.start),
        end_ms: millis(w.end),
        start_uncertainty_ms: w.start_uncertainty.map(millis),
        end_uncertainty_ms: w.end_uncertainty.map(millis),
        duration_ms: millis(w.duration()),
        failed: w.failed,
        ok: w.ok,
        codes: w.codes.iter().copied().collect(),
        errors: class_counts(&w.errors),
        failed_on_new_connections: w.failed_on_new,
        failed_on_reused_connections: w.failed_on_reused,
        steps: f.rollout.steps_during(w.start, w.end),
        after_step: f
            .rollout
            .steps_during(w.start, w.end)
            .is_empty()
            .then(|| f.rollout.step_before(w.start).map(str::to_string))
            .flatten(),
        open: w.open,
        first_seq: f.global_seq(w.first_seq),
        end_seq: w.end_seq.and_then(|seq| f.global_seq(seq)),
    }
}

fn millis(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl RunResult {
    /// The measurements of a finished run, in wire form: no thresholds, verdict or hints yet
    /// (`crate::judge::verdict::conclude` adds them).
    pub fn new(f: &Finished) -> RunResult {
        let r = &f.recorder;
        let config = &f.config;
        let started_at_unix_ms = f
            .started_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let width = r.timeline().width();
        let timeline = r
            .timeline()
            .slots()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let [p50_ms, p99_ms] = s
                    .latency_quantiles_us([0.50, 0.99])
                    .map_or([None, None], |q| q.map(|us| Some(us as f64 / 1000.0)));
                Slot {
                    t_ms: millis(width * i as u32),
                    ok: s.ok,
                    failed: s.failed,
                    codes: s.codes.iter().copied().collect(),
                    errors: s.errors.iter().copied().collect(),
                    p50_ms,
                    p99_ms,
                    versions: s
                        .versions
                        .iter()
                        .map(|&(v, n)| (f.versions.name(v), n))
                        .collect(),
                    latency_us: config
                        .load
                        .shard
                        .as_ref()
                        .and_then(|_| s.latency().map(|h| encode(&*h))),
                }
            })
            .collect();
        RunResult {
            schema_version: SCHEMA_VERSION,
            gapless_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: String::new(),
            started_at: humantime::format_rfc3339_millis(f.started_at).to_string(),
            started_at_unix_ms,
            elapsed_ms: millis(f.elapsed),
            actual_qps: round3(f.actual_qps()),
            interrupted: f.interruption.is_some(),
            interruption: f.interruption,
            target: Target {
                url: config.target.url.to_string(),
                method: config.target.method.to_string(),
                http2: config.target.http2,
                cacert: !config.target.ca_certs.is_empty(),
                insecure: config.target.insecure,
            },
            load: Load {
                qps: config.load.rate.qps(),
                connections: config.load.connections.get(),
                duration_ms: millis(f.length),
                duration_requested_ms: (!config.rollout.has_steps())
                    .then(|| millis(config.load.duration)),
                warmup_ms: config
                    .rollout
                    .has_steps()
                    .then(|| millis(config.rollout.warmup)),
                cooldown_ms: config
                    .rollout
                    .has_steps()
                    .then(|| millis(config.rollout.cooldown)),
                timeout_ms: millis(config.target.timeout),
                slot_ms: millis(r.timeline().width()),
                slot_requested_ms: r.timeline().requested().map(millis),
                ok_codes: config.target.ok_codes.clone(),
            },
            requests: Requests {
                total: r.total(),
                ok: r.ok(),
                failed: r.failed(),
                late: r.late(),
                unsent: r.unsent(),
                interrupted: f.stats.interrupted,
                body_bytes: f.stats.body_bytes,
            },
            codes: r.codes().collect(),
            errors: r
                .errors()
                .map(|(c, new, reused)| (c, new + reused))
                .chain((r.unsent() > 0).then(|| (ErrorClass::NotSent, r.unsent())))
                .collect(),
            errors_by_connection: r
                .errors()
                .map(|(c, new, reused)| (c, ByConnection { new, reused }))
                .collect(),
            error_samples: r
                .error_samples()
                .iter()
                .map(|(c, sample)| (c, sample.to_string()))
                .collect(),
            latency_ms: Latency::from_histogram(&r.corrected().histogram()),
            service_time_ms: Latency::from_histogram(&r.service().histogram()),
            lateness_ms: Latency::from_histogram(&r.lateness().histogram()),
            histograms: Histograms::of(r),
            failure_signatures: r.envoy().collect(),
            connections: Connections {
                opened: f.stats.connections_opened,
                connect_failures: f.stats.connect_failures,
                failed_on_new_connections: r.failed_on(ConnectionUse::New),
                failed_on_reused_connections: r.failed_on(ConnectionUse::Reused),
            },
            timeline,
            phases: r
                .phases()
                .iter()
                .map(|p| PhaseEntry {
                    name: p.phase,
                    start_ms: millis(p.start),
                    end_ms: millis(p.end.unwrap_or(f.length)),
                    requests: p.total,
                    ok: p.ok,
                    failed: p.failed,
                    versions: p
                        .versions
                        .iter()
                        .map(|&(v, count, first)| {
                            (
                                f.versions.name(v),
                                PhaseVersion {
                                    count,
                                    first_ms: millis(first),
                                },
                            )
                        })
                        .collect(),
                })
                .collect(),
            unhealthy_warmup: f
                .rollout
                .unhealthy_warmup
                .map(|(failed, requests)| WarmupCheck { failed, requests }),
            steps: f
                .rollout
                .steps
                .iter()
                .map(|s| StepEntry {
                    name: s.name.clone(),
                    command: s.command.clone(),
                    background: s.background,
                    status: s.status,
                    start_ms: s.start.map(millis),
                    end_ms: s.end.map(millis),
                    exit_code: s.exit_code,
                    signal: s.signal,
                    problem: s.problem.clone(),
                    output_tail: s.output_tail.clone(),
                    output_tail_ms: s.output_tail_at.iter().copied().map(millis).collect(),
                })
                .collect(),
            events: events(f),
            events_dropped: f.rollout.events_dropped
                + f.streams
                    .iter()
                    .map(|p| p.tally.events_dropped)
                    .sum::<u64>(),
            windows: r.gaps().windows().iter().map(|w| window(w, f)).collect(),
            windows_total: r.gaps().totals().windows,
            gaps: r
                .gaps()
                .windows()
                .iter()
                .filter(|w| w.is_gap())
                .map(|w| window(w, f))
                .collect(),
            gaps_total: r.gaps().totals().gaps,
            longest_gap_ms: r
                .gaps()
                .totals()
                .longest_gap
                .as_ref()
                .map(|g| millis(g.duration())),
            total_gap_ms: millis(r.gaps().totals().gap_time),
            merge_gap_ms: millis(r.gaps().merge_gap()),
            slow_windows: f
                .slow_windows()
                .iter()
                .map(|w| SlowEntry {
                    start_ms: millis(w.start),
                    end_ms: millis(w.end),
                    duration_ms: millis(w.end.saturating_sub(w.start)),
                    p99_ms: w.p99_us as f64 / 1000.0,
                    steps: f.rollout.steps_during(w.start, w.end),
                })
                .collect(),
            stalls: r
                .stalls()
                .stalls()
                .iter()
                .map(|s| {
                    let steps = f.rollout.steps_during(s.start, s.end);
                    StallEntry {
                        start_ms: millis(s.start),
                        end_ms: millis(s.end),
                        duration_ms: millis(s.duration()),
                        held: s.held,
                        failed: s.failed,
                        connect_timeouts: s.connect_timeouts,
                        unanswered_new: s.unanswered_new,
                        unanswered_reused: s.unanswered_reused,
                        after_step: steps
                            .is_empty()
                            .then(|| f.rollout.step_before(s.start).map(str::to_string))
                            .flatten(),
                        steps,
                        open: s.open,
                    }
                })
                .collect(),
            stalls_total: r.stalls().total(),
            longest_stall_ms: millis(r.stalls().longest_silence()),
            versions: r
                .versions()
                .iter()
                .map(|v| {
                    (
                        f.versions.name(v.version),
                        VersionEntry {
                            count: v.count,
                            first_ms: millis(v.first),
                            last_ms: millis(v.last),
                        },
                    )
                })
                .collect(),
            cutover_ms: r.cutover().map(millis),
            mixed_window: r.mixed_window().map(|(a, b)| Span {
                start_ms: millis(a),
                end_ms: millis(b),
            }),
            thresholds: Thresholds::default(),
            command_line: Vec::new(),
            scenario: None,
            hints: Vec::new(),
            warnings: f.warnings.clone(),
            shard: config.load.shard.as_ref().map(|p| ShardEntry {
                index: p.index,
                count: p.count.get(),
                label: p.label.clone(),
                start_at_unix_ms: started_at_unix_ms,
            }),
            shards: Vec::new(),
            targets: Vec::new(),
            streams: f.streams.iter().map(stream_entry).collect(),
            verdict: Verdict::default(),
        }
    }
}

/// The background steps' lines, and with probes their disconnects, in time order.
fn events(f: &Finished) -> Vec<EventEntry> {
    let mut events: Vec<EventEntry> = f
        .rollout
        .events
        .iter()
        .map(|e| EventEntry {
            t_ms: millis(e.at),
            step: e.step.clone(),
            line: e.line.clone(),
            disconnect: None,
        })
        .collect();
    if f.streams.is_empty() {
        return events;
    }
    for probe in &f.streams {
        for d in &probe.tally.events {
            let code = d.code.map_or_else(String::new, |c| format!(" {c}"));
            let detail = if d.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", d.detail)
            };
            events.push(EventEntry {
                t_ms: millis(d.at),
                step: probe.config.name.clone(),
                line: if d.class == StreamClass::NotServing {
                    format!("connection {} not serving{detail}", d.connection)
                } else {
                    format!(
                        "connection {} {}{code}{detail}",
                        d.connection,
                        if d.class.is_graceful() {
                            format!("closed gracefully ({})", d.class)
                        } else {
                            format!("lost ({})", d.class)
                        }
                    )
                },
                disconnect: Some(DisconnectEntry {
                    probe: probe.config.name.clone(),
                    connection: d.connection,
                    class: d.class,
                    graceful: d.class.is_graceful(),
                    code: d.code,
                }),
            });
        }
    }
    events.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    events
}

/// One probe's entry of `streams`.
fn stream_entry(p: &crate::streams::ProbeReport) -> StreamEntry {
    let t = &p.tally;
    let (graceful, ungraceful) = t.split();
    StreamEntry {
        name: p.config.name.clone(),
        url: p.config.url.to_string(),
        kind: p.config.kind.to_string(),
        count: p.config.count.get(),
        connects: t.connects,
        disconnects: Disconnects {
            graceful,
            ungraceful,
            by_class: t.disconnects.clone(),
        },
        not_serving: t.not_serving,
        connect_failures: t.connect_failures.clone(),
        reconnect_ms: Latency::from_histogram(&t.reconnect_us),
        stream_gap_ms: StreamGap {
            total: millis(t.gap_total),
            longest: millis(t.gap_longest),
        },
        events_dropped: t.events_dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_written_before_the_additive_fields_still_reads() {
        let mut r = RunResult::default();
        r.steps.push(StepEntry {
            name: "deploy".into(),
            output_tail: vec!["done".into()],
            output_tail_ms: vec![12.5],
            ..StepEntry::default()
        });
        let mut value = serde_json::to_value(&r).unwrap();
        for field in [
            "slot_requested_ms",
            "duration_requested_ms",
            "warmup_ms",
            "cooldown_ms",
        ] {
            value["load"]
                .as_object_mut()
                .unwrap()
                .remove(field)
                .unwrap();
        }
        value["steps"][0]
            .as_object_mut()
            .unwrap()
            .remove("output_tail_ms")
            .unwrap();
        let old: RunResult = serde_json::from_value(value).unwrap();
        assert_eq!(old.steps[0].output_tail, ["done"]);
        assert!(old.steps[0].output_tail_ms.is_empty());
        assert_eq!(old.load.slot_requested_ms, None);
    }
}
