//! HTTP/1.1 on the wire: how the engine writes a request and reads its response on an HTTP/1.1
//! connection, without a client library in between.
//!
//! The request is encoded once per run (every request of a run is the same) and written with one
//! system call; the response head is parsed in place with `httparse` (what hyper uses too), and
//! the body is framed by its `Content-Length`, by chunked encoding, or by the close of the
//! connection (RFC 9112 §6), then discarded. A connection owns one read buffer for its whole
//! life: nothing is allocated per request.
//!
//! Why not hyper's HTTP/1.1 client: its per-request machinery (a request channel, a response
//! channel, the `Request`/`Response` types and their header maps, a copy of the request headers
//! per request) was most of gapless's user-space time. Against nginx on a 2-core VM, this module
//! took CPU per request at 20,000 req/s from 12.6 to 10.2 µs, and one engine thread's closed loop
//! from 112,000 to 161,000 req/s (BENCHMARKS.md). hyper still serves HTTP/2 and `gapless serve`.
//!
//! One request is in flight per connection and nothing is ever retried. A connection is reusable
//! after a response only if the response said so (HTTP/1.1 without `Connection: close`, or
//! HTTP/1.0 with `keep-alive`), its body was framed by length, and nothing else has arrived
//! since; [`Wire::is_open`] checks the last two before each request.
//!
//! # Limits
//!
//! A server cannot make a request read without end or hold memory (a `protocol` failure each,
//! whose [`Fault`] says which limit, as hyper refuses them too):
//!
//! - a response head of at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields;
//! - at most 16 KiB of chunk extensions per body, and a trailer section of at most 16 KiB and
//!   100 fields (hyper's `CHUNKED_EXTENSIONS_LIMIT`, `TRAILER_LIMIT` and header count);
//! - every line of the chunked framing and of the trailers ends with CR LF: a bare LF is refused
//!   (hyper refuses it in the size line; a parser that accepts it where the next hop does not is
//!   how responses are smuggled);
//! - at most [`MAX_INTERIM`] interim (`1xx`) responses before the final one.
//!
//! A response with both `Transfer-Encoding` and `Content-Length` is framed by its transfer
//! coding (RFC 9112 §6.3) and counts by its status, as hyper, curl and Go's client read it, but
//! its connection is never reused: the two headers disagree about where the next response
//! starts, and RFC 9112 calls such a message a sign of request smuggling or response splitting.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::Poll;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::client::stamped::Activity;
use crate::measure::outcome::{ErrorClass, Fault};

/// Most header lines a response head may have (hyper's default too).
pub const MAX_HEADERS: usize = 100;

/// The sample of a head with more than [`MAX_HEADERS`] fields.
const TOO_MANY_HEADERS: &str = "more than 100 header fields in the response head";

/// Most bytes of chunk extensions in one body (hyper's `CHUNKED_EXTENSIONS_LIMIT`: also per
/// body, not per chunk). gapless ignores extensions; the limit keeps a server from streaming
/// one without end.
const MAX_CHUNK_EXTENSIONS: usize = 16 * 1024;

/// Most bytes of a chunked body's trailer section (hyper's `TRAILER_LIMIT`).
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Most fields in a trailer section (hyper allows as many as header fields).
const MAX_TRAILERS: usize = MAX_HEADERS;

/// Most interim (`1xx`) responses skipped before the final one. Go's HTTP client, which Fortio,
/// k6 and vegeta use, allows 5 (`max1xxResponses`): real servers send one `100 Continue`, a
/// `103 Early Hints` or two, or a `102 Processing` now and then, never a stream of them.
pub const MAX_INTERIM: usize = 5;

/// The read buffer a connection starts with: enough for a usual response head and a small
/// body. It doubles (up to [`BUF_BODY`]) when a response fills it, and keeps that size for the
/// connection's life: a connection to a target with small responses costs 4 KiB (with 50
/// endpoints × 4 connections, 16 KiB each was 3 MB; BENCHMARKS.md, issue 18).
const BUF_START: usize = 4 * 1024;

/// The read buffer grows to this while a body fills it (fewer reads for large bodies).
const BUF_BODY: usize = 64 * 1024;

/// The largest response head accepted; a larger one is a `protocol` failure (hyper's default
/// limit is about the same).
pub const MAX_HEAD: usize = 400 * 1024;

/// An HTTP/1.1 request, encoded once: its head, and its body (shared, not copied).
#[derive(Clone, Debug)]
pub struct EncodedRequest {
    head: Bytes,
    body: Bytes,
    head_method: bool,
}

