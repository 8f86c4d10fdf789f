//! How quantities are written in sentences (the verdict line, warnings, the progress line and the
//! text report): milliseconds, and counts of failing outcomes.

/// `120 ms`, `1.5 ms`, `2350 ms`, from milliseconds.
pub fn format_ms(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// `503: 40, reset: 2`: failing outcomes (status codes, error classes) by count, the largest
/// first, then by name.
pub fn breakdown(failures: impl IntoIterator<Item = (String, u64)>) -> String {
    let mut parts: Vec<(String, u64)> = failures.into_iter().filter(|&(_, n)| n > 0).collect();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    parts
        .iter()
        .map(|(name, n)| format!("{name}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_and_breakdowns() {
        assert_eq!(format_ms(120.4), "120 ms");
        assert_eq!(format_ms(1.5), "1.5 ms");
        assert_eq!(
            breakdown([
                ("reset".to_string(), 2),
                ("503".to_string(), 40),
                ("tls".to_string(), 0)
            ]),
            "503: 40, reset: 2"
        );
    }
}
