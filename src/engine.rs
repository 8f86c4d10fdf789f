//! The load engine: the pacer and the connection workers, all owned by one `JoinSet`.
//!
//! Each worker loops: claim the next due arrival from the [`Dispatcher`], make exactly one attempt
//! (connecting first if its connection is gone), turn whatever happened into a [`Completion`] and
//! hand it to the [`Recorder`]. The deadline of an attempt is its intended send time plus the
//! request timeout; an arrival whose deadline passed while every connection was busy is recorded
//! as an unsent `timeout`, never silently skipped. Every loop races the shutdown token.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::RunConfig;
use crate::connection::{Connector, Link, RequestBody};
use crate::dispatch::Dispatcher;
use crate::outcome::{Completion, ConnectionUse, ErrorClass, Outcome};
use crate::recorder::Recorder;
use crate::schedule::{Arrival, Schedule};

/// Errors that stop the engine as a whole (per-request failures are recorded, not returned).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connector could not be built.
    #[error(transparent)]
    Connector(#[from] crate::connection::Error),
    /// A worker task panicked: a bug in gapless.
    #[error("a load worker failed unexpectedly: {0}")]
    Worker(String),
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
}

/// Builds each request from one template, cheaply.
#[derive(Debug)]
struct RequestTemplate {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestTemplate {
    fn new(config: &RunConfig) -> RequestTemplate {
        let target = &config.target;
        let mut headers = target.headers.clone();
        let (uri, version) = if target.http2 {
            (target.url.uri().clone(), Version::HTTP_2)
        } else {
            if !headers.contains_key(HOST)
                && let Ok(host) = HeaderValue::from_str(target.url.authority())
            {
                headers.insert(HOST, host);
            }
            // Origin form for HTTP/1.1; a path from a valid URI is always a valid URI.
            let path = target
                .url
                .path_and_query()
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/"));
            (path, Version::HTTP_11)
        };
        if !headers.contains_key(USER_AGENT) {
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("gapless/", env!("CARGO_PKG_VERSION"))),
            );
        }
        RequestTemplate {
            method: target.method.clone(),
            uri,
            version,
            headers,
            body: target.body.clone(),
        }
    }

    fn build(&self) -> Request<RequestBody> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
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
    Failed(ErrorClass),
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
    Response { status: u16, bytes: u64 },
    Failed(ErrorClass),
    NotSent,
}

#[derive(Debug)]
struct Shared {
    dispatcher: Dispatcher,
    connector: Connector,
    recorder: Arc<Mutex<Recorder>>,
    template: RequestTemplate,
    timeout: Duration,
    http2: bool,
    interrupted: AtomicU64,
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
        let done = Instant::now();
        let (exchange, connection) = match (result, stage) {
            (Ok(exchange), Stage::Exchanging(use_)) => (exchange, use_),
            (Ok(exchange), Stage::Connecting) => (exchange, ConnectionUse::New),
            (Err(_), Stage::Connecting) => (
                Exchange::Failed(ErrorClass::ConnectTimeout),
                ConnectionUse::New,
            ),
            (Err(_), Stage::Exchanging(use_)) => {
                if !self.http2 {
                    // The HTTP/1.1 connection is mid-request: it cannot be reused.
                    lane.lock().await.discard();
                }
                (Exchange::Failed(ErrorClass::Timeout), use_)
            }
        };
        let outcome = match exchange {
            Exchange::Response { status, bytes } => {
                return Completion {
                    seq: arrival.seq,
                    due: arrival.due,
                    sent: Some(began),
                    done,
                    outcome: Outcome::Status(status),
                    connection,
                    body_bytes: bytes,
                };
            }
            Exchange::Failed(class) => Outcome::Failed(class),
            Exchange::NotSent => return Completion::unsent(arrival.seq, arrival.due, done),
        };
        Completion {
            seq: arrival.seq,
            due: arrival.due,
            sent: Some(began),
            done,
            outcome,
            connection,
            body_bytes: 0,
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
        let request = self.template.build();
        if let Some(mut h2) = guard.link.as_ref().and_then(Link::share) {
            // HTTP/2: release the lane so other streams can use the connection.
            drop(guard);
            return read_response(h2.send(request).await).await;
        }
        let Some(link) = guard.link.as_mut() else {
            return Exchange::Failed(ErrorClass::Other);
        };
        let exchange = read_response(link.send(request).await).await;
        if matches!(exchange, Exchange::Failed(_)) {
            guard.discard();
        }
        exchange
    }
}