impl EncodedRequest {
    /// Encodes a request line for `target` (origin form, such as `/path?q`), the `headers` in
    /// their order (names in lower case, as hyper sends them), then a `content-length` for the
    /// body, which a `POST`, `PUT` or `PATCH` gets even when empty. `headers` must not frame the
    /// body themselves (`content-length`, `transfer-encoding`): the configuration refuses them.
    pub fn new(method: &Method, target: &str, headers: &HeaderMap, body: Bytes) -> EncodedRequest {
        let mut out = BytesMut::with_capacity(256);
        out.put_slice(method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(target.as_bytes());
        out.put_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            out.put_slice(name.as_str().as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            out.put_slice(b"content-length: ");
            out.put_slice(body.len().to_string().as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
        EncodedRequest {
            head: out.freeze(),
            body,
            head_method: *method == Method::HEAD,
        }
    }

    /// The request line and headers, up to and including the empty line.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

/// What the caller takes from a response as it is read.
pub trait Sink {
    /// The final status and headers (interim `1xx` responses are not passed on).
    fn head(&mut self, status: u16, headers: &[httparse::Header<'_>]);
    /// A piece of the decoded body, in order.
    fn body(&mut self, data: &[u8]);
}

/// How a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code (the final one: `1xx` interim responses are skipped).
    pub status: u16,
    /// Body bytes read (after chunked decoding).
    pub body_bytes: u64,
    /// The connection can take another request.
    pub reusable: bool,
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body: a response to `HEAD`, a `204`, a `304`, or a `101`.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// One HTTP/1.1 connection: the stream and its read buffer.
#[derive(Debug)]
pub struct Wire<I> {
    io: I,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Wire<I> {
    /// A connection over `io`, idle.
    pub fn new(io: I) -> Wire<I> {
        Wire {
            io,
            buf: vec![0; BUF_START],
            start: 0,
            end: 0,
        }
    }

    /// True if the idle connection can take a request: the server has neither closed it nor
    /// sent anything unasked since the last response. Sends nothing and never waits.
    pub async fn is_open(&mut self) -> bool {
        if self.start < self.end {
            return false;
        }
        // Outside tokio's task budget: a spent budget would make the read say "nothing yet"
        // about a connection the server has closed.
        tokio::task::unconstrained(poll_fn(|cx| {
            let mut probe = ReadBuf::new(&mut self.buf);
            // Pending: nothing to read. Anything else is a close, unexpected bytes, or a
            // broken socket.
            Poll::Ready(
                Pin::new(&mut self.io)
                    .poll_read(cx, &mut probe)
                    .is_pending(),
            )
        }))
        .await
    }

    /// Writes `request` and reads the whole response into `sink`. While the body is read it
    /// counts as a transfer in `activity`, if given.
    pub async fn exchange(
        &mut self,
        request: &EncodedRequest,
        activity: Option<&Activity>,
        sink: &mut impl Sink,
    ) -> Result<Response, Fault> {
        self.start = 0;
        self.end = 0;
        let sent_whole = self.send(request).await?;
        let mut interims = 0;
        loop {
            let (status, framing, keep_alive) = self.read_head(request.head_method, sink).await?;
            if interim(status) {
                // The final response follows, unless the server only ever sends these.
                interims += 1;
                if interims > MAX_INTERIM {
                    return Err(Fault::protocol(
                        "more than 5 interim (1xx) responses before the final one",
                    ));
                }
                continue;
            }
            let _body = activity.map(Activity::transfer);
            let body_bytes = self.read_body(framing, sink).await?;
            if self.buf.len() > BUF_BODY && self.start == self.end {
                // A large head grew the buffer: give the memory back.
                self.buf = vec![0; BUF_BODY];
                (self.start, self.end) = (0, 0);
            }
            return Ok(Response {
                status,
                body_bytes,
                reusable: keep_alive
                    && sent_whole
                    && !matches!(framing, Framing::UntilClose)
                    && status != 101,
            });
        }
    }

    /// Writes the request. While the socket cannot take more, it also reads: a server may
    /// answer before it has read the whole body (a `413`, a `401`) and then stop reading. Then
    /// the rest is not sent and the answer is read as the response (`false`: the request went
    /// out incomplete and the connection cannot be reused).
    async fn send(&mut self, request: &EncodedRequest) -> Result<bool, Fault> {
        let (head, body) = (request.head(), request.body());
        let mut written = 0;
        poll_fn(|cx| {
            while written < request.len() {
                let io = Pin::new(&mut self.io);
                let wrote = if written < head.len() && !body.is_empty() {
                    let parts = [io::IoSlice::new(&head[written..]), io::IoSlice::new(body)];
                    io.poll_write_vectored(cx, &parts)
                } else if written < head.len() {
                    io.poll_write(cx, &head[written..])
                } else {
                    io.poll_write(cx, &body[written - head.len()..])
                };
                match wrote {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Fault::io(io::Error::from(
                            io::ErrorKind::WriteZero,
                        ))));
                    }
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::io(e))),
                    Poll::Pending => {
                        // Blocked: has the server answered already?
                        let mut unread = ReadBuf::new(&mut self.buf[self.end..]);
                        return match Pin::new(&mut self.io).poll_read(cx, &mut unread) {
                            Poll::Pending => Poll::Pending,
                            Poll::Ready(Ok(())) => {
                                // Bytes of an answer, or a close (read as the response).
                                self.end += unread.filled().len();
                                Poll::Ready(Ok(false))
                            }
                            Poll::Ready(Err(e)) => Poll::Ready(Err(Fault::io(e))),
                        };
                    }
                }
            }
            Pin::new(&mut self.io)
                .poll_flush(cx)
                .map_err(Fault::io)
                .map_ok(|()| true)
        })
        .await
    }

    /// Reads and parses one response head, leaving the bytes after it unread. A final head goes
    /// to `sink`.
    async fn read_head(
        &mut self,
        head_request: bool,
        sink: &mut impl Sink,
    ) -> Result<(u16, Framing, bool), Fault> {
        loop {
            if self.start < self.end {
                let mut headers =
                    [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut []);
                let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut response,
                    &self.buf[self.start..self.end],
                    &mut headers,
                );
                match parsed {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = response.code.unwrap_or(0);
                        if !(100..=999).contains(&status) {
                            return Err(Fault::protocol("status code outside 100-999"));
                        }
                        let version = response.version.unwrap_or(1);
                        let (framing, keep_alive) =
                            frame(head_request, status, version, response.headers)?;
                        if !interim(status) {
                            sink.head(status, response.headers);
                        }
                        self.start += len;
                        return Ok((status, framing, keep_alive));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(Fault::protocol(TOO_MANY_HEADERS));
                    }
                    Err(e) => return Err(Fault::head(e)),
                }
            }
            if self.fill(MAX_HEAD).await? == 0 {
                return Err(Fault::new(
                    ErrorClass::ClosedBeforeResponse,
                    "the server closed the connection before a complete response head",
                ));
            }
        }
    }

