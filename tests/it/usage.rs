//! What gapless says about itself: `gapless completions SHELL` (the bash script is sourced and
//! asked to complete, the zsh and fish ones parsed by their shells), `gapless man` (roff, every
//! verb and every flag of `run`, rendered by groff without a warning), `run --help`'s headings
//! (each flag under the one it belongs to), and how README says to install it (against
//! Cargo.toml and the Dockerfile).

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use gapless::cli::Cli;

use crate::support::{GAPLESS, TempFile, needs};

/// `gapless ARGS`, which must exit 0; its stdout.
fn gapless(args: &[&str]) -> String {
    let out = Command::new(GAPLESS)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run gapless");
    assert_eq!(
        out.status.code(),
        Some(0),
        "gapless {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The verbs of gapless, as the user types them.
const VERBS: [&str; 8] = [
    "run",
    "serve",
    "demo",
    "report",
    "merge",
    "diff",
    "completions",
    "man",
];

/// The long flags of `gapless run` (`--qps`, ...), from its clap declaration.
fn run_flags() -> Vec<String> {
    let command = Cli::command_with_specs();
    let run = command
        .get_subcommands()
        .find(|c| c.get_name() == "run")
        .expect("gapless run");
    run.get_arguments()
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Completions
// ---------------------------------------------------------------------------------------------

/// Sources the bash completion script and completes `words` (the last one being typed), as
/// bash-completion calls the function: the candidates offered.
fn bash_complete(script: &TempFile, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n\
         _gapless gapless '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.path().display(),
        quoted.join(" "),
        words.join(" "),
        words[cword],
        words[cword.saturating_sub(1)],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_bash_completion_parses_and_completes_verbs_and_flags() {
    let script = gapless(&["completions", "bash"]);
    assert!(script.contains("--qps"));
    let file = TempFile::with("bash", &script);
    let out = Command::new("bash")
        .arg("-n")
        .arg(file.path())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The verbs, after `gapless `.
    let verbs = bash_complete(&file, &["gapless", ""]);
    for verb in VERBS {
        assert!(verbs.iter().any(|v| v == verb), "{verb} in {verbs:?}");
    }
    // run's flags, after `gapless run --q`: the long flags starting so.
    let mut offered = bash_complete(&file, &["gapless", "run", "--q"]);
    offered.sort();
    assert_eq!(offered, ["--qps", "--quiet"]);
    // Every flag of run, after `gapless run --`.
    let offered = bash_complete(&file, &["gapless", "run", "--"]);
    for flag in run_flags() {
        assert!(offered.contains(&flag), "{flag} not offered: {offered:?}");
    }
    // The shells of `completions`.
    let mut shells = bash_complete(&file, &["gapless", "completions", ""]);
    shells.retain(|s| !s.starts_with('-'));
    shells.sort();
    assert_eq!(shells, ["bash", "fish", "zsh"]);
}

#[test]
fn the_zsh_and_fish_completions_name_every_verb_and_flag() {
    let zsh = gapless(&["completions", "zsh"]);
    assert_eq!(zsh.lines().next(), Some("#compdef gapless"));
    let fish = gapless(&["completions", "fish"]);
    assert!(fish.lines().any(|l| l.starts_with("complete -c gapless ")));
    for verb in VERBS {
        assert!(zsh.contains(&format!("'{verb}:")), "zsh: {verb}");
        assert!(fish.contains(&format!(" -a \"{verb}\"")), "fish: {verb}");
    }
    for flag in run_flags() {
        // `'--qps=[help]:QPS:_default'`, `'--http2[help]'`, `'(--version-regex)--version-header=[...`
        assert!(
            zsh.contains(&format!("{flag}=[")) || zsh.contains(&format!("{flag}[")),
            "zsh: {flag}"
        );
        let long = flag.trim_start_matches('-');
        assert!(fish.contains(&format!(" -l {long} ")), "fish: {flag}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(GAPLESS)
        .args(["completions", "tcsh"])
        .output()
        .expect("run gapless");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[possible values: bash, zsh, fish]"),
        "{stderr}"
    );
}

/// `shell ARGS script` on the completion script for `shell`.
fn check_with(shell: &str, args: &[&str]) -> Output {
    let program = needs(shell);
    let script = TempFile::with(shell, &gapless(&["completions", shell]));
    Command::new(program)
        .args(args)
        .arg(script.path())
        .output()
        .expect("run the shell")
}

#[test]
#[ignore = "needs zsh"]
fn the_zsh_completion_parses() {
    let out = check_with("zsh", &["-n"]);
    assert!(
        out.status.success(),
        "zsh -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs fish"]
fn the_fish_completion_parses() {
    let out = check_with("fish", &["--no-execute"]);
    assert!(
        out.status.success(),
        "fish --no-execute: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The manual page
// ---------------------------------------------------------------------------------------------

#[test]
fn the_man_page_is_roff_with_every_verb_and_every_flag_of_run() {
    let page = gapless(&["man"]);
    let first = page
        .lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
        .unwrap_or_default();
    assert!(first.starts_with(".TH gapless 1 "), "{first}");
    let sections: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .collect();
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS"] {
        assert!(sections.contains(&section), "{section} in {sections:?}");
    }
    for verb in VERBS {
        let title = format!("\"GAPLESS {}\"", verb.to_uppercase());
        assert!(
            sections.contains(&title.as_str()),
            "{title} in {sections:?}"
        );
    }
    assert!(sections.contains(&"\"GAPLESS DEMO SERVE\""));
    // run's section: every flag (roff escapes each '-'), under its help's headings.
    let start = page.find(".SH \"GAPLESS RUN\"").expect("run's section");
    let end = page[start + 1..]
        .find("\n.SH ")
        .map_or(page.len(), |e| start + 1 + e);
    let run = &page[start..end];
    for flag in run_flags() {
        let escaped = flag.replace('-', "\\-");
        assert!(
            run.contains(&format!("\\fB{escaped}\\fR")),
            "{flag} not in run's section"
        );
    }
    for heading in ["TARGET", "LOAD", "ROLLOUT", "SHARDS", "VERDICT", "REPORTS"] {
        assert!(run.contains(&format!("\n.SS {heading}\n")), "{heading}");
    }
}

#[test]
#[ignore = "needs groff"]
fn groff_renders_the_man_page_without_a_warning() {
    let groff = needs("groff");
    let page = TempFile::with("1", &gapless(&["man"]));
    let out = Command::new(groff)
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(page.path())
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("run groff");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "groff: {stderr}");
    let rendered = String::from_utf8_lossy(&out.stdout);
    // As the reader sees it (no bold or underline overstrikes): the verb's section, its
    // subsections, the flags.
    for line in [
        "\nGAPLESS RUN\n",
        "\n   TARGET\n",
        "-q, --qps <QPS>",
        "--max-gap <DUR>",
    ] {
        assert!(rendered.contains(line), "{line:?} in\n{rendered}");
    }
}

// ---------------------------------------------------------------------------------------------
// run --help
// ---------------------------------------------------------------------------------------------

/// `gapless run --help`'s flags, each with its heading (`Target`, ...).
fn headings() -> BTreeMap<String, String> {
    let help = gapless(&["run", "--help"]);
    let mut heading = String::new();
    let mut found = BTreeMap::new();
    for line in help.lines() {
        if let Some(h) = line.strip_suffix(':').filter(|_| !line.starts_with(' ')) {
            heading = h.to_string();
        } else if line.starts_with("  ") {
            let flags = line
                .split("  ")
                .find(|s| !s.trim().is_empty())
                .unwrap_or("");
            for word in flags.split([',', ' ']) {
                if word.starts_with("--") {
                    found.insert(word.to_string(), heading.clone());
                }
            }
        }
    }
    found
}

#[test]
fn run_help_groups_its_flags_under_headings() {
    let headings = headings();
    let expected = [
        (
            "Target",
            &[
                "--method",
                "--header",
                "--timeout",
                "--builtin",
                "--scenario",
                "--targets",
            ][..],
        ),
        (
            "Load",
            &["--qps", "--connections", "--duration", "--threads"],
        ),
        (
            "Rollout",
            &["--warmup", "--cooldown", "--step-name", "--step-timeout"],
        ),
        ("Shards", &["--shards", "--shard-index", "--start-at"]),
        (
            "Verdict",
            &[
                "--max-failures",
                "--max-gap",
                "--max-p99",
                "--expect-version",
            ],
        ),
        (
            "Reports",
            &[
                "--json",
                "--html",
                "--markdown",
                "--junit",
                "--quiet",
                "--redact",
            ],
        ),
    ];
    for (heading, flags) in expected {
        for flag in flags {
            assert_eq!(
                headings.get(*flag).map(String::as_str),
                Some(heading),
                "{flag}"
            );
        }
    }
    // Every flag of run has a heading of its own kind: none is left under the bare "Options".
    for flag in run_flags() {
        let heading = headings
            .get(&flag)
            .unwrap_or_else(|| panic!("{flag} is not in run --help"));
        assert!(
            flag == "--help" || heading != "Options",
            "{flag} has no heading"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Install
// ---------------------------------------------------------------------------------------------

fn repo_file(path: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_readme_installs_as_cargo_toml_says() {
    let manifest: toml::Table = toml::from_str(&repo_file("Cargo.toml")).expect("Cargo.toml");
    let package = manifest["package"].as_table().expect("[package]");
    let field = |name: &str| {
        package
            .get(name)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("package.{name}"))
    };
    let repository = field("repository");
    assert!(
        repository.starts_with("https://github.com/"),
        "{repository}"
    );
    let readme_file = field("readme");
    let rust_version = field("rust-version");
    let list = |name: &str| -> Vec<String> {
        package[name]
            .as_array()
            .unwrap_or_else(|| panic!("package.{name}"))
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect()
    };
    // crates.io's limits: five of each, keywords of 20 ASCII characters at most.
    let keywords = list("keywords");
    assert!((1..=5).contains(&keywords.len()));
    for k in &keywords {
        assert!(
            k.len() <= 20 && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{k}"
        );
    }
    let categories = list("categories");
    assert!((1..=5).contains(&categories.len()));

    let readme = repo_file(readme_file);
    // The first two commands stay first.
    let first_block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a first sh block");
    let commands: Vec<&str> = first_block
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .collect();
    assert_eq!(
        commands,
        [
            "cargo run --release -- run --scenario scenarios/demo-rolling-no-drain.toml",
            "cargo test"
        ]
    );
    // Install comes before Usage, with the commands, the repository and the minimum Rust.
    let install = readme.find("\n## Install\n").expect("an Install section");
    let usage = readme.find("\n## Usage\n").expect("a Usage section");
    assert!(install < usage);
    let section = &readme[install..usage];
    for needed in [
        "cargo install --locked --path .".to_string(),
        format!("cargo install --locked --git {repository} gapless"),
        format!("Rust {rust_version} or newer"),
        "docker build".to_string(),
        "gapless completions bash".to_string(),
        "gapless man".to_string(),
    ] {
        assert!(section.contains(&needed), "{needed} in\n{section}");
    }
    // The image's toolchain is at least the minimum.
    let dockerfile = repo_file("Dockerfile");
    let image = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .expect("FROM rust:");
    let version = |v: &str| -> Vec<u32> {
        v.split(['-', ' '])
            .next()
            .unwrap_or_default()
            .split('.')
            .map(|n| n.parse().expect("a version number"))
            .collect()
    };
    assert!(
        version(image) >= version(rust_version),
        "{image} < {rust_version}"
    );
}
