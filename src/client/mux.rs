//! HTTP/2 on the wire: gapless's own HTTP/2 client connection, as [`crate::client::wire`] is for
//! HTTP/1.1.
//!
//! One task per connection (the driver, [`drive`]) owns the socket: it writes what the streams
//! queued, in one write per wake-up whatever the number of streams, and reads and decodes the
//! server's frames, finishing each stream in the shared [`State`] and waking the worker that
//! awaits it. A worker opens a stream by appending its HEADERS (encoded once per run,
//! [`crate::client::hpack::encode_request`]) to the connection's outgoing bytes; nothing is
//! allocated per request once a connection's buffers and stream slots are warm.
//!
//! Why not the `h2` crate: its per-stream machinery (a stream store behind a lock, the `http`
//! request and response types and their header maps, a task wake-up per frame in each
//! direction) was about three quarters of gapless's user time per HTTP/2 request, twice what
//! h2load (nghttp2) takes per request in all (BENCHMARKS.md, issue 19). gRPC unary calls go
//! through it too (a stream keeps its trailers, and as much of the body as its `keep` asks
//! for: the whole message); the long-lived gRPC stream probes keep `h2`.
//!
//! # What it does and does not do
//!
//! - Settings as hyper's client had them: 2 MiB stream and 5 MiB connection receive windows,
//!   given back as they are half used; 16 KiB frames; a 16 KiB header list; no server push.
//! - No stream is opened before the server's first SETTINGS arrive, and never more at once
//!   than its `SETTINGS_MAX_CONCURRENT_STREAMS`: a worker waits for room (a server that
//!   allows one stream never sees two, and none is refused for being early).
//! - Request bodies are sent as the server's flow-control windows allow.
//! - Nothing is retried. A stream the server resets is `reset`; streams above a GOAWAY's last
//!   stream id are `reset` too (the server did not take them); streams at or below it are
//!   answered as usual while the connection drains, and no new stream is opened on it. A
//!   connection that ends under streams fails them as `closed_before_response` (or by its I/O
//!   error); a frame or header block that breaks the protocol fails the connection's streams
//!   as `protocol` after a GOAWAY with the error code.
//! - A stream abandoned by its worker (the request's deadline) is reset with `CANCEL`; what
//!   still arrives for it is counted against the connection window and dropped.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::client::hpack::{self, Decoder};
use crate::measure::outcome::{ErrorClass, Fault};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const FRAME_SIZE_ERROR: u32 = 0x6;
const CANCEL: u32 = 0x8;
const COMPRESSION_ERROR: u32 = 0x9;

/// The receive window of each stream (`SETTINGS_INITIAL_WINDOW_SIZE`), hyper's client default.
pub const STREAM_WINDOW: u32 = 2 * 1024 * 1024;

/// The receive window of the connection, hyper's client default.
pub const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// The largest frame payload accepted (the protocol's default `SETTINGS_MAX_FRAME_SIZE`).
pub const MAX_FRAME: usize = 16 * 1024;

/// The largest response head, decoded, by RFC 9113's size rule (32 bytes per field plus its
/// name and value; `SETTINGS_MAX_HEADER_LIST_SIZE`).
pub const MAX_HEADER_LIST: usize = 16 * 1024;

/// The dynamic table the server's encoder may use (the protocol default).
const TABLE_SIZE: usize = 4096;

/// The largest compressed header block (HEADERS and its CONTINUATION frames) held while it
/// arrives: more is a connection error, so a server cannot make a connection hold memory.
const MAX_BLOCK: usize = 64 * 1024;

/// Interim (`1xx`) heads skipped before the final one, as for HTTP/1.1.
const MAX_INTERIM: usize = crate::client::wire::MAX_INTERIM;

/// The flow-control window every stream and the connection start with (RFC 9113 §6.9.2).
const DEFAULT_WINDOW: i64 = 65_535;

/// The largest flow-control window.
const MAX_WINDOW: i64 = (1 << 31) - 1;

/// The largest stream id.
const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// The read buffer: room for the largest frame and its header, twice.
const READ_BUF: usize = 2 * (MAX_FRAME + 9);

/// The most body bytes a collected slot keeps room for, for the next stream.
const SPARE_PREFIX: usize = 64 * 1024;

/// How an HTTP/2 stream or connection failed; each is counted in an [`ErrorClass`]
/// ([`Error::class`]).
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The server reset the stream (RST_STREAM).
    #[error("the server reset the stream ({})", code_name(*.0))]
    Reset(u32),
    /// The server sent GOAWAY and did not take the stream.
    #[error(
        "the server sent GOAWAY ({}) with last stream {last}: it did not take this stream",
        code_name(*code)
    )]
    GoneAway {
        /// The GOAWAY's error code.
        code: u32,
        /// The last stream the server took.
        last: u32,
    },
    /// The connection takes no new stream: it drains after a GOAWAY, or its stream ids ran out.
    #[error("the connection takes no new streams (GOAWAY, or stream ids used up)")]
    Draining,
    /// The server broke the protocol.
    #[error("{0}")]
    Protocol(&'static str),
    /// A response head that does not decode.
    #[error("malformed response header block: {0}")]
    Hpack(#[from] hpack::Error),
    /// A read or write on the connection failed.
    #[error(transparent)]
    Io(Arc<io::Error>),
    /// The server closed the connection.
    #[error("the server closed the connection before the response was complete")]
    Closed,
    /// gapless stopped driving the connection (the run ended).
    #[error("the connection was dropped by gapless")]
    Dropped,
}

impl Error {
    /// The failure class a request that met this error is counted in.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Reset(_) | Error::GoneAway { .. } => ErrorClass::Reset,
            Error::Draining | Error::Closed => ErrorClass::ClosedBeforeResponse,
            Error::Protocol(_) | Error::Hpack(_) => ErrorClass::Protocol,
            Error::Io(e) => ErrorClass::from_io_error(e),
            Error::Dropped => ErrorClass::Other,
        }
    }

    fn fault(&self) -> Fault {
        Fault::boxed(self.class(), Box::new(self.clone()))
    }
}

/// The name of an HTTP/2 error code (RFC 9113 §7).
fn code_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    let Some(name) = NAMES.get(code as usize) else {
        return format!("error code {code:#x}");
    };
    match code {
        0x7 => format!("{name}: refused before any processing"),
        0x8 => format!("{name}: the stream is no longer needed"),
        0xb => format!("{name}: the server is overloaded"),
        _ => (*name).to_string(),
    }
}

/// An open HTTP/2 connection: a handle that any number of workers share; [`drive`] runs it.
#[derive(Clone, Debug)]
pub struct Mux {
    state: Arc<Mutex<State>>,
}

