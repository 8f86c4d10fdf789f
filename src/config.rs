//! The typed, validated run configuration: what `crate::cli` makes of the command line and the
//! scenario file, checked once, so that nothing after it sees an invalid value.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

mod interleave;
mod stream;
pub use interleave::{Interleave, MAX_PERIOD, TooFine, gcd};
pub use stream::{GRPC_PING_INTERVAL, PING_INTERVAL, StreamConfig, StreamKind, StreamUrl};

/// Errors found while validating configuration values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// `--qps` was negative, NaN or infinite.
    #[error("--qps must be a finite number of requests per second, 0 or more (got {0})")]
    InvalidQps(String),
    /// An `--ok-codes` list could not be parsed.
    #[error(
        "--ok-codes takes status codes and ranges such as 200-299,304 (got {0:?}); codes are 100 to 999, or gRPC names such as OK, NOT_FOUND, SERVING"
    )]
    InvalidOkCodes(String),
    /// The target URL has no scheme, no host or an unsupported scheme.
    #[error("target URL {url:?} {problem}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Who set a value: the user (a flag or a scenario key), or the documented default.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Source {
    /// Not given: the documented default.
    #[default]
    Default,
    /// A command-line flag, such as `--max-gap`.
    Flag(String),
    /// A scenario key, such as `verdict.max_gap`.
    Key(String),
}

impl Source {
    /// True unless the value is the default.
    pub fn is_given(&self) -> bool {
        !matches!(self, Source::Default)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Flag(name) | Source::Key(name) => f.write_str(name),
        }
    }
}

impl From<Source> for String {
    fn from(source: Source) -> String {
        source.to_string()
    }
}

impl From<String> for Source {
    fn from(text: String) -> Source {
        if text == "default" {
            Source::Default
        } else if text.starts_with('-') {
            Source::Flag(text)
        } else {
            Source::Key(text)
        }
    }
}

/// A checked value and who set it.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting<T> {
    /// The typed value.
    pub value: T,
    /// Who set it.
    pub source: Source,
}

impl<T> Setting<T> {
    /// `value`, the documented default.
    pub fn default_value(value: T) -> Setting<T> {
        Setting {
            value,
            source: Source::Default,
        }
    }

    /// `value`, set by `source`.
    pub fn from(value: T, source: Source) -> Setting<T> {
        Setting { value, source }
    }

    /// The value, without its source.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// Requests per second for a paced run: positive and finite.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Qps(f64);

impl Qps {
    /// Returns `None` unless `value` is finite and strictly positive.
    pub const fn new(value: f64) -> Option<Qps> {
        if value.is_finite() && value > 0.0 {
            Some(Qps(value))
        } else {
            None
        }
    }

    /// The rate as a float.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// How fast to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// Open loop: request k is due at `start + k / qps`, whatever the target does.
    Fixed(Qps),
    /// Closed loop (`--qps 0`): each connection sends its next request as soon as the last ends.
    Max,
}

impl Rate {
    /// Parses Fortio's convention: `0` means as fast as possible.
    pub fn from_qps(value: f64) -> Result<Rate, Error> {
        if value == 0.0 {
            return Ok(Rate::Max);
        }
        Qps::new(value)
            .map(Rate::Fixed)
            .ok_or_else(|| Error::InvalidQps(value.to_string()))
    }

