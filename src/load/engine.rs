//! The load engine: per engine thread (a shard of the schedule), the pacer and the connection
//! workers, owned by that thread's `JoinSet`; the threads are owned by the engine's.
//!
//! Each worker loops: claim the next due arrival from the [`Dispatcher`], make exactly one attempt
//! (connecting first if its connection is gone), turn whatever happened into a [`Completion`] and
//! hand it to the [`Recorder`]. The deadline of an attempt is its intended send time plus the
//! request timeout. Every loop races the shutdown token, and yields to the runtime's budget, so a
//! signal is always seen.
//!
//! **Not sent.** A request is not sent when, as a connection becomes free for it, the time left
//! before its deadline is shorter than the median service time of the last [`RECENT`] responses
//! on that connection and a [`margin`] for a slower response (capped at half the timeout, so a
//! fresh request is always tried), or has run out: it could not be answered in time, and sending it would only have it abandoned at
//! its deadline and the connection with it. Such requests are claimed in one batch and recorded as
//! `not_sent` failures, never silently skipped (see [`crate::load::dispatch`]). The same goes for an
//! attempt the connect-rate ceiling would not allow before its deadline.
//!
//! **One pool per origin.** An engine sends to one or more endpoints that share an origin (and
//! everything else that decides how a connection is made, see [`Connector::serves_both`]): one
//! connector, one set of connections (`-c`), one schedule (a [`Lineup`]: the endpoints' requests
//! in the run's global order, each with its endpoint's own due time). Each arrival names its
//! endpoint, whose request, timeout, version probe and recorder the worker uses: an endpoint's
//! results are its own, whichever connection carried its requests.
//!
//! **Workers on demand.** A shard starts a few workers and adds more (up to one per connection
//! and stream) at a pacer tick where arrivals wait and no worker is idle: `-c` is a ceiling, not
//! an allocation.
//!
//! Between pacer ticks an engine thread with nothing to do naps until the next tick without
//! watching its sockets ([`nap`]): on a small VM one wake-up per tick is much cheaper than one
//! per response batch, and HTTP/1.1 responses keep their true completion time from the kernel's
//! receive timestamp.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::client::connection::{Connector, Link, Reply, RequestTemplate};
use crate::config::{Rate, RunConfig};
use crate::load::dispatch::{Claim, Dispatcher, Need};
use crate::load::schedule::{Arrival, Batch, Lineup, Schedule};
use crate::load::timer::later;
use crate::measure::outcome::{
    Completion, ConnectionUse, ErrorClass, ErrorSamples, Fault, Outcome,
};
use crate::measure::recorder::Recorder;
use crate::measure::version::VersionProbe;

/// Responses per connection whose service time the not-sent rule looks at.
pub const RECENT: usize = 8;

/// Workers a shard starts with (at most one per connection and stream).
const INITIAL_WORKERS: usize = 64;

/// Most workers a shard adds at one pacer tick.
const GROW_PER_TICK: usize = 256;

/// Requests per second one engine thread can carry at most, with room to spare (BENCHMARKS.md,
/// "Constants chosen by measurement").
pub const THREAD_CEILING: f64 = 150_000.0;

/// Requests per second one connection (one stream) can carry at most: one request at a time, and
/// no round trip is shorter than a loopback one (BENCHMARKS.md, "Constants chosen by
/// measurement").
pub const STREAM_CEILING: f64 = 50_000.0;

/// Errors that stop the engine as a whole (per-request failures are recorded, not returned).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connector could not be built.
    #[error(transparent)]
    Connector(#[from] crate::client::connection::Error),
    /// A worker task panicked: a bug in gapless.
    #[error("a load worker failed unexpectedly: {0}")]
    Worker(String),
    /// An engine thread's runtime or pacing timer could not be set up.
    #[error("cannot start the load engine")]
    Setup(#[source] std::io::Error),
}

/// Totals the engine keeps beside the recorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Connections opened.
    pub connections_opened: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Arrivals due but not sent or not finished because the run was interrupted.
    pub interrupted: u64,
    /// Response body bytes read (and discarded), including bodies of responses that never
    /// completed.
    pub body_bytes: u64,
    /// Times an engine thread napped between pacer ticks without watching its sockets.
    pub naps: u64,
    /// Connections opened by the endpoint's pool, shared with the other endpoints of its
    /// origin (`connections_opened` counts those its own requests opened).
    pub pool_opened: u64,
}

