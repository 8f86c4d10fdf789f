//! `gapless merge`: the results of the shards of a split load (`run --shards N`) joined into the
//! result one process would have written for the whole schedule, judged once by the same verdict
//! function as a run.
//!
//! What is exact and what is bounded (also in README, "Across machines"):
//!
//! - **Counts** (`requests`, `codes`, `errors`, connections, per slot) are sums: exact.
//! - **Histograms** (`histograms`, each slot's percentiles) are added from their lossless V2
//!   serializations: the merged percentiles are those of one histogram of every response.
//! - **Failure windows and gaps** are found again over the global request order: each shard
//!   gives its windows as ranges of global sequence numbers (`first_seq`, `end_seq`), inside
//!   which each of its requests failed; request `k` failed when the window of shard `k mod N`
//!   holds it. A merged gap is a run of requests in which no shard had a success. Its
//!   boundaries are intended send times (`k / qps` from the common start), exact to one global
//!   interval plus the shards' clock offset. Which codes and classes a window holds is exact
//!   when each shard's window lies within it; a shard's window split across merged windows
//!   shares its failures out in proportion.
//! - **Stalls** are the times in which every shard was silent (the intersection of their
//!   stalls).
//! - **Versions** are summed and the cutover found again; **phases** are shard 0's boundaries
//!   with the merged slots' counts (slot-granular); steps, events and the scenario are shard
//!   0's (it ran the steps).
//!
//! **Several endpoints** (`[[target]]`, `--targets`) are folded the same way ([`endpoints`]):
//! endpoint `i` of `n` sends the requests `k mod n == i` of the run's schedule (weighted, its
//! positions of each cycle: [`Interleave`]), so it is shard `i` of the run, but with its own
//! URL and request. Its own result is kept whole under `targets` and judged on its own; the
//! run's counts, histograms and slots are the sums, its phases the exact sums of the
//! endpoints', and its windows the runs of failed requests in the global order that hold a
//! request of every endpoint: the times no endpoint answered.
//!
//! A missing shard or one cut short by a signal makes the result incomplete: a criterion of its
//! own, exit 6. Memory is bounded by the number of results times what one holds (histograms,
//! slots, at most 1,000 windows and stalls): each result is folded in as it is read and dropped.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::config::{Interleave, OkCodes};
use crate::measure::gaps::MAX_WINDOWS;
use crate::measure::outcome::ErrorClass;
use crate::measure::stalls::STALL_FLOOR;
use crate::result::{
    ByConnection, Connections, Latency, Requests, RunResult, ShardSummary, Slot, Span, StallEntry,
    StepEntry, VersionEntry, WindowEntry, decode, encode_latency,
};

/// Why results cannot be merged (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no gapless result.
    #[error(
        "{0} is not a gapless result: no JSON result in it (a shard prints its result as one JSON line on stdout)"
    )]
    NotAResult(String),
    /// A result that does not parse.
    #[error("{name} is not a gapless result: {source}")]
    Parse {
        /// Where it was.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A result of a run that was not split (`--shards`).
    #[error("{0} is not a shard's result (run without --shards)")]
    NotAShard(String),
    /// Two results of one shard.
    #[error("{name} holds shard {index}, which {first} holds too")]
    Duplicate {
        /// The second.
        name: String,
        /// The shard.
        index: u32,
        /// The first.
        first: String,
    },
    /// A shard index beyond the shard count.
    #[error("{name} holds shard {index} of {count}: an index runs from 0 to the count less one")]
    Index {
        /// Where it was.
        name: String,
        /// Its index.
        index: u32,
        /// Its count.
        count: u32,
    },
    /// A result of another plan.
    #[error("{name} is from another run than {first}: its {what} is {theirs}, not {ours}")]
    Plan {
        /// The result that differs.
        name: String,
        /// The first result read.
        first: String,
        /// What differs.
        what: &'static str,
        /// Its value.
        theirs: String,
        /// The first result's.
        ours: String,
    },
    /// Nothing to merge.
    #[error("no result to merge")]
    Nothing,
}

/// What every shard of one split load shares.
#[derive(Clone, Debug, PartialEq)]
struct Plan {
    url: String,
    method: String,
    http2: bool,
    qps: Option<f64>,
    count: u32,
    start_at_unix_ms: u64,
    timeout_ms: f64,
    ok_codes: OkCodes,
}

impl Plan {
    fn of(r: &RunResult) -> Option<Plan> {
        let shard = r.shard.as_ref()?;
        Some(Plan {
            url: r.target.url.clone(),
            method: r.target.method.clone(),
            http2: r.target.http2,
            qps: r.load.qps,
            count: shard.count,
            start_at_unix_ms: shard.start_at_unix_ms,
            timeout_ms: r.load.timeout_ms,
            ok_codes: r.load.ok_codes.clone(),
        })
    }

    /// The first difference from `other`: what, theirs, ours.
    fn differs(&self, other: &Plan, endpoints: bool) -> Option<(&'static str, String, String)> {
        let pairs: [(&'static str, String, String); 8] = [
            ("URL", other.url.clone(), self.url.clone()),
            ("method", other.method.clone(), self.method.clone()),
            ("HTTP/2", other.http2.to_string(), self.http2.to_string()),
            (
                "--qps",
                format!("{:?}", other.qps),
                format!("{:?}", self.qps),
            ),
            ("--shards", other.count.to_string(), self.count.to_string()),
            (
                "--start-at",
                other.start_at_unix_ms.to_string(),
                self.start_at_unix_ms.to_string(),
            ),
            (
                "--timeout",
                format!("{}ms", other.timeout_ms),
                format!("{}ms", self.timeout_ms),
            ),
            (
                "--ok-codes",
                String::from(other.ok_codes.clone()),
                String::from(self.ok_codes.clone()),
            ),
        ];
        // The endpoints of one run share only the schedule: the rate, the count, the start.
        let shared = ["--qps", "--shards", "--start-at"];
        pairs
            .into_iter()
            .filter(|(what, _, _)| !endpoints || shared.contains(what))
            .find(|(_, a, b)| a != b)
    }
}

/// What a failed request was, for sharing a window's failures out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Status(u16),
    Error(ErrorClass),
}

/// One failure window of one shard, on the global request order.
#[derive(Clone, Debug)]
struct ShardWindow {
    /// First failed request.
    first: u64,
    /// The success that ended it; `None`: open.
    end: Option<u64>,
    failed: u64,
    classes: Vec<(Class, u64)>,
    new: u64,
}

/// One shard's part, kept while the others are read.
#[derive(Clone, Debug)]
struct Part {
    name: String,
    summary: ShardSummary,
    windows: Vec<ShardWindow>,
    /// Every window it found is listed (none beyond the list's cap).
    windows_complete: bool,
    stalls: Vec<StallEntry>,
    error_samples: BTreeMap<ErrorClass, String>,
    warnings: Vec<String>,
    /// One past its last request's global sequence number.
    end_seq: u64,
    duration_ms: f64,
}

/// One merged timeline slot.
#[derive(Clone, Debug, Default)]
struct SlotSum {
    ok: u64,
    failed: u64,
    codes: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorClass, u64>,
    versions: BTreeMap<String, u64>,
    latency: Option<Histogram<u32>>,
}

