//! The load engine: the pacer and the connection workers, all owned by one `JoinSet`.
//!
//! Each worker loops: claim the next due arrival from the [`Dispatcher`], make exactly one attempt
//! (connecting first if its connection is gone), turn whatever happened into a [`Completion`] and
//! hand it to the [`Recorder`]. The deadline of an attempt is its intended send time plus the
//! request timeout; an arrival whose deadline passed while every connection was busy is recorded
//! as an unsent `timeout`, never silently skipped. Every loop races the shutdown token.
//!
//! Between pacer ticks an engine thread with nothing to do naps until the next tick without
//! watching its sockets ([`nap`]): on a small VM one wake-up per tick is much cheaper than one
//! per response batch, and HTTP/1.1 responses keep their true completion time from the kernel's
//! receive timestamp.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Rate, RunConfig};
use crate::connection::{Connector, Link, Reply, RequestTemplate};
use crate::dispatch::Dispatcher;
use crate::outcome::{Completion, ConnectionUse, ErrorClass, ErrorSamples, Fault, Outcome};
use crate::recorder::Recorder;
use crate::schedule::{Arrival, Schedule};
use crate::version::VersionProbe;

/// Errors that stop the engine as a whole (per-request failures are recorded, not returned).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connector could not be built.
    #[error(transparent)]
    Connector(#[from] crate::connection::Error),
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
}

/// One connection and the task that drives it. HTTP/1.1 workers own one each; HTTP/2 workers
/// share one per connection.
#[derive(Debug, Default)]
struct Lane {
    link: Option<Link>,
    drivers: JoinSet<()>,
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
        self.link = None;
        self.drivers.abort_all();
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

#[derive(Debug)]
struct Shared {
    connector: Connector,
    recorder: Arc<Mutex<Recorder>>,
    template: RequestTemplate,
    timeout: Duration,
    http2: bool,
    interrupted: AtomicU64,
    probe: VersionProbe,
    received: AtomicU64,
    naps: AtomicU64,
    /// The recorder's first message of each error class.
    samples: Arc<ErrorSamples>,
}

impl Shared {
    fn record(&self, completion: &Completion) {
        self.recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(completion);
    }

