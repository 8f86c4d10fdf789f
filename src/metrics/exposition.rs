//! A [`Snapshot`] as metric families, encoded by the `prometheus-client` crate: OpenMetrics text
//! for `/metrics`, the Prometheus text format (0.0.4) for the Pushgateway, which reads only that.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `gapless_requests_total` | counter | `outcome` (`ok`, `failed`) |
//! | `gapless_responses_total` | counter | `code` (each status seen) |
//! | `gapless_errors_total` | counter | `class` (each transport class seen, `not_sent` included) |
//! | `gapless_failure_windows_total` | counter | |
//! | `gapless_gap_seconds_total` | counter | |
//! | `gapless_longest_gap_seconds` | gauge | |
//! | `gapless_latency_seconds` | histogram | `le` |
//! | `gapless_step_info` | gauge: 1 for the step's status, 0 for the others | `step`, `status` |
//! | `gapless_verdict_passed` | gauge (1 or 0), once judged | |
//! | `gapless_passed` | gauge: passed so far (1 or 0) | |
//!
//! Every series also carries `run_id`, and `shard` for a shard of a split load.

use std::borrow::Cow;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::board::{Board, Snapshot};

/// Every value of `gapless_step_info`'s `status`: live (`pending`, `running`, `ended`), then the
/// result's.
pub const STEP_STATES: [&str; 9] = [
    "pending",
    "running",
    "ended",
    "ok",
    "failed",
    "timed_out",
    "interrupted",
    "stopped",
    "skipped",
];

/// The OpenMetrics text's content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Prometheus text format's content type (what a Pushgateway reads).
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The board's values now, as OpenMetrics text.
pub fn openmetrics(board: &Board) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the families encode only numbers and closed labels.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry(board));
    out
}

/// The board's values now, in the Prometheus text format (0.0.4).
pub fn prometheus_text(board: &Board) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry(board));
    out
}

/// A registry holding the board's snapshot, labelled with the run id and the shard.
fn registry(board: &Board) -> Registry {
    let mut labels: Vec<(Cow<'static, str>, Cow<'static, str>)> =
        vec![("run_id".into(), board.run_id().to_string().into())];
    if let Some(shard) = board.shard() {
        labels.push(("shard".into(), shard.index.to_string().into()));
    }
    let mut registry = Registry::with_prefix_and_labels("gapless", labels.into_iter());
    registry.register_collector(Box::new(Families(board.snapshot())));
    registry
}