impl SlotSum {
    fn add(&mut self, other: SlotSum) {
        self.ok += other.ok;
        self.failed += other.failed;
        add_map(&mut self.codes, other.codes);
        add_map(&mut self.errors, other.errors);
        add_map(&mut self.versions, other.versions);
        add_histogram(&mut self.latency, other.latency);
    }
}

fn add_map<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
    for (k, n) in from {
        *into.entry(k).or_insert(0) += n;
    }
}

fn add_histogram<T: hdrhistogram::Counter>(
    into: &mut Option<Histogram<T>>,
    h: Option<Histogram<T>>,
) {
    let Some(mut h) = h else { return };
    // A deserialized histogram keeps the range it was written with: let it grow.
    h.auto(true);
    match into {
        None => *into = Some(h),
        Some(mine) => {
            if mine.add(&h).is_err() {
                for v in h.iter_recorded() {
                    mine.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                }
            }
        }
    }
}

/// Folds shard results into one, as they are read.
#[derive(Debug)]
pub struct Merger {
    merge_gap: Duration,
    /// The parts are the endpoints of one run (`[[target]]`), not shards of one target's load:
    /// their URLs and request settings differ, and they are named, not numbered.
    endpoints: bool,
    /// How the global schedule was dealt out: equal parts for shards (set by the first result),
    /// the run's weights for endpoints.
    interleave: Option<std::sync::Arc<Interleave>>,
    first: Option<(String, Plan)>,
    parts: BTreeMap<u32, Part>,
    /// Shard 0's result (it ran the steps), or the lowest index's until shard 0 comes, without
    /// its heavy parts: the template of the merged result.
    conductor: Option<(u32, RunResult)>,
    requests: Requests,
    codes: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorClass, u64>,
    by_connection: BTreeMap<ErrorClass, ByConnection>,
    signatures: BTreeMap<crate::measure::outcome::EnvoyReply, u64>,
    connections: Connections,
    histograms: [Option<Histogram<u64>>; 3],
    slot_ms: f64,
    slots: Vec<SlotSum>,
    versions: BTreeMap<String, VersionEntry>,
    events_dropped: u64,
}

impl Merger {
    /// An empty merge; failure windows closer than `merge_gap` merge into one.
    pub fn new(merge_gap: Duration) -> Merger {
        Merger {
            merge_gap,
            endpoints: false,
            interleave: None,
            first: None,
            parts: BTreeMap::new(),
            conductor: None,
            requests: Requests::default(),
            codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            by_connection: BTreeMap::new(),
            signatures: BTreeMap::new(),
            connections: Connections::default(),
            histograms: [None, None, None],
            slot_ms: 0.0,
            slots: Vec::new(),
            versions: BTreeMap::new(),
            events_dropped: 0,
        }
    }

