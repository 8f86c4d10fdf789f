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
//!
//! [metrics]
//! listen = "9464"
//! ```
//!
//! Parsing has two stages, like the command line: serde reads the raw file (unknown keys are
//! errors) into the same option structs the command line fills ([`super::options`]), then every
//! value is checked. Every error names `file:line:col` and the key. `${VAR}` in any string value
//! expands from the environment (`${VAR:-default}` and `${VAR-default}` as in shells; an unset
//! variable without a default is an error; `$${` writes a literal `${`). Relative paths in the
//! file (`body_file`, `cacert`) are relative to the file's directory. Step names are unique.
//! `[[stream]]` tables declare long-lived probes (see [`super::streams`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::check::{self, ANY_DURATION, STEP_TIMEOUT, STEP_TIMEOUT_RANGE};
use super::check::{Context, Env, ScenarioText};
use super::options::{LoadOptions, MetricsOptions, StreamOptions, TargetOptions, VerdictOptions};
use crate::rollout::step::{Action, Step};
use crate::rollout::strategy::Strategy;

pub use super::check::Error as At;

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
    /// A syntax error or an invalid value, with its position (`file:line:col: key: message`).
    #[error(transparent)]
    At(#[from] At),
}

/// A scenario file: its option tables as written (checked, not yet merged with the command line)
/// and its validated steps.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file's text, for the reports and for error positions.
    pub source: String,
    /// `[target]` (empty when the file has `[[target]]` entries).
    pub target: TargetOptions,
    /// `[[target]]`: several endpoints on one clock, each judged (empty with `[target]`).
    pub targets: Vec<TargetOptions>,
    /// `[load]`.
    pub load: LoadOptions,
    /// `[verdict]`.
    pub verdict: VerdictOptions,
    /// `[metrics]`.
    pub metrics: MetricsOptions,
    /// `[[step]]`, in order.
    pub steps: Vec<Step>,
    /// `[[stream]]`: long-lived probes, as written (checked into configurations by
    /// [`super::streams::configs`]).
    pub streams: Vec<Spanned<StreamOptions>>,
}

impl Scenario {
    /// Reads and validates the scenario at `path`, expanding `${VAR}` from the environment.
    pub fn load(path: &Path) -> Result<Scenario, Error> {
        let source = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Scenario::parse(path, &source, &|name| {
            std::env::var(name).ok()
        })?)
    }

    /// Validates `source`, read from `path`; `env` looks up `${VAR}`.
    pub fn parse(path: &Path, source: &str, env: Env) -> Result<Scenario, At> {
        let cx = Context::new(Some(ScenarioText { path, source }), env);
        let raw: RawScenario = toml::from_str(source).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            cx.error_at(
                span.clone(),
                &key_at(source, span.start),
                with_suggestion(e.message()),
            )
        })?;
        let (target, targets) = match raw.target {
            None => (TargetOptions::default(), Vec::new()),
            Some(Targets::One(target)) => (*target, Vec::new()),
            Some(Targets::Many(targets)) => (TargetOptions::default(), targets),
        };
        let spans: Vec<std::ops::Range<usize>> = targets.iter().map(Spanned::span).collect();
        let targets: Vec<TargetOptions> = targets.into_iter().map(Spanned::into_inner).collect();
        let load = raw.load.unwrap_or_default();
        let verdict = raw.verdict.unwrap_or_default();
        let metrics = raw.metrics.unwrap_or_default();
        metrics.check_all(&cx)?;
        target.check_all(&cx)?;
        for (i, t) in targets.iter().enumerate() {
            t.check_all(&cx)?;
            let whole = |g: Option<&super::check::Given<DemoTableRaw>>| {
                g.map(|g| match &g.origin {
                    super::check::Origin::File(span) => span.clone(),
                    super::check::Origin::Command => 0..0,
                })
            };
            if let Some(span) = whole(t.demo.as_ref()) {
                return Err(cx.error_at(
                    span,
                    &format!("target[{}].demo", i + 1),
                    "the demo cluster goes in a single [target] table, not in [[target]]",
                ));
            }
            if t.url.is_none() {
                return Err(cx.error_at(
                    spans[i].clone(),
                    &format!("target[{}].url", i + 1),
                    "each [[target]] needs a url",
                ));
            }
        }
        load.check_all(&cx)?;
        verdict.check_all(&cx)?;
        super::streams::configs(&raw.stream, &cx, false, &[])?;
        if target.url.is_some() {
            if let Some(demo) = &target.demo {
                let span = match &demo.origin {
                    super::check::Origin::File(span) => span.clone(),
                    super::check::Origin::Command => 0..0,
                };
                return Err(cx.error_at(span, "target.demo", "give url or demo, not both"));
            }
        }
        let steps = Steps {
            cx: &cx,
            has_demo: target.demo.is_some(),
        };
        let mut names = HashSet::new();
        let mut parsed = Vec::with_capacity(raw.step.len());
        for (i, s) in raw.step.into_iter().enumerate() {
            let name_span = s.get_ref().name.span();
            let step = steps.step(i + 1, s)?;
            if !names.insert(step.name.clone()) {
                return Err(cx.error_at(
                    name_span,
                    &format!("step[{}].name", i + 1),
                    format!(
                        "{:?} names an earlier step too: step names must be unique",
                        step.name
                    ),
                ));
            }
            parsed.push(step);
        }
        Ok(Scenario {
            path: path.to_path_buf(),
            source: source.to_string(),
            target,
            targets,
            load,
            verdict,
            metrics,
            steps: parsed,
            streams: raw.stream,
        })
    }

    /// The context its values are checked in (positions, relative paths, `${VAR}`).
    pub fn context<'a>(&'a self, env: Env<'a>) -> Context<'a> {
        Context::new(
            Some(ScenarioText {
                path: &self.path,
                source: &self.source,
            }),
            env,
        )
    }
}

