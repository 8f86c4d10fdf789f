//! Command-line arguments (clap) and their validation into the typed configuration.
//!
//! Two stages, as in ripgrep: clap parses raw values ([`RunArgs`], [`ServeArgs`]), then
//! `validate` turns them into [`RunConfig`] / [`ServeConfig`] or one clear sentence of error.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

use crate::config::{
    self, Action, LoadConfig, OkCodes, Qps, Rate, RolloutConfig, RunConfig, Step, TargetConfig,
    TargetUrl, VerdictConfig,
};
use crate::demo::DemoSpec;
use crate::scenario::{self, STEP_TIMEOUT, Scenario};
use crate::serve::ServeConfig;

/// Errors in command-line values, each one sentence.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value the typed configuration rejects.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// An unusable `--cacert` bundle.
    #[error(transparent)]
    CaBundle(#[from] crate::tls::Error),
    /// A scenario file problem (it names file:line:col).
    #[error(transparent)]
    Scenario(#[from] scenario::Error),
    /// Neither a URL nor `--builtin`.
    #[error(
        "give a target URL, --builtin to load the built-in target, or a --scenario whose [target] has a url"
    )]
    NoTarget,
    /// A URL on the command line for a demo scenario.
    #[error("the scenario's [target] demo provides the URL: give none on the command line")]
    UrlWithDemo,
    /// `--duration` with rollout steps.
    #[error(
        "--duration does not apply to a run with rollout steps: it lasts --warmup, the steps, then --cooldown"
    )]
    DurationWithSteps,
    /// `--version-header` is not a header name.
    #[error("--version-header {0:?} is not a valid header name")]
    VersionHeader(String),
    /// `--version-regex` does not compile or has no group.
    #[error("--version-regex {re:?} is not usable: {why}")]
    VersionRegex {
        /// The regex.
        re: String,
        /// Why.
        why: String,
    },
    /// `--expect-version` without a way to read versions.
    #[error(
        "--expect-version needs --version-header or --version-regex to know which version answered"
    )]
    ExpectWithoutProbe,
    /// `--max-failure-ratio` out of range.
    #[error("--max-failure-ratio must be between 0 and 1 (got {0})")]
    Ratio(f64),
    /// `-c 0` or `--streams 0`.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A zero or too-small duration.
    #[error("{flag} must be at least {min} (got {value})")]
    TooShort {
        /// The flag.
        flag: &'static str,
        /// The smallest allowed value.
        min: &'static str,
        /// The value given.
        value: String,
    },
    /// `--slot` longer than `--duration`.
    #[error("--slot ({slot}) is longer than the run (--duration {duration})")]
    SlotLongerThanRun {
        /// The slot.
        slot: String,
        /// The duration.
        duration: String,
    },
    /// A header not in `Name: value` form, or with invalid characters.
    #[error("header {0:?} is not of the form 'Name: value'")]
    Header(String),
    /// A header that frames the body (`content-length`, `transfer-encoding`): gapless sets the
    /// length from the body itself, and a second framing would corrupt the request.
    #[error(
        "header {0:?} cannot be set: gapless frames the request body itself (its length comes from --body or --body-file)"
    )]
    FramingHeader(String),
    /// An invalid method.
    #[error("{0:?} is not a valid HTTP method")]
    Method(String),
    /// `--body-file` could not be read.
    #[error("cannot read --body-file {path}")]
    BodyFile {
        /// The file.
        path: PathBuf,
        /// Why (printed by the caller as the cause).
        #[source]
        source: std::io::Error,
    },
    /// `--status` out of range.
    #[error("--status {0} is not an HTTP status code (100 to 999)")]
    Status(u16),
}

/// gapless: proves a release did not drop a single request.
#[derive(Debug, Parser)]
#[command(name = "gapless", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a constant-rate HTTP load, alongside a rollout if given, and judge every outcome.
    Run(Box<RunArgs>),
    /// Serve a small built-in HTTP target.
    Serve(ServeArgs),
    /// The embedded demo cluster.
    #[command(subcommand)]
    Demo(DemoCommand),
    /// Re-render a saved JSON result (`run --json`) as HTML, Markdown or JUnit, without re-running.
    Report(ReportArgs),
}

