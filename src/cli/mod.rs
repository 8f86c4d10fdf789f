//! The command line (clap) and the scenario file (TOML), validated into the typed configuration.
//!
//! Two stages, as in ripgrep: clap and serde fill the raw option structs of [`options`] (one
//! declaration per option serves both), the command line is merged over the file field by field,
//! and [`RunArgs::validate`] checks each value once ([`check`]) and the rules between them, into
//! [`RunConfig`] or one clear sentence of error.

pub mod check;
pub mod grpc;
pub mod manual;
pub mod options;
pub mod scenario;
pub mod streams;
pub mod targets;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use http::{HeaderMap, StatusCode, header};

use crate::config::{
    Endpoint, Limits, LoadConfig, Rate, RolloutConfig, RunConfig, ShardPlan, TargetConfig,
    TargetUrl, VerdictConfig,
};
use crate::judge::diff::DiffLimits;
use crate::redact::Redactor;
use crate::report::Outputs;
use crate::rollout::step::{Action, Step};
use crate::targets::demo::DemoSpec;
use crate::targets::serve::ServeConfig;
use check::show;
use check::{Context, Given, Origin, Place};
use check::{STEP_TIMEOUT, STEP_TIMEOUT_RANGE};
use options::{
    DiffOptions, LoadOptions, MetricsOptions, Setting, Source, Spec, TargetOptions, VerdictOptions,
};
use scenario::Scenario;

/// Errors in command-line values, each one sentence.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value that fails its option's check (it names the flag or `file:line:col` and key).
    #[error(transparent)]
    Option(#[from] check::Error),
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
    /// `--step-name` or `--step-timeout` without a command after `--`.
    #[error("{0} names the command given after --: give one (gapless run URL {0} ... -- COMMAND)")]
    StepWithoutCommand(&'static str),
    /// `--expect-version` without a way to read versions.
    #[error(
        "--expect-version needs --version-header or --version-regex to know which version answered"
    )]
    ExpectWithoutProbe,
    /// `--slot` longer than `--duration`.
    #[error("--slot ({slot}) is longer than the run (--duration {duration})")]
    SlotLongerThanRun {
        /// The slot.
        slot: String,
        /// The duration.
        duration: String,
    },
    /// `--grpc` and `--grpc-health` together.
    #[error("--grpc and --grpc-health are two calls: give one")]
    GrpcBoth,
    /// `--grpc` without `--proto`.
    #[error("--grpc needs --proto: the .proto file (or descriptor set) that declares the method")]
    GrpcNeedsProto,
    /// `--proto` or `--data` without `--grpc`.
    #[error("{0} with --grpc METHOD")]
    GrpcWithout(&'static str),
    /// The gRPC call cannot be made (it names the file and line, or the field).
    #[error(transparent)]
    Grpc(#[from] crate::client::grpc::Error),
    /// `--status` out of range.
    #[error("--status {0} is not an HTTP status code (100 to 999)")]
    Status(u16),
    /// `--replicas 0`.
    #[error("--replicas must be at least 1")]
    NoReplicas,
    /// A shard option without `--shards`.
    #[error("{0} goes with --shards")]
    NotSharded(&'static str),
    /// `--shards` with a closed loop.
    #[error("--shards splits a fixed rate: give --qps above 0")]
    ShardsNeedRate,
    /// `--shards` without `--start-at`.
    #[error("--shards needs --start-at: the shards' common start of the schedule")]
    ShardsNeedStart,
    /// `--shards` without an index.
    #[error("--shards needs --shard-index (or $JOB_COMPLETION_INDEX, set by an Indexed Job)")]
    ShardIndexMissing,
    /// `--shard-index` not below `--shards`.
    #[error("--shard-index {index} is not a shard of --shards {count} (0 to {})", count - 1)]
    ShardIndexRange {
        /// The index given.
        index: u64,
        /// The number of shards.
        count: u32,
    },
    /// `--merge-gap` or `--slow` for a saved result, whose windows are already found.
    #[error(
        "--merge-gap, --slow and --max-late shape the windows while the load runs: a saved result's cannot change"
    )]
    NotForSaved,
    /// `--merge-gap` on a shard: windows merge once, over every shard's outcomes.
    #[error(
        "--merge-gap with --shards: give it to gapless merge, which finds the windows over every shard"
    )]
    MergeGapOnShard,
    /// A targets file that cannot be read.
    #[error("cannot read --targets {path}: {source}")]
    TargetsRead {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Several targets with a URL on the command line, `--builtin` or a demo.
    #[error(
        "{0} loads one target: give it alone, or the endpoints as --targets FILE or [[target]]"
    )]
    OneTarget(&'static str),
    /// Several targets with `--shards`.
    #[error("--shards splits the load of one target: give several endpoints without --shards")]
    TargetsWithShards,
    /// Two endpoints with one name.
    #[error("two endpoints are named {0:?}: give each [[target]] its own name")]
    SameName(String),
    /// An endpoint with both a weight and a rate of its own.
    #[error("endpoint {0:?} has both a weight and a qps: give one")]
    WeightAndQps(String),
    /// Some endpoints with a rate of their own and some without.
    #[error(
        "endpoint {0:?} has no qps while others have one: give every [[target]] a qps (the run's rate is their sum), or weights of -q"
    )]
    SomeRates(String),
    /// Endpoints with rates of their own, and the run's rate too.
    #[error(
        "the [[target]] qps set the run's rate (their sum, {0} req/s): leave out -q and load.qps, or give weights instead"
    )]
    RatesAndTotal(String),
    /// An endpoint's rate that is not a positive number of requests per second with at most
    /// three decimals.
    #[error(
        "endpoint {name:?} has qps {qps}: an endpoint's rate is more than 0, to the thousandth of a request per second"
    )]
    EndpointRate {
        /// The endpoint.
        name: String,
        /// Its rate, as given.
        qps: f64,
    },
    /// Weights (or rates) too fine to interleave.
    #[error(transparent)]
    TooFine(#[from] crate::config::TooFine),
    /// `--shards` with steps and no `--duration`.
    #[error(
        "--shards with rollout steps needs --duration (or the scenario's load.duration): every shard loads that long, and it must cover the warmup, the steps and the cooldown"
    )]
    ShardsNeedDuration,
    /// `--slow` or `--max-late` given to `gapless merge`.
    #[error(
        "--slow and --max-late shape each shard's results while its load runs: give them to the shards' gapless run"
    )]
    NotForMerge,
}

