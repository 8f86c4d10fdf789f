//! Long-lived probes (`[[stream]]` in a scenario): K WebSocket connections, SSE streams or gRPC
//! server streams held open for the whole run beside the load, each disconnect classified (see
//! `crate::streams`).

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderMap, Uri};

/// How often a WebSocket probe pings, unless `interval` says otherwise.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);

/// How often a gRPC probe sends an HTTP/2 PING, unless `interval` says otherwise: the least
/// gRPC servers allow by default (grpc core's `min_recv_ping_interval_without_data`, grpc-go's
/// `EnforcementPolicy.MinTime`: 5 minutes); they answer more frequent PINGs on a quiet stream
/// with GOAWAY `too_many_pings`, ending it (grpcio: `UNAVAILABLE: Too many pings`).
pub const GRPC_PING_INTERVAL: Duration = Duration::from_secs(300);

/// What a probe holds open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// A WebSocket (`ws://`, `wss://`), pinged every `interval`.
    Websocket,
    /// Server-sent events (`http://`, `https://` with `kind = "sse"`): a `GET` whose response
    /// body is read as it arrives.
    Sse,
    /// A gRPC server stream (`http://` h2c, `https://` with ALPN h2, `kind = "grpc"`): one
    /// call of a server-streaming method (by default `grpc.health.v1.Health/Watch`) whose
    /// answers are read as they arrive, the connection pinged every `interval`.
    Grpc,
}

impl StreamKind {
    /// Its name in scenarios and results: `websocket`, `sse`, `grpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Websocket => "websocket",
            StreamKind::Sse => "sse",
            StreamKind::Grpc => "grpc",
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StreamKind {
    type Err = String;

    fn from_str(s: &str) -> Result<StreamKind, String> {
        match s {
            "websocket" | "ws" => Ok(StreamKind::Websocket),
            "sse" => Ok(StreamKind::Sse),
            "grpc" => Ok(StreamKind::Grpc),
            other => Err(format!(
                "{other:?} is not a stream kind: use websocket, sse or grpc"
            )),
        }
    }
}

/// A probe's URL: `ws://`, `wss://`, `http://` or `https://`, with a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamUrl {
    uri: Uri,
    tls: bool,
    host: String,
    port: u16,
}

impl StreamUrl {
    /// The URL as given (the scheme's default port implied).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// True for `wss` and `https`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// True for `ws` and `wss`.
    pub fn is_websocket(&self) -> bool {
        matches!(self.uri.scheme_str(), Some("ws" | "wss"))
    }

    /// Host name or IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port, defaulted from the scheme.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host[:port]` as written, for the `Host` header.
    pub fn authority(&self) -> &str {
        self.uri.authority().map_or("", |a| a.as_str())
    }

    /// `/path?query`.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }
}

impl fmt::Display for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uri.fmt(f)
    }
}

impl FromStr for StreamUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<StreamUrl, String> {
        let uri: Uri = s
            .parse()
            .map_err(|_| format!("{s:?} is not a URL such as ws://host:port/path"))?;
        let (tls, default_port) = match uri.scheme_str() {
            Some("ws" | "http") => (false, 80),
            Some("wss" | "https") => (true, 443),
            _ => {
                return Err(format!(
                    "{s:?} has no usable scheme: use ws://, wss://, or http(s):// with kind = \"sse\" or \"grpc\""
                ));
            }
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "{s:?} has credentials in it: give them as headers = {{ Authorization = \"...\" }}"
            ));
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{s:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(default_port);
        let uri = Uri::builder()
            .scheme(uri.scheme_str().unwrap_or("ws"))
            .authority(uri.authority().map_or("", |a| a.as_str()))
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|_| format!("{s:?} is not a valid URL"))?;
        Ok(StreamUrl {
            uri,
            tls,
            host,
            port,
        })
    }
}

/// One `[[stream]]`: a probe of `count` connections held for the whole run.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Its name in the reports (unique in the run).
    pub name: String,
    /// Where.
    pub url: StreamUrl,
    /// WebSocket, SSE or gRPC.
    pub kind: StreamKind,
    /// How many connections it holds at once.
    pub count: NonZeroUsize,
    /// WebSocket and gRPC: how often each connection is pinged (a WebSocket ping, an HTTP/2
    /// PING).
    pub interval: Duration,
    /// A ping unanswered, or an SSE stream silent (no data or comment line), this long is a
    /// disconnect of class `timeout`; also the deadline of each connect and handshake (for
    /// gRPC: until the response head).
    pub timeout: Duration,
    /// Extra headers of the handshake (WebSocket) or the request (SSE, gRPC).
    pub headers: HeaderMap,
    /// gRPC: the server-streaming call each stream makes (`None` for the other kinds).
    pub grpc: Option<std::sync::Arc<crate::client::grpc::StreamCall>>,
    /// Do not verify TLS certificates (`wss://`, `https://`): the run's `--insecure`.
    pub insecure: bool,
    /// Extra trusted CA certificates: the run's `--cacert`.
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_kinds_parse() {
        let u: StreamUrl = "ws://127.0.0.1:9001/chat?x=1".parse().unwrap();
        assert_eq!((u.host(), u.port(), u.is_tls()), ("127.0.0.1", 9001, false));
        assert!(u.is_websocket());
        assert_eq!(u.path_and_query(), "/chat?x=1");
        let u: StreamUrl = "wss://example.test".parse().unwrap();
        assert_eq!((u.port(), u.is_tls(), u.path_and_query()), (443, true, "/"));
        let u: StreamUrl = "http://[::1]:8/events".parse().unwrap();
        assert_eq!((u.host(), u.port(), u.is_websocket()), ("::1", 8, false));
        for bad in ["ftp://x/", "127.0.0.1:80", "ws://", "ws://u:p@h/"] {
            assert!(bad.parse::<StreamUrl>().is_err(), "{bad}");
        }
        assert_eq!("sse".parse::<StreamKind>(), Ok(StreamKind::Sse));
        assert_eq!("grpc".parse::<StreamKind>(), Ok(StreamKind::Grpc));
        assert!("rpc".parse::<StreamKind>().is_err());
    }
}