/// `gapless report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A JSON result written by `gapless run --json`.
    pub result: PathBuf,
    /// Write the HTML report to FILE ('-' for stdout).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write a Markdown summary to FILE ('-' for stdout).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write JUnit XML to FILE ('-' for stdout).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// `gapless demo ...`.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Run the demo service standalone (a proxy in front of replicas), for curl or other tools.
    Serve(DemoServeArgs),
}

/// `gapless demo serve`.
#[derive(Debug, Args)]
pub struct DemoServeArgs {
    /// Where the proxy listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Replicas.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Version label of the replicas.
    #[arg(long = "version", value_name = "LABEL", default_value = "v1")]
    pub version_label: String,
}

impl DemoServeArgs {
    /// Validates into a demo cluster spec.
    pub fn validate(&self) -> Result<DemoSpec, Error> {
        Ok(DemoSpec {
            replicas: NonZeroUsize::new(self.replicas).ok_or(Error::Zero("--replicas"))?,
            version: self.version_label.clone(),
            listen: self.listen,
            ..DemoSpec::default()
        })
    }
}

/// `gapless run`.
///
/// Values not given fall back to the scenario file (`--scenario`), then to the documented
/// defaults: flags given on the command line override the file.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Target URL (http:// or https://); optional with --scenario when the file has one.
    pub url: Option<String>,
    /// Start the built-in target on a free loopback port and load it (a first try, no setup).
    #[arg(long, conflicts_with = "url")]
    pub builtin: bool,
    /// Scenario file (TOML): target, load, rollout steps and thresholds.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// The rollout, as one command run after the warmup: gapless run URL -- kubectl rollout ...
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Total requests per second; 0 = as fast as possible (closed loop) [default: 100].
    #[arg(short = 'q', long, allow_negative_numbers = true)]
    pub qps: Option<f64>,
    /// Number of connections [default: 16].
    #[arg(short = 'c', long)]
    pub connections: Option<usize>,
    /// How long to run, without rollout steps (e.g. 10s, 1m30s) [default: 10s].
    #[arg(short = 'd', long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Load before the first step, nothing changing: the baseline [default: 3s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// Load after the last step [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub cooldown: Option<Duration>,
    /// Deadline of each request, counted from its intended send time [default: 3s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// HTTP method [default: GET].
    #[arg(short = 'X', long)]
    pub method: Option<String>,
    /// Extra header 'Name: value' (repeatable; replaces a header of that name from the scenario).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body from a file.
    #[arg(long, value_name = "PATH")]
    pub body_file: Option<PathBuf>,
    /// HTTP/2 (h2c prior knowledge for http://, ALPN for https://).
    #[arg(long)]
    pub http2: bool,
    /// Concurrent streams per HTTP/2 connection [default: 1].
    #[arg(long)]
    pub streams: Option<usize>,
    /// Do not verify TLS certificates.
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Trust the CA certificates of this PEM bundle (beside the built-in web roots).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Status codes that count as success, e.g. 200-299,304 [default: 200-299].
    #[arg(long)]
    pub ok_codes: Option<String>,
    /// Width of one timeline slot (10ms or more) [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub slot: Option<Duration>,
    /// Ceiling on new-connection attempts per second [default: the larger of 1000 and --qps].
    #[arg(long, value_name = "N")]
    pub max_connect_rate: Option<u32>,
    /// Engine threads [default: one per 100,000 qps, at most one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Most failed requests allowed [default: 0].
    #[arg(long, value_name = "N")]
    pub max_failures: Option<u64>,
    /// Largest share of failed requests allowed, 0 to 1 (e.g. 0.001).
    #[arg(long, value_name = "R")]
    pub max_failure_ratio: Option<f64>,
    /// Longest availability gap allowed [default: 0s: any gap fails].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
    pub max_gap: Option<Duration>,
    /// Largest p99 latency (from intended send time) allowed.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
    pub max_p99: Option<Duration>,
    /// Failure windows closer than this merge into one [default: 0s].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
    pub merge_gap: Option<Duration>,
    /// Report time slots whose p99 latency exceeds this as slow windows.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
    pub slow: Option<Duration>,
    /// Judge the run even if requests failed during warmup (otherwise exit 4, no step runs).
    #[arg(long)]
    pub allow_warmup_errors: bool,
    /// Response header that names the version that answered (e.g. x-version).
    #[arg(long, value_name = "NAME")]
    pub version_header: Option<String>,
    /// Regex over the first 4 KiB of the body whose first capture group names the version.
    #[arg(long, value_name = "RE", conflicts_with = "version_header")]
    pub version_regex: Option<String>,
    /// After the last step, every successful response must come from this version.
    #[arg(long, value_name = "V")]
    pub expect_version: Option<String>,
    /// Redact the values of this header in every report (repeatable; Authorization,
    /// Proxy-Authorization, Cookie, Set-Cookie and X-Api-Key always are).
    #[arg(long = "redact", value_name = "NAME")]
    pub redact: Vec<String>,
    /// Write the JSON result to FILE ('-' for stdout; the text report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report (timeline chart, windows, steps, hints) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write a Markdown summary to FILE (also appended to $GITHUB_STEP_SUMMARY when set).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write JUnit XML (one test case per verdict criterion) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the result in Fortio's JSON schema to FILE.
    #[arg(long, value_name = "FILE")]
    pub fortio_json: Option<PathBuf>,
    /// Print only the verdict line: no text report, progress, step output or step notices (step
    /// output is still kept in the reports' output tails).
    #[arg(long)]
    pub quiet: bool,
}

