//! Kernel receive times for HTTP/1.1 responses, so that the engine thread can nap between pacer
//! ticks without its latency figures depending on when it woke up.
//!
//! On a small VM, waking an idle thread is the most expensive thing a load generator does: more
//! CPU per wake-up than the rest of a request costs (BENCHMARKS.md, "Constants chosen by
//! measurement"). At 20,000 req/s the engine thread used to wake about twice per pacer
//! tick, once for the tick and once more for the responses to the batch it had just sent. The
//! engine now naps through the second one (see the load engine's `nap`): between ticks it sleeps
//! without watching its sockets, and reads whatever arrived when the next tick wakes it.
//!
//! That is only honest if a response's completion time does not depend on when the thread got
//! round to reading it. [`StampedStream`] reads with `recvmsg` and asks the kernel
//! (`SO_TIMESTAMPNS`) when the bytes it returns reached the socket; [`LastReceive`] keeps that
//! time, converted to the monotonic clock, for the last read that returned data, and the engine
//! takes it as the response's completion time. [`Activity`] says whether the timestamps are
//! arriving at all, and whether a transfer is under way that a nap would slow down: the engine
//! naps only while they are arriving and none is.
//!
//! Elsewhere than Linux there is no [`StampedStream`]: connections read plainly, no timestamps
//! are reported, and the engine never naps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
#[cfg(target_os = "linux")]
use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

#[cfg(target_os = "linux")]
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
#[cfg(target_os = "linux")]
use tokio::net::TcpStream;

/// When the bytes last read from one connection reached its socket.
#[derive(Debug)]
pub struct LastReceive {
    /// Times are kept as nanoseconds from here (an atomic, not a lock).
    origin: Instant,
    /// Nanoseconds after `origin`, plus one; zero when not known.
    nanos: AtomicU64,
    /// Reads that returned data and emptied the socket since the last [`LastReceive::clear`].
    drains: AtomicU64,
}

impl Default for LastReceive {
    fn default() -> LastReceive {
        LastReceive {
            origin: Instant::now(),
            nanos: AtomicU64::new(0),
            drains: AtomicU64::new(0),
        }
    }
}

impl LastReceive {
    /// Forgets the last time and the reads (before sending a request, so that only its response
    /// counts).
    pub fn clear(&self) {
        self.nanos.store(0, Ordering::Relaxed);
        self.drains.store(0, Ordering::Relaxed);
    }

    /// Reads that returned data and emptied the socket since the last [`LastReceive::clear`].
    /// More than one for a response means that it arrived in pieces, with a wait between them
    /// (reads that only filled the buffer do not count: the rest was already there).
    pub fn drains(&self) -> u64 {
        self.drains.load(Ordering::Relaxed)
    }

    /// The time of the last read that returned data, if that read carried a timestamp.
    pub fn get(&self) -> Option<Instant> {
        match self.nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.origin + Duration::from_nanos(n - 1)),
        }
    }

    /// Notes a read that returned data, received at `at` (`None`: not known), and that emptied
    /// the socket or not. A time before the connection existed cannot be right (the wall clock
    /// stepped): it counts as not known.
    fn note_read(&self, at: Option<Instant>, drained: bool) {
        if drained {
            self.drains.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = at
            .and_then(|at| at.checked_duration_since(self.origin))
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1) + 1
            });
        self.nanos.store(nanos, Ordering::Relaxed);
    }
}

/// Whether the connections to one target can be left unwatched for a moment: receive
/// timestamps are arriving, no connection is in the middle of a transfer that a nap would slow
/// down (waiting to connect, connecting, writing more than the socket took at once, or reading a
/// response body that did not arrive in one piece: flow control would hold the sender back while
/// the thread naps), and no response so far has arrived in pieces.
///
/// The last is for good: a server that writes a response in several small pieces without
/// `TCP_NODELAY` (Nagle) holds each piece until the previous one is acknowledged, and an
/// unwatched socket acknowledges late. After the first such response, up to one nap late, the
/// target is never left unwatched again.
///
/// One `Activity` serves every engine thread of a run: a transfer on one holds back naps on all.
#[derive(Debug, Default)]
pub struct Activity {
    stamped: AtomicBool,
    transfers: AtomicU64,
    pieces: AtomicBool,
}

impl Activity {
    /// True if the last read that returned data, on any connection, carried a timestamp.
    pub fn stamped(&self) -> bool {
        self.stamped.load(Ordering::Relaxed)
    }

    /// Transfers under way.
    pub fn transfers(&self) -> u64 {
        self.transfers.load(Ordering::Relaxed)
    }

