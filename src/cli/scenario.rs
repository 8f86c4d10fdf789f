//! Scenario files: the target, the load, the rollout steps and the thresholds, in TOML.
//!
//! ```toml
//! [target]
//! url = "http://127.0.0.1:8080/"
//! headers = { Authorization = "Bearer ${TOKEN}" }
//!
//! [load]
//! qps = 500
//! warmup = "3s"
//! cooldown = "10s"
//!
//! [[step]]
//! name = "set image"
//! run = "kubectl set image deployment/web web=web:v2"
//!
//! [verdict]
//! max_gap = "0s"
//! ```
//!
//! Parsing has two stages, like the command line: serde reads the raw file (unknown keys are
//! errors), then every value is validated into the typed configuration. Every error names
//! `file:line:col` and the key. `${VAR}` in any string value expands from the environment (an
//! unset variable is an error; `$${` writes a literal `${`). Relative paths in the file
//! (`body_file`) are relative to the file's directory.

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use serde::Deserialize;
use toml::Spanned;

use crate::config::{Action, OkCodes, Rate, Step, TargetUrl};
use crate::demo::{DemoSpec, Strategy};

/// Default timeout of a step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// Errors in a scenario file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read scenario {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A syntax error or an invalid value, with its position.
    #[error("{path}:{line}:{column}: {key}: {message}")]
    At {
        /// The file, as given.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The key, such as `load.qps` or `step[2].run`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// `[target]`: what to send. Every field is optional; the command line overrides it.
#[derive(Clone, Debug, Default)]
pub struct TargetSection {
    /// `url`.
    pub url: Option<TargetUrl>,
    /// `method`.
    pub method: Option<Method>,
    /// `headers`, a table of name = value.
    pub headers: HeaderMap,
    /// `body` or the contents of `body_file`.
    pub body: Option<Bytes>,
    /// `timeout` of each request.
    pub timeout: Option<Duration>,
    /// `ok_codes`, such as `"200-299,304"`.
    pub ok_codes: Option<OkCodes>,
    /// `http2`.
    pub http2: Option<bool>,
    /// `insecure`.
    pub insecure: Option<bool>,
    /// `demo = { ... }`: start the embedded demo cluster and load it.
    pub demo: Option<DemoSpec>,
    /// `version_header`.
    pub version_header: Option<HeaderName>,
    /// `version_regex`.
    pub version_regex: Option<regex::bytes::Regex>,
}

/// `[load]`: how much load.
#[derive(Clone, Debug, Default)]
pub struct LoadSection {
    /// `qps` (0 = closed loop).
    pub rate: Option<Rate>,
    /// `connections`.
    pub connections: Option<NonZeroUsize>,
    /// `streams` per HTTP/2 connection.
    pub streams: Option<NonZeroUsize>,
    /// `duration` (a run without steps).
    pub duration: Option<Duration>,
    /// `warmup`.
    pub warmup: Option<Duration>,
    /// `cooldown`.
    pub cooldown: Option<Duration>,
    /// `slot`.
    pub slot: Option<Duration>,
    /// `max_connect_rate`.
    pub max_connect_rate: Option<NonZeroU32>,
    /// `threads`.
    pub threads: Option<NonZeroUsize>,
}

/// `[verdict]`: the thresholds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerdictSection {
    /// `max_failures`.
    pub max_failures: Option<u64>,
    /// `max_failure_ratio`, in `[0, 1]`.
    pub max_failure_ratio: Option<f64>,
    /// `max_gap`.
    pub max_gap: Option<Duration>,
    /// `max_p99`.
    pub max_p99: Option<Duration>,
    /// `merge_gap`.
    pub merge_gap: Option<Duration>,
    /// `slow`.
    pub slow: Option<Duration>,
    /// `allow_warmup_errors`.
    pub allow_warmup_errors: Option<bool>,
    /// `expect_version`.
    pub expect_version: Option<String>,
}