/// Where the outputs of a run go.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// `--json`.
    pub json: Option<PathBuf>,
    /// `--html`.
    pub html: Option<PathBuf>,
    /// `--markdown`.
    pub markdown: Option<PathBuf>,
    /// `--junit`.
    pub junit: Option<PathBuf>,
    /// `--fortio-json`.
    pub fortio_json: Option<PathBuf>,
    /// `--quiet`.
    pub quiet: bool,
}

impl Output {
    /// True when the JSON result goes to stdout (so the text report goes to stderr).
    pub fn json_on_stdout(&self) -> bool {
        self.json.as_deref() == Some(std::path::Path::new("-"))
    }
}

/// Default warmup before the first step.
pub const WARMUP: Duration = Duration::from_secs(3);
/// Default cooldown after the last step.
pub const COOLDOWN: Duration = Duration::from_secs(10);

impl RunArgs {
    /// Reads the `--scenario` file, if any.
    pub fn scenario(&self) -> Result<Option<Scenario>, Error> {
        self.scenario
            .as_deref()
            .map(Scenario::load)
            .transpose()
            .map_err(Error::from)
    }

    /// The target URL: the command line's, else the scenario's; `None` with `--builtin` or a
    /// scenario whose `[target]` is the demo cluster (the caller starts it).
    pub fn target_url(&self, scenario: Option<&Scenario>) -> Result<Option<TargetUrl>, Error> {
        let demo = scenario.is_some_and(|s| s.target.demo.is_some());
        if self.builtin {
            return Ok(None);
        }
        match (&self.url, scenario.and_then(|s| s.target.url.clone())) {
            (Some(_), _) if demo => Err(Error::UrlWithDemo),
            (Some(url), _) => Ok(Some(url.parse()?)),
            (None, Some(url)) => Ok(Some(url)),
            (None, None) if demo => Ok(None),
            (None, None) => Err(Error::NoTarget),
        }
    }

