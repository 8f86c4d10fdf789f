//! Diagnosis hints: likely causes of a failure signature, with the fix and the evidence.
//!
//! The rules are one table ([`RULES`]) over the JSON result ([`RunResult`]), so the same hints
//! come out of a live run and of `gapless report` on a saved result. Each rule returns the
//! evidence it found (a sentence with numbers), or nothing.
//!
//! Each rule looks at one [`Scope`] of the failures. A rule about a rollout (terminations,
//! endpoints, mesh routes, strategies, readiness) looks only at the failures during or after
//! the rollout, and is off when no step ran: the target answering 503 throughout, or refusing
//! every connection in the warmup, is not evidence about a rollout. The failures before the
//! rollout (all of them, when no step ran) get plain statements of what happened instead (every
//! request failed, timeouts, refused connections), and problems of the target or of the
//! command line (redirects, TLS, h2c) are named whatever the rollout did. No fix suggests what
//! the user already did (`--cacert`, `--insecure`).
//!
//! The rollout begins where the `steps` phase does (the end of the warmup). A failure window
//! that began before it is evidence before the rollout, even if it lasted into it. Failure
//! counts by connection and by Envoy signature are known for the whole run only: in a run with
//! failures on both sides of the rollout's start (`--allow-warmup-errors`), each side's count is
//! capped by that side's failures of the matching class.

use std::collections::BTreeMap;

use crate::measure::outcome::{EnvoyReply, ErrorClass};
use crate::measure::recorder::Phase;
use crate::result::{ByConnection, RunResult, WindowEntry};

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

/// Which failures a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole run: a problem of the target or of the command line, rollout or not.
    Run,
    /// The failures before the rollout began; all of them when no step ran.
    BeforeRollout,
    /// The failures during or after the rollout; the rule is off when no step ran.
    Rollout,
}

/// One rule of the table.
pub struct Rule {
    /// Stable name.
    pub name: &'static str,
    /// The failures it looks at.
    pub scope: Scope,
    /// The likely cause.
    pub cause: &'static str,
    /// The fix.
    pub fix: &'static str,
    /// The evidence, when the rule applies.
    pub check: fn(&Evidence) -> Option<String>,
}

/// The failures of one [`Scope`], with the whole result beside them.
#[derive(Clone, Debug)]
pub struct Evidence<'a> {
    /// The whole result (target, load, phases, timeline, steps).
    pub result: &'a RunResult,
    /// Failed requests.
    pub failed: u64,
    /// Failing status codes and their counts.
    pub codes: BTreeMap<u16, u64>,
    /// Transport failure classes and their counts.
    pub errors: BTreeMap<ErrorClass, u64>,
    /// Per transport failure class, the split by connection.
    pub by_connection: BTreeMap<ErrorClass, ByConnection>,
    /// Envoy's own 5xx, by signature.
    pub signatures: BTreeMap<EnvoyReply, u64>,
    /// The failure windows.
    pub windows: Vec<&'a WindowEntry>,
}

/// Shortest availability gap that reads as "everything was down at once".
const LONG_GAP_MS: f64 = 500.0;
/// Fewest failures in a row, with nothing answered between them, that read as "nothing
/// listened" when they are refused connections (one stale endpoint among several gives
/// refusals interleaved with successes, or short runs of them).
const LISTENER_RUN: u64 = 5;
/// A slot p99 this many times the warmup's counts as a latency spike...
const SPIKE_FACTOR: f64 = 5.0;
/// ...if it is also above this.
const SPIKE_FLOOR_MS: f64 = 50.0;