    /// Records that a response arrived in more than one read: from now on the target is never
    /// left unwatched.
    pub fn arrived_in_pieces(&self) {
        self.pieces.store(true, Ordering::Relaxed);
    }

    /// True if receive timestamps are arriving, no transfer is under way, and no response has
    /// arrived in pieces.
    pub fn may_look_away(&self) -> bool {
        self.stamped()
            && self.transfers.load(Ordering::Relaxed) == 0
            && !self.pieces.load(Ordering::Relaxed)
    }

    /// Counts a transfer as under way until the returned guard is dropped.
    pub fn transfer(&self) -> Transfer<'_> {
        self.transfers.fetch_add(1, Ordering::Relaxed);
        Transfer(self)
    }
}

/// A transfer under way (see [`Activity::transfer`]); it ends when this is dropped, however the
/// work that held it ends.
#[derive(Debug)]
pub struct Transfer<'a>(&'a Activity);

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        self.0.transfers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that notes when the bytes it reads reached the socket (Linux only).
///
/// It is registered with the runtime directly (`AsyncFd`), not through tokio's `TcpStream`,
/// whose reads cannot carry control messages. Like tokio's own stream it treats a read that did
/// not fill the buffer as having drained the socket, which saves a read that would only say
/// "nothing more" after every response.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct StampedStream {
    fd: tokio::io::unix::AsyncFd<std::net::TcpStream>,
    last: Arc<LastReceive>,
    activity: Arc<Activity>,
    /// A write is waiting for room in the socket buffer (counted in `activity`).
    write_blocked: bool,
}

#[cfg(target_os = "linux")]
impl StampedStream {
    /// Wraps `tcp`, asking the kernel for receive timestamps. Returns the stream and the handle
    /// on its last receive time. If the kernel refuses timestamps, the stream still works,
    /// without them.
    pub fn new(
        tcp: TcpStream,
        activity: Arc<Activity>,
    ) -> io::Result<(StampedStream, Arc<LastReceive>)> {
        let tcp = tcp.into_std()?;
        sys::enable(&tcp);
        // SAFETY: the `TcpStream` is moved into the `AsyncFd`, which owns it from here on: its
        // descriptor stays open and the same until the `AsyncFd` is dropped.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(tcp) }.map_err(io::Error::from)?;
        let last = Arc::new(LastReceive::default());
        let stream = StampedStream {
            fd,
            last: last.clone(),
            activity,
            write_blocked: false,
        };
        Ok((stream, last))
    }

    /// Records the receive time of a read that returned data (`None`: it carried none).
    fn note(&self, at: Option<Instant>, drained: bool) {
        self.last.note_read(at, drained);
        self.activity.stamped.store(at.is_some(), Ordering::Relaxed);
    }