    /// Requests per second, or `None` for a closed loop.
    pub fn qps(self) -> Option<f64> {
        match self {
            Rate::Fixed(q) => Some(q.get()),
            Rate::Max => None,
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Fixed(q) => write!(f, "{}", q.get()),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// Which status codes count as success. In the JSON result: its text, such as `"200-299,304"`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct OkCodes(Vec<RangeInclusive<u16>>);

impl From<OkCodes> for String {
    fn from(codes: OkCodes) -> String {
        codes.to_string()
    }
}

impl TryFrom<String> for OkCodes {
    type Error = Error;

    fn try_from(text: String) -> Result<OkCodes, Error> {
        text.parse()
    }
}

impl OkCodes {
    /// True when `status` is a success.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }
}

impl OkCodes {
    /// Exactly one code.
    pub fn only(code: u16) -> OkCodes {
        OkCodes(vec![code..=code])
    }
}

impl Default for OkCodes {
    /// 2xx.
    fn default() -> Self {
        OkCodes(vec![200..=299])
    }
}

impl fmt::Display for OkCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let shown = crate::measure::code::Shown;
            if r.start() == r.end() {
                write!(f, "{}", shown(*r.start()))?;
            } else {
                write!(f, "{}-{}", shown(*r.start()), shown(*r.end()))?;
            }
        }
        Ok(())
    }
}

impl FromStr for OkCodes {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::InvalidOkCodes(s.to_string());
        // An HTTP status 100 to 999, or a gRPC status or health answer by name.
        let code = |t: &str| crate::measure::code::parse(t).ok_or_else(bad);
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let range = match part.split_once('-') {
                Some((lo, hi)) => code(lo)?..=code(hi)?,
                None => {
                    let c = code(part)?;
                    c..=c
                }
            };
            if range.is_empty() {
                return Err(bad());
            }
            ranges.push(range);
        }
        Ok(OkCodes(ranges))
    }
}

/// A validated `http` or `https` URL with a host.
///
/// Credentials in the URL (`http://user:pass@host/`) are taken out of it, as curl does: they
/// become an `Authorization: Basic` header ([`TargetUrl::basic_auth`]), never part of the `Host`
/// header, and the URL is displayed with the password replaced by `<redacted>` (see
/// [`crate::redact::redact_password`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetUrl {
    /// The URL without its credentials.
    uri: Uri,
    tls: bool,
    host: String,
    port: u16,
    /// `user` and `password` as written (percent-encoded), if the URL had them.
    user: Option<String>,
    password: Option<String>,
}

impl TargetUrl {
    /// The full URI, without credentials.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// True for `https`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Host name or IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port, defaulted from the scheme.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Value for the `Host` header: `host[:port]` as written, never the credentials.
    pub fn authority(&self) -> &str {
        self.uri.authority().map(|a| a.as_str()).unwrap_or("")
    }

    /// `/path?query`, for HTTP/1.1 request lines.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    }

    /// `http://ADDR/`: a server gapless started itself.
    pub fn of_addr(addr: std::net::SocketAddr) -> TargetUrl {
        // A socket address in an http URL always parses.
        format!("http://{addr}/")
            .parse()
            .unwrap_or_else(|_| unreachable!("http://{addr}/ is a valid URL"))
    }

    /// The value of `Authorization` for the URL's credentials (`Basic base64(user:password)`,
    /// percent-decoded first), if it has any.
    pub fn basic_auth(&self) -> Option<String> {
        use base64::Engine as _;
        let user = self.user.as_deref()?;
        let credentials = format!(
            "{}:{}",
            percent_decode(user),
            percent_decode(self.password.as_deref().unwrap_or(""))
        );
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ))
    }
}

/// `%XX` escapes decoded (bytes that are not UTF-8 are kept as replacement characters).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for TargetUrl {
    /// The URL as given, with the password (or a user given without one) replaced by `<redacted>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            None => self.uri.fmt(f),
            Some(user) => {
                let scheme = if self.tls { "https" } else { "http" };
                // A user without a password is often a token: redacted whole.
                let userinfo = match &self.password {
                    Some(_) => format!("{user}:<redacted>"),
                    None => "<redacted>".to_string(),
                };
                write!(
                    f,
                    "{scheme}://{userinfo}@{}{}",
                    self.authority(),
                    self.path_and_query()
                )
            }
        }
    }
}

impl FromStr for TargetUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |problem| Error::InvalidUrl {
            url: crate::redact::redact_password(s),
            problem,
        };
        let uri: Uri = s
            .parse()
            .map_err(|_| invalid("is not a valid URL (expected http://host[:port]/path)"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => {
                return Err(invalid(
                    "has an unsupported scheme: use http:// or https://",
                ));
            }
            None => {
                return Err(invalid(
                    "has no scheme: write http://HOST/ or https://HOST/",
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(info.to_string()), None),
            },
            None => (None, None),
        };
        // The URI the request uses: no credentials, and `http://host` means `http://host/`.
        let uri = Uri::builder()
            .scheme(uri.scheme_str().unwrap_or("http"))
            .authority(host_port)
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|_| invalid("is not a valid URL"))?;
        Ok(TargetUrl {
            uri,
            tls,
            host,
            port,
            user,
            password,
        })
    }
}