/// gapless: proves a release did not drop a single request.
#[derive(Debug, Parser)]
#[command(name = "gapless", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The clap command, with each declared option's default and range added to its help.
    pub fn command_with_specs() -> clap::Command {
        let with = |specs: Vec<Spec>| {
            move |command: clap::Command| {
                command.mut_args(|arg| {
                    let Some(spec) = specs.iter().find(|s| arg.get_id() == s.id) else {
                        return arg;
                    };
                    let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                    // A switch is off unless given: no default to show.
                    if let Some(default) = spec.default.filter(|d| *d != "false") {
                        let _ = write!(help, " [default: {default}]");
                    }
                    if let Some(range) = &spec.range {
                        let _ = write!(help, " [range: {range}]");
                    }
                    arg.help(help)
                })
            }
        };
        Cli::command()
            .mut_subcommand("run", with(specs()))
            .mut_subcommand("diff", with(DiffOptions::specs()))
    }

    /// Parses the process's arguments (clap's error when they do not parse).
    pub fn parse_args() -> Result<Cli, clap::Error> {
        Cli::from_arg_matches(&Cli::command_with_specs().try_get_matches()?)
    }

    /// Parses `args` (the first is the program name), as [`Cli::parse_args`] does.
    pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::from_arg_matches(&Cli::command_with_specs().try_get_matches_from(args)?)
    }
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
    /// Re-render a saved JSON result (`run --json`) without re-running: the text report, or any
    /// report with its flag; threshold flags judge it again.
    Report(Box<ReportArgs>),
    /// Join the results of the shards of a split load (`run --shards N`) into one result, judged
    /// once, as if one process had sent the whole schedule.
    Merge(Box<MergeArgs>),
    /// Compare two saved JSON results side by side; exit 1 when NEW is worse than BASE (more
    /// failed requests, a longer gap, a p99 more than 20 % higher; the flags change each limit).
    Diff(Box<DiffArgs>),
    /// Write a shell completion script to stdout, e.g. `source <(gapless completions bash)`.
    Completions(manual::CompletionsArgs),
    /// Write the manual page, gapless(1), in roff to stdout: `gapless man > gapless.1`.
    Man,
}

/// `gapless diff`: two saved results compared, NEW judged against BASE.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline: a JSON result written by `gapless run --json` (or `report`, `merge`).
    #[arg(value_name = "BASE.json")]
    pub base: PathBuf,
    /// The run judged against it.
    #[arg(value_name = "NEW.json")]
    pub new: PathBuf,
    /// How much worse NEW may be.
    #[command(flatten)]
    pub limits: DiffOptions,
    /// Write the comparison as JSON to FILE ('-' for stdout; the table then goes to stderr).
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub json: Option<PathBuf>,
    /// Write the comparison as a Markdown table to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub markdown: Option<PathBuf>,
}

impl DiffArgs {
    /// The limits given, over their defaults.
    pub fn limits(&self) -> Result<DiffLimits, Error> {
        let cx = Context::new(None, &|_| None);
        let o = &self.limits;
        Ok(DiffLimits {
            max_failed_increase: o.max_failed_increase(&cx)?,
            max_gap_increase: o.max_gap_increase(&cx)?,
            max_p99_increase: o.max_p99_increase(&cx)?,
        })
    }

    /// The report files asked for.
    pub fn files(&self) -> impl Iterator<Item = &std::path::Path> {
        [&self.json, &self.markdown]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// `gapless merge`: shard results joined into one and judged.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard results: JSON files (`run --json`) or logs holding a shard's one-line result (a
    /// shard without --json prints it on stdout); `-` reads them from stdin, e.g. from
    /// `kubectl logs`.
    #[arg(required = true, value_name = "FILE")]
    pub results: Vec<PathBuf>,
    /// Thresholds to judge the merged result against instead of shard 0's.
    #[command(flatten)]
    pub verdict: VerdictOptions,
    /// Where the reports go (without any, the text report goes to stdout).
    #[command(flatten)]
    pub output: Outputs,
}

impl MergeArgs {
    /// The thresholds given, over those shard 0 was judged against, and the merge distance of
    /// failure windows (`--merge-gap`, applied over every shard's outcomes).
    pub fn limits(&self, saved: &Limits) -> Result<(Limits, std::time::Duration), Error> {
        let cx = Context::new(None, &|_| None);
        if self.verdict.slow.is_some() || self.verdict.max_late.is_some() {
            return Err(Error::NotForMerge);
        }
        let merge_gap = self.verdict.merge_gap(&cx)?.value;
        Ok((saved.with(limits(&self.verdict, &cx)?), merge_gap))
    }
}

/// `gapless report`: a saved result rendered again, judged again if thresholds are given.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A JSON result written by `gapless run --json`.
    pub result: PathBuf,
    /// Thresholds to judge the saved result against instead of its own.
    #[command(flatten)]
    pub verdict: VerdictOptions,
    /// Where the reports go (without any, the text report goes to stdout).
    #[command(flatten)]
    pub output: Outputs,
}