    /// Reads the body framed by `framing`, handing each decoded piece to `sink`. Returns its
    /// length.
    async fn read_body(&mut self, framing: Framing, sink: &mut impl Sink) -> Result<u64, Fault> {
        let mut total = 0u64;
        let mut chunked = Chunked::default();
        let mut left = match framing {
            Framing::Empty => return Ok(0),
            Framing::Length(n) => n,
            Framing::Chunked | Framing::UntilClose => u64::MAX,
        };
        loop {
            let input = &self.buf[self.start..self.end];
            let (used, done) = match framing {
                Framing::Chunked => chunked
                    .decode(input, &mut |data| {
                        total += data.len() as u64;
                        sink.body(data);
                    })
                    .map_err(Fault::protocol)?,
                _ => {
                    let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if n > 0 {
                        sink.body(&input[..n]);
                        total += n as u64;
                        if framing != Framing::UntilClose {
                            left -= n as u64;
                        }
                    }
                    (n, left == 0)
                }
            };
            self.start += used;
            if done {
                return Ok(total);
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                if self.buf.len() < BUF_BODY && total >= self.buf.len() as u64 {
                    self.buf.resize((self.buf.len() * 2).min(BUF_BODY), 0);
                }
            }
            if self.fill(self.buf.len()).await? == 0 {
                return if framing == Framing::UntilClose {
                    Ok(total)
                } else {
                    Err(Fault::new(
                        ErrorClass::ClosedBeforeResponse,
                        "the server closed the connection before the end of the body",
                    ))
                };
            }
        }
    }

    /// Reads more into the buffer, growing it up to `limit` if it is full. Returns the bytes
    /// read: 0 means the server closed the connection.
    async fn fill(&mut self, limit: usize) -> Result<usize, Fault> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < limit {
                let grown = (self.buf.len() * 2).min(limit);
                self.buf.resize(grown, 0);
            } else {
                // A response head larger than the limit.
                return Err(Fault::protocol("response head larger than 400 KiB"));
            }
        }
        let n = self
            .io
            .read(&mut self.buf[self.end..])
            .await
            .map_err(Fault::io)?;
        self.end += n;
        Ok(n)
    }
}

