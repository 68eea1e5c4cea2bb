//! What a guest writes to stdout and stderr.
//!
//! Each instance gets two [`Capture`]s, plugged into its WASI context as
//! stdout and stderr. A write appends to an in-memory buffer, synchronously
//! (so nothing is lost when the guest traps right after printing); after
//! each call the instance drains the complete lines and logs them, stdout at
//! `info` and stderr at `warn`, with target `sluice::guest` and fields
//! `job` and `task`. On a trap, the tail of stderr goes into the error: the
//! Rust SDK prints its panic message there.
//!
//! A buffer holds at most [`MAX_PENDING`] bytes between two drains; a guest
//! that writes more within one call loses the oldest part, and the log says
//! how much.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Most bytes of output kept between two drains.
pub(super) const MAX_PENDING: usize = 1 << 20;

/// One output stream of one instance: a shared buffer the guest appends to
/// and the host drains.
#[derive(Clone, Default)]
pub(super) struct Capture(Arc<Mutex<Pending>>);

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Bytes dropped from the front since the last drain.
    dropped: usize,
}

/// Which stream a [`Capture`] is, for the log level.
#[derive(Clone, Copy)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

impl Capture {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the buffer invalid.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, bytes: &[u8]) {
        let mut pending = self.lock();
        if bytes.len() >= MAX_PENDING {
            let dropped = pending.bytes.len() + bytes.len() - MAX_PENDING;
            pending.dropped += dropped;
            pending.bytes.clear();
            pending
                .bytes
                .extend_from_slice(&bytes[bytes.len() - MAX_PENDING..]);
            return;
        }
        let overflow = (pending.bytes.len() + bytes.len()).saturating_sub(MAX_PENDING);
        if overflow > 0 {
            pending.bytes.drain(..overflow);
            pending.dropped += overflow;
        }
        pending.bytes.extend_from_slice(bytes);
    }

    /// The last `max` bytes not drained yet, as text (for a trap report).
    pub(super) fn tail(&self, max: usize) -> String {
        let pending = self.lock();
        let mut start = pending.bytes.len().saturating_sub(max);
        // Start at a line if one begins in the window, else at a character.
        if start > 0
            && let Some(nl) = pending.bytes[start..].iter().position(|&b| b == b'\n')
            && nl + 1 < pending.bytes.len() - start
        {
            start += nl + 1;
        }
        String::from_utf8_lossy(&pending.bytes[start..]).into_owned()
    }

    /// Logs and removes the complete lines (all of it when `all`, e.g. when
    /// the instance goes away).
    pub(super) fn drain(&self, stream: Stream, all: bool, job: &str, task: &str) {
        let (text, dropped) = {
            let mut pending = self.lock();
            let end = if all {
                pending.bytes.len()
            } else {
                match pending.bytes.iter().rposition(|&b| b == b'\n') {
                    Some(nl) => nl + 1,
                    None => return,
                }
            };
            if end == 0 && pending.dropped == 0 {
                return;
            }
            let text: Vec<u8> = pending.bytes.drain(..end).collect();
            (text, std::mem::take(&mut pending.dropped))
        };
        if dropped > 0 {
            log(
                stream,
                job,
                task,
                &format!("[{dropped} bytes of guest output dropped]"),
            );
        }
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                log(stream, job, task, &String::from_utf8_lossy(line));
            }
        }
    }
}

fn log(stream: Stream, job: &str, task: &str, line: &str) {
    match stream {
        Stream::Stdout => tracing::info!(target: "sluice::guest", job, task, "{line}"),
        Stream::Stderr => tracing::warn!(target: "sluice::guest", job, task, "{line}"),
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    /// Always ready: writes never block.
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_PENDING)
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(c: &Capture) -> Vec<u8> {
        c.lock().bytes.clone()
    }

    #[test]
    fn drain_keeps_the_incomplete_line() {
        let c = Capture::default();
        c.append(b"one\ntwo\nthr");
        c.drain(Stream::Stdout, false, "job", "task");
        assert_eq!(pending(&c), b"thr");
        c.append(b"ee\n");
        c.drain(Stream::Stdout, false, "job", "task");
        assert!(pending(&c).is_empty());
        c.append(b"partial");
        c.drain(Stream::Stdout, true, "job", "task");
        assert!(pending(&c).is_empty());
    }

    #[test]
    fn output_is_bounded() {
        let c = Capture::default();
        c.append(&vec![b'a'; MAX_PENDING - 1]);
        c.append(b"bcd");
        assert_eq!(pending(&c).len(), MAX_PENDING);
        assert_eq!(c.lock().dropped, 2);
        assert!(pending(&c).ends_with(b"abcd"));
        c.append(&vec![b'z'; MAX_PENDING + 5]);
        assert_eq!(pending(&c), vec![b'z'; MAX_PENDING]);
    }

    #[test]
    fn tail_starts_at_a_line() {
        let c = Capture::default();
        c.append(b"first line\nsecond line\npanic in map: boom\n");
        assert_eq!(
            c.tail(4096),
            "first line\nsecond line\npanic in map: boom\n"
        );
        assert_eq!(c.tail(25), "panic in map: boom\n");
    }
}