    async fn attempt(&self, lane: &tokio::sync::Mutex<Lane>, arrival: Arrival) -> Completion {
        let deadline = arrival.due + self.timeout;
        let began = Instant::now();
        if began >= deadline {
            return Completion::unsent(arrival.seq, arrival.due, began);
        }
        let mut stage = Stage::Connecting;
        let result =
            tokio::time::timeout_at(deadline.into(), self.exchange(lane, deadline, &mut stage))
                .await;
        let mut done = Instant::now();
        let (exchange, connection) = match (result, stage) {
            (Ok(exchange), Stage::Exchanging(use_)) => (exchange, use_),
            (Ok(exchange), Stage::Connecting) => (exchange, ConnectionUse::New),
            (Err(_), Stage::Connecting) => (
                Exchange::Failed(Fault::deadline(ErrorClass::ConnectTimeout, self.timeout)),
                ConnectionUse::New,
            ),
            (Err(_), Stage::Exchanging(use_)) => {
                if !self.http2 {
                    // The HTTP/1.1 connection is mid-request: it cannot be reused.
                    lane.lock().await.discard();
                }
                (
                    Exchange::Failed(Fault::deadline(ErrorClass::Timeout, self.timeout)),
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
                self.samples.note(fault.class, &fault);
                (Outcome::Failed(fault.class), 0, None, None)
            }
            Exchange::NotSent => return Completion::unsent(arrival.seq, arrival.due, done),
        };
        Completion {
            seq: arrival.seq,
            due: arrival.due,
            sent: Some(began),
            done,
            outcome,
            connection,
            body_bytes,
            version,
            envoy,
        }
    }

    async fn exchange(
        &self,
        lane: &tokio::sync::Mutex<Lane>,
        deadline: Instant,
        stage: &mut Stage,
    ) -> Exchange {
        let mut guard = lane.lock().await;
        let use_ = match guard.prepare(&self.connector, deadline).await {
            Ok(use_) => use_,
            Err(NoLink::Throttled) => return Exchange::NotSent,
            Err(NoLink::Failed(class)) => return Exchange::Failed(class),
        };
        *stage = Stage::Exchanging(use_);
        let request = &self.template;
        if let Some(mut h2) = guard.link.as_ref().and_then(Link::share) {
            // HTTP/2: release the lane so other streams can use the connection.
            drop(guard);
            return h2
                .exchange(request, &self.probe, &self.received)
                .await
                .into();
        }
        let Some(link) = guard.link.as_mut() else {
            return Exchange::Failed(Fault::new(ErrorClass::Other, "no connection to send on"));
        };
        let result = link.exchange(request, &self.probe, &self.received).await;
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
        let workers = self.connections * self.streams;
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
        for _ in 0..self.connections {
            let lane = Arc::new(tokio::sync::Mutex::new(Lane::default()));
            for _ in 0..self.streams {
                let (shared, dispatcher) = (self.shared.clone(), self.dispatcher.clone());
                let (lane, shutdown) = (lane.clone(), shutdown.clone());
                tasks.spawn(async move {
                    drive(&shared, &dispatcher, &lane, &shutdown).await;
                    Ok(())
                });
            }
        }
        join_all(&mut tasks, &shutdown).await
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
/// 100,000 req/s: measured on 2 cores with the target on the same machine, one thread reached
/// 95,000 req/s where two reached 83,000 (more threads than free cores only add context switches).
pub fn shard_count(rate: Rate, connections: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = match rate.qps() {
        Some(q) => (q / 100_000.0).ceil() as usize,
        None => cores,
    };
    wanted.clamp(1, cores).min(connections.max(1))
}

/// The load engine for one run.
#[derive(Debug)]
pub struct Engine {
    shared: Arc<Shared>,
    shards: Vec<Shard>,
    control: LoadControl,
}

impl Engine {
    /// An engine whose schedule starts at `start`, recording into `recorder`; `probe` reads
    /// which version answered.
    pub fn new(
        config: &RunConfig,
        start: Instant,
        recorder: Arc<Mutex<Recorder>>,
        probe: VersionProbe,
    ) -> Result<Engine, Error> {
        let load = &config.load;
        let connections = load.connections.get();
        let streams = if config.target.http2 {
            load.streams.get()
        } else {
            1
        };
        let burst = NonZeroU32::new(u32::try_from(connections).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        let connector = Connector::new(&config.target, load.max_connect_rate, burst)?;
        let samples = recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .error_samples()
            .clone();
        let shared = Arc::new(Shared {
            connector,
            recorder,
            template: RequestTemplate::new(&config.target),
            timeout: config.target.timeout,
            http2: config.target.http2,
            interrupted: AtomicU64::new(0),
            probe,
            received: AtomicU64::new(0),
            naps: AtomicU64::new(0),
            samples,
        });
        let schedule = Schedule::new(start, load.rate);
        let count = load.threads.map_or_else(
            || shard_count(load.rate, connections),
            |n| n.get().min(connections),
        );
        let shards: Vec<Shard> = (0..count)
            .map(|i| Shard {
                shared: shared.clone(),
                dispatcher: Arc::new(Dispatcher::new(schedule.shard(i, count))),
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

    /// Runs until every shard's dispatcher is closed and every claimed arrival is recorded, or
    /// until `shutdown` fires (in-flight attempts are then abandoned and counted as interrupted).
    pub async fn run(self, shutdown: CancellationToken) -> Result<LoadStats, Error> {
        let mut threads = JoinSet::new();
        for shard in self.shards {
            let shutdown = shutdown.clone();
            let (dispatcher, shared) = (shard.dispatcher.clone(), shard.shared.clone());
            threads.spawn_blocking(move || {
                // A thread of the caller's blocking pool: its timer slack is put back after.
                crate::timer::with_precise_naps(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .on_thread_park(move || nap(&dispatcher, &shared))
                        .build()
                        .map_err(Error::Setup)?;
                    runtime.block_on(shard.run(shutdown))
                })
            });
        }
        join_all(&mut threads, &shutdown).await?;
        let unclaimed: u64 = self
            .control
            .dispatchers
            .iter()
            .map(|d| d.released().saturating_sub(d.claimed()))
            .sum();
        Ok(LoadStats {
            connections_opened: self.shared.connector.opened(),
            connect_failures: self.shared.connector.failed(),
            interrupted: self.shared.interrupted.load(Ordering::Relaxed) + unclaimed,
            body_bytes: self.shared.received.load(Ordering::Relaxed),
            naps: self.shared.naps.load(Ordering::Relaxed),
        })
    }
}

/// The longest the engine thread naps without watching its sockets. It bounds how late a
/// failure, a timeout or an interrupt is noticed, never when a request is sent or when a response
/// counts as complete.
const NAP_LIMIT: Duration = Duration::from_millis(1);

/// Runs each time a shard's runtime is about to wait for IO with no task to run. If the pacer
/// wakes within [`NAP_LIMIT`], no released arrival is waiting for a connection, and the
/// connector vouches that responses keep their true completion times, the thread sleeps until
/// the pacer wakes instead of waiting on its sockets: responses that arrive meanwhile are read
/// then, with the kernel's receive time (see [`crate::stamped`]). One wake-up per pacer tick
/// instead of two or three, each of which costs more CPU than a request on a small VM.
fn nap(dispatcher: &Dispatcher, shared: &Shared) {
    if !shared.connector.may_look_away() {
        return;
    }
    let Some(until) = dispatcher.quiet_until() else {
        return;
    };
    let wait = until.saturating_duration_since(Instant::now());
    if !wait.is_zero() && wait <= NAP_LIMIT {
        shared.naps.fetch_add(1, Ordering::Relaxed);
        crate::timer::nap_until(until);
    }
}

/// One worker: claims arrivals and makes one attempt each until the dispatcher is drained.
async fn drive(
    shared: &Shared,
    dispatcher: &Dispatcher,
    lane: &tokio::sync::Mutex<Lane>,
    shutdown: &CancellationToken,
) {
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        let arrival = tokio::select! {
            biased;
            _ = &mut cancelled => break,
            arrival = dispatcher.next_arrival() => match arrival {
                Some(a) => a,
                None => break,
            },
        };
        let completion = tokio::select! {
            biased;
            _ = &mut cancelled => {
                shared.interrupted.fetch_add(1, Ordering::Relaxed);
                break;
            }
            completion = shared.attempt(lane, arrival) => completion,
        };
        shared.record(&completion);
    }
}