/// One connection and the task that drives it. HTTP/1.1 workers own one each; HTTP/2 workers
/// share one per connection.
#[derive(Debug, Default)]
struct Lane {
    link: Option<Link>,
    drivers: JoinSet<()>,
}

/// A lane and what its responses took recently (kept across reconnects: the same target).
#[derive(Debug, Default)]
struct Seat {
    lane: tokio::sync::Mutex<Lane>,
    service: ServiceTimes,
}

/// The last [`RECENT`] service times of a connection.
#[derive(Debug, Default)]
struct ServiceTimes {
    /// Nanoseconds, the next slot to write, and how many are filled.
    ring: Mutex<([u64; RECENT], usize, usize)>,
    /// Their median, in nanoseconds.
    median: AtomicU64,
}

impl ServiceTimes {
    fn note(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let (times, next, filled) = &mut *ring;
        times[*next] = nanos;
        *next = (*next + 1) % RECENT;
        *filled = (*filled + 1).min(RECENT);
        let mut sorted = *times;
        let sorted = &mut sorted[..*filled];
        sorted.sort_unstable();
        // The lower median: one slow response in two does not count yet.
        self.median
            .store(sorted[(sorted.len() - 1) / 2], Ordering::Relaxed);
    }

    /// The time a request needs left before its deadline to be worth sending: the median of
    /// the recent service times (one stall does not hold back the requests queued behind it)
    /// and a [`margin`] for a response slower than that median, at most half the timeout (so a
    /// request sent on time is always tried, and the estimate can recover). Nothing to go by
    /// yet: no need.
    fn need(&self, timeout: Duration) -> Duration {
        let median = Duration::from_nanos(self.median.load(Ordering::Relaxed));
        if median.is_zero() {
            return Duration::ZERO;
        }
        (median + margin(median)).min(timeout / 2)
    }
}

/// The fixed part of the [`margin`]: the time between deciding to send and the response read,
/// on a busy machine, beyond what the target took.
pub const MARGIN_FIXED: Duration = Duration::from_millis(5);

/// How much slower than the median a response may be and still make its deadline: a quarter of
/// the median plus [`MARGIN_FIXED`]. A backlog sends each request with whatever slack the grid
/// of due times leaves, which drifts down to zero now and then: with the median alone, a
/// request sent with 0.1 ms to spare timed out whenever its response was 0.1 ms slower than
/// the median (about one send in two there), abandoning the request at the target, taking the
/// HTTP/1.1 connection with it and counting as a failure window that the target did not cause.
/// Measured with a 50 ms target on one connection (2 cores): the 99th percentile service time
/// is the median + 4 ms alone, + 20 ms beside `stress-ng --cpu 2` (the 90th, + 5 ms): 50 ms
/// needs 67.5 ms left, which covers all but about one response in a hundred there.
pub fn margin(median: Duration) -> Duration {
    median / 4 + MARGIN_FIXED
}

impl Need for ServiceTimes {
    fn before(&self, timeout: Duration) -> Duration {
        self.need(timeout)
    }
}

/// Why an attempt could not use a connection.
enum NoLink {
    /// The connect-rate ceiling would not allow an attempt before the deadline: nothing was sent.
    Throttled,
    /// The connect failed.
    Failed(Fault),
}

impl Lane {
    fn discard(&mut self) {
        // An HTTP/2 connection draining after a GOAWAY still answers the streams it carries:
        // its driver ends by itself once they are (stopping it would fail them).
        let draining = self.link.as_ref().is_some_and(Link::draining);
        self.link = None;
        if !draining {
            self.drivers.abort_all();
        }
        while self.drivers.try_join_next().is_some() {}
    }

    /// Makes sure the lane has a usable connection, opening one if needed.
    async fn prepare(
        &mut self,
        connector: &Connector,
        deadline: Instant,
    ) -> Result<ConnectionUse, NoLink> {
        if let Some(link) = &mut self.link
            && link.ready().await
        {
            return Ok(ConnectionUse::Reused);
        }
        // Closed while idle (or never opened): reconnecting sends nothing twice.
        self.discard();
        if !connector.admit(deadline).await {
            return Err(NoLink::Throttled);
        }
        let link = connector
            .connect(&mut self.drivers)
            .await
            .map_err(NoLink::Failed)?;
        self.link = Some(link);
        Ok(ConnectionUse::New)
    }
}

/// Where an attempt got to, so a deadline can be classified.
#[derive(Clone, Copy)]
enum Stage {
    Connecting,
    Exchanging(ConnectionUse),
}