type DemoTableRaw = super::check::DemoTable;

/// `[target]` (one table) or `[[target]]` (an array of tables).
enum Targets {
    One(Box<TargetOptions>),
    Many(Vec<Spanned<TargetOptions>>),
}

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Targets, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Targets;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [target] table or [[target]] tables")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Targets, A::Error> {
                TargetOptions::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|t| Targets::One(Box::new(t)))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Targets, A::Error> {
                Vec::<Spanned<TargetOptions>>::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )
                .map(Targets::Many)
            }
        }
        d.deserialize_any(Visit)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    target: Option<Targets>,
    load: Option<LoadOptions>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
    verdict: Option<VerdictOptions>,
    metrics: Option<MetricsOptions>,
    #[serde(default)]
    stream: Vec<Spanned<StreamOptions>>,
}

type Text = Spanned<String>;

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

/// Validates the `[[step]]` tables.
struct Steps<'a> {
    cx: &'a Context<'a>,
    has_demo: bool,
}

impl Steps<'_> {
    fn error<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> At {
        self.cx.error_at(value.span(), key, message)
    }

    fn text(&self, value: &Text, key: &str) -> Result<String, At> {
        check::spanned_text(value, key, self.cx)
    }

    fn duration(&self, value: &Text, key: &str) -> Result<Duration, At> {
        check::duration(value, key, ANY_DURATION, self.cx)
    }

    fn label(&self, value: &Text, key: &str) -> Result<String, At> {
        check::label(value, key, self.cx)
    }

    fn demo_step(&self, key: &str, raw: Spanned<RawDemoStep>) -> Result<Strategy, At> {
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
                self.cx.error_at(
                    span.clone(),
                    key,
                    format!("action {action:?} needs version = \"v2\""),
                )
            })
        };
        let count = |v: &Option<Spanned<i64>>, field: &str, default: usize| -> Result<usize, At> {
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
                    return Err(self.cx.error_at(
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
                    return Err(self.cx.error_at(
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

    fn step(&self, number: usize, raw: Spanned<RawStep>) -> Result<Step, At> {
        let span = raw.span();
        let raw = raw.into_inner();
        let key = |field: &str| format!("step[{number}].{field}");
        let name = self.text(&raw.name, &key("name"))?;
        if name.trim().is_empty() {
            return Err(self.error(&raw.name, &key("name"), "must not be empty"));
        }
        let background = raw.background.unwrap_or(false);
        let at = raw.at.map(|a| self.duration(&a, &key("at"))).transpose()?;
        let timeout = raw
            .timeout
            .map(|t| check::duration(&t, &key("timeout"), STEP_TIMEOUT_RANGE, self.cx))
            .transpose()?
            .unwrap_or(STEP_TIMEOUT);
        if let Some(demo) = raw.demo {
            if raw.run.is_some() || raw.sleep.is_some() {
                return Err(self.error(&demo, &key("demo"), "give one of run, sleep or demo"));
            }
            if !self.has_demo {
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
            let action = Action::Orchestrated(self.demo_step(&key("demo"), demo)?);
            return Ok(Step {
                name,
                command: action.to_string(),
                action,
                at,
                timeout,
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
                return Err(self.cx.error_at(
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
            // As written: `${VAR}` stays unexpanded in every report.
            command: raw
                .run
                .as_ref()
                .map_or_else(|| action.to_string(), |r| r.get_ref().clone()),
            action,
            at,
            timeout,
            expect_exit,
            background,
        })
    }
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
    let (mut steps, mut streams) = (0, 0);
    for header in source[..line_start].lines().chain(std::iter::once(line)) {
        let h = header.trim();
        if let Some(name) = h.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let name = name.trim();
            if name == "step" {
                steps += 1;
                section = Some(format!("step[{steps}]"));
            } else if name == "stream" {
                streams += 1;
                section = Some(format!("stream[{streams}]"));
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

    fn parse(source: &str) -> Result<Scenario, At> {
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
        let cx = s.context(&env);
        let t = &s.target;
        assert_eq!(
            t.url(&cx).unwrap().unwrap().value.to_string(),
            "http://127.0.0.1:9/health"
        );
        assert_eq!(t.method(&cx).unwrap().value, http::Method::POST);
        let headers = t.headers(&cx).unwrap();
        assert_eq!(headers[0].value.0, "authorization");
        assert_eq!(headers[0].value.1, "Bearer s3cret");
        assert_eq!(t.timeout(&cx).unwrap().value, Duration::from_secs(2));
        assert!(t.http2(&cx).unwrap().value);
        assert_eq!(s.load.qps(&cx).unwrap().value.qps(), Some(500.0));
        assert_eq!(s.load.connections(&cx).unwrap().value.get(), 8);
        assert_eq!(
            s.load.slot(&cx).unwrap().unwrap().value,
            Duration::from_millis(100)
        );
        assert_eq!(s.steps.len(), 3);
        assert!(s.steps[0].background);
        assert_eq!(s.steps[1].timeout, Duration::from_secs(120));
        assert_eq!(s.steps[1].expect_exit, 0);
        assert_eq!(s.steps[2].action, Action::Sleep(Duration::from_secs(5)));
        assert_eq!(s.steps[2].at, Some(Duration::from_secs(30)));
        assert_eq!(s.steps[2].timeout, STEP_TIMEOUT);
        assert_eq!(
            s.steps[1].command,
            "kubectl set image deployment/web web=web:v2"
        );
        let v = &s.verdict;
        assert_eq!(v.max_failures(&cx).unwrap().unwrap().value, 3);
        assert_eq!(
            v.max_gap(&cx).unwrap().unwrap().value,
            Duration::from_millis(50)
        );
        assert!(v.allow_warmup_errors(&cx).unwrap().value);
        assert_eq!(
            v.max_gap(&cx).unwrap().unwrap().source,
            super::super::options::Source::Key("verdict.max_gap".to_string())
        );
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
    fn steps_keep_their_command_as_written_and_names_are_unique() {
        let s = parse("[[step]]\nname = \"a\"\nrun = \"kubectl --token=${TOKEN} get\"\n").unwrap();
        assert_eq!(s.steps[0].command, "kubectl --token=${TOKEN} get");
        assert_eq!(
            s.steps[0].action,
            Action::Shell("kubectl --token=s3cret get".to_string())
        );
        assert_eq!(
            error("[[step]]\nname = \"a\"\nrun = \"x\"\n[[step]]\nname = \"a\"\nrun = \"y\"\n"),
            "s.toml:5:8: step[2].name: \"a\" names an earlier step too: step names must be unique"
        );
        let s = parse("[target]\nurl = \"http://${NOPE:-127.0.0.1:7}/\"\n").unwrap();
        let cx = s.context(&env);
        assert_eq!(s.target.url(&cx).unwrap().unwrap().value.port(), 7);
    }
}