impl ReportArgs {
    /// The thresholds given, over those the saved `result` was judged against.
    pub fn limits(&self, saved: &Limits) -> Result<Limits, Error> {
        let cx = Context::new(None, &|_| None);
        if self.verdict.merge_gap.is_some()
            || self.verdict.slow.is_some()
            || self.verdict.max_late.is_some()
        {
            return Err(Error::NotForSaved);
        }
        Ok(saved.with(limits(&self.verdict, &cx)?))
    }
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
            replicas: NonZeroUsize::new(self.replicas).ok_or(Error::NoReplicas)?,
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
    /// What to send.
    #[command(flatten)]
    pub target: TargetOptions,
    /// Start the built-in target on a free loopback port and load it (a first try, no setup).
    #[arg(long, conflicts_with = "url", help_heading = "Target")]
    pub builtin: bool,
    /// Scenario file (TOML): target, load, rollout steps and thresholds.
    #[arg(long, value_name = "FILE", help_heading = "Target")]
    pub scenario: Option<PathBuf>,
    /// Several endpoints, each judged, in vegeta's targets format ('-' for stdin): -q is their
    /// total rate, shared in a fixed interleave.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["url", "builtin"], help_heading = "Target")]
    pub targets: Option<PathBuf>,
    /// How much load.
    #[command(flatten)]
    pub load: LoadOptions,
    /// The rollout, as one command run after the warmup: gapless run URL -- kubectl rollout ...
    #[arg(last = true, value_name = "COMMAND", help_heading = "Rollout")]
    pub command: Vec<String>,
    /// Name of the command given after -- in the reports [default: the command].
    #[arg(long, value_name = "NAME", help_heading = "Rollout")]
    pub step_name: Option<String>,
    /// Timeout of the command given after --: its process group is killed and the step fails.
    #[arg(long, value_name = "DUR", help_heading = "Rollout")]
    pub step_timeout: Option<Given<String>>,
    /// The thresholds.
    #[command(flatten)]
    pub verdict: VerdictOptions,
    /// Live metrics.
    #[command(flatten)]
    pub metrics: MetricsOptions,
    /// Redact the values of this header in every report (repeatable; Authorization,
    /// Proxy-Authorization, Cookie, Set-Cookie and X-Api-Key always are).
    #[arg(long = "redact", value_name = "NAME", help_heading = "Reports")]
    pub redact: Vec<String>,
    /// Redact the value of this environment variable wherever it appears in step output, events
    /// and reports (repeatable; variables named like *TOKEN*, *SECRET*, *PASSWORD*, *KEY* and
    /// *CREDENTIAL* always are).
    #[arg(long = "redact-env", value_name = "NAME", help_heading = "Reports")]
    pub redact_env: Vec<String>,
    /// Where the reports go.
    #[command(flatten)]
    pub output: Outputs,
}

/// What `gapless run` loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// A URL given on the command line or in the scenario.
    Url,
    /// The built-in target (`--builtin`), started by the caller on a free loopback port.
    Builtin,
    /// The embedded demo cluster of the scenario's `[target] demo`, started by the caller.
    Demo(DemoSpec),
}

/// A validated `gapless run`.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The run. With [`Start::Builtin`] or [`Start::Demo`], `config.target.url` is a
    /// placeholder the caller replaces with the started target's URL.
    pub config: RunConfig,
    /// What to load.
    pub start: Start,
    /// Where the reports go.
    pub output: Outputs,
    /// What is published live (`--metrics-listen`, `--metrics-push`).
    pub metrics: crate::metrics::MetricsConfig,
}

/// Every declared option of `gapless run`, in `--help` order (those with a scenario key, then the
/// step's timeout of the quick form).
pub fn specs() -> Vec<Spec> {
    let load = LoadOptions::specs();
    // An endpoint's own `qps` (`[[target]]` only, no flag) shares its name with `--qps`: it
    // comes after the run's, so a lookup by name finds the flag's.
    let (mut specs, shadowed): (Vec<Spec>, Vec<Spec>) = TargetOptions::specs()
        .into_iter()
        .partition(|s| !load.iter().any(|l| l.id == s.id));
    specs.extend(load);
    specs.extend(VerdictOptions::specs());
    specs.extend(MetricsOptions::specs());
    specs.extend(shadowed);
    specs.push(Spec {
        id: "step_timeout",
        key: None,
        default: Some("10m"),
        range: Some(format!(
            "{} to {}",
            show(STEP_TIMEOUT_RANGE.min()),
            show(STEP_TIMEOUT_RANGE.max())
        )),
    });
    specs
}

/// README's table of `gapless run`'s options, generated from the declarations: flag, scenario
/// key, default, range and meaning (a unit test keeps README in step with it).
pub fn options_markdown() -> String {
    let specs = specs();
    let command = Cli::command();
    let Some(run) = command.find_subcommand("run") else {
        return String::new();
    };
    let mut out = String::from(
        "| option | scenario key | default | range | meaning |\n|---|---|---|---|---|\n",
    );
    for arg in run.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" {
            continue;
        }
        let value = arg
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string());
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(s), Some(l)) => format!("-{s}, --{l}"),
            (None, Some(l)) => format!("--{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, None) if arg.is_last_set() => "-- COMMAND...".to_string(),
            (None, None) => value.clone().unwrap_or_else(|| id.to_uppercase()),
        };
        let flag = match (&value, arg.get_long()) {
            (Some(v), Some(_))
                if arg.get_action().takes_values()
                    && arg.get_num_args().is_none_or(|n| n.max_values() > 0) =>
            {
                format!("{flag} {v}")
            }
            _ => flag,
        };
        let spec = specs.iter().find(|s| s.id == id);
        let cell = |text: Option<String>| text.unwrap_or_default().replace('|', "\\|");
        let _ = writeln!(
            out,
            "| `{flag}` | {} | {} | {} | {} |",
            cell(spec.and_then(|s| s.key.clone()).map(|k| format!("`{k}`"))),
            cell(
                spec.and_then(|s| s.default)
                    .filter(|d| *d != "false")
                    .map(str::to_string)
            ),
            cell(spec.and_then(|s| s.range.clone())),
            cell(arg.get_help().map(|h| h.to_string())),
        );
    }
    out
}

/// The text of a `--targets` file (`-`: stdin).
fn read_targets(path: &std::path::Path) -> Result<String, Error> {
    let failed = |source| Error::TargetsRead {
        path: path.display().to_string(),
        source,
    };
    if path == std::path::Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(failed)?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(failed)
}

/// A placeholder URL for a target the caller starts after validation.
fn unbound_url() -> TargetUrl {
    // A constant, valid URL.
    "http://127.0.0.1:0/"
        .parse()
        .unwrap_or_else(|_| unreachable!("a valid URL"))
}

impl RunArgs {
    /// Reads the `--scenario` file, if any.
    pub fn scenario(&self) -> Result<Option<Scenario>, Error> {
        self.scenario
            .as_deref()
            .map(Scenario::load)
            .transpose()
            .map_err(Error::from)
    }

