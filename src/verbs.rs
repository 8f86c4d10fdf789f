//! The verbs of the command line, each from its parsed arguments to an exit code: `run` (the
//! load, its rollout, the verdict and the reports), `report` (a saved result rendered and judged
//! again), `merge` (shard results joined), `diff` (two saved results compared, NEW judged against
//! BASE), `serve` (the built-in target), `demo serve` (the demo cluster, standalone), and
//! `completions` and `man` (generated from the command line's declaration, [`cli::manual`]).
//!
//! Errors that stop a verb before it has a verdict are typed ([`Error`]), each with its exit code:
//! what the user gave (arguments, a scenario, a report path, a saved result) is 2; gapless's own
//! failures (the async runtime, the load engine) are 5. Nothing is printed with `print!`: a
//! reader that went away (`| head`) ends the output quietly, with the run's own exit code.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::{
    self, Command, DemoCommand, DemoServeArgs, DiffArgs, MergeArgs, ReportArgs, RunArgs, ServeArgs,
};
use crate::cli::{Start, Validated};
use crate::judge::verdict::{self, Exit};
use crate::metrics::Board;
use crate::report;
use crate::result::{RunResult, ScenarioEntry};
use crate::rollout::strategy::Orchestrator;
use crate::run::{self, Interruption};
use crate::targets::demo::{self, Cluster};
use crate::targets::serve::{self, ServeConfig};
use crate::ui::console::Console;

pub use crate::report::to_stderr;

