//! The line to a stdio upstream: tool calls go out as JSON-RPC text and
//! their answers come back as text, matched by id, with no detour through
//! rmcp's typed model.
//!
//! rmcp keeps everything else on the same pipes: the handshake, probes,
//! listings, relayed requests, the upstream's own requests and
//! notifications. One writer task owns the child's stdin and writes whole
//! lines from either side, several at a time when they queue up; one reader
//! task owns its stdout, answers what it recognises — responses to the
//! line's own ids (from [`ID_BASE`] up) and progress notifications — and
//! hands every other line to rmcp as it came.

use std::collections::HashMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use rmcp::model::ProgressToken;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use super::UpstreamHandler;

/// The first JSON-RPC id of the line's own requests: far above anything
/// rmcp's counter reaches, and still exact as a JavaScript number.
pub const ID_BASE: u64 = 1 << 40;

/// Longest line read from an upstream: a bigger one ends the connection.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Most bytes the writer gathers into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// An upstream's answer to one of the line's requests, as it was written.
#[derive(Debug)]
pub struct Answer {
    line: Bytes,
    /// Where its `result` (or `error`) is in `line`.
    body: Range<usize>,
    ok: bool,
}

impl Answer {
    /// The `result` text, or the `error` text.
    pub fn into_body(self) -> Result<Bytes, Bytes> {
        let body = self.line.slice(self.body);
        if self.ok { Ok(body) } else { Err(body) }
    }
}

/// The line is gone (the upstream closed its stdout).
#[derive(Debug, Clone, Copy)]
pub struct LineClosed;

/// One stdio upstream's line; cheap to clone.
#[derive(Clone)]
pub struct Line(Arc<Shared>);

struct Shared {
    /// Whole lines for the writer task.
    out: mpsc::UnboundedSender<Bytes>,
    /// The line's requests waiting for their answers.
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Line {
    /// An id for the next request.
    pub fn next_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request written with `id` (one line, `\n` included);
    /// its answer arrives on the receiver.
    pub fn request(&self, id: u64, text: Vec<u8>) -> Result<oneshot::Receiver<Answer>, LineClosed> {
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.0.pending.lock().unwrap_or_else(|p| p.into_inner());
            // Checked under the lock the reader's close takes: a request
            // registered after the close would wait for ever.
            if self.is_closed() {
                return Err(LineClosed);
            }
            pending.insert(id, tx);
        }
        if self.0.out.send(Bytes::from(text)).is_err() {
            self.forget(id);
            return Err(LineClosed);
        }
        Ok(rx)
    }

    /// Sends a notification (one line, `\n` included).
    pub fn notify(&self, text: Vec<u8>) {
        let _ = self.0.out.send(Bytes::from(text));
    }

    /// The answer to `id` is no longer wanted.
    pub fn forget(&self, id: u64) {
        self.0
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Whether the upstream's output has ended.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }
}

/// Opens a line over a child's pipes: spawns its writer and reader tasks
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
    let line = Line(Arc::new(Shared {
        out: out.clone(),
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(ID_BASE),
        closed: AtomicBool::new(false),
    }));
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

/// The parts of a JSON-RPC message the reader decides by.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a str>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// `notifications/progress` params.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    progress_token: ProgressToken,
    progress: f64,
    #[serde(default)]
    total: Option<f64>,
    #[serde(default)]
    message: Option<String>,
}

/// What one line from the upstream is.
enum Heard {
    /// The answer to one of the line's requests.
    Answer(u64, Range<usize>, bool),
    /// Progress of a call.
    Progress(Progress),
    /// Anything else: rmcp's business.
    Other,
}

/// Where `part` lies inside `whole` (it is a sub-slice of it).
fn range_in(whole: &[u8], part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

fn classify(line: &[u8]) -> Heard {
    let Ok(peek) = serde_json::from_slice::<Peek>(line) else {
        return Heard::Other;
    };
    match peek.method {
        None => {
            let id = peek.id.and_then(|id| id.get().parse::<u64>().ok());
            let Some(id) = id.filter(|id| *id >= ID_BASE) else {
                return Heard::Other;
            };
            match (peek.result, peek.error) {
                (Some(r), _) => Heard::Answer(id, range_in(line, r.get()), true),
                (None, Some(e)) => Heard::Answer(id, range_in(line, e.get()), false),
                (None, None) => Heard::Other,
            }
        }
        Some("notifications/progress") if peek.id.is_none() => peek
            .params
            .and_then(|p| serde_json::from_str::<Progress>(p.get()).ok())
            .map_or(Heard::Other, Heard::Progress),
        Some(_) => Heard::Other,
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
            Heard::Answer(id, body, ok) => {
                let waiting = line
                    .0
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                // An answer nobody waits for (its call gave up) is dropped.
                if let Some(tx) = waiting {
                    let _ = tx.send(Answer {
                        line: Bytes::from(buf),
                        body,
                        ok,
                    });
                }
            }
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
    let waiting = {
        let mut pending = line.0.pending.lock().unwrap_or_else(|p| p.into_inner());
        line.0.closed.store(true, Ordering::Release);
        std::mem::take(&mut *pending)
    };
    drop(waiting);
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

    #[test]
    fn answers_to_the_lines_ids_are_told_from_everything_else() {
        let ours = format!(r#"{{"jsonrpc":"2.0","id":{ID_BASE},"result":{{"content":[]}}}}"#);
        match classify(ours.as_bytes()) {
            Heard::Answer(id, body, true) => {
                assert_eq!(id, ID_BASE);
                assert_eq!(&ours[body], r#"{"content":[]}"#);
            }
            _ => panic!("not an answer"),
        }
        let error = format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32602,"message":"no"}}}}"#,
            ID_BASE + 7
        );
        assert!(matches!(
            classify(error.as_bytes()),
            Heard::Answer(_, _, false)
        ));
        // rmcp's own ids, requests and notifications go to rmcp.
        for other in [
            r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":"x","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            "Starting server...",
            "[]",
        ] {
            assert!(
                matches!(classify(other.as_bytes()), Heard::Other),
                "{other}"
            );
        }
    }

    #[test]
    fn progress_is_read_with_its_token() {
        let line = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1099511627776,"progress":2,"total":5,"message":"two"}}"#;
        let Heard::Progress(p) = classify(line.as_bytes()) else {
            panic!("not progress");
        };
        assert_eq!(
            p.progress_token,
            ProgressToken(rmcp::model::NumberOrString::Number(ID_BASE as i64))
        );
        assert_eq!((p.progress, p.total), (2.0, Some(5.0)));
        assert_eq!(p.message.as_deref(), Some("two"));
    }

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
