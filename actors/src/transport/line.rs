//! A tool call on the wire: the request as the upstream reads it, its
//! answer as the upstream wrote it, its progress on the way, and its
//! cancellation when the caller stops waiting.
//!
//! On a stdio upstream a call takes the [`Line`]: one line of JSON-RPC text
//! with an id from [`ID_BASE`] up, answered by the reader task that owns
//! the child's stdout (`stdio.rs`), with no typed model in between. rmcp
//! keeps the rest of the session (handshake, probes, listings, relays, the
//! upstream's own requests) on the same pipes. On a Streamable HTTP
//! upstream a call is a `POST` of the same text ([`HttpLine`]), in the
//! session rmcp opened. rmcp carries calls to legacy HTTP+SSE upstreams.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientRequest, ErrorData,
    InputRequiredResult, InputResponses, JsonObject, NumberOrString, ProgressToken, RequestId,
    RequestMetaObject, ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RequestHandle, RoleClient, ServiceError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::errors::from_service_error;
pub use super::http_line::HttpLine;
use super::{Connection, UpstreamHandler};
use crate::error::{CallError, Delivery, ErrorCategory};
use crate::reply::{CallReply, ToolResult};
use crate::stream::EventSink;

/// The first JSON-RPC id of the line's own requests: far above anything
/// rmcp's counter reaches, and still exact as a JavaScript number.
pub const ID_BASE: u64 = 1 << 40;

/// Longest line read from an upstream: a bigger one ends the connection.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// An upstream's answer to one of the line's requests, as it was written.
#[derive(Debug)]
pub struct Answer {
    pub(super) line: Bytes,
    /// Where its `result` (or `error`) is in `line`.
    pub(super) body: Range<usize>,
    pub(super) ok: bool,
}

impl Answer {
    /// The `result` text, or the `error` text.
    pub fn into_body(self) -> Result<Bytes, Bytes> {
        let body = self.line.slice(self.body);
        if self.ok { Ok(body) } else { Err(body) }
    }

    /// The call's reply, or the upstream's error as a call error.
    fn into_reply(self) -> Result<CallReply, CallError> {
        match self.into_body() {
            Ok(result) => CallReply::from_upstream(result),
            Err(error) => Err(match serde_json::from_slice::<ErrorData>(&error) {
                Ok(e) => from_service_error(ServiceError::McpError(e), true),
                Err(e) => CallError::new(
                    ErrorCategory::Protocol,
                    format!("unreadable error from the upstream: {e}"),
                )
                .maybe_sent(),
            }),
        }
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
    /// A line whose requests go to the writer task behind `out`.
    pub(super) fn new(out: mpsc::UnboundedSender<Bytes>) -> Self {
        Self(Arc::new(Shared {
            out,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(ID_BASE),
            closed: AtomicBool::new(false),
        }))
    }

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

    /// Hands an answer to the request waiting for it (an answer nobody
    /// waits for, its call given up, is dropped).
    pub(super) fn answer(&self, id: u64, answer: Answer) {
        let waiting = self
            .0
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(tx) = waiting {
            let _ = tx.send(answer);
        }
    }

    /// The upstream's output ended: requests still waiting get no answer
    /// (their receivers see the sender dropped), and no new one is taken.
    pub(super) fn close(&self) {
        let waiting = {
            let mut pending = self.0.pending.lock().unwrap_or_else(|p| p.into_inner());
            self.0.closed.store(true, Ordering::Release);
            std::mem::take(&mut *pending)
        };
        drop(waiting);
    }
}

/// A wire that carries a call's JSON-RPC text past rmcp.
trait RawWire {
    /// An id of the wire's own for the next request.
    fn next_id(&self) -> u64;
    /// Sends the request `text` written with `id` and waits for its answer.
    fn exchange(
        &self,
        id: u64,
        text: Vec<u8>,
        out: &Outgoing<'_>,
    ) -> impl Future<Output = Result<Answer, CallError>> + Send;
    /// The caller stopped waiting for `id`: sends `notifications/cancelled`.
    fn cancel(&self, id: u64, text: Vec<u8>);
}

impl RawWire for Line {
    fn next_id(&self) -> u64 {
        Line::next_id(self)
    }