    /// Validates the arguments, over the scenario's values, into a run configuration for `url`.
    pub fn validate(
        &self,
        url: TargetUrl,
        scenario: Option<&Scenario>,
    ) -> Result<(RunConfig, Output), Error> {
        let empty = Scenario::default();
        let file = scenario.unwrap_or(&empty);
        let rate = match self.qps {
            Some(q) => Rate::from_qps(q)?,
            None => file.load.rate.unwrap_or(Rate::Fixed(DEFAULT_QPS)),
        };
        let count = |flag, cli: Option<usize>, file: Option<NonZeroUsize>, default: usize| match cli
        {
            Some(n) => NonZeroUsize::new(n).ok_or(Error::Zero(flag)),
            None => Ok(file.unwrap_or(NonZeroUsize::new(default).unwrap_or(NonZeroUsize::MIN))),
        };
        let connections = count("--connections", self.connections, file.load.connections, 16)?;
        let streams = count("--streams", self.streams, file.load.streams, 1)?;
        let short = |flag, min, value: Duration| Error::TooShort {
            flag,
            min,
            value: humantime::format_duration(value).to_string(),
        };
        let steps = if self.command.is_empty() {
            file.steps.clone()
        } else {
            vec![Step {
                name: Action::Exec(self.command.clone()).to_string(),
                action: Action::Exec(self.command.clone()),
                at: None,
                timeout: STEP_TIMEOUT,
                expect_exit: 0,
                background: false,
            }]
        };
        let has_steps = !steps.is_empty();
        if has_steps && self.duration.is_some() {
            return Err(Error::DurationWithSteps);
        }
        let duration = self
            .duration
            .or(if has_steps { None } else { file.load.duration })
            .unwrap_or(DEFAULT_DURATION);
        if duration.is_zero() {
            return Err(short("--duration", "1ms", duration));
        }
        let timeout = self
            .timeout
            .or(file.target.timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        if timeout < Duration::from_millis(1) {
            return Err(short("--timeout", "1ms", timeout));
        }
        // The default slot shrinks to fit a short run; a slot given explicitly must fit.
        let slot = self
            .slot
            .or(file.load.slot)
            .unwrap_or_else(|| DEFAULT_SLOT.min(duration).max(Duration::from_millis(10)));
        if slot < Duration::from_millis(10) {
            return Err(short("--slot", "10ms", slot));
        }
        if !has_steps && slot > duration {
            return Err(Error::SlotLongerThanRun {
                slot: humantime::format_duration(slot).to_string(),
                duration: humantime::format_duration(duration).to_string(),
            });
        }
        let method = match &self.method {
            Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| Error::Method(m.clone()))?,
            None => file.target.method.clone().unwrap_or(Method::GET),
        };
        let mut headers = file.target.headers.clone();
        let given = parse_headers(&self.headers)?;
        for name in given.keys() {
            headers.remove(name);
        }
        for (name, value) in &given {
            headers.append(name, value.clone());
        }
        for framing in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING] {
            if headers.contains_key(&framing) {
                return Err(Error::FramingHeader(framing.to_string()));
            }
        }
        let body = match (&self.body, &self.body_file) {
            (Some(b), _) => Bytes::from(b.clone()),
            (None, Some(path)) => {
                std::fs::read(path)
                    .map(Bytes::from)
                    .map_err(|source| Error::BodyFile {
                        path: path.clone(),
                        source,
                    })?
            }
            (None, None) => file.target.body.clone().unwrap_or_default(),
        };
        let ok_codes: OkCodes = match &self.ok_codes {
            Some(codes) => codes.parse()?,
            None => file.target.ok_codes.clone().unwrap_or_default(),
        };
        let default_connect_rate = rate.qps().map_or(1000.0, |q| q.max(1000.0).ceil());
        let max_connect_rate = match self.max_connect_rate {
            Some(n) => NonZeroU32::new(n).ok_or(Error::Zero("--max-connect-rate"))?,
            None => file.load.max_connect_rate.unwrap_or(
                NonZeroU32::new(default_connect_rate.min(u32::MAX as f64) as u32)
                    .unwrap_or(NonZeroU32::MIN),
            ),
        };
        let threads = match self.threads {
            Some(n) => Some(NonZeroUsize::new(n).ok_or(Error::Zero("--threads"))?),
            None => file.load.threads,
        };
        let max_failure_ratio = match self.max_failure_ratio {
            Some(r) if !(0.0..=1.0).contains(&r) => return Err(Error::Ratio(r)),
            Some(r) => Some(r),
            None => file.verdict.max_failure_ratio,
        };
        let (version_header, version_regex) = match (&self.version_header, &self.version_regex) {
            (Some(name), _) => (
                Some(
                    HeaderName::from_bytes(name.trim().as_bytes())
                        .map_err(|_| Error::VersionHeader(name.clone()))?,
                ),
                None,
            ),
            (None, Some(re)) => (None, Some(version_regex(re)?)),
            (None, None) => (
                file.target.version_header.clone(),
                file.target.version_regex.clone(),
            ),
        };
        if self.expect_version.is_some() && version_header.is_none() && version_regex.is_none() {
            return Err(Error::ExpectWithoutProbe);
        }
        let v = &file.verdict;
        let config = RunConfig {
            target: TargetConfig {
                url,
                method,
                headers,
                body,
                timeout,
                ok_codes,
                http2: self.http2 || file.target.http2.unwrap_or(false),
                insecure: self.insecure || file.target.insecure.unwrap_or(false),
                ca_certs: match &self.cacert {
                    Some(path) => crate::tls::read_ca_bundle(path)?,
                    None => Vec::new(),
                },
                version_header,
                version_regex,
            },
            load: LoadConfig {
                rate,
                connections,
                streams,
                duration,
                slot,
                max_connect_rate,
                threads,
            },
            rollout: RolloutConfig {
                warmup: self.warmup.or(file.load.warmup).unwrap_or(WARMUP),
                cooldown: self.cooldown.or(file.load.cooldown).unwrap_or(COOLDOWN),
                steps,
            },
            verdict: VerdictConfig {
                max_failures: self.max_failures.or(v.max_failures).unwrap_or(0),
                max_failure_ratio,
                max_gap: self.max_gap.or(v.max_gap).unwrap_or(Duration::ZERO),
                max_p99: self.max_p99.or(v.max_p99),
                allow_warmup_errors: self.allow_warmup_errors
                    || v.allow_warmup_errors.unwrap_or(false),
                merge_gap: self.merge_gap.or(v.merge_gap).unwrap_or(Duration::ZERO),
                slow: self.slow.or(v.slow),
                expect_version: self.expect_version.clone().or(v.expect_version.clone()),
            },
            redact: self.redact.clone(),
        };
        let output = Output {
            json: self.json.clone(),
            html: self.html.clone(),
            markdown: self.markdown.clone(),
            junit: self.junit.clone(),
            fortio_json: self.fortio_json.clone(),
            quiet: self.quiet,
        };
        Ok((config, output))
    }
}