/// Errors that stop a verb before it has a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument or a scenario value (exit 2).
    #[error(transparent)]
    Usage(#[from] cli::Error),
    /// A report path that cannot be written, or a saved result that cannot be read (exit 2).
    #[error(transparent)]
    Report(#[from] report::Error),
    /// The demo cluster could not start (exit 2: its listen address).
    #[error(transparent)]
    Demo(#[from] demo::Error),
    /// The built-in target could not start or failed (exit 2: its listen address).
    #[error(transparent)]
    Serve(#[from] serve::Error),
    /// The load engine failed (exit 5).
    #[error(transparent)]
    Run(#[from] run::Error),
    /// Shard results that cannot be merged.
    #[error(transparent)]
    Merge(#[from] crate::merge::Error),
    /// The `--metrics-listen` address cannot be bound (exit 2).
    #[error(transparent)]
    Metrics(#[from] crate::metrics::Error),
    /// The async runtime, or a server task, failed (exit 5).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Usage(_)
            | Error::Report(_)
            | Error::Demo(_)
            | Error::Serve(_)
            | Error::Merge(_)
            | Error::Metrics(_) => Exit::Usage,
            Error::Run(_) | Error::Internal(_) => Exit::Internal,
        }
    }
}

/// Runs the verb `command` on a runtime of its own; returns the exit code.
pub fn execute(command: Command) -> Result<Exit, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        match command {
            Command::Run(args) => load(*args).await,
            Command::Serve(args) => serve_target(args).await,
            Command::Demo(DemoCommand::Serve(args)) => serve_demo(args).await,
            Command::Report(args) => rerender(&args),
            Command::Merge(args) => join(&args),
            Command::Diff(args) => compare(&args),
            Command::Completions(args) => {
                report::to_stdout(&cli::manual::completions(args.shell))?;
                Ok(Exit::Pass)
            }
            Command::Man => {
                let page = cli::manual::man().map_err(|e| Error::Internal(e.to_string()))?;
                report::to_stdout(&page)?;
                Ok(Exit::Pass)
            }
        }
    })
}

/// `gapless run`.
async fn load(args: RunArgs) -> Result<Exit, Error> {
    let scenario = args.scenario()?;
    let Validated {
        mut config,
        start,
        output,
        metrics,
    } = args.validate(scenario.as_ref(), &|name| std::env::var(name).ok())?;
    // Every report path is checked before any load: a typo fails now, not after the run.
    for path in output.files() {
        report::check_writable(path)?;
    }
    // So is the metrics address: bound now, served once the run's board exists.
    let metrics_listener = match &metrics.listen {
        Some(listen) => Some(crate::metrics::bind(listen).await?),
        None => None,
    };
    let mut builtin = JoinSet::new();
    let builtin_stop = CancellationToken::new();
    let mut cluster = None;
    let say = |line: String| {
        if !output.quiet {
            report::to_stderr(&format!("gapless: {line}\n"));
        }
    };
    match start {
        Start::Url => {}
        Start::Demo(spec) => {
            let started = Arc::new(Cluster::start(spec).await?);
            say(format!("demo cluster listening on {}", started.url()));
            config.target.url = started.target_url();
            started.aim(&mut config.streams);
            cluster = Some(started);
        }
        Start::Builtin => {
            let listener = serve::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
            let addr = serve::local_addr(&listener)?;
            builtin.spawn(serve::serve(
                listener,
                ServeConfig::default(),
                builtin_stop.clone(),
            ));
            say(format!("built-in target listening on http://{addr}/"));
            config.target.url = serve::url_of(addr);
        }
    }
    let console = Arc::new(Console::stderr(!output.quiet).redacting(config.redact.clone()));
    let run_id = crate::metrics::run_id(config.load.shard.as_ref());
    let board = metrics
        .enabled()
        .then(|| Arc::new(Board::new(run_id.clone(), &config)));
    let mut metrics_server = JoinSet::new();
    let metrics_stop = CancellationToken::new();
    if let (Some(listener), Some(board)) = (metrics_listener, &board) {
        if let Ok(addr) = listener.local_addr() {
            say(format!("metrics on http://{addr}/metrics and /status"));
        }
        metrics_server.spawn(crate::metrics::serve(
            listener,
            board.clone(),
            metrics_stop.clone(),
        ));
    }

    // The first signal stops the run and still writes the report; a second one exits at once.
    let (first, first_rx) = oneshot::channel();
    let mut signals = JoinSet::new();
    signals.spawn(async move {
        let _ = first.send(interruption().await);
        let second = interruption().await;
        // `process::exit` runs no destructor: the steps' process groups are killed first.
        crate::rollout::kill_every_group();
        report::to_stderr(
            "\ngapless: second signal, steps killed, exiting at once without a report\n",
        );
        std::process::exit(i32::from(Exit::of(second).code()));
    });
    let interrupt = async move {
        match first_rx.await {
            Ok(cause) => cause,
            Err(_) => std::future::pending().await,
        }
    };
    let orchestrator = cluster.clone().map(|c| -> Arc<dyn Orchestrator> { c });
    let finished = run::observed(&config, console, orchestrator, interrupt, board.as_deref()).await;
    if let Some(cluster) = &cluster {
        cluster.shutdown().await;
    }
    let finished = finished?;
    signals.abort_all();
    builtin_stop.cancel();
    while builtin.join_next().await.is_some() {}

    if let Some(why) = finished.unreachable() {
        report::to_stderr(&format!("gapless: {why}\n"));
    }
    // The result is built and judged once; every report renders it.
    let mut result = if finished.parts.is_empty() {
        verdict::judged(&finished)
    } else {
        // Several endpoints: each judged, and the run's result folded from theirs.
        crate::merge::endpoints(finished)
    };
    result.run_id = run_id;
    let redactor = &config.redact;
    result.command_line = redactor.command_line(&std::env::args().collect::<Vec<_>>());
    result.scenario = scenario.as_ref().map(|s| ScenarioEntry {
        path: s.path.display().to_string(),
        text: redactor.scenario(&s.source),
    });
    if let Some(board) = &board {
        board.finish(&result);
    }
    let summary = std::env::var_os("GITHUB_STEP_SUMMARY").map(std::path::PathBuf::from);
    let mut failed = report::deliver(&result, &output, true, summary.as_deref());
    if let (Some(url), Some(board)) = (&metrics.push, &board)
        && let Err(e) = crate::metrics::push(url, board).await
    {
        report::to_stderr(&format!("gapless: {e}\n"));
        failed += 1;
    }
    if let Some(board) = board.as_ref().filter(|_| !metrics_server.is_empty()) {
        linger(board, metrics.linger, &say).await;
    }
    metrics_stop.cancel();
    while metrics_server.join_next().await.is_some() {}
    Ok(exit(&result, failed))
}

/// Serves the final metrics for `--metrics-linger` (a signal ends it early), so the scrape after
/// the verdict is not lost.
async fn linger(board: &Board, linger: std::time::Duration, say: &dyn Fn(String)) {
    if linger.is_zero() {
        return;
    }
    board.linger(true);
    say(format!(
        "serving the final metrics for {} (--metrics-linger)",
        humantime::format_duration(linger)
    ));
    tokio::select! {
        _ = tokio::time::sleep(linger) => {}
        _ = interruption() => {}
    }
    board.linger(false);
}

/// The verdict's exit, unless a report could not be written (5); a signal the user sent still
/// wins.
fn exit(result: &RunResult, failed_reports: usize) -> Exit {
    let verdict = Exit::from_code(result.verdict.exit_code);
    match verdict {
        Exit::Interrupted | Exit::Terminated => verdict,
        _ if failed_reports > 0 => Exit::Internal,
        _ => verdict,
    }
}

/// `gapless report`: renders a saved result, judged again if thresholds are given; exits with
/// its verdict's code (5 if an output could not be written; the others still are).
fn rerender(args: &ReportArgs) -> Result<Exit, Error> {
    let mut result = report::read_result(&args.result)?;
    for path in args.output.files() {
        report::check_writable(path)?;
    }
    let limits = args.limits(&verdict::limits_of(&result))?;
    verdict::conclude(&mut result, &limits);
    let asked = args.output.files().next().is_some();
    let failed = report::deliver(&result, &args.output, !asked, None);
    Ok(exit(&result, failed))
}

/// `gapless diff`: both results read (through the one reader of saved results), compared and
/// judged once; the table and the files asked for render that comparison. Exits 1 when NEW is
/// worse (5 if an output could not be written).
fn compare(args: &DiffArgs) -> Result<Exit, Error> {
    let limits = args.limits()?;
    for path in args.files() {
        report::check_writable(path)?;
    }
    let base = report::read_result(&args.base)?;
    let new = report::read_result(&args.new)?;
    let comparison = crate::judge::diff::compare(
        (&args.base.display().to_string(), &base),
        (&args.new.display().to_string(), &new),
        &limits,
    );
    let failed = report::diff::deliver(&comparison, args.json.as_deref(), args.markdown.as_deref());
    Ok(if failed > 0 {
        Exit::Internal
    } else {
        comparison.exit()
    })
}

/// `gapless merge`: every result read and folded in, one verdict, the reports.
fn join(args: &MergeArgs) -> Result<Exit, Error> {
    for path in args.output.files() {
        report::check_writable(path)?;
    }
    // The merge distance is needed before the first result is folded in; the thresholds are
    // checked now too, so a typo fails before any reading.
    let (_, merge_gap) = args.limits(&crate::config::Limits::default())?;
    let mut merger = crate::merge::Merger::new(merge_gap);
    for path in &args.results {
        merger.read(path)?;
    }
    let saved = merger.saved_limits();
    let (limits, _) = args.limits(&saved)?;
    let result = merger.finish(&limits)?;
    let asked = args.output.files().next().is_some();
    let failed = report::deliver(&result, &args.output, !asked, None);
    Ok(exit(&result, failed))
}

/// `gapless serve`: until a signal.
async fn serve_target(args: ServeArgs) -> Result<Exit, Error> {
    let config = args.validate()?;
    let listener = serve::bind(args.listen).await?;
    let addr = serve::local_addr(&listener)?;
    report::to_stderr(&format!(
        "gapless: serving {} on http://{addr}/\n",
        config.status
    ));
    let stop = CancellationToken::new();
    let mut server = JoinSet::new();
    server.spawn(serve::serve(listener, config, stop.clone()));
    tokio::select! {
        _ = interruption() => stop.cancel(),
        done = server.join_next() => {
            if let Some(joined) = done {
                joined.map_err(|e| Error::Internal(format!("server task: {e}")))??;
            }
            return Ok(Exit::Pass);
        }
    }
    while let Some(joined) = server.join_next().await {
        joined.map_err(|e| Error::Internal(format!("server task: {e}")))??;
    }
    Ok(Exit::Pass)
}

/// `gapless demo serve`: until a signal.
async fn serve_demo(args: DemoServeArgs) -> Result<Exit, Error> {
    let cluster = Cluster::start(args.validate()?).await?;
    report::to_stderr(&format!(
        "gapless: demo service ({} replicas of {}) on {}\n",
        args.replicas,
        args.version_label,
        cluster.url()
    ));
    interruption().await;
    cluster.shutdown().await;
    Ok(Exit::Pass)
}

/// Resolves on the first SIGINT or SIGTERM.
async fn interruption() -> Interruption {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => Interruption::Interrupt,
                _ = term.recv() => Interruption::Terminate,
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    Interruption::Interrupt
}