    async fn exchange(
        &self,
        id: u64,
        text: Vec<u8>,
        _out: &Outgoing<'_>,
    ) -> Result<Answer, CallError> {
        let closed = || CallError::new(ErrorCategory::Network, "upstream connection closed");
        let answer = self.request(id, text).map_err(|_| closed())?;
        answer.await.map_err(|_| closed().maybe_sent())
    }

    fn cancel(&self, id: u64, text: Vec<u8>) {
        self.forget(id);
        self.notify(text);
    }
}

impl RawWire for HttpLine {
    fn next_id(&self) -> u64 {
        HttpLine::next_id(self)
    }

    fn exchange(
        &self,
        id: u64,
        text: Vec<u8>,
        out: &Outgoing<'_>,
    ) -> impl Future<Output = Result<Answer, CallError>> + Send {
        HttpLine::exchange(self, id, text, out)
    }

    fn cancel(&self, _id: u64, text: Vec<u8>) {
        HttpLine::cancel(self, text);
    }
}

/// Whether a call has been handed to the upstream. Shared with the router,
/// which reads it when a service dies before answering: a call that was
/// never sent can go anywhere again; one that was may have run.
#[derive(Debug, Clone, Default)]
pub struct Ticket(Arc<AtomicBool>);

impl Ticket {
    /// A ticket for a call not yet sent.
    pub fn new() -> Self {
        Self::default()
    }
    pub(crate) fn mark_sent(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// The upstream provably did not take the call (e.g. it answered 429).
    pub(crate) fn mark_unsent(&self) {
        self.0.store(false, Ordering::Release);
    }
    /// Delivery as far as we know it.
    pub fn delivery(&self) -> Delivery {
        if self.0.load(Ordering::Acquire) {
            Delivery::MaybeSent
        } else {
            Delivery::NeverSent
        }
    }
}

/// What the calling client brings to a call besides its arguments.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// Its declared capabilities: a 2026-07-28 upstream is told them with
    /// the call, so it asks only for what the caller can give.
    pub capabilities: Option<serde_json::Value>,
    /// Its answers to an earlier `input_required` round.
    pub input_responses: Option<InputResponses>,
    /// The upstream's state from that round, echoed back.
    pub request_state: Option<String>,
    /// An upstream's `input_required` result goes back to the caller as it
    /// is (a 2026-07-28 client answers it with a retry) instead of being
    /// answered here by asking the caller.
    pub takes_input_required: bool,
}

/// One call as the wire carries it.
pub struct Outgoing<'a> {
    /// The tool's name upstream.
    pub name: &'a str,
    pub arguments: Option<&'a JsonObject>,
    pub caller: &'a Caller,
    /// Where its progress goes; closed when the caller left.
    pub events: &'a EventSink,
    /// Marked when the request is handed to the upstream.
    pub ticket: &'a Ticket,
    /// How long its answer may take.
    pub timeout: Duration,
    /// Fired when another replica answered it first.
    pub cancel: &'a CancellationToken,
    /// Ask the upstream for progress.
    pub progress: bool,
    /// The tool's input schema (some revisions copy marked arguments into
    /// HTTP headers).
    pub schema: &'a JsonObject,
}

/// How calls reach an upstream.
#[derive(Clone, Debug, Default)]
pub enum Wire {
    /// Through rmcp's session (the legacy HTTP+SSE transport).
    #[default]
    Peer,
    /// A stdio child's pipes.
    Stdio(Line),
    /// `POST`s to a Streamable HTTP endpoint.
    Http(HttpLine),
}

/// What a call needs of a live upstream session: rmcp's peer, our handler
/// of what the upstream sends, and the wire that carries calls without
/// rmcp. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    pub peer: Peer<RoleClient>,
    pub handler: UpstreamHandler,
    /// The upstream speaks a session-less revision (2026-07-28+).
    pub stateless: bool,
    wire: Wire,
    /// What rmcp puts in every request's `_meta` for a session-less
    /// upstream (protocol version, client info), as JSON members, and the
    /// client capabilities it announces when a caller brings none.
    request_meta: Arc<(String, String)>,
}