/// The rules, in report order.
pub const RULES: &[Rule] = &[
    Rule {
        name: "keepalive-closed-at-termination",
        scope: Scope::Rollout,
        cause: "backends close kept-alive connections without draining when they terminate",
        fix: "shut down gracefully (stop accepting, finish in-flight requests, then close idle \
              keep-alive connections) and add a preStop sleep so the endpoint is removed first",
        check: reused_connection_breaks,
    },
    Rule {
        name: "endpoints-removed-late",
        scope: Scope::Rollout,
        cause: "endpoints stay listed after the process exited, so new connections reach pods \
                that are gone",
        fix: "add a preStop sleep longer than the endpoint propagation delay (kube-proxy, \
              Ingress, mesh), so a pod keeps serving until it is removed everywhere",
        check: refused_new_connections,
    },
    Rule {
        name: "listener-down",
        scope: Scope::Rollout,
        cause: "nothing listened at the target's address for a while: the server or proxy \
                there was stopped and started again rather than reloaded, or every endpoint \
                behind it was gone at once",
        fix: "reload in place (nginx -s reload, a seamless haproxy reload) or keep a second \
              instance listening while one restarts; for pods, keep ready replicas serving \
              (maxUnavailable 0, maxSurge 1 or more)",
        check: refused_in_a_row,
    },
    Rule {
        name: "mesh-config-propagation",
        scope: Scope::Rollout,
        cause: "the mesh configuration propagated late: Envoy routed to a destination it had no \
                ready endpoint for yet",
        fix: "route by subsets (DestinationRule), and switch the VirtualService only after the \
              new subset is ready and pushed to every sidecar",
        check: envoy_503s,
    },
    Rule {
        name: "full-outage",
        scope: Scope::Rollout,
        cause: "every replica was down at once: the Recreate strategy, or maxUnavailable too high \
                for the replica count",
        fix: "use RollingUpdate with maxUnavailable 0 and maxSurge 1 or more (or a blue/green \
              switch), so ready replicas always serve",
        check: one_long_gap_answered,
    },
    Rule {
        name: "cold-pods-in-rotation",
        scope: Scope::Rollout,
        cause: "new pods receive traffic before they are warm: readiness passes too early",
        fix: "make the readiness probe check real readiness (caches, pools, JIT warm), or add \
              minReadySeconds / slow start",
        check: latency_spike_without_failures,
    },
    Rule {
        name: "redirect-not-followed",
        scope: Scope::Run,
        cause: "the target answered with a redirect, and gapless does not follow redirects (each \
                request is one attempt, counted as it was answered)",
        fix: "load the final URL (the redirect's Location), or add the code to --ok-codes (e.g. \
              --ok-codes 200-299,301) if the redirect is the answer you expect",
        check: redirects,
    },
    Rule {
        name: "failing-throughout",
        scope: Scope::Run,
        cause: "the target answered every request with a failing status: it is unhealthy, or \
                the URL, method or headers are not what it serves",
        fix: "check the target by hand (curl -i URL); if this status is the answer you expect, \
              add it to --ok-codes",
        check: failing_status_throughout,
    },
    Rule {
        name: "h2c-not-spoken",
        scope: Scope::Run,
        cause: "the target does not speak HTTP/2 in cleartext (h2c with prior knowledge, what \
                --http2 sends to an http:// URL): most servers offer HTTP/2 only over TLS",
        fix: "drop --http2 to load it over HTTP/1.1, or load its https:// URL (HTTP/2 by ALPN)",
        check: h2c_refused,
    },
    Rule {
        name: "untrusted-certificate",
        scope: Scope::Run,
        cause: "the TLS handshake failed, most likely on the target's certificate: not trusted \
                (self-signed, a private CA) or not issued for the URL's host name",
        fix: "trust its CA with --cacert FILE (a PEM bundle), or skip verification with \
              --insecure (tests only); if the port does not serve TLS at all, load its http:// \
              URL",
        check: tls_failures_without_cacert,
    },
    Rule {
        name: "certificate-not-in-cacert",
        scope: Scope::Run,
        cause: "the target's TLS certificate did not verify with the --cacert bundle given: it \
                was not issued by a CA of the bundle, or not for the URL's host name",
        fix: "check that the bundle holds the CA that issued the target's certificate (or the \
              certificate itself) and that the URL's host is one of the certificate's names; \
              --insecure skips verification (tests only)",
        check: tls_failures_with_cacert,
    },
    Rule {
        name: "tls-handshake-failed",
        scope: Scope::Run,
        cause: "the TLS handshake failed although certificates are not verified (--insecure): \
                no common protocol version or cipher suite, or the port does not speak TLS",
        fix: "check that the port serves TLS and what it offers (openssl s_client -connect \
              HOST:PORT), or load its http:// URL",
        check: tls_failures_insecure,
    },
    Rule {
        name: "packets-dropped",
        scope: Scope::Run,
        cause: "the target answered nothing for a while and new connections were not even \
                accepted: packets to it were dropped (a node that vanished, a NetworkPolicy or \
                firewall rule applied too early, a stale endpoint on another node, a load \
                balancer draining the wrong backend)",
        fix: "find what dropped packets then (node events, NetworkPolicy or security-group \
              changes, endpoint and kube-proxy updates); a terminating pod should keep serving \
              until its endpoint is removed everywhere",
        check: stall_with_unanswered_connects,
    },
    Rule {
        name: "process-paused",
        scope: Scope::Run,
        cause: "the target accepted connections but answered nothing for a while: its process \
                was paused or frozen (SIGSTOP, a stop-the-world pause, an exhausted worker \
                pool) while the kernel kept accepting",
        fix: "find what froze the process (GC and thread dumps, CPU throttling by its cgroup, \
              a blocked worker pool); a readiness probe with a short timeout takes a frozen \
              instance out of rotation",
        check: stall_with_accepted_silent_connections,
    },
    Rule {
        name: "target-silent",
        scope: Scope::Run,
        cause: "the target answered nothing for a while, then answered the requests that had \
                waited: packets to it were dropped and retransmitted (a vanished node, a rule \
                applied too early, a stale endpoint), or its process was paused",
        fix: "find what happened at that time (node and network events, endpoint updates, the \
              target's own pauses); --max-stall sets how long a silence may last",
        check: stall_without_connection_evidence,
    },
    Rule {
        name: "timeouts",
        scope: Scope::BeforeRollout,
        cause: "the target answered slower than --timeout, or not at all",
        fix: "raise --timeout above the target's normal latency (and --connections if requests \
              waited for a free connection), or find out why it stalls",
        check: timeouts,
    },
    Rule {
        name: "connection-refused",
        scope: Scope::BeforeRollout,
        cause: "nothing accepted connections at the target's address: it was not running, or \
                the host or port is wrong",
        fix: "start the target (and wait until it listens) before the run, or fix the URL's \
              host and port",
        check: refused_before_rollout,
    },
];

/// A silence this long is worth a hint.
const HINTED_STALL_MS: f64 = 500.0;

/// The stalls worth a hint, with their evidence summed: `(stalls, longest, connect timeouts,
/// unanswered on new connections, unanswered on reused ones)`.
fn long_stalls(r: &RunResult) -> Option<(usize, &crate::result::StallEntry, u64, u64, u64)> {
    let long: Vec<_> = r
        .stalls
        .iter()
        .filter(|s| s.duration_ms >= HINTED_STALL_MS)
        .collect();
    let longest = long
        .iter()
        .copied()
        .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))?;
    Some((
        long.len(),
        longest,
        long.iter().map(|s| s.connect_timeouts).sum(),
        long.iter().map(|s| s.unanswered_new).sum(),
        long.iter().map(|s| s.unanswered_reused).sum(),
    ))
}

