//! `gapless completions SHELL` and `gapless man`: shell completion scripts (clap_complete) and a
//! roff manual page (clap_mangen), both generated from the same clap command `--help` shows (with
//! each option's default and range, [`Cli::command_with_specs`]), so they cannot drift from it.
//!
//! The manual is one page, gapless(1): the top-level command and its list of verbs, then a section
//! per verb (`GAPLESS RUN`, `GAPLESS DEMO SERVE`, ...) holding that verb's synopsis, description
//! and options, under the same headings as its `--help` (Target, Load, Rollout, ...), as
//! subsections.

use std::io::Write as _;

use clap::{Args, ValueEnum};
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use super::Cli;

/// Errors while rendering the manual page.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The roff text could not be written (into memory: a bug in gapless or its libraries).
    #[error("cannot render the manual page: {0}")]
    Render(#[from] std::io::Error),
    /// The rendered text is not UTF-8.
    #[error("the manual page is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// The shells `gapless completions` writes a script for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash: `source <(gapless completions bash)`, or save it in
    /// ~/.local/share/bash-completion/completions/gapless.
    Bash,
    /// zsh: save it as `_gapless` in a directory of `$fpath`.
    Zsh,
    /// fish: save it as ~/.config/fish/completions/gapless.fish.
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(shell: Shell) -> clap_complete::Shell {
        match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// `gapless completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The name the scripts and the page know the program by.
const NAME: &str = "gapless";

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> String {
    let mut command = Cli::command_with_specs();
    let mut script = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::from(shell),
        &mut command,
        NAME,
        &mut script,
    );
    String::from_utf8_lossy(&script).into_owned()
}

/// The manual page gapless(1), in roff.
pub fn man() -> Result<String, Error> {
    let mut command = Cli::command_with_specs().disable_help_subcommand(true);
    // Fills each verb's display name and usage (gapless run ...).
    command.build();
    let man = Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    // clap_mangen's own list names a page per verb (gapless-run(1)): here they are sections.
    let mut list = Roff::default();
    list.control("SH", ["COMMANDS"]);
    for verb in verbs_of(&command) {
        list.control("TP", []);
        list.text([bold(full_name(verb))]);
        let about = verb.get_about().map(|a| a.to_string()).unwrap_or_default();
        list.text([roman(format!(
            "{about} (see {})",
            full_name(verb).to_uppercase()
        ))]);
    }
    list.to_writer(&mut page)?;
    sections(&command, &mut page)?;
    man.render_version_section(&mut page)?;
    Ok(String::from_utf8(page)?)
}

/// The verbs of `command` as `--help` lists them, without `help`.
fn verbs_of(command: &clap::Command) -> Vec<&clap::Command> {
    let mut verbs: Vec<_> = command
        .get_subcommands()
        .filter(|v| !v.is_hide_set() && v.get_name() != "help")
        .collect();
    verbs.sort_by_key(|v| v.get_display_order());
    verbs
}

/// `gapless demo serve`.
fn full_name(verb: &clap::Command) -> &str {
    verb.get_bin_name().unwrap_or_else(|| verb.get_name())
}

/// A section per verb of `command` (and per verb of a verb: `demo serve`).
fn sections(command: &clap::Command, page: &mut Vec<u8>) -> Result<(), Error> {
    for verb in verbs_of(command) {
        let mut title = Roff::default();
        title.control("SH", [full_name(verb).to_uppercase().as_str()]);
        title.to_writer(page)?;
        let man = Man::new(verb.clone());
        let mut parts = Vec::new();
        man.render_synopsis_section(&mut parts)?;
        man.render_description_section(&mut parts)?;
        if verb.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut parts)?;
        }
        // The verb's own sections (SYNOPSIS, OPTIONS, TARGET, ...) become subsections of its
        // section. The roff writer escapes a text line that starts with a dot, so every line
        // starting `.SH ` is a section heading.
        for line in String::from_utf8(parts)?.lines() {
            match line.strip_prefix(".SH ") {
                Some(heading) => writeln!(page, ".SS {heading}")?,
                None => writeln!(page, "{line}")?,
            }
        }
        sections(verb, page)?;
    }
    Ok(())
}