/// Rounds of `input_required` a call may go through before it is given up.
const MAX_INPUT_ROUNDS: usize = 8;

/// The `_meta` key of the client capabilities a 2026-07-28 request carries.
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

impl Upstream {
    /// The call-path face of a fresh connection.
    pub fn new(conn: &Connection, handler: UpstreamHandler) -> Self {
        let stateless = conn.stateless();
        let request_meta = if stateless {
            let info = rmcp::ClientHandler::get_info(&handler);
            let mut meta = RequestMetaObject::new();
            meta.set_protocol_version(conn.protocol().clone());
            meta.set_client_info(info.client_info.clone());
            let members = serde_json::to_string(&meta).unwrap_or_default();
            let members = members
                .strip_prefix('{')
                .and_then(|m| m.strip_suffix('}'))
                .unwrap_or_default()
                .to_owned();
            let caps = serde_json::to_string(&info.capabilities).unwrap_or_else(|_| "{}".into());
            (members, caps)
        } else {
            Default::default()
        };
        Self {
            peer: conn.peer.clone(),
            handler,
            stateless,
            wire: conn.wire.clone(),
            request_meta: Arc::new(request_meta),
        }
    }

    /// Whether the upstream's line has closed (its output ended).
    pub fn is_closed(&self) -> bool {
        matches!(&self.wire, Wire::Stdio(line) if line.is_closed())
    }

    /// Sends one call and waits for its answer, through any rounds of
    /// `input_required` the upstream asks for (answered by the caller
    /// here, or handed back to a caller that answers them itself).
    pub async fn call(&self, out: &Outgoing<'_>) -> Result<CallReply, CallError> {
        let mut answers = Answers {
            input_responses: out.caller.input_responses.clone(),
            request_state: out.caller.request_state.clone(),
        };
        for _ in 0..MAX_INPUT_ROUNDS {
            let reply = match &self.wire {
                Wire::Stdio(line) => self.raw_round(line, out, &answers).await?,
                Wire::Http(http) if http.carries(out.schema) => {
                    self.raw_round(http, out, &answers).await?
                }
                _ => self.peer_round(out, &answers).await?,
            };
            match reply {
                CallReply::InputRequired(required) if !out.caller.takes_input_required => {
                    // A 2026-07-28 upstream needs the caller's input first:
                    // ask the caller, then send the call again.
                    let (responses, state) = fulfil(out.events, required, out.timeout).await?;
                    answers = Answers {
                        input_responses: responses,
                        request_state: state,
                    };
                }
                reply => return Ok(reply),
            }
        }
        // The caller's answers never satisfied it: not the service's fault.
        Err(CallError::new(
            ErrorCategory::Validation,
            format!("no result after {MAX_INPUT_ROUNDS} rounds of input_required"),
        )
        .maybe_sent())
    }

    /// One `tools/call` round trip past rmcp: the request written as text
    /// with an id of the wire's own, its answer read as text, progress
    /// routed to the caller, and the deadline and the caller's departure
    /// both cancelling it upstream.
    async fn raw_round<W: RawWire>(
        &self,
        wire: &W,
        out: &Outgoing<'_>,
        answers: &Answers,
    ) -> Result<CallReply, CallError> {
        if out.events.is_closed() {
            return Err(caller_left_before_sending());
        }
        let id = wire.next_id();
        let text = request_text(self, out, answers, id)?;
        let token = ProgressToken(NumberOrString::Number(
            i64::try_from(id).unwrap_or(i64::MAX),
        ));
        let _outstanding = self.handler.outstanding();
        let _route = self.handler.watch_progress(token, out.events.clone());
        out.ticket.mark_sent();
        match wait_for(out, wire.exchange(id, text, out)).await {
            Ok(Ok(answer)) => answer.into_reply(),
            Ok(Err(e)) => Err(e),
            Err(gave_up) => {
                wire.cancel(id, cancelled_text(id, gave_up.reason()));
                Err(gave_up.error(out.timeout))
            }
        }
    }