/// A validated scenario file.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file's text, for the reports.
    pub source: String,
    /// `[target]`.
    pub target: TargetSection,
    /// `[load]`.
    pub load: LoadSection,
    /// `[[step]]`, in order.
    pub steps: Vec<Step>,
    /// `[verdict]`.
    pub verdict: VerdictSection,
}

impl Scenario {
    /// Reads and validates the scenario at `path`, expanding `${VAR}` from the environment.
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let source = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(path, &source, &|name| std::env::var(name).ok())
    }

    /// Validates `source`, read from `path`; `env` looks up `${VAR}`.
    pub fn parse(
        path: &Path,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Scenario, Error> {
        let file = File {
            path,
            source,
            env,
            base: path.parent().unwrap_or(Path::new("")),
        };
        let raw: RawScenario = toml::from_str(source).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            file.error_at(
                span.clone(),
                &key_at(source, span.start),
                &with_suggestion(e.message()),
            )
        })?;
        let target = raw.target.map(|t| file.target(t)).transpose()?;
        let has_demo = target.as_ref().is_some_and(|t| t.demo.is_some());
        let load = raw.load.map(|l| file.load(l)).transpose()?;
        let verdict = raw.verdict.map(|v| file.verdict(v)).transpose()?;
        let steps = raw
            .step
            .into_iter()
            .enumerate()
            .map(|(i, s)| file.step(i + 1, s, has_demo))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scenario {
            path: path.to_path_buf(),
            source: source.to_string(),
            target: target.unwrap_or_default(),
            load: load.unwrap_or_default(),
            steps,
            verdict: verdict.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    target: Option<RawTarget>,
    load: Option<RawLoad>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
    verdict: Option<RawVerdict>,
}

