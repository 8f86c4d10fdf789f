//! One run, start to finish: the load engine and the rollout on one clock, the recorder beside
//! them, then the verdict.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::RunConfig;
use crate::load::engine::{self, Engine, LoadControl, LoadStats};
use crate::load::timer::later;
use crate::measure::gaps::{self, GapDetector, SlowWindow};
use crate::measure::outcome::ErrorClass;
use crate::measure::recorder::{Phase, Recorder};
use crate::measure::timeline::Timeline;
use crate::measure::version::{Labels, VersionProbe};
use crate::rollout::strategy::Orchestrator;
use crate::rollout::{Rollout, RolloutReport};
use crate::ui::console::Console;
use crate::ui::progress::{self, Status};

/// Errors that stop a run before it can produce a result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The load engine failed.
    #[error(transparent)]
    Engine(#[from] engine::Error),
}

/// Why a run stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interruption {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

/// Everything a finished (or interrupted) run measured.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The configuration it ran with.
    pub config: RunConfig,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// From the start until the last attempt ended.
    pub elapsed: Duration,
    /// How long the load was meant to last (warmup + steps + cooldown, or the duration); the
    /// elapsed time when interrupted.
    pub length: Duration,
    /// Histograms, counters and the timeline.
    pub recorder: Recorder,
    /// Connection and interruption totals.
    pub stats: LoadStats,
    /// What the rollout steps did.
    pub rollout: RolloutReport,
    /// Version labels, by id.
    pub versions: Labels,
    /// Set when a signal cut the run short.
    pub interruption: Option<Interruption>,
    /// Warnings about the run itself (an infeasible plan, requests not sent), one sentence
    /// each, for the reports.
    pub warnings: Vec<String>,
    /// A run of several endpoints: each one's part, in order, as if it were a shard of the
    /// run's schedule (its `config` holds its target, and its interleave as the shard plan
    /// `index` of `count`, labelled with its name); this run's own fields are then the first
    /// part's. Empty for a run of one target.
    pub parts: Vec<Finished>,
    /// What each long-lived probe (`[[stream]]`) measured, in order; empty without probes.
    /// With several endpoints, the first part's (the run's).
    pub streams: Vec<crate::streams::ProbeReport>,
}

impl Finished {
    /// In a shard's run, the global sequence number of this process's request `seq` (shard `I`
    /// of `N` equal parts sends `k = seq × N + I`; see [`crate::config::Interleave`]); `None`
    /// unsharded.
    pub fn global_seq(&self, seq: u64) -> Option<u64> {
        self.config
            .load
            .shard
            .as_ref()
            .map(|s| s.interleave.global(s.index as usize, seq))
    }

    /// Achieved request rate: requests sent per second of elapsed time (requests never sent
    /// are not a rate anything achieved).
    pub fn actual_qps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.recorder.total() - self.recorder.unsent()) as f64 / secs
        } else {
            0.0
        }
    }

    /// One sentence when the target could not be reached at all (no connection ever opened):
    /// why, from the failure class of the attempts. With several endpoints, one per endpoint
    /// not reached, each naming it.
    pub fn unreachable(&self) -> Option<String> {
        if !self.parts.is_empty() {
            let lines: Vec<String> = self
                .parts
                .iter()
                .filter_map(|p| {
                    let name = p.config.load.shard.as_ref().map(|s| s.label.as_str());
                    Some(format!(
                        "{}: {}",
                        name.unwrap_or_default(),
                        p.unreachable()?
                    ))
                })
                .collect();
            return (!lines.is_empty()).then(|| lines.join("\n"));
        }
        if self.stats.pool_opened > 0 || self.recorder.total() == 0 {
            return None;
        }
        let url = &self.config.target.url;
        let (class, _, _) = self
            .recorder
            .errors()
            .max_by_key(|&(_, new, reused)| new + reused)?;
        let where_ = format!("{}:{}", url.host(), url.port());
        Some(match class {
            ErrorClass::Dns => format!(
                "cannot resolve {}: the target's host name is unknown",
                url.host()
            ),
            ErrorClass::ConnectRefused => format!(
                "nothing accepts connections on {where_} (connection refused): the target is down or the port is wrong"
            ),
            ErrorClass::ConnectTimeout => {
                format!("{where_} never accepted a TCP connection within the request timeout")
            }
            ErrorClass::Tls => {
                format!("no TLS handshake with {where_} succeeded (see the TLS hint in the report)")
            }
            other => format!(
                "no connection to {where_} could be opened ({})",
                other.as_str()
            ),
        })
    }

    /// Runs of slots whose p99 exceeded `--slow` (empty without it).
    pub fn slow_windows(&self) -> Vec<SlowWindow> {
        self.config
            .verdict
            .slow
            .map(|t| gaps::slow_windows(self.recorder.timeline(), t))
            .unwrap_or_default()
    }
}