    /// One `tools/call` round trip through rmcp (upstreams without a line).
    async fn peer_round(
        &self,
        out: &Outgoing<'_>,
        answers: &Answers,
    ) -> Result<CallReply, CallError> {
        let mut params = CallToolRequestParams::new(out.name.to_owned());
        params.arguments = out.arguments.cloned();
        params.input_responses = answers.input_responses.clone();
        params.request_state = answers.request_state.clone();
        let mut options = PeerRequestOptions::no_options();
        // The caller's capabilities go with each request to a 2026-07-28
        // upstream (a session's were fixed when it began).
        if self.stateless
            && let Some(caps) = &out.caller.capabilities
        {
            let mut meta = RequestMetaObject::new();
            meta.0
                .0
                .insert(META_CLIENT_CAPABILITIES.into(), caps.clone());
            options.meta = Some(meta);
        }
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        if out.events.is_closed() {
            return Err(caller_left_before_sending());
        }
        out.ticket.mark_sent();
        let _outstanding = self.handler.outstanding();
        let handle = match self.peer.send_request_with_option(request, options).await {
            Ok(h) => h,
            Err(e) => return Err(from_service_error(e, false)),
        };
        let RequestHandle {
            rx,
            id,
            progress_token,
            ..
        } = handle;
        let _route = self
            .handler
            .watch_progress(progress_token, out.events.clone());
        match wait_for(out, rx).await {
            Ok(Ok(Ok(result))) => into_call_reply(result),
            Ok(Ok(Err(e))) => Err(from_service_error(e, true)),
            Ok(Err(_)) => Err(
                CallError::new(ErrorCategory::Network, "upstream connection closed").maybe_sent(),
            ),
            Err(gave_up) => {
                let params =
                    CancelledNotificationParam::new(Some(id), Some(gave_up.reason().into()));
                if let Err(e) = self.peer.notify_cancelled(params).await {
                    tracing::debug!(error = %e, "could not send notifications/cancelled");
                }
                Err(gave_up.error(out.timeout))
            }
        }
    }
}

/// Answers an `input_required` result's requests by asking the calling
/// client; the answers and the upstream's state go into the next round.
async fn fulfil(
    caller: &EventSink,
    required: InputRequiredResult,
    patience: Duration,
) -> Result<(Option<InputResponses>, Option<String>), CallError> {
    let mut responses = InputResponses::new();
    for (key, request) in required.input_requests.unwrap_or_default() {
        let request = serde_json::to_value(&request).unwrap_or_default();
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        let params = request
            .get("params")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        let answer = match tokio::time::timeout(patience, caller.ask(&method, params)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                return Err(CallError::new(
                    ErrorCategory::Validation,
                    format!("the upstream needs {method} from the caller: {}", e.message),
                )
                .maybe_sent());
            }
            Err(_) => {
                return Err(CallError::new(
                    ErrorCategory::Cancelled,
                    format!(
                        "the caller did not answer {method} within {} ms",
                        patience.as_millis()
                    ),
                )
                .maybe_sent());
            }
        };
        responses.insert(key, answer);
    }
    Ok((
        (!responses.is_empty()).then_some(responses),
        required.request_state,
    ))
}

/// The caller's answers to an earlier `input_required` round, sent with
/// the next one.
struct Answers {
    input_responses: Option<InputResponses>,
    request_state: Option<String>,
}

/// How a round ended without an answer.
enum GaveUp {
    Deadline,
    CallerLeft,
    Superseded,
}

impl GaveUp {
    fn reason(&self) -> &'static str {
        match self {
            Self::Deadline => "deadline exceeded",
            Self::CallerLeft => "client went away",
            Self::Superseded => "another replica answered first",
        }
    }

    fn error(&self, timeout: Duration) -> CallError {
        match self {
            Self::Deadline => CallError::new(
                ErrorCategory::Timeout,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
            Self::CallerLeft => CallError::new(ErrorCategory::Cancelled, "the caller went away"),
            Self::Superseded => {
                CallError::new(ErrorCategory::Cancelled, "another replica answered first")
            }
        }
        .maybe_sent()
    }
}

