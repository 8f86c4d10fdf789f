//! Reports of a finished run: the Fortio-like text report and the JSON result.

pub mod json;
pub mod text;

use std::path::PathBuf;

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
}
