//! A scripted raw-frame HTTP/2 server on `127.0.0.1:0` for `h2_edges.rs`: frames written byte by
//! byte, so a test can send what no well-behaved HTTP/2 library sends (a GOAWAY among streams in
//! flight, CONTINUATION frames, padding, unknown frame types, a DATA frame on stream 0, a frame
//! longer than the client allows) and see exactly what the client sent back.
//!
//! Each connection sends its SETTINGS at once (before reading the client's preface), reads the
//! preface, acks the client's SETTINGS and answers its PINGs. When a request's header block is
//! complete (HEADERS and any CONTINUATION), the test's [`Script`] says what to do for it: a list
//! of [`Step`]s (frames to send, waits, closing the connection) run in a task of their own, so
//! a script that waits holds up no other stream. Every frame the client sent is logged, with
//! its connection, and can be read after the run ([`H2Raw::frames`]).
//!
//! The server does no flow control of its own: scripts send small bodies (the client's windows
//! are megabytes), and the client's DATA frames are logged but never acknowledged with a
//! WINDOW_UPDATE (tests that upload use `h2::server`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::TestServer;

/// The client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113, section 6).
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY.
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    /// END_STREAM (DATA, HEADERS).
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING).
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS, CONTINUATION).
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED (DATA, HEADERS).
    pub const PADDED: u8 = 0x8;
    /// PRIORITY (HEADERS).
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113, section 7).
pub mod code {
    /// NO_ERROR.
    pub const NO_ERROR: u32 = 0x0;
    /// CANCEL.
    pub const CANCEL: u32 = 0x8;
}

/// One HTTP/2 frame, as sent or received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The frame type.
    pub kind: u8,
    /// Its flags.
    pub flags: u8,
    /// The stream id (31 bits).
    pub stream: u32,
    /// The payload, padding included.
    pub payload: Vec<u8>,
}

impl Frame {
    /// Any frame.
    pub fn new(kind: u8, flags: u8, stream: u32, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            kind,
            flags,
            stream,
            payload: payload.into(),
        }
    }

    /// The frame on the wire: 9-byte header, then the payload.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len();
        assert!(len < 1 << 24, "a frame's length has 24 bits");
        let mut out = Vec::with_capacity(9 + len);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// A HEADERS frame carrying `block` with `flags` (END_HEADERS is not implied).
    pub fn headers(stream: u32, flags: u8, block: &[u8]) -> Frame {
        Frame::new(kind::HEADERS, flags, stream, block)
    }

    /// A complete response head: HEADERS with END_HEADERS, and END_STREAM if `end`.
    pub fn head(stream: u32, block: &[u8], end: bool) -> Frame {
        let end = if end { flag::END_STREAM } else { 0 };
        Frame::headers(stream, flag::END_HEADERS | end, block)
    }

    /// A CONTINUATION frame.
    pub fn continuation(stream: u32, end_headers: bool, fragment: &[u8]) -> Frame {
        let flags = if end_headers { flag::END_HEADERS } else { 0 };
        Frame::new(kind::CONTINUATION, flags, stream, fragment)
    }

    /// A DATA frame, with END_STREAM if `end`.
    pub fn data(stream: u32, bytes: &[u8], end: bool) -> Frame {
        let flags = if end { flag::END_STREAM } else { 0 };
        Frame::new(kind::DATA, flags, stream, bytes)
    }

    /// A SETTINGS frame with these `(identifier, value)` pairs.
    pub fn settings(pairs: &[(u16, u32)]) -> Frame {
        let mut payload = Vec::new();
        for (id, value) in pairs {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        Frame::new(kind::SETTINGS, 0, 0, payload)
    }

    /// A PING (an ACK if `ack`).
    pub fn ping(ack: bool, opaque: [u8; 8]) -> Frame {
        Frame::new(kind::PING, if ack { flag::ACK } else { 0 }, 0, opaque)
    }

    /// A GOAWAY.
    pub fn goaway(last_stream: u32, error: u32) -> Frame {
        let mut payload = last_stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&error.to_be_bytes());
        Frame::new(kind::GOAWAY, 0, 0, payload)
    }

    /// A PRIORITY frame: depends on stream 0, weight 16.
    pub fn priority(stream: u32) -> Frame {
        Frame::new(kind::PRIORITY, 0, stream, [0, 0, 0, 0, 15])
    }

    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            kind::RST_STREAM => 0,
            kind::GOAWAY => 4,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// HPACK, encoding only, without Huffman coding or the dynamic table: what a response needs.