    /// Reads every result of `path` (a JSON result, or a log with one-line results; `-` reads
    /// stdin) and folds it in.
    pub fn read(&mut self, path: &Path) -> Result<(), Error> {
        let read_error = |source| Error::Read {
            path: path.to_path_buf(),
            source,
        };
        if path == Path::new("-") {
            let stdin = std::io::stdin();
            return self.read_lines("stdin", &mut stdin.lock());
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let name = path.display().to_string();
        if text.trim_start().starts_with('{') {
            if let Ok(result) = serde_json::from_str::<RunResult>(&text) {
                return self.add(&name, result);
            }
        }
        self.read_lines(&name, &mut text.as_bytes())
    }

    /// Folds in every line of `input` that holds a JSON result (other lines, such as a text
    /// report in the same log, are skipped).
    pub fn read_lines(&mut self, name: &str, input: &mut dyn BufRead) -> Result<(), Error> {
        let mut found = false;
        let mut line = String::new();
        let mut number = 0;
        loop {
            line.clear();
            let n = input.read_line(&mut line).map_err(|source| Error::Read {
                path: PathBuf::from(name),
                source,
            })?;
            if n == 0 {
                break;
            }
            number += 1;
            let text = line.trim();
            if !text.starts_with("{\"schema_version\"") {
                continue;
            }
            let here = format!("{name}:{number}");
            let result =
                serde_json::from_str::<RunResult>(text).map_err(|source| Error::Parse {
                    name: here.clone(),
                    source,
                })?;
            self.add(&here, result)?;
            found = true;
        }
        if found {
            Ok(())
        } else {
            Err(Error::NotAResult(name.to_string()))
        }
    }

    /// Folds in one shard's result, found at `name`.
    pub fn add(&mut self, name: &str, mut r: RunResult) -> Result<(), Error> {
        let plan = Plan::of(&r).ok_or_else(|| Error::NotAShard(name.to_string()))?;
        match &self.first {
            None => self.first = Some((name.to_string(), plan.clone())),
            Some((first, ours)) => {
                if let Some((what, theirs, ours)) = ours.differs(&plan, self.endpoints) {
                    return Err(Error::Plan {
                        name: name.to_string(),
                        first: first.clone(),
                        what,
                        theirs,
                        ours,
                    });
                }
            }
        }
        let shard = r.shard.clone().unwrap_or_default();
        if shard.index >= shard.count {
            return Err(Error::Index {
                name: name.to_string(),
                index: shard.index,
                count: shard.count,
            });
        }
        if let Some(part) = self.parts.get(&shard.index) {
            return Err(Error::Duplicate {
                name: name.to_string(),
                index: shard.index,
                first: part.name.clone(),
            });
        }
        let il = self
            .interleave
            .get_or_insert_with(|| {
                let count =
                    std::num::NonZeroU32::new(shard.count).unwrap_or(std::num::NonZeroU32::MIN);
                std::sync::Arc::new(Interleave::equal(count))
            })
            .clone();
        let end_seq = if r.requests.total == 0 {
            0
        } else {
            il.global(shard.index as usize, r.requests.total - 1) + 1
        };
        let windows: Vec<ShardWindow> = r
            .windows
            .iter()
            .filter_map(|w| {
                let mut classes: Vec<(Class, u64)> = w
                    .codes
                    .iter()
                    .map(|(&c, &n)| (Class::Status(c), n))
                    .collect();
                classes.extend(w.errors.iter().map(|(&c, &n)| (Class::Error(c), n)));
                Some(ShardWindow {
                    first: w.first_seq?,
                    end: w.end_seq,
                    failed: w.failed,
                    classes,
                    new: w.failed_on_new_connections,
                })
            })
            .collect();
        let part = Part {
            name: name.to_string(),
            summary: ShardSummary {
                index: shard.index,
                label: shard.label.clone(),
                missing: false,
                interrupted: r.interrupted,
                requests: r.requests.clone(),
                windows_total: r.windows_total,
                gaps_total: r.gaps_total,
                longest_gap_ms: r.longest_gap_ms,
                longest_stall_ms: r.longest_stall_ms,
            },
            windows_complete: windows.len() as u64 == r.windows_total
                && windows.len() == r.windows.len(),
            windows,
            stalls: std::mem::take(&mut r.stalls),
            error_samples: std::mem::take(&mut r.error_samples),
            warnings: std::mem::take(&mut r.warnings),
            end_seq,
            duration_ms: r.load.duration_ms,
        };
        self.parts.insert(shard.index, part);

        let q = &r.requests;
        let sum = &mut self.requests;
        sum.total += q.total;
        sum.ok += q.ok;
        sum.failed += q.failed;
        sum.late += q.late;
        sum.unsent += q.unsent;
        sum.interrupted += q.interrupted;
        sum.body_bytes += q.body_bytes;
        add_map(&mut self.codes, std::mem::take(&mut r.codes));
        add_map(&mut self.errors, std::mem::take(&mut r.errors));
        for (class, b) in std::mem::take(&mut r.errors_by_connection) {
            let into = self.by_connection.entry(class).or_default();
            into.new += b.new;
            into.reused += b.reused;
        }
        add_map(
            &mut self.signatures,
            std::mem::take(&mut r.failure_signatures),
        );
        let c = &mut self.connections;
        c.opened += r.connections.opened;
        c.connect_failures += r.connections.connect_failures;
        c.failed_on_new_connections += r.connections.failed_on_new_connections;
        c.failed_on_reused_connections += r.connections.failed_on_reused_connections;
        let h = &r.histograms;
        for (into, text) in
            self.histograms
                .iter_mut()
                .zip([&h.latency_us, &h.service_us, &h.lateness_us])
        {
            add_histogram(into, decode(text));
        }
        for (name, v) in std::mem::take(&mut r.versions) {
            match self.versions.get_mut(&name) {
                Some(into) => {
                    into.count += v.count;
                    into.first_ms = into.first_ms.min(v.first_ms);
                    into.last_ms = into.last_ms.max(v.last_ms);
                }
                None => {
                    self.versions.insert(name, v);
                }
            }
        }
        self.events_dropped += r.events_dropped;
        self.add_slots(r.load.slot_ms, std::mem::take(&mut r.timeline));
        r.histograms = Default::default();
        r.windows.clear();
        r.gaps.clear();
        let conduct = self
            .conductor
            .as_ref()
            .is_none_or(|(i, _)| shard.index < *i);
        if conduct {
            self.conductor = Some((shard.index, r));
        }
        Ok(())
    }

    /// Adds a shard's timeline, on the coarser of the two slot widths (a shard cut short may
    /// have merged its slots fewer times; widths differ by powers of two).
    fn add_slots(&mut self, width: f64, timeline: Vec<Slot>) {
        let mut incoming: Vec<SlotSum> = timeline
            .into_iter()
            .map(|s| SlotSum {
                ok: s.ok,
                failed: s.failed,
                codes: s.codes,
                errors: s.errors,
                versions: s.versions,
                latency: s.latency_us.as_deref().and_then(decode),
            })
            .collect();
        if self.slots.is_empty() && self.slot_ms == 0.0 {
            self.slot_ms = width;
        }
        if width > self.slot_ms && self.slot_ms > 0.0 {
            let factor = (width / self.slot_ms).round().max(1.0) as usize;
            self.slots = rebin(std::mem::take(&mut self.slots), factor);
            self.slot_ms = width;
        } else if width < self.slot_ms && width > 0.0 {
            let factor = (self.slot_ms / width).round().max(1.0) as usize;
            incoming = rebin(incoming, factor);
        }
        if incoming.len() > self.slots.len() {
            self.slots.resize_with(incoming.len(), SlotSum::default);
        }
        for (into, slot) in self.slots.iter_mut().zip(incoming) {
            into.add(slot);
        }
    }

    /// The thresholds shard 0 (or the lowest shard read) was judged against.
    pub fn saved_limits(&self) -> crate::config::Limits {
        self.conductor
            .as_ref()
            .map(|(_, r)| crate::judge::verdict::limits_of(r))
            .unwrap_or_default()
    }

    /// The merged result, judged against `limits`.
    pub fn finish(self, limits: &crate::config::Limits) -> Result<RunResult, Error> {
        let Some((_, plan)) = self.first.clone() else {
            return Err(Error::Nothing);
        };
        let Some((_, mut result)) = self.conductor.clone() else {
            return Err(Error::Nothing);
        };
        let count = plan.count.max(1);
        let interval_ms = plan.qps.map_or(0.0, |q| 1000.0 / q);
        let il = self.interleave.clone().unwrap_or_else(|| {
            let count = std::num::NonZeroU32::new(count).unwrap_or(std::num::NonZeroU32::MIN);
            std::sync::Arc::new(Interleave::equal(count))
        });
        let end_seq = self.parts.values().map(|p| p.end_seq).max().unwrap_or(0);
        let duration_ms = self
            .parts
            .values()
            .filter(|p| !p.summary.interrupted)
            .map(|p| p.duration_ms)
            .fold(f64::NAN, f64::max);

        // Windows and gaps over the global order.
        let mut windows = Windows::new(self.merge_gap, interval_ms, &il);
        let endpoints = self.endpoints;
        each_failing_run(&self.parts, &il, end_seq, |a, b| {
            // With several endpoints, the run's own windows are the times no endpoint answered:
            // runs of failures that hold a request of every endpoint (each endpoint's own are in
            // `targets`).
            if !endpoints || il.covers_every_part(a, b) {
                windows.run(a, b);
            }
        });
        windows.finish(end_seq);
        let steps = &result.steps;
        let entries = window_entries(
            &windows.listed,
            &self.parts,
            &il,
            end_seq,
            interval_ms,
            steps,
        );
        result.gaps = entries.iter().filter(|w| w.ok == 0).cloned().collect();
        result.windows = entries;
        result.windows_total = windows.total;
        result.gaps_total = windows.gaps;
        result.longest_gap_ms = windows.longest.map(|n| round3(n * interval_ms));
        result.total_gap_ms = round3(windows.gap_intervals * interval_ms);
        result.merge_gap_ms = round3(self.merge_gap.as_secs_f64() * 1000.0);

        // Stalls: when every shard was silent.
        let (stalls, longest) = merged_stalls(&self.parts, steps);
        result.stalls_total = stalls.len() as u64;
        result.stalls = stalls.into_iter().take(MAX_WINDOWS).collect();
        result.longest_stall_ms = longest;

        // Counts, histograms, timeline.
        result.requests = self.requests.clone();
        result.codes = self.codes.clone();
        result.errors = self.errors.clone();
        result.errors_by_connection = self.by_connection.clone();
        result.failure_signatures = self.signatures.clone();
        result.connections = self.connections.clone();
        result.error_samples = BTreeMap::new();
        for part in self.parts.values() {
            for (class, sample) in &part.error_samples {
                result
                    .error_samples
                    .entry(*class)
                    .or_insert_with(|| sample.clone());
            }
        }
        let [latency, service, lateness] = &self.histograms;
        let stats = |h: &Option<Histogram<u64>>| {
            h.as_ref().map(Latency::from_histogram).unwrap_or_default()
        };
        result.latency_ms = stats(latency);
        result.service_time_ms = stats(service);
        result.lateness_ms = stats(lateness);
        let text = |h: &Option<Histogram<u64>>| h.as_ref().map(encode_latency).unwrap_or_default();
        result.histograms.latency_us = text(latency);
        result.histograms.service_us = text(service);
        result.histograms.lateness_us = text(lateness);
        result.load.slot_ms = self.slot_ms;
        result.timeline = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| Slot {
                t_ms: round3(self.slot_ms * i as f64),
                ok: s.ok,
                failed: s.failed,
                codes: s.codes.clone(),
                errors: s.errors.clone(),
                p50_ms: quantile_ms(&s.latency, 0.50),
                p99_ms: quantile_ms(&s.latency, 0.99),
                versions: s.versions.clone(),
                latency_us: None,
            })
            .collect();
        for phase in &mut result.phases {
            let inside = result
                .timeline
                .iter()
                .filter(|s| s.t_ms >= phase.start_ms && s.t_ms < phase.end_ms);
            let (mut ok, mut failed) = (0, 0);
            let mut versions: BTreeMap<String, crate::result::PhaseVersion> = BTreeMap::new();
            for s in inside {
                ok += s.ok;
                failed += s.failed;
                for (v, n) in &s.versions {
                    let e = versions
                        .entry(v.clone())
                        .or_insert(crate::result::PhaseVersion {
                            count: 0,
                            first_ms: s.t_ms,
                        });
                    e.count += n;
                }
            }
            phase.ok = ok;
            phase.failed = failed;
            phase.requests = ok + failed;
            phase.versions = versions;
        }

        // Versions and the cutover.
        result.versions = self.versions.clone();
        let last = result
            .versions
            .iter()
            .max_by(|a, b| a.1.last_ms.total_cmp(&b.1.last_ms));
        result.cutover_ms = last.and_then(|(name, _)| {
            result
                .versions
                .iter()
                .filter(|(n, _)| *n != name)
                .map(|(_, v)| v.last_ms)
                .max_by(f64::total_cmp)
        });
        result.mixed_window = match (last, result.cutover_ms) {
            (Some((_, v)), Some(cutover)) if v.first_ms < cutover => Some(Span {
                start_ms: v.first_ms,
                end_ms: cutover,
            }),
            _ => None,
        };

        // The run as a whole.
        if duration_ms.is_finite() {
            result.load.duration_ms = duration_ms;
        }
        result.load.duration_requested_ms = Some(result.load.duration_ms);
        result.elapsed_ms = result.load.duration_ms;
        result.actual_qps = if result.elapsed_ms > 0.0 {
            round3((self.requests.total - self.requests.unsent) as f64 / result.elapsed_ms * 1000.0)
        } else {
            0.0
        };
        result.interrupted = false;
        result.interruption = None;
        result.events_dropped = self.events_dropped;
        let endpoints = self.endpoints;
        let who = move |p: &Part| {
            if endpoints {
                format!("endpoint {}", p.summary.label)
            } else {
                format!("shard {} ({})", p.summary.index, p.summary.label)
            }
        };
        result.warnings = self
            .parts
            .values()
            .flat_map(|p| p.warnings.iter().map(move |w| format!("{}: {w}", who(p))))
            .collect();
        for part in self.parts.values().filter(|p| !p.windows_complete) {
            result.warnings.push(format!(
                "{} found {} failure windows and listed {}: the merged windows after its last listed one miss its failures",
                who(part), part.summary.windows_total, part.windows.len()
            ));
        }
        result.shard = None;
        result.shards = if self.endpoints {
            Vec::new()
        } else {
            (0..count)
                .map(|i| match self.parts.get(&i) {
                    Some(p) => p.summary.clone(),
                    None => ShardSummary {
                        index: i,
                        missing: true,
                        ..ShardSummary::default()
                    },
                })
                .collect()
        };
        crate::judge::verdict::conclude(&mut result, limits);
        Ok(result)
    }
}