/// What an attempt produced, before timestamps are added.
enum Exchange {
    Replied(Reply),
    Failed(Fault),
    NotSent,
}

impl From<Result<Reply, Fault>> for Exchange {
    fn from(result: Result<Reply, Fault>) -> Exchange {
        match result {
            Ok(reply) => Exchange::Replied(reply),
            Err(fault) => Exchange::Failed(fault),
        }
    }
}

/// What an engine keeps for one of its endpoints.
#[derive(Debug)]
struct Endpoint {
    recorder: Arc<Mutex<Recorder>>,
    template: RequestTemplate,
    timeout: Duration,
    probe: VersionProbe,
    interrupted: AtomicU64,
    received: AtomicU64,
    /// Connections its requests opened, and connection attempts of its requests that failed.
    opened: AtomicU64,
    failed: AtomicU64,
    /// The recorder's first message of each error class.
    samples: Arc<ErrorSamples>,
    /// Set at the first attempt; the recorder is told when it began (the target's first
    /// silence starts there, not at the start of the run).
    asked: AtomicBool,
}

#[derive(Debug)]
struct Shared {
    connector: Connector,
    http2: bool,
    /// The endpoints, in the order of the lineup's members.
    endpoints: Vec<Endpoint>,
    naps: AtomicU64,
    /// Set at the first request not sent; `not_sent` is told then.
    any_not_sent: AtomicBool,
    not_sent: Arc<Notify>,
}

/// What one attempt came to.
enum Attempt {
    Done(Completion),
    /// The attempt could not be made in time (connect-rate ceiling, or the deadline passed).
    NotSent,
}

impl Shared {
    fn record(&self, member: usize, completion: &Completion) {
        self.endpoints[member]
            .recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(completion);
    }

    fn record_not_sent(&self, member: usize, batch: &Batch) {
        self.endpoints[member]
            .recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_not_sent(batch);
        if !self.any_not_sent.load(Ordering::Relaxed)
            && !self.any_not_sent.swap(true, Ordering::AcqRel)
        {
            self.not_sent.notify_one();
        }
    }

    /// One attempt at `arrival` on `lane`, abandoned at its endpoint's deadline. `timer` is the
    /// worker's deadline timer, moved to this attempt's deadline (see [`drive`]).
    async fn attempt(
        &self,
        lane: &tokio::sync::Mutex<Lane>,
        arrival: Arrival,
        mut timer: Pin<&mut Sleep>,
    ) -> Attempt {
        let endpoint = &self.endpoints[arrival.member];
        let timeout = endpoint.timeout;
        let deadline = later(arrival.due, timeout);
        let began = Instant::now();
        if began >= deadline {
            return Attempt::NotSent;
        }
        if !endpoint.asked.load(Ordering::Relaxed) && !endpoint.asked.swap(true, Ordering::AcqRel) {
            endpoint
                .recorder
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .asked(began);
        }
        let mut stage = Stage::Connecting;
        timer.as_mut().reset(deadline.into());
        // The exchange first, as `timeout_at` polls it: an answer that is in counts.
        let result = tokio::select! {
            biased;
            exchange = self.exchange(endpoint, lane, deadline, &mut stage) => Ok(exchange),
            () = timer => Err(()),
        };
        let mut done = Instant::now();
        let (exchange, connection) = match (result, stage) {
            (Ok(exchange), Stage::Exchanging(use_)) => (exchange, use_),
            (Ok(exchange), Stage::Connecting) => (exchange, ConnectionUse::New),
            (Err(_), Stage::Connecting) => (
                Exchange::Failed(Fault::deadline(ErrorClass::ConnectTimeout, timeout)),
                ConnectionUse::New,
            ),
            (Err(_), Stage::Exchanging(use_)) => {
                if !self.http2 {
                    // The HTTP/1.1 connection is mid-request: it cannot be reused.
                    lane.lock().await.discard();
                }
                (
                    Exchange::Failed(Fault::deadline(ErrorClass::Timeout, timeout)),
                    use_,
                )
            }
        };
        let (outcome, body_bytes, version, envoy) = match exchange {
            Exchange::Replied(reply) => {
                // The kernel's receive time, when known: the thread may have napped since.
                if let Some(received) = reply.received.filter(|r| (began..=done).contains(r)) {
                    done = received;
                }
                (
                    Outcome::Status(reply.status),
                    reply.body_bytes,
                    reply.version,
                    reply.envoy,
                )
            }
            Exchange::Failed(fault) => {
                // Put into words only if it is the first of its class.
                endpoint.samples.note(fault.class, &fault);
                (Outcome::Failed(fault.class), 0, None, None)
            }
            Exchange::NotSent => return Attempt::NotSent,
        };
        Attempt::Done(Completion {
            seq: arrival.seq,
            due: arrival.due,
            sent: Some(began),
            done,
            outcome,
            connection,
            body_bytes,
            version,
            envoy,
        })
    }