pub mod hpack {
    /// `:status CODE`: indexed from the static table where it is there (200, 204, 206, 304,
    /// 400, 404, 500), otherwise a literal without indexing with the indexed name `:status`.
    pub fn status(code: u16) -> Vec<u8> {
        let index = match code {
            200 => 8,
            204 => 9,
            206 => 10,
            304 => 11,
            400 => 12,
            404 => 13,
            500 => 14,
            _ => {
                let mut out = vec![0x08];
                string(&mut out, code.to_string().as_bytes());
                return out;
            }
        };
        vec![0x80 | index]
    }

    /// `name: value` as a literal without indexing, with a literal name.
    pub fn header(name: &str, value: &str) -> Vec<u8> {
        let mut out = vec![0x00];
        string(&mut out, name.as_bytes());
        string(&mut out, value.as_bytes());
        out
    }

    /// A string literal, not Huffman-coded (lengths up to 126 only: a one-byte prefix).
    fn string(out: &mut Vec<u8>, bytes: &[u8]) {
        assert!(bytes.len() < 127, "short strings only");
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
}

/// What to do, in order, for one request.
#[derive(Clone, Debug)]
pub enum Step {
    /// Send this frame.
    Send(Frame),
    /// Send these bytes as they are (several frames in one write, say).
    Bytes(Vec<u8>),
    /// Wait this long.
    Wait(Duration),
    /// Close the connection (a FIN, after what was sent); the connection reads no more.
    Close,
}

impl Step {
    /// Several frames in one write.
    pub fn frames(frames: &[Frame]) -> Step {
        Step::Bytes(frames.iter().flat_map(Frame::encode).collect())
    }
}

/// A request as a [`Script`] sees it: its header block is complete.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// The connection: 0 for the first accepted, then 1, 2, ...
    pub conn: u64,
    /// Its stream id.
    pub stream: u32,
    /// 0 for the first request on this connection, then 1, 2, ...
    pub nth: u64,
}

/// What the server does for each request.
pub type Script = Arc<dyn Fn(Request) -> Vec<Step> + Send + Sync>;

/// The response `200`, body `ok\n`: HEADERS, then DATA with END_STREAM.
pub fn ok(stream: u32) -> Vec<Step> {
    vec![Step::frames(&[
        Frame::head(stream, &hpack::status(200), false),
        Frame::data(stream, b"ok\n", true),
    ])]
}

/// A frame the client sent, with where and when it arrived.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The connection it came on (as [`Request::conn`]).
    pub conn: u64,
    /// The frame.
    pub frame: Frame,
}

/// What the server recorded.
#[derive(Debug, Default)]
struct Log {
    frames: Vec<Seen>,
    /// Streams the server considers open now: requests whose response has not ended (no
    /// END_STREAM or RST_STREAM sent) and that the client did not reset, per connection.
    open: Vec<(u64, u32)>,
    /// The most streams open at once on one connection, counting only streams opened after the
    /// client acknowledged the server's SETTINGS (before that, RFC 9113 lets it exceed them).
    most_open_after_ack: usize,
    /// Connections whose client acknowledged the server's SETTINGS.
    acked: Vec<u64>,
    /// Bad input: a missing preface, a frame that cannot be read.
    faults: Vec<String>,
}

/// Locks the log; a panicking script must not hide the rest.
fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A scripted raw-frame HTTP/2 server (h2c, prior knowledge), stopped on drop.
pub struct H2Raw {
    server: TestServer,
    log: Arc<Mutex<Log>>,
}

