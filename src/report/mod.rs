//! Reports of a finished run: the Fortio-like text report and the JSON result (from the run),
//! and the Markdown summary and JUnit XML (from the JSON result, so `gapless report` can
//! re-render a saved run), plus Fortio's JSON schema.

pub mod diff;
pub mod fortio;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod text;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::result::RunResult;

/// Where the reports of a run (or of `gapless report`) go: the report flags, declared once for
/// both verbs.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Outputs {
    /// Write the JSON result to FILE ('-' for stdout; the text report then goes to stderr).
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report (timeline chart, windows, steps, hints) to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub html: Option<PathBuf>,
    /// Write a Markdown summary to FILE (also appended to $GITHUB_STEP_SUMMARY when set).
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub markdown: Option<PathBuf>,
    /// Write JUnit XML (one test case per verdict criterion) to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub junit: Option<PathBuf>,
    /// Write the result in Fortio's JSON schema to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub fortio_json: Option<PathBuf>,
    /// Print only the verdict line: no text report, progress, step output, step notices or demo
    /// events (all still in the reports: steps' output tails, timeline events).
    #[arg(long, help_heading = "Reports")]
    pub quiet: bool,
    /// The JSON result as one line on stdout (the text report on stderr): a shard's result when
    /// no `--json` file is given, for `gapless merge -` to pick out of the pods' logs.
    #[arg(skip)]
    pub json_line: bool,
}

impl Outputs {
    /// True when the JSON result goes to stdout (so the text report goes to stderr).
    pub fn json_on_stdout(&self) -> bool {
        self.json_line || self.json.as_deref() == Some(std::path::Path::new("-"))
    }

    /// Every report file asked for (`-` included).
    pub fn files(&self) -> impl Iterator<Item = &std::path::Path> {
        [
            &self.json,
            &self.html,
            &self.markdown,
            &self.junit,
            &self.fortio_json,
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }
}

/// Writes every report `outputs` asks for, each whatever became of the others: the text report
/// (or the verdict line with `--quiet`) on stdout, or on stderr when the JSON goes to stdout,
/// unless `text` is false; a Markdown summary is also appended to `summary` (a CI job summary
/// such as `$GITHUB_STEP_SUMMARY`). Returns how many could not be written (each is named on
/// stderr).
pub fn deliver(result: &RunResult, outputs: &Outputs, text: bool, summary: Option<&Path>) -> usize {
    let mut failed = 0;
    let mut written = |outcome: Result<(), Error>| {
        if let Err(err) = outcome {
            let mut message = format!("gapless: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            to_stderr(&(message + "\n"));
            failed += 1;
        }
    };
    if text {
        let report = if outputs.quiet {
            format!("{}\n", result.verdict.line)
        } else {
            self::text::render(result)
        };
        if outputs.json_on_stdout() {
            to_stderr(&report);
        } else {
            written(to_stdout(&report));
        }
    }
    // The JSON goes to a file as it is serialized (it can be several MB).
    let json_to_file = outputs.json.as_ref().filter(|p| *p != Path::new("-"));
    if let Some(path) = json_to_file {
        written(json::write(path, result).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        }));
    }
    let mut file = |path: &Option<PathBuf>, render: &dyn Fn(&RunResult) -> String| {
        if let Some(path) = path {
            let rendered = render(result);
            written(if path == Path::new("-") {
                to_stdout(&rendered)
            } else {
                write_file(path, &rendered)
            });
        }
    };
    if json_to_file.is_none() {
        file(&outputs.json, &json::render);
    }
    file(&outputs.html, &html::render);
    file(&outputs.markdown, &markdown::render);
    file(&outputs.junit, &junit::render);
    file(&outputs.fortio_json, &fortio::render);
    if outputs.json_line {
        written(to_stdout(&json::render_line(result)));
    }
    if let (Some(_), Some(summary)) = (&outputs.markdown, summary) {
        written(append_file(summary, &markdown::render(result)));
    }
    failed
}

/// One shard's part of a merged result, as one line (text, JUnit, HTML):
/// `shard 2 (node-b): 5000 requests, 40 failed (0.8 %), 1 window, 1 gap (longest 81 ms)`.
pub(crate) fn shard_line(s: &crate::result::ShardSummary) -> String {
    let label = if s.label.is_empty() {
        String::new()
    } else {
        format!(" ({})", s.label)
    };
    if s.missing {
        return format!("shard {}{label}: no result", s.index);
    }
    let q = &s.requests;
    let share = failed_percent(q);
    let mut line = format!(
        "shard {}{label}: {} requests, {} failed ({share:.1} %), {} window{}, {} gap{}",
        s.index,
        q.total,
        q.failed,
        s.windows_total,
        plural(s.windows_total),
        s.gaps_total,
        plural(s.gaps_total)
    );
    if let Some(longest) = s.longest_gap_ms {
        line.push_str(&format!(" (longest {})", crate::units::format_ms(longest)));
    }
    if s.interrupted {
        line.push_str("; cut short by a signal");
    }
    line
}