type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Option<Text>,
    method: Option<Text>,
    headers: Option<BTreeMap<String, Text>>,
    body: Option<Text>,
    body_file: Option<Text>,
    timeout: Option<Text>,
    ok_codes: Option<Text>,
    http2: Option<bool>,
    insecure: Option<bool>,
    demo: Option<Spanned<RawDemo>>,
    version_header: Option<Text>,
    version_regex: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemo {
    replicas: Option<Spanned<i64>>,
    version: Option<Text>,
    startup: Option<Text>,
    latency: Option<Text>,
    propagation: Option<Text>,
    route_propagation: Option<Text>,
    prestop: Option<Text>,
    readiness: Option<bool>,
    grace: Option<Text>,
    listen: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemoStep {
    action: Text,
    version: Option<Text>,
    max_surge: Option<Spanned<i64>>,
    max_unavailable: Option<Spanned<i64>>,
    readiness: Option<bool>,
    prestop: Option<Text>,
    weights: Option<Spanned<Vec<i64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    qps: Option<Spanned<f64>>,
    connections: Option<Spanned<i64>>,
    streams: Option<Spanned<i64>>,
    duration: Option<Text>,
    warmup: Option<Text>,
    cooldown: Option<Text>,
    slot: Option<Text>,
    max_connect_rate: Option<Spanned<i64>>,
    threads: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Text,
    run: Option<Text>,
    sleep: Option<Text>,
    demo: Option<Spanned<RawDemoStep>>,
    at: Option<Text>,
    timeout: Option<Text>,
    expect_exit: Option<Spanned<i64>>,
    background: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerdict {
    max_failures: Option<Spanned<i64>>,
    max_failure_ratio: Option<Spanned<f64>>,
    max_gap: Option<Text>,
    max_p99: Option<Text>,
    merge_gap: Option<Text>,
    slow: Option<Text>,
    allow_warmup_errors: Option<bool>,
    expect_version: Option<Text>,
}

/// The file being validated: turns spans into positions.
struct File<'a> {
    path: &'a Path,
    source: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    base: &'a Path,
}

impl File<'_> {
    fn error_at(&self, span: Range<usize>, key: &str, message: &str) -> Error {
        let (line, column) = position(self.source, span.start);
        Error::At {
            path: self.path.display().to_string(),
            line,
            column,
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    fn error<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> Error {
        self.error_at(value.span(), key, &message.into())
    }

    /// The string with `${VAR}` expanded.
    fn text(&self, value: &Text, key: &str) -> Result<String, Error> {
        expand(value.get_ref(), self.env).map_err(|m| self.error(value, key, m))
    }

    fn duration(&self, value: &Text, key: &str) -> Result<Duration, Error> {
        let text = self.text(value, key)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            self.error(
                value,
                key,
                format!("{text:?} is not a duration such as \"3s\" or \"1m30s\" ({e})"),
            )
        })
    }

    fn positive(&self, value: &Spanned<i64>, key: &str) -> Result<NonZeroUsize, Error> {
        usize::try_from(*value.get_ref())
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| {
                self.error(
                    value,
                    key,
                    format!("must be at least 1 (got {})", value.get_ref()),
                )
            })
    }

    fn target(&self, raw: RawTarget) -> Result<TargetSection, Error> {
        let url = raw
            .url
            .map(|u| {
                let text = self.text(&u, "target.url")?;
                text.parse::<TargetUrl>()
                    .map_err(|e| self.error(&u, "target.url", e.to_string()))
            })
            .transpose()?;
        let method = raw
            .method
            .map(|m| {
                let text = self.text(&m, "target.method")?;
                Method::from_bytes(text.as_bytes()).map_err(|_| {
                    self.error(
                        &m,
                        "target.method",
                        format!("{text:?} is not an HTTP method"),
                    )
                })
            })
            .transpose()?;
        let mut headers = HeaderMap::new();
        for (name, value) in raw.headers.unwrap_or_default() {
            let key = format!("target.headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.error(&value, &key, "is not a valid header name"))?;
            let text = self.text(&value, &key)?;
            let v = HeaderValue::from_str(&text).map_err(|_| {
                self.error(
                    &value,
                    &key,
                    "is not a valid header value (control characters?)",
                )
            })?;
            headers.append(header, v);
        }
        let body = match (raw.body, raw.body_file) {
            (Some(_), Some(file)) => {
                return Err(self.error(
                    &file,
                    "target.body_file",
                    "give body or body_file, not both",
                ));
            }
            (Some(body), None) => Some(Bytes::from(self.text(&body, "target.body")?)),
            (None, Some(file)) => {
                let name = self.text(&file, "target.body_file")?;
                let path = self.base.join(&name);
                let bytes = std::fs::read(&path).map_err(|e| {
                    self.error(
                        &file,
                        "target.body_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(Bytes::from(bytes))
            }
            (None, None) => None,
        };
        let timeout = raw
            .timeout
            .as_ref()
            .map(|t| self.duration(t, "target.timeout"))
            .transpose()?;
        if let (Some(t), Some(raw)) = (timeout, &raw.timeout) {
            if t < Duration::from_millis(1) {
                return Err(self.error(raw, "target.timeout", "must be at least 1ms"));
            }
        }
        let ok_codes = raw
            .ok_codes
            .map(|c| {
                let text = self.text(&c, "target.ok_codes")?;
                text.parse::<OkCodes>().map_err(|_| {
                    self.error(
                        &c,
                        "target.ok_codes",
                        format!(
                            "{text:?} is not a list of codes and ranges such as \"200-299,304\""
                        ),
                    )
                })
            })
            .transpose()?;
        let demo = match raw.demo {
            Some(d) if url.is_some() => {
                return Err(self.error(&d, "target.demo", "give url or demo, not both"));
            }
            Some(d) => Some(self.demo(d.into_inner())?),
            None => None,
        };
        let version_header = raw
            .version_header
            .as_ref()
            .map(|h| {
                let text = self.text(h, "target.version_header")?;
                HeaderName::from_bytes(text.trim().as_bytes()).map_err(|_| {
                    self.error(h, "target.version_header", "is not a valid header name")
                })
            })
            .transpose()?;
        let version_regex = raw
            .version_regex
            .as_ref()
            .map(|r| {
                let text = self.text(r, "target.version_regex")?;
                crate::cli::version_regex(&text)
                    .map_err(|e| self.error(r, "target.version_regex", e.to_string()))
            })
            .transpose()?;
        Ok(TargetSection {
            version_header,
            version_regex,
            demo,
            url,
            method,
            headers,
            body,
            timeout,
            ok_codes,
            http2: raw.http2,
            insecure: raw.insecure,
        })
    }

    fn load(&self, raw: RawLoad) -> Result<LoadSection, Error> {
        let rate = raw
            .qps
            .map(|q| {
                Rate::from_qps(*q.get_ref()).map_err(|_| {
                    self.error(
                        &q,
                        "load.qps",
                        format!("must be a finite number, 0 or more (got {})", q.get_ref()),
                    )
                })
            })
            .transpose()?;
        let positive =
            |v: &Option<Spanned<i64>>, key| v.as_ref().map(|v| self.positive(v, key)).transpose();
        let duration = |v: &Option<Text>, key, min: Duration| -> Result<Option<Duration>, Error> {
            let Some(text) = v else { return Ok(None) };
            let d = self.duration(text, key)?;
            if d < min {
                return Err(self.error(
                    text,
                    key,
                    format!("must be at least {}", humantime::format_duration(min)),
                ));
            }
            Ok(Some(d))
        };
        let max_connect_rate = positive(&raw.max_connect_rate, "load.max_connect_rate")?.map(|n| {
            NonZeroU32::new(u32::try_from(n.get()).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
        });
        Ok(LoadSection {
            rate,
            connections: positive(&raw.connections, "load.connections")?,
            streams: positive(&raw.streams, "load.streams")?,
            duration: duration(&raw.duration, "load.duration", Duration::from_millis(1))?,
            warmup: duration(&raw.warmup, "load.warmup", Duration::ZERO)?,
            cooldown: duration(&raw.cooldown, "load.cooldown", Duration::ZERO)?,
            slot: duration(&raw.slot, "load.slot", Duration::from_millis(10))?,
            max_connect_rate,
            threads: positive(&raw.threads, "load.threads")?,
        })
    }

    fn demo(&self, raw: RawDemo) -> Result<DemoSpec, Error> {
        let mut spec = DemoSpec::default();
        if let Some(n) = &raw.replicas {
            spec.replicas = self.positive(n, "target.demo.replicas")?;
        }
        if let Some(v) = &raw.version {
            spec.version = self.label(v, "target.demo.version")?;
        }
        let durations = [
            (&raw.startup, "target.demo.startup", &mut spec.startup),
            (&raw.latency, "target.demo.latency", &mut spec.latency),
            (
                &raw.propagation,
                "target.demo.propagation",
                &mut spec.propagation,
            ),
            (
                &raw.route_propagation,
                "target.demo.route_propagation",
                &mut spec.route_propagation,
            ),
            (&raw.prestop, "target.demo.prestop", &mut spec.prestop),
            (&raw.grace, "target.demo.grace", &mut spec.grace),
        ];
        for (value, key, slot) in durations {
            if let Some(v) = value {
                *slot = self.duration(v, key)?;
            }
        }
        if let Some(r) = raw.readiness {
            spec.readiness = r;
        }
        if let Some(listen) = &raw.listen {
            let text = self.text(listen, "target.demo.listen")?;
            spec.listen = text.parse().map_err(|_| {
                self.error(
                    listen,
                    "target.demo.listen",
                    format!("{text:?} is not an address such as \"127.0.0.1:8080\""),
                )
            })?;
        }
        Ok(spec)
    }

    /// A version label: non-empty, usable as a header value.
    fn label(&self, value: &Text, key: &str) -> Result<String, Error> {
        let text = self.text(value, key)?;
        if text.is_empty() || HeaderValue::from_str(&text).is_err() {
            return Err(self.error(value, key, "must be a short label such as \"v2\""));
        }
        Ok(text)
    }

    fn demo_step(&self, key: &str, raw: Spanned<RawDemoStep>) -> Result<Strategy, Error> {
        let span = raw.span();
        let raw = raw.into_inner();
        let action = self.text(&raw.action, &format!("{key}.action"))?;
        let version = raw
            .version
            .as_ref()
            .map(|v| self.label(v, &format!("{key}.version")))
            .transpose()?;
        let need_version = |version: Option<String>| {
            version.ok_or_else(|| {
                self.error_at(
                    span.clone(),
                    key,
                    &format!("action {action:?} needs version = \"v2\""),
                )
            })
        };
        let count =
            |v: &Option<Spanned<i64>>, field: &str, default: usize| -> Result<usize, Error> {
                match v {
                    Some(n) => usize::try_from(*n.get_ref())
                        .map_err(|_| self.error(n, &format!("{key}.{field}"), "must be 0 or more")),
                    None => Ok(default),
                }
            };
        let strategy = match action.as_str() {
            "rolling" => {
                let max_surge = count(&raw.max_surge, "max_surge", 1)?;
                let max_unavailable = count(&raw.max_unavailable, "max_unavailable", 0)?;
                if max_surge + max_unavailable == 0 {
                    return Err(self.error_at(
                        span,
                        key,
                        "max_surge and max_unavailable cannot both be 0",
                    ));
                }
                Strategy::Rolling {
                    version: need_version(version)?,
                    max_surge,
                    max_unavailable,
                    readiness: raw.readiness,
                    prestop: raw
                        .prestop
                        .as_ref()
                        .map(|p| self.duration(p, &format!("{key}.prestop")))
                        .transpose()?,
                }
            }
            "recreate" => Strategy::Recreate {
                version: need_version(version)?,
            },
            "switch" => Strategy::Switch {
                version: need_version(version)?,
            },
            "deploy" => Strategy::Deploy {
                version: need_version(version)?,
            },
            "restart" => Strategy::Restart,
            "weights" => {
                let Some(weights) = &raw.weights else {
                    return Err(self.error_at(
                        span,
                        key,
                        "action \"weights\" needs weights = [90, 10]",
                    ));
                };
                let parsed: Option<Vec<u32>> = weights
                    .get_ref()
                    .iter()
                    .map(|&w| u32::try_from(w).ok())
                    .collect();
                let parsed = parsed
                    .filter(|w| !w.is_empty() && w.iter().any(|&x| x > 0))
                    .ok_or_else(|| {
                        self.error(
                            weights,
                            &format!("{key}.weights"),
                            "must be 0 or more each, not all 0, such as [90, 10]",
                        )
                    })?;
                Strategy::Weights {
                    version,
                    weights: parsed,
                }
            }
            other => {
                return Err(self.error(
                    &raw.action,
                    &format!("{key}.action"),
                    format!("{other:?} is not one of rolling, recreate, switch, deploy, weights, restart"),
                ));
            }
        };
        Ok(strategy)
    }

    fn step(&self, number: usize, raw: Spanned<RawStep>, has_demo: bool) -> Result<Step, Error> {
        let span = raw.span();
        let raw = raw.into_inner();
        let key = |field: &str| format!("step[{number}].{field}");
        let name = self.text(&raw.name, &key("name"))?;
        if name.trim().is_empty() {
            return Err(self.error(&raw.name, &key("name"), "must not be empty"));
        }
        let background = raw.background.unwrap_or(false);
        if let Some(demo) = raw.demo {
            if raw.run.is_some() || raw.sleep.is_some() {
                return Err(self.error(&demo, &key("demo"), "give one of run, sleep or demo"));
            }
            if !has_demo {
                return Err(self.error(
                    &demo,
                    &key("demo"),
                    "needs the demo cluster: [target] demo = { ... }",
                ));
            }
            if background {
                return Err(self.error(
                    &demo,
                    &key("demo"),
                    "a demo step cannot be a background step",
                ));
            }
            return Ok(Step {
                name,
                action: Action::Demo(self.demo_step(&key("demo"), demo)?),
                at: raw.at.map(|a| self.duration(&a, &key("at"))).transpose()?,
                timeout: raw
                    .timeout
                    .map(|t| self.duration(&t, &key("timeout")))
                    .transpose()?
                    .unwrap_or(STEP_TIMEOUT),
                expect_exit: 0,
                background,
            });
        }
        let action = match (&raw.run, &raw.sleep) {
            (Some(run), None) => {
                let line = self.text(run, &key("run"))?;
                if line.trim().is_empty() {
                    return Err(self.error(run, &key("run"), "must not be empty"));
                }
                Action::Shell(line)
            }
            (None, Some(sleep)) if !background => {
                Action::Sleep(self.duration(sleep, &key("sleep"))?)
            }
            (None, Some(sleep)) => {
                return Err(self.error(
                    sleep,
                    &key("sleep"),
                    "a background step needs run, not sleep",
                ));
            }
            (Some(_), Some(sleep)) => {
                return Err(self.error(sleep, &key("sleep"), "give run or sleep, not both"));
            }
            (None, None) => {
                return Err(self.error_at(
                    span,
                    &format!("step[{number}]"),
                    "needs run = \"command\", sleep = \"5s\" or demo = { action = ... }",
                ));
            }
        };
        let expect_exit = match &raw.expect_exit {
            Some(code) => i32::try_from(*code.get_ref())
                .ok()
                .filter(|c| (0..=255).contains(c))
                .ok_or_else(|| {
                    self.error(
                        code,
                        &key("expect_exit"),
                        "must be an exit status, 0 to 255",
                    )
                })?,
            None => 0,
        };
        Ok(Step {
            name,
            action,
            at: raw.at.map(|a| self.duration(&a, &key("at"))).transpose()?,
            timeout: raw
                .timeout
                .map(|t| self.duration(&t, &key("timeout")))
                .transpose()?
                .unwrap_or(STEP_TIMEOUT),
            expect_exit,
            background,
        })
    }

    fn verdict(&self, raw: RawVerdict) -> Result<VerdictSection, Error> {
        let duration =
            |v: &Option<Text>, key| v.as_ref().map(|t| self.duration(t, key)).transpose();
        let max_failures = raw
            .max_failures
            .map(|n| {
                u64::try_from(*n.get_ref())
                    .map_err(|_| self.error(&n, "verdict.max_failures", "must be 0 or more"))
            })
            .transpose()?;
        let max_failure_ratio = raw
            .max_failure_ratio
            .map(|r| {
                let v = *r.get_ref();
                (0.0..=1.0).contains(&v).then_some(v).ok_or_else(|| {
                    self.error(
                        &r,
                        "verdict.max_failure_ratio",
                        format!("must be between 0 and 1 (got {v})"),
                    )
                })
            })
            .transpose()?;
        Ok(VerdictSection {
            max_failures,
            max_failure_ratio,
            max_gap: duration(&raw.max_gap, "verdict.max_gap")?,
            max_p99: duration(&raw.max_p99, "verdict.max_p99")?,
            merge_gap: duration(&raw.merge_gap, "verdict.merge_gap")?,
            slow: duration(&raw.slow, "verdict.slow")?,
            allow_warmup_errors: raw.allow_warmup_errors,
            expect_version: raw
                .expect_version
                .as_ref()
                .map(|v| self.label(v, "verdict.expect_version"))
                .transpose()?,
        })
    }
}

/// Expands `${VAR}`; `$${` is a literal `${`. The error names the variable.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(open) = after.strip_prefix('{') {
            let close = open
                .find('}')
                .ok_or_else(|| "unclosed ${ (write $${ for a literal ${)".to_string())?;
            let name = &open[..close];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("${{{name}}} is not a valid variable name"));
            }
            let value =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// serde's "unknown field `qpss`, expected one of `qps`, ..." gains "; did you mean `qps`?" when
/// a known key is at most two edits away.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| (edit_distance(unknown, known), known))
        .filter(|&(d, _)| d <= 2)
        .min();
    match best {
        Some((_, known)) => format!("{}; did you mean `{known}`?", message.trim_end()),
        None => message.to_string(),
    }
}

/// Levenshtein distance (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// 1-based line and column (in characters) of byte `offset`.
fn position(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The key at byte `offset`, for parse errors: `section.key` from the line's `key =` and the
/// nearest `[section]` above it; `step[N]` counts `[[step]]` headers.
fn key_at(source: &str, offset: usize) -> String {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = source[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c))
        });
    let mut section = None;
    let mut steps = 0;
    for header in source[..line_start].lines().chain(std::iter::once(line)) {
        let h = header.trim();
        if let Some(name) = h.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let name = name.trim();
            if name == "step" {
                steps += 1;
                section = Some(format!("step[{steps}]"));
            } else {
                section = Some(name.to_string());
            }
        } else if let Some(name) = h.strip_prefix('[').and_then(|h| h.split(']').next()) {
            section = Some(name.trim().to_string());
        }
    }
    let section = section.filter(|s| !s.is_empty());
    match (section, key) {
        (Some(s), Some(k)) => format!("{s}.{k}"),
        (Some(s), None) => s,
        (None, Some(k)) => k,
        (None, None) => "(file)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "HOST" => Some("127.0.0.1:9".into()),
            _ => None,
        }
    }

    fn parse(source: &str) -> Result<Scenario, Error> {
        Scenario::parse(Path::new("s.toml"), source, &env)
    }

    fn error(source: &str) -> String {
        parse(source).unwrap_err().to_string()
    }

    #[test]
    fn a_full_scenario_validates() {
        let s = parse(
            r#"
[target]
url = "http://${HOST}/health"
method = "POST"
headers = { Authorization = "Bearer ${TOKEN}" }
body = "{}"
timeout = "2s"
ok_codes = "200-299,304"
http2 = true

[load]
qps = 500
connections = 8
warmup = "1s"
cooldown = "5s"
slot = "100ms"

[[step]]
name = "watch pods"
run = "kubectl get pods -w"
background = true

[[step]]
name = "set image"
run = "kubectl set image deployment/web web=web:v2"
timeout = "2m"

[[step]]
name = "settle"
sleep = "5s"
at = "30s"

[verdict]
max_failures = 3
max_failure_ratio = 0.001
max_gap = "50ms"
max_p99 = "1s"
merge_gap = "10ms"
slow = "200ms"
allow_warmup_errors = true
"#,
        )
        .unwrap();
        assert_eq!(
            s.target.url.unwrap().to_string(),
            "http://127.0.0.1:9/health"
        );
        assert_eq!(s.target.method, Some(Method::POST));
        assert_eq!(s.target.headers["authorization"], "Bearer s3cret");
        assert_eq!(s.target.timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.target.http2, Some(true));
        assert_eq!(s.load.rate.and_then(Rate::qps), Some(500.0));
        assert_eq!(s.load.connections.map(NonZeroUsize::get), Some(8));
        assert_eq!(s.load.slot, Some(Duration::from_millis(100)));
        assert_eq!(s.steps.len(), 3);
        assert!(s.steps[0].background);
        assert_eq!(s.steps[1].timeout, Duration::from_secs(120));
        assert_eq!(s.steps[1].expect_exit, 0);
        assert_eq!(s.steps[2].action, Action::Sleep(Duration::from_secs(5)));
        assert_eq!(s.steps[2].at, Some(Duration::from_secs(30)));
        assert_eq!(s.steps[2].timeout, STEP_TIMEOUT);
        assert_eq!(s.verdict.max_failures, Some(3));
        assert_eq!(s.verdict.max_gap, Some(Duration::from_millis(50)));
        assert_eq!(s.verdict.allow_warmup_errors, Some(true));
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        assert_eq!(
            error("[load]\nqps = -3\n"),
            "s.toml:2:7: load.qps: must be a finite number, 0 or more (got -3)"
        );
        assert_eq!(
            error("[load]\nconnections = 0\n"),
            "s.toml:2:15: load.connections: must be at least 1 (got 0)"
        );
        assert_eq!(
            error(
                "[[step]]\nname = \"a\"\nrun = \"true\"\n\n[[step]]\nname = \"b\"\ntimeout = \"soon\"\nrun = \"x\"\n"
            ),
            "s.toml:7:11: step[2].timeout: \"soon\" is not a duration such as \"3s\" or \"1m30s\" (expected number at 0)"
        );
        assert_eq!(
            error("[target]\nurl = \"ftp://x/\"\n"),
            "s.toml:2:7: target.url: target URL \"ftp://x/\" has an unsupported scheme: use http:// or https://"
        );
        assert_eq!(
            error("[target]\nheaders = { X-Key = \"${NOPE}\" }\n"),
            "s.toml:2:21: target.headers.X-Key: environment variable NOPE is not set"
        );
        assert_eq!(
            error("[[step]]\nname = \"a\"\n"),
            "s.toml:1:1: step[1]: needs run = \"command\", sleep = \"5s\" or demo = { action = ... }"
        );
        assert_eq!(
            error("[verdict]\nmax_failure_ratio = 2.0\n"),
            "s.toml:2:21: verdict.max_failure_ratio: must be between 0 and 1 (got 2)"
        );
    }

    #[test]
    fn unknown_keys_and_syntax_errors_are_located() {
        let e = error("[load]\nqps = 5\nqpss = 6\n");
        assert!(
            e.starts_with("s.toml:3:1: load.qpss: unknown field `qpss`"),
            "{e}"
        );
        assert!(e.ends_with("; did you mean `qps`?"), "{e}");
        let e = error("[load]\nbananas = 1\n");
        assert!(!e.contains("did you mean"), "{e}");
        assert_eq!(edit_distance("timout", "timeout"), 1);
        let e = error("[load]\nqps = \"fast\"\n");
        assert!(e.starts_with("s.toml:2:7: load.qps: invalid type"), "{e}");
        let e = error("[load\nqps = 5\n");
        assert!(e.starts_with("s.toml:1:"), "{e}");
        let e = error("[[step]]\nrun = \"x\"\n");
        assert!(
            e.starts_with("s.toml:1:1: step[1]: missing field `name`"),
            "{e}"
        );
        let e = error("[targte]\nurl = \"http://x/\"\n");
        assert!(
            e.starts_with("s.toml:1:2: targte: unknown field `targte`"),
            "{e}"
        );
    }

    #[test]
    fn variables_expand_from_the_environment() {
        assert_eq!(expand("a ${TOKEN} b", &env).unwrap(), "a s3cret b");
        assert_eq!(
            expand("$HOME and $${TOKEN} and $", &env).unwrap(),
            "$HOME and ${TOKEN} and $"
        );
        assert_eq!(
            expand("${NOPE}", &env).unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert!(expand("${TOKEN", &env).unwrap_err().contains("unclosed"));
        assert!(
            expand("${1A}", &env)
                .unwrap_err()
                .contains("not a valid variable name")
        );
    }

    #[test]
    fn position_counts_characters() {
        assert_eq!(position("ab\ncé=x", 7), (2, 4));
        assert_eq!(position("", 0), (1, 1));
    }
}
