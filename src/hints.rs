//! Diagnosis hints: likely causes of a failure signature, with the fix and the evidence.
//!
//! The rules are one table ([`RULES`]) over the JSON result ([`RunResult`]), so the same hints
//! come out of a live run and of `gapless report` on a saved result. Each rule returns the
//! evidence it found (a sentence with numbers), or nothing.

use crate::report::json::RunResult;

/// A hint: what probably happened, what to do, and why gapless thinks so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// Stable rule name.
    pub rule: &'static str,
    /// The likely cause.
    pub cause: &'static str,
    /// The fix.
    pub fix: &'static str,
    /// The numbers that triggered it.
    pub evidence: String,
}

/// One rule of the table.
pub struct Rule {
    /// Stable name.
    pub name: &'static str,
    /// The likely cause.
    pub cause: &'static str,
    /// The fix.
    pub fix: &'static str,
    /// The evidence, when the rule applies.
    pub check: fn(&RunResult) -> Option<String>,
}

/// Shortest availability gap that reads as "everything was down at once".
const LONG_GAP_MS: f64 = 500.0;
/// A slot p99 this many times the warmup's counts as a latency spike...
const SPIKE_FACTOR: f64 = 5.0;
/// ...if it is also above this.
const SPIKE_FLOOR_MS: f64 = 50.0;

/// The rules, in report order.
pub const RULES: &[Rule] = &[
    Rule {
        name: "keepalive-closed-at-termination",
        cause: "backends close kept-alive connections without draining when they terminate",
        fix: "shut down gracefully (stop accepting, finish in-flight requests, then close idle \
              keep-alive connections) and add a preStop sleep so the endpoint is removed first",
        check: reused_connection_breaks,
    },
    Rule {
        name: "endpoints-removed-late",
        cause: "endpoints stay listed after the process exited, so new connections reach pods \
                that are gone",
        fix: "add a preStop sleep longer than the endpoint propagation delay (kube-proxy, \
              Ingress, mesh), so a pod keeps serving until it is removed everywhere",
        check: refused_new_connections,
    },
    Rule {
        name: "mesh-config-propagation",
        cause: "the mesh configuration propagated late: Envoy routed to a destination it had no \
                ready endpoint for yet",
        fix: "route by subsets (DestinationRule), and switch the VirtualService only after the \
              new subset is ready and pushed to every sidecar",
        check: envoy_503s,
    },
    Rule {
        name: "untrusted-certificate",
        cause: "the target's TLS certificate is not trusted (self-signed, a private CA, or the \
                wrong host name)",
        fix: "trust its CA with --cacert FILE (a PEM bundle), or skip verification with \
              --insecure (tests only)",
        check: tls_failures,
    },
    Rule {
        name: "full-outage",
        cause: "every replica was down at once: the Recreate strategy, or maxUnavailable too high \
                for the replica count",
        fix: "use RollingUpdate with maxUnavailable 0 and maxSurge 1 or more (or a blue/green \
              switch), so ready replicas always serve",
        check: one_long_gap,
    },
    Rule {
        name: "cold-pods-in-rotation",
        cause: "new pods receive traffic before they are warm: readiness passes too early",
        fix: "make the readiness probe check real readiness (caches, pools, JIT warm), or add \
              minReadySeconds / slow start",
        check: latency_spike_without_failures,
    },
];

/// Every hint whose rule applies to `result`.
pub fn diagnose(result: &RunResult) -> Vec<Hint> {
    RULES
        .iter()
        .filter_map(|rule| {
            (rule.check)(result).map(|evidence| Hint {
                rule: rule.name,
                cause: rule.cause,
                fix: rule.fix,
                evidence,
            })
        })
        .collect()
}

