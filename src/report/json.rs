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

/// The result as one line of JSON, with a final newline.
pub fn render_line(result: &RunResult) -> String {
    let mut text = serde_json::to_string(result)
        .unwrap_or_else(|_| unreachable!("plain data with string keys always serializes"));
    text.push('\n');
    text
}