    /// Validates the arguments, over the scenario's values, into a run configuration; `env`
    /// looks up the scenario's `${VAR}` and the secrets to redact.
    pub fn validate(
        &self,
        scenario: Option<&Scenario>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Validated, Error> {
        let empty = Scenario::default();
        let file = scenario.unwrap_or(&empty);
        let cx = file.context(env);
        // The endpoints: --targets FILE's, else the scenario's [[target]] (each checked in the
        // context of the file it is written in).
        let targets_text = match &self.targets {
            Some(path) => Some((path.clone(), read_targets(path)?)),
            None => None,
        };
        let targets_cx = targets_text.as_ref().map(|(path, text)| {
            Context::new(Some(check::ScenarioText { path, source: text }), &|_| None)
        });
        let (tcx, listed) = match (&targets_text, &targets_cx) {
            (Some((path, text)), Some(tcx)) => (tcx, targets::parse(path, text)?),
            _ => (&cx, file.targets.clone()),
        };
        let several = listed.len() > 1;
        let target = match listed.as_slice() {
            [one] => self.target.clone().or(one.clone()),
            [] => self.target.clone().or(file.target.clone()),
            _ => {
                if self.builtin {
                    return Err(Error::OneTarget("--builtin"));
                }
                if self.target.url.is_some() {
                    return Err(Error::OneTarget("a URL on the command line"));
                }
                // A placeholder: each endpoint's options are checked below.
                TargetOptions {
                    url: Some(Given::command(unbound_url().to_string())),
                    ..self.target.clone()
                }
            }
        };
        let load = self.load.clone().or(file.load.clone());
        let verdict = self.verdict.clone().or(file.verdict.clone());
        let metrics = self.metrics.clone().or(file.metrics.clone());
        let metrics = crate::metrics::MetricsConfig {
            listen: metrics.listen(&cx)?.map(Setting::into_value),
            linger: metrics.linger(&cx)?.value,
            push: metrics.push(&cx)?.map(Setting::into_value),
        };
        let shares = shares(&listed, tcx)?;

        let demo = target.demo(tcx)?;
        let start = if self.builtin {
            Start::Builtin
        } else if let Some(demo) = demo {
            if self.target.url.is_some() {
                return Err(Error::UrlWithDemo);
            }
            Start::Demo(demo.value)
        } else if target.url.is_some() {
            Start::Url
        } else {
            return Err(Error::NoTarget);
        };
        let url = match (&start, target.url(tcx)?) {
            (Start::Url, Some(url)) => url.value,
            _ => unbound_url(),
        };
        let rate = match shares.total {
            Some(total) if load.qps.is_some() => {
                return Err(Error::RatesAndTotal(total.to_string()));
            }
            Some(total) => Rate::from_qps(total).unwrap_or(Rate::Max),
            None => load.qps(&cx)?.value,
        };
        let shard = shard_plan(&load, rate, &cx)?;
        let mut steps = self.steps(&file.steps)?;
        // Every shard lasts --duration, which must then cover the rollout: given, never the
        // default.
        if shard.is_some() && !steps.is_empty() && load.duration.is_none() {
            return Err(Error::ShardsNeedDuration);
        }
        // Shard 0 conducts the rollout; the other shards only load.
        if shard.as_ref().is_some_and(|s| s.index != 0) {
            steps.clear();
        }
        let has_steps = !steps.is_empty();
        if has_steps && self.load.duration.is_some() && shard.is_none() {
            return Err(Error::DurationWithSteps);
        }
        // With steps the run lasts warmup, steps and cooldown: a file's duration does not apply,
        // unless the load is sharded (every shard lasts --duration).
        let duration = if has_steps && shard.is_none() {
            LoadOptions::default().duration(&cx)?.value
        } else {
            load.duration(&cx)?.value
        };
        // A slot given explicitly must fit; without one the timeline sizes it to the run.
        let slot = load.slot(&cx)?.map(Setting::into_value);
        if let Some(slot) = slot
            && !has_steps
            && slot > duration
        {
            return Err(Error::SlotLongerThanRun {
                slot: show(slot),
                duration: show(duration),
            });
        }
        let max_connect_rate = match load.max_connect_rate(&cx)? {
            Some(n) => n.value,
            None => {
                let per_second = rate.qps().map_or(1000.0, |q| q.max(1000.0).ceil());
                NonZeroU32::new(per_second.min(f64::from(u32::MAX)) as u32)
                    .unwrap_or(NonZeroU32::MIN)
            }
        };

        let single = target_config(&target, url, tcx)?;
        let mut endpoints = Vec::new();
        if several {
            if shard.is_some() {
                return Err(Error::TargetsWithShards);
            }
            for (listed, &weight) in listed.iter().zip(&shares.weights) {
                let options = self.target.clone().or(listed.clone());
                let url = options
                    .url(tcx)?
                    .map(Setting::into_value)
                    .ok_or(Error::NoTarget)?;
                let config = target_config(&options, url, tcx)?;
                let name = match options.name(tcx)? {
                    Some(name) => name.value,
                    None => format!("{} {}", config.method, config.url),
                };
                if endpoints.iter().any(|e: &Endpoint| e.name == name) {
                    return Err(Error::SameName(name));
                }
                endpoints.push(Endpoint {
                    name,
                    target: config,
                    weight,
                });
            }
            let weights: Vec<NonZeroU32> = endpoints.iter().map(|e| e.weight).collect();
            crate::config::Interleave::weighted(&weights)?;
        }
        let probes = |t: &TargetConfig| t.version_header.is_some() || t.version_regex.is_some();
        if verdict.expect_version.is_some()
            && (!probes(&single) || endpoints.iter().any(|e| !probes(&e.target)))
        {
            return Err(Error::ExpectWithoutProbe);
        }
        let limits = limits(&verdict, &cx)?;
        // The probes run in one process: a sharded load's shard 0, as for the steps.
        let streams = match &shard {
            Some(s) if s.index != 0 => Vec::new(),
            _ => streams::configs(&file.streams, &cx, single.insecure, &single.ca_certs)?,
        };
        let config = RunConfig {
            target: endpoints
                .first()
                .map_or(single, |first| first.target.clone()),
            targets: endpoints,
            load: LoadConfig {
                rate,
                connections: load.connections(&cx)?.value,
                streams: load.streams(&cx)?.value,
                duration,
                slot,
                max_connect_rate,
                threads: load.threads(&cx)?.map(Setting::into_value),
                shard,
            },
            rollout: RolloutConfig {
                warmup: load.warmup(&cx)?.value,
                cooldown: load.cooldown(&cx)?.value,
                steps,
            },
            verdict: VerdictConfig {
                limits: Limits::default().with(limits),
                merge_gap: verdict.merge_gap(&cx)?.value,
                slow: verdict.slow(&cx)?.map(Setting::into_value),
                max_late: verdict.max_late(&cx)?.map(Setting::into_value),
            },
            redact: Redactor::new(&self.redact, secrets(&self.redact_env, &cx, env)),
            streams,
        };
        let mut output = self.output.clone();
        if config.load.shard.is_some() {
            if !config.verdict.merge_gap.is_zero() {
                return Err(Error::MergeGapOnShard);
            }
            // A shard's result is for `gapless merge`: one JSON line on stdout, which the logs
            // of a Job's pods carry, unless it goes to a file.
            output.json_line = output.json.is_none();
        }
        Ok(Validated {
            config,
            start,
            output,
            metrics,
        })
    }

    /// The steps: the command after `--` (the quick form) replaces the file's.
    fn steps(&self, file: &[Step]) -> Result<Vec<Step>, Error> {
        if self.command.is_empty() {
            if self.step_name.is_some() {
                return Err(Error::StepWithoutCommand("--step-name"));
            }
            if self.step_timeout.is_some() {
                return Err(Error::StepWithoutCommand("--step-timeout"));
            }
            return Ok(file.to_vec());
        }
        let cx = Context::new(None, &|_| None);
        let timeout = match &self.step_timeout {
            Some(given) => {
                let place = Place {
                    flag: "--step-timeout",
                    key: "step.timeout",
                    origin: &Origin::Command,
                };
                STEP_TIMEOUT_RANGE
                    .parse(&given.value)
                    .map_err(|m| place.error(&cx, m))?
            }
            None => STEP_TIMEOUT,
        };
        let action = Action::Exec(self.command.clone());
        let command = action.to_string();
        Ok(vec![Step {
            name: self.step_name.clone().unwrap_or_else(|| command.clone()),
            command,
            action,
            at: None,
            timeout,
            expect_exit: 0,
            background: false,
        }])
    }
}

/// What to send to one target, from its options (the command line's over the file's) and its
/// URL.
fn target_config(
    target: &TargetOptions,
    url: TargetUrl,
    cx: &Context,
) -> Result<TargetConfig, Error> {
    let mut headers = HeaderMap::new();
    for h in target.headers(cx)? {
        let (name, value) = h.value;
        headers.append(name, value);
    }
    if let Some(auth) = url.basic_auth()
        && !headers.contains_key(header::AUTHORIZATION)
        && let Ok(value) = header::HeaderValue::from_str(&auth)
    {
        headers.insert(header::AUTHORIZATION, value);
    }
    // body or body_file: the command line's choice over the file's.
    let body = match (target.body(cx)?, target.body_file(cx)?) {
        (Some(body), Some(file)) => command_line_first(body, file),
        (Some(one), None) | (None, Some(one)) => one.value,
        (None, None) => bytes::Bytes::new(),
    };
    let (version_header, version_regex) = {
        let header = target.version_header(cx)?;
        let regex = target.version_regex(cx)?;
        match (&header, &regex) {
            (Some(h), Some(_)) if matches!(h.source, Source::Flag(_)) => (header, None),
            (Some(_), Some(r)) if matches!(r.source, Source::Flag(_)) => (None, regex),
            _ => (header, regex),
        }
    };
    let call = grpc::call(target, cx)?.map(std::sync::Arc::new);
    let ok_codes = target.ok_codes(cx)?;
    let ok_codes = match &call {
        // A gRPC call's success is its own code, unless --ok-codes says otherwise.
        Some(call) if !ok_codes.source.is_given() => crate::config::OkCodes::only(call.success()),
        _ => ok_codes.value,
    };
    Ok(TargetConfig {
        url,
        method: target.method(cx)?.value,
        headers,
        body,
        timeout: target.timeout(cx)?.value,
        ok_codes,
        http2: call.is_some() || target.http2(cx)?.value,
        grpc: call,
        insecure: target.insecure(cx)?.value,
        ca_certs: target
            .cacert(cx)?
            .map(Setting::into_value)
            .unwrap_or_default(),
        version_header: version_header.map(Setting::into_value),
        version_regex: version_regex.map(Setting::into_value),
    })
}

/// The thresholds given (on the command line over the scenario file, or to `gapless report`).
pub fn limits(verdict: &VerdictOptions, cx: &Context) -> Result<Limits, Error> {
    Ok(Limits {
        max_failures: verdict.max_failures(cx)?,
        max_failure_ratio: verdict.max_failure_ratio(cx)?,
        max_gap: verdict.max_gap(cx)?,
        max_p99: verdict.max_p99(cx)?,
        expect_version: verdict.expect_version(cx)?,
        // Its default is Limits::default()'s (a unit test keeps the two equal).
        max_stall: Some(verdict.max_stall(cx)?).filter(|s| s.source.is_given()),
        allow_warmup_errors: verdict.allow_warmup_errors(cx)?.value,
        max_ungraceful_disconnects: verdict.max_ungraceful_disconnects(cx)?,
        max_stream_gap: verdict.max_stream_gap(cx)?,
    })
}

/// How the run's rate is shared between its endpoints.
struct Shares {
    /// Each listed endpoint's weight, reduced (1 each without weights or rates).
    weights: Vec<NonZeroU32>,
    /// With a rate for every endpoint: the run's, their sum.
    total: Option<f64>,
}

/// The endpoints' `weight`s, or their own `qps` turned into weights (in thousandths of a
/// request per second) and a total; equal shares when neither is given.
fn shares(listed: &[TargetOptions], cx: &Context) -> Result<Shares, Error> {
    let name = |t: &TargetOptions, i: usize| -> Result<String, Error> {
        Ok(match t.name(cx)? {
            Some(n) => n.value,
            None => match t.url(cx)? {
                Some(u) => u.value.to_string(),
                None => format!("#{}", i + 1),
            },
        })
    };
    let mut weights = Vec::with_capacity(listed.len());
    let mut rates = Vec::new();
    for (i, t) in listed.iter().enumerate() {
        let (weight, qps) = (t.weight(cx)?, t.qps(cx)?);
        match (weight, qps) {
            (Some(_), Some(_)) => return Err(Error::WeightAndQps(name(t, i)?)),
            (_, Some(q)) => {
                let q = q.value.qps().unwrap_or(0.0);
                let milli = (q * 1000.0).round();
                if milli < 1.0 || (milli - q * 1000.0).abs() > 1e-6 * milli.max(1.0) {
                    return Err(Error::EndpointRate {
                        name: name(t, i)?,
                        qps: q,
                    });
                }
                rates.push((i, milli as u64));
            }
            (weight, None) => weights.push(weight.map_or(NonZeroU32::MIN, |w| w.value)),
        }
    }
    if rates.is_empty() {
        return Ok(Shares {
            weights,
            total: None,
        });
    }
    if let Some(i) = (0..listed.len()).find(|i| !rates.iter().any(|(r, _)| r == i)) {
        return Err(Error::SomeRates(name(&listed[i], i)?));
    }
    let g = rates
        .iter()
        .fold(0u64, |g, &(_, m)| crate::config::gcd(g, m))
        .max(1);
    let sum: u64 = rates.iter().map(|&(_, m)| m / g).sum();
    if sum > crate::config::MAX_PERIOD {
        return Err(crate::config::TooFine(sum).into());
    }
    let weights = rates
        .iter()
        .map(|&(_, m)| NonZeroU32::new((m / g) as u32).unwrap_or(NonZeroU32::MIN))
        .collect();
    let total = rates.iter().map(|&(_, m)| m).sum::<u64>() as f64 / 1000.0;
    Ok(Shares {
        weights,
        total: Some(total),
    })
}

/// The shard this process is, with `--shards`: a fixed rate, a common start and an index below
/// the count are needed.
fn shard_plan(load: &LoadOptions, rate: Rate, cx: &Context) -> Result<Option<ShardPlan>, Error> {
    let Some(count) = load.shards(cx)? else {
        if load.start_at.is_some() {
            return Err(Error::NotSharded("--start-at"));
        }
        return Ok(None);
    };
    if rate.qps().is_none() {
        return Err(Error::ShardsNeedRate);
    }
    let start_at = load.start_at(cx)?.ok_or(Error::ShardsNeedStart)?.value;
    let index = load.shard_index(cx)?.ok_or(Error::ShardIndexMissing)?.value;
    let index = u32::try_from(index)
        .ok()
        .filter(|&i| i < count.value.get())
        .ok_or(Error::ShardIndexRange {
            index,
            count: count.value.get(),
        })?;
    let label = match load.shard_label(cx)? {
        Some(label) => label.value,
        None => host_name(),
    };
    Ok(Some(ShardPlan {
        index,
        count: count.value,
        label,
        start_at,
        interleave: std::sync::Arc::new(crate::config::Interleave::equal(count.value)),
    }))
}

/// This machine's host name (a shard's label when `$NODE_NAME` is not set).
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Of two alternatives both set after the merge, the one from the command line.
fn command_line_first<T>(a: Setting<T>, b: Setting<T>) -> T {
    if matches!(b.source, Source::Flag(_)) {
        b.value
    } else {
        a.value
    }
}

/// Whether a variable's name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL"]
        .iter()
        .any(|word| upper.contains(word))
}

