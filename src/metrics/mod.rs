//! Live metrics of a run, for delivery pipelines: `--metrics-listen ADDR` serves Prometheus /
//! OpenMetrics text at `/metrics` and the run's state as JSON at `/status` while the run lasts
//! (and `--metrics-linger` after its verdict), and `--metrics-push URL` pushes the final values
//! to a Prometheus Pushgateway at the end.
//!
//! - [`board`]: what is published, one [`board::Snapshot`] at a time: read from the recorders
//!   the live progress line reads (no second bookkeeping) while the load runs, and from the
//!   judged [`crate::result::RunResult`] once there is one, so the final values are the JSON
//!   result's exactly.
//! - `exposition`: the snapshot as metric families, encoded by the `prometheus-client` crate.
//! - `server`: the small HTTP server (the accept loop of every server gapless starts).
//! - `push`: the Pushgateway client (plain HTTP, job `gapless`, grouped by run id and shard).
//!
//! Label sets are closed: the status codes and error classes seen, the scenario's steps (by
//! name, or `step N` when the name is the command), the run id and the shard. No header value,
//! URL or step command ever becomes a label.

pub(crate) mod board;
mod exposition;
mod push;
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tokio::net::TcpListener;

pub(crate) use board::Board;
pub(crate) use push::push;
pub(crate) use server::serve;

/// Errors of the metrics endpoint and of the push.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--metrics-listen` address cannot be bound (exit 2, before any load).
    #[error("cannot listen on --metrics-listen {given} ({addr}): {source}")]
    Bind {
        /// The address as given.
        given: String,
        /// The address it names.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The push to the Pushgateway failed.
    #[error("cannot push the metrics to {url}: {why}")]
    Push {
        /// Where to (without a password).
        url: String,
        /// Why.
        why: String,
    },
}

/// `--metrics-listen`: the address as given, and the socket address it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// As the user wrote it.
    pub given: String,
    /// What it names: a bare port is `127.0.0.1:PORT`.
    pub addr: SocketAddr,
}

impl Listen {
    /// A bare port (loopback only) or `host:port` (`0.0.0.0:9464`, `[::]:9464`,
    /// `localhost:9464`); the error is a sentence.
    pub fn parse(text: &str) -> Result<Listen, String> {
        let text = text.trim();
        let addr = if let Ok(port) = text.parse::<u16>() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
        } else if let Ok(addr) = text.parse::<SocketAddr>() {
            addr
        } else {
            let shape = || {
                format!(
                    "{text:?} is not a port or a host:port such as 127.0.0.1:9464 or 0.0.0.0:9464"
                )
            };
            if !text.contains(':') {
                return Err(shape());
            }
            text.to_socket_addrs()
                .map_err(|e| format!("{text:?}: {e}"))?
                .next()
                .ok_or_else(shape)?
        };
        Ok(Listen {
            given: text.to_string(),
            addr,
        })
    }
}

/// `--metrics-push`: a Pushgateway's base URL (`http://host:9091`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushUrl {
    /// The base URL, without a trailing slash.
    pub base: String,
}

impl PushUrl {
    /// An `http://` URL with a host; the error is a sentence.
    pub fn parse(text: &str) -> Result<PushUrl, String> {
        let text = text.trim();
        let uri: http::Uri = text
            .parse()
            .map_err(|_| format!("{text:?} is not a URL such as http://pushgateway:9091"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(
                    "https:// is not supported: push over http:// (to a Pushgateway in the cluster, or through a local proxy)"
                        .to_string(),
                );
            }
            _ => return Err(format!("{text:?} is not an http:// URL")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("{text:?} names no host"));
        }
        if uri.query().is_some() {
            return Err(format!(
                "{text:?}: give the Pushgateway's base URL, without a query"
            ));
        }
        Ok(PushUrl {
            base: text.trim_end_matches('/').to_string(),
        })
    }
}

/// What `gapless run` publishes, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `--metrics-listen`.
    pub listen: Option<Listen>,
    /// `--metrics-linger`: how long the final values stay served after the verdict.
    pub linger: Duration,
    /// `--metrics-push`.
    pub push: Option<PushUrl>,
}

impl MetricsConfig {
    /// True when anything is published.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || self.push.is_some()
    }
}

/// Binds the `--metrics-listen` address (before any load: an address in use is exit 2).
pub async fn bind(listen: &Listen) -> Result<TcpListener, Error> {
    TcpListener::bind(listen.addr)
        .await
        .map_err(|source| Error::Bind {
            given: listen.given.clone(),
            addr: listen.addr,
            source,
        })
}

/// A run's id: random for a run of its own; for a shard of a split load, derived from the
/// shards' common `--start-at` and count, so every shard of one load has the same id (and the
/// `shard` label tells them apart).
pub fn run_id(shard: Option<&crate::config::ShardPlan>) -> String {
    use std::hash::{BuildHasher, Hasher};
    match shard {
        Some(plan) => {
            let at = plan
                .start_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            // FNV-1a: the same on every shard, whatever its binary.
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in format!("{at}/{}", plan.count).bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            format!("{hash:016x}")
        }
        None => {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            hasher.write_u128(now);
            format!("{:016x}", hasher.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_loopback_and_host_port_is_as_given() {
        let bare = Listen::parse("9464").unwrap();
        assert_eq!(bare.addr, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(
            Listen::parse("0.0.0.0:9464").unwrap().addr,
            "0.0.0.0:9464".parse().unwrap()
        );
        assert_eq!(
            Listen::parse("[::1]:1").unwrap().addr,
            "[::1]:1".parse().unwrap()
        );
        assert!(
            Listen::parse("localhost:9464")
                .unwrap()
                .addr
                .ip()
                .is_loopback()
        );
        assert!(
            Listen::parse("nonsense")
                .unwrap_err()
                .contains("not a port")
        );
        assert!(Listen::parse("70000").is_err());
    }

    #[test]
    fn push_urls_are_plain_http_with_a_host() {
        assert_eq!(
            PushUrl::parse("http://gw:9091/").unwrap().base,
            "http://gw:9091"
        );
        assert!(PushUrl::parse("https://gw/").unwrap_err().contains("https"));
        assert!(PushUrl::parse("gw:9091").is_err());
        assert!(PushUrl::parse("http://gw/?a=b").is_err());
    }

    #[test]
    fn shards_of_one_load_share_a_run_id_and_runs_do_not() {
        let plan = |index| crate::config::ShardPlan {
            index,
            count: std::num::NonZeroU32::new(3).unwrap(),
            label: format!("n{index}"),
            start_at: std::time::UNIX_EPOCH + Duration::from_secs(1_765_000_000),
            interleave: std::sync::Arc::new(crate::config::Interleave::equal(
                std::num::NonZeroU32::new(3).unwrap(),
            )),
        };
        assert_eq!(run_id(Some(&plan(0))), run_id(Some(&plan(2))));
        assert_eq!(run_id(Some(&plan(0))).len(), 16);
        assert_ne!(run_id(None), run_id(None));
    }
}