/// Runs the load described by `config`, and its rollout beside it, on one clock.
///
/// Without steps the load lasts `config.load.duration`. With steps: warmup (load only), then the
/// steps in order, then cooldown; the load ends when the cooldown does. If requests failed
/// during warmup (and `allow_warmup_errors` is off) no step runs and the load stops at once.
///
/// If `interrupt` resolves first, the load stops at once, every step's process group is killed,
/// and the partial result is returned, marked with the interruption.
pub async fn run(
    config: &RunConfig,
    console: Arc<Console>,
    orchestrator: Option<Arc<dyn Orchestrator>>,
    interrupt: impl Future<Output = Interruption>,
) -> Result<Finished, Error> {
    observed(config, console, orchestrator, interrupt, None).await
}

/// [`run`], publishing its live values on `board` (`--metrics-listen`): the board reads the
/// recorders while the load runs, follows the phase and the running step, and keeps the last
/// values once the load is over.
pub(crate) async fn observed(
    config: &RunConfig,
    console: Arc<Console>,
    orchestrator: Option<Arc<dyn Orchestrator>>,
    interrupt: impl Future<Output = Interruption>,
    board: Option<&crate::metrics::Board>,
) -> Result<Finished, Error> {
    // A shard waits for the common start; one that starts late counts what it missed.
    let (started_at, start) = match &config.load.shard {
        Some(shard) => origin(shard.start_at).await,
        None => (SystemTime::now(), Instant::now()),
    };
    // Zero unless this shard started after --start-at.
    let began = start.elapsed();
    let mut warnings = Vec::new();
    if began > LATE_START {
        let warning = format!(
            "this shard started {:.3} s after --start-at: the requests due before were sent late \
             or not sent",
            began.as_secs_f64()
        );
        console.line(&format!("gapless: warning: {warning}"));
        warnings.push(warning);
    }
    let has_steps = config.rollout.has_steps();
    // One recorder per endpoint, one engine (and pool of connections) per origin.
    let plans = parts_of(config, started_at);
    let mut recorders = Vec::with_capacity(plans.len());
    let mut probes = Vec::with_capacity(plans.len());
    let mut versions = Vec::with_capacity(plans.len());
    for plan in &plans {
        let interval = crate::load::schedule::Schedule::of(&plan.load, start)
            .shard_qps()
            .map_or(Duration::ZERO, |q| {
                Duration::try_from_secs_f64(1.0 / q).unwrap_or(crate::load::timer::HORIZON)
            });
        let recorder = Arc::new(Mutex::new(
            Recorder::new(
                start,
                Timeline::for_run(plan),
                plan.target.ok_codes.clone(),
                if has_steps {
                    Phase::Warmup
                } else {
                    Phase::Load
                },
                GapDetector::new(plan.verdict.merge_gap, interval),
            )
            .with_max_late(plan.verdict.max_late)
            .with_schedule_shift(plan.load.shift()),
        ));
        let probe = VersionProbe::new(
            plan.target.version_header.clone(),
            plan.target.version_regex.clone(),
        );
        versions.push(probe.labels().clone());
        probes.push(probe);
        recorders.push(recorder);
    }
    let pools = pools_of(&plans);
    let mut probes: Vec<Option<VersionProbe>> = probes.into_iter().map(Some).collect();
    let mut engines = Vec::with_capacity(pools.len());
    for pool in &pools {
        let destinations = pool
            .iter()
            .map(|&i| engine::Destination {
                config: &plans[i],
                recorder: recorders[i].clone(),
                probe: probes[i].take().unwrap_or_default(),
            })
            .collect();
        engines.push(Engine::new(destinations, start)?);
    }
    if let Some(warning) = engine::plan_warning(config) {
        console.line(&format!("gapless: warning: {warning}"));
        warnings.push(warning);
    }
    let not_sent = Arc::new(tokio::sync::Notify::new());
    let mut notices = JoinSet::new();
    for engine in &engines {
        let (mine, all) = (engine.not_sent_notice(), not_sent.clone());
        notices.spawn(async move {
            mine.notified().await;
            all.notify_one();
        });
    }
    let control = Controls(engines.iter().map(Engine::control).collect());
    let mut end = config.load.duration;
    // A sharded load lasts --duration on every shard, the conductor's steps included.
    let fixed_length = !has_steps || config.load.shard.is_some();
    if fixed_length {
        control.end_at(end);
    }
    let load_stop = CancellationToken::new();
    let rollout_stop = CancellationToken::new();
    let mut rollout = Rollout::new(
        config.rollout.steps.clone(),
        start,
        console.clone(),
        orchestrator,
    );
    let (status, status_rx) = watch::channel(Status {
        phase: if has_steps {
            Phase::Warmup
        } else {
            Phase::Load
        },
        step: None,
    });
    if let Some(board) = board {
        board.attach(&recorders);
    }
    let follow_rx = status_rx.clone();
    let follow = async move {
        match board {
            Some(board) => board.follow(follow_rx).await,
            None => std::future::pending().await,
        }
    };
    let mut interruption = None;
    // The long-lived probes, beside the load on its clock, until the load ends.
    let streams_stop = CancellationToken::new();
    let mut streams_probes = JoinSet::new();
    if !config.streams.is_empty() {
        streams_probes.spawn(crate::streams::run(
            config.streams.clone(),
            start,
            streams_stop.clone(),
        ));
    }
    let stats = {
        let load = run_engines(engines, engine::threads_for(config), load_stop.clone());
        let plan = orchestrate(
            config,
            start,
            &recorders,
            &control,
            &mut rollout,
            &rollout_stop,
            &status,
        );
        let progress = progress::show(&recorders, &console, start, status_rx, PROGRESS_EVERY);
        tokio::pin!(load, plan, progress, interrupt, follow);
        let mut planned = !has_steps;
        let mut warned = false;
        let stats = loop {
            tokio::select! {
                stats = &mut load => break stats,
                () = not_sent.notified(), if !warned => {
                    warned = true;
                    console.line(&format!(
                        "gapless: warning: from +{:.2}s requests are not being sent: no connection \
                         was free in time for them to make their deadlines (counted as not_sent \
                         failures); unless the target is stalling, -c {} is too few for this rate \
                         at its response times",
                        start.elapsed().as_secs_f64(),
                        config.load.connections
                    ));
                }
                planned_end = &mut plan, if !planned => {
                    planned = true;
                    end = planned_end;
                }
                cause = &mut interrupt, if interruption.is_none() => {
                    interruption = Some(cause);
                    load_stop.cancel();
                    rollout_stop.cancel();
                }
                () = &mut progress => {}
                () = &mut follow => {}
            }
        };
        if !planned {
            // Interrupted, the engine failed, or a sharded load's --duration ended: the running
            // step is killed.
            rollout_stop.cancel();
            plan.await;
        }
        (stats, !planned && interruption.is_none())
    };
    let (stats, cut_short) = stats;
    streams_stop.cancel();
    let mut streams = match streams_probes.join_next().await {
        Some(Ok(reports)) => reports,
        _ => Vec::new(),
    };
    if cut_short {
        rollout.cut_short("was still running when the load's --duration ended");
    }
    // The load is over: watchers are stopped after the clock stops (their output may drain).
    let elapsed = start.elapsed();
    if let Some(board) = board {
        board.detach();
    }
    rollout.stop_watchers().await;
    console.clear();
    notices.abort_all();
    // Each endpoint's totals, in the endpoints' order.
    let mut stats: Vec<Option<LoadStats>> = pools
        .iter()
        .zip(stats?)
        .flat_map(|(pool, stats)| pool.iter().copied().zip(stats))
        .fold(vec![None; plans.len()], |mut all, (i, s)| {
            all[i] = Some(s);
            all
        });
    let stats = stats.iter_mut().map(|s| s.take().unwrap_or_default());
    let length = if interruption.is_some() { elapsed } else { end };
    let rollout = rollout.into_report(&config.redact);
    let mut parts: Vec<Finished> = plans
        .into_iter()
        .zip(recorders)
        .zip(stats)
        .zip(versions)
        .map(|(((plan, recorder), stats), versions)| {
            let mut recorder = Arc::try_unwrap(recorder)
                .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
                .unwrap_or_else(|shared| {
                    shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                });
            recorder.finish(length);
            let mut warnings = warnings.clone();
            warnings.extend(not_sent_warning(&plan, &recorder));
            Finished {
                config: plan,
                started_at,
                elapsed,
                length,
                recorder,
                stats,
                rollout: rollout.clone(),
                versions,
                interruption,
                warnings,
                parts: Vec::new(),
                streams: std::mem::take(&mut streams),
            }
        })
        .collect();
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    let first = parts
        .first()
        .cloned()
        .ok_or(Error::Engine(engine::Error::Worker(
            "no endpoint to load".to_string(),
        )))?;
    Ok(Finished {
        config: config.clone(),
        warnings,
        parts,
        ..first
    })
}