/// The result of a run of several endpoints (`Finished::parts`): each endpoint's own result,
/// judged on its own, and the run's, folded from them as shards of one schedule are (each
/// endpoint sent the requests `k mod n == i` of the run's), with its phases summed exactly, and
/// judged with every endpoint's criteria.
///
/// Takes the run by value: each endpoint's part (its recorder: histograms and slots) is
/// dropped as soon as its result is made, so the fold never holds every part and every result
/// at once.
pub fn endpoints(mut f: crate::run::Finished) -> RunResult {
    use crate::result::TargetEntry;
    let parts = std::mem::take(&mut f.parts);
    let f = &f;
    let limits = &f.config.verdict.limits;
    let mut merger = Merger::new(f.config.verdict.merge_gap);
    merger.endpoints = true;
    merger.interleave = parts
        .first()
        .and_then(|p| p.config.load.shard.as_ref())
        .map(|s| s.interleave.clone());
    let mut targets: Vec<TargetEntry> = Vec::with_capacity(parts.len());
    let mut phases: Vec<crate::result::PhaseEntry> = Vec::new();
    let mut requested = None;
    for part in parts {
        let part = &part;
        let mut own = RunResult::new(part);
        // The long-lived probes are the run's (the first part carries them): judged once, in
        // the run's result, not in an endpoint's.
        let streams = std::mem::take(&mut own.streams);
        let (disconnects, events) = std::mem::take(&mut own.events)
            .into_iter()
            .partition(|e| e.disconnect.is_some());
        own.events = events;
        crate::judge::verdict::conclude(&mut own, limits);
        let name = part
            .config
            .load
            .shard
            .as_ref()
            .map_or_else(String::new, |s| s.label.clone());
        requested = requested.or(own.load.duration_requested_ms);
        for (i, p) in own.phases.iter().enumerate() {
            match phases.get_mut(i) {
                Some(sum) => {
                    sum.requests += p.requests;
                    sum.ok += p.ok;
                    sum.failed += p.failed;
                    for (v, seen) in &p.versions {
                        match sum.versions.get_mut(v) {
                            Some(into) => {
                                into.count += seen.count;
                                into.first_ms = into.first_ms.min(seen.first_ms);
                            }
                            None => {
                                sum.versions.insert(v.clone(), seen.clone());
                            }
                        }
                    }
                }
                None => phases.push(p.clone()),
            }
        }
        let mut entry = own.clone();
        // Its share of the run's rate.
        entry.load.qps = match (entry.load.qps, &part.config.load.shard) {
            (Some(q), Some(s)) => Some(s.rate_of(q)),
            (q, _) => q,
        };
        entry.shard = None;
        entry.steps = Vec::new();
        entry.events = Vec::new();
        for slot in &mut entry.timeline {
            slot.latency_us = None;
        }
        for w in entry.windows.iter_mut().chain(entry.gaps.iter_mut()) {
            w.first_seq = None;
            w.end_seq = None;
        }
        targets.push(TargetEntry {
            name: name.clone(),
            url: part.config.target.url.to_string(),
            result: Box::new(entry),
        });
        own.streams = streams;
        if !own.streams.is_empty() {
            own.events.extend::<Vec<_>>(disconnects);
            own.events.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        }
        // Never fails: every part has a shard plan of one schedule.
        let _ = merger.add(&name, own);
    }
    let Ok(mut result) = merger.finish(limits) else {
        return RunResult::new(f);
    };
    result.targets = targets;
    result.phases = phases;
    result.load.duration_requested_ms = requested;
    result.interrupted = f.interruption.is_some();
    result.interruption = f.interruption;
    result.elapsed_ms = round3(f.elapsed.as_secs_f64() * 1000.0);
    result.actual_qps = if result.elapsed_ms > 0.0 {
        round3((result.requests.total - result.requests.unsent) as f64 / result.elapsed_ms * 1000.0)
    } else {
        0.0
    };
    result.warnings = f.warnings.clone();
    for target in &result.targets {
        for w in &target.result.warnings {
            if !f.warnings.contains(w) {
                result.warnings.push(format!("{}: {w}", target.name));
            }
        }
    }
    crate::judge::verdict::conclude(&mut result, limits);
    result
}

fn quantile_ms(h: &Option<Histogram<u32>>, q: f64) -> Option<f64> {
    h.as_ref()
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
}

