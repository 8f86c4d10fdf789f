//! The `gapless` binary: parses arguments, runs the verb, maps the result to an exit code.
//! All the work is in the library; errors are printed here with their cause chain.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use gapless::cli::{
    Cli, Command, DemoCommand, DemoServeArgs, ReportArgs, RunArgs, ServeArgs, Start, Validated,
};
use gapless::console::Console;
use gapless::demo::Cluster;
use gapless::report::json::RunResult;
use gapless::report::{self, json::ScenarioEntry};
use gapless::serve::{self, ServeConfig};
use gapless::verdict::{Exit, Interruption};
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
            eprintln!("gapless: {err:#}");
            ExitCode::from(Exit::Usage.code())
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
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
    let mut builtin = JoinSet::new();
    let builtin_stop = CancellationToken::new();
    let mut demo = None;
    match start {
        Start::Url => {}
        Start::Demo(spec) => {
            let cluster = Arc::new(Cluster::start(spec).await?);
            if !output.quiet {
                eprintln!("gapless: demo cluster listening on {}", cluster.url());
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
                eprintln!("gapless: built-in target listening on http://{addr}/");
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
        eprintln!("\ngapless: second signal, exiting at once without a report");
        std::process::exit(i32::from(exit_of(second).code()));
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
        eprintln!("gapless: {why}");
    }
    // The wire result is built once: the text report takes its hints, the files take all of it.
    let mut result = RunResult::new(&finished);
    let text = if output.quiet {
        format!("{}\n", finished.verdict)
    } else {
        gapless::report::text::render(&result)
    };
    if output.json_on_stdout() {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    let redactor = &config.redact;
    result.command_line = redactor.command_line(&std::env::args().collect::<Vec<_>>());
    result.scenario = scenario.as_ref().map(|s| ScenarioEntry {
        path: s.path.display().to_string(),
        text: redactor.scenario(&s.source),
    });
    if let Some(path) = &output.json {
        result.write(path)?;
    }
    if let Some(path) = &output.html {
        report::write_file(path, &report::html::render(&result))?;
    }
    if let Some(path) = &output.markdown {
        let summary = report::markdown::render(&result);
        report::write_file(path, &summary)?;
        if let Some(ci) = std::env::var_os("GITHUB_STEP_SUMMARY") {
            report::append_file(std::path::Path::new(&ci), &summary)?;
        }
    }
    if let Some(path) = &output.junit {
        report::write_file(path, &report::junit::render(&result))?;
    }
    if let Some(path) = &output.fortio_json {
        report::fortio::write(&finished, path)?;
    }
    Ok(ExitCode::from(finished.verdict.exit.code()))
}

fn exit_of(cause: Interruption) -> Exit {
    match cause {
        Interruption::Interrupt => Exit::Interrupted,
        Interruption::Terminate => Exit::Terminated,
    }
}

async fn serve_target(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    let listener = serve::bind(args.listen).await?;
    eprintln!(
        "gapless: serving {} on http://{}/",
        config.status,
        listener.local_addr().context("listen address")?
    );
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

/// `gapless report`: renders a saved result; exits with the saved verdict's code.
fn rerender(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let result = report::read_result(&args.result)?;
    let emit = |path: &std::path::Path, text: String| -> anyhow::Result<()> {
        if path == std::path::Path::new("-") {
            print!("{text}");
            Ok(())
        } else {
            Ok(report::write_file(path, &text)?)
        }
    };
    if let Some(path) = &args.html {
        emit(path, report::html::render(&result))?;
    }
    if let Some(path) = &args.markdown {
        emit(path, report::markdown::render(&result))?;
    }
    if let Some(path) = &args.junit {
        emit(path, report::junit::render(&result))?;
    }
    if args.html.is_none() && args.markdown.is_none() && args.junit.is_none() {
        print!("{}", report::text::render(&result));
    }
    Ok(ExitCode::from(result.verdict.exit_code))
}

async fn serve_demo(args: DemoServeArgs) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::start(args.validate()?).await?;
    eprintln!(
        "gapless: demo service ({} replicas of {}) on {}",
        args.replicas,
        args.version_label,
        cluster.url()
    );
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