/// The configuration of each endpoint's part: the run's, for a run of one target; with several,
/// the run's with that endpoint's target, and its interleave as a shard plan (endpoint `i` of
/// `n` equal ones sends the requests `k mod n == i` of the global schedule; weighted, its
/// positions of each cycle: [`crate::config::Interleave`]), labelled with its name.
fn parts_of(config: &RunConfig, started_at: SystemTime) -> Vec<RunConfig> {
    let count = u32::try_from(config.targets.len())
        .ok()
        .and_then(std::num::NonZeroU32::new);
    let Some(count) = count.filter(|c| c.get() > 1) else {
        return vec![config.clone()];
    };
    let weights: Vec<std::num::NonZeroU32> = config.targets.iter().map(|e| e.weight).collect();
    // The weights were checked when the configuration was made; equal parts otherwise.
    let interleave = std::sync::Arc::new(
        crate::config::Interleave::weighted(&weights)
            .unwrap_or_else(|_| crate::config::Interleave::equal(count)),
    );
    config
        .targets
        .iter()
        .enumerate()
        .map(|(i, endpoint)| RunConfig {
            target: endpoint.target.clone(),
            targets: Vec::new(),
            load: crate::config::LoadConfig {
                shard: Some(crate::config::ShardPlan {
                    index: i as u32,
                    count,
                    label: endpoint.name.clone(),
                    start_at: started_at,
                    interleave: interleave.clone(),
                }),
                ..config.load.clone()
            },
            ..config.clone()
        })
        .collect()
}

