//! Upstreams that are child processes speaking MCP on stdin/stdout.
//!
//! We launch the child ourselves (rather than through rmcp's wrapper): it
//! runs in a process group of its own ([`crate::process`]), its exit status
//! is what a crash report says, its stdout passes through a [`Tap`] that
//! tells when it last wrote anything, and its stderr lines are logged with
//! the service's name.
//!
//! Its pipes carry two conversations. Tool calls take the [`Line`]: one
//! writer task owns stdin and writes whole lines, several at a time when
//! they queue up; one reader task owns stdout, answers what it recognises
//! (responses to the line's ids, progress notifications) with a borrowed
//! peek at each message, and hands every other line to rmcp as it came.
//! rmcp's session runs on what the line leaves.

use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use super::frame::{Heard, classify};
use super::line::{Answer, Line, MAX_LINE_BYTES};

use super::tap::{Seen, Tap};
use super::{Closed, Connection, Refusal, UpstreamHandler, launch_spec, refusal, server_info};
use crate::error::{CallError, ErrorCategory};
use crate::process::{ProcessSlot, UpstreamProcess};
use crate::spec::ServiceSpec;

/// How long a closed session waits for its process's exit status.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Launches the server and negotiates a session with it.
pub async fn connect(
    spec: &ServiceSpec,
    slot: &Arc<ProcessSlot>,
    handler: UpstreamHandler,
    lifecycle: ClientLifecycleMode,
) -> Result<Connection, Refusal> {
    let launch = launch_spec(spec, &|s| s.to_owned())?;
    let mut process = UpstreamProcess::spawn(&launch, slot, |cmd| {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    })
    .await
    .map_err(|e| CallError::new(ErrorCategory::Network, e.to_string()))?;
    let pid = process.pid();
    let child = process.child_mut();
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(CallError::new(ErrorCategory::Internal, "child pipes unavailable").into());
    };
    if let Some(stderr) = child.stderr.take() {
        log_stderr(spec.name.clone(), stderr);
    }
    let seen = Arc::new(Seen::default());
    let stdout = Tap::new(stdout, seen.clone());
    // Tool calls take the line; rmcp's session runs on what it leaves.
    let (line, pipes) = open(stdout, stdin, handler.clone());
    let running = tokio::select! {
        r = handler.serve_with_lifecycle(pipes, lifecycle) => r.map_err(|e| {
            match (refusal(e), seen.stray_line()) {
                // What arrived explains a failed handshake better than the
                // parser's complaint about it.
                (Refusal::Failed(e), Some(line)) => Refusal::Failed(CallError::new(
                    ErrorCategory::Protocol,
                    format!("handshake failed: the upstream wrote non-JSON on stdout: `{line}` ({})", e.message),
                )),
                (other, _) => other,
            }
        })?,
        status = process.wait() => {
            let mut message = format!(
                "`{}` exited during the handshake ({})",
                spec.command.as_deref().unwrap_or("?"),
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            );
            if let Some(line) = seen.stray_line() {
                message.push_str(&format!("; it wrote non-JSON on stdout: `{line}`"));
            }
            return Err(CallError::new(ErrorCategory::Network, message).into());
        }
    };
    let (peer, info) = server_info(&running).await?;
    let closed = Box::pin(async move {
        tokio::select! {
            status = process.wait() => Closed::exited(status),
            reason = running.waiting() => {
                // The session usually ends because the process died; say so
                // when it did (a dying process closes its pipes first).
                match tokio::time::timeout(EXIT_GRACE, process.wait()).await {
                    Ok(status) => Closed::exited(status),
                    Err(_) => Closed::other(format!("stdio session ended ({reason:?}); the process kept running")),
                }
            }
        }
    });
    Ok(Connection {
        peer,
        info,
        pid: Some(pid),
        endpoint: None,
        liveness: Some(seen),
        wire: super::line::Wire::Stdio(line),
        closed,
    })
}

/// Logs the child's stderr, line by line, under the service's name.
pub(super) fn log_stderr(service: String, stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "mcpvisor::upstream", %service, "{line}");
        }
    });
}

/// Most bytes the writer gathers into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Opens the line over a child's pipes: spawns its writer and reader tasks
/// on the current runtime, and returns the line with the pipe ends rmcp
/// serves its session on.
pub fn open<R, W>(
    stdout: R,
    stdin: W,
    handler: UpstreamHandler,
) -> (Line, (FromUpstream, ToUpstream))
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, out_rx) = mpsc::unbounded_channel();
    let (to_rmcp, rmcp_rx) = mpsc::unbounded_channel();
    let line = Line::new(out.clone());
    tokio::spawn(write_loop(stdin, out_rx));
    tokio::spawn(read_loop(stdout, line.clone(), handler, to_rmcp));
    (
        line,
        (
            FromUpstream {
                rx: rmcp_rx,
                chunk: Bytes::new(),
            },
            ToUpstream {
                out,
                partial: Vec::new(),
            },
        ),
    )
}

/// Writes queued lines to the child's stdin, gathering what has queued up
/// into one write. Ends when every sender is gone or the pipe breaks (the
/// reader then sees the child's end).
async fn write_loop<W: AsyncWrite + Unpin>(mut stdin: W, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        let written = match rx.try_recv() {
            Err(_) => stdin.write_all(&first).await,
            Ok(second) => {
                batch.clear();
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second);
                while batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                stdin.write_all(&batch).await
            }
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "upstream stdin closed");
            return;
        }
    }
}