fn count(map: &std::collections::BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

/// Where the failures were, in words: `during step "set image"`.
fn when(r: &RunResult) -> String {
    let steps: Vec<&str> = r
        .windows
        .iter()
        .flat_map(|w| w.steps.iter().chain(w.after_step.iter()))
        .map(String::as_str)
        .collect();
    let mut unique: Vec<&str> = Vec::new();
    for s in steps {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    match unique.as_slice() {
        [] => String::new(),
        [one] => format!(", around step {one:?}"),
        many => format!(
            ", around steps {}",
            many.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn reused_connection_breaks(r: &RunResult) -> Option<String> {
    let by = |class: &str| r.errors_by_connection.get(class).map_or(0, |c| c.reused);
    let broken = by("reset") + by("closed_before_response");
    (broken > 0).then(|| {
        format!(
            "{broken} of {} failures were resets or closes on kept-alive connections{}",
            r.requests.failed,
            when(r)
        )
    })
}

fn refused_new_connections(r: &RunResult) -> Option<String> {
    let refused = r
        .errors_by_connection
        .get("connect_refused")
        .map_or(0, |c| c.new);
    let stale = count(&r.failure_signatures, "envoy_upstream_connect_error");
    match (refused, stale) {
        (0, 0) => None,
        (n, 0) => Some(format!("{n} new connections were refused{}", when(r))),
        (0, m) => Some(format!(
            "{m} responses were the proxy's \"upstream connect error\": it still routed to \
             endpoints that refused{}",
            when(r)
        )),
        (n, m) => Some(format!(
            "{n} new connections were refused and {m} responses were the proxy's \"upstream \
             connect error\"{}",
            when(r)
        )),
    }
}

/// Envoy's own 503s that point at its configuration: `no healthy upstream` (the route names a
/// destination without endpoints) unless every endpoint was gone at once (a full outage), and
/// other 5xx with `server: envoy`. Its `upstream connect error` (an endpoint that refused) is the
/// evidence of [`refused_new_connections`] instead.
fn envoy_503s(r: &RunResult) -> Option<String> {
    let no_upstream = count(&r.failure_signatures, "envoy_no_healthy_upstream");
    let other = count(&r.failure_signatures, "envoy_other");
    if no_upstream > 0 && one_long_gap(r).is_none() {
        return Some(format!(
            "{no_upstream} responses were Envoy's \"no healthy upstream\": the route pointed at \
             a destination with no endpoint yet{}",
            when(r)
        ));
    }
    (other > 0 && reused_connection_breaks(r).is_none() && one_long_gap(r).is_none()).then(|| {
        format!(
            "{other} failed responses came from Envoy itself (server: envoy), with no pod \
             termination or full outage around them{}",
            when(r)
        )
    })
}

fn tls_failures(r: &RunResult) -> Option<String> {
    let tls = count(&r.errors, "tls");
    (tls > 0).then(|| format!("{tls} requests failed the TLS handshake (class tls)"))
}

fn one_long_gap(r: &RunResult) -> Option<String> {
    let longest = r.longest_gap_ms?;
    let gap = r.gaps.iter().find(|g| g.duration_ms == longest)?;
    let share = gap.failed as f64 / r.requests.failed.max(1) as f64;
    (longest >= LONG_GAP_MS && share >= 0.5).then(|| {
        format!(
            "one availability gap of {longest:.0} ms at +{:.1} s held {} of {} failures",
            gap.start_ms / 1000.0,
            gap.failed,
            r.requests.failed
        )
    })
}

fn latency_spike_without_failures(r: &RunResult) -> Option<String> {
    if r.requests.failed > 0 {
        return None;
    }
    let warmup = r.phases.iter().find(|p| p.name == "warmup")?;
    let in_warmup = |t: f64| t + r.load.slot_ms <= warmup.end_ms;
    let mut baseline: Vec<f64> = r
        .timeline
        .iter()
        .filter(|s| in_warmup(s.t_ms))
        .filter_map(|s| s.p99_ms)
        .collect();
    if baseline.is_empty() {
        return None;
    }
    baseline.sort_by(f64::total_cmp);
    let base = baseline[baseline.len() / 2];
    let (t, worst) = r
        .timeline
        .iter()
        .filter(|s| s.t_ms >= warmup.end_ms)
        .filter_map(|s| s.p99_ms.map(|p| (s.t_ms, p)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (worst > base * SPIKE_FACTOR && worst > SPIKE_FLOOR_MS).then(|| {
        format!(
            "p99 latency rose to {worst:.0} ms at +{:.1} s (warmup p99 {base:.1} ms) while no \
             request failed",
            t / 1000.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::json::{ByConnection, PhaseEntry, Slot, WindowEntry};

    fn rules(r: &RunResult) -> Vec<&'static str> {
        diagnose(r).iter().map(|h| h.rule).collect()
    }

    fn failed(n: u64) -> RunResult {
        let mut r = RunResult::default();
        r.requests.total = 1000;
        r.requests.failed = n;
        r
    }

    #[test]
    fn a_clean_run_has_no_hint() {
        let r = failed(0);
        assert!(diagnose(&r).is_empty());
    }

    #[test]
    fn resets_on_reused_connections() {
        let mut r = failed(5);
        r.errors_by_connection
            .insert("reset".into(), ByConnection { new: 0, reused: 5 });
        r.windows.push(WindowEntry {
            steps: vec!["set image".into()],
            ..WindowEntry::default()
        });
        let hints = diagnose(&r);
        assert_eq!(hints.len(), 1);
        assert_eq!(hints[0].rule, "keepalive-closed-at-termination");
        assert_eq!(
            hints[0].evidence,
            "5 of 5 failures were resets or closes on kept-alive connections, around step \"set image\""
        );
        // Resets on new connections are not this signature.
        let mut r = failed(5);
        r.errors_by_connection
            .insert("reset".into(), ByConnection { new: 5, reused: 0 });
        assert!(!rules(&r).contains(&"keepalive-closed-at-termination"));
    }

    #[test]
    fn refused_on_new_connections() {
        let mut r = failed(3);
        r.errors_by_connection
            .insert("connect_refused".into(), ByConnection { new: 3, reused: 0 });
        assert_eq!(rules(&r), vec!["endpoints-removed-late"]);
        let mut r = failed(3);
        r.errors_by_connection
            .insert("timeout".into(), ByConnection { new: 3, reused: 0 });
        assert!(rules(&r).is_empty());
    }

    #[test]
    fn envoy_signature() {
        let mut r = failed(20);
        r.codes.insert("503".into(), 20);
        r.failure_signatures
            .insert("envoy_no_healthy_upstream".into(), 20);
        assert_eq!(rules(&r), vec!["mesh-config-propagation"]);
        r.failure_signatures.clear();
        r.failure_signatures.insert("envoy_other".into(), 20);
        assert_eq!(rules(&r), vec!["mesh-config-propagation"]);
        r.failure_signatures.clear();
        assert!(
            rules(&r).is_empty(),
            "a plain application 503 is not a mesh problem"
        );
    }

    #[test]
    fn envoy_connect_errors_beside_terminations_point_at_the_terminations() {
        let mut r = failed(30);
        r.failure_signatures
            .insert("envoy_upstream_connect_error".into(), 25);
        r.errors_by_connection
            .insert("reset".into(), ByConnection { new: 0, reused: 5 });
        assert_eq!(
            rules(&r),
            vec!["keepalive-closed-at-termination", "endpoints-removed-late"]
        );
    }

    #[test]
    fn tls_failures_name_cacert_and_insecure() {
        let mut r = failed(4);
        r.errors.insert("tls".into(), 4);
        let hints = diagnose(&r);
        assert_eq!(hints.len(), 1);
        assert!(hints[0].fix.contains("--cacert FILE") && hints[0].fix.contains("--insecure"));
        r.errors = [("reset".to_string(), 4)].into();
        assert!(!rules(&r).contains(&"untrusted-certificate"));
    }

    #[test]
    fn one_long_full_gap() {
        let gap = WindowEntry {
            start_ms: 2000.0,
            end_ms: 3050.0,
            duration_ms: 1050.0,
            failed: 520,
            ..WindowEntry::default()
        };
        let mut r = failed(528);
        r.longest_gap_ms = Some(1050.0);
        r.gaps.push(gap.clone());
        let hints = diagnose(&r);
        assert_eq!(hints[0].rule, "full-outage");
        assert_eq!(
            hints[0].evidence,
            "one availability gap of 1050 ms at +2.0 s held 520 of 528 failures"
        );
        // Many short gaps are not a full outage.
        let mut r = failed(528);
        r.longest_gap_ms = Some(2.0);
        r.gaps.push(WindowEntry {
            duration_ms: 2.0,
            failed: 1,
            ..gap
        });
        assert!(rules(&r).is_empty());
    }

    fn slot(t_ms: f64, p99: f64) -> Slot {
        Slot {
            t_ms,
            p99_ms: Some(p99),
            ..Slot::default()
        }
    }

    #[test]
    fn latency_spike_with_no_failure() {
        let mut r = failed(0);
        r.load.slot_ms = 1000.0;
        r.phases.push(PhaseEntry {
            name: "warmup".into(),
            end_ms: 2000.0,
            ..PhaseEntry::default()
        });
        r.timeline = vec![
            slot(0.0, 2.0),
            slot(1000.0, 3.0),
            slot(2000.0, 250.0),
            slot(3000.0, 3.0),
        ];
        let hints = diagnose(&r);
        assert_eq!(hints.len(), 1);
        assert_eq!(hints[0].rule, "cold-pods-in-rotation");
        assert!(
            hints[0]
                .evidence
                .starts_with("p99 latency rose to 250 ms at +2.0 s")
        );
        // The same spike with failures is explained by the failures; a small rise is noise.
        r.requests.failed = 1;
        assert!(rules(&r).is_empty());
        r.requests.failed = 0;
        r.timeline[2] = slot(2000.0, 9.0);
        assert!(rules(&r).is_empty());
    }
}