/// An interim response (`100 Continue`, `103 Early Hints`): a final one follows. `101
/// Switching Protocols` is final.
fn interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// The framing of a response's body and whether the connection stays open after it, from its
/// status, version (`0`: HTTP/1.0) and headers (RFC 9112 §6.3, §9.3). The body's length is
/// only checked when it frames the body, as hyper does. A response with both a transfer coding
/// and a length is framed by the coding and ends its connection (see the module doc).
fn frame(
    head_request: bool,
    status: u16,
    version: u8,
    headers: &[httparse::Header<'_>],
) -> Result<(Framing, bool), Fault> {
    let mut length: Option<Result<u64, &'static str>> = None;
    let mut chunked: Option<bool> = None;
    let mut close = false;
    let mut keep_alive = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            for item in header.value.split(|&b| b == b',') {
                let n = parse_length(item.trim_ascii()).ok_or("invalid Content-Length");
                length = Some(match (length, n) {
                    (Some(Ok(l)), Ok(n)) if l != n => Err("conflicting Content-Length values"),
                    (Some(Err(e)), _) | (_, Err(e)) => Err(e),
                    (_, Ok(n)) => Ok(n),
                });
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides whether the body is chunked.
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let both = chunked.is_some() && length.is_some();
    let reusable = !close && (version >= 1 || keep_alive) && !both;
    let framing = if head_request || status == 204 || status == 304 || status < 200 {
        Framing::Empty
    } else if let Some(chunked) = chunked {
        if version == 0 {
            // Transfer codings are HTTP/1.1: an HTTP/1.0 message with one is faulty (RFC
            // 9112 §6.1).
            return Err(Fault::protocol("Transfer-Encoding in an HTTP/1.0 response"));
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(length) = length {
        Framing::Length(length.map_err(Fault::protocol)?)
    } else {
        Framing::UntilClose
    };
    Ok((framing, reusable))
}

/// A `Content-Length` value: decimal digits only.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// A chunked body's decoder (RFC 9112 §7.1): where it is, and what the body's framing has used
/// of its limits so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Chunked {
    state: ChunkState,
    /// Bytes of chunk extensions so far, in the whole body.
    extension_bytes: usize,
    /// Bytes of the trailer section so far.
    trailer_bytes: usize,
    /// Trailer fields so far.
    trailers: usize,
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk size: hex digits so far.
    #[default]
    SizeStart,
    Size {
        size: u64,
    },
    /// Whitespace after the size.
    SizeSpace {
        size: u64,
    },
    /// An extension, up to CR.
    Extension {
        size: u64,
    },
    /// Expecting the LF that ends the size line.
    SizeLf {
        size: u64,
    },
    /// Inside a chunk's data.
    Data {
        left: u64,
    },
    /// Expecting the CR LF after a chunk's data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the empty line that ends the body).
    TrailerStart,
    /// Inside a trailer field line, up to CR.
    TrailerLine,
    /// Expecting the LF that ends a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The whole body has been read.
    Done,
}

impl Chunked {
    /// Decodes from `input`, handing chunk data to `on_data`. Returns the bytes used and
    /// whether the body is complete (bytes after its end are left unused), or what is wrong
    /// with the framing.
    fn decode(
        &mut self,
        input: &[u8],
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<(usize, bool), &'static str> {
        let mut i = 0;
        while i < input.len() && self.state != ChunkState::Done {
            if let ChunkState::Data { left } = self.state {
                let n = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                on_data(&input[i..i + n]);
                i += n;
                let left = left - n as u64;
                self.state = if left == 0 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data { left }
                };
                continue;
            }
            self.state = self.step(input[i])?;
            i += 1;
        }
        Ok((i, self.state == ChunkState::Done))
    }

    /// The state after one framing byte, counting it against the limits.
    fn step(&mut self, byte: u8) -> Result<ChunkState, &'static str> {
        use ChunkState::*;
        let digit = |b: u8| (b as char).to_digit(16).map(u64::from);
        if matches!(self.state, TrailerStart | TrailerLine | TrailerLf | EndLf) {
            self.trailer_bytes += 1;
            if self.trailer_bytes > MAX_TRAILER_BYTES {
                return Err("trailer section larger than 16 KiB");
            }
        }
        Ok(match (self.state, byte) {
            (SizeStart, b) => Size {
                size: digit(b).ok_or("chunk size is not hexadecimal")?,
            },
            (Size { size }, b) if digit(b).is_some() => Size {
                size: size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit(b)?))
                    .ok_or("chunk size too large")?,
            },
            (Size { size } | SizeSpace { size }, b' ' | b'\t') => SizeSpace { size },
            (Size { size } | SizeSpace { size }, b';') => Extension { size },
            (Size { size } | SizeSpace { size } | Extension { size }, b'\r') => SizeLf { size },
            (Size { .. } | SizeSpace { .. } | Extension { .. }, b'\n') => {
                return Err("bare LF in a chunk size line (CR LF required)");
            }
            (Extension { size }, _) => {
                self.extension_bytes += 1;
                if self.extension_bytes > MAX_CHUNK_EXTENSIONS {
                    return Err("chunk extensions larger than 16 KiB");
                }
                Extension { size }
            }
            (Size { .. } | SizeSpace { .. }, _) => return Err("invalid byte in a chunk size line"),
            (SizeLf { size: 0 }, b'\n') => TrailerStart,
            (SizeLf { size }, b'\n') => Data { left: size },
            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err("chunk data longer than its size"),
            (DataLf, b'\n') => SizeStart,
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerLine, b'\n') => {
                return Err("bare LF in the trailer section (CR LF required)");
            }
            (TrailerStart, _) => {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err("more than 100 trailer fields");
                }
                TrailerLine
            }
            (TrailerLine, b'\r') => TrailerLf,
            (TrailerLine, _) => TrailerLine,
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            (SizeLf { .. } | DataLf | TrailerLf | EndLf, _) => {
                return Err("CR not followed by LF in the chunked framing");
            }
            // `decode` reads these states' bytes itself.
            (Data { .. } | Done, _) => return Err("bytes after the end of a chunked body"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::future::Future;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    /// The framing headers, one value or a comma list, in any case: the length, whether the
    /// connection stays open, and the faults, the same either way.
    #[test]
    fn framing_headers_are_read_whole_or_as_lists_in_any_case() {
        let framed = |fields: &[(&str, &str)]| {
            let headers: Vec<httparse::Header<'_>> = fields
                .iter()
                .map(|(name, value)| httparse::Header {
                    name,
                    value: value.as_bytes(),
                })
                .collect();
            frame(false, 200, 1, &headers).map_err(|fault| fault.to_string())
        };
        let length = |n| Ok((Framing::Length(n), true));
        assert_eq!(framed(&[("Content-Length", "3")]), length(3));
        assert_eq!(framed(&[("content-LENGTH", " 3 ")]), length(3));
        assert_eq!(framed(&[("content-length", "3, 3")]), length(3));
        assert_eq!(
            framed(&[("content-length", "3"), ("Content-Length", "3,3")]),
            length(3)
        );
        let conflict = Err("conflicting Content-Length values".to_string());
        assert_eq!(framed(&[("content-length", "3, 4")]), conflict);
        assert_eq!(
            framed(&[("content-length", "3"), ("content-length", "4")]),
            conflict
        );
        let invalid = Err("invalid Content-Length".to_string());
        assert_eq!(framed(&[("content-length", "3,")]), invalid);
        assert_eq!(framed(&[("content-length", "x")]), invalid);
        // Same length as `content-length`, another name: not read.
        assert_eq!(
            framed(&[("content-lengtx", "x"), ("content-length", "2")]),
            length(2)
        );
        let closed = |v: &str| framed(&[("Connection", v), ("content-length", "0")]);
        assert_eq!(closed("keep-alive"), Ok((Framing::Length(0), true)));
        assert_eq!(closed("CLOSE"), Ok((Framing::Length(0), false)));
        assert_eq!(closed("keep-alive, close"), Ok((Framing::Length(0), false)));
        assert_eq!(closed(" upgrade ,Close "), Ok((Framing::Length(0), false)));
        assert_eq!(closed("closed"), Ok((Framing::Length(0), true)));
        assert_eq!(
            framed(&[
                ("Transfer-Encoding", "gzip, chunked"),
                ("content-length", "5")
            ]),
            Ok((Framing::Chunked, false))
        );
    }

    /// What a test's sink saw.
    #[derive(Debug, Default)]
    struct Seen {
        heads: Vec<u16>,
        header_names: Vec<String>,
        body: Vec<u8>,
    }

    impl Sink for Seen {
        fn head(&mut self, status: u16, headers: &[httparse::Header<'_>]) {
            self.heads.push(status);
            self.header_names = headers.iter().map(|h| h.name.to_string()).collect();
        }

        fn body(&mut self, data: &[u8]) {
            self.body.extend_from_slice(data);
        }
    }

    fn get() -> EncodedRequest {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, "example.test".parse().unwrap());
        EncodedRequest::new(&Method::GET, "/", &headers, Bytes::new())
    }

    fn head() -> EncodedRequest {
        EncodedRequest::new(&Method::HEAD, "/", &HeaderMap::new(), Bytes::new())
    }

    /// Everything a request writes.
    fn bytes_of(request: &EncodedRequest) -> Vec<u8> {
        [request.head(), request.body()].concat()
    }

    /// Reads one request head from the server's end.
    async fn read_request(server: &mut DuplexStream) -> Vec<u8> {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\r\n\r\n") {
            assert_eq!(
                server.read(&mut byte).await.unwrap(),
                1,
                "request cut short"
            );
            seen.push(byte[0]);
        }
        seen
    }

    /// Reads a request on `server`, then writes `pieces` with a pause between them.
    async fn answer(server: &mut DuplexStream, pieces: &[&[u8]]) {
        read_request(server).await;
        for piece in pieces {
            server.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// One exchange of `request` against a server that answers with `pieces`, then closes the
    /// connection if `close`. Returns the wire so a test can look at it after.
    async fn exchange(
        request: EncodedRequest,
        pieces: &[&[u8]],
        close: bool,
    ) -> (
        Result<Response, Fault>,
        Seen,
        Wire<DuplexStream>,
        DuplexStream,
    ) {
        let (client, mut server) = duplex(1 << 16);
        let mut wire = Wire::new(client);
        let mut seen = Seen::default();
        let serve = async {
            answer(&mut server, pieces).await;
            if close {
                server.shutdown().await.unwrap();
            }
        };
        let (result, ()) = tokio::join!(wire.exchange(&request, None, &mut seen), serve);
        (result, seen, wire, server)
    }

    #[test]
    fn a_request_is_encoded_once_with_its_framing() {
        assert_eq!(
            bytes_of(&get()),
            b"GET / HTTP/1.1\r\nhost: example.test\r\n\r\n"
        );
        let post = EncodedRequest::new(&Method::POST, "/a?b=c", &HeaderMap::new(), Bytes::new());
        assert_eq!(
            bytes_of(&post),
            b"POST /a?b=c HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
        let body = Bytes::from_static(b"hello");
        let put = EncodedRequest::new(&Method::PUT, "/", &HeaderMap::new(), body.clone());
        assert_eq!(
            bytes_of(&put),
            b"PUT / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello"
        );
        assert_eq!(
            put.body().as_ptr(),
            body.as_ptr(),
            "the body is shared, not copied"
        );
    }

    /// A 4 MiB `POST` on a pipe that holds 64 KiB: the connection, the server's end, the request.
    fn upload() -> (Wire<DuplexStream>, DuplexStream, EncodedRequest) {
        let (client, server) = duplex(64 * 1024);
        let body = Bytes::from(vec![b'x'; 4 << 20]);
        let request = EncodedRequest::new(&Method::POST, "/", &HeaderMap::new(), body);
        (Wire::new(client), server, request)
    }

    /// A server that answers a large upload before reading it (a `413`, say) and then reads no
    /// more: the answer is the response, and the connection is not reused.
    #[tokio::test]
    async fn an_answer_before_the_body_is_sent_is_the_response() {
        let (mut wire, mut server, request) = upload();
        let serve = async {
            read_request(&mut server).await;
            let answer = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\n\r\nbig!";
            server.write_all(answer).await.unwrap();
            server
        };
        let mut seen = Seen::default();
        let exchange = tokio::time::timeout(
            Duration::from_secs(5),
            wire.exchange(&request, None, &mut seen),
        );
        let (result, _server) = tokio::join!(exchange, serve);
        let response = result.expect("answered before the timeout").unwrap();
        assert_eq!(response.status, 413);
        assert!(!response.reusable, "the request went out incomplete");
        assert_eq!(seen.body, b"big!");
    }

    /// The same upload to a server that reads it all is sent whole.
    #[tokio::test]
    async fn a_large_body_is_sent_whole() {
        let (mut wire, mut server, request) = upload();
        let serve = async {
            read_request(&mut server).await;
            let mut rest = vec![0u8; 4 << 20];
            server.read_exact(&mut rest).await.unwrap();
            assert!(rest.iter().all(|&b| b == b'x'));
            server
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            server
        };
        let mut seen = Seen::default();
        let (result, _server) = tokio::join!(wire.exchange(&request, None, &mut seen), serve);
        assert!(result.unwrap().reusable);
    }

    /// A spent task budget (tokio's cooperative scheduling) must not hide a close.
    #[tokio::test]
    async fn a_close_is_seen_whatever_the_task_budget() {
        let (client, mut server) = duplex(1 << 16);
        let mut wire = Wire::new(client);
        server.shutdown().await.unwrap();
        drop(server);
        let open = poll_fn(|cx| {
            while let Poll::Ready(progress) = tokio::task::coop::poll_proceed(cx) {
                progress.made_progress();
            }
            std::pin::pin!(wire.is_open()).poll(cx)
        })
        .await;
        assert!(!open, "closed by the server, with the budget spent");
    }

    #[tokio::test]
    async fn a_body_framed_by_its_length_arrives_in_pieces() {
        let (result, seen, mut wire, _server) = exchange(
            get(),
            &[
                b"HTTP/1.1 200 OK\r\nContent-Le",
                b"ngth: 11\r\n\r\nhello",
                b" world",
            ],
            false,
        )
        .await;
        let response = result.unwrap();
        assert_eq!(
            response,
            Response {
                status: 200,
                body_bytes: 11,
                reusable: true
            }
        );
        assert_eq!(seen.heads, [200]);
        assert_eq!(seen.header_names, ["Content-Length"]);
        assert_eq!(seen.body, b"hello world");
        assert!(wire.is_open().await, "idle and open");
    }

    #[tokio::test]
    async fn one_connection_carries_request_after_request() {
        let (client, mut server) = duplex(1 << 16);
        let mut wire = Wire::new(client);
        for i in 0..3 {
            let mut seen = Seen::default();
            let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n{i}");
            let (pieces, request) = ([reply.as_bytes()], get());
            let serve = answer(&mut server, &pieces);
            let (result, ()) = tokio::join!(wire.exchange(&request, None, &mut seen), serve);
            assert!(result.unwrap().reusable);
            assert_eq!(seen.body, i.to_string().as_bytes());
            assert!(wire.is_open().await);
        }
    }

    #[tokio::test]
    async fn a_large_body_is_read_through_and_counted() {
        let body = vec![b'x'; 1 << 20];
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        let (result, seen, ..) = exchange(get(), &[head.as_bytes(), &body], false).await;
        assert_eq!(result.unwrap().body_bytes, 1 << 20);
        assert_eq!(seen.body.len(), 1 << 20);
    }

    #[tokio::test]
    async fn a_chunked_body_is_decoded_with_extensions_and_trailers() {
        let wire_bytes: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n";
        // One byte at a time: every state boundary falls between two reads.
        let pieces: Vec<&[u8]> = wire_bytes.chunks(1).collect();
        let (result, seen, mut wire, _server) = exchange(get(), &pieces, false).await;
        assert_eq!(result.unwrap().body_bytes, 11);
        assert_eq!(seen.body, b"hello world");
        assert!(wire.is_open().await);
    }

    #[test]
    fn the_chunked_decoder_gives_the_same_body_however_the_input_is_split() {
        let encoded: &[u8] =
            b"a\r\n0123456789\r\n1F ; ext\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\nNEXT";
        let want = b"01234567890123456789abcdef0123456789abcde";
        for split in 0..=encoded.len() {
            let mut decoder = Chunked::default();
            let mut body = Vec::new();
            let (first, done) = decoder
                .decode(&encoded[..split], &mut |d| body.extend_from_slice(d))
                .unwrap();
            let used = if done {
                first
            } else {
                assert_eq!(first, split, "everything before the end is used");
                let (second, done) = decoder
                    .decode(&encoded[split..], &mut |d| body.extend_from_slice(d))
                    .unwrap();
                assert!(done, "split at {split}");
                split + second
            };
            assert_eq!(body, want, "split at {split}");
            assert_eq!(&encoded[used..], b"NEXT", "split at {split}");
        }
    }

    #[test]
    fn a_malformed_chunk_is_a_protocol_failure() {
        for (bad, why) in [
            (&b"x\r\n"[..], "chunk size is not hexadecimal"),
            (b"5\nhello", "bare LF in a chunk size line (CR LF required)"),
            (b"2\r\nabX", "chunk data longer than its size"),
            (b"11111111111111111\r\n", "chunk size too large"),
            (b"2;ext\n", "bare LF in a chunk size line (CR LF required)"),
            (b"5 junk\r\n", "invalid byte in a chunk size line"),
            (b"2\rX", "CR not followed by LF in the chunked framing"),
            (
                b"2\r\nab\rX",
                "CR not followed by LF in the chunked framing",
            ),
            (
                b"0\r\na: 1\n\r\n",
                "bare LF in the trailer section (CR LF required)",
            ),
            (
                b"0\r\n\n",
                "bare LF in the trailer section (CR LF required)",
            ),
            (
                b"0\r\na: 1\rX",
                "CR not followed by LF in the chunked framing",
            ),
            (b"0\r\n\rX", "CR not followed by LF in the chunked framing"),
        ] {
            let result = Chunked::default().decode(bad, &mut |_| {});
            assert_eq!(result, Err(why), "{:?}", bad.escape_ascii());
        }
    }

    /// Decodes `body` whole, as one input.
    fn decode_all(body: &[u8]) -> Result<(usize, bool), &'static str> {
        Chunked::default().decode(body, &mut |_| {})
    }

    #[test]
    fn chunk_extensions_are_capped_at_16_kib_per_body() {
        // The bytes after `;`, up to CR, count (as in hyper).
        let ext = |n: usize| format!(";{}", "e".repeat(n));
        // At the limit: one chunk's extension, or the limit spread over several chunks.
        let whole = format!("1{}\r\nx\r\n0\r\n\r\n", ext(MAX_CHUNK_EXTENSIONS));
        assert_eq!(decode_all(whole.as_bytes()), Ok((whole.len(), true)));
        let half = ext(MAX_CHUNK_EXTENSIONS / 2);
        let spread = format!("1{half}\r\nx\r\n1{half}\r\nx\r\n0\r\n\r\n");
        assert_eq!(decode_all(spread.as_bytes()), Ok((spread.len(), true)));
        // One byte more, in one chunk or over the body.
        let over = format!("1{}\r\nx\r\n0\r\n\r\n", ext(MAX_CHUNK_EXTENSIONS + 1));
        let over_spread = spread.replace("x\r\n0\r\n", "x\r\n0;e\r\n");
        for body in [over, over_spread] {
            assert_eq!(
                decode_all(body.as_bytes()),
                Err("chunk extensions larger than 16 KiB")
            );
        }
    }

    #[test]
    fn trailers_are_capped_at_100_fields_and_16_kib() {
        let fields = |n: usize| "t: 1\r\n".repeat(n);
        let at_limit = format!("0\r\n{}\r\n", fields(MAX_TRAILERS));
        assert_eq!(decode_all(at_limit.as_bytes()), Ok((at_limit.len(), true)));
        let too_many = format!("0\r\n{}\r\n", fields(MAX_TRAILERS + 1));
        assert_eq!(
            decode_all(too_many.as_bytes()),
            Err("more than 100 trailer fields")
        );
        // The whole section, final CR LF included, may take 16 KiB.
        let line = |n: usize| format!("t: {}\r\n", "v".repeat(n - 5));
        let big = format!("0\r\n{}\r\n", line(MAX_TRAILER_BYTES - 2));
        assert_eq!(decode_all(big.as_bytes()), Ok((big.len(), true)));
        let too_big = format!("0\r\n{}\r\n", line(MAX_TRAILER_BYTES - 1));
        assert_eq!(
            decode_all(too_big.as_bytes()),
            Err("trailer section larger than 16 KiB")
        );
    }

    #[tokio::test]
    async fn a_body_without_length_ends_with_the_connection() {
        let (result, seen, mut wire, _server) =
            exchange(get(), &[b"HTTP/1.1 200 OK\r\n\r\nuntil", b" close"], true).await;
        let response = result.unwrap();
        assert_eq!(response.body_bytes, 11);
        assert!(!response.reusable);
        assert_eq!(seen.body, b"until close");
        assert!(!wire.is_open().await);
    }

    #[tokio::test]
    async fn responses_without_a_body() {
        let cases: [(EncodedRequest, &[u8]); 3] = [
            (head(), b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            (get(), b"HTTP/1.1 204 No Content\r\n\r\n"),
            (
                get(),
                b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
            ),
        ];
        for (request, reply) in cases {
            let (result, seen, mut wire, _server) = exchange(request, &[reply], false).await;
            let response = result.unwrap();
            assert_eq!(response.body_bytes, 0, "{:?}", reply.escape_ascii());
            assert!(response.reusable);
            assert!(seen.body.is_empty());
            assert!(wire.is_open().await, "nothing left unread");
        }
    }

    /// hyper looks at the status, the method and the transfer coding before the length: a
    /// length that frames nothing is not checked.
    #[tokio::test]
    async fn a_bad_length_that_frames_nothing_is_ignored() {
        let cases: [(&[u8], &[u8]); 3] = [
            (b"HTTP/1.1 304 Not Modified\r\ncontent-length: abc\r\n\r\n", b""),
            (b"HTTP/1.1 100 Continue\r\ncontent-length: x\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"ok"),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 1, 2\r\n\r\n2\r\nok\r\n0\r\n\r\n", b"ok"),
        ];
        for (reply, body) in cases {
            let (result, seen, ..) = exchange(get(), &[reply], false).await;
            assert!(result.is_ok(), "{:?}: {result:?}", reply.escape_ascii());
            assert_eq!(seen.body, body);
        }
    }

    #[tokio::test]
    async fn interim_responses_are_skipped() {
        let (result, seen, ..) = exchange(
            get(),
            &[
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
                b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
            ],
            false,
        )
        .await;
        assert_eq!(result.unwrap().status, 201);
        assert_eq!(seen.heads, [201], "only the final head reaches the sink");
        assert_eq!(seen.body, b"ok");
    }

    #[tokio::test]
    async fn whether_the_connection_stays_open() {
        let cases: [(&[u8], bool); 5] = [
            (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", true),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nconnection: upgrade, Close\r\ncontent-length: 0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 0\r\n\r\n",
                true,
            ),
        ];
        for (reply, reusable) in cases {
            let (result, ..) = exchange(get(), &[reply], false).await;
            assert_eq!(
                result.unwrap().reusable,
                reusable,
                "{:?}",
                reply.escape_ascii()
            );
        }
    }

    #[tokio::test]
    async fn failures_are_classified() {
        use ErrorClass::{ClosedBeforeResponse, Protocol};
        let cut_head = "the server closed the connection before a complete response head";
        let cut_body = "the server closed the connection before the end of the body";
        let cases: [(&[u8], ErrorClass, &str); 11] = [
            (b"HTTP/1.1 000 Zero\r\n\r\n", Protocol, "status code outside 100-999"),
            (b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", Protocol, "Transfer-Encoding in an HTTP/1.0 response"),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n", Protocol, "invalid byte in a chunk size line"),
            (b"", ClosedBeforeResponse, cut_head),
            (b"HTTP/1.1 200 OK\r\ncontent-le", ClosedBeforeResponse, cut_head),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", ClosedBeforeResponse, cut_body),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", ClosedBeforeResponse, cut_body),
            (b"garbage garbage\r\n\r\n", Protocol, "malformed response head: invalid HTTP version"),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", Protocol, "conflicting Content-Length values"),
            (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", Protocol, "invalid Content-Length"),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx: 1\n\r\n", Protocol, "bare LF in the trailer section (CR LF required)"),
        ];
        for (reply, class, why) in cases {
            let (result, ..) = exchange(get(), &[reply], true).await;
            let fault = result.expect_err("a failure");
            assert_eq!(
                (fault.class, fault.to_string().as_str()),
                (class, why),
                "{:?}",
                reply.escape_ascii()
            );
        }
    }

    /// A 1 MiB chunk extension, 5,000 trailers, a 1 MiB trailer, or a bare LF in the trailers:
    /// each a `protocol` failure that says which limit, not a `200` on a reusable connection.
    #[tokio::test]
    async fn chunked_framing_beyond_the_limits_is_a_protocol_failure() {
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let cases = [
            (
                format!("{head}2;{}\r\nok\r\n0\r\n\r\n", "e".repeat(1 << 20)),
                "chunk extensions larger than 16 KiB",
            ),
            (
                format!("{head}2\r\nok\r\n0\r\n{}\r\n", "t: 1\r\n".repeat(5000)),
                "more than 100 trailer fields",
            ),
            (
                format!("{head}2\r\nok\r\n0\r\nt: {}\r\n\r\n", "v".repeat(1 << 20)),
                "trailer section larger than 16 KiB",
            ),
            (
                format!("{head}2\r\nok\r\n0\r\nt: 1\nu: 2\n\n"),
                "bare LF in the trailer section (CR LF required)",
            ),
        ];
        for (reply, why) in cases {
            let fault = refused(reply.as_bytes()).await;
            assert_eq!(
                (fault.class, fault.to_string().as_str()),
                (ErrorClass::Protocol, why)
            );
        }
    }

    /// The failure of an exchange with a server that writes `reply` (however long) and stops
    /// when the client gives up.
    async fn refused(reply: &[u8]) -> Fault {
        let (client, mut server) = duplex(1 << 16);
        let mut wire = Wire::new(client);
        let serve = async {
            read_request(&mut server).await;
            // Fails once the client's end is dropped.
            let _ = server.write_all(reply).await;
        };
        let request = get();
        let exchange = async {
            let result = wire.exchange(&request, None, &mut Seen::default()).await;
            drop(wire);
            result
        };
        let (result, ()) = tokio::join!(exchange, serve);
        result.expect_err("the exchange should fail")
    }

    /// Transfer-Encoding frames the body (RFC 9112 §6.3): the response counts, but the
    /// connection is not reused, whatever the status or the length said.
    #[tokio::test]
    async fn a_response_with_both_length_headers_ends_its_connection() {
        let cases: [(EncodedRequest, &[u8], &[u8]); 3] = [
            (get(), b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (get(), b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100\r\n\r\n2\r\nok\r\n0\r\n\r\n", b"ok"),
            (head(), b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n", b""),
        ];
        for (request, reply, body) in cases {
            let (result, seen, ..) = exchange(request, &[reply], false).await;
            let response = result.unwrap();
            assert_eq!(response.status, 200);
            assert!(!response.reusable, "{:?}", reply.escape_ascii());
            assert_eq!(seen.body, body);
        }
    }

    #[tokio::test]
    async fn interim_responses_are_capped() {
        let interim = b"HTTP/1.1 102 Processing\r\n\r\n".repeat(MAX_INTERIM);
        let answer: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (result, ..) = exchange(get(), &[&interim, answer], false).await;
        assert_eq!(result.unwrap().status, 200, "{MAX_INTERIM} are skipped");

        let interim = b"HTTP/1.1 102 Processing\r\n\r\n".repeat(MAX_INTERIM + 1);
        let (result, ..) = exchange(get(), &[&interim, answer], true).await;
        let fault = result.expect_err("one too many");
        assert_eq!(fault.class, ErrorClass::Protocol);
        assert_eq!(
            fault.to_string(),
            format!("more than {MAX_INTERIM} interim (1xx) responses before the final one")
        );
    }

    #[tokio::test]
    async fn a_head_larger_than_the_limit_is_a_protocol_failure() {
        let (client, mut server) = duplex(1 << 16);
        let mut wire = Wire::new(client);
        let serve = async {
            read_request(&mut server).await;
            let _ = server.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = format!("x-filler: {}\r\n", "y".repeat(16 * 1024));
            // Stops when the client gives up and its end is dropped... or the limit is passed.
            for _ in 0..(MAX_HEAD / line.len() + 10) {
                if server.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        };
        let request = get();
        let exchange = async {
            let result = wire.exchange(&request, None, &mut Seen::default()).await;
            drop(wire);
            result
        };
        let (result, ()) = tokio::join!(exchange, serve);
        let fault = result.expect_err("too large");
        assert_eq!(fault.class, ErrorClass::Protocol);
        assert_eq!(
            fault.to_string(),
            format!("response head larger than {} KiB", MAX_HEAD / 1024)
        );
    }

    #[tokio::test]
    async fn a_buffer_grown_by_a_large_head_shrinks_back() {
        let head = format!(
            "HTTP/1.1 200 OK\r\nx-filler: {}\r\ncontent-length: 2\r\n\r\nok",
            "y".repeat(200 * 1024)
        );
        let (result, seen, wire, _server) = exchange(get(), &[head.as_bytes()], false).await;
        assert!(result.unwrap().reusable);
        assert_eq!(seen.body, b"ok");
        assert_eq!(wire.buf.len(), BUF_BODY);
    }

    #[tokio::test]
    async fn an_idle_connection_that_the_server_closed_or_wrote_to_is_not_open() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let (_, _, mut wire, mut server) = exchange(get(), &[reply], false).await;
        assert!(wire.is_open().await);
        server.shutdown().await.unwrap();
        tokio::task::yield_now().await;
        assert!(!wire.is_open().await, "closed by the server");

        let (_, _, mut wire, mut server) = exchange(get(), &[reply], false).await;
        server
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        assert!(!wire.is_open().await, "a response to nothing");

        // Bytes after the response, in the same read.
        let (result, _, mut wire, _server) = exchange(
            get(),
            &[b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nextra"],
            false,
        )
        .await;
        assert!(result.unwrap().reusable);
        assert!(!wire.is_open().await, "bytes nobody asked for");
    }
}