/// `the target answered nothing for 1520 ms at +3.2 s, during step "drop"`.
fn stall_sentence(count: usize, longest: &crate::result::StallEntry) -> String {
    let during = match longest.steps.as_slice() {
        [] => longest
            .after_step
            .as_ref()
            .map_or(String::new(), |s| format!(", after step {s:?}")),
        steps => format!(
            ", during {}",
            steps
                .iter()
                .map(|s| format!("step {s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let more = match count {
        1 => String::new(),
        n => format!(" (the longest of {n} stalls)"),
    };
    format!(
        "the target answered nothing for {:.0} ms at +{:.1} s{during}{more}",
        longest.duration_ms,
        longest.start_ms / 1000.0
    )
}

fn stall_with_unanswered_connects(e: &Evidence) -> Option<String> {
    let (count, longest, connects, new, reused) = long_stalls(e.result)?;
    (connects > 0 && new == 0).then(|| {
        format!(
            "{}; {connects} connect attempts timed out and {reused} requests on kept-alive \
             connections got no answer in it",
            stall_sentence(count, longest)
        )
    })
}

fn stall_with_accepted_silent_connections(e: &Evidence) -> Option<String> {
    let (count, longest, connects, new, _) = long_stalls(e.result)?;
    (new > 0 && connects == 0).then(|| {
        format!(
            "{}; {new} requests on connections it had just accepted got no answer",
            stall_sentence(count, longest)
        )
    })
}

fn stall_without_connection_evidence(e: &Evidence) -> Option<String> {
    let (count, longest, connects, new, _) = long_stalls(e.result)?;
    // No telling sign, or signs of both.
    ((connects > 0) == (new > 0)).then(|| {
        format!(
            "{}; {} requests waited across it and were answered late, {} failed",
            stall_sentence(count, longest),
            longest.held,
            longest.failed
        )
    })
}

/// Every hint whose rule applies to `result`.
pub fn diagnose(result: &RunResult) -> Vec<Hint> {
    let run = Evidence::run(result);
    let (before, rollout) = split(result, &run);
    RULES
        .iter()
        .filter_map(|rule| {
            let evidence = match rule.scope {
                Scope::Run => Some(&run),
                Scope::BeforeRollout => Some(&before),
                Scope::Rollout => rollout.as_ref(),
            }?;
            (rule.check)(evidence).map(|evidence| Hint {
                rule: rule.name,
                cause: rule.cause,
                fix: rule.fix,
                evidence,
            })
        })
        .collect()
}

/// When the rollout began (the start of the `steps` phase; in older results, the first step's
/// start), if a step ran.
pub fn rollout_start(r: &RunResult) -> Option<f64> {
    let first_step = r
        .steps
        .iter()
        .filter_map(|s| s.start_ms)
        .min_by(f64::total_cmp)?;
    Some(
        r.phases
            .iter()
            .find(|p| p.name == Phase::Steps)
            .map_or(first_step, |p| p.start_ms.min(first_step)),
    )
}

/// The evidence before the rollout and during or after it (`None` when no step ran).
fn split<'a>(r: &'a RunResult, run: &Evidence<'a>) -> (Evidence<'a>, Option<Evidence<'a>>) {
    let Some(start) = rollout_start(r) else {
        return (run.clone(), None);
    };
    let (before, after): (Vec<&WindowEntry>, Vec<&WindowEntry>) =
        r.windows.iter().partition(|w| w.start_ms < start);
    if before.is_empty() {
        return (Evidence::windows(r, run, Vec::new()), Some(run.clone()));
    }
    (
        Evidence::windows(r, run, before),
        Some(Evidence::windows(r, run, after)),
    )
}

impl<'a> Evidence<'a> {
    /// Every failure of the run, with the exact counts of the result.
    fn run(r: &'a RunResult) -> Evidence<'a> {
        Evidence {
            result: r,
            failed: r.requests.failed,
            codes: r
                .codes
                .iter()
                .map(|(&c, &n)| (c, n))
                .filter(|&(c, _)| !r.load.ok_codes.contains(c))
                .collect(),
            errors: r.errors.clone(),
            by_connection: r.errors_by_connection.clone(),
            signatures: r.failure_signatures.clone(),
            windows: r.windows.iter().collect(),
        }
    }

    /// The failures inside `windows`; counts known only for the whole run (`run`) are capped
    /// by the matching failures of these windows.
    fn windows(
        r: &'a RunResult,
        run: &Evidence<'a>,
        windows: Vec<&'a WindowEntry>,
    ) -> Evidence<'a> {
        let mut codes = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for w in &windows {
            for (&code, n) in &w.codes {
                *codes.entry(code).or_insert(0) += n;
            }
            for (&class, n) in &w.errors {
                *errors.entry(class).or_insert(0) += n;
            }
        }
        let by_connection = errors
            .iter()
            .map(|(class, &n)| {
                let all = run.by_connection.get(class).cloned().unwrap_or_default();
                let split = ByConnection {
                    new: all.new.min(n),
                    reused: all.reused.min(n),
                };
                (*class, split)
            })
            .collect();
        let server_errors: u64 = codes
            .iter()
            .filter(|&(&c, _)| (500..600).contains(&c))
            .map(|(_, n)| n)
            .sum();
        let signatures = run
            .signatures
            .iter()
            .map(|(&k, &n)| (k, n.min(server_errors)))
            .filter(|&(_, n)| n > 0)
            .collect();
        Evidence {
            result: r,
            failed: windows.iter().map(|w| w.failed).sum(),
            codes,
            errors,
            by_connection,
            signatures,
            windows,
        }
    }

    fn error(&self, class: ErrorClass) -> u64 {
        self.errors.get(&class).copied().unwrap_or(0)
    }

    fn signature(&self, key: EnvoyReply) -> u64 {
        self.signatures.get(&key).copied().unwrap_or(0)
    }

    /// Failing responses with a 3xx status.
    fn redirects(&self) -> u64 {
        self.codes
            .iter()
            .filter(|&(&c, _)| (300..400).contains(&c))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Where the failures were, in words: `, around step "set image"`.
fn when(e: &Evidence) -> String {
    let steps: Vec<&str> = e
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

fn reused_connection_breaks(e: &Evidence) -> Option<String> {
    let by = |class: ErrorClass| e.by_connection.get(&class).map_or(0, |c| c.reused);
    let broken = by(ErrorClass::Reset) + by(ErrorClass::ClosedBeforeResponse);
    (broken > 0).then(|| {
        format!(
            "{broken} of {} failures were resets or closes on kept-alive connections{}",
            e.failed,
            when(e)
        )
    })
}

fn refused(w: &WindowEntry) -> u64 {
    w.errors
        .get(&ErrorClass::ConnectRefused)
        .copied()
        .unwrap_or(0)
}

/// A run of refused connections with nothing answered in between: nothing listened.
fn refusal_gap(w: &WindowEntry) -> bool {
    w.ok == 0 && w.failed >= LISTENER_RUN && refused(w) * 2 >= w.failed
}

/// The refusal gaps, when they hold at least half of the refused connections (else the
/// refusals are scattered among answers: stale endpoints among live ones).
fn refusal_gaps<'a>(e: &Evidence<'a>) -> Option<Vec<&'a WindowEntry>> {
    let gaps: Vec<&WindowEntry> = e
        .windows
        .iter()
        .copied()
        .filter(|w| refusal_gap(w))
        .collect();
    let in_gaps: u64 = gaps.iter().map(|w| refused(w)).sum();
    (in_gaps > 0 && in_gaps * 2 >= e.error(ErrorClass::ConnectRefused)).then_some(gaps)
}

fn refused_new_connections(e: &Evidence) -> Option<String> {
    let refused = if refusal_gaps(e).is_some() {
        0
    } else {
        e.by_connection
            .get(&ErrorClass::ConnectRefused)
            .map_or(0, |c| c.new)
    };
    let stale = e.signature(EnvoyReply::ConnectFailure);
    match (refused, stale) {
        (0, 0) => None,
        (n, 0) => Some(format!("{n} new connections were refused{}", when(e))),
        (0, m) => Some(format!(
            "{m} responses were the proxy's \"upstream connect error\": it still routed to \
             endpoints that refused{}",
            when(e)
        )),
        (n, m) => Some(format!(
            "{n} new connections were refused and {m} responses were the proxy's \"upstream \
             connect error\"{}",
            when(e)
        )),
    }
}

fn refused_in_a_row(e: &Evidence) -> Option<String> {
    let gaps = refusal_gaps(e)?;
    let longest = gaps
        .iter()
        .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))?;
    let refused_in_gaps: u64 = gaps.iter().map(|w| refused(w)).sum();
    let spans = match gaps.len() {
        1 => String::new(),
        n => format!("; {n} such spans"),
    };
    Some(format!(
        "every connection attempt for {:.0} ms from +{:.1} s was refused, with no answer in \
         between ({refused_in_gaps} refused{spans}){}",
        longest.duration_ms,
        longest.start_ms / 1000.0,
        when(e)
    ))
}

/// Envoy's own 503s that point at its configuration: `no healthy upstream` (the route names a
/// destination without endpoints) unless every endpoint was gone at once (a full outage), and
/// other 5xx with `server: envoy`. Its `upstream connect error` (an endpoint that refused) is the
/// evidence of [`refused_new_connections`] instead.
fn envoy_503s(e: &Evidence) -> Option<String> {
    let no_upstream = e.signature(EnvoyReply::NoHealthyUpstream);
    let other = e.signature(EnvoyReply::Other);
    if no_upstream > 0 && one_long_gap(e).is_none() {
        return Some(format!(
            "{no_upstream} responses were Envoy's \"no healthy upstream\": the route pointed at \
             a destination with no endpoint yet{}",
            when(e)
        ));
    }
    (other > 0 && reused_connection_breaks(e).is_none() && one_long_gap(e).is_none()).then(|| {
        format!(
            "{other} failed responses came from Envoy itself (server: envoy), with no pod \
             termination or full outage around them{}",
            when(e)
        )
    })
}

/// The longest availability gap, if it is long and holds most of the failures.
fn one_long_gap<'a>(e: &Evidence<'a>) -> Option<&'a WindowEntry> {
    let gap = e
        .windows
        .iter()
        .copied()
        .filter(|w| w.ok == 0)
        .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))?;
    let share = gap.failed as f64 / e.failed.max(1) as f64;
    (gap.duration_ms >= LONG_GAP_MS && share >= 0.5).then_some(gap)
}

