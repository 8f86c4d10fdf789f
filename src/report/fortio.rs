//! `--fortio-json FILE`: the result in Fortio's JSON schema, so a run can be browsed with
//! `fortio report` and existing Fortio dashboards. Rendered from the result alone, so `gapless
//! report` writes it for a saved run too.
//!
//! Every key of Fortio's result is written. What gapless measures differently is mapped:
//! `DurationHistogram` is the latency from the *intended* send time (Fortio times from the
//! actual send; gapless's service time is not exported here); `RetCodes` uses Fortio's `-1` for
//! every transport failure (the classes are in gapless's own JSON); `NumThreads` is the number
//! of connections. Durations are in seconds, as Fortio writes them.
//!
//! Fortio's result is about one URL: for a run of several endpoints it is the **first
//! endpoint's** result (its share of the rate, its requests, its latency), and `Labels` says so
//! (`gapless 0.1.0: endpoint 1 of 3, site; the others are in gapless's JSON result, targets`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::measure::tally::LatencyHistogram;
use crate::result::RunResult;

/// Fortio's percentiles.
const PERCENTILES: [f64; 5] = [50.0, 75.0, 90.0, 99.0, 99.9];

/// Fortio's result (`fortio load -json`), every key.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct FortioResult {
    run_type: &'static str,
    labels: String,
    start_time: String,
    #[serde(rename = "RequestedQPS")]
    requested_qps: String,
    requested_duration: String,
    #[serde(rename = "ActualQPS")]
    actual_qps: f64,
    actual_duration: u64,
    num_threads: usize,
    version: String,
    duration_histogram: Histogram,
    errors_duration_histogram: Histogram,
    exactly: u64,
    jitter: bool,
    uniform: bool,
    no_catch_up: bool,
    #[serde(rename = "RunID")]
    run_id: u64,
    access_logger_info: &'static str,
    #[serde(rename = "ID")]
    id: String,
    ret_codes: BTreeMap<String, u64>,
    #[serde(rename = "IPCountMap")]
    ip_count_map: BTreeMap<String, u64>,
    insecure: bool,
    #[serde(rename = "MTLS")]
    mtls: bool,
    #[serde(rename = "CACert")]
    ca_cert: &'static str,
    cert: &'static str,
    key: &'static str,
    unix_domain_socket: &'static str,
    #[serde(rename = "URL")]
    url: String,
    num_connections: usize,
    compression: bool,
    disable_fast_client: bool,
    #[serde(rename = "HTTP10")]
    http10: bool,
    #[serde(rename = "H2")]
    h2: bool,
    disable_keep_alive: bool,
    allow_half_close: bool,
    follow_redirects: bool,
    resolve: &'static str,
    #[serde(rename = "HTTPReqTimeOut")]
    http_req_time_out: u64,
    user_credentials: &'static str,
    content_type: &'static str,
    payload: &'static str,
    method_override: String,
    log_errors: bool,
    sequential_warmup: bool,
    conn_reuse_range: [u64; 2],
    no_resolve_each_conn: bool,
    offset: u64,
    resolution: f64,
    sizes: Histogram,
    header_sizes: Histogram,
    sockets: Vec<u64>,
    socket_count: u64,
    connection_stats: Histogram,
    abort_on: u64,
}

/// Fortio's histogram, in seconds.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Histogram {
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    avg: f64,
    std_dev: f64,
    data: Vec<Bucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    percentiles: Option<Vec<Percentile>>,
}

/// One bucket of a Fortio histogram.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Bucket {
    start: f64,
    end: f64,
    percent: f64,
    count: u64,
}

/// One percentile of a Fortio histogram.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Percentile {
    percentile: f64,
    value: f64,
}

/// The Fortio result of a run, as pretty JSON.
pub fn render(r: &RunResult) -> String {
    let first = r.targets.first().map(|t| {
        let mut own = result(&t.result);
        own.labels = format!(
            "gapless {}: endpoint 1 of {}, {}; the others are in gapless's JSON result, targets",
            r.gapless_version,
            r.targets.len(),
            t.name
        );
        own
    });
    let mut text = serde_json::to_string_pretty(&first.unwrap_or_else(|| result(r)))
        .unwrap_or_else(|_| unreachable!("plain data always serializes"));
    text.push('\n');
    text
}