/// The endpoints that share a pool of connections, by index in `plans`, each pool in the
/// order of its first endpoint: those whose connections are made the same way
/// ([`crate::client::connection::Connector::serves_both`]: scheme, host, port, HTTP/2, TLS
/// settings). `-c` is then the connections per origin, as vegeta's `-connections` is per host.
fn pools_of(plans: &[RunConfig]) -> Vec<Vec<usize>> {
    let mut pools: Vec<Vec<usize>> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let same = |pool: &&mut Vec<usize>| {
            crate::client::connection::Connector::serves_both(&plans[pool[0]].target, &plan.target)
        };
        match pools.iter_mut().find(same) {
            Some(pool) => pool.push(i),
            None => pools.push(vec![i]),
        }
    }
    pools
}

/// Every engine's load control: the end of the load moves for all of them.
struct Controls(Vec<LoadControl>);

impl Controls {
    fn end_at(&self, offset: Duration) {
        for control in &self.0 {
            control.end_at(offset);
        }
    }
}

/// Runs every origin's engine to its end, on `threads` engine threads between them (one
/// engine alone: its own threads). Each engine's endpoints' totals, in order.
async fn run_engines(
    mut engines: Vec<Engine>,
    threads: usize,
    stop: CancellationToken,
) -> Result<Vec<Vec<LoadStats>>, engine::Error> {
    if engines.len() == 1
        && let Some(engine) = engines.pop()
    {
        return Ok(vec![engine.run(stop).await?]);
    }
    Engine::run_together(engines, threads, stop).await
}