    /// Notes whether a write is waiting for room, counting it as a transfer while it is.
    fn set_write_blocked(&mut self, blocked: bool) {
        if blocked != self.write_blocked {
            self.write_blocked = blocked;
            if blocked {
                self.activity.transfers.fetch_add(1, Ordering::Relaxed);
            } else {
                self.activity.transfers.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes with `write`, waiting for the socket to take it.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&std::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let Poll::Ready(ready) = self.fd.poll_write_ready(cx) else {
                self.set_write_blocked(true);
                return Poll::Pending;
            };
            let mut guard = ready?;
            if let Ok(result) = guard.try_io(|fd| write(fd.get_ref())) {
                drop(guard);
                self.set_write_blocked(false);
                return Poll::Ready(result);
            }
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for StampedStream {
    fn drop(&mut self) {
        self.set_write_blocked(false);
    }
}

#[cfg(target_os = "linux")]
impl AsyncRead for StampedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use std::os::fd::AsRawFd;
        let this = self.get_mut();
        loop {
            let mut guard = std::task::ready!(this.fd.poll_read_ready(cx))?;
            // SAFETY: `recv` only writes into the buffer; the bytes it reports are initialised
            // below, and no uninitialised byte is ever read.
            let unfilled = unsafe { buf.unfilled_mut() };
            let room = unfilled.len();
            match sys::recv(this.fd.as_raw_fd(), unfilled) {
                Ok((n, stamp)) => {
                    // SAFETY: the kernel wrote `n` bytes at the start of the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if n > 0 {
                        let drained = n < room;
                        if drained {
                            // epoll (edge-triggered) reports the next arrival. A close stays
                            // reported; tokio never clears it.
                            guard.clear_ready();
                        }
                        this.note(stamp.and_then(sys::instant_of), drained);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(target_os = "linux")]
impl AsyncWrite for StampedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        use std::io::Write;
        self.get_mut().poll_write_with(cx, |mut tcp| tcp.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        use std::io::Write;
        self.get_mut()
            .poll_write_with(cx, |mut tcp| tcp.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// The Linux system calls: `SO_TIMESTAMPNS` and `recvmsg` with its control message.
#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::mem::{self, MaybeUninit};
    use std::os::fd::{AsRawFd, RawFd};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// Asks for a receive timestamp with every read. Failure only means no timestamps.
    pub(super) fn enable(tcp: &std::net::TcpStream) {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor, and a pointer to a `c_int` with its exact size.
        unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// Reads into `buf`; returns the bytes read and the kernel's receive time of the last of
    /// them (wall clock), if it sent one.
    pub(super) fn recv(
        fd: RawFd,
        buf: &mut [MaybeUninit<u8>],
    ) -> io::Result<(usize, Option<libc::timespec>)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one `SCM_TIMESTAMPNS` message (32 bytes on 64-bit Linux) and then some;
        // `u64`s keep it aligned for `cmsghdr`.
        let mut control = [0u64; 8];
        // SAFETY: `msghdr` is plain data for which all zeroes is a valid (empty) value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control) as _;
        // SAFETY: `msg` points at one iovec over `buf` and at `control`, all alive and writable
        // for the call; the socket is non-blocking.
        let n = unsafe { libc::recvmsg(fd, &raw mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut stamp = None;
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by the
        // `msg_controllen` it set; the data of an `SCM_TIMESTAMPNS` message is a `timespec`,
        // read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    stamp = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<libc::timespec>(),
                    ));
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        Ok((n as usize, stamp))
    }

    /// The monotonic instant of a wall-clock receive time: now, less how long ago it was. A
    /// receive time "in the future" (the wall clock stepped back) counts as now. The wall clock
    /// is read first, so that a pause between the two readings makes the result later (a
    /// latency too high, capped by the engine at the read time), never earlier.
    pub(super) fn instant_of(stamp: libc::timespec) -> Option<Instant> {
        let at = Duration::new(
            u64::try_from(stamp.tv_sec).ok()?,
            u32::try_from(stamp.tv_nsec).ok()?,
        );
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let now = Instant::now();
        now.checked_sub(wall.saturating_sub(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_count_until_dropped_and_pieces_are_for_good() {
        let activity = Activity::default();
        activity.stamped.store(true, Ordering::Relaxed);
        assert!(activity.may_look_away());
        let one = activity.transfer();
        let two = activity.transfer();
        drop(one);
        assert!(!activity.may_look_away());
        drop(two);
        assert!(activity.may_look_away());
        activity.arrived_in_pieces();
        assert!(!activity.may_look_away());
    }

    #[test]
    fn last_receive_round_trips_and_clears() {
        let last = LastReceive::default();
        assert_eq!(last.get(), None);
        let at = Instant::now();
        last.note_read(Some(at), false);
        let got = last.get().unwrap();
        assert!(got.max(at) - got.min(at) < Duration::from_micros(1));
        last.note_read(None, true);
        assert_eq!(last.get(), None, "the last read had no time");
        assert_eq!(last.drains(), 1, "only the read that emptied the socket");
        // Before the connection existed: the wall clock stepped, the time is not known.
        last.note_read(last.origin.checked_sub(Duration::from_millis(1)), true);
        assert_eq!((last.get(), last.drains()), (None, 2));
        last.clear();
        assert_eq!((last.get(), last.drains()), (None, 0));
    }

    /// The time a read reports is when the bytes arrived, not when they were read.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn reports_when_the_bytes_arrived_not_when_they_were_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let activity = Arc::new(Activity::default());
        let (mut stream, last) = StampedStream::new(client, activity.clone()).unwrap();
        // The kernel turns timestamping on for everyone a moment after the first socket asks;
        // until then reads carry none. Wait for a stamped read (bounded).
        let mut buf = [0u8; 16];
        for _ in 0..200 {
            server.write_all(b"x").await.unwrap();
            stream.read_exact(&mut buf[..1]).await.unwrap();
            if activity.stamped() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(activity.stamped(), "no receive timestamps on loopback");
        assert!(activity.may_look_away());

        last.clear();
        server.write_all(b"hello").await.unwrap();
        let sent = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        let n = stream.read(&mut buf).await.unwrap();
        let read = Instant::now();
        assert_eq!(&buf[..n], b"hello");
        let arrived = last.get().expect("a stamped read");
        assert!(
            arrived < sent + Duration::from_millis(25),
            "arrival {:?} after the send, read {:?} after",
            arrived.saturating_duration_since(sent),
            read - sent
        );
        assert!(read - arrived >= Duration::from_millis(25));
    }
}