    async fn exchange(
        &self,
        endpoint: &Endpoint,
        lane: &tokio::sync::Mutex<Lane>,
        deadline: Instant,
        stage: &mut Stage,
    ) -> Exchange {
        let mut guard = lane.lock().await;
        let use_ = match guard.prepare(&self.connector, deadline).await {
            Ok(use_) => use_,
            Err(NoLink::Throttled) => return Exchange::NotSent,
            Err(NoLink::Failed(class)) => {
                endpoint.failed.fetch_add(1, Ordering::Relaxed);
                return Exchange::Failed(class);
            }
        };
        if use_ == ConnectionUse::New {
            endpoint.opened.fetch_add(1, Ordering::Relaxed);
        }
        *stage = Stage::Exchanging(use_);
        let request = &endpoint.template;
        if let Some(mut h2) = guard.link.as_ref().and_then(Link::share) {
            // HTTP/2: release the lane so other streams can use the connection.
            drop(guard);
            return h2
                .exchange(request, &endpoint.probe, &endpoint.received)
                .await
                .into();
        }
        let Some(link) = guard.link.as_mut() else {
            return Exchange::Failed(Fault::new(ErrorClass::Other, "no connection to send on"));
        };
        let result = link
            .exchange(request, &endpoint.probe, &endpoint.received)
            .await;
        if result.is_err() {
            guard.discard();
        }
        result.into()
    }
}

/// Moves the end of a running load, from outside the engine.
#[derive(Clone, Debug)]
pub struct LoadControl {
    dispatchers: Arc<[Arc<Dispatcher>]>,
}

impl LoadControl {
    /// Ends the load at `offset` from the start: nothing due at or after it is sent.
    pub fn end_at(&self, offset: Duration) {
        for d in self.dispatchers.iter() {
            d.end_at(offset);
        }
    }
}

/// One engine thread: its share of the schedule and of the connections, on its own
/// current-thread runtime, so that pacing, workers and connection drivers wake each other without
/// crossing threads.
#[derive(Debug)]
struct Shard {
    shared: Arc<Shared>,
    dispatcher: Arc<Dispatcher>,
    connections: usize,
    streams: usize,
}

impl Shard {
    async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut tasks = JoinSet::new();
        let workers = self.connections.saturating_mul(self.streams);
        {
            let dispatcher = self.dispatcher.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                dispatcher
                    .pace(&shutdown, workers)
                    .await
                    .map_err(Error::Setup)
            });
        }
        let mut crew = Crew::new(self.streams, workers);
        crew.add(INITIAL_WORKERS, &self, &shutdown, &mut tasks);
        let mut result = Ok(());
        loop {
            tokio::select! {
                joined = tasks.join_next() => {
                    let Some(joined) = joined else { break };
                    let failure = match joined {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => e,
                        Err(e) => Error::Worker(e.to_string()),
                    };
                    shutdown.cancel();
                    if result.is_ok() {
                        result = Err(failure);
                    }
                }
                () = self.dispatcher.wants_worker(), if !crew.full() => {
                    crew.add(GROW_PER_TICK, &self, &shutdown, &mut tasks);
                }
            }
        }
        result
    }
}

/// The workers of one shard, spawned as they are needed: lane by lane, `streams` per lane.
struct Crew {
    streams: usize,
    limit: usize,
    spawned: usize,
    seat: Option<Arc<Seat>>,
}

impl Crew {
    fn new(streams: usize, limit: usize) -> Crew {
        Crew {
            streams: streams.max(1),
            limit,
            spawned: 0,
            seat: None,
        }
    }

    fn full(&self) -> bool {
        self.spawned >= self.limit
    }

