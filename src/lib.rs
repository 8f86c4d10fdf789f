//! gapless: a constant-rate HTTP load, run alongside a release, that proves the release did not
//! drop a single request.
//!
//! # Layout
//!
//! One pipeline, no per-mode copies, with the rollout beside the load on one clock. Folders are
//! stages; dependencies point down the pipeline.
//!
//! ```text
//! cli (args, options, checks, scenario) ──► config ──► run ─┬─► load (schedule, dispatch, engine, timer)
//!                                                           │      └─► client (connection, tls, stamped, wire)
//!                                                           │             └─► measure (outcome, recorder,
//!                                                           │                  timeline, gaps, version)
//!                                                           ├─► rollout (steps, watchers, strategies)
//!                                                           └─► streams (websocket, sse, grpc, tally)
//! run ──► result (the wire types) ──► judge (verdict, hints, diff) ──► report (text, JSON, HTML,
//!                                                                       Markdown, JUnit, Fortio,
//!                                                                       diff)
//! ui (console, progress) and targets (serve, demo) sit beside; verbs drives it all.
//! ```
//!
//! - `cli`: clap arguments and scenario files fill one set of option declarations, checked
//!   once into [`config`] (errors name the flag or `file:line:col` and the key).
//! - [`config`]: the typed, validated run configuration.
//! - `load`: request `k` is due at `start + k / qps`; a pacer releases due arrivals, workers
//!   claim them and make one attempt each.
//! - `client`: DNS, TCP, TLS and HTTP under a connect-rate ceiling; HTTP/1.1 on the socket.
//! - `measure`: an HTTP status or a classified transport failure per request, histograms,
//!   counters, fixed slots, phases, failure windows and versions; bounded memory.
//! - `rollout`: the steps, in their own process groups, and the watchers; the rollout
//!   strategies an orchestrator (the embedded demo cluster) performs.
//! - `streams`: long-lived probes (`[[stream]]`): WebSocket connections, SSE streams and gRPC
//!   server streams held for the whole run, every disconnect classified, reconnected at once
//!   under a rate ceiling.
//! - [`run`]: one run from start to finish, interruptible.
//! - [`result`]: what a run measured, as the JSON result's wire types: every report renders one,
//!   and the verdict is judged from one.
//! - `judge`: the typed verdict and the exit code; likely causes, with the fix; two saved
//!   results compared (`gapless diff`), NEW judged against BASE into one typed comparison.
//! - `report`: text, JSON, HTML, Markdown, JUnit, Fortio JSON; the comparison's table, JSON and
//!   Markdown.
//! - `ui`: the live line on stderr; `targets`: the built-in target and the demo cluster.
//! - [`metrics`]: live Prometheus metrics and `/status` (`--metrics-listen`), read from the
//!   recorders while the load runs and from the judged result after; the Pushgateway push.
//! - `merge`: shard results (`run --shards`) folded into one result, judged once; a run of
//!   several endpoints (`[[target]]`, `--targets`) is folded the same way: endpoint `i` of `n`
//!   sends the requests `k mod n == i` of the run's schedule (with weights, its positions of each
//!   cycle: [`config::Interleave`]), with its own recorder, and is judged on its own; the
//!   endpoints of one origin share one engine and its `-c` connections.
//! - [`verbs`]: each verb of the command line, from its arguments to an exit code.
//!
//! The documented API is [`cli`] (parsing), [`verbs`] (running a verb), [`config`], [`run`]
//! (one run, in process) and [`result`] (what it measured, the JSON result's types).

// Every public item is documented; clippy's -D warnings keeps it that way.
#![warn(missing_docs)]

pub mod cli;
mod client;
pub mod config;
mod judge;
mod load;
mod measure;
mod merge;
pub mod metrics;
mod redact;
mod report;
pub mod result;
mod rollout;
pub mod run;
mod streams;
mod targets;
mod ui;
mod units;
pub mod verbs;

pub use judge::verdict::Exit;

/// Internals that the integration tests and benchmarks reach into; not an API.
#[doc(hidden)]
pub mod internals {
    pub use crate::client::connection;
    pub use crate::judge::verdict;
    pub use crate::load::schedule;
    pub use crate::measure::{gaps, outcome, recorder, timeline, version};
    pub use crate::rollout::strategy::Orchestrator;
    pub use crate::targets::accept;
    pub use crate::ui::console;
}