/// One snapshot's families.
#[derive(Debug)]
struct Families(Snapshot);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let seconds = Unit::Seconds;

        let mut family = encoder.encode_descriptor(
            "requests",
            "Requests due so far, by outcome (a request never sent is failed).",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in [("ok", s.ok), ("failed", s.failed)] {
            ConstCounter::new(n).encode(family.encode_family(&[("outcome", outcome)])?)?;
        }

        let mut family = encoder.encode_descriptor(
            "responses",
            "Responses, by HTTP status code.",
            None,
            MetricType::Counter,
        )?;
        for (code, &n) in &s.codes {
            let code = code.to_string();
            ConstCounter::new(n).encode(family.encode_family(&[("code", code.as_str())])?)?;
        }

        let mut family = encoder.encode_descriptor(
            "errors",
            "Failed requests without a response, by transport class.",
            None,
            MetricType::Counter,
        )?;
        for (&class, &n) in &s.errors {
            ConstCounter::new(n).encode(family.encode_family(&[("class", class)])?)?;
        }

        let family = encoder.encode_descriptor(
            "failure_windows",
            "Failure windows found so far.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.windows).encode(family)?;

        let family = encoder.encode_descriptor(
            "gap",
            "Time without service so far: the sum of the availability gaps.",
            Some(&seconds),
            MetricType::Counter,
        )?;
        ConstCounter::new(s.gap_seconds).encode(family)?;

        let family = encoder.encode_descriptor(
            "longest_gap",
            "The longest availability gap so far (0 without one).",
            Some(&seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(s.longest_gap_ms / 1000.0).encode(family)?;

        let mut family = encoder.encode_descriptor(
            "latency",
            "Latency from the intended send time (coordinated-omission corrected), responses only.",
            Some(&seconds),
            MetricType::Histogram,
        )?;
        family.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            s.latency.sum,
            s.latency.count,
            &s.latency.buckets,
            None,
        )?;

        let mut family = encoder.encode_descriptor(
            "step_info",
            "Each rollout step's status, 1 for the current one and 0 for the others (a state set): pending, running, ended while the load runs; the result's at the end.",
            None,
            MetricType::Gauge,
        )?;
        for (step, status) in &s.steps {
            for state in STEP_STATES {
                ConstGauge::new(i64::from(state == *status))
                    .encode(family.encode_family(&[("step", step.as_str()), ("status", state)])?)?;
            }
        }

        let family = encoder.encode_descriptor(
            "passed",
            "1 while every criterion of the verdict can still hold; at the end, the verdict's.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(s.passed)).encode(family)?;

        if let Some(passed) = s.verdict {
            let family = encoder.encode_descriptor(
                "verdict_passed",
                "The verdict: 1 passed, 0 failed (set once the run is judged).",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(passed)).encode(family)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::RunResult;

    #[test]
    fn families_carry_the_run_id_and_only_closed_labels() {
        let argv = ["gapless", "run", "http://127.0.0.1:9/", "--", "true"];
        let crate::cli::Command::Run(run) = crate::cli::Cli::parse_from(argv).unwrap().command
        else {
            unreachable!("a run command")
        };
        let config = run.validate(None, &|_| None).unwrap().config;
        let board = Board::new("abc".into(), &config);
        let live = openmetrics(&board);
        assert!(
            live.contains("gapless_requests_total{run_id=\"abc\",outcome=\"ok\"} 0"),
            "{live}"
        );
        assert!(
            live.contains("gapless_step_info{run_id=\"abc\",step=\"step 1\",status=\"pending\"} 1")
        );
        assert!(live.contains("gapless_step_info{run_id=\"abc\",step=\"step 1\",status=\"ok\"} 0"));
        assert!(!live.contains("verdict_passed"));
        assert!(live.ends_with("# EOF\n"));
        let mut result = RunResult::default();
        result.requests.ok = 5;
        result.codes.insert(200, 5);
        result.verdict.passed = true;
        board.finish(&result);
        let done = openmetrics(&board);
        assert!(
            done.contains("gapless_responses_total{run_id=\"abc\",code=\"200\"} 5"),
            "{done}"
        );
        assert!(done.contains("gapless_verdict_passed{run_id=\"abc\"} 1"));
        assert!(
            done.contains("gapless_latency_seconds_bucket{le=\"+Inf\",run_id=\"abc\"} 0")
                || done.contains("gapless_latency_seconds_bucket{run_id=\"abc\",le=\"+Inf\"} 0"),
            "{done}"
        );
        let text = prometheus_text(&board);
        let url = crate::metrics::PushUrl::parse("http://gw:9091").unwrap();
        assert_eq!(
            crate::metrics::push::group_url(&url, &board),
            "http://gw:9091/metrics/job/gapless/run_id/abc"
        );
        assert!(
            text.contains("# TYPE gapless_requests_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn a_shard_is_labelled_and_grouped_by_its_index() {
        let argv = [
            "gapless",
            "run",
            "http://127.0.0.1:9/",
            "--shards",
            "3",
            "--shard-index",
            "2",
            "--start-at",
            "0",
        ];
        let crate::cli::Command::Run(run) = crate::cli::Cli::parse_from(argv).unwrap().command
        else {
            unreachable!("a run command")
        };
        let config = run.validate(None, &|_| None).unwrap().config;
        let board = Board::new("abc".into(), &config);
        let text = openmetrics(&board);
        assert!(
            text.contains("gapless_requests_total{run_id=\"abc\",shard=\"2\",outcome=\"ok\"} 0"),
            "{text}"
        );
        let url = crate::metrics::PushUrl::parse("http://gw:9091/").unwrap();
        assert_eq!(
            crate::metrics::push::group_url(&url, &board),
            "http://gw:9091/metrics/job/gapless/run_id/abc/shard/2"
        );
        let status = serde_json::to_value(board.status()).unwrap();
        assert_eq!(status["shard"], serde_json::json!({"index": 2, "count": 3}));
    }
}