/// What to send, and what counts as success.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// Where.
    pub url: TargetUrl,
    /// HTTP method.
    pub method: Method,
    /// Extra request headers (`Host` is added from the URL unless given here).
    pub headers: HeaderMap,
    /// Request body (empty for none).
    pub body: Bytes,
    /// Deadline of each request, counted from its intended send time.
    pub timeout: Duration,
    /// Status codes that count as success.
    pub ok_codes: OkCodes,
    /// HTTP/2: h2c with prior knowledge for `http`, ALPN `h2` for `https`.
    pub http2: bool,
    /// A gRPC unary call (`--grpc`, `--grpc-health`) instead of the method and body: HTTP/2.
    pub grpc: Option<std::sync::Arc<crate::client::grpc::GrpcCall>>,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Extra trusted CA certificates (`--cacert`).
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Response header naming the version that answered.
    pub version_header: Option<http::HeaderName>,
    /// Regex whose first capture group, over the start of the body, names the version.
    pub version_regex: Option<regex::bytes::Regex>,
}

/// How much load, for how long.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Requests per second, or closed loop.
    pub rate: Rate,
    /// Number of connections.
    pub connections: NonZeroUsize,
    /// Concurrent streams per HTTP/2 connection (HTTP/1.1 always carries one request at a time).
    pub streams: NonZeroUsize,
    /// How long the load runs.
    pub duration: Duration,
    /// Width of one timeline slot as given (`--slot`); `None`: sized to the run (see
    /// [`crate::measure::timeline::Timeline::for_run`]).
    pub slot: Option<Duration>,
    /// Ceiling on new-connection attempts per second (all connections together).
    pub max_connect_rate: NonZeroU32,
    /// Engine threads; `None` chooses from the rate (one per 100,000 requests per second, at most
    /// one per core).
    pub threads: Option<NonZeroUsize>,
    /// This process is one shard of a load split across processes (`--shards`).
    pub shard: Option<ShardPlan>,
}

/// One part of a load dealt out by an [`Interleave`]: a shard of a load split across processes,
/// or an endpoint of a run of several. The global schedule is the one a single process would
/// follow at the total rate (request `k` due at `start + k / qps`); shard `index` of `count`
/// equal parts sends exactly the requests with `k mod count == index`, a weighted part its
/// positions of each cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards.
    pub count: NonZeroU32,
    /// Its name in the reports (the node it ran on).
    pub label: String,
    /// The global schedule's origin on the wall clock, shared by every shard.
    pub start_at: std::time::SystemTime,
    /// How the global schedule is dealt out (its `count` parts).
    pub interleave: std::sync::Arc<Interleave>,
}

impl ShardPlan {
    /// This part's own rate when the whole load runs at `qps`.
    pub fn rate_of(&self, qps: f64) -> f64 {
        self.interleave.rate_of(self.index as usize, qps)
    }
}

impl LoadConfig {
    /// How much later than the run's start this process's schedule begins (its shard's first
    /// request: `index / qps` with equal parts, see [`Interleave::shift_secs`]; zero unsharded).
    pub fn shift(&self) -> Duration {
        match (&self.shard, self.rate.qps()) {
            (Some(shard), Some(qps)) => {
                Duration::try_from_secs_f64(shard.interleave.shift_secs(shard.index as usize, qps))
                    .unwrap_or(Duration::ZERO)
            }
            _ => Duration::ZERO,
        }
    }
}

/// The phases around the steps.
#[derive(Clone, Debug, Default)]
pub struct RolloutConfig {
    /// Load only, before the first step: the baseline.
    pub warmup: Duration,
    /// Load only, after the last step.
    pub cooldown: Duration,
    /// The steps, in order. Without steps the run lasts the load's duration.
    pub steps: Vec<crate::rollout::step::Step>,
}

