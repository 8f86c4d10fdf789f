//! The `gapless` binary: parses the arguments, runs the verb ([`gapless::verbs`]), and ends with
//! its exit code; an error that stops a verb is printed with its cause chain.

use std::process::ExitCode;

use gapless::Exit;
use gapless::cli::Cli;
use gapless::verbs::to_stderr;

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
    match gapless::verbs::execute(cli.command) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(err) => {
            let exit = err.exit();
            to_stderr(&format!("gapless: {:#}\n", anyhow::Error::from(err)));
            ExitCode::from(exit.code())
        }
    }
}