fn rebin(slots: Vec<SlotSum>, factor: usize) -> Vec<SlotSum> {
    let mut out: Vec<SlotSum> = Vec::with_capacity(slots.len() / factor + 1);
    for (i, slot) in slots.into_iter().enumerate() {
        if i % factor == 0 {
            out.push(SlotSum::default());
        }
        if let Some(last) = out.last_mut() {
            last.add(slot);
        }
    }
    out
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Calls `run(a, b)` for each maximal run `[a, b)` of global sequence numbers whose requests all
/// failed, in order: request `k` failed when a window of its shard (`il.owner(k)`) holds it. A
/// run of shards all failing costs one step; where only some fail, each of their requests is
/// visited (not the others'), in order. Nothing is kept per request: time goes with the failed
/// requests, memory with the shards' windows.
fn each_failing_run(
    parts: &BTreeMap<u32, Part>,
    il: &Interleave,
    end: u64,
    run: impl FnMut(u64, u64),
) {
    use std::cmp::Reverse;
    let mut events: Vec<(u64, usize, bool)> = Vec::new();
    for (&i, part) in parts {
        for w in &part.windows {
            let stop = w.end.unwrap_or(end).min(end);
            if w.first < stop {
                events.push((w.first, i as usize, true));
                events.push((stop, i as usize, false));
            }
        }
    }
    // At one position, windows end before others begin.
    events.sort_by_key(|&(at, i, opens)| (at, opens, i));
    let mut failing = vec![0u32; il.parts()];
    // The shards failing, in order (those with `failing[i] > 0`).
    let mut members: Vec<usize> = Vec::new();
    let mut runs = Runs { current: None, run };
    let mut heads = std::collections::BinaryHeap::new();
    let mut pos = 0u64;
    let mut e = 0;
    loop {
        let next = events.get(e).map_or(end, |ev| ev.0.min(end));
        if next > pos && !members.is_empty() {
            if members.len() == il.parts() {
                runs.push(pos, next);
            } else {
                // Each failing shard's requests in [pos, next), merged in global order.
                heads.clear();
                for &i in &members {
                    let j = il.members_below(i, pos);
                    if j < il.members_below(i, next) {
                        heads.push(Reverse((il.global(i, j), i, j)));
                    }
                }
                while let Some(Reverse((k, i, j))) = heads.pop() {
                    runs.push(k, k + 1);
                    let k = il.global(i, j + 1);
                    if k < next {
                        heads.push(Reverse((k, i, j + 1)));
                    }
                }
            }
        }
        pos = pos.max(next);
        if e >= events.len() || next >= end {
            break;
        }
        while let Some(&(at, i, opens)) = events.get(e) {
            if at != next {
                break;
            }
            let Some(f) = failing.get_mut(i) else {
                e += 1;
                continue;
            };
            let was = *f > 0;
            if opens {
                *f += 1;
            } else {
                *f = f.saturating_sub(1);
            }
            match (was, *f > 0) {
                (false, true) => {
                    let at = members.partition_point(|&m| m < i);
                    members.insert(at, i);
                }
                (true, false) => members.retain(|&m| m != i),
                _ => {}
            }
            e += 1;
        }
    }
    runs.flush();
}

/// Joins adjacent runs before passing them on.
struct Runs<F: FnMut(u64, u64)> {
    current: Option<(u64, u64)>,
    run: F,
}

impl<F: FnMut(u64, u64)> Runs<F> {
    fn push(&mut self, a: u64, b: u64) {
        match &mut self.current {
            Some(last) if last.1 == a => last.1 = b,
            _ => {
                if let Some((x, y)) = self.current.replace((a, b)) {
                    (self.run)(x, y);
                }
            }
        }
    }

    fn flush(mut self) {
        if let Some((x, y)) = self.current.take() {
            (self.run)(x, y);
        }
    }
}

/// The runs of [`each_failing_run`], collected (the tests look at them).
#[cfg(test)]
fn failing_runs(parts: &BTreeMap<u32, Part>, count: u32, end: u64) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let il =
        Interleave::equal(std::num::NonZeroU32::new(count).unwrap_or(std::num::NonZeroU32::MIN));
    each_failing_run(parts, &il, end, |a, b| runs.push((a, b)));
    runs
}

/// A merged window on the global order: `[first, end)`, with the successes merged inside.
#[derive(Clone, Debug)]
struct Merged {
    first: u64,
    end: u64,
    ok: u64,
    open: bool,
}

/// Merges runs closer than the merge distance into windows, keeps the first [`MAX_WINDOWS`]
/// and totals over all.
struct Windows<'a> {
    merge_gap: Duration,
    interval_ms: f64,
    /// When each request is due (in global intervals).
    il: &'a Interleave,
    current: Option<Merged>,
    listed: Vec<Merged>,
    total: u64,
    gaps: u64,
    /// The gaps' length, in global intervals.
    gap_intervals: f64,
    /// The longest gap, in global intervals.
    longest: Option<f64>,
}

impl Windows<'_> {
    fn new(merge_gap: Duration, interval_ms: f64, il: &Interleave) -> Windows<'_> {
        Windows {
            merge_gap,
            interval_ms,
            il,
            current: None,
            listed: Vec::new(),
            total: 0,
            gaps: 0,
            gap_intervals: 0.0,
            longest: None,
        }
    }

    /// The time from request `a` to request `b`, in global intervals.
    fn between(&self, a: u64, b: u64) -> f64 {
        self.il.due_in_intervals(b) - self.il.due_in_intervals(a)
    }

    fn run(&mut self, a: u64, b: u64) {
        let merge_ms = self.merge_gap.as_secs_f64() * 1000.0;
        let il = self.il;
        if let Some(w) = &mut self.current {
            if (il.due_in_intervals(a) - il.due_in_intervals(w.end)) * self.interval_ms < merge_ms {
                w.ok += a - w.end;
                w.end = b;
                return;
            }
        }
        self.close();
        self.current = Some(Merged {
            first: a,
            end: b,
            ok: 0,
            open: false,
        });
    }

    fn close(&mut self) {
        let Some(w) = self.current.take() else { return };
        self.total += 1;
        if w.ok == 0 {
            self.gaps += 1;
            let length = self.between(w.first, w.end);
            self.gap_intervals += length;
            if self.longest.is_none_or(|l| length > l) {
                self.longest = Some(length);
            }
        }
        if self.listed.len() < MAX_WINDOWS {
            self.listed.push(w);
        }
    }

    fn finish(&mut self, end: u64) {
        if let Some(w) = &mut self.current {
            w.open = w.end >= end;
        }
        self.close();
    }
}

/// What a merged window holds of the shards' windows' failures.
#[derive(Debug, Default)]
struct Share {
    failed: u64,
    new: u64,
    codes: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorClass, u64>,
}

