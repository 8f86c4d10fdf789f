//! `--fortio-json FILE`: the result in Fortio's JSON schema, so a run can be browsed with
//! `fortio report` and existing Fortio dashboards.
//!
//! Every key of Fortio's result is written. What gapless measures differently is mapped:
//! `DurationHistogram` is the latency from the *intended* send time (Fortio times from the
//! actual send; gapless's service time is not exported here); `RetCodes` uses Fortio's `-1` for
//! every transport failure (the classes are in gapless's own JSON); `NumThreads` is the number
//! of connections. Durations are in seconds, as Fortio writes them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::Error;
use crate::recorder::LatencyHistogram;
use crate::run::Finished;

/// Fortio's percentiles.
const PERCENTILES: [f64; 5] = [50.0, 75.0, 90.0, 99.0, 99.9];

/// Builds the Fortio result of a finished run.
pub fn result(f: &Finished) -> Value {
    let r = &f.recorder;
    let config = &f.config;
    let mut codes: BTreeMap<String, u64> = r.codes().map(|(c, n)| (c.to_string(), n)).collect();
    let transport: u64 = r.errors().map(|(_, new, reused)| new + reused).sum::<u64>() + r.unsent();
    if transport > 0 {
        codes.insert("-1".to_string(), transport);
    }
    let started = humantime::format_rfc3339_nanos(f.started_at).to_string();
    let id = started
        .get(..19)
        .unwrap_or(&started)
        .replace(['-', ':'], "")
        .replace('T', "-");
    let url = config.target.url.to_string();
    let authority = config.target.url.authority().to_string();
    let requested_duration = if config.rollout.has_steps() {
        humantime::format_duration(f.length).to_string()
    } else {
        humantime::format_duration(config.load.duration).to_string()
    };
    json!({
        "RunType": "HTTP",
        "Labels": format!("gapless {}", env!("CARGO_PKG_VERSION")),
        "StartTime": started,
        "RequestedQPS": config.load.rate.qps().map_or("max".to_string(), |q| q.to_string()),
        "RequestedDuration": requested_duration,
        "ActualQPS": f.actual_qps(),
        "ActualDuration": u64::try_from(f.elapsed.as_nanos()).unwrap_or(u64::MAX),
        "NumThreads": config.load.connections.get(),
        "Version": format!("gapless-{}", env!("CARGO_PKG_VERSION")),
        "DurationHistogram": histogram(r.corrected()),
        "ErrorsDurationHistogram": empty_histogram(r.failed()),
        "Exactly": 0,
        "Jitter": false,
        "Uniform": false,
        "NoCatchUp": false,
        "RunID": 0,
        "AccessLoggerInfo": "",
        "ID": format!("{id}_gapless"),
        "RetCodes": codes,
        "IPCountMap": { authority: f.stats.connections_opened },
        "Insecure": config.target.insecure,
        "MTLS": false,
        "CACert": "",
        "Cert": "",
        "Key": "",
        "UnixDomainSocket": "",
        "URL": url,
        "NumConnections": config.load.connections.get(),
        "Compression": false,
        "DisableFastClient": false,
        "HTTP10": false,
        "H2": config.target.http2,
        "DisableKeepAlive": false,
        "AllowHalfClose": false,
        "FollowRedirects": false,
        "Resolve": "",
        "HTTPReqTimeOut": u64::try_from(config.target.timeout.as_nanos()).unwrap_or(u64::MAX),
        "UserCredentials": "",
        "ContentType": "",
        "Payload": "",
        "MethodOverride": if config.target.method == http::Method::GET { String::new() } else { config.target.method.to_string() },
        "LogErrors": false,
        "SequentialWarmup": false,
        "ConnReuseRange": [0, 0],
        "NoResolveEachConn": false,
        "Offset": 0,
        "Resolution": 0.001,
        "Sizes": empty_histogram(r.total()),
        "HeaderSizes": empty_histogram(r.total()),
        "Sockets": [f.stats.connections_opened],
        "SocketCount": f.stats.connections_opened,
        "ConnectionStats": empty_histogram(f.stats.connections_opened),
        "AbortOn": 0,
    })
}

/// Writes the Fortio result to `path`.
pub fn write(f: &Finished, path: &Path) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(&result(f))?;
    std::fs::write(path, text + "\n").map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Fortio's histogram of a microsecond histogram, in seconds, with 1-2-5 bucket bounds.
fn histogram(h: &LatencyHistogram) -> Value {
    if h.is_empty() {
        return empty_histogram(0);
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
            data.push(json!({
                "Start": f64::max(lower, min),
                "End": f64::min(upper, max),
                "Percent": 100.0 * seen as f64 / h.len() as f64,
                "Count": count,
            }));
        }
        lower = upper;
        if seen == h.len() {
            break;
        }
    }
    json!({
        "Count": h.len(),
        "Min": min,
        "Max": max,
        "Sum": h.mean() * h.len() as f64 / 1e6,
        "Avg": h.mean() / 1e6,
        "StdDev": h.stdev() / 1e6,
        "Data": data,
        "Percentiles": PERCENTILES
            .iter()
            .map(|&p| json!({"Percentile": p, "Value": secs(h.value_at_quantile(p / 100.0))}))
            .collect::<Vec<_>>(),
    })
}

/// Bucket upper bounds: 1, 2, 5 × 10^k seconds from 100 µs to 1 hour.
fn bounds() -> impl Iterator<Item = f64> {
    (-4..=3)
        .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
        .chain(std::iter::once(3600.0))
}

/// A histogram gapless does not keep: its count only.
fn empty_histogram(count: u64) -> Value {
    json!({
        "Count": count, "Min": 0, "Max": 0, "Sum": 0, "Avg": 0, "StdDev": 0, "Data": []
    })
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
        let v = histogram(&h);
        assert_eq!(v["Count"], 5);
        let data = v["Data"].as_array().unwrap();
        let total: u64 = data.iter().map(|d| d["Count"].as_u64().unwrap()).sum();
        assert_eq!(total, 5);
        assert_eq!(data.last().unwrap()["Percent"], 100.0);
        assert_eq!(data[0]["Start"], 0.00015);
        assert!(v["Percentiles"].as_array().unwrap().len() == 5);
    }
}