    /// Spawns up to `n` more workers, within the limit.
    fn add(
        &mut self,
        n: usize,
        shard: &Shard,
        shutdown: &CancellationToken,
        tasks: &mut JoinSet<Result<(), Error>>,
    ) {
        for _ in 0..n.min(self.limit - self.spawned) {
            if self.spawned % self.streams == 0 {
                self.seat = Some(Arc::new(Seat::default()));
            }
            let seat = self.seat.clone().unwrap_or_default();
            let (shared, dispatcher) = (shard.shared.clone(), shard.dispatcher.clone());
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                drive(&shared, &dispatcher, &seat, &shutdown).await;
                Ok(())
            });
            self.spawned += 1;
        }
    }
}

/// Waits for every task; on the first failure, cancels the others and returns that failure.
async fn join_all(
    tasks: &mut JoinSet<Result<(), Error>>,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let failure = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => Error::Worker(e.to_string()),
        };
        shutdown.cancel();
        if result.is_ok() {
            result = Err(failure);
        }
    }
    result
}

/// How many engine threads: one per 100,000 requests per second, at most one per core and per
/// connection; a closed loop uses every core. One thread is the cheapest way to run up to about
/// 100,000 req/s: more threads than free cores only add context switches (BENCHMARKS.md,
/// "Constants chosen by measurement").
pub fn shard_count(rate: Rate, connections: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = match rate.qps() {
        Some(q) => (q / 100_000.0).ceil() as usize,
        None => cores,
    };
    wanted.clamp(1, cores).min(connections.max(1))
}

/// Engine threads for a run: `--threads` (at most one per core and per connection, as README
/// says), or [`shard_count`].
pub fn threads_for(config: &RunConfig) -> usize {
    let load = &config.load;
    let connections = load.connections.get();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    load.threads.map_or_else(
        || shard_count(load.rate, connections),
        |n| n.get().min(cores).min(connections),
    )
}

/// Streams each connection carries (1 for HTTP/1.1).
fn streams_for(config: &RunConfig) -> usize {
    if config.target.http2 {
        config.load.streams.get()
    } else {
        1
    }
}

/// One sentence when the rate is far above what the plan can carry at all, whatever the target
/// (engine threads × [`THREAD_CEILING`], connections × streams × [`STREAM_CEILING`]): most of its
/// requests will not be sent. `None` for a plan that may hold (whether it does depends on the
/// target's service time; requests that cannot are counted `not_sent` and warned about then).
pub fn plan_warning(config: &RunConfig) -> Option<String> {
    let qps = config.load.rate.qps()?;
    let threads = threads_for(config);
    let lanes = config
        .load
        .connections
        .get()
        .saturating_mul(streams_for(config));
    let by_threads = threads as f64 * THREAD_CEILING;
    let by_lanes = lanes as f64 * STREAM_CEILING;
    let capacity = by_threads.min(by_lanes);
    if qps <= capacity {
        return None;
    }
    let why = if by_threads <= by_lanes {
        format!(
            "{threads} engine thread{} carry at most about {} req/s",
            if threads == 1 { "" } else { "s" },
            group_thousands(by_threads)
        )
    } else {
        format!(
            "{lanes} connection{} (one request in flight each) carry at most about {} req/s",
            if lanes == 1 { "" } else { "s" },
            group_thousands(by_lanes)
        )
    };
    Some(format!(
        "-q {} is far above what this plan can carry: {why}; most requests will not be sent \
         (counted as not_sent failures)",
        rate_text(qps)
    ))
}

/// A rate as given, in scientific notation when it is huge (`1e300`, not 301 digits).
pub fn rate_text(qps: f64) -> String {
    if qps < 1e9 {
        format!("{qps}")
    } else {
        format!("{qps:e}")
    }
}

/// `1,500,000`.
fn group_thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.min(1e18));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// One endpoint an engine sends to: its part of the run's configuration (the whole run's, for
/// a run of one target), the recorder its requests go to, and the probe that reads which
/// version answered.
#[derive(Debug)]
pub struct Destination<'a> {
    /// Its configuration: its target, and the run's load with its part of the interleave.
    pub config: &'a RunConfig,
    /// Where its requests are recorded.
    pub recorder: Arc<Mutex<Recorder>>,
    /// Reads which version answered it.
    pub probe: VersionProbe,
}

/// The load engine of one origin: its endpoints (one, for a run of one target) and the one
/// pool of connections they share.
#[derive(Debug)]
pub struct Engine {
    shared: Arc<Shared>,
    shards: Vec<Shard>,
    control: LoadControl,
}