/// A long gap in which the target's address still answered (with errors): every replica behind
/// it was down. A gap of refused connections is [`refused_in_a_row`]'s.
fn one_long_gap_answered(e: &Evidence) -> Option<String> {
    let gap = one_long_gap(e).filter(|g| !refusal_gap(g))?;
    Some(format!(
        "one availability gap of {:.0} ms at +{:.1} s held {} of {} failures{}",
        gap.duration_ms,
        gap.start_ms / 1000.0,
        gap.failed,
        e.failed,
        when(e)
    ))
}

/// A p99 far above the warmup's with no failure. A stall long enough for a hint of its own
/// ([`HINTED_STALL_MS`]) is what raised the p99 then (the requests it held were answered late):
/// that hint names it, not this one.
fn latency_spike_without_failures(e: &Evidence) -> Option<String> {
    let r = e.result;
    if r.requests.failed > 0 || long_stalls(r).is_some() {
        return None;
    }
    let warmup = r.phases.iter().find(|p| p.name == Phase::Warmup)?;
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

fn redirects(e: &Evidence) -> Option<String> {
    let n = e.redirects();
    (n > 0).then(|| {
        let codes = e
            .codes
            .iter()
            .filter(|&(&c, _)| (300..400).contains(&c))
            .map(|(&c, &n)| (crate::measure::code::Shown(c).to_string(), n));
        format!(
            "{n} of {} failures were redirects ({}), not followed",
            e.failed,
            crate::units::breakdown(codes)
        )
    })
}

fn failing_status_throughout(e: &Evidence) -> Option<String> {
    let r = e.result;
    let statuses: u64 = e.codes.values().sum();
    let throughout = r.requests.ok == 0
        && r.requests.failed > 0
        && statuses * 2 >= r.requests.failed
        && e.redirects() < statuses;
    throughout.then(|| {
        let answered = match e.codes.iter().collect::<Vec<_>>().as_slice() {
            [(code, _)] => crate::measure::code::Shown(**code).to_string(),
            _ => crate::units::breakdown(
                e.codes
                    .iter()
                    .map(|(&c, &n)| (crate::measure::code::Shown(c).to_string(), n)),
            ),
        };
        format!(
            "none of the {} requests succeeded: the target answered {answered} throughout \
             ({statuses} failing responses)",
            r.requests.total
        )
    })
}

fn h2c_refused(e: &Evidence) -> Option<String> {
    let r = e.result;
    let cleartext_h2 = r.target.http2 && r.target.url.starts_with("http://");
    let broken = e.error(ErrorClass::Protocol)
        + e.error(ErrorClass::ClosedBeforeResponse)
        + e.error(ErrorClass::Reset);
    (cleartext_h2 && r.requests.ok == 0 && broken > 0).then(|| {
        let classes = [
            ErrorClass::Protocol,
            ErrorClass::ClosedBeforeResponse,
            ErrorClass::Reset,
        ]
        .into_iter()
        .filter(|&c| e.error(c) > 0)
        .map(|c| (c.to_string(), e.error(c)));
        format!(
            "no HTTP/2 request to the http:// URL succeeded: {broken} failed on the connection \
             ({})",
            crate::units::breakdown(classes)
        )
    })
}

fn tls_evidence(e: &Evidence) -> Option<String> {
    let tls = e.error(ErrorClass::Tls);
    (tls > 0).then(|| format!("{tls} requests failed the TLS handshake (class tls)"))
}

fn tls_failures_without_cacert(e: &Evidence) -> Option<String> {
    let t = &e.result.target;
    if t.cacert || t.insecure {
        return None;
    }
    tls_evidence(e)
}

fn tls_failures_with_cacert(e: &Evidence) -> Option<String> {
    let t = &e.result.target;
    if !t.cacert || t.insecure {
        return None;
    }
    tls_evidence(e)
}

fn tls_failures_insecure(e: &Evidence) -> Option<String> {
    if !e.result.target.insecure {
        return None;
    }
    tls_evidence(e)
}

fn timeouts(e: &Evidence) -> Option<String> {
    let r = e.result;
    let n = e.error(ErrorClass::Timeout);
    if n == 0 {
        return None;
    }
    let mut evidence = format!(
        "{n} requests got no answer within the --timeout of {}",
        format_ms(r.load.timeout_ms)
    );
    if r.requests.unsent > 0 {
        evidence.push_str(&format!(
            " ({} of the run's timeouts were never sent: every connection was busy)",
            r.requests.unsent
        ));
    }
    if r.latency_ms.count > 0 {
        evidence.push_str(&format!(
            "; the {} responses that came had a p99 of {}",
            r.latency_ms.count,
            format_ms(r.latency_ms.p99)
        ));
    }
    Some(evidence)
}

fn refused_before_rollout(e: &Evidence) -> Option<String> {
    let n = e.error(ErrorClass::ConnectRefused);
    (n > 0).then(|| {
        let before = if rollout_start(e.result).is_some() {
            " before the rollout began"
        } else {
            ""
        };
        format!("{n} connection attempts were refused{before}")
    })
}

/// `50 ms`, `1.5 s`.
fn format_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{} ms", round(ms))
    } else {
        format!("{} s", round(ms / 1000.0))
    }
}