/// The report's sentence about requests not sent, if any were: how many, and how many
/// connections the rate needs at the target's median service time (Little's law).
fn not_sent_warning(config: &RunConfig, recorder: &Recorder) -> Option<String> {
    let unsent = recorder.unsent();
    if unsent == 0 {
        return None;
    }
    let mut sentence = format!(
        "{unsent} of {} requests were not sent (not_sent): no connection was free in time for \
         them to make their deadlines",
        recorder.total()
    );
    let service = recorder.service();
    if let (Some(qps), false) = (config.load.rate.qps(), service.is_empty()) {
        let median = Duration::from_micros(service.value_at_quantile(0.5));
        let needed = (qps * median.as_secs_f64()).ceil().max(1.0);
        sentence.push_str(&format!(
            "; at the median service time of {}, -q {} needs about {needed:.0} connections \
             (-c {}): raise -c, or lower -q",
            crate::units::format_ms(median.as_secs_f64() * 1000.0),
            engine::rate_text(qps),
            config.load.connections
        ));
    }
    Some(sentence)
}

/// The run's start for a shard whose schedule begins at `start_at` on the wall clock: waits
/// until then if it is ahead; if it has passed, the start is that far in the past (the requests
/// due since are late, or not sent), as far back as the monotonic clock reaches.
async fn origin(start_at: SystemTime) -> (SystemTime, Instant) {
    let (now, wall) = (Instant::now(), SystemTime::now());
    match start_at.duration_since(wall) {
        Ok(ahead) => {
            let start = crate::load::timer::later(now, ahead);
            tokio::time::sleep_until(start.into()).await;
            (start_at, start)
        }
        Err(behind) => {
            let behind = behind.duration();
            match now.checked_sub(behind) {
                Some(start) => (start_at, start),
                None => (wall, now),
            }
        }
    }
}

/// A shard that starts this much after `--start-at` says so (below it, the start is on time).
const LATE_START: Duration = Duration::from_millis(100);

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How often the end of the warmup checks whether its last requests have finished.
const WARMUP_POLL: Duration = Duration::from_millis(5);

/// How long past its deadline (intended time + `--timeout`) the check of the warmup waits for
/// a warmup request's outcome: the engine records a timed-out request as soon as it notices.
const WARMUP_SETTLE: Duration = Duration::from_millis(250);