impl Engine {
    /// An engine for `destinations` (at least one; endpoints whose connections are made the
    /// same way, [`Connector::serves_both`]), whose schedule starts at `start`. The first one's
    /// configuration decides the connections and the load (the same for all but the target and
    /// the part of the interleave).
    pub fn new(destinations: Vec<Destination<'_>>, start: Instant) -> Result<Engine, Error> {
        let Some(first) = destinations.first().map(|d| d.config) else {
            return Err(Error::Worker("no endpoint to load".to_string()));
        };
        let load = &first.load;
        let connections = load.connections.get();
        let streams = streams_for(first);
        let burst = NonZeroU32::new(u32::try_from(connections).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        let connector = Connector::new(&first.target, load.max_connect_rate, burst)?;
        let count = threads_for(first);
        let schedules: Vec<Schedule> = destinations
            .iter()
            .map(|d| Schedule::of(&d.config.load, start))
            .collect();
        let timeouts: Vec<Duration> = destinations
            .iter()
            .map(|d| d.config.target.timeout)
            .collect();
        // Several endpoints: their positions of the run's interleave (which their shard plans
        // hold; equal parts if they had none).
        let interleave = first.load.shard.as_ref().map_or_else(
            || {
                let n = u32::try_from(destinations.len()).unwrap_or(u32::MAX);
                Arc::new(crate::config::Interleave::equal(
                    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN),
                ))
            },
            |s| s.interleave.clone(),
        );
        let parts: Vec<usize> = destinations
            .iter()
            .enumerate()
            .map(|(i, d)| d.config.load.shard.as_ref().map_or(i, |s| s.index as usize))
            .collect();
        let lineup = |thread: usize| {
            let mine: Vec<Schedule> = schedules.iter().map(|s| s.shard(thread, count)).collect();
            Lineup::dealt(start, &interleave, &parts, mine, thread, count)
        };
        let endpoints = destinations
            .into_iter()
            .map(|d| {
                let samples = d
                    .recorder
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .error_samples()
                    .clone();
                Endpoint {
                    samples,
                    recorder: d.recorder,
                    template: RequestTemplate::new(&d.config.target),
                    timeout: d.config.target.timeout,
                    probe: d.probe,
                    interrupted: AtomicU64::new(0),
                    received: AtomicU64::new(0),
                    opened: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    asked: AtomicBool::new(false),
                }
            })
            .collect();
        let shared = Arc::new(Shared {
            connector,
            http2: first.target.http2,
            endpoints,
            naps: AtomicU64::new(0),
            any_not_sent: AtomicBool::new(false),
            not_sent: Arc::new(Notify::new()),
        });
        let shards: Vec<Shard> = (0..count)
            .map(|i| Shard {
                shared: shared.clone(),
                dispatcher: Arc::new({
                    let dispatcher = Dispatcher::of(lineup(i), timeouts.clone());
                    if streams > 1 {
                        dispatcher.newest_first()
                    } else {
                        dispatcher
                    }
                }),
                // Spread connections evenly; the first shards take the remainder.
                connections: connections / count + usize::from(i < connections % count),
                streams,
            })
            .collect();
        let control = LoadControl {
            dispatchers: shards.iter().map(|s| s.dispatcher.clone()).collect(),
        };
        Ok(Engine {
            shared,
            shards,
            control,
        })
    }

    /// A handle to move the end of the load while it runs.
    pub fn control(&self) -> LoadControl {
        self.control.clone()
    }

    /// Notified once, at the first request not sent (to warn while the load runs).
    pub fn not_sent_notice(&self) -> Arc<Notify> {
        self.shared.not_sent.clone()
    }

    /// Runs until every shard's dispatcher is closed and every claimed arrival is recorded, or
    /// until `shutdown` fires (in-flight attempts are then abandoned and counted as interrupted).
    /// Returns each endpoint's totals, in order.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Vec<LoadStats>, Error> {
        let mut threads = JoinSet::new();
        for shard in self.shards {
            let shutdown = shutdown.clone();
            threads.spawn_blocking(move || run_thread(vec![shard], &shutdown));
        }
        join_all(&mut threads, &shutdown).await?;
        Ok(totals(&self.shared, &self.control))
    }

    /// Runs several engines (one per origin of a run of several endpoints) on `threads` engine
    /// threads between them, each thread carrying the shards of several engines on its one
    /// runtime: a thread per engine would cost a thread, a runtime and a share of the
    /// allocator's arenas each, and wake-ups the cores cannot give (BENCHMARKS.md, "Several
    /// endpoints"). Returns each engine's endpoints' totals, in order.
    pub async fn run_together(
        engines: Vec<Engine>,
        threads: usize,
        shutdown: CancellationToken,
    ) -> Result<Vec<Vec<LoadStats>>, Error> {
        let threads = threads.max(1);
        let mut groups: Vec<Vec<Shard>> = (0..threads).map(|_| Vec::new()).collect();
        let mut kept = Vec::with_capacity(engines.len());
        let mut next = 0;
        for engine in engines {
            for shard in engine.shards {
                groups[next % threads].push(shard);
                next += 1;
            }
            kept.push((engine.shared, engine.control));
        }
        let mut set = JoinSet::new();
        for group in groups.into_iter().filter(|g| !g.is_empty()) {
            let shutdown = shutdown.clone();
            set.spawn_blocking(move || run_thread(group, &shutdown));
        }
        join_all(&mut set, &shutdown).await?;
        Ok(kept
            .iter()
            .map(|(shared, control)| totals(shared, control))
            .collect())
    }
}

