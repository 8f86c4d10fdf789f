//! The typed, validated run configuration. Raw command-line arguments (and, later, scenario files)
//! are turned into these types in a second stage, so the engine never sees an invalid value.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

/// Errors found while validating configuration values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// `--qps` was negative, NaN or infinite.
    #[error("--qps must be a finite number of requests per second, 0 or more (got {0})")]
    InvalidQps(String),
    /// An `--ok-codes` list could not be parsed.
    #[error(
        "--ok-codes takes status codes and ranges such as 200-299,304 (got {0:?}); codes are 100 to 999"
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

/// Which status codes count as success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OkCodes(Vec<RangeInclusive<u16>>);

impl OkCodes {
    /// True when `status` is a success.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
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
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

impl FromStr for OkCodes {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::InvalidOkCodes(s.to_string());
        let code = |t: &str| -> Result<u16, Error> {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=999).contains(c))
                .ok_or_else(bad)
        };
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetUrl {
    uri: Uri,
    tls: bool,
    host: String,
    port: u16,
}

impl TargetUrl {
    /// The full URI.
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

    /// Value for the `Host` header: the URL's authority.
    pub fn authority(&self) -> &str {
        self.uri.authority().map(|a| a.as_str()).unwrap_or("")
    }

    /// `/path?query`, for HTTP/1.1 request lines.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uri.fmt(f)
    }
}

impl FromStr for TargetUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |problem| Error::InvalidUrl {
            url: s.to_string(),
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
        let uri = if uri.path_and_query().is_none() {
            // `http://host` means `http://host/`.
            Uri::builder()
                .scheme(uri.scheme_str().unwrap_or("http"))
                .authority(uri.authority().map(|a| a.as_str()).unwrap_or_default())
                .path_and_query("/")
                .build()
                .map_err(|_| invalid("is not a valid URL"))?
        } else {
            uri
        };
        Ok(TargetUrl {
            uri,
            tls,
            host,
            port,
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
    /// [`crate::timeline::Timeline::for_run`]).
    pub slot: Option<Duration>,
    /// Ceiling on new-connection attempts per second (all connections together).
    pub max_connect_rate: NonZeroU32,
    /// Engine threads; `None` chooses from the rate (see [`crate::engine::shard_count`]).
    pub threads: Option<NonZeroUsize>,
}

/// What a rollout step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A shell command line, run with `sh -c`.
    Shell(String),
    /// A program and its arguments, run directly (the quick form: `gapless run URL -- cmd args`).
    Exec(Vec<String>),
    /// A pause.
    Sleep(Duration),
    /// A rollout of the embedded demo cluster.
    Demo(crate::demo::Strategy),
}

impl fmt::Display for Action {
    /// The command as a user would type it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Shell(line) => f.write_str(line),
            Action::Exec(argv) => {
                let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
                f.write_str(&words.join(" "))
            }
            Action::Sleep(d) => write!(f, "sleep {}", humantime::format_duration(*d)),
            Action::Demo(strategy) => strategy.fmt(f),
        }
    }
}

/// `word` as a POSIX shell would need it written: unchanged when it is plain, else in single
/// quotes.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%^".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// One step of the rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Shown in the output and the reports.
    pub name: String,
    /// What it does.
    pub action: Action,
    /// Start no earlier than this offset from the start of the steps phase.
    pub at: Option<Duration>,
    /// The process group is killed and the step fails after this long.
    pub timeout: Duration,
    /// The exit status that means success.
    pub expect_exit: i32,
    /// A watcher: started and left running; each line it prints becomes a timeline event; stopped
    /// at the end of the run.
    pub background: bool,
}

/// The phases around the steps.
#[derive(Clone, Debug, Default)]
pub struct RolloutConfig {
    /// Load only, before the first step: the baseline.
    pub warmup: Duration,
    /// Load only, after the last step.
    pub cooldown: Duration,
    /// The steps, in order. Without steps the run lasts the load's duration.
    pub steps: Vec<Step>,
}

impl RolloutConfig {
    /// True when there is something to roll out.
    pub fn has_steps(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// Thresholds of the verdict, and how windows are found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerdictConfig {
    /// Most failed requests allowed (default 0).
    pub max_failures: u64,
    /// Largest failed share of all requests allowed, in `[0, 1]`.
    pub max_failure_ratio: Option<f64>,
    /// Longest availability gap allowed; zero means any gap fails.
    pub max_gap: Duration,
    /// Largest p99 of the corrected latency allowed.
    pub max_p99: Option<Duration>,
    /// Judge the run even if requests failed during warmup (otherwise exit 4).
    pub allow_warmup_errors: bool,
    /// Failure windows closer than this merge.
    pub merge_gap: Duration,
    /// Time slots whose p99 exceeds this are reported as slow windows.
    pub slow: Option<Duration>,
    /// After the last step, every successful response must come from this version.
    pub expect_version: Option<String>,
}

/// Everything one `gapless run` needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The target.
    pub target: TargetConfig,
    /// The load.
    pub load: LoadConfig,
    /// The rollout beside it.
    pub rollout: RolloutConfig,
    /// How it is judged.
    pub verdict: VerdictConfig,
    /// Headers whose values are redacted in every report, beyond the default ones
    /// (see [`crate::redact`]).
    pub redact: Vec<String>,
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
    fn commands_display_with_shell_quoting() {
        let exec = Action::Exec(vec!["sh".into(), "-c".into(), "echo 'hi'; true".into()]);
        assert_eq!(exec.to_string(), r#"sh -c 'echo '\''hi'\''; true'"#);
        assert_eq!(shell_quote("deploy/web"), "deploy/web");
        assert_eq!(shell_quote(""), "''");
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
        assert!("ftp://x/".parse::<TargetUrl>().is_err());
        assert!("127.0.0.1:8080".parse::<TargetUrl>().is_err());
        assert!("/just/a/path".parse::<TargetUrl>().is_err());
    }
}
