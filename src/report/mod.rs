//! Reports of a finished run: the Fortio-like text report and the JSON result (from the run),
//! and the Markdown summary and JUnit XML (from the JSON result, so `gapless report` can
//! re-render a saved run), plus Fortio's JSON schema.

pub mod fortio;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod text;

use std::io::Write as _;
use std::path::{Path, PathBuf};

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
pub fn read_result(path: &Path) -> Result<json::RunResult, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Parse {
        path: path.to_path_buf(),
        source,
    })
}