impl RolloutConfig {
    /// True when there is something to roll out.
    pub fn has_steps(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// The thresholds of the verdict, each with who set it.
///
/// With no threshold given, every failed request fails the run (`max_failures` 0 and `max_gap`
/// 0, both [`Source::Default`]). Given any of `max_failures`, `max_failure_ratio` and `max_gap`,
/// only those given are checked (a ratio alone allows that share of failures, however they
/// fall): see [`Limits::with`].
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Most failed requests allowed; `None`: not checked.
    pub max_failures: Option<Setting<u64>>,
    /// Largest failed share of all requests allowed, in `[0, 1]`.
    pub max_failure_ratio: Option<Setting<f64>>,
    /// Longest availability gap allowed; zero means any gap fails; `None`: not checked.
    pub max_gap: Option<Setting<Duration>>,
    /// Largest p99 of the corrected latency allowed.
    pub max_p99: Option<Setting<Duration>>,
    /// After the last step, every successful response must come from this version.
    pub expect_version: Option<Setting<String>>,
    /// Longest time the target may answer nothing while requests wait (see
    /// `crate::measure::stalls`).
    pub max_stall: Option<Setting<Duration>>,
    /// Judge the run even if requests failed during warmup (otherwise exit 4).
    pub allow_warmup_errors: bool,
    /// Most ungraceful disconnects of the long-lived probes (`[[stream]]`) allowed; judged only
    /// in a run with probes.
    pub max_ungraceful_disconnects: Option<Setting<u64>>,
    /// Longest time a probe's connection may go without a connected stream.
    pub max_stream_gap: Option<Setting<Duration>>,
}

/// The default longest stall: a healthy target answers well within it, a vanished one does not
/// (README, "Stalls", and BENCHMARKS.md for the silences measured).
pub const MAX_STALL: Duration = Duration::from_secs(1);

impl Default for Limits {
    /// No threshold given: no failure, no gap and no stall longer than [`MAX_STALL`] allowed.
    fn default() -> Self {
        Limits {
            max_failures: Some(Setting::default_value(0)),
            max_gap: Some(Setting::default_value(Duration::ZERO)),
            max_stall: Some(Setting::default_value(MAX_STALL)),
            max_ungraceful_disconnects: Some(Setting::default_value(0)),
            ..Limits::none()
        }
    }
}

impl Limits {
    /// No threshold at all: what the user gave, before [`Limits::with`] puts it over the
    /// defaults.
    pub fn none() -> Limits {
        Limits {
            max_failures: None,
            max_failure_ratio: None,
            max_gap: None,
            max_p99: None,
            expect_version: None,
            max_stall: None,
            allow_warmup_errors: false,
            max_ungraceful_disconnects: None,
            max_stream_gap: None,
        }
    }

    /// These thresholds with `given` over them. Giving any of `max_failures`,
    /// `max_failure_ratio` and `max_gap` drops those of the others that are only defaults.
    pub fn with(&self, given: Limits) -> Limits {
        let relaxed = given.max_failures.is_some()
            || given.max_failure_ratio.is_some()
            || given.max_gap.is_some();
        fn kept<T: Clone>(base: &Option<Setting<T>>, relaxed: bool) -> Option<Setting<T>> {
            base.clone()
                .filter(|s| !(relaxed && s.source == Source::Default))
        }
        Limits {
            max_failures: given
                .max_failures
                .or_else(|| kept(&self.max_failures, relaxed)),
            max_failure_ratio: given
                .max_failure_ratio
                .or_else(|| self.max_failure_ratio.clone()),
            max_gap: given.max_gap.or_else(|| kept(&self.max_gap, relaxed)),
            max_p99: given.max_p99.or_else(|| self.max_p99.clone()),
            expect_version: given.expect_version.or_else(|| self.expect_version.clone()),
            max_stall: given.max_stall.or_else(|| self.max_stall.clone()),
            allow_warmup_errors: given.allow_warmup_errors || self.allow_warmup_errors,
            max_ungraceful_disconnects: given
                .max_ungraceful_disconnects
                .or_else(|| self.max_ungraceful_disconnects.clone()),
            max_stream_gap: given.max_stream_gap.or_else(|| self.max_stream_gap.clone()),
        }
    }
}

/// How the run is judged: the thresholds, and how windows are found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerdictConfig {
    /// The thresholds.
    pub limits: Limits,
    /// Failure windows closer than this merge.
    pub merge_gap: Duration,
    /// Time slots whose p99 exceeds this are reported as slow windows.
    pub slow: Option<Duration>,
    /// A response later than this after its intended send time counts as failed
    /// (`answered_late`).
    pub max_late: Option<Duration>,
}

