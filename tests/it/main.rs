//! gapless's integration tests: one test crate (so `support` is compiled once), one module per
//! area. Run one area with `cargo test --test it AREA::`, e.g. `cargo test --test it demo::`.
//!
//! A test that needs nginx, haproxy, Chromium, openssl, stress-ng, Prometheus and its Pushgateway or root (network namespaces and
//! iptables) is `#[ignore = "needs NAME"]`: a plain `cargo test` lists it as ignored, `cargo test
//! -- --include-ignored` (as `.ci/run` does) runs it and fails it if NAME is missing. Every run holds the machine [`support::shared`]; a test
//! whose timing needs it alone holds it [`support::exclusive`].

mod support;

mod cli_errors;
mod coordinated_omission;
mod demo;
mod deploy;
mod diff;
mod engine_edges;
mod gap_boundaries;
mod grpc;
mod h2_edges;
mod hints;
mod hostile;
mod interrupt;
mod json_output;
mod keepalive;
mod load_counts;
mod metrics;
mod naps;
mod not_sent;
mod protocols;
mod proxies;
mod report_outputs;
mod reports;
mod rollout;
mod scenario_fuzz;
mod secrets;
mod shards;
mod stalls;
mod streams;
mod targets;
mod transport_errors;
mod usage;
