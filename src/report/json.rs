//! `--json FILE`: the result (`crate::result::RunResult`) as pretty JSON; a shard's result
//! without `--json` as one line (`gapless merge -` picks such lines out of logs).

use crate::result::RunResult;

/// The result as pretty JSON, with a final newline.
pub fn render(result: &RunResult) -> String {
    let mut text = serde_json::to_string_pretty(result)
        .unwrap_or_else(|_| unreachable!("plain data with string keys always serializes"));
    text.push('\n');
    text
}

/// Writes [`render`]'s text to `path`, as it is serialized: a run with many endpoints has a
/// JSON of several MB, which is then never held in memory whole (BENCHMARKS.md, issue 18).
pub fn write(path: &std::path::Path, result: &RunResult) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer_pretty(&mut out, result)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The result as one line of JSON, with a final newline.
pub fn render_line(result: &RunResult) -> String {
    let mut text = serde_json::to_string(result)
        .unwrap_or_else(|_| unreachable!("plain data with string keys always serializes"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_as_serialized_holds_the_rendered_text() {
        let mut r = RunResult::default();
        r.requests.total = 12;
        r.timeline = vec![crate::result::Slot::default(); 3];
        let path = std::env::temp_dir().join(format!("gapless-json-{}.json", std::process::id()));
        write(&path, &r).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(written, render(&r));
        assert!(written.ends_with("}\n"));
    }
}
