//! `--json FILE`: the result (`crate::result::RunResult`) as pretty JSON.

use crate::result::RunResult;

/// The result as pretty JSON, with a final newline.
pub fn render(result: &RunResult) -> String {
    let mut text = serde_json::to_string_pretty(result)
        .unwrap_or_else(|_| unreachable!("plain data with string keys always serializes"));
    text.push('\n');
    text
}
