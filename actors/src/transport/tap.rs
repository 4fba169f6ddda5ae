//! A tap on a stdio server's stdout: when it last wrote anything, and the
//! last line it wrote that cannot be JSON-RPC.
//!
//! The first answers "is it frozen?" — a child that writes nothing for
//! longer than the probe timeout while requests are outstanding is
//! `suspect` — and the second turns a failed handshake into an error that
//! says what arrived ("the upstream wrote non-JSON on stdout: `…`").

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

/// Longest stray line kept, in bytes.
const STRAY_MAX: usize = 200;

/// What the tap has seen; shared with the service actor.
#[derive(Debug)]
pub struct Seen {
    base: Instant,
    /// Microseconds after `base` of the last byte read.
    last_us: AtomicU64,
    stray: Mutex<Option<String>>,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            last_us: AtomicU64::new(0),
            stray: Mutex::new(None),
        }
    }
}

impl Seen {
    /// How long since the server last wrote a byte (or since the tap began).
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_micros(self.last_us.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }

    /// The last line that did not start like a JSON-RPC message.
    pub fn stray_line(&self) -> Option<String> {
        self.stray.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn touch(&self) {
        let us = self.base.elapsed().as_micros().min(u64::MAX as u128) as u64;
        self.last_us.store(us, Ordering::Relaxed);
    }
}

/// Wraps a reader, recording into [`Seen`].
pub struct Tap<R> {
    inner: R,
    seen: Arc<Seen>,
    at_line_start: bool,
    capture: Option<Vec<u8>>,
}

impl<R> Tap<R> {
    /// A tap on `inner`.
    pub fn new(inner: R, seen: Arc<Seen>) -> Self {
        Self {
            inner,
            seen,
            at_line_start: true,
            capture: None,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if let Some(line) = self.capture.as_mut() {
                let end = bytes.iter().position(|b| *b == b'\n');
                let take = end.unwrap_or(bytes.len());
                let room = STRAY_MAX.saturating_sub(line.len());
                line.extend_from_slice(&bytes[..take.min(room)]);
                if end.is_none() {
                    return;
                }
                let text = String::from_utf8_lossy(line).trim_end().to_owned();
                *self.seen.stray.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
                self.capture = None;
                self.at_line_start = true;
                bytes = &bytes[take + 1..];
            } else if self.at_line_start {
                match bytes[0] {
                    b'\n' | b'\r' | b' ' | b'\t' => {}
                    b'{' | b'[' => self.at_line_start = false,
                    _ => {
                        self.capture = Some(Vec::new());
                        continue;
                    }
                }
                bytes = &bytes[1..];
            } else {
                match bytes.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        self.at_line_start = true;
                        bytes = &bytes[i + 1..];
                    }
                    None => return,
                }
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tap<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.seen.touch();
                this.scan(new);
            }
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn stray_of(chunks: &[&[u8]]) -> Option<String> {
        let seen = Arc::new(Seen::default());
        let mut data = Vec::new();
        for c in chunks {
            data.extend_from_slice(c);
        }
        let mut tap = Tap::new(&data[..], seen.clone());
        let mut out = Vec::new();
        tap.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, data);
        seen.stray_line()
    }

    #[tokio::test]
    async fn json_lines_are_not_stray() {
        assert_eq!(stray_of(&[b"{\"a\":1}\n  {\"b\":2}\n"]).await, None);
    }

    #[tokio::test]
    async fn a_non_json_line_is_kept_and_trimmed() {
        let s = stray_of(&[b"{\"a\":1}\nStarting server on stdio...\r\n{}\n"]).await;
        assert_eq!(s.as_deref(), Some("Starting server on stdio..."));
        let long = vec![b'x'; 1000];
        let s = stray_of(&[&long, b"\n"]).await.unwrap();
        assert_eq!(s.len(), STRAY_MAX);
    }

    #[tokio::test]
    async fn silence_is_measured_from_the_last_byte() {
        let seen = Arc::new(Seen::default());
        let mut tap = Tap::new(&b"{}\n"[..], seen.clone());
        let mut out = Vec::new();
        tap.read_to_end(&mut out).await.unwrap();
        assert!(seen.silent_for() < Duration::from_secs(1));
    }
}