/// One engine thread: `shards` (of one engine, or of several endpoints' engines) on one
/// current-thread runtime, until each is done.
fn run_thread(shards: Vec<Shard>, shutdown: &CancellationToken) -> Result<(), Error> {
    let watched: Vec<(Arc<Dispatcher>, Arc<Shared>)> = shards
        .iter()
        .map(|s| (s.dispatcher.clone(), s.shared.clone()))
        .collect();
    // A thread of the caller's blocking pool: its timer slack is put back after.
    crate::load::timer::with_precise_naps(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(move || nap(&watched))
            .build()
            .map_err(Error::Setup)?;
        let mut shards = shards;
        if shards.len() == 1
            && let Some(shard) = shards.pop()
        {
            return runtime.block_on(shard.run(shutdown.clone()));
        }
        runtime.block_on(async {
            let mut tasks = JoinSet::new();
            for shard in shards {
                tasks.spawn(shard.run(shutdown.clone()));
            }
            join_all(&mut tasks, shutdown).await
        })
    })
}

/// An engine's totals once its threads are done, per endpoint.
fn totals(shared: &Shared, control: &LoadControl) -> Vec<LoadStats> {
    shared
        .endpoints
        .iter()
        .enumerate()
        .map(|(m, endpoint)| {
            let unclaimed: u64 = control
                .dispatchers
                .iter()
                .map(|d| d.unclaimed(m))
                .fold(0, u64::saturating_add);
            LoadStats {
                connections_opened: endpoint.opened.load(Ordering::Relaxed),
                connect_failures: endpoint.failed.load(Ordering::Relaxed),
                interrupted: endpoint
                    .interrupted
                    .load(Ordering::Relaxed)
                    .saturating_add(unclaimed),
                body_bytes: endpoint.received.load(Ordering::Relaxed),
                naps: shared.naps.load(Ordering::Relaxed),
                pool_opened: shared.connector.opened(),
            }
        })
        .collect()
}

/// The longest the engine thread naps without watching its sockets. It bounds how late a
/// failure, a timeout or an interrupt is noticed, never when a request is sent or when a response
/// counts as complete.
const NAP_LIMIT: Duration = Duration::from_millis(1);

/// Runs each time an engine thread's runtime is about to wait for IO with no task to run. If
/// every pacer on it wakes within [`NAP_LIMIT`], no released arrival is waiting for a
/// connection, and every connector vouches that responses keep their true completion times, the
/// thread sleeps until the first pacer wakes instead of waiting on its sockets: responses that arrive meanwhile are read
/// then, with the kernel's receive time (see [`crate::client::stamped`]). One wake-up per pacer tick
/// instead of two or three, each of which costs more CPU than a request on a small VM.
fn nap(watched: &[(Arc<Dispatcher>, Arc<Shared>)]) {
    let mut until: Option<Instant> = None;
    for (dispatcher, shared) in watched {
        if !shared.connector.may_look_away() {
            return;
        }
        let Some(quiet) = dispatcher.quiet_until() else {
            return;
        };
        until = Some(until.map_or(quiet, |u| u.min(quiet)));
    }
    let Some(until) = until else { return };
    let wait = until.saturating_duration_since(Instant::now());
    if !wait.is_zero() && wait <= NAP_LIMIT {
        for (_, shared) in watched {
            shared.naps.fetch_add(1, Ordering::Relaxed);
        }
        crate::load::timer::nap_until(until);
    }
}