impl Share {
    /// Adds the part of shard `i`'s window `sw` that lies in `w` (nothing when they do not
    /// overlap).
    fn add(&mut self, w: &Merged, i: usize, il: &Interleave, sw: &ShardWindow, end: u64) {
        let s_end = sw.end.unwrap_or(end).max(sw.first);
        let (from, to) = (w.first.max(sw.first), w.end.min(s_end));
        if from >= to {
            return;
        }
        let below = |z: u64| il.members_below(i, z);
        let all = below(s_end) - below(sw.first);
        let j0 = below(from) - below(sw.first);
        let j1 = below(to) - below(sw.first);
        // This window's share of the shard window's failures: [f0, f1).
        let share = |j: u64| {
            if all == 0 || j >= all {
                sw.failed
            } else {
                ((u128::from(j) * u128::from(sw.failed)) / u128::from(all)) as u64
            }
        };
        let (f0, f1) = (share(j0), share(j1));
        self.failed += f1 - f0;
        self.new += overlap(f0, f1, 0, sw.new);
        let mut at = 0;
        for &(class, k) in &sw.classes {
            let got = overlap(f0, f1, at, at + k);
            at += k;
            if got == 0 {
                continue;
            }
            match class {
                Class::Status(code) => *self.codes.entry(code).or_insert(0) += got,
                Class::Error(c) => *self.errors.entry(c).or_insert(0) += got,
            }
        }
    }

    /// The wire entry of `w` with these failures.
    fn entry(
        self,
        w: &Merged,
        il: &Interleave,
        interval_ms: f64,
        steps: &[StepEntry],
    ) -> WindowEntry {
        let start_ms = round3(il.due_in_intervals(w.first) * interval_ms);
        let end_ms = round3(il.due_in_intervals(w.end) * interval_ms);
        let during = steps_during(steps, start_ms, end_ms);
        WindowEntry {
            start_ms,
            end_ms,
            start_uncertainty_ms: (w.first > 0).then_some(round3(interval_ms)),
            end_uncertainty_ms: (!w.open).then_some(round3(interval_ms)),
            duration_ms: round3(end_ms - start_ms),
            failed: self.failed,
            ok: w.ok,
            codes: self.codes,
            errors: self.errors,
            failed_on_new_connections: self.new,
            failed_on_reused_connections: self.failed - self.new.min(self.failed),
            after_step: during
                .is_empty()
                .then(|| step_before(steps, start_ms))
                .flatten(),
            steps: during,
            open: w.open,
            first_seq: None,
            end_seq: None,
        }
    }
}

/// The wire entry of a merged window: its failures shared out of the shards' windows it holds.
fn window_entry(
    w: &Merged,
    parts: &BTreeMap<u32, Part>,
    il: &Interleave,
    end: u64,
    interval_ms: f64,
    steps: &[StepEntry],
) -> WindowEntry {
    let mut share = Share::default();
    for (&i, part) in parts {
        for sw in &part.windows {
            share.add(w, i as usize, il, sw, end);
        }
    }
    share.entry(w, il, interval_ms, steps)
}

/// The wire entries of the listed merged windows, as [`window_entry`] makes them. When the
/// merged windows and each shard's windows are in order (as runs list them), a cursor per shard
/// visits only the shard windows that reach the merged one: the time goes with the listed
/// windows plus the shards' windows, not with their product (1,000 × 100 shards × 1,000).
/// Otherwise each entry looks at every shard window.
fn window_entries(
    listed: &[Merged],
    parts: &BTreeMap<u32, Part>,
    il: &Interleave,
    end: u64,
    interval_ms: f64,
    steps: &[StepEntry],
) -> Vec<WindowEntry> {
    let ordered = listed.windows(2).all(|p| p[0].first <= p[1].first)
        && parts
            .values()
            .all(|p| p.windows.windows(2).all(|s| s[0].first <= s[1].first));
    if !ordered {
        return listed
            .iter()
            .map(|w| window_entry(w, parts, il, end, interval_ms, steps))
            .collect();
    }
    let mut cursors = vec![0usize; parts.len()];
    listed
        .iter()
        .map(|w| {
            let mut share = Share::default();
            for ((&i, part), at) in parts.iter().zip(cursors.iter_mut()) {
                // A shard window that ends before this merged window begins ends before every
                // later one begins: it is passed for good.
                while part
                    .windows
                    .get(*at)
                    .is_some_and(|sw| sw.end.unwrap_or(end).max(sw.first) <= w.first)
                {
                    *at += 1;
                }
                // Those beginning at or after its end hold none of it, nor do the ones after
                // them.
                let reach = part.windows[*at..].iter().take_while(|sw| sw.first < w.end);
                for sw in reach {
                    share.add(w, i as usize, il, sw, end);
                }
            }
            share.entry(w, il, interval_ms, steps)
        })
        .collect()
}

/// The length of `[a, b) ∩ [c, d)`.
fn overlap(a: u64, b: u64, c: u64, d: u64) -> u64 {
    b.min(d).saturating_sub(a.max(c))
}

/// The foreground steps running at some time in `[from, to]` (as the run attributes windows).
fn steps_during(steps: &[StepEntry], from: f64, to: f64) -> Vec<String> {
    steps
        .iter()
        .filter(|s| !s.background)
        .filter(|s| match (s.start_ms, s.end_ms) {
            (Some(start), Some(end)) => start <= to && from <= end,
            (Some(start), None) => start <= to,
            _ => false,
        })
        .map(|s| s.name.clone())
        .collect()
}

/// The last foreground step that ended by `t`.
fn step_before(steps: &[StepEntry], t: f64) -> Option<String> {
    steps
        .iter()
        .filter(|s| !s.background && s.end_ms.is_some_and(|end| end <= t))
        .max_by(|a, b| a.end_ms.unwrap_or(0.0).total_cmp(&b.end_ms.unwrap_or(0.0)))
        .map(|s| s.name.clone())
}

/// The times every shard was silent (at least [`STALL_FLOOR`]), with what their stalls held,
/// and the longest silence (below the floor: the shortest of the shards' longest silences, an
/// upper bound).
fn merged_stalls(parts: &BTreeMap<u32, Part>, steps: &[StepEntry]) -> (Vec<StallEntry>, f64) {
    let floor_ms = STALL_FLOOR.as_secs_f64() * 1000.0;
    let mut common: Option<Vec<(f64, f64)>> = None;
    for part in parts.values() {
        let mine: Vec<(f64, f64)> = part.stalls.iter().map(|s| (s.start_ms, s.end_ms)).collect();
        common = Some(match common {
            None => mine,
            Some(theirs) => intersect(&theirs, &mine),
        });
    }
    let common: Vec<(f64, f64)> = common
        .unwrap_or_default()
        .into_iter()
        .filter(|(a, b)| b - a >= floor_ms)
        .collect();
    // In order (as runs list their stalls), a cursor per shard visits only the stalls that reach
    // each merged one; otherwise each merged stall looks at every shard's every stall.
    let ordered = common.windows(2).all(|p| p[0].0 <= p[1].0)
        && parts
            .values()
            .all(|p| p.stalls.windows(2).all(|s| s[0].start_ms <= s[1].start_ms));
    let mut cursors = vec![0usize; parts.len()];
    let stalls: Vec<StallEntry> = common
        .into_iter()
        .map(|(start, end)| {
            let mut entry = StallEntry {
                start_ms: round3(start),
                end_ms: round3(end),
                duration_ms: round3(end - start),
                open: true,
                ..StallEntry::default()
            };
            for (part, at) in parts.values().zip(cursors.iter_mut()) {
                if ordered {
                    // A stall that ended by this one's start ended by every later one's.
                    while part.stalls.get(*at).is_some_and(|s| s.end_ms <= start) {
                        *at += 1;
                    }
                }
                for s in part.stalls[*at..]
                    .iter()
                    .take_while(|s| !ordered || s.start_ms < end)
                    .filter(|s| s.start_ms < end && start < s.end_ms)
                {
                    entry.held += s.held;
                    entry.failed += s.failed;
                    entry.connect_timeouts += s.connect_timeouts;
                    entry.unanswered_new += s.unanswered_new;
                    entry.unanswered_reused += s.unanswered_reused;
                    entry.open &= s.open;
                }
            }
            entry.steps = steps_during(steps, start, end);
            entry.after_step = entry
                .steps
                .is_empty()
                .then(|| step_before(steps, start))
                .flatten();
            entry
        })
        .collect();
    let longest = match stalls.iter().map(|s| s.duration_ms).max_by(f64::total_cmp) {
        Some(l) => l,
        None => parts
            .values()
            .map(|p| p.summary.longest_stall_ms)
            .min_by(f64::total_cmp)
            .unwrap_or(0.0)
            .min(floor_ms),
    };
    (stalls, longest)
}

