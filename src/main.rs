//! The `gapless` binary: parses arguments, runs the verb, maps the result to an exit code.
//! All the work is in the library; errors are printed here with their cause chain: usage and
//! configuration errors exit 2, gapless's own failures (the engine, a report it could not write
//! at the end) exit 5. Nothing is printed with `print!`: a reader that went away (`| head`) ends
//! the output quietly, with the run's own exit code.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use gapless::cli::{
    Cli, Command, DemoCommand, DemoServeArgs, ReportArgs, RunArgs, ServeArgs, Start, Validated,
};
use gapless::console::Console;
use gapless::demo::Cluster;
use gapless::report;
use gapless::result::RunResult;
use gapless::result::ScenarioEntry;
use gapless::run::Interruption;
use gapless::serve::{self, ServeConfig};
use gapless::verdict::{self, Exit};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(Exit::Usage.code())
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            report::to_stderr(&format!("gapless: {err:#}\n"));
            ExitCode::from(exit_for(&err).code())
        }
    }
}

/// A failure of gapless itself, not of what it was given (exit 5).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Internal(&'static str);

/// Exit 5 for gapless's own failures (the load engine, a worker that panicked, the runtime),
/// exit 2 for everything else that stops a run before its result: usage and configuration.
fn exit_for(err: &anyhow::Error) -> Exit {
    if err.downcast_ref::<gapless::run::Error>().is_some()
        || err.downcast_ref::<Internal>().is_some()
    {
        Exit::Internal
    } else {
        Exit::Usage
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context(Internal("cannot start the async runtime"))?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => load(*args).await,
            Command::Serve(args) => serve_target(args).await,
            Command::Demo(DemoCommand::Serve(args)) => serve_demo(args).await,
            Command::Report(args) => rerender(&args),
        }
    })
}

async fn load(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenario = args.scenario()?;
    let Validated {
        mut config,
        start,
        output,
    } = args.validate(scenario.as_ref(), &|name| std::env::var(name).ok())?;
    // Every report path is checked before any load: a typo fails now, not after the run.
    for path in output.files() {
        report::check_writable(path)?;
    }
    let mut builtin = JoinSet::new();
    let builtin_stop = CancellationToken::new();
    let mut demo = None;
    match start {
        Start::Url => {}
        Start::Demo(spec) => {
            let cluster = Arc::new(Cluster::start(spec).await?);
            if !output.quiet {
                report::to_stderr(&format!(
                    "gapless: demo cluster listening on {}\n",
                    cluster.url()
                ));
            }
            config.target.url = cluster.url().parse()?;
            demo = Some(cluster);
        }
        Start::Builtin => {
            let listener = serve::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
            let addr = listener.local_addr().context("built-in target address")?;
            builtin.spawn(serve::serve(
                listener,
                ServeConfig::default(),
                builtin_stop.clone(),
            ));
            if !output.quiet {
                report::to_stderr(&format!(
                    "gapless: built-in target listening on http://{addr}/\n"
                ));
            }
            config.target.url = format!("http://{addr}/").parse()?;
        }
    }
    let console = Arc::new(Console::stderr(!output.quiet).redacting(config.redact.clone()));

    // The first signal stops the run and still writes the report; a second one exits at once.
    let (first, first_rx) = oneshot::channel();
    let mut signals = JoinSet::new();
    signals.spawn(async move {
        let _ = first.send(interruption().await);
        let second = interruption().await;
        // `process::exit` runs no destructor: the steps' process groups are killed first.
        gapless::rollout::kill_every_group();
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
    let finished = gapless::run::run(&config, console, demo.clone(), interrupt).await;
    if let Some(cluster) = &demo {
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
    let mut result = verdict::judged(&finished);
    let redactor = &config.redact;
    result.command_line = redactor.command_line(&std::env::args().collect::<Vec<_>>());
    result.scenario = scenario.as_ref().map(|s| ScenarioEntry {
        path: s.path.display().to_string(),
        text: redactor.scenario(&s.source),
    });
    let summary = std::env::var_os("GITHUB_STEP_SUMMARY").map(std::path::PathBuf::from);
    let failed = report::deliver(&result, &output, true, summary.as_deref());
    Ok(ExitCode::from(exit_code(&result, failed)))
}

/// The verdict's exit code, unless a report could not be written (5); a signal the user sent
/// still wins.
fn exit_code(result: &RunResult, failed_reports: usize) -> u8 {
    let interrupted = [Exit::Interrupted.code(), Exit::Terminated.code()];
    if failed_reports > 0 && !interrupted.contains(&result.verdict.exit_code) {
        Exit::Internal.code()
    } else {
        result.verdict.exit_code
    }
}

async fn serve_target(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    let listener = serve::bind(args.listen).await?;
    report::to_stderr(&format!(
        "gapless: serving {} on http://{}/\n",
        config.status,
        listener.local_addr().context("listen address")?
    ));
    let stop = CancellationToken::new();
    let mut server = JoinSet::new();
    server.spawn(serve::serve(listener, config, stop.clone()));
    tokio::select! {
        _ = interruption() => stop.cancel(),
        done = server.join_next() => {
            if let Some(result) = done {
                result.context("server task")??;
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    while let Some(result) = server.join_next().await {
        result.context("server task")??;
    }
    Ok(ExitCode::SUCCESS)
}

/// `gapless report`: renders a saved result, judged again if thresholds are given; exits with
/// its verdict's code (5 if an output could not be written; the others still are).
fn rerender(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let mut result = report::read_result(&args.result)?;
    for path in args.output.files() {
        report::check_writable(path)?;
    }
    let limits = args.limits(&verdict::limits_of(&result))?;
    verdict::conclude(&mut result, &limits);
    let asked = args.output.files().next().is_some();
    let failed = report::deliver(&result, &args.output, !asked, None);
    Ok(ExitCode::from(exit_code(&result, failed)))
}

async fn serve_demo(args: DemoServeArgs) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::start(args.validate()?).await?;
    report::to_stderr(&format!(
        "gapless: demo service ({} replicas of {}) on {}\n",
        args.replicas,
        args.version_label,
        cluster.url()
    ));
    interruption().await;
    cluster.shutdown().await;
    Ok(ExitCode::SUCCESS)
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