/// One worker: claims arrivals and makes one attempt each (or records those it cannot send in
/// time) until the dispatcher is drained.
async fn drive(
    shared: &Shared,
    dispatcher: &Dispatcher,
    seat: &Seat,
    shutdown: &CancellationToken,
) {
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    // One deadline timer per worker, moved to each attempt's deadline: a later deadline only
    // updates the registered one (tokio's timer wheel is touched about once per timeout, not
    // twice per request as a `timeout_at` per attempt did; BENCHMARKS.md, issue 19).
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    loop {
        let claim = tokio::select! {
            biased;
            _ = &mut cancelled => break,
            claim = dispatcher.next_claim(&seat.service) => match claim {
                Some(c) => c,
                None => break,
            },
        };
        match claim {
            Claim::NotSent(missed) => {
                for (member, batch) in dispatcher.batches(missed) {
                    shared.record_not_sent(member, &batch);
                }
            }
            Claim::Send(arrival) => {
                let member = arrival.member;
                let attempt = tokio::select! {
                    biased;
                    _ = &mut cancelled => {
                        shared.endpoints[member].interrupted.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    attempt = shared.attempt(&seat.lane, arrival, timer.as_mut()) => attempt,
                };
                match attempt {
                    Attempt::Done(completion) => {
                        if let (Outcome::Status(_), Some(sent)) =
                            (completion.outcome, completion.sent)
                        {
                            seat.service
                                .note(completion.done.saturating_duration_since(sent));
                        }
                        shared.record(member, &completion);
                    }
                    Attempt::NotSent => {
                        shared.record_not_sent(member, &dispatcher.single(&arrival));
                    }
                }
            }
        }
        // Claims and records can complete without waiting (a backlog, refused connects):
        // give the runtime its turn now and then, so the pacer, the other workers and a
        // shutdown are never starved.
        tokio::task::consume_budget().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_a_request_needs_is_the_median_recent_service_time_and_a_margin_at_most_half_the_timeout()
     {
        let ms = Duration::from_millis;
        let timeout = Duration::from_secs(3);
        let times = ServiceTimes::default();
        assert_eq!(times.need(timeout), Duration::ZERO, "nothing to go by yet");
        times.note(ms(50));
        // 50 ms, and a quarter of it and 5 ms for a response slower than the median: a request
        // with 50.1 ms left would time out whenever its response took 0.1 ms more than usual.
        assert_eq!(times.need(timeout), Duration::from_micros(67_500));
        // One stall does not hold back the requests queued behind it.
        times.note(ms(2_000));
        assert_eq!(times.need(timeout), Duration::from_micros(67_500));
        for _ in 0..6 {
            times.note(ms(50));
        }
        assert_eq!(times.need(timeout), Duration::from_micros(67_500));
        // A target that got slow: the last 8 are what counts, at most half the timeout.
        for _ in 0..5 {
            times.note(ms(2_500));
        }
        assert_eq!(times.need(timeout), ms(1_500));
        for _ in 0..RECENT {
            times.note(ms(40));
        }
        assert_eq!(times.need(timeout), ms(55));
        // A fast target: the fixed part (the machine's own delays) dominates.
        for _ in 0..RECENT {
            times.note(Duration::from_micros(200));
        }
        assert_eq!(times.need(timeout), Duration::from_micros(5_250));
        assert_eq!(times.need(ms(8)), ms(4), "at most half the timeout");
    }

    #[test]
    fn a_plan_far_above_the_threads_or_the_connections_is_warned_about() {
        let config = |args: &[&str]| {
            let mut argv = vec!["gapless", "run", "http://127.0.0.1:9/"];
            argv.extend_from_slice(args);
            let crate::cli::Command::Run(run) = crate::cli::Cli::parse_from(argv).unwrap().command
            else {
                unreachable!("a run command")
            };
            run.validate(None, &|_| None).unwrap().config
        };
        assert_eq!(plan_warning(&config(&["-q", "100", "-c", "1"])), None);
        assert_eq!(plan_warning(&config(&["-q", "0"])), None, "closed loop");
        let one = plan_warning(&config(&["-q", "60000", "-c", "1"])).unwrap();
        assert!(
            one.contains(
                "1 connection (one request in flight each) carry at most about 50,000 req/s"
            ),
            "{one}"
        );
        let threads = plan_warning(&config(&["-q", "100000000", "-c", "16"])).unwrap();
        assert!(
            threads.starts_with("-q 100000000 is far above"),
            "{threads}"
        );
        assert!(threads.contains("engine thread"), "{threads}");
    }
}