/// The intersection of two sorted lists of disjoint intervals.
fn intersect(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let start = a[i].0.max(b[j].0);
        let end = a[i].1.min(b[j].1);
        if start < end {
            out.push((start, end));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard part with windows `(first, end, failed, 503s)` on the global order.
    fn part(index: u32, windows: &[(u64, Option<u64>, u64)]) -> Part {
        Part {
            name: format!("shard{index}"),
            summary: ShardSummary {
                index,
                ..ShardSummary::default()
            },
            windows: windows
                .iter()
                .map(|&(first, end, failed)| ShardWindow {
                    first,
                    end,
                    failed,
                    classes: vec![(Class::Status(503), failed)],
                    new: 0,
                })
                .collect(),
            windows_complete: true,
            stalls: Vec::new(),
            error_samples: BTreeMap::new(),
            warnings: Vec::new(),
            end_seq: 0,
            duration_ms: 0.0,
        }
    }

    fn parts(list: Vec<Part>) -> BTreeMap<u32, Part> {
        list.into_iter().map(|p| (p.summary.index, p)).collect()
    }

    #[test]
    fn a_gap_is_where_every_shard_failed_and_only_there() {
        // Two shards; shard 0 fails requests 10..30 (even ones), shard 1 fails 15..41 (odd
        // ones). Every request fails from 15 (shard 1's first) to 30 (shard 0's end).
        let p = parts(vec![
            part(0, &[(10, Some(30), 10)]),
            part(1, &[(15, Some(41), 13)]),
        ]);
        let runs = failing_runs(&p, 2, 100);
        // Before 15 only even requests fail: 10, 12, 14 alone; then 15..30 together; after 30
        // only odd ones: 31, 33, ... 39.
        assert_eq!(
            runs,
            [
                (10, 11),
                (12, 13),
                (14, 30),
                (31, 32),
                (33, 34),
                (35, 36),
                (37, 38),
                (39, 40)
            ]
        );
        // 14 fails (shard 0) and 15 too (shard 1): the run begins at 14.
    }

    #[test]
    fn one_shard_failing_alone_makes_one_window_per_request_and_no_long_gap() {
        let p = parts(vec![part(0, &[]), part(1, &[]), part(2, &[(2, None, 10)])]);
        let runs = failing_runs(&p, 3, 30);
        assert_eq!(runs.len(), 10);
        assert!(runs.iter().all(|&(a, b)| b == a + 1 && a % 3 == 2));
        let il = eq(3);
        let mut w = Windows::new(Duration::ZERO, 1.0, &il);
        for (a, b) in runs {
            w.run(a, b);
        }
        w.finish(30);
        assert_eq!(
            (w.total, w.gaps, w.longest, w.gap_intervals),
            (10, 10, Some(1.0), 10.0)
        );
        assert!(
            w.listed.last().expect("a window").open,
            "the last reaches the end"
        );

        // With a merge distance above the 2 ms between them, they are one window with the
        // successes inside counted.
        let mut w = Windows::new(Duration::from_millis(3), 1.0, &il);
        for (a, b) in failing_runs(&p, 3, 30) {
            w.run(a, b);
        }
        w.finish(30);
        assert_eq!((w.total, w.gaps), (1, 0));
        assert_eq!(w.listed[0].ok, 18);
    }

    #[test]
    fn a_window_gets_each_shards_failures_exactly_or_in_proportion() {
        // Shard 0's window holds 10 failures (4 × 503, 6 resets, all on new connections); its
        // members are 0, 2, ..., 18.
        let mut p0 = part(0, &[(0, Some(20), 10)]);
        p0.windows[0].classes = vec![
            (Class::Status(503), 4),
            (Class::Error(ErrorClass::Reset), 6),
        ];
        p0.windows[0].new = 10;
        let p = parts(vec![p0, part(1, &[(1, Some(11), 5)])]);
        // The merged window [0, 11) holds shard 0's members 0..=10 (6 of its 10) and all of
        // shard 1's window.
        let w = Merged {
            first: 0,
            end: 11,
            ok: 0,
            open: false,
        };
        let e = window_entry(&w, &p, &eq(2), 100, 1.0, &[]);
        assert_eq!(e.failed, 6 + 5);
        assert_eq!(e.codes.get(&503), Some(&(4 + 5)));
        assert_eq!(e.errors.get(&ErrorClass::Reset), Some(&2));
        assert_eq!(e.failed_on_new_connections, 6);
        assert_eq!((e.start_ms, e.end_ms, e.duration_ms), (0.0, 11.0, 11.0));
        assert_eq!(e.start_uncertainty_ms, None, "nothing came before it");
        // The rest of shard 0's window, in another merged window: the shares add up.
        let rest = Merged {
            first: 11,
            end: 20,
            ok: 0,
            open: false,
        };
        let r = window_entry(&rest, &p, &eq(2), 100, 1.0, &[]);
        assert_eq!(e.failed + r.failed, 10 + 5);
        assert_eq!(r.errors.get(&ErrorClass::Reset), Some(&4));
    }

    /// A shard's stall from `start_ms` to `end_ms` that held `held` requests.
    fn stall(start_ms: f64, end_ms: f64, held: u64) -> StallEntry {
        StallEntry {
            start_ms,
            end_ms,
            duration_ms: end_ms - start_ms,
            held,
            ..StallEntry::default()
        }
    }

    #[test]
    fn stalls_merge_where_every_shard_was_silent() {
        let mut a = part(0, &[]);
        a.stalls = vec![stall(1000.0, 2500.0, 300), stall(5000.0, 5300.0, 60)];
        a.summary.longest_stall_ms = 1500.0;
        let mut b = part(1, &[]);
        b.stalls = vec![stall(1100.0, 2600.0, 290)];
        b.summary.longest_stall_ms = 1500.0;
        let (stalls, longest) = merged_stalls(&parts(vec![a, b]), &[]);
        assert_eq!(
            stalls.len(),
            1,
            "the 300 ms stall of one shard alone is no stall"
        );
        assert_eq!((stalls[0].start_ms, stalls[0].end_ms), (1100.0, 2500.0));
        assert_eq!(stalls[0].held, 590);
        assert_eq!(longest, 1400.0);
    }

    /// `count` shards over requests `0..end`, each listing its windows in order as a run does:
    /// pseudo-random lengths (some long, spanning many of the others'), some shards clean, the
    /// last window of some (shard `count / 2` at least) open; plus `common` windows in which
    /// every shard fails.
    fn random_parts(il: &Interleave, end: u64, common: &[(u64, u64)], seed: u64) -> Vec<Part> {
        let count = il.parts() as u32;
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        (0..count)
            .map(|i| {
                let ix = i as usize;
                // Its first request at or after k.
                let member = |k: u64| il.global(ix, il.members_below(ix, k));
                let mut spans: Vec<(u64, u64)> = Vec::new();
                if next(4) != 0 {
                    let mut at = next(50);
                    while at < end {
                        let length = if next(10) == 0 {
                            200 + next(400)
                        } else {
                            1 + next(30)
                        };
                        spans.push((at, at + length));
                        at += length + 1 + next(120);
                    }
                }
                spans.extend(common.iter().copied());
                spans.sort_unstable();
                let mut windows: Vec<ShardWindow> = Vec::new();
                for (a, b) in spans {
                    let first = member(a);
                    let stop = member(b).max(member(first + 1));
                    if first >= end {
                        break;
                    }
                    // Join what overlaps the previous one: a shard's windows are disjoint.
                    if let Some(last) = windows.last_mut().filter(|w| w.end >= Some(first)) {
                        last.end = Some(last.end.unwrap_or(0).max(stop));
                        continue;
                    }
                    windows.push(ShardWindow {
                        first,
                        end: Some(stop),
                        failed: 0,
                        classes: Vec::new(),
                        new: 0,
                    });
                }
                if i == count / 2 || next(3) == 0 {
                    if let Some(last) = windows.last_mut() {
                        last.end = None;
                    }
                }
                for w in &mut windows {
                    let stop = w.end.unwrap_or(end).min(end);
                    w.failed = il.members_below(ix, stop) - il.members_below(ix, w.first);
                    let resets = w.failed / 3;
                    w.classes = vec![
                        (Class::Status(503), w.failed - resets),
                        (Class::Error(ErrorClass::Reset), resets),
                    ];
                    w.new = w.failed / 2;
                }
                let mut p = part(i, &[]);
                p.windows = windows;
                p
            })
            .collect()
    }

    /// The failing runs request by request: the definition.
    fn runs_by_request(parts: &BTreeMap<u32, Part>, il: &Interleave, end: u64) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for k in 0..end {
            let failed = parts.get(&(il.owner(k) as u32)).is_some_and(|p| {
                p.windows
                    .iter()
                    .any(|w| w.first <= k && w.end.is_none_or(|e| k < e))
            });
            if !failed {
                continue;
            }
            match runs.last_mut() {
                Some(last) if last.1 == k => last.1 = k + 1,
                _ => runs.push((k, k + 1)),
            }
        }
        runs
    }

    #[test]
    fn failing_runs_visit_only_failing_shards_and_match_the_definition() {
        for (il, seed) in interleaves() {
            let end = 4000;
            let common = [(500, 700), (1500, 1510), (3000, 3400)];
            let p = parts(random_parts(&il, end, &common, seed));
            let mut runs = Vec::new();
            each_failing_run(&p, &il, end, |a, b| runs.push((a, b)));
            assert_eq!(runs, runs_by_request(&p, &il, end), "{il:?}");
            assert!(runs.iter().any(|&(a, b)| b - a > 100), "a common failure");
        }
    }

    /// Equal parts (shards, or endpoints without weights) and weighted ones (endpoints), each
    /// with a seed.
    fn interleaves() -> Vec<(Interleave, u64)> {
        let mut list: Vec<(Interleave, u64)> =
            [(1, 3), (2, 5), (3, 7), (7, 11), (16, 13), (40, 17)]
                .into_iter()
                .map(|(n, seed)| (eq(n), seed))
                .collect();
        for (weights, seed) in [(&[1u32, 3][..], 19), (&[2, 3, 5], 23), (&[1, 1, 7, 2], 29)] {
            let w: Vec<std::num::NonZeroU32> = weights
                .iter()
                .map(|&w| std::num::NonZeroU32::new(w).unwrap())
                .collect();
            list.push((Interleave::weighted(&w).unwrap(), seed));
        }
        list
    }

    #[test]
    fn window_entries_by_cursor_are_those_of_each_window_alone() {
        for ((il, seed), gap_ms) in interleaves().into_iter().skip(2).zip([0, 0, 2, 3, 0, 1, 2]) {
            let end = 4000;
            let common = [(500, 700), (3000, 3400)];
            let mut p = parts(random_parts(&il, end, &common, seed));
            let mut w = Windows::new(Duration::from_millis(gap_ms), 1.0, &il);
            each_failing_run(&p, &il, end, |a, b| w.run(a, b));
            w.finish(end);
            assert!(w.listed.len() > 20, "{} windows", w.listed.len());
            let one_by_one: Vec<WindowEntry> = w
                .listed
                .iter()
                .map(|m| window_entry(m, &p, &il, end, 1.0, &[]))
                .collect();
            assert_eq!(
                window_entries(&w.listed, &p, &il, end, 1.0, &[]),
                one_by_one
            );
            let failed: u64 = one_by_one.iter().map(|e| e.failed).sum();
            assert!(failed > 0);
            assert!(
                p.values()
                    .any(|p| p.windows.last().is_some_and(|w| w.end.is_none())),
                "an open window"
            );
            // A shard listing its windows out of order: every entry looks at all of them.
            if let Some(part) = p.values_mut().find(|p| p.windows.len() > 1) {
                part.windows.reverse();
            }
            assert_eq!(
                window_entries(&w.listed, &p, &il, end, 1.0, &[]),
                one_by_one
            );
        }
    }

    #[test]
    fn a_long_stall_counts_in_every_merged_stall_it_spans() {
        let mut a = part(0, &[]);
        a.stalls = vec![stall(0.0, 10_000.0, 1000)];
        let mut b = part(1, &[]);
        b.stalls = vec![
            stall(100.0, 500.0, 1),
            stall(1000.0, 1100.0, 2),
            stall(2000.0, 2600.0, 4),
            stall(9000.0, 12_000.0, 8),
        ];
        let mut c = part(2, &[]);
        c.stalls = vec![stall(50.0, 2300.0, 16), stall(8000.0, 9500.0, 32)];
        let (stalls, _) = merged_stalls(&parts(vec![a, b, c]), &[]);
        let got: Vec<(f64, f64, u64)> = stalls
            .iter()
            .map(|s| (s.start_ms, s.end_ms, s.held))
            .collect();
        // [1000, 1100) is under the 200 ms floor; each merged stall holds the long stalls of a
        // and c that span it.
        assert_eq!(
            got,
            [
                (100.0, 500.0, 1000 + 1 + 16),
                (2000.0, 2300.0, 1000 + 4 + 16),
                (9000.0, 9500.0, 1000 + 8 + 32)
            ]
        );
    }

    fn eq(n: u32) -> Interleave {
        Interleave::equal(std::num::NonZeroU32::new(n).unwrap())
    }

    #[test]
    fn a_shard_index_beyond_the_count_is_refused_not_a_panic() {
        let mut r = RunResult {
            shard: Some(crate::result::ShardEntry {
                index: 7,
                count: 2,
                label: "n7".into(),
                start_at_unix_ms: 1,
            }),
            ..RunResult::default()
        };
        r.windows.push(WindowEntry {
            first_seq: Some(7),
            failed: 1,
            ..WindowEntry::default()
        });
        let err = Merger::new(Duration::ZERO).add("s7.json", r).unwrap_err();
        assert_eq!(
            err.to_string(),
            "s7.json holds shard 7 of 2: an index runs from 0 to the count less one"
        );
    }
}