/// At most three decimals, trailing zeros dropped.
fn round(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{PhaseEntry, Slot, StallEntry, StepEntry};

    fn rules(r: &RunResult) -> Vec<&'static str> {
        diagnose(r).iter().map(|h| h.rule).collect()
    }

    fn hint(r: &RunResult, rule: &str) -> Hint {
        diagnose(r)
            .into_iter()
            .find(|h| h.rule == rule)
            .unwrap_or_else(|| panic!("no {rule} hint in {:?}", rules(r)))
    }

    /// A run without steps: 1000 requests, `n` of them failed, all codes 200 otherwise.
    fn failed(n: u64) -> RunResult {
        let mut r = RunResult::default();
        r.requests.total = 1000;
        r.requests.failed = n;
        r.requests.ok = 1000 - n;
        r.load.ok_codes = "200-299".parse().unwrap();
        r.load.timeout_ms = 3000.0;
        if n < 1000 {
            r.codes.insert(200, 1000 - n);
        }
        r
    }

    /// The same run with a rollout: warmup 0-1 s, step "set image" 1-2 s, cooldown 2-3 s.
    fn rolled_out(n: u64) -> RunResult {
        let mut r = failed(n);
        for (name, start_ms, end_ms) in [
            (Phase::Warmup, 0.0, 1000.0),
            (Phase::Steps, 1000.0, 2000.0),
            (Phase::Cooldown, 2000.0, 3000.0),
        ] {
            r.phases.push(PhaseEntry {
                name,
                start_ms,
                end_ms,
                ..PhaseEntry::default()
            });
        }
        r.steps.push(StepEntry {
            name: "set image".into(),
            status: crate::rollout::StepStatus::Ok,
            start_ms: Some(1002.0),
            end_ms: Some(2000.0),
            ..StepEntry::default()
        });
        r
    }

    /// A window of `failed` failures of `class` (an error class, or a status code) at `start_ms`;
    /// `during` names the step running then.
    fn window(
        start_ms: f64,
        duration_ms: f64,
        failed: u64,
        class: &str,
        during: bool,
    ) -> WindowEntry {
        let mut w = WindowEntry {
            start_ms,
            end_ms: start_ms + duration_ms,
            duration_ms,
            failed,
            steps: if during {
                vec!["set image".into()]
            } else {
                Vec::new()
            },
            ..WindowEntry::default()
        };
        match class.parse::<u16>() {
            Ok(code) => w.codes.insert(code, failed),
            Err(_) => w
                .errors
                .insert(ErrorClass::from_name(class).unwrap(), failed),
        };
        w
    }

    /// Adds `w` to the windows (and to the gaps, with the longest gap, when nothing succeeded).
    fn add(r: &mut RunResult, w: WindowEntry) {
        if w.ok == 0 {
            r.gaps.push(w.clone());
            r.longest_gap_ms = Some(r.longest_gap_ms.unwrap_or(0.0).max(w.duration_ms));
        }
        r.windows.push(w);
    }

    fn errors(r: &mut RunResult, class: &str, new: u64, reused: u64) {
        let class = ErrorClass::from_name(class).unwrap();
        r.errors.insert(class, new + reused);
        r.errors_by_connection
            .insert(class, ByConnection { new, reused });
    }

    #[test]
    fn a_clean_run_has_no_hint() {
        assert!(diagnose(&failed(0)).is_empty());
        assert!(diagnose(&rolled_out(0)).is_empty());
    }

    #[test]
    fn the_rollout_begins_with_the_steps_phase_or_the_first_step() {
        assert_eq!(rollout_start(&failed(0)), None);
        assert_eq!(rollout_start(&rolled_out(0)), Some(1000.0));
        // A run whose warmup failed: its steps never started, whatever the phases say.
        let mut r = rolled_out(0);
        r.steps[0].start_ms = None;
        assert_eq!(rollout_start(&r), None);
        // An older result, without a steps phase.
        let mut r = rolled_out(0);
        r.phases.clear();
        assert_eq!(rollout_start(&r), Some(1002.0));
    }

    #[test]
    fn resets_on_reused_connections_during_a_step() {
        let mut r = rolled_out(5);
        errors(&mut r, "reset", 0, 5);
        add(&mut r, window(1500.0, 10.0, 5, "reset", true));
        let hints = diagnose(&r);
        assert_eq!(rules(&r), ["keepalive-closed-at-termination"]);
        assert_eq!(
            hints[0].evidence,
            "5 of 5 failures were resets or closes on kept-alive connections, around step \"set image\""
        );
        // Resets on new connections are not this signature.
        let mut r = rolled_out(5);
        errors(&mut r, "reset", 5, 0);
        add(&mut r, window(1500.0, 10.0, 5, "reset", true));
        assert!(!rules(&r).contains(&"keepalive-closed-at-termination"));
        // Nor are resets in a run without steps: nothing terminated.
        let mut r = failed(5);
        errors(&mut r, "reset", 0, 5);
        add(&mut r, window(1500.0, 10.0, 5, "reset", false));
        assert!(rules(&r).is_empty(), "{:?}", rules(&r));
    }

    #[test]
    fn refusals_among_answers_during_a_step_are_stale_endpoints() {
        let mut r = rolled_out(6);
        errors(&mut r, "connect_refused", 6, 0);
        for k in 0..3 {
            add(
                &mut r,
                window(
                    1100.0 + 10.0 * f64::from(k),
                    2.0,
                    2,
                    "connect_refused",
                    true,
                ),
            );
        }
        assert_eq!(rules(&r), ["endpoints-removed-late"]);
        assert_eq!(
            hint(&r, "endpoints-removed-late").evidence,
            "6 new connections were refused, around step \"set image\""
        );
        // The same refusals without a step: a plain statement, no preStop advice.
        let mut r = failed(6);
        errors(&mut r, "connect_refused", 6, 0);
        for k in 0..3 {
            add(
                &mut r,
                window(
                    100.0 + 10.0 * f64::from(k),
                    2.0,
                    2,
                    "connect_refused",
                    false,
                ),
            );
        }
        assert_eq!(rules(&r), ["connection-refused"]);
        assert_eq!(
            hint(&r, "connection-refused").evidence,
            "6 connection attempts were refused"
        );
        // Timeouts are not refusals.
        let mut r = rolled_out(3);
        errors(&mut r, "timeout", 3, 0);
        add(&mut r, window(1100.0, 2.0, 3, "timeout", true));
        assert!(rules(&r).is_empty(), "{:?}", rules(&r));
    }

    #[test]
    fn refusals_in_a_row_during_a_step_are_a_listener_down() {
        // nginx stopped and started again: 509 ms of refusals, nothing answered.
        let mut r = rolled_out(255);
        errors(&mut r, "connect_refused", 254, 0);
        errors(&mut r, "reset", 0, 1);
        let mut gap = window(1016.0, 509.0, 255, "connect_refused", true);
        gap.errors
            .insert(ErrorClass::from_name("connect_refused").unwrap(), 254);
        gap.errors
            .insert(ErrorClass::from_name("reset").unwrap(), 1);
        add(&mut r, gap);
        let found = rules(&r);
        assert!(found.contains(&"listener-down"), "{found:?}");
        assert!(!found.contains(&"endpoints-removed-late"), "{found:?}");
        assert!(!found.contains(&"full-outage"), "{found:?}");
        assert_eq!(
            hint(&r, "listener-down").evidence,
            "every connection attempt for 509 ms from +1.0 s was refused, with no answer in \
             between (254 refused), around step \"set image\""
        );
        // A short run of refusals among many scattered ones is still stale endpoints.
        let mut r = rolled_out(26);
        errors(&mut r, "connect_refused", 26, 0);
        add(&mut r, window(1100.0, 10.0, 5, "connect_refused", true));
        for k in 0..7 {
            add(
                &mut r,
                window(
                    1200.0 + 10.0 * f64::from(k),
                    2.0,
                    3,
                    "connect_refused",
                    true,
                ),
            );
        }
        assert_eq!(rules(&r), ["endpoints-removed-late"]);
    }

    #[test]
    fn envoy_signature_during_a_step() {
        let mut r = rolled_out(20);
        r.codes.insert(503, 20);
        add(&mut r, window(1200.0, 40.0, 20, "503", true));
        r.failure_signatures
            .insert(EnvoyReply::NoHealthyUpstream, 20);
        assert_eq!(rules(&r), ["mesh-config-propagation"]);
        r.failure_signatures.clear();
        r.failure_signatures.insert(EnvoyReply::Other, 20);
        assert_eq!(rules(&r), ["mesh-config-propagation"]);
        r.failure_signatures.clear();
        assert!(
            rules(&r).is_empty(),
            "a plain application 503 is not a mesh problem"
        );
        // Envoy's 503s without a rollout say nothing about a route switch.
        let mut r = failed(20);
        r.codes.insert(503, 20);
        add(&mut r, window(200.0, 40.0, 20, "503", false));
        r.failure_signatures
            .insert(EnvoyReply::NoHealthyUpstream, 20);
        assert!(rules(&r).is_empty(), "{:?}", rules(&r));
    }

    #[test]
    fn envoy_connect_errors_beside_terminations_point_at_the_terminations() {
        let mut r = rolled_out(30);
        r.codes.insert(503, 25);
        r.failure_signatures.insert(EnvoyReply::ConnectFailure, 25);
        errors(&mut r, "reset", 0, 5);
        let mut w = window(1200.0, 60.0, 30, "503", true);
        w.codes.insert(503, 25);
        w.errors.insert(ErrorClass::from_name("reset").unwrap(), 5);
        add(&mut r, w);
        assert_eq!(
            rules(&r),
            ["keepalive-closed-at-termination", "endpoints-removed-late"]
        );
    }

    #[test]
    fn one_long_full_gap_during_a_step() {
        let mut r = rolled_out(528);
        r.codes.insert(503, 528);
        add(&mut r, window(2000.0, 1050.0, 520, "503", false));
        r.windows[0].after_step = Some("set image".into());
        add(&mut r, window(3200.0, 4.0, 8, "503", false));
        assert_eq!(rules(&r), ["full-outage"]);
        assert_eq!(
            hint(&r, "full-outage").evidence,
            "one availability gap of 1050 ms at +2.0 s held 520 of 528 failures, around step \
             \"set image\""
        );
        // Many short gaps are not a full outage.
        let mut r = rolled_out(10);
        for k in 0..10 {
            add(
                &mut r,
                window(1100.0 + 10.0 * f64::from(k), 2.0, 1, "503", true),
            );
        }
        assert!(rules(&r).is_empty(), "{:?}", rules(&r));
        // Nor is a long gap without a rollout (a target down throughout, or timing out).
        let mut r = failed(1000);
        r.codes.clear();
        r.codes.insert(503, 1000);
        add(&mut r, window(0.0, 10_000.0, 1000, "503", false));
        assert_eq!(rules(&r), ["failing-throughout"]);
        // Nor one that began before the rollout (--allow-warmup-errors), lasting into it.
        let mut r = rolled_out(1000);
        r.codes.clear();
        r.codes.insert(503, 1000);
        add(&mut r, window(0.0, 3000.0, 1000, "503", true));
        assert_eq!(rules(&r), ["failing-throughout"]);
    }

    #[test]
    fn counts_before_and_after_the_rollout_are_apart() {
        // --allow-warmup-errors: 10 refusals in the warmup, then a step resets 4 kept-alive
        // connections and 2 new ones.
        let mut r = rolled_out(16);
        errors(&mut r, "connect_refused", 10, 0);
        errors(&mut r, "reset", 2, 4);
        for k in 0..5 {
            add(
                &mut r,
                window(100.0 * f64::from(k), 2.0, 2, "connect_refused", false),
            );
        }
        add(&mut r, window(1500.0, 12.0, 6, "reset", true));
        assert_eq!(
            rules(&r),
            ["keepalive-closed-at-termination", "connection-refused"]
        );
        assert_eq!(
            hint(&r, "keepalive-closed-at-termination").evidence,
            "4 of 6 failures were resets or closes on kept-alive connections, around step \"set image\""
        );
        assert_eq!(
            hint(&r, "connection-refused").evidence,
            "10 connection attempts were refused before the rollout began"
        );
    }

    #[test]
    fn a_target_unreachable_in_the_warmup_gets_no_rollout_advice() {
        // Exit 4: every connection refused during the warmup, the step never ran.
        let mut r = rolled_out(100);
        r.codes.clear();
        r.requests.ok = 0;
        r.requests.total = 100;
        r.steps[0].start_ms = None;
        r.steps[0].end_ms = None;
        r.steps[0].status = crate::rollout::StepStatus::Skipped;
        r.phases.truncate(1);
        errors(&mut r, "connect_refused", 100, 0);
        add(&mut r, window(0.0, 1000.0, 100, "connect_refused", false));
        assert_eq!(rules(&r), ["connection-refused"]);
    }

    #[test]
    fn redirects_are_named_and_not_followed() {
        let mut r = failed(50);
        r.codes.clear();
        r.requests.ok = 0;
        r.requests.total = 50;
        r.codes.insert(301, 50);
        add(&mut r, window(0.0, 1000.0, 50, "301", false));
        assert_eq!(rules(&r), ["redirect-not-followed"]);
        let h = hint(&r, "redirect-not-followed");
        assert_eq!(
            h.evidence,
            "50 of 50 failures were redirects (301: 50), not followed"
        );
        assert!(h.fix.contains("--ok-codes"), "{}", h.fix);
        // A redirect that --ok-codes accepts is no failure.
        let mut r = failed(0);
        r.load.ok_codes = "200-299,301".parse().unwrap();
        r.codes.insert(301, 10);
        assert!(rules(&r).is_empty());
    }

    #[test]
    fn a_failing_status_throughout_is_stated() {
        let mut r = failed(1000);
        r.codes.insert(503, 1000);
        add(&mut r, window(0.0, 10_000.0, 1000, "503", false));
        assert_eq!(rules(&r), ["failing-throughout"]);
        assert_eq!(
            hint(&r, "failing-throughout").evidence,
            "none of the 1000 requests succeeded: the target answered 503 throughout (1000 \
             failing responses)"
        );
        // Some successes: not "throughout".
        let mut r = failed(500);
        r.codes.insert(503, 500);
        add(&mut r, window(0.0, 5000.0, 500, "503", false));
        assert!(rules(&r).is_empty(), "{:?}", rules(&r));
    }

    #[test]
    fn h2c_to_a_server_without_it() {
        let mut r = failed(20);
        r.requests.ok = 0;
        r.requests.total = 20;
        r.codes.clear();
        r.target.url = "http://127.0.0.1:8080/".into();
        r.target.http2 = true;
        errors(&mut r, "protocol", 20, 0);
        add(&mut r, window(0.0, 1000.0, 20, "protocol", false));
        assert_eq!(rules(&r), ["h2c-not-spoken"]);
        assert_eq!(
            hint(&r, "h2c-not-spoken").evidence,
            "no HTTP/2 request to the http:// URL succeeded: 20 failed on the connection \
             (protocol: 20)"
        );
        // Over TLS, or over HTTP/1.1, it is something else.
        r.target.url = "https://127.0.0.1:8443/".into();
        assert!(rules(&r).is_empty());
        r.target.url = "http://127.0.0.1:8080/".into();
        r.target.http2 = false;
        assert!(rules(&r).is_empty());
    }

    #[test]
    fn tls_hints_never_suggest_what_was_given() {
        let mut r = failed(4);
        errors(&mut r, "tls", 4, 0);
        add(&mut r, window(0.0, 10.0, 4, "tls", false));
        assert_eq!(rules(&r), ["untrusted-certificate"]);
        let fix = hint(&r, "untrusted-certificate").fix;
        assert!(
            fix.contains("--cacert FILE") && fix.contains("--insecure"),
            "{fix}"
        );
        // With --cacert: the bundle did not verify it; no "trust its CA with --cacert".
        r.target.cacert = true;
        assert_eq!(rules(&r), ["certificate-not-in-cacert"]);
        for h in diagnose(&r) {
            assert!(!h.fix.contains("with --cacert"), "{}", h.fix);
        }
        // With --insecure (and with both): nothing about trust, no --insecure.
        for cacert in [false, true] {
            r.target.cacert = cacert;
            r.target.insecure = true;
            assert_eq!(rules(&r), ["tls-handshake-failed"]);
            for h in diagnose(&r) {
                assert!(
                    !h.fix.contains("--insecure") && !h.fix.contains("--cacert"),
                    "{}",
                    h.fix
                );
            }
        }
        // Other failures are not TLS ones.
        let mut r = failed(4);
        errors(&mut r, "reset", 4, 0);
        assert!(
            !rules(&r)
                .iter()
                .any(|n| n.contains("tls") || n.contains("cert"))
        );
    }

    #[test]
    fn timeouts_without_a_rollout_are_stated() {
        let mut r = failed(100);
        r.load.timeout_ms = 50.0;
        errors(&mut r, "timeout", 100, 0);
        r.latency_ms.count = 900;
        r.latency_ms.p99 = 48.5;
        add(&mut r, window(0.0, 10_000.0, 100, "timeout", false));
        r.windows[0].ok = 900;
        r.gaps.clear();
        r.longest_gap_ms = None;
        assert_eq!(rules(&r), ["timeouts"]);
        assert_eq!(
            hint(&r, "timeouts").evidence,
            "100 requests got no answer within the --timeout of 50 ms; the 900 responses that \
             came had a p99 of 48.5 ms"
        );
        // Timeouts during a rollout are not a plain timeout problem.
        let mut r = rolled_out(5);
        errors(&mut r, "timeout", 0, 5);
        add(&mut r, window(1500.0, 20.0, 5, "timeout", true));
        assert!(rules(&r).is_empty(), "{:?}", rules(&r));
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
        let mut r = rolled_out(0);
        r.load.slot_ms = 1000.0;
        r.phases[0].end_ms = 2000.0;
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
        // No step ran (the run was interrupted in its warmup): no rollout to blame.
        r.steps[0].start_ms = None;
        assert!(rules(&r).is_empty());
        r.steps[0].start_ms = Some(2000.0);
        // The same spike with failures is explained by the failures; a small rise is noise.
        r.requests.failed = 1;
        assert!(!rules(&r).contains(&"cold-pods-in-rotation"));
        r.requests.failed = 0;
        r.timeline[2] = slot(2000.0, 9.0);
        assert!(rules(&r).is_empty());
    }

    /// A stall of `duration_ms` from `start_ms` during step "set image", with no evidence from
    /// the connections yet.
    fn stall(start_ms: f64, duration_ms: f64, held: u64) -> StallEntry {
        StallEntry {
            start_ms,
            end_ms: start_ms + duration_ms,
            duration_ms,
            held,
            steps: vec!["set image".into()],
            ..StallEntry::default()
        }
    }

    /// Adds `s` to the stalls, with the longest silence.
    fn add_stall(r: &mut RunResult, s: StallEntry) {
        r.longest_stall_ms = r.longest_stall_ms.max(s.duration_ms);
        r.stalls_total += 1;
        r.stalls.push(s);
    }

    /// The stall hints given, in order.
    fn stall_rules(r: &RunResult) -> Vec<&'static str> {
        rules(r)
            .into_iter()
            .filter(|n| ["packets-dropped", "process-paused", "target-silent"].contains(n))
            .collect()
    }

    #[test]
    fn a_latency_spike_from_a_stall_is_the_stall_not_a_cold_pod() {
        // A target silent for 1.5 s during the step, every request answered in the end: the
        // requests it held were answered up to 1.5 s late, so the p99 of their slots rose.
        let mut r = rolled_out(0);
        r.load.slot_ms = 500.0;
        r.timeline = vec![
            slot(0.0, 2.0),
            slot(500.0, 3.0),
            slot(1000.0, 1500.0),
            slot(1500.0, 1000.0),
            slot(2000.0, 3.0),
            slot(2500.0, 3.0),
        ];
        add_stall(&mut r, stall(1010.0, 1500.0, 750));
        assert_eq!(rules(&r), ["target-silent"]);
        // A silence too short for a stall hint leaves the spike to be named.
        let mut r = RunResult {
            stalls: Vec::new(),
            stalls_total: 0,
            longest_stall_ms: 0.0,
            ..r
        };
        r.timeline[2] = slot(1000.0, 400.0);
        r.timeline[3] = slot(1500.0, 3.0);
        add_stall(&mut r, stall(1010.0, 400.0, 200));
        assert_eq!(rules(&r), ["cold-pods-in-rotation"]);
    }

    #[test]
    fn a_stall_is_hinted_by_what_the_connections_did() {
        // Packets dropped: connect attempts timed out (SYNs unanswered), requests on kept-alive
        // connections got nothing, and no connection that was accepted stayed silent.
        let mut r = rolled_out(0);
        add_stall(
            &mut r,
            StallEntry {
                failed: 56,
                connect_timeouts: 40,
                unanswered_reused: 16,
                ..stall(1010.0, 1500.0, 700)
            },
        );
        assert_eq!(stall_rules(&r), ["packets-dropped"]);
        assert_eq!(
            hint(&r, "packets-dropped").evidence,
            "the target answered nothing for 1500 ms at +1.0 s, during step \"set image\"; 40 \
             connect attempts timed out and 16 requests on kept-alive connections got no answer \
             in it"
        );
        // A paused process: the kernel accepted connections that then got no answer.
        let mut r = rolled_out(0);
        add_stall(
            &mut r,
            StallEntry {
                failed: 46,
                unanswered_new: 30,
                unanswered_reused: 16,
                ..stall(1010.0, 1500.0, 700)
            },
        );
        assert_eq!(stall_rules(&r), ["process-paused"]);
        assert_eq!(
            hint(&r, "process-paused").evidence,
            "the target answered nothing for 1500 ms at +1.0 s, during step \"set image\"; 30 \
             requests on connections it had just accepted got no answer"
        );
        // No telling sign (every request waited and was answered late): the target was silent.
        let mut r = rolled_out(0);
        add_stall(&mut r, stall(1010.0, 1500.0, 750));
        assert_eq!(stall_rules(&r), ["target-silent"]);
        assert_eq!(
            hint(&r, "target-silent").evidence,
            "the target answered nothing for 1500 ms at +1.0 s, during step \"set image\"; 750 \
             requests waited across it and were answered late, 0 failed"
        );
        // Signs of both: connect timeouts and accepted connections left silent. Neither cause
        // is named alone.
        let mut r = rolled_out(0);
        add_stall(
            &mut r,
            StallEntry {
                failed: 8,
                connect_timeouts: 5,
                unanswered_new: 3,
                ..stall(1010.0, 1500.0, 700)
            },
        );
        assert_eq!(stall_rules(&r), ["target-silent"]);
        assert_eq!(
            hint(&r, "target-silent").evidence,
            "the target answered nothing for 1500 ms at +1.0 s, during step \"set image\"; 700 \
             requests waited across it and were answered late, 8 failed"
        );
        // The floor: a stall hint from 500 ms on, whatever the connections did; the longest of
        // several is named, with the evidence of them all.
        for (duration, expected) in [(499.0, None), (500.0, Some("packets-dropped"))] {
            let mut r = rolled_out(0);
            add_stall(
                &mut r,
                StallEntry {
                    failed: 1,
                    connect_timeouts: 1,
                    ..stall(1010.0, duration, 100)
                },
            );
            assert_eq!(stall_rules(&r), Vec::from_iter(expected), "{duration} ms");
        }
        let mut r = rolled_out(0);
        add_stall(
            &mut r,
            StallEntry {
                connect_timeouts: 2,
                ..stall(1010.0, 600.0, 100)
            },
        );
        add_stall(&mut r, stall(1700.0, 300.0, 100));
        let mut last = StallEntry {
            connect_timeouts: 3,
            ..stall(2100.0, 900.0, 100)
        };
        last.steps.clear();
        last.after_step = Some("set image".into());
        add_stall(&mut r, last);
        assert_eq!(stall_rules(&r), ["packets-dropped"]);
        assert_eq!(
            hint(&r, "packets-dropped").evidence,
            "the target answered nothing for 900 ms at +2.1 s, after step \"set image\" (the \
             longest of 2 stalls); 5 connect attempts timed out and 0 requests on kept-alive \
             connections got no answer in it"
        );
    }
}