/// Waits for `answer` until the call's deadline, its caller's departure or
/// its cancellation, whichever comes first.
async fn wait_for<T>(out: &Outgoing<'_>, answer: impl Future<Output = T>) -> Result<T, GaveUp> {
    tokio::select! {
        answer = tokio::time::timeout(out.timeout, answer) => answer.map_err(|_| GaveUp::Deadline),
        () = out.events.closed() => Err(GaveUp::CallerLeft),
        () = out.cancel.cancelled() => Err(GaveUp::Superseded),
    }
}

fn caller_left_before_sending() -> CallError {
    CallError::new(
        ErrorCategory::Cancelled,
        "the caller went away before the call was sent",
    )
}

/// The `tools/call` request as one line of JSON-RPC text.
fn request_text(
    upstream: &Upstream,
    out: &Outgoing<'_>,
    answers: &Answers,
    id: u64,
) -> Result<Vec<u8>, CallError> {
    use std::io::Write as _;
    let unwritable = |e: serde_json::Error| {
        CallError::new(ErrorCategory::Internal, format!("unwritable request: {e}"))
    };
    let mut text = Vec::with_capacity(256);
    let _ = write!(
        text,
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"#
    );
    serde_json::to_writer(&mut text, out.name).map_err(unwritable)?;
    if let Some(arguments) = out.arguments {
        text.extend_from_slice(br#","arguments":"#);
        serde_json::to_writer(&mut text, arguments).map_err(unwritable)?;
    }
    if let Some(responses) = &answers.input_responses {
        text.extend_from_slice(br#","inputResponses":"#);
        serde_json::to_writer(&mut text, responses).map_err(unwritable)?;
    }
    if let Some(state) = &answers.request_state {
        text.extend_from_slice(br#","requestState":"#);
        serde_json::to_writer(&mut text, state).map_err(unwritable)?;
    }
    let mut meta = Vec::new();
    if out.progress {
        let _ = write!(meta, r#","progressToken":{id}"#);
    }
    if upstream.stateless {
        // As rmcp sends it: its metadata, then the caller's capabilities
        // in place of its own (a session's were fixed when it began).
        let (members, own_caps) = &*upstream.request_meta;
        if !members.is_empty() {
            meta.push(b',');
            meta.extend_from_slice(members.as_bytes());
        }
        let _ = write!(meta, r#","{META_CLIENT_CAPABILITIES}":"#);
        match &out.caller.capabilities {
            Some(caps) => serde_json::to_writer(&mut meta, caps).map_err(unwritable)?,
            None => meta.extend_from_slice(own_caps.as_bytes()),
        }
    }
    if let Some(members) = meta.strip_prefix(b",") {
        text.extend_from_slice(br#","_meta":{"#);
        text.extend_from_slice(members);
        text.push(b'}');
    }
    text.extend_from_slice(b"}}\n");
    Ok(text)
}

/// `notifications/cancelled` for one of the line's requests.
fn cancelled_text(id: u64, reason: &str) -> Vec<u8> {
    let params = CancelledNotificationParam::new(
        Some(RequestId::Number(i64::try_from(id).unwrap_or(i64::MAX))),
        Some(reason.to_owned()),
    );
    let note = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": params,
    });
    let mut text = serde_json::to_vec(&note).unwrap_or_default();
    text.push(b'\n');
    text
}

/// Accepts the result shapes a `tools/call` may legitimately produce.
fn into_call_reply(result: ServerResult) -> Result<CallReply, CallError> {
    match result {
        ServerResult::CallToolResult(r) => Ok(CallReply::Complete(ToolResult::from_typed(&r))),
        ServerResult::InputRequiredResult(r) => Ok(CallReply::InputRequired(r)),
        // A bare `{}` parses as an empty result: a tool with no output.
        ServerResult::EmptyResult(_) => Ok(CallReply::Complete(ToolResult::from_typed(
            &rmcp::model::CallToolResult::success(Vec::new()),
        ))),
        other => Err(CallError::new(
            ErrorCategory::Protocol,
            format!("unexpected reply to tools/call: {}", variant_name(&other)),
        )
        .maybe_sent()),
    }
}

fn variant_name(r: &ServerResult) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
        })
        .unwrap_or_else(|| "unknown".into())
}
