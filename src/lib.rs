//! gapless: a constant-rate HTTP load, run alongside a release, that proves the release did not
//! drop a single request.
//!
//! # Layout
//!
//! One pipeline, no per-mode copies, with the rollout beside the load on one clock:
//!
//! ```text
//! cli / scenario ──► config ──► schedule ──► dispatch ──► engine (workers) ──► connection
//!                       │                                      │
//!                       ▼                                      ▼
//!          rollout (steps, watchers, demo)      outcome ──► recorder (timeline, gaps, phases,
//!                       │                                    versions) ──► verdict ──► report
//!                       └──────────── run: one clock, one result ─────────────┘
//! ```
//!
//! - [`cli`]: clap arguments, validated into [`config`] types in a second stage, over the
//!   values of a [`scenario`] file (TOML; errors name `file:line:col` and the key).
//! - [`config`]: the typed, validated run configuration.
//! - [`schedule`]: request `k` is due at `start + k / qps`, computed, never accumulated.
//! - [`dispatch`]: a pacer releases due arrivals; workers claim them; the backlog is an
//!   integer, not a queue.
//! - [`engine`]: connection workers, one attempt per arrival, every outcome recorded.
//! - [`connection`]: DNS, TCP, TLS and the HTTP handshake under a connect-rate ceiling;
//!   [`wire`]: HTTP/1.1 requests written and responses read on the socket; [`stamped`]: the
//!   kernel's receive time of each HTTP/1.1 response.
//! - [`outcome`]: an HTTP status or a classified transport failure (a `Copy` enum).
//! - [`recorder`], [`timeline`], [`gaps`], [`version`]: histograms, counters, fixed slots,
//!   phases, failure windows and versions; bounded memory.
//! - [`rollout`]: the steps, in their own process groups, and the watchers; [`demo`] is the
//!   embedded cluster its steps can roll out.
//! - [`verdict`]: pass or fail, and the exit code; [`hints`]: likely causes, with the fix.
//! - [`report`]: text, JSON (wire types documented there), HTML, Markdown, JUnit, Fortio JSON.
//! - [`run`]: one run from start to verdict, interruptible; [`progress`] and [`console`]: the
//!   live line on stderr.
//! - [`serve`]: the built-in target.

// serde_json's `json!` of the Fortio result (56 keys) needs more than the default 128.
#![recursion_limit = "256"]
// Every public item is documented; clippy's -D warnings keeps it that way.
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod connection;
pub mod console;
pub mod demo;
pub mod dispatch;
pub mod engine;
pub mod gaps;
pub mod hints;
pub mod outcome;
pub mod progress;
pub mod recorder;
pub mod redact;
pub mod report;
pub mod result;
pub mod rollout;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod stamped;
pub mod timeline;
pub mod timer;
pub mod tls;
pub mod units;
pub mod verdict;
pub mod version;
pub mod wire;
