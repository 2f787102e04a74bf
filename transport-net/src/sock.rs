//! One connected stream socket, TCP or Unix, used from `&self` by the reader and writer.

use bytes::BufMut;
use std::io::{self, IoSlice};
use std::time::Duration;
use tokio::net::{TcpStream, UnixStream};

/// A connected stream socket of either family.
#[derive(Debug)]
pub(crate) enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.readable().await,
            Sock::Unix(s) => s.readable().await,
        }
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.writable().await,
            Sock::Unix(s) => s.writable().await,
        }
    }

    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.try_read(buf),
            Sock::Unix(s) => s.try_read(buf),
        }
    }

    /// Reads into the free room of `buf` (any [`BufMut`]: a chunk buffer, or a payload's own
    /// buffer limited to what the payload still needs).
    ///
    /// A read that fills less than the room drained the socket's receive queue, so the cached
    /// readiness is cleared with it, as tokio's own `poll_read` does: the next wait parks at
    /// once instead of costing a read that fails with `WouldBlock`. Clearing is safe: the
    /// socket is registered edge-triggered, bytes arriving later raise a new event, and tokio
    /// clears only the readiness observed before this read (a newer event survives).
    pub(crate) fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        let room = buf.chunk_mut().len();
        let mut got = 0;
        let mut read = || {
            got = match self {
                Sock::Tcp(s) => s.try_read_buf(buf)?,
                Sock::Unix(s) => s.try_read_buf(buf)?,
            };
            if 0 < got && got < room {
                // Not an error: tells `try_io` to clear the readiness (see above).
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(got)
        };
        let r = match self {
            Sock::Tcp(s) => s.try_io(tokio::io::Interest::READABLE, &mut read),
            Sock::Unix(s) => s.try_io(tokio::io::Interest::READABLE, &mut read),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            r => r,
        }
    }

    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.try_write_vectored(bufs),
            Sock::Unix(s) => s.try_write_vectored(bufs),
        }
    }

    /// Reads some bytes into `buf`, waiting for readiness; `Ok(0)` is end of stream.
    pub(crate) async fn read_some<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        loop {
            self.readable().await?;
            match self.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(n)` with `n < buf.len()` when the stream ended.
    pub(crate) async fn read_exact(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            self.readable().await?;
            match self.try_read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    /// Writes all of `buf`, waiting for readiness.
    pub(crate) async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            self.writable().await?;
            match self.try_write_vectored(&[IoSlice::new(&buf[done..])]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Shuts down one or both directions; errors (already shut, already reset) are ignored:
    /// this only hastens what closing the socket does anyway.
    pub(crate) fn shutdown(&self, how: rustix::net::Shutdown) {
        let _ = match self {
            Sock::Tcp(s) => rustix::net::shutdown(s, how),
            Sock::Unix(s) => rustix::net::shutdown(s, how),
        };
    }

    /// Reads and drops whatever input is pending, without waiting.
    pub(crate) fn discard_input(&self) {
        use rustix::net::{RecvFlags, recv};
        let mut sink = [0u8; 4096];
        while let Ok((n, _)) = recv(self.fd(), &mut sink, RecvFlags::DONTWAIT) {
            if n == 0 {
                break;
            }
        }
    }

    /// Waits in this thread until the socket has room for output, at most until `deadline`;
    /// false when the deadline passed first.
    pub(crate) fn wait_writable(&self, deadline: std::time::Instant) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(t) = Timespec::try_from(left) else {
                return false;
            };
            if left.is_zero() {
                return false;
            }
            let fd = self.fd();
            let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
            match poll(&mut fds, Some(&t)) {
                // Ready, or an error or hang-up the next write reports.
                Ok(n) if n > 0 => return true,
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return true,
            }
        }
    }

    /// Reads and drops input until end of stream, waiting at most `limit` in this thread.
    pub(crate) fn drain_until_eof(&self, limit: Duration) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        use rustix::net::{RecvFlags, recv};
        let deadline = std::time::Instant::now() + limit;
        let mut sink = [0u8; 4096];
        loop {
            match recv(self.fd(), &mut sink, RecvFlags::DONTWAIT) {
                Ok((0, _)) => return,
                Ok(_) => continue,
                Err(rustix::io::Errno::AGAIN) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(t) = Timespec::try_from(left) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            let fd = self.fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            if poll(&mut fds, Some(&t)).is_err() {
                return;
            }
        }
    }

    /// The socket's descriptor.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            Sock::Tcp(s) => s.as_fd(),
            Sock::Unix(s) => s.as_fd(),
        }
    }

    /// `TCP_NODELAY`, `SO_KEEPALIVE` with probes scaled to `keepalive`, and
    /// `TCP_USER_TIMEOUT = keepalive`; nothing for Unix sockets.
    pub(crate) fn tune(&self, keepalive: Duration) -> io::Result<()> {
        use rustix::net::sockopt;
        let Sock::Tcp(s) = self else {
            return Ok(());
        };
        s.set_nodelay(true)?;
        sockopt::set_socket_keepalive(s, true)?;
        let secs = |d: Duration| d.max(Duration::from_secs(1));
        sockopt::set_tcp_keepidle(s, secs(keepalive))?;
        sockopt::set_tcp_keepintvl(s, secs(keepalive / 3))?;
        sockopt::set_tcp_keepcnt(s, 3)?;
        let ms = u32::try_from(keepalive.as_millis()).unwrap_or(u32::MAX);
        sockopt::set_tcp_user_timeout(s, ms)?;
        Ok(())
    }

    /// (local, peer) addresses for logs.
    pub(crate) fn addresses(&self) -> (String, String) {
        fn show<A: std::fmt::Debug>(r: io::Result<A>) -> String {
            r.map_or_else(|e| format!("?({e})"), |a| format!("{a:?}"))
        }
        match self {
            Sock::Tcp(s) => (
                s.local_addr()
                    .map_or_else(|e| format!("?({e})"), |a| a.to_string()),
                s.peer_addr()
                    .map_or_else(|e| format!("?({e})"), |a| a.to_string()),
            ),
            Sock::Unix(s) => (show(s.local_addr()), show(s.peer_addr())),
        }
    }
}
