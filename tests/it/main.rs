//! gapless's integration tests: one test crate (so `tests/it/support` is compiled once), one
//! module per area. Run one area with `cargo test --test it AREA::`, e.g.
//! `cargo test --test it demo::`.

mod support;

mod cli_errors;
mod coordinated_omission;
mod demo;
mod engine_edges;
mod gap_boundaries;
mod hints;
mod hostile;
mod interrupt;
mod json_output;
mod keepalive;
mod load_counts;
mod naps;
mod not_sent;
mod protocols;
mod proxies;
mod report_outputs;
mod reports;
mod rollout;
mod scenario_fuzz;
mod secrets;
mod transport_errors;