/// Shortest value of a secret-named variable of the environment that is redacted when gapless did
/// not expand it itself (shorter values are not secrets, and would mangle every line).
const SHORTEST_INHERITED_SECRET: usize = 4;

/// The values to keep out of every report: of the variables the scenario expanded whose names say
/// they are secret, of the `--redact-env` variables, and of the secret-named variables of the
/// environment the steps inherit.
fn secrets(
    redact_env: &[String],
    cx: &Context,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let named = |name: &str| is_secret_name(name) || redact_env.iter().any(|n| n == name);
    let mut values: Vec<String> = cx
        .expanded()
        .into_iter()
        .filter(|(name, _)| named(name))
        .map(|(_, value)| value)
        .chain(redact_env.iter().filter_map(|name| env(name)))
        .chain(
            std::env::vars()
                .filter(|(name, value)| {
                    is_secret_name(name) && value.len() >= SHORTEST_INHERITED_SECRET
                })
                .map(|(_, value)| value),
        )
        .filter(|v| !v.is_empty())
        .collect();
    values.sort();
    values.dedup();
    values
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
        match Cli::parse_from(argv).unwrap().command {
            Command::Run(a) => *a,
            _ => unreachable!(),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn validate(a: &RunArgs, scenario: Option<&Scenario>) -> Result<Validated, Error> {
        a.validate(scenario, &no_env)
    }

    fn error(extra: &[&str]) -> String {
        validate(&args(extra), None).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let v = validate(&args(&[]), None).unwrap();
        let config = v.config;
        assert_eq!(config.load.rate.qps(), Some(100.0));
        assert_eq!(config.load.connections.get(), 16);
        assert_eq!(config.load.duration, Duration::from_secs(10));
        assert_eq!(config.target.timeout, Duration::from_secs(3));
        assert_eq!(config.load.max_connect_rate.get(), 1000);
        assert_eq!(config.verdict, VerdictConfig::default());
        assert!(v.output.json.is_none());
        assert_eq!(v.start, Start::Url);
    }

    #[test]
    fn impossible_values_are_one_sentence_each() {
        assert!(error(&["-q", "-5"]).contains("--qps"));
        assert_eq!(
            error(&["-c", "0"]),
            "--connections must be at least 1 (got 0)"
        );
        assert!(error(&["-d", "0s"]).contains("--duration must be at least"));
        assert!(error(&["--slot", "1ms"]).contains("--slot must be at least 10ms"));
        assert!(error(&["-d", "1s", "--slot", "2s"]).contains("longer than the run"));
        assert!(error(&["-H", "nocolon"]).contains("'Name: value'"));
        assert!(error(&["--ok-codes", "2xx"]).contains("--ok-codes"));
        assert!(error(&["--body-file", "/nonexistent/body"]).contains("cannot read"));
    }

    #[test]
    fn every_numeric_option_has_a_range() {
        for (flags, mention) in [
            (&["-q", "1e300"][..], "--qps must be at most"),
            (
                &["-q", "1e-20"],
                "--qps must be 0 (a closed loop) or at least 0.001",
            ),
            (&["-c", "100000000"], "--connections must be at most 10000"),
            (&["--streams", "0"], "--streams must be at least 1"),
            (&["--timeout", "18446744073709551615s"], "--timeout"),
            (&["--timeout", "2h"], "--timeout must be at most 1h"),
            (&["-d", "1000d"], "--duration must be at most"),
            (&["--threads", "0"], "--threads must be at least 1"),
            (
                &["--max-connect-rate", "-1"],
                "--max-connect-rate must be at least 1",
            ),
            (
                &["--max-failures", "-1"],
                "--max-failures must be 0 or more",
            ),
            (&["--max-failure-ratio", "1.5"], "between 0 and 1"),
            (&["--warmup", "25h"], "--warmup must be at most 1day"),
            (&["-X", "CONNECT"], "-X"),
        ] {
            let e = error(flags);
            assert!(
                e.contains(mention) || (mention == "-X" && e.contains("--method: CONNECT")),
                "{flags:?}: {e}"
            );
        }
    }

    #[test]
    fn help_shows_each_default_and_range() {
        let mut cmd = Cli::command_with_specs();
        let run = cmd.find_subcommand_mut("run").unwrap();
        let help = run.render_help().to_string();
        assert!(
            help.contains("[default: 100] [range: 0 (closed loop), or 0.001 to 1000000000]"),
            "{help}"
        );
        assert!(
            help.contains("[default: 10m] [range: 1ms to 1day]"),
            "{help}"
        );
        for heading in ["Target:", "Load:", "Rollout:", "Verdict:", "Reports:"] {
            assert!(help.contains(heading), "{heading} in {help}");
        }
    }

    #[test]
    fn diff_takes_two_results_and_its_limits() {
        let mut cmd = Cli::command_with_specs();
        let help = cmd
            .find_subcommand_mut("diff")
            .unwrap()
            .render_help()
            .to_string();
        assert!(
            help.contains("[default: 20] [range: 0% to 1000000%]"),
            "{help}"
        );
        let cli = Cli::parse_from([
            "gapless",
            "diff",
            "a.json",
            "b.json",
            "--max-gap-increase",
            "50ms",
        ])
        .unwrap();
        let Command::Diff(args) = cli.command else {
            panic!("not diff");
        };
        assert_eq!(args.base, PathBuf::from("a.json"));
        let limits = args.limits().unwrap();
        assert_eq!(limits.max_gap_increase.value, Duration::from_millis(50));
        assert_eq!(
            limits.max_gap_increase.source,
            Source::Flag("--max-gap-increase".into())
        );
        assert_eq!(
            limits.max_failed_increase,
            DiffLimits::default().max_failed_increase
        );
        assert!(
            Cli::parse_from(["gapless", "diff", "a.json"]).is_err(),
            "NEW is required"
        );
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
        let config = validate(&a, Some(&scenario)).unwrap().config;
        assert_eq!(config.target.url.port(), 1, "the command line's URL wins");
        assert_eq!(config.load.rate.qps(), Some(70.0));
        assert_eq!(config.load.connections.get(), 4);
        assert_eq!(config.target.headers["x-a"], "cli");
        assert_eq!(config.target.headers["x-b"], "file");
        assert_eq!(config.rollout.warmup, Duration::from_secs(1));
        assert_eq!(config.rollout.cooldown, Duration::from_secs(2));
        assert_eq!(config.rollout.steps.len(), 1);
        assert_eq!(
            config.verdict.limits.max_failures,
            Some(Setting::from(3, Source::Key("verdict.max_failures".into())))
        );
        // The trailing command replaces the file's steps; --duration does not fit a rollout.
        let a = args(&["--", "kubectl", "rollout", "restart", "deploy/web"]);
        let config = validate(&a, Some(&scenario)).unwrap().config;
        assert_eq!(
            config.rollout.steps[0].name,
            "kubectl rollout restart deploy/web"
        );
        assert_eq!(config.rollout.warmup, Duration::from_secs(1));
        assert!(error(&["-d", "5s", "--", "true"]).contains("--duration does not apply"));
        assert!(error(&["--max-failure-ratio", "1.5"]).contains("between 0 and 1"));
    }

    #[test]
    fn several_targets_share_the_declarations_and_the_command_line() {
        let parse = |text: &str| {
            Scenario::parse(std::path::Path::new("s.toml"), text, &|_| None)
                .map_err(|e| e.to_string())
        };
        let scenario = parse(
            "[[target]]\nname = \"site\"\nurl = \"http://127.0.0.1:2/\"\n\
             [[target]]\nurl = \"http://127.0.0.1:3/api\"\nmethod = \"POST\"\ntimeout = \"2s\"\n\
             headers = { X-A = \"file\" }\n",
        )
        .unwrap();
        let scenario_args = |extra: &[&str]| {
            let mut argv = vec!["gapless", "run", "--scenario", "s.toml"];
            argv.extend_from_slice(extra);
            match Cli::parse_from(argv).unwrap().command {
                Command::Run(a) => *a,
                _ => unreachable!(),
            }
        };
        let config = validate(&scenario_args(&["-H", "X-A: cli"]), Some(&scenario))
            .unwrap()
            .config;
        assert_eq!(config.targets.len(), 2);
        assert_eq!(config.targets[0].name, "site");
        assert_eq!(config.targets[1].name, "POST http://127.0.0.1:3/api");
        assert_eq!(config.targets[1].target.timeout, Duration::from_secs(2));
        assert_eq!(config.targets[0].target.timeout, Duration::from_secs(3));
        // A flag applies to every endpoint, over the file's value.
        for t in &config.targets {
            assert_eq!(t.target.headers["x-a"], "cli");
        }
        assert_eq!(config.target.url.port(), 2, "the first endpoint's");
        // One URL on the command line, --builtin or --shards: one target only.
        let one = |extra: &[&str]| {
            let mut argv = vec![
                "gapless",
                "run",
                "--scenario",
                "s.toml",
                "http://127.0.0.1:9/",
            ];
            argv.extend_from_slice(extra);
            match Cli::parse_from(argv).unwrap().command {
                Command::Run(a) => validate(&a, Some(&scenario)).unwrap_err().to_string(),
                _ => unreachable!(),
            }
        };
        assert!(one(&[]).starts_with("a URL on the command line loads one target"));
        let e = validate(
            &scenario_args(&["--shards", "2", "--shard-index", "0", "--start-at", "0"]),
            Some(&scenario),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("--shards splits the load of one target"),
            "{e}"
        );
        // One [[target]] is a run of one target, as [target] is.
        let single = parse("[[target]]\nname = \"x\"\nurl = \"http://127.0.0.1:2/\"\n").unwrap();
        let config = validate(&scenario_args(&[]), Some(&single)).unwrap().config;
        assert!(config.targets.is_empty());
        assert_eq!(config.target.url.port(), 2);
        // Each [[target]] needs a url; the demo goes in [target] alone.
        assert_eq!(
            parse("[[target]]\nurl = \"http://a/\"\n\n[[target]]\nname = \"b\"\n").unwrap_err(),
            "s.toml:4:1: target[2].url: each [[target]] needs a url"
        );
        assert!(
            parse("[[target]]\nurl = \"http://a/\"\n[[target]]\ndemo = {}\n")
                .unwrap_err()
                .contains("target[2].demo: the demo cluster goes in a single [target] table")
        );
    }

    #[test]
    fn the_quick_form_names_and_times_its_step() {
        let a = args(&[
            "--step-name",
            "restart web",
            "--step-timeout",
            "90s",
            "--",
            "true",
        ]);
        let step = &validate(&a, None).unwrap().config.rollout.steps[0];
        assert_eq!(step.name, "restart web");
        assert_eq!(step.command, "true");
        assert_eq!(step.timeout, Duration::from_secs(90));
        assert!(
            error(&["--step-name", "x"]).contains("--step-name names the command given after --")
        );
        assert!(
            error(&["--step-timeout", "0s", "--", "true"])
                .contains("--step-timeout must be at least 1ms")
        );
    }

    #[test]
    fn a_ratio_or_a_count_alone_replaces_the_zero_tolerance_defaults() {
        let v = |extra: &[&str]| {
            let verdict = validate(&args(extra), None).unwrap().config.verdict.limits;
            let value = |s: Option<Setting<u64>>| s.map(|s| s.value);
            let gap = |s: Option<Setting<Duration>>| s.map(|s| s.value);
            let ratio = verdict.max_failure_ratio.map(|s| s.value);
            Thresholds {
                max_failures: value(verdict.max_failures),
                max_failure_ratio: ratio,
                max_gap: gap(verdict.max_gap),
            }
        };
        struct Thresholds {
            max_failures: Option<u64>,
            max_failure_ratio: Option<f64>,
            max_gap: Option<Duration>,
        }
        let ratio = v(&["--max-failure-ratio", "0.5"]);
        assert_eq!(
            (ratio.max_failures, ratio.max_failure_ratio, ratio.max_gap),
            (None, Some(0.5), None)
        );
        let count = v(&["--max-failures", "3"]);
        assert_eq!((count.max_failures, count.max_gap), (Some(3), None));
        let gap = v(&["--max-gap", "100ms"]);
        assert_eq!(
            (gap.max_failures, gap.max_gap),
            (None, Some(Duration::from_millis(100)))
        );
        let both = v(&["--max-failures", "3", "--max-gap", "0s"]);
        assert_eq!(
            (both.max_failures, both.max_gap),
            (Some(3), Some(Duration::ZERO))
        );
    }

    #[test]
    fn url_credentials_become_basic_authorization() {
        let mut argv = vec!["gapless", "run", "http://user:pass@127.0.0.1:1/"];
        let config = match Cli::parse_from(argv.clone()).unwrap().command {
            Command::Run(a) => validate(&a, None).unwrap().config,
            _ => unreachable!(),
        };
        assert_eq!(config.target.url.authority(), "127.0.0.1:1");
        assert_eq!(config.target.headers["authorization"], "Basic dXNlcjpwYXNz");
        argv.extend(["-H", "Authorization: Bearer x"]);
        let config = match Cli::parse_from(argv).unwrap().command {
            Command::Run(a) => validate(&a, None).unwrap().config,
            _ => unreachable!(),
        };
        assert_eq!(config.target.headers["authorization"], "Bearer x");
    }

    #[test]
    fn url_problems() {
        assert!(validate(&args(&[]), None).is_ok());
        let bad = match Cli::parse_from(["gapless", "run", "ftp://x/"])
            .unwrap()
            .command
        {
            Command::Run(a) => *a,
            _ => unreachable!(),
        };
        let e = validate(&bad, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "target URL \"ftp://x/\" has an unsupported scheme: use http:// or https://"
        );
    }

    /// README's options table is generated: `GAPLESS_BLESS=1 cargo test readme` rewrites it.
    #[test]
    fn readme_lists_every_option_with_its_default_and_range() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- options:begin -->\n", "<!-- options:end -->");
        let start = readme.find(begin).expect("README has the options markers") + begin.len();
        let stop = readme.find(end).expect("README has the options markers");
        let table = options_markdown();
        if std::env::var_os("GAPLESS_BLESS").is_some() {
            let updated = format!("{}{table}{}", &readme[..start], &readme[stop..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            assert_eq!(
                readme[start..stop],
                table,
                "README's options table is stale: run GAPLESS_BLESS=1 cargo test readme"
            );
        }
        // The scenario example names every key of each table.
        for spec in specs() {
            let Some(key) = spec.key else { continue };
            let (section, field) = key.split_once('.').unwrap();
            let line = readme
                .lines()
                .find(|l| l.starts_with(&format!("[{section}]")) && l.contains('#'))
                .unwrap_or_else(|| panic!("README's scenario example has no [{section}] line"));
            assert!(
                line.split(['#', ',', ' ', '/']).any(|w| w == field),
                "README's [{section}] comment does not list {field}: {line}"
            );
        }
    }

    #[test]
    fn the_declared_default_stall_is_the_verdicts() {
        let cx = Context::new(None, &|_| None);
        let declared = VerdictOptions::default().max_stall(&cx).unwrap();
        assert_eq!(declared.value, crate::config::MAX_STALL);
        assert_eq!(
            Limits::default().max_stall.map(|s| s.value),
            Some(declared.value)
        );
    }

    #[test]
    fn secret_names() {
        for name in [
            "KUBE_TOKEN",
            "db_password",
            "API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "GCP_CREDENTIALS",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["HOME", "PATH", "PWD", "USER"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