/// A response as its stream finished, read under the connection's lock.
#[derive(Debug)]
pub struct Answer<'a> {
    /// The final status.
    pub status: u16,
    /// Body bytes received.
    pub body_bytes: u64,
    /// The first bytes of the body, as many as the stream was asked to keep ([`Mux::exchange`]).
    pub prefix: &'a [u8],
    fields: &'a [u8],
    /// The final head's fields.
    head: &'a [Span],
    /// The trailers' fields (none if the stream ended without trailers).
    trailing: &'a [Span],
}

impl<'a> Answer<'a> {
    /// The value of the final head's first field called `name` (lower case, as HTTP/2 sends
    /// names).
    pub fn field(&self, name: &[u8]) -> Option<&'a [u8]> {
        find(self.fields, self.head, name)
    }

    /// The final head's fields, names and values, in the order they came (pseudo-header fields
    /// left out).
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let fields = self.fields;
        self.head.iter().map(move |s| s.of(fields))
    }

    /// The value of the trailers' first field called `name` (lower case).
    pub fn trailer(&self, name: &[u8]) -> Option<&'a [u8]> {
        find(self.fields, self.trailing, name)
    }

    /// The trailers' fields in the order they came: none if the stream ended without
    /// trailers.
    pub fn trailers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let fields = self.fields;
        self.trailing.iter().map(move |s| s.of(fields))
    }
}