/// Reads the child's stdout line by line. When it ends, the line closes:
/// requests still waiting get no answer (their receivers see the sender
/// dropped), and rmcp sees its input end.
async fn read_loop<R: AsyncRead + Unpin>(
    stdout: R,
    line: Line,
    handler: UpstreamHandler,
    to_rmcp: mpsc::UnboundedSender<Bytes>,
) {
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, stdout);
    loop {
        let mut buf = Vec::new();
        match read_line(&mut reader, &mut buf).await {
            Ok(Read::End) => break,
            Ok(Read::TooLong) => {
                tracing::warn!(
                    limit = MAX_LINE_BYTES,
                    "upstream wrote a line over the limit; closing"
                );
                break;
            }
            Ok(Read::Line) => {}
            Err(e) => {
                tracing::debug!(error = %e, "upstream stdout failed");
                break;
            }
        }
        match classify(&buf) {
            Heard::Answer(id, body, ok) => line.answer(
                id,
                Answer {
                    line: Bytes::from(buf),
                    body,
                    ok,
                },
            ),
            Heard::Progress(p) => {
                handler.progress(p.progress_token, p.progress, p.total, p.message)
            }
            Heard::Other => {
                if to_rmcp.send(Bytes::from(buf)).is_err() {
                    // rmcp's session is gone: the connection is closing.
                    break;
                }
            }
        }
    }
    line.close();
}

/// What reading a line came to.
enum Read {
    Line,
    TooLong,
    End,
}

/// Reads up to and including the next `\n` (or the end of the input)
/// into `buf`, giving up past [`MAX_LINE_BYTES`].
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Read> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                Read::End
            } else {
                Read::Line
            });
        }
        if let Some(end) = available.iter().position(|b| *b == b'\n') {
            buf.extend_from_slice(&available[..=end]);
            reader.consume(end + 1);
            return Ok(Read::Line);
        }
        let n = available.len();
        buf.extend_from_slice(available);
        reader.consume(n);
        if buf.len() > MAX_LINE_BYTES {
            return Ok(Read::TooLong);
        }
    }
}

/// The lines rmcp reads: everything from the upstream the line did not
/// answer itself.
pub struct FromUpstream {
    rx: mpsc::UnboundedReceiver<Bytes>,
    chunk: Bytes,
}

impl AsyncRead for FromUpstream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.chunk.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(next)) => self.chunk = next,
                // End of input.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.chunk.len().min(buf.remaining());
        let part = self.chunk.split_to(n);
        buf.put_slice(&part);
        Poll::Ready(Ok(()))
    }
}

/// What rmcp writes: passed to the writer task a whole line at a time, so
/// it never interleaves with the line's own requests.
pub struct ToUpstream {
    out: mpsc::UnboundedSender<Bytes>,
    partial: Vec<u8>,
}

impl AsyncWrite for ToUpstream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.partial.extend_from_slice(buf);
        if let Some(end) = this.partial.iter().rposition(|b| *b == b'\n') {
            let rest = this.partial.split_off(end + 1);
            let whole = std::mem::replace(&mut this.partial, rest);
            if this.out.send(Bytes::from(whole)).is_err() {
                return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rmcp_lines_pass_whole_and_requests_get_their_answers() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (child_out, mut upstream_writes) = tokio::io::split(theirs);
        let (upstream_reads, child_in) = tokio::io::duplex(1 << 16);
        let (events, _rx) = mpsc::unbounded_channel();
        let (line, (mut from, mut to)) = open(
            tokio::io::split(ours).0,
            child_in,
            UpstreamHandler::new(events),
        );
        drop(child_out);
        // rmcp writes a request in two pieces; it reaches the child whole.
        to.write_all(br#"{"jsonrpc":"2.0","id":0,"#).await.unwrap();
        let id = line.next_id();
        let answer = line
            .request(
                id,
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\"}}\n")
                    .into_bytes(),
            )
            .unwrap();
        to.write_all(b"\"method\":\"ping\"}\n").await.unwrap();
        let mut seen = tokio::io::BufReader::new(upstream_reads);
        let mut first = String::new();
        let mut second = String::new();
        seen.read_line(&mut first).await.unwrap();
        seen.read_line(&mut second).await.unwrap();
        assert!(first.contains("tools/call"), "{first}");
        assert_eq!(
            second,
            "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\"}\n"
        );
        // The child answers both: ours to the line, rmcp's to rmcp.
        upstream_writes
            .write_all(
                format!("{{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{{}}}}\n{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"isError\":false}}}}\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let body = answer.await.unwrap().into_body().unwrap();
        assert_eq!(&body[..], br#"{"isError":false}"#);
        let mut rmcp_side = tokio::io::BufReader::new(&mut from);
        let mut reply = String::new();
        rmcp_side.read_line(&mut reply).await.unwrap();
        assert_eq!(reply, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{}}\n");
        // The child's end closes the line; a waiting request learns it.
        let id = line.next_id();
        let waiting = line.request(id, b"{}\n".to_vec()).unwrap();
        drop(upstream_writes);
        assert!(waiting.await.is_err());
        assert!(line.is_closed());
        assert!(line.request(line.next_id(), b"{}\n".to_vec()).is_err());
    }
}
