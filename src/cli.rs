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
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

use crate::config::{self, LoadConfig, OkCodes, Rate, RunConfig, TargetConfig, TargetUrl};
use crate::serve::ServeConfig;

/// Errors in command-line values, each one sentence.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value the typed configuration rejects.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// Neither a URL nor `--builtin`.
    #[error("give a target URL, or --builtin to load the built-in target")]
    NoTarget,
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
    /// Send a constant-rate HTTP load and report every outcome.
    Run(RunArgs),
    /// Serve a small built-in HTTP target.
    Serve(ServeArgs),
}

/// `gapless run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Target URL (http:// or https://).
    #[arg(required_unless_present = "builtin")]
    pub url: Option<String>,
    /// Start the built-in target on a free loopback port and load it (a first try, no setup).
    #[arg(long, conflicts_with = "url")]
    pub builtin: bool,
    /// Total requests per second; 0 = as fast as possible (closed loop).
    #[arg(
        short = 'q',
        long,
        default_value_t = 100.0,
        allow_negative_numbers = true
    )]
    pub qps: f64,
    /// Number of connections.
    #[arg(short = 'c', long, default_value_t = 16)]
    pub connections: usize,
    /// How long to run (e.g. 10s, 1m30s).
    #[arg(short = 'd', long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Deadline of each request, counted from its intended send time.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// Extra header 'Name: value' (repeatable).
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
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Do not verify TLS certificates.
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Status codes that count as success, e.g. 200-299,304.
    #[arg(long, default_value = "200-299")]
    pub ok_codes: String,
    /// Width of one timeline slot (10ms or more).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub slot: Duration,
    /// Ceiling on new-connection attempts per second [default: the larger of 1000 and --qps].
    #[arg(long, value_name = "N")]
    pub max_connect_rate: Option<u32>,
    /// Engine threads [default: one per 100,000 qps, at most one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Write the JSON result to FILE ('-' for stdout; the text report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print only the verdict line instead of the full text report.
    #[arg(long)]
    pub quiet: bool,
}

/// Where the outputs of a run go.
#[derive(Clone, Debug)]
pub struct Output {
    /// `--json`.
    pub json: Option<PathBuf>,
    /// `--quiet`.
    pub quiet: bool,
}

impl Output {
    /// True when the JSON result goes to stdout (so the text report goes to stderr).
    pub fn json_on_stdout(&self) -> bool {
        self.json.as_deref() == Some(std::path::Path::new("-"))
    }
}

impl RunArgs {
    /// The target URL given on the command line (`None` with `--builtin`).
    pub fn target_url(&self) -> Result<Option<TargetUrl>, Error> {
        match (&self.url, self.builtin) {
            (_, true) => Ok(None),
            (Some(url), false) => Ok(Some(url.parse()?)),
            (None, false) => Err(Error::NoTarget),
        }
    }

    /// Validates everything but the URL into a run configuration for `url`.
    pub fn validate(&self, url: TargetUrl) -> Result<(RunConfig, Output), Error> {
        let rate = Rate::from_qps(self.qps)?;
        let connections =
            NonZeroUsize::new(self.connections).ok_or(Error::Zero("--connections"))?;
        let streams = NonZeroUsize::new(self.streams).ok_or(Error::Zero("--streams"))?;
        let short = |flag, min, value: Duration| Error::TooShort {
            flag,
            min,
            value: humantime::format_duration(value).to_string(),
        };
        if self.duration.is_zero() {
            return Err(short("--duration", "1ms", self.duration));
        }
        if self.timeout < Duration::from_millis(1) {
            return Err(short("--timeout", "1ms", self.timeout));
        }
        if self.slot < Duration::from_millis(10) {
            return Err(short("--slot", "10ms", self.slot));
        }
        if self.slot > self.duration {
            return Err(Error::SlotLongerThanRun {
                slot: humantime::format_duration(self.slot).to_string(),
                duration: humantime::format_duration(self.duration).to_string(),
            });
        }
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|_| Error::Method(self.method.clone()))?;
        let headers = parse_headers(&self.headers)?;
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
            (None, None) => Bytes::new(),
        };
        let ok_codes: OkCodes = self.ok_codes.parse()?;
        let default_connect_rate = rate.qps().map_or(1000.0, |q| q.max(1000.0).ceil());
        let max_connect_rate = match self.max_connect_rate {
            Some(n) => NonZeroU32::new(n).ok_or(Error::Zero("--max-connect-rate"))?,
            None => NonZeroU32::new(default_connect_rate.min(u32::MAX as f64) as u32)
                .unwrap_or(NonZeroU32::MIN),
        };
        let config = RunConfig {
            target: TargetConfig {
                url,
                method,
                headers,
                body,
                timeout: self.timeout,
                ok_codes,
                http2: self.http2,
                insecure: self.insecure,
            },
            load: LoadConfig {
                rate,
                connections,
                streams,
                duration: self.duration,
                slot: self.slot,
                max_connect_rate,
                threads: match self.threads {
                    Some(n) => Some(NonZeroUsize::new(n).ok_or(Error::Zero("--threads"))?),
                    None => None,
                },
            },
        };
        let output = Output {
            json: self.json.clone(),
            quiet: self.quiet,
        };
        Ok((config, output))
    }
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
            Command::Run(a) => a,
            Command::Serve(_) => unreachable!(),
        }
    }

    fn error(extra: &[&str]) -> String {
        let a = args(extra);
        let url = a.target_url().unwrap().unwrap();
        a.validate(url).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let a = args(&[]);
        let (config, output) = a.validate(a.target_url().unwrap().unwrap()).unwrap();
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
    fn headers_parse() {
        let h = parse_headers(&["X-A: 1".into(), "x-a:2".into()]).unwrap();
        assert_eq!(h.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn url_problems() {
        let a = args(&[]);
        assert!(a.target_url().is_ok());
        let bad = match Cli::try_parse_from(["gapless", "run", "ftp://x/"])
            .unwrap()
            .command
        {
            Command::Run(a) => a,
            Command::Serve(_) => unreachable!(),
        };
        assert!(
            bad.target_url()
                .unwrap_err()
                .to_string()
                .contains("unsupported scheme")
        );
    }
}