/// One endpoint of a run that loads several (`[[target]]`, `--targets FILE`): its name in the
/// reports, and what to send.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Its name in the reports and in its verdict criteria (`name`, else `METHOD URL`).
    pub name: String,
    /// What to send to it, and what counts as success.
    pub target: TargetConfig,
    /// Its weight in the run's rate (`weight`, or its `qps`; 1 each by default: equal shares).
    pub weight: NonZeroU32,
}

/// Everything one `gapless run` needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The target (with several endpoints: the first's).
    pub target: TargetConfig,
    /// Several endpoints loaded on one clock, each judged: empty for a run of one target
    /// (`target`). The total rate is shared in a fixed interleave: request `k` of the global
    /// schedule (due at `start + k / qps`) goes to endpoint `k mod n`.
    pub targets: Vec<Endpoint>,
    /// The load.
    pub load: LoadConfig,
    /// The rollout beside it.
    pub rollout: RolloutConfig,
    /// How it is judged.
    pub verdict: VerdictConfig,
    /// What is kept out of every report and of the terminal (see [`crate::redact`]).
    pub redact: crate::redact::Redactor,
    /// Long-lived probes held beside the load (`[[stream]]`); empty for none.
    pub streams: Vec<StreamConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_codes_parse() {
        let codes: OkCodes = "200-299,304".parse().unwrap();
        assert!(codes.contains(200) && codes.contains(299) && codes.contains(304));
        assert!(!codes.contains(300) && !codes.contains(503));
        assert_eq!(codes.to_string(), "200-299,304");
        for bad in ["", "abc", "299-200", "42", "200-", "1000"] {
            assert!(bad.parse::<OkCodes>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn rate_from_qps() {
        assert_eq!(Rate::from_qps(0.0), Ok(Rate::Max));
        assert_eq!(Rate::from_qps(2.5).unwrap().qps(), Some(2.5));
        assert!(Rate::from_qps(-1.0).is_err());
        assert!(Rate::from_qps(f64::NAN).is_err());
        assert!(Rate::from_qps(f64::INFINITY).is_err());
    }

    #[test]
    fn urls_validate() {
        let u: TargetUrl = "http://127.0.0.1:8080/a?b=1".parse().unwrap();
        assert_eq!((u.host(), u.port(), u.is_tls()), ("127.0.0.1", 8080, false));
        assert_eq!(u.path_and_query(), "/a?b=1");
        let u: TargetUrl = "https://example.test".parse().unwrap();
        assert_eq!((u.port(), u.path_and_query()), (443, "/"));
        let u: TargetUrl = "http://[::1]:9/".parse().unwrap();
        assert_eq!(u.host(), "::1");
        let u: TargetUrl = "http://user:p%40ss@127.0.0.1:8080/x".parse().unwrap();
        assert_eq!(u.authority(), "127.0.0.1:8080");
        assert_eq!(u.to_string(), "http://user:<redacted>@127.0.0.1:8080/x");
        // user:p@ss, as curl sends it.
        assert_eq!(u.basic_auth().as_deref(), Some("Basic dXNlcjpwQHNz"));
        let u: TargetUrl = "https://token@example.test".parse().unwrap();
        assert_eq!(u.to_string(), "https://<redacted>@example.test/");
        assert_eq!(u.basic_auth().as_deref(), Some("Basic dG9rZW46"));
        assert_eq!("http://h/".parse::<TargetUrl>().unwrap().basic_auth(), None);
        assert!("ftp://x/".parse::<TargetUrl>().is_err());
        assert!("127.0.0.1:8080".parse::<TargetUrl>().is_err());
        assert!("/just/a/path".parse::<TargetUrl>().is_err());
    }
}