/// Default `--qps`.
const DEFAULT_QPS: Qps = match Qps::new(100.0) {
    Some(q) => q,
    None => panic!("100 is a valid rate"),
};
/// Default `--duration`.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Default `--timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default `--slot`.
const DEFAULT_SLOT: Duration = Duration::from_secs(1);

/// A `--version-regex`: valid, with a capture group.
pub fn version_regex(re: &str) -> Result<regex::bytes::Regex, Error> {
    let bad = |why: String| Error::VersionRegex {
        re: re.to_string(),
        why,
    };
    let regex = regex::bytes::Regex::new(re).map_err(|e| bad(e.to_string()))?;
    if regex.captures_len() < 2 {
        return Err(bad(
            "it has no capture group: put the version in (...)".to_string()
        ));
    }
    Ok(regex)
}

/// Parses `Name: value` headers.
pub fn parse_headers(raw: &[String]) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    for h in raw {
        let bad = || Error::Header(h.clone());
        let (name, value) = h.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// `gapless serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Status code of every response.
    #[arg(long, default_value_t = 200)]
    pub status: u16,
    /// Version label, sent as the x-version header and in the body.
    #[arg(long = "version", value_name = "LABEL")]
    pub version_label: Option<String>,
    /// Delay before each response (e.g. 50ms).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub delay: Duration,
}