/// The share of `q` that failed, in percent (0 without requests).
fn failed_percent(q: &crate::result::Requests) -> f64 {
    if q.total > 0 {
        q.failed as f64 * 100.0 / q.total as f64
    } else {
        0.0
    }
}

/// `"s"` unless `n` is 1.
fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One endpoint of a run of several, in one line: `api: 5000 requests, 12 failed (0.2 %) (502:
/// 12), 1 window, 1 gap (longest 48 ms), p99 3.1 ms: FAIL`.
pub(crate) fn target_line(t: &crate::result::TargetEntry) -> String {
    let r = &t.result;
    let q = &r.requests;
    let share = failed_percent(q);
    let mut failures: Vec<String> = r
        .codes
        .iter()
        .filter(|(c, _)| !r.load.ok_codes.contains(**c))
        .map(|(&c, n)| format!("{}: {n}", crate::measure::code::Shown(c)))
        .collect();
    failures.extend(r.errors.iter().map(|(c, n)| format!("{c}: {n}")));
    let mut line = format!(
        "{}: {} requests, {} failed ({share:.1} %)",
        t.name, q.total, q.failed
    );
    if !failures.is_empty() {
        line.push_str(&format!(" ({})", failures.join(", ")));
    }
    line.push_str(&format!(
        ", {} window{}, {} gap{}",
        r.windows_total,
        plural(r.windows_total),
        r.gaps_total,
        plural(r.gaps_total)
    ));
    if let Some(longest) = r.longest_gap_ms {
        line.push_str(&format!(" (longest {})", crate::units::format_ms(longest)));
    }
    if r.latency_ms.count > 0 {
        line.push_str(&format!(
            ", p99 {}",
            crate::units::format_ms(r.latency_ms.p99)
        ));
    }
    line.push_str(&format!(
        ": {}",
        crate::result::Verdict::word(r.verdict.exit_code)
    ));
    line
}

/// Errors writing a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The report file could not be written.
    #[error("cannot write report {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The JSON result could not be serialized.
    #[error("cannot serialize the JSON result")]
    Json(#[from] serde_json::Error),
    /// A saved result could not be read.
    #[error("cannot read the result {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A report path cannot be written (found before the run).
    #[error("cannot write a report to {path}")]
    Unwritable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A saved result is not a gapless JSON result.
    #[error("{path} is not a gapless JSON result")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `text` to stdout. A reader that has gone away (`gapless run ... | head`: EPIPE) is
/// not an error: the rest is dropped quietly, as `ls | head` does, and the run keeps its exit
/// code. Any other failure is.
pub fn to_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Write {
            path: PathBuf::from("-"),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Writes `text` to stderr, best effort (there is nowhere left to say that it failed).
pub fn to_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// Checks, before the run, that a report can be written to `path` (`-` is stdout and always
/// can), without creating anything: an existing file must open for writing (it is not
/// changed), a new one needs an existing, writable directory.
pub fn check_writable(path: &Path) -> Result<(), Error> {
    use std::io::{Error as IoError, ErrorKind};
    if path == Path::new("-") {
        return Ok(());
    }
    let fail = |source: IoError| Error::Unwritable {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(fail(IoError::new(
                ErrorKind::IsADirectory,
                "it is a directory",
            )));
        }
        Ok(_) => {
            // Opening for appending writes nothing and truncates nothing.
            return std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map(drop)
                .map_err(fail);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(|e| {
        fail(IoError::new(
            e.kind(),
            format!("its directory {} cannot be used: {e}", dir.display()),
        ))
    })?;
    if !meta.is_dir() {
        return Err(fail(IoError::new(
            ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        )));
    }
    #[cfg(unix)]
    {
        use rustix::fs::{Access, AtFlags, CWD, accessat};
        accessat(
            CWD,
            dir,
            Access::WRITE_OK | Access::EXEC_OK,
            AtFlags::EACCESS,
        )
        .map_err(|e| {
            fail(IoError::new(
                IoError::from(e).kind(),
                format!("its directory {} is not writable", dir.display()),
            ))
        })?;
    }
    Ok(())
}

/// Writes `text` to `path`.
pub fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Appends `text` to `path` (a CI job summary such as `GITHUB_STEP_SUMMARY`).
pub fn append_file(path: &Path, text: &str) -> Result<(), Error> {
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)
}

/// Reads a saved JSON result.
pub fn read_result(path: &Path) -> Result<crate::result::RunResult, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_paths_are_checked_without_leaving_anything() {
        let dir = std::env::temp_dir().join(format!("gapless-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let new = dir.join("new.html");
        assert!(check_writable(&new).is_ok());
        assert!(!new.exists(), "the check created the file");
        let old = dir.join("old.json");
        std::fs::write(&old, "keep").unwrap();
        assert!(check_writable(&old).is_ok());
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "keep");
        assert!(check_writable(Path::new("-")).is_ok());
        for bad in [dir.join("missing/r.html"), old.join("r.html"), dir.clone()] {
            let err = check_writable(&bad).unwrap_err();
            assert!(
                err.to_string().contains(&bad.display().to_string()),
                "{err}"
            );
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only old.json");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