/// Reads the whole body (discarding it) so the connection can be reused and the response counts
/// as complete.
async fn read_response(response: Result<hyper::Response<Incoming>, hyper::Error>) -> Exchange {
    let response = match response {
        Ok(r) => r,
        Err(e) => return Exchange::Failed(ErrorClass::from_hyper_error(&e)),
    };
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                }
            }
            Err(e) => return Exchange::Failed(ErrorClass::from_hyper_error(&e)),
        }
    }
    Exchange::Response { status, bytes }
}

/// The load engine for one run.
#[derive(Debug)]
pub struct Engine {
    shared: Arc<Shared>,
    connections: usize,
    streams: usize,
}

impl Engine {
    /// An engine whose schedule starts at `start`, recording into `recorder`.
    pub fn new(
        config: &RunConfig,
        start: Instant,
        recorder: Arc<Mutex<Recorder>>,
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
        let shared = Shared {
            dispatcher: Dispatcher::new(Schedule::new(start, load.rate)),
            connector,
            recorder,
            template: RequestTemplate::new(config),
            timeout: config.target.timeout,
            http2: config.target.http2,
            interrupted: AtomicU64::new(0),
        };
        Ok(Engine {
            shared: Arc::new(shared),
            connections,
            streams,
        })
    }

    /// The dispatcher, to set or move the end of the load.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.shared.dispatcher
    }

    /// Runs until the dispatcher is closed and every claimed arrival is recorded, or until
    /// `shutdown` fires (in-flight attempts are then abandoned and counted as interrupted).
    pub async fn run(self, shutdown: CancellationToken) -> Result<LoadStats, Error> {
        let mut tasks = JoinSet::new();
        let workers = self.connections * self.streams;
        {
            let shared = self.shared.clone();
            let shutdown = shutdown.clone();
            tasks.spawn_blocking(move || shared.dispatcher.pace(&shutdown, workers));
        }
        for _ in 0..self.connections {
            let lane = Arc::new(tokio::sync::Mutex::new(Lane::default()));
            for _ in 0..self.streams {
                tasks.spawn(drive(self.shared.clone(), lane.clone(), shutdown.clone()));
            }
        }
        let mut failure = None;
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                failure.get_or_insert_with(|| e.to_string());
                shutdown.cancel();
            }
        }
        if let Some(failure) = failure {
            return Err(Error::Worker(failure));
        }
        let d = &self.shared.dispatcher;
        let unclaimed = d.released().saturating_sub(d.claimed());
        Ok(LoadStats {
            connections_opened: self.shared.connector.opened(),
            connect_failures: self.shared.connector.failed(),
            interrupted: self.shared.interrupted.load(Ordering::Relaxed) + unclaimed,
        })
    }
}

/// One worker: claims arrivals and makes one attempt each until the dispatcher is drained.
async fn drive(shared: Arc<Shared>, lane: Arc<tokio::sync::Mutex<Lane>>, shutdown: CancellationToken) {
    loop {
        let arrival = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            arrival = shared.dispatcher.next_arrival() => match arrival {
                Some(a) => a,
                None => break,
            },
        };
        let completion = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                shared.interrupted.fetch_add(1, Ordering::Relaxed);
                break;
            }
            completion = shared.attempt(&lane, arrival) => completion,
        };
        shared.record(&completion);
    }
}