impl ServeArgs {
    /// Validates into a server configuration.
    pub fn validate(&self) -> Result<ServeConfig, Error> {
        let status = StatusCode::from_u16(self.status).map_err(|_| Error::Status(self.status))?;
        Ok(ServeConfig {
            status,
            version: self.version_label.clone(),
            delay: self.delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["gapless", "run", "http://127.0.0.1:1/"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => *a,
            _ => unreachable!(),
        }
    }

    fn error(extra: &[&str]) -> String {
        let a = args(extra);
        let url = a.target_url(None).unwrap().unwrap();
        a.validate(url, None).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let a = args(&[]);
        let (config, output) = a
            .validate(a.target_url(None).unwrap().unwrap(), None)
            .unwrap();
        assert_eq!(config.load.rate.qps(), Some(100.0));
        assert_eq!(config.load.connections.get(), 16);
        assert_eq!(config.load.duration, Duration::from_secs(10));
        assert_eq!(config.target.timeout, Duration::from_secs(3));
        assert_eq!(config.load.max_connect_rate.get(), 1000);
        assert!(output.json.is_none());
    }

    #[test]
    fn impossible_values_are_one_sentence_each() {
        assert!(error(&["-q", "-5"]).contains("--qps"));
        assert_eq!(error(&["-c", "0"]), "--connections must be at least 1");
        assert!(error(&["-d", "0s"]).contains("--duration must be at least"));
        assert!(error(&["--slot", "1ms"]).contains("--slot must be at least 10ms"));
        assert!(error(&["-d", "1s", "--slot", "2s"]).contains("longer than the run"));
        assert!(error(&["-H", "nocolon"]).contains("'Name: value'"));
        assert!(error(&["--ok-codes", "2xx"]).contains("--ok-codes"));
        assert!(error(&["--body-file", "/nonexistent/body"]).contains("cannot read --body-file"));
    }

    #[test]
    fn command_line_overrides_the_scenario() {
        let scenario = Scenario::parse(
            std::path::Path::new("s.toml"),
            "[target]\nurl = \"http://127.0.0.1:2/\"\nheaders = { X-A = \"file\", X-B = \"file\" }\n\
             [load]\nqps = 50\nconnections = 4\nwarmup = \"1s\"\n\
             [[step]]\nname = \"s\"\nrun = \"true\"\n[verdict]\nmax_failures = 3\n",
            &|_| None,
        )
        .unwrap();
        let a = args(&["-q", "70", "-H", "X-A: cli", "--cooldown", "2s"]);
        let url = a.target_url(Some(&scenario)).unwrap().unwrap();
        assert_eq!(url.port(), 1, "the command line's URL wins");
        let (config, _) = a.validate(url, Some(&scenario)).unwrap();
        assert_eq!(config.load.rate.qps(), Some(70.0));
        assert_eq!(config.load.connections.get(), 4);
        assert_eq!(config.target.headers["x-a"], "cli");
        assert_eq!(config.target.headers["x-b"], "file");
        assert_eq!(config.rollout.warmup, Duration::from_secs(1));
        assert_eq!(config.rollout.cooldown, Duration::from_secs(2));
        assert_eq!(config.rollout.steps.len(), 1);
        assert_eq!(config.verdict.max_failures, 3);
        // The trailing command replaces the file's steps; --duration does not fit a rollout.
        let a = args(&["--", "kubectl", "rollout", "restart", "deploy/web"]);
        let (config, _) = a
            .validate(a.target_url(None).unwrap().unwrap(), Some(&scenario))
            .unwrap();
        assert_eq!(
            config.rollout.steps[0].name,
            "kubectl rollout restart deploy/web"
        );
        assert_eq!(config.rollout.warmup, Duration::from_secs(1));
        assert!(error(&["-d", "5s", "--", "true"]).contains("--duration does not apply"));
        assert!(error(&["--max-failure-ratio", "1.5"]).contains("between 0 and 1"));
    }

    #[test]
    fn headers_parse() {
        let h = parse_headers(&["X-A: 1".into(), "x-a:2".into()]).unwrap();
        assert_eq!(h.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn url_problems() {
        let a = args(&[]);
        assert!(a.target_url(None).is_ok());
        let bad = match Cli::try_parse_from(["gapless", "run", "ftp://x/"])
            .unwrap()
            .command
        {
            Command::Run(a) => *a,
            _ => unreachable!(),
        };
        assert!(
            bad.target_url(None)
                .unwrap_err()
                .to_string()
                .contains("unsupported scheme")
        );
    }
}