impl H2Raw {
    /// A server whose SETTINGS frame holds `settings`, answering each request as `script` says.
    pub fn start(
        settings: &[(u16, u32)],
        script: impl Fn(Request) -> Vec<Step> + Send + Sync + 'static,
    ) -> H2Raw {
        let log = Arc::new(Mutex::new(Log::default()));
        let script: Script = Arc::new(script);
        let settings = Frame::settings(settings);
        let conns = Arc::new(AtomicU64::new(0));
        let server = {
            let log = log.clone();
            TestServer::raw(move |stream| {
                let conn = conns.fetch_add(1, Ordering::SeqCst);
                let (log, script, settings) = (log.clone(), script.clone(), settings.clone());
                async move {
                    let _ = stream.set_nodelay(true);
                    let connection = Connection { conn, log, script };
                    connection.serve(stream, settings).await;
                }
            })
        };
        H2Raw { server, log }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.server.stats().connections()
    }

    /// Every frame the client sent so far, in order of arrival.
    pub fn frames(&self) -> Vec<Seen> {
        lock(&self.log).frames.clone()
    }

    /// The frames of type `kind` the client sent so far.
    pub fn frames_of(&self, kind: u8) -> Vec<Seen> {
        self.frames()
            .into_iter()
            .filter(|s| s.frame.kind == kind)
            .collect()
    }

    /// The request streams the client opened (HEADERS frames), as `(connection, stream id)`.
    pub fn streams(&self) -> Vec<(u64, u32)> {
        self.frames_of(kind::HEADERS)
            .iter()
            .map(|s| (s.conn, s.frame.stream))
            .collect()
    }

    /// The most streams open at once on one connection, counting from the client's ack of the
    /// server's SETTINGS.
    pub fn most_open(&self) -> usize {
        lock(&self.log).most_open_after_ack
    }