/// The phases of a run with steps: waits out the warmup, checks it, runs the steps, starts the
/// cooldown and sets the end of the load. Returns that end, from the start of the run.
///
/// The warmup is the requests intended in the first `warmup` of the run, the steps phase begins
/// exactly then (requests intended while the check waits count in it), and the check waits until
/// every warmup request has ended (each within one `--timeout` of its intended time): so the
/// warmup's tally is complete when it is judged, and it has failures exactly when the check
/// found some. A phase table cannot then show a failed warmup that the exit code ignored (a
/// request in flight when the first step broke the target belongs to the steps phase).
async fn orchestrate(
    config: &RunConfig,
    start: Instant,
    recorders: &[Arc<Mutex<Recorder>>],
    control: &Controls,
    rollout: &mut Rollout,
    stop: &CancellationToken,
    status: &watch::Sender<Status>,
) -> Duration {
    let each = |f: &dyn Fn(&mut Recorder)| {
        for recorder in recorders {
            f(&mut recorder.lock().unwrap_or_else(PoisonError::into_inner));
        }
    };
    // The warmup's (failed, total), over every endpoint.
    let warmup_tally = || {
        let (mut failed, mut total) = (0, 0);
        for recorder in recorders {
            let r = recorder.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(p) = r.phase(Phase::Warmup) {
                failed += p.failed;
                total += p.total;
            }
        }
        (failed, total)
    };
    let warmup = config.rollout.warmup;
    // Declared in advance, so no request intended after the warmup is ever counted in it; taken
    // back below if no step runs.
    each(&|r: &mut Recorder| r.begin_phase(Phase::Steps, warmup));
    let no_steps = |end: Duration| {
        each(&|r: &mut Recorder| r.withdraw_phase());
        end
    };
    tokio::select! {
        _ = tokio::time::sleep_until(later(start, warmup).into()) => {}
        _ = stop.cancelled() => return no_steps(start.elapsed()),
    }
    // Let every warmup request end before judging the warmup. A closed loop (`-q 0`) has no
    // count known in advance: it waits until the last one's deadline has passed.
    let due = crate::load::schedule::Schedule::of(&config.load, start)
        .count_before(warmup.saturating_sub(config.load.shift()));
    let settled = later(later(start, warmup), config.target.timeout + WARMUP_SETTLE);
    while due.is_none_or(|due| warmup_tally().1 < due) && Instant::now() < settled {
        tokio::select! {
            _ = tokio::time::sleep(WARMUP_POLL) => {}
            _ = stop.cancelled() => return no_steps(start.elapsed()),
        }
    }
    let (failed, total) = warmup_tally();
    if failed > 0 && !config.verdict.limits.allow_warmup_errors {
        rollout.abandon_for_warmup(failed, total);
        if config.load.shard.is_some() {
            // A shard's load still lasts --duration, like the other shards': the merge covers
            // the whole schedule.
            return no_steps(config.load.duration.max(start.elapsed()));
        }
        let now = start.elapsed();
        control.end_at(now);
        return no_steps(now);
    }
    let steps_start = Instant::now();
    status.send_modify(|s| s.phase = Phase::Steps);
    let (current, mut current_rx) = watch::channel(None);
    {
        let perform = rollout.perform(steps_start, stop, &current);
        tokio::pin!(perform);
        loop {
            tokio::select! {
                () = &mut perform => break,
                Ok(()) = current_rx.changed() => {
                    let step = current_rx.borrow_and_update().clone();
                    status.send_modify(|s| s.step = step);
                }
            }
        }
    }
    status.send_modify(|s| s.step = None);
    if stop.is_cancelled() {
        return start.elapsed();
    }
    let cooldown_start = start.elapsed();
    each(&|r: &mut Recorder| r.begin_phase(Phase::Cooldown, cooldown_start));
    status.send_modify(|s| s.phase = Phase::Cooldown);
    if config.load.shard.is_some() {
        // A shard's load lasts --duration, like every other shard's.
        return config.load.duration.max(cooldown_start);
    }
    let end = cooldown_start.saturating_add(config.rollout.cooldown);
    control.end_at(end);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str], targets: usize) -> RunConfig {
        let mut argv = vec!["gapless", "run", "http://127.0.0.1:9/"];
        argv.extend_from_slice(args);
        let crate::cli::Command::Run(run) = crate::cli::Cli::parse_from(argv).unwrap().command
        else {
            unreachable!("a run command")
        };
        let mut config = run.validate(None, &|_| None).unwrap().config;
        config.targets = (0..targets)
            .map(|i| crate::config::Endpoint {
                name: format!("e{i}"),
                target: config.target.clone(),
                weight: std::num::NonZeroU32::MIN,
            })
            .collect();
        config
    }

    /// Endpoint `i` of `n` is sent exactly the requests `k mod n == i` of the run's schedule,
    /// each due when the run's schedule has it due: an absolute schedule of its own.
    #[test]
    fn the_interleave_gives_endpoint_i_the_requests_k_mod_n() {
        let start = Instant::now();
        let qps = 300.0;
        let parts = parts_of(&config(&["-q", "300"], 3), SystemTime::now());
        assert_eq!(parts.len(), 3);
        let whole = crate::load::schedule::Schedule::new(
            start,
            crate::config::Rate::from_qps(qps).unwrap(),
        );
        let mut seen = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            assert!(part.targets.is_empty());
            let shard = part.load.shard.as_ref().unwrap();
            assert_eq!(
                (
                    shard.index as usize,
                    shard.count.get(),
                    shard.label.as_str()
                ),
                (i, 3, format!("e{i}").as_str())
            );
            let schedule = crate::load::schedule::Schedule::of(&part.load, start);
            for j in 0..200u64 {
                let k = j * 3 + i as u64;
                let (mine, run) = (schedule.due_at(j).unwrap(), whole.due_at(k).unwrap());
                // Equal to the nanosecond (each rounds its offset up to one).
                let apart = mine.max(run).duration_since(mine.min(run));
                assert!(
                    apart <= Duration::from_nanos(1),
                    "endpoint {i}, request {j}: {apart:?}"
                );
                seen.push(k);
            }
            // In any second, each endpoint has its third of the requests.
            let second = Duration::from_secs(1).saturating_sub(part.load.shift());
            assert_eq!(schedule.count_before(second), Some(100), "endpoint {i}");
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..600).collect::<Vec<u64>>(), "every request once");
        // One target: the run's own configuration, no shard plan.
        let one = parts_of(&config(&["-q", "300"], 0), SystemTime::now());
        assert_eq!(one.len(), 1);
        assert!(one[0].load.shard.is_none());
        let single = parts_of(&config(&["-q", "300"], 1), SystemTime::now());
        assert!(single[0].load.shard.is_none());
    }

    /// Endpoints share a pool when their connections are made the same way: the same scheme,
    /// host and port, HTTP/2 or not, and (for TLS) the same verification; the path, method,
    /// headers and timeout do not matter.
    #[test]
    fn endpoints_of_one_origin_share_a_pool() {
        let one = config(&["-q", "1"], 0);
        let mut config = config(&["-q", "100"], 6);
        let urls = [
            "http://127.0.0.1:9/a",
            "http://127.0.0.1:10/a",
            "http://127.0.0.1:9/b?x=1",
            "https://127.0.0.1:9/a",
            "http://127.0.0.1:9/c",
            "http://127.0.0.1:9/h2",
        ];
        for (endpoint, url) in config.targets.iter_mut().zip(urls) {
            endpoint.target.url = url.parse().unwrap();
        }
        config.targets[4].target.timeout = Duration::from_millis(1);
        config.targets[4].target.method = http::Method::POST;
        config.targets[5].target.http2 = true;
        let plans = parts_of(&config, SystemTime::now());
        assert_eq!(
            pools_of(&plans),
            vec![vec![0, 2, 4], vec![1], vec![3], vec![5]]
        );
        let mut insecure = config.clone();
        insecure.targets[0].target.url = "https://127.0.0.1:9/".parse().unwrap();
        insecure.targets[3].target.insecure = true;
        let plans = parts_of(&insecure, SystemTime::now());
        assert_eq!(
            pools_of(&plans),
            vec![vec![0], vec![1], vec![2, 4], vec![3], vec![5]]
        );
        // One target: one pool.
        assert_eq!(pools_of(&parts_of(&one, SystemTime::now())), vec![vec![0]]);
    }
}