/// The value of the first of `spans` called `name`.
fn find<'a>(fields: &'a [u8], spans: &[Span], name: &[u8]) -> Option<&'a [u8]> {
    spans.iter().find_map(|s| {
        let (n, v) = s.of(fields);
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// Where one field of a head lies in its slot's byte buffer.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    name: u32,
    value: u32,
}

impl Span {
    fn of(self, bytes: &[u8]) -> (&[u8], &[u8]) {
        let (s, n, v) = (self.start as usize, self.name as usize, self.value as usize);
        (&bytes[s..s + n], &bytes[s + n..s + n + v])
    }
}

/// One stream: what its worker asked for, and what has arrived.
#[derive(Debug, Default)]
struct Slot {
    id: u32,
    waker: Option<Waker>,
    /// How many body bytes to keep for the worker, once the final status is known: a function
    /// of the status given when the stream opened (none: keep nothing).
    keep: Option<fn(u16) -> usize>,
    /// The final status; 0 until its head arrives.
    status: u16,
    interim: usize,
    fields: Vec<u8>,
    /// The final head's fields, then the trailers' from `trailers_at` on.
    spans: Vec<Span>,
    trailers_at: usize,
    keep_len: usize,
    prefix: Vec<u8>,
    body_bytes: u64,
    send_window: i64,
    /// The request body still to send, and how much of it has been.
    upload: Option<(Bytes, usize)>,
    recv_unacked: u32,
    end: Option<Result<(), Error>>,
}

impl Slot {
    fn reset(&mut self, id: u32, keep: fn(u16) -> usize, send_window: i64) {
        self.id = id;
        self.waker = None;
        self.keep = Some(keep);
        self.status = 0;
        self.interim = 0;
        self.fields.clear();
        self.spans.clear();
        self.trailers_at = 0;
        self.keep_len = 0;
        if self.prefix.capacity() > SPARE_PREFIX {
            // A large body was kept (a gRPC message): a spare slot does not hold on to it.
            self.prefix = Vec::new();
        }
        self.prefix.clear();
        self.body_bytes = 0;
        self.send_window = send_window;
        self.upload = None;
        self.recv_unacked = 0;
        self.end = None;
    }
}

/// A connection's state, shared by its driver and its workers.
struct State {
    /// Bytes to write, appended by workers and the frame handlers, taken by the driver.
    out: Vec<u8>,
    driver: Option<Waker>,
    /// The server's first SETTINGS arrived: streams may open.
    settled: bool,
    next_id: u32,
    /// The streams with a worker: open, or finished and not yet collected.
    slots: Vec<Slot>,
    /// Collected slots, kept for their buffers.
    spare: Vec<Slot>,
    /// Streams open (not finished): what `SETTINGS_MAX_CONCURRENT_STREAMS` limits.
    open: usize,
    max_open: usize,
    /// Workers waiting to open a stream.
    waiting: Vec<Waker>,
    send_window: i64,
    initial_window: i64,
    max_frame: usize,
    recv_unacked: u32,
    goaway: Option<u32>,
    ended: Option<Error>,
    /// A header block arriving in CONTINUATION frames: its stream (0: none) and END_STREAM.
    block: Vec<u8>,
    block_stream: u32,
    block_ends_stream: bool,
    decoder: Decoder,
}

impl Mux {
    /// A connection on `io`, whose preface and settings are written as `drive` starts; spawn
    /// the returned driver (it ends when the connection does, or has drained after a GOAWAY).
    pub fn handshake<I>(io: I) -> (Mux, impl Future<Output = ()> + Send + 'static)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(PREFACE);
        frame_head(&mut out, 18, SETTINGS, 0, 0);
        for (id, value) in [
            (0x2, 0),
            (0x4, STREAM_WINDOW),
            (0x6, MAX_HEADER_LIST as u32),
        ] {
            out.extend_from_slice(&u16::to_be_bytes(id));
            out.extend_from_slice(&u32::to_be_bytes(value));
        }
        window_update(&mut out, 0, CONNECTION_WINDOW - DEFAULT_WINDOW as u32);
        let state = Arc::new(Mutex::new(State {
            out,
            driver: None,
            settled: false,
            next_id: 1,
            slots: Vec::new(),
            spare: Vec::new(),
            open: 0,
            max_open: usize::MAX,
            waiting: Vec::new(),
            send_window: DEFAULT_WINDOW,
            initial_window: DEFAULT_WINDOW,
            max_frame: MAX_FRAME,
            recv_unacked: 0,
            goaway: None,
            ended: None,
            block: Vec::new(),
            block_stream: 0,
            block_ends_stream: false,
            decoder: Decoder::new(TABLE_SIZE),
        }));
        let driver = drive(state.clone(), io);
        (Mux { state }, driver)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True if a new stream may be opened: the connection has not ended, has no GOAWAY, and
    /// has stream ids left.
    pub fn ready(&self) -> bool {
        let state = self.lock();
        state.ended.is_none() && !state.draining()
    }

    /// True if the connection only finishes the streams it carries (GOAWAY, or ids used up):
    /// its driver ends by itself once they are answered.
    pub fn draining(&self) -> bool {
        let state = self.lock();
        state.ended.is_none() && state.draining()
    }

    /// Sends one request (its header `block`, END_STREAM on it when `body` is empty) and
    /// awaits the whole response; `read` takes what it needs from the answer. `keep` says how
    /// many body bytes to keep for `read`, given the final status. Every body byte received is
    /// added to `received`, also when the exchange is abandoned (dropped) midway.
    pub async fn exchange<R>(
        &self,
        block: &[u8],
        body: &Bytes,
        keep: fn(u16) -> usize,
        received: &AtomicU64,
        read: impl FnOnce(Answer<'_>) -> R,
    ) -> Result<R, Fault> {
        let id = poll_fn(|cx| self.lock().open(cx, block, body, keep)).await?;
        let mut stream = OpenStream {
            mux: self,
            id,
            received,
            collected: false,
        };
        let mut read = Some(read);
        poll_fn(|cx| stream.poll_collect(cx, &mut read)).await
    }
}

/// A stream its worker awaits; dropped before its end, it is reset with CANCEL.
struct OpenStream<'a> {
    mux: &'a Mux,
    id: u32,
    received: &'a AtomicU64,
    collected: bool,
}

impl OpenStream<'_> {
    fn poll_collect<R>(
        &mut self,
        cx: &mut Context<'_>,
        read: &mut Option<impl FnOnce(Answer<'_>) -> R>,
    ) -> Poll<Result<R, Fault>> {
        let mut state = self.mux.lock();
        let Some(at) = state.slots.iter().position(|s| s.id == self.id) else {
            self.collected = true;
            return Poll::Ready(Err(Error::Dropped.fault()));
        };
        let slot = &mut state.slots[at];
        let Some(end) = slot.end.take() else {
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                slot.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        };
        self.collected = true;
        self.received.fetch_add(slot.body_bytes, Ordering::Relaxed);
        let result = match end {
            Err(e) => Err(e.fault()),
            Ok(()) => match read.take() {
                Some(read) => Ok(read(Answer {
                    status: slot.status,
                    body_bytes: slot.body_bytes,
                    prefix: &slot.prefix,
                    fields: &slot.fields,
                    head: &slot.spans[..slot.trailers_at],
                    trailing: &slot.spans[slot.trailers_at..],
                })),
                None => Err(Error::Dropped.fault()),
            },
        };
        let slot = state.slots.swap_remove(at);
        state.spare.push(slot);
        Poll::Ready(result)
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        if self.collected {
            return;
        }
        let mut state = self.mux.lock();
        let Some(at) = state.slots.iter().position(|s| s.id == self.id) else {
            return;
        };
        let slot = state.slots.swap_remove(at);
        self.received.fetch_add(slot.body_bytes, Ordering::Relaxed);
        if slot.end.is_none() {
            // Still open: tell the server, and make room for another stream.
            rst_stream(&mut state.out, slot.id, CANCEL);
            state.closed_one();
            state.wake_driver();
        }
        state.spare.push(slot);
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("next_id", &self.next_id)
            .field("open", &self.open)
            .field("goaway", &self.goaway)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl State {
    fn draining(&self) -> bool {
        self.goaway.is_some() || self.next_id > MAX_STREAM_ID
    }

    fn wake_driver(&mut self) {
        if let Some(waker) = self.driver.take() {
            waker.wake();
        }
    }

    /// A stream ended: there is room for another.
    fn closed_one(&mut self) {
        self.open -= 1;
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }

    /// Opens a stream for a request, once the server's settings allow one.
    fn open(
        &mut self,
        cx: &mut Context<'_>,
        block: &[u8],
        body: &Bytes,
        keep: fn(u16) -> usize,
    ) -> Poll<Result<u32, Fault>> {
        if let Some(e) = &self.ended {
            return Poll::Ready(Err(e.fault()));
        }
        if self.draining() {
            return Poll::Ready(Err(Error::Draining.fault()));
        }
        if !self.settled || self.open >= self.max_open {
            if !self.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                self.waiting.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let id = self.next_id;
        self.next_id += 2;
        self.open += 1;
        let mut slot = self.spare.pop().unwrap_or_default();
        slot.reset(id, keep, self.initial_window);
        self.write_headers(id, block, body.is_empty());
        if !body.is_empty() {
            slot.upload = Some((body.clone(), 0));
        }
        self.slots.push(slot);
        if !body.is_empty() {
            self.send_uploads();
        }
        self.wake_driver();
        Poll::Ready(Ok(id))
    }

    /// A request's HEADERS, in CONTINUATION frames too if the block is larger than a frame.
    fn write_headers(&mut self, id: u32, block: &[u8], end_stream: bool) {
        let mut chunks = block.chunks(self.max_frame);
        let first = chunks.next().unwrap_or_default();
        let rest = chunks.len();
        let flags =
            (if end_stream { END_STREAM } else { 0 }) | (if rest == 0 { END_HEADERS } else { 0 });
        frame_head(&mut self.out, first.len(), HEADERS, flags, id);
        self.out.extend_from_slice(first);
        for (i, chunk) in block.chunks(self.max_frame).skip(1).enumerate() {
            let flags = if i + 1 == rest { END_HEADERS } else { 0 };
            frame_head(&mut self.out, chunk.len(), CONTINUATION, flags, id);
            self.out.extend_from_slice(chunk);
        }
    }

    /// Sends request body bytes as far as the windows allow, streams in the order they opened.
    fn send_uploads(&mut self) {
        let (out, max_frame) = (&mut self.out, self.max_frame);
        for slot in self.slots.iter_mut() {
            let Some((body, sent)) = &mut slot.upload else {
                continue;
            };
            while *sent < body.len() && self.send_window > 0 && slot.send_window > 0 {
                let n = (body.len() - *sent)
                    .min(self.send_window as usize)
                    .min(slot.send_window as usize)
                    .min(max_frame);
                let last = *sent + n == body.len();
                frame_head(out, n, DATA, if last { END_STREAM } else { 0 }, slot.id);
                out.extend_from_slice(&body[*sent..*sent + n]);
                *sent += n;
                self.send_window -= n as i64;
                slot.send_window -= n as i64;
            }
            if *sent == body.len() {
                slot.upload = None;
            }
            if self.send_window <= 0 {
                break;
            }
        }
    }

    /// Ends a stream, however it ended, and wakes its worker.
    fn finish(&mut self, at: usize, end: Result<(), Error>) {
        let slot = &mut self.slots[at];
        if slot.end.is_some() {
            return;
        }
        slot.end = Some(end);
        slot.upload = None;
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
        self.closed_one();
    }

    /// A stream error: RST_STREAM to the server, the failure to the worker.
    fn stream_error(&mut self, at: usize, code: u32, what: &'static str) {
        rst_stream(&mut self.out, self.slots[at].id, code);
        self.finish(at, Err(Error::Protocol(what)));
    }

    /// A connection error: GOAWAY to the server; the driver then ends every stream with it.
    fn connection_error(&mut self, code: u32, what: &'static str) -> Error {
        frame_head(&mut self.out, 8, GOAWAY, 0, 0);
        self.out.extend_from_slice(&0u32.to_be_bytes());
        self.out.extend_from_slice(&code.to_be_bytes());
        Error::Protocol(what)
    }

    /// Ends the connection: every stream still open fails with `error`.
    fn end(&mut self, error: Error) {
        for at in 0..self.slots.len() {
            self.finish(at, Err(error.clone()));
        }
        self.ended.get_or_insert(error);
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }

    fn slot(&self, id: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.id == id)
    }

    /// Handles every whole frame at the start of `bytes`; returns how many bytes they took.
    fn receive(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        let mut at = 0;
        while bytes.len() - at >= 9 {
            let head = &bytes[at..at + 9];
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & MAX_STREAM_ID;
            if len > MAX_FRAME {
                let what = if !self.settled && bytes.starts_with(b"HTTP/") {
                    "the server answered in HTTP/1.x: it does not speak HTTP/2 with prior \
                     knowledge (h2c)"
                } else {
                    "a frame larger than the 16,384-byte maximum"
                };
                return Err(self.connection_error(FRAME_SIZE_ERROR, what));
            }
            if bytes.len() - at - 9 < len {
                break;
            }
            let payload = &bytes[at + 9..at + 9 + len];
            at += 9 + len;
            if !self.settled && kind != SETTINGS {
                return Err(self.connection_error(
                    PROTOCOL_ERROR,
                    "the server's first frame was not SETTINGS",
                ));
            }
            if self.block_stream != 0 && kind != CONTINUATION {
                return Err(self.connection_error(
                    PROTOCOL_ERROR,
                    "a header block was interrupted by another frame",
                ));
            }
            self.frame(kind, flags, id, payload)?;
        }
        Ok(at)
    }

    fn frame(&mut self, kind: u8, flags: u8, id: u32, payload: &[u8]) -> Result<(), Error> {
        match kind {
            DATA => self.data(flags, id, payload),
            HEADERS => self.headers(flags, id, payload),
            CONTINUATION => self.continuation(flags, id, payload),
            RST_STREAM => {
                if payload.len() != 4 {
                    return Err(self.connection_error(FRAME_SIZE_ERROR, "a malformed RST_STREAM"));
                }
                if id == 0 {
                    return Err(self.connection_error(PROTOCOL_ERROR, "RST_STREAM on stream 0"));
                }
                if let Some(at) = self.slot(id) {
                    let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    self.finish(at, Err(Error::Reset(code)));
                }
                Ok(())
            }
            SETTINGS => self.settings(flags, id, payload),
            PING => {
                if payload.len() != 8 || id != 0 {
                    return Err(self.connection_error(FRAME_SIZE_ERROR, "a malformed PING"));
                }
                if flags & ACK == 0 {
                    frame_head(&mut self.out, 8, PING, ACK, 0);
                    self.out.extend_from_slice(payload);
                }
                Ok(())
            }
            GOAWAY => {
                if payload.len() < 8 || id != 0 {
                    return Err(self.connection_error(FRAME_SIZE_ERROR, "a malformed GOAWAY"));
                }
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & MAX_STREAM_ID;
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                let last = self.goaway.map_or(last, |earlier| earlier.min(last));
                self.goaway = Some(last);
                for at in 0..self.slots.len() {
                    if self.slots[at].id > last {
                        self.finish(at, Err(Error::GoneAway { code, last }));
                    }
                }
                for waker in self.waiting.drain(..) {
                    waker.wake();
                }
                Ok(())
            }
            WINDOW_UPDATE => self.window_update(id, payload),
            PUSH_PROMISE => Err(self.connection_error(
                PROTOCOL_ERROR,
                "PUSH_PROMISE, though server push was disabled",
            )),
            // PRIORITY, and frame types this client does not know, are ignored.
            _ => Ok(()),
        }
    }

    fn data(&mut self, flags: u8, id: u32, payload: &[u8]) -> Result<(), Error> {
        if id == 0 {
            return Err(self.connection_error(PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let Some(data) = unpad(flags, payload) else {
            return Err(self.connection_error(PROTOCOL_ERROR, "DATA with bad padding"));
        };
        // Flow control counts the whole payload, padding included.
        let len = payload.len() as u32;
        self.recv_unacked += len;
        if self.recv_unacked >= CONNECTION_WINDOW / 2 {
            window_update(&mut self.out, 0, self.recv_unacked);
            self.recv_unacked = 0;
        }
        let Some(at) = self.slot(id) else {
            // A stream already collected or cancelled.
            return Ok(());
        };
        if self.slots[at].end.is_some() {
            return Ok(());
        }
        if self.slots[at].status == 0 {
            self.stream_error(at, PROTOCOL_ERROR, "DATA before the response head");
            return Ok(());
        }
        let slot = &mut self.slots[at];
        slot.body_bytes += data.len() as u64;
        let room = slot.keep_len.saturating_sub(slot.prefix.len());
        slot.prefix.extend_from_slice(&data[..data.len().min(room)]);
        if flags & END_STREAM != 0 {
            self.finish(at, Ok(()));
        } else {
            slot.recv_unacked += len;
            if slot.recv_unacked >= STREAM_WINDOW / 2 {
                window_update(&mut self.out, id, slot.recv_unacked);
                slot.recv_unacked = 0;
            }
        }
        Ok(())
    }

    fn headers(&mut self, flags: u8, id: u32, payload: &[u8]) -> Result<(), Error> {
        if id == 0 {
            return Err(self.connection_error(PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        let Some(mut block) = unpad(flags, payload) else {
            return Err(self.connection_error(PROTOCOL_ERROR, "HEADERS with bad padding"));
        };
        if flags & PRIORITY != 0 {
            let Some(rest) = block.get(5..) else {
                return Err(self.connection_error(FRAME_SIZE_ERROR, "HEADERS too short"));
            };
            block = rest;
        }
        self.block.clear();
        self.block.extend_from_slice(block);
        let ends_stream = flags & END_STREAM != 0;
        if flags & END_HEADERS != 0 {
            self.head(id, ends_stream)
        } else {
            self.block_stream = id;
            self.block_ends_stream = ends_stream;
            Ok(())
        }
    }

    fn continuation(&mut self, flags: u8, id: u32, payload: &[u8]) -> Result<(), Error> {
        if id == 0 || id != self.block_stream {
            return Err(self.connection_error(PROTOCOL_ERROR, "a CONTINUATION out of place"));
        }
        if self.block.len() + payload.len() > MAX_BLOCK {
            return Err(
                self.connection_error(PROTOCOL_ERROR, "a response header block larger than 64 KiB")
            );
        }
        self.block.extend_from_slice(payload);
        if flags & END_HEADERS != 0 {
            self.block_stream = 0;
            self.head(id, self.block_ends_stream)
        } else {
            Ok(())
        }
    }

    /// A whole header block for stream `id`: decoded (always, to keep the decoder's table in
    /// step with the server's), then the head or trailers of its stream.
    fn head(&mut self, id: u32, ends_stream: bool) -> Result<(), Error> {
        let block = std::mem::take(&mut self.block);
        let at = self.slot(id).filter(|&at| self.slots[at].end.is_none());
        let mut status: Option<u16> = None;
        let mut first = true;
        let mut size = 0usize;
        let mut scratch = (Vec::new(), Vec::new());
        let (fields, spans) = match at {
            Some(at) => {
                let slot = &mut self.slots[at];
                if slot.status == 0 {
                    slot.fields.clear();
                    slot.spans.clear();
                }
                // Trailers (a final status is in) go after the head's fields.
                (&mut slot.fields, &mut slot.spans)
            }
            None => (&mut scratch.0, &mut scratch.1),
        };
        let decoded = self.decoder.decode(&block, |name, value| {
            size += name.len() + value.len() + 32;
            if first && name == b":status" {
                status = parse_status(value);
            } else if size <= MAX_HEADER_LIST && !name.starts_with(b":") {
                spans.push(Span {
                    start: fields.len() as u32,
                    name: name.len() as u32,
                    value: value.len() as u32,
                });
                fields.extend_from_slice(name);
                fields.extend_from_slice(value);
            }
            first = false;
        });
        self.block = block;
        if let Err(e) = decoded {
            self.connection_error(COMPRESSION_ERROR, "a response header block did not decode");
            return Err(Error::Hpack(e));
        }
        let Some(at) = at else { return Ok(()) };
        if self.slots[at].status != 0 {
            // Trailers: they end the stream.
            if !ends_stream {
                self.stream_error(at, PROTOCOL_ERROR, "trailers without END_STREAM");
            } else if size > MAX_HEADER_LIST {
                self.stream_error(at, PROTOCOL_ERROR, "response trailers larger than 16 KiB");
            } else {
                self.finish(at, Ok(()));
            }
            return Ok(());
        }
        if size > MAX_HEADER_LIST {
            self.stream_error(at, PROTOCOL_ERROR, "a response head larger than 16 KiB");
            return Ok(());
        }
        let Some(status) = status else {
            self.stream_error(
                at,
                PROTOCOL_ERROR,
                "a response head without a valid :status",
            );
            return Ok(());
        };
        if (100..200).contains(&status) {
            let slot = &mut self.slots[at];
            slot.interim += 1;
            if ends_stream || status == 101 {
                self.stream_error(
                    at,
                    PROTOCOL_ERROR,
                    "an interim response that ends the stream",
                );
            } else if slot.interim > MAX_INTERIM {
                self.stream_error(at, PROTOCOL_ERROR, "more than 5 interim responses");
            }
            return Ok(());
        }
        let slot = &mut self.slots[at];
        slot.status = status;
        slot.trailers_at = slot.spans.len();
        slot.keep_len = slot.keep.map_or(0, |keep| keep(status));
        if ends_stream {
            self.finish(at, Ok(()));
        }
        Ok(())
    }

    fn settings(&mut self, flags: u8, id: u32, payload: &[u8]) -> Result<(), Error> {
        if id != 0 {
            return Err(self.connection_error(PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if flags & ACK != 0 {
            return if payload.is_empty() {
                Ok(())
            } else {
                Err(self.connection_error(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload"))
            };
        }
        if payload.len() % 6 != 0 {
            return Err(self.connection_error(FRAME_SIZE_ERROR, "a malformed SETTINGS"));
        }
        for setting in payload.chunks_exact(6) {
            let key = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match key {
                // SETTINGS_MAX_CONCURRENT_STREAMS
                0x3 => self.max_open = value as usize,
                // SETTINGS_INITIAL_WINDOW_SIZE: open streams' windows move by the change.
                0x4 => {
                    if i64::from(value) > MAX_WINDOW {
                        return Err(self.connection_error(
                            FLOW_CONTROL_ERROR,
                            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    let delta = i64::from(value) - self.initial_window;
                    self.initial_window = i64::from(value);
                    for slot in self.slots.iter_mut() {
                        slot.send_window += delta;
                    }
                }
                // SETTINGS_MAX_FRAME_SIZE
                0x5 => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err(self.connection_error(
                            PROTOCOL_ERROR,
                            "SETTINGS_MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.max_frame = value as usize;
                }
                // The header table size is for an encoder's dynamic table, which requests
                // never use; push, header list size and unknown settings need nothing.
                _ => {}
            }
        }
        frame_head(&mut self.out, 0, SETTINGS, ACK, 0);
        if !self.settled {
            self.settled = true;
        }
        self.send_uploads();
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
        Ok(())
    }

    fn window_update(&mut self, id: u32, payload: &[u8]) -> Result<(), Error> {
        if payload.len() != 4 {
            return Err(self.connection_error(FRAME_SIZE_ERROR, "a malformed WINDOW_UPDATE"));
        }
        let increment = i64::from(
            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & MAX_STREAM_ID,
        );
        if id == 0 {
            if increment == 0 {
                return Err(self.connection_error(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0"));
            }
            self.send_window += increment;
            if self.send_window > MAX_WINDOW {
                return Err(
                    self.connection_error(FLOW_CONTROL_ERROR, "the connection window above 2^31-1")
                );
            }
        } else if let Some(at) = self.slot(id) {
            if increment == 0 {
                self.stream_error(at, PROTOCOL_ERROR, "a WINDOW_UPDATE of 0");
                return Ok(());
            }
            self.slots[at].send_window += increment;
            if self.slots[at].send_window > MAX_WINDOW {
                rst_stream(&mut self.out, id, FLOW_CONTROL_ERROR);
                self.finish(at, Err(Error::Protocol("a stream window above 2^31-1")));
                return Ok(());
            }
        }
        self.send_uploads();
        Ok(())
    }
}

/// Runs a connection: writes what its streams queue, reads and handles the server's frames.
/// Ends when the connection ends (every open stream then fails with the reason), or once it
/// has drained after a GOAWAY.
async fn drive<I>(state: Arc<Mutex<State>>, mut io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
        state.lock().unwrap_or_else(PoisonError::into_inner)
    }
    // If the task is aborted (the run ended), its streams end too.
    let _ended = EndOnDrop(state.clone());
    let mut buf = vec![0u8; READ_BUF].into_boxed_slice();
    let (mut start, mut filled) = (0usize, 0usize);
    let (mut out, mut written) = (Vec::<u8>::with_capacity(4096), 0usize);
    let mut flushing = false;
    let result: Result<(), Error> = poll_fn(|cx| {
        loop {
            let mut progress = false;
            {
                let mut state = lock(&state);
                if written == out.len() {
                    out.clear();
                    written = 0;
                    std::mem::swap(&mut out, &mut state.out);
                }
                if out.is_empty() && state.draining() && state.open == 0 {
                    // Drained: close the connection.
                    return Poll::Ready(Ok(()));
                }
                if !state
                    .driver
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.driver = Some(cx.waker().clone());
                }
            }
            while written < out.len() {
                match Pin::new(&mut io).poll_write(cx, &out[written..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Error::Io(Arc::new(
                            io::ErrorKind::WriteZero.into(),
                        ))));
                    }
                    Poll::Ready(Ok(n)) => {
                        written += n;
                        progress = true;
                        flushing = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(Arc::new(e)))),
                    Poll::Pending => break,
                }
            }
            if flushing && written == out.len() {
                match Pin::new(&mut io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => flushing = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(Arc::new(e)))),
                    Poll::Pending => {}
                }
            }
            if buf.len() - filled < MAX_FRAME + 9 {
                buf.copy_within(start..filled, 0);
                (start, filled) = (0, filled - start);
            }
            let mut read = ReadBuf::new(&mut buf[filled..]);
            match Pin::new(&mut io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    if n == 0 {
                        return Poll::Ready(Err(Error::Closed));
                    }
                    filled += n;
                    progress = true;
                    let mut state = lock(&state);
                    match state.receive(&buf[start..filled]) {
                        Ok(used) => start += used,
                        Err(e) => {
                            // Best effort: the GOAWAY that says why.
                            let goaway = std::mem::take(&mut state.out);
                            drop(state);
                            let _ = Pin::new(&mut io).poll_write(cx, &goaway);
                            return Poll::Ready(Err(e));
                        }
                    }
                    if start == filled {
                        (start, filled) = (0, 0);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(Arc::new(e)))),
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
    let error = match result {
        Ok(()) => Error::Draining,
        Err(e) => e,
    };
    lock(&state).end(error);
}

/// Ends a connection's streams when its driver is dropped.
struct EndOnDrop(Arc<Mutex<State>>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .end(Error::Dropped);
    }
}

/// The payload of a DATA or HEADERS frame without its padding (`None` if the padding is
/// longer than the frame).
fn unpad(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    if flags & PADDED == 0 {
        return Some(payload);
    }
    let (&pad, rest) = payload.split_first()?;
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|end| &rest[..end])
}

/// A three-digit status (RFC 9113 §8.3.2).
fn parse_status(value: &[u8]) -> Option<u16> {
    match value {
        [a @ b'1'..=b'9', b, c] if b.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

fn frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, id: u32) {
    let len = len as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&id.to_be_bytes());
}

fn window_update(out: &mut Vec<u8>, id: u32, increment: u32) {
    frame_head(out, 4, WINDOW_UPDATE, 0, id);
    out.extend_from_slice(&increment.to_be_bytes());
}

fn rst_stream(out: &mut Vec<u8>, id: u32, code: u32) {
    frame_head(out, 4, RST_STREAM, 0, id);
    out.extend_from_slice(&code.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// The server's side of a connection, frame by frame.
    struct Peer {
        io: DuplexStream,
    }

    type Frame = (u8, u8, u32, Vec<u8>);

    impl Peer {
        /// A connection: the client's driver spawned, the preface read, and the server's
        /// `settings` sent.
        async fn connect(settings: &[(u16, u32)]) -> (Mux, Peer) {
            let (client, server) = tokio::io::duplex(1 << 20);
            let (mux, driver) = Mux::handshake(client);
            tokio::spawn(driver);
            let mut peer = Peer { io: server };
            let mut preface = [0u8; 24];
            peer.io.read_exact(&mut preface).await.unwrap();
            assert_eq!(&preface, PREFACE);
            let (kind, flags, _, payload) = peer.frame().await;
            assert_eq!((kind, flags), (SETTINGS, 0));
            // Push disabled, the stream window and the header list size.
            assert_eq!(payload.len(), 18);
            let mut body = Vec::new();
            for (key, value) in settings {
                body.extend_from_slice(&key.to_be_bytes());
                body.extend_from_slice(&value.to_be_bytes());
            }
            peer.send(SETTINGS, 0, 0, &body).await;
            (mux, peer)
        }

        async fn frame(&mut self) -> Frame {
            let mut head = [0u8; 9];
            self.io.read_exact(&mut head).await.unwrap();
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            self.io.read_exact(&mut payload).await.unwrap();
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
            (head[3], head[4], id, payload)
        }

        /// The next frame on a stream, past the connection's own (settings, windows).
        async fn stream_frame(&mut self) -> Frame {
            loop {
                let frame = self.frame().await;
                if frame.2 != 0 {
                    return frame;
                }
            }
        }

        async fn send(&mut self, kind: u8, flags: u8, id: u32, payload: &[u8]) {
            let mut out = Vec::new();
            frame_head(&mut out, payload.len(), kind, flags, id);
            out.extend_from_slice(payload);
            self.io.write_all(&out).await.unwrap();
        }

        /// A response head: `:status` and a `server` field.
        async fn head(&mut self, id: u32, status: &str, end_stream: bool) {
            let mut block = vec![0x08, 3];
            block.extend_from_slice(status.as_bytes());
            block.extend_from_slice(&[0x0f, 0x27, 4]);
            block.extend_from_slice(b"test");
            let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
            self.send(HEADERS, flags, id, &block).await;
        }
    }

    fn block() -> Vec<u8> {
        let mut block = Vec::new();
        hpack::encode_request(
            &[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"t"),
                (b":path", b"/"),
            ],
            &mut block,
        );
        block
    }

    fn keep_all(_: u16) -> usize {
        64
    }

    /// What a test request got: status, body bytes, kept prefix, `server`.
    type Got = (u16, u64, Vec<u8>, Vec<u8>);

    /// One request on `mux`, in its own task: status, body bytes, prefix and `server`, or the
    /// failure's class and text.
    fn request(
        mux: &Mux,
        body: &'static [u8],
    ) -> tokio::task::JoinHandle<Result<Got, (ErrorClass, String)>> {
        let mux = mux.clone();
        tokio::spawn(async move {
            let received = AtomicU64::new(0);
            let result = mux
                .exchange(
                    &block(),
                    &Bytes::from_static(body),
                    keep_all,
                    &received,
                    |a| {
                        let server = a.field(b"server").unwrap_or_default().to_vec();
                        (a.status, a.body_bytes, a.prefix.to_vec(), server)
                    },
                )
                .await;
            if let Ok((_, body_bytes, ..)) = &result {
                assert_eq!(received.load(Ordering::Relaxed), *body_bytes);
            }
            result.map_err(|f| (f.class, f.to_string()))
        })
    }

    #[tokio::test]
    async fn a_request_is_one_stream_and_its_answer_is_read_whole() {
        let (mux, mut peer) = Peer::connect(&[]).await;
        let answer = request(&mux, b"");
        let (kind, flags, id, _) = peer.stream_frame().await;
        assert_eq!((kind, flags, id), (HEADERS, END_HEADERS | END_STREAM, 1));
        peer.head(1, "200", false).await;
        peer.send(DATA, 0, 1, b"hello ").await;
        // Padded: 2 bytes of padding after "world".
        peer.send(DATA, END_STREAM | PADDED, 1, b"\x02world\0\0")
            .await;
        let (status, body, prefix, server) = answer.await.unwrap().unwrap();
        assert_eq!((status, body), (200, 11));
        assert_eq!(prefix, b"hello world");
        assert_eq!(server, b"test");
        // The next request is stream 3, on the same connection.
        let answer = request(&mux, b"");
        assert_eq!(peer.stream_frame().await.2, 3);
        peer.head(3, "503", true).await;
        assert_eq!(answer.await.unwrap().unwrap().0, 503);
        assert!(mux.ready());
    }

    #[tokio::test]
    async fn no_stream_opens_before_the_settings_allow_it() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mux, driver) = Mux::handshake(client);
        tokio::spawn(driver);
        let mut peer = Peer { io: server };
        let mut preface = [0u8; 24];
        peer.io.read_exact(&mut preface).await.unwrap();
        let first = request(&mux, b"");
        let second = request(&mux, b"");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // One stream at a time.
        peer.send(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 1]).await;
        let (kind, _, id, _) = peer.stream_frame().await;
        assert_eq!((kind, id), (HEADERS, 1));
        peer.head(1, "200", true).await;
        let (kind, _, id, _) = peer.stream_frame().await;
        assert_eq!((kind, id), (HEADERS, 3));
        peer.head(3, "204", true).await;
        assert_eq!(first.await.unwrap().unwrap().0, 200);
        assert_eq!(second.await.unwrap().unwrap().0, 204);
    }

    #[tokio::test]
    async fn streams_above_a_goaway_fail_and_those_below_are_answered() {
        let (mux, mut peer) = Peer::connect(&[]).await;
        let first = request(&mux, b"");
        assert_eq!(peer.stream_frame().await.2, 1);
        let second = request(&mux, b"");
        assert_eq!(peer.stream_frame().await.2, 3);
        peer.send(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]).await;
        let (class, text) = second.await.unwrap().unwrap_err();
        assert_eq!(class, ErrorClass::Reset);
        assert!(
            text.contains("GOAWAY (NO_ERROR) with last stream 1"),
            "{text}"
        );
        assert!(!mux.ready() && mux.draining());
        peer.head(1, "200", true).await;
        assert_eq!(first.await.unwrap().unwrap().0, 200);
        // Drained: the client closes the connection.
        let mut rest = Vec::new();
        peer.io.read_to_end(&mut rest).await.unwrap();
        assert!(!mux.draining() && !mux.ready());
    }

    #[tokio::test]
    async fn a_reset_stream_is_reset_and_the_connection_goes_on() {
        let (mux, mut peer) = Peer::connect(&[]).await;
        let answer = request(&mux, b"");
        peer.stream_frame().await;
        peer.send(RST_STREAM, 0, 1, &7u32.to_be_bytes()).await;
        let (class, text) = answer.await.unwrap().unwrap_err();
        assert_eq!(class, ErrorClass::Reset);
        assert!(text.contains("REFUSED_STREAM"), "{text}");
        assert!(mux.ready());
    }

    #[tokio::test]
    async fn an_abandoned_stream_is_cancelled() {
        let (mux, mut peer) = Peer::connect(&[]).await;
        let answer = request(&mux, b"");
        peer.stream_frame().await;
        answer.abort();
        let (kind, _, id, payload) = peer.stream_frame().await;
        assert_eq!(
            (kind, id, payload),
            (RST_STREAM, 1, CANCEL.to_be_bytes().to_vec())
        );
        // Its late answer is dropped; the connection still serves.
        peer.head(1, "200", false).await;
        peer.send(DATA, END_STREAM, 1, b"late").await;
        let answer = request(&mux, b"");
        assert_eq!(peer.stream_frame().await.2, 3);
        peer.head(3, "200", true).await;
        assert_eq!(answer.await.unwrap().unwrap().0, 200);
    }

    #[tokio::test]
    async fn a_body_is_sent_as_the_windows_allow() {
        static BODY: [u8; 100_000] = [7u8; 100_000];
        let (mux, mut peer) = Peer::connect(&[]).await;
        let answer = request(&mux, &BODY);
        let (kind, flags, ..) = peer.stream_frame().await;
        assert_eq!((kind, flags), (HEADERS, END_HEADERS));
        let mut got = 0;
        while got < 65_535 {
            let (kind, flags, _, payload) = peer.stream_frame().await;
            assert_eq!((kind, flags & END_STREAM), (DATA, 0));
            assert!(payload.len() <= MAX_FRAME);
            got += payload.len();
        }
        assert_eq!(got, 65_535);
        peer.send(WINDOW_UPDATE, 0, 0, &100_000u32.to_be_bytes())
            .await;
        peer.send(WINDOW_UPDATE, 0, 1, &100_000u32.to_be_bytes())
            .await;
        loop {
            let (kind, flags, _, payload) = peer.stream_frame().await;
            assert_eq!(kind, DATA);
            got += payload.len();
            if flags & END_STREAM != 0 {
                break;
            }
        }
        assert_eq!(got, BODY.len());
        peer.head(1, "201", true).await;
        assert_eq!(answer.await.unwrap().unwrap().0, 201);
    }

    #[tokio::test]
    async fn a_ping_is_answered_with_its_bytes() {
        let (_mux, mut peer) = Peer::connect(&[]).await;
        peer.send(PING, 0, 0, b"12345678").await;
        loop {
            let (kind, flags, _, payload) = peer.frame().await;
            if kind == PING {
                assert_eq!((flags, payload.as_slice()), (ACK, &b"12345678"[..]));
                break;
            }
        }
    }

    #[tokio::test]
    async fn an_http1_answer_is_a_protocol_failure_that_says_so() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let (mux, driver) = Mux::handshake(client);
        tokio::spawn(driver);
        let answer = request(&mux, b"");
        server
            .write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let (class, text) = answer.await.unwrap().unwrap_err();
        assert_eq!(class, ErrorClass::Protocol);
        assert!(
            text.contains("does not speak HTTP/2 with prior knowledge"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_connection_closed_under_a_stream_fails_it() {
        let (mux, mut peer) = Peer::connect(&[]).await;
        let answer = request(&mux, b"");
        peer.stream_frame().await;
        peer.head(1, "200", false).await;
        drop(peer);
        let (class, _) = answer.await.unwrap().unwrap_err();
        assert_eq!(class, ErrorClass::ClosedBeforeResponse);
        assert!(!mux.ready());
    }

    #[tokio::test]
    async fn a_head_in_continuation_frames_then_trailers() {
        let (mux, mut peer) = Peer::connect(&[]).await;
        let answer = request(&mux, b"");
        peer.stream_frame().await;
        // An interim 103 first.
        peer.head(1, "103", false).await;
        let mut block = vec![0x08, 3];
        block.extend_from_slice(b"200");
        block.extend_from_slice(&[0x0f, 0x27, 4]);
        block.extend_from_slice(b"test");
        // A frame of an unknown type is skipped (nothing may come between a HEADERS and its
        // CONTINUATION frames).
        peer.send(0xfa, 0, 0, b"unknown").await;
        let padded = [&[1u8, 0, 0, 0, 0, 16][..], &block[..4], &[0]].concat();
        peer.send(HEADERS, PADDED | PRIORITY, 1, &padded).await;
        peer.send(CONTINUATION, 0, 1, &block[4..6]).await;
        peer.send(CONTINUATION, END_HEADERS, 1, &block[6..]).await;
        peer.send(DATA, 0, 1, b"body").await;
        // Trailers (a literal field) end it.
        peer.send(HEADERS, END_HEADERS | END_STREAM, 1, b"\x00\x01x\x01y")
            .await;
        let (status, body, _, server) = answer.await.unwrap().unwrap();
        assert_eq!((status, body, server.as_slice()), (200, 4, &b"test"[..]));
    }

    /// A field as an HPACK literal without indexing, its name new (short strings only).
    fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = vec![0, name.len() as u8];
        out.extend_from_slice(name);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
        out
    }

    /// Names and values as text.
    fn texts<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<(String, String)> {
        fields
            .map(|(n, v)| {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                (text(n), text(v))
            })
            .collect()
    }

    /// What a request kept of its answer: head fields, trailers, the body kept, and the
    /// lookups of `grpc-status` in the head and in the trailers.
    type Kept = (
        Vec<(String, String)>,
        Vec<(String, String)>,
        Vec<u8>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
    );

    /// One request that keeps `keep` bytes of its body and reads its fields and trailers.
    fn request_trailers(
        mux: &Mux,
        keep: fn(u16) -> usize,
    ) -> tokio::task::JoinHandle<Result<Kept, (ErrorClass, String)>> {
        let mux = mux.clone();
        tokio::spawn(async move {
            let received = AtomicU64::new(0);
            mux.exchange(&block(), &Bytes::new(), keep, &received, |a| {
                (
                    texts(a.fields()),
                    texts(a.trailers()),
                    a.prefix.to_vec(),
                    a.field(b"grpc-status").map(<[u8]>::to_vec),
                    a.trailer(b"grpc-status").map(<[u8]>::to_vec),
                )
            })
            .await
            .map_err(|f| (f.class, f.to_string()))
        })
    }

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn trailers_are_kept_after_the_head_and_apart_from_it() {
        fn keep_message(_: u16) -> usize {
            1 << 20
        }
        let (mux, mut peer) = Peer::connect(&[]).await;
        let answer = request_trailers(&mux, keep_message);
        assert_eq!(peer.stream_frame().await.2, 1);
        peer.head(1, "200", false).await;
        // 40,000 bytes in three frames: all kept, as `keep` asks.
        let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in body.chunks(MAX_FRAME) {
            peer.send(DATA, 0, 1, chunk).await;
        }
        let trailers = [
            literal(b"grpc-status", b"14"),
            literal(b"grpc-message", b"down"),
        ]
        .concat();
        peer.send(HEADERS, END_HEADERS | END_STREAM, 1, &trailers)
            .await;
        let (head, trailing, prefix, in_head, in_trailers) = answer.await.unwrap().unwrap();
        assert_eq!(head, pairs(&[("server", "test")]));
        assert_eq!(
            trailing,
            pairs(&[("grpc-status", "14"), ("grpc-message", "down")])
        );
        assert_eq!(prefix, body);
        assert_eq!((in_head, in_trailers), (None, Some(b"14".to_vec())));

        // The next stream reuses the slot: nothing of the last one's trailers or body is left,
        // and an answer without trailers has none.
        let answer = request_trailers(&mux, keep_message);
        assert_eq!(peer.stream_frame().await.2, 3);
        peer.head(3, "200", false).await;
        peer.send(DATA, END_STREAM, 3, b"short").await;
        let (head, trailing, prefix, _, in_trailers) = answer.await.unwrap().unwrap();
        assert_eq!(head, pairs(&[("server", "test")]));
        assert_eq!(
            (trailing, prefix, in_trailers),
            (vec![], b"short".to_vec(), None)
        );
    }

    #[tokio::test]
    async fn a_trailers_only_answer_has_its_fields_in_the_head() {
        let (mux, mut peer) = Peer::connect(&[]).await;
        let answer = request_trailers(&mux, keep_all);
        peer.stream_frame().await;
        // An interim head's fields are not the final head's.
        peer.head(1, "103", false).await;
        let block = [
            &[0x88][..],
            &literal(b"content-type", b"application/grpc"),
            &literal(b"grpc-status", b"5"),
        ]
        .concat();
        peer.send(HEADERS, END_HEADERS | END_STREAM, 1, &block)
            .await;
        let (head, trailing, prefix, in_head, in_trailers) = answer.await.unwrap().unwrap();
        assert_eq!(
            head,
            pairs(&[("content-type", "application/grpc"), ("grpc-status", "5")])
        );
        assert_eq!((trailing, prefix), (vec![], vec![]));
        assert_eq!((in_head, in_trailers), (Some(b"5".to_vec()), None));
    }

    #[tokio::test]
    async fn trailers_larger_than_the_header_list_limit_fail_the_stream() {
        let (mux, mut peer) = Peer::connect(&[]).await;
        let answer = request_trailers(&mux, keep_all);
        peer.stream_frame().await;
        peer.head(1, "200", false).await;
        peer.send(DATA, 0, 1, b"body").await;
        // 150 fields of 32 + 2 + 100 bytes each: more than 16 KiB by the size rule, in one
        // frame.
        let trailers: Vec<u8> = (0..150)
            .flat_map(|i| literal(format!("{i:02x}").as_bytes(), &[b'v'; 100]))
            .collect();
        peer.send(HEADERS, END_HEADERS | END_STREAM, 1, &trailers)
            .await;
        let (class, text) = answer.await.unwrap().unwrap_err();
        assert_eq!(class, ErrorClass::Protocol);
        assert!(text.contains("trailers larger than 16 KiB"), "{text}");
        // The stream was reset; the connection goes on.
        let (kind, _, id, _) = peer.stream_frame().await;
        assert_eq!((kind, id), (RST_STREAM, 1));
        let answer = request(&mux, b"");
        assert_eq!(peer.stream_frame().await.2, 3);
        peer.head(3, "200", true).await;
        assert_eq!(answer.await.unwrap().unwrap().0, 200);
    }
}