    /// The streams of connection `conn` whose response the server did not end (no END_STREAM or
    /// RST_STREAM sent) and that the client did not reset: the requests it left unanswered.
    pub fn unanswered(&self, conn: u64) -> Vec<u32> {
        lock(&self.log)
            .open
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|&(_, stream)| stream)
            .collect()
    }

    /// Connections whose client acknowledged the server's SETTINGS.
    pub fn acked(&self) -> Vec<u64> {
        lock(&self.log).acked.clone()
    }

    /// What the server could not read (a missing preface, a frame cut short): none, normally.
    pub fn faults(&self) -> Vec<String> {
        lock(&self.log).faults.clone()
    }

    /// Waits up to `limit` for `done` to hold of the frames seen: they may still be on their way
    /// when gapless exits.
    pub fn wait_for(&self, limit: Duration, done: impl Fn(&[Seen]) -> bool) -> bool {
        let until = Instant::now() + limit;
        loop {
            if done(&lock(&self.log).frames) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One accepted connection.
struct Connection {
    conn: u64,
    log: Arc<Mutex<Log>>,
    script: Script,
}

/// The write half, shared by the connection and its scripts' tasks.
type Writer = Arc<tokio::sync::Mutex<OwnedWriteHalf>>;

impl Connection {
    async fn serve(self, stream: TcpStream, settings: Frame) {
        let (mut reader, writer) = stream.into_split();
        let writer: Writer = Arc::new(tokio::sync::Mutex::new(writer));
        let closed = CancellationToken::new();
        let mut scripts = JoinSet::new();
        if writer
            .lock()
            .await
            .write_all(&settings.encode())
            .await
            .is_err()
        {
            return;
        }
        let mut preface = [0u8; PREFACE.len()];
        if reader.read_exact(&mut preface).await.is_err() || preface != PREFACE {
            self.fault(format!("no client preface: {preface:?}"));
            return;
        }
        let mut nth = 0;
        // The stream of a header block being put together.
        let mut block: Option<u32> = None;
        loop {
            let frame = tokio::select! {
                () = closed.cancelled() => break,
                frame = read_frame(&mut reader) => frame,
            };
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    self.fault(e);
                    break;
                }
            };
            self.note(&frame);
            let reply = match frame.kind {
                kind::SETTINGS if frame.flags & flag::ACK == 0 => {
                    Some(Frame::new(kind::SETTINGS, flag::ACK, 0, []))
                }
                kind::SETTINGS => {
                    lock(&self.log).acked.push(self.conn);
                    None
                }
                kind::PING if frame.flags & flag::ACK == 0 => {
                    Some(Frame::new(kind::PING, flag::ACK, 0, frame.payload.clone()))
                }
                kind::HEADERS => {
                    block = Some(frame.stream);
                    None
                }
                kind::RST_STREAM => {
                    lock(&self.log)
                        .open
                        .retain(|&o| o != (self.conn, frame.stream));
                    None
                }
                _ => None,
            };
            if let Some(reply) = reply
                && writer
                    .lock()
                    .await
                    .write_all(&reply.encode())
                    .await
                    .is_err()
            {
                break;
            }
            let ends_block = matches!(frame.kind, kind::HEADERS | kind::CONTINUATION)
                && frame.flags & flag::END_HEADERS != 0;
            if let (true, Some(stream)) = (ends_block, block) {
                block = None;
                let request = Request {
                    conn: self.conn,
                    stream,
                    nth,
                };
                nth += 1;
                self.opened(stream);
                let steps = (self.script)(request);
                let (writer, closed, log, conn) =
                    (writer.clone(), closed.clone(), self.log.clone(), self.conn);
                scripts.spawn(run_steps(steps, writer, closed, log, conn));
            }
            while scripts.try_join_next().is_some() {}
        }
        // Scripts still waiting end with the connection.
        scripts.abort_all();
        while scripts.join_next().await.is_some() {}
    }

    fn note(&self, frame: &Frame) {
        lock(&self.log).frames.push(Seen {
            conn: self.conn,
            frame: frame.clone(),
        });
    }

    fn opened(&self, stream: u32) {
        let mut log = lock(&self.log);
        log.open.push((self.conn, stream));
        if log.acked.contains(&self.conn) {
            let here = log.open.iter().filter(|(c, _)| *c == self.conn).count();
            log.most_open_after_ack = log.most_open_after_ack.max(here);
        }
    }

    fn fault(&self, what: String) {
        lock(&self.log)
            .faults
            .push(format!("connection {}: {what}", self.conn));
    }
}

/// Runs one request's steps; a response frame that ends its stream closes it in the log.
async fn run_steps(
    steps: Vec<Step>,
    writer: Writer,
    closed: CancellationToken,
    log: Arc<Mutex<Log>>,
    conn: u64,
) {
    for step in steps {
        let bytes = match step {
            Step::Send(frame) => frame.encode(),
            Step::Bytes(bytes) => bytes,
            Step::Wait(d) => {
                tokio::time::sleep(d).await;
                continue;
            }
            Step::Close => {
                let _ = writer.lock().await.shutdown().await;
                closed.cancel();
                return;
            }
        };
        for (stream, ends) in stream_ends(&bytes) {
            if ends {
                lock(&log).open.retain(|&o| o != (conn, stream));
            }
        }
        if writer.lock().await.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// The streams of the frames in `bytes`, and whether each frame ends its stream (END_STREAM on
/// DATA or HEADERS, or a RST_STREAM).
fn stream_ends(mut bytes: &[u8]) -> Vec<(u32, bool)> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let (kind, flags) = (bytes[3], bytes[4]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        let ends = match kind {
            kind::DATA | kind::HEADERS => flags & flag::END_STREAM != 0,
            kind::RST_STREAM => true,
            _ => false,
        };
        out.push((stream, ends));
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    out
}

/// Reads one frame; `None` at a clean end of the connection.
async fn read_frame(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<Option<Frame>, String> {
    let mut head = [0u8; 9];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        // A reset from the client ends the connection as an EOF does.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
        Err(e) => return Err(format!("reading a frame header: {e}")),
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(|e| format!("reading a {len}-byte payload: {e}"))?;
    Ok(Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    }))
}