fn result(r: &RunResult) -> FortioResult {
    let mut codes: BTreeMap<String, u64> = r
        .codes
        .iter()
        .map(|(&c, &n)| (crate::measure::code::Shown(c).to_string(), n))
        .collect();
    let transport: u64 = r.errors.values().sum();
    if transport > 0 {
        codes.insert("-1".to_string(), transport);
    }
    let id = r
        .started_at
        .get(..19)
        .unwrap_or(&r.started_at)
        .replace(['-', ':'], "")
        .replace('T', "-");
    let authority = r
        .target
        .url
        .split_once("://")
        .map_or(r.target.url.as_str(), |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let seconds = |ms: f64| format!("{}s", ms / 1000.0);
    let opened = r.connections.opened;
    let latency = r.histograms.latency();
    FortioResult {
        run_type: "HTTP",
        labels: format!("gapless {}", r.gapless_version),
        start_time: r.started_at.clone(),
        requested_qps: r.load.qps.map_or("max".to_string(), |q| q.to_string()),
        requested_duration: seconds(r.load.duration_ms),
        actual_qps: r.actual_qps,
        actual_duration: (r.elapsed_ms * 1e6).round() as u64,
        num_threads: r.load.connections,
        version: format!("gapless-{}", r.gapless_version),
        duration_histogram: latency.as_ref().map_or_else(|| counted(0), histogram),
        errors_duration_histogram: counted(r.requests.failed),
        exactly: 0,
        jitter: false,
        uniform: false,
        no_catch_up: false,
        run_id: 0,
        access_logger_info: "",
        id: format!("{id}_gapless"),
        ret_codes: codes,
        ip_count_map: [(authority.to_string(), opened)].into(),
        insecure: r.target.insecure,
        mtls: false,
        ca_cert: "",
        cert: "",
        key: "",
        unix_domain_socket: "",
        url: r.target.url.clone(),
        num_connections: r.load.connections,
        compression: false,
        disable_fast_client: false,
        http10: false,
        h2: r.target.http2,
        disable_keep_alive: false,
        allow_half_close: false,
        follow_redirects: false,
        resolve: "",
        http_req_time_out: (r.load.timeout_ms * 1e6).round() as u64,
        user_credentials: "",
        content_type: "",
        payload: "",
        method_override: if r.target.method == "GET" {
            String::new()
        } else {
            r.target.method.clone()
        },
        log_errors: false,
        sequential_warmup: false,
        conn_reuse_range: [0, 0],
        no_resolve_each_conn: false,
        offset: 0,
        resolution: 0.001,
        sizes: counted(r.requests.total),
        header_sizes: counted(r.requests.total),
        sockets: vec![opened],
        socket_count: opened,
        connection_stats: counted(opened),
        abort_on: 0,
    }
}

/// Fortio's histogram of a microsecond histogram, in seconds, with 1-2-5 bucket bounds.
fn histogram(h: &LatencyHistogram) -> Histogram {
    if h.is_empty() {
        return counted(0);
    }
    let secs = |us: u64| us as f64 / 1e6;
    let (min, max) = (secs(h.min()), secs(h.max()));
    let mut data = Vec::new();
    let mut seen = 0u64;
    let mut lower = 0.0;
    for upper in bounds() {
        let below: u64 = h
            .iter_recorded()
            .filter(|v| secs(v.value_iterated_to()) < upper)
            .map(|v| v.count_at_value())
            .sum();
        let count = below - seen;
        if count > 0 {
            seen = below;
            data.push(Bucket {
                start: f64::max(lower, min),
                end: f64::min(upper, max),
                percent: 100.0 * seen as f64 / h.len() as f64,
                count,
            });
        }
        lower = upper;
        if seen == h.len() {
            break;
        }
    }
    Histogram {
        count: h.len(),
        min,
        max,
        sum: h.mean() * h.len() as f64 / 1e6,
        avg: h.mean() / 1e6,
        std_dev: h.stdev() / 1e6,
        data,
        percentiles: Some(
            PERCENTILES
                .iter()
                .map(|&p| Percentile {
                    percentile: p,
                    value: secs(h.value_at_quantile(p / 100.0)),
                })
                .collect(),
        ),
    }
}

/// Bucket upper bounds: 1, 2, 5 × 10^k seconds from 100 µs to 1 hour.
fn bounds() -> impl Iterator<Item = f64> {
    (-4..=3)
        .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
        .chain(std::iter::once(3600.0))
}

/// A histogram gapless does not keep: its count only.
fn counted(count: u64) -> Histogram {
    Histogram {
        count,
        ..Histogram::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_add_up() {
        let mut h = LatencyHistogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in [150, 900, 1_500, 1_600, 30_000] {
            h.record(us).unwrap();
        }
        let v = serde_json::to_value(histogram(&h)).unwrap();
        assert_eq!(v["Count"], 5);
        let data = v["Data"].as_array().unwrap();
        let total: u64 = data.iter().map(|d| d["Count"].as_u64().unwrap()).sum();
        assert_eq!(total, 5);
        assert_eq!(data.last().unwrap()["Percent"], 100.0);
        assert_eq!(data[0]["Start"], 0.00015);
        assert!(v["Percentiles"].as_array().unwrap().len() == 5);
    }

    #[test]
    fn a_result_without_histograms_still_renders() {
        let r = RunResult::default();
        let v: serde_json::Value = serde_json::from_str(&render(&r)).unwrap();
        assert_eq!(v["DurationHistogram"]["Count"], 0);
        assert_eq!(v["RunType"], "HTTP");
    }
}
