//! One tool call against a live upstream session.
//!
//! Runs as a future on the service actor's context: send `tools/call`,
//! route the upstream's progress to the caller's sink, and race the answer
//! against the deadline and against the caller going away — in both of
//! those cases the upstream is told with `notifications/cancelled`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientRequest, ErrorData,
    InputRequiredResult, InputResponses, JsonObject, NumberOrString, ProgressToken, RequestId,
    RequestMetaObject, ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RequestHandle, RoleClient, ServiceError};

pub use crate::reply::{CallReply, ToolResult};

use crate::error::{CallError, Delivery, ErrorCategory};
use crate::retry::RetryConfig;
use crate::stream::EventSink;
use crate::transport::errors::from_service_error;
use crate::transport::line::Line;
use crate::transport::{Connection, UpstreamHandler};

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

/// What a call needs of a live upstream session: rmcp's peer, our handler
/// of what the upstream sends, and — on a stdio upstream — the line that
/// carries calls without rmcp. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    pub peer: Peer<RoleClient>,
    pub handler: UpstreamHandler,
    /// The upstream speaks a session-less revision (2026-07-28+).
    pub stateless: bool,
    line: Option<Line>,
    /// What rmcp puts in every request's `_meta` for a session-less
    /// upstream (protocol version, client info), as JSON members, and the
    /// client capabilities it announces when a caller brings none.
    request_meta: Arc<(String, String)>,
}

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
            line: conn.line.clone(),
            request_meta: Arc::new(request_meta),
        }
    }
}

/// What the service actor needs to run one call.
pub struct CallJob {
    pub name: String,
    pub arguments: Option<JsonObject>,
    /// What the caller brings besides the arguments.
    pub caller: Caller,
    pub events: EventSink,
    pub ticket: Ticket,
    pub timeout: Duration,
    /// The tool is read-only or idempotent: re-sending is safe.
    pub safe: bool,
    /// Attempts made on this service so far.
    pub attempt: u32,
    /// When every retry of the call must have ended.
    pub deadline: Instant,
    /// Retry strategies.
    pub retry: Arc<RetryConfig>,
    /// Fired when another replica answered this call first (a hedge):
    /// the attempt is cancelled upstream, or never sent.
    pub cancel: tokio_util::sync::CancellationToken,
    /// The call's span: log lines about it carry its request id.
    pub span: tracing::Span,
    /// The call's identity, for poison-call detection.
    pub fingerprint: crate::quarantine::Fingerprint,
    /// It is a suspected poison call: send it with nothing else in flight.
    pub solo: bool,
    /// Ask the upstream for progress (someone shows it, or it tells a
    /// long call that works from one that is stuck).
    pub progress: bool,
}

/// What one attempt produced; the job comes back for a possible retry.
pub struct Attempt {
    pub job: CallJob,
    pub outcome: Result<CallReply, CallError>,
    pub latency: Duration,
}

/// Runs one attempt of a call to completion.
pub async fn run(upstream: Upstream, mut job: CallJob) -> Attempt {
    let started = Instant::now();
    job.attempt += 1;
    // A retry waited in the mailbox: it has only what is left of the call.
    job.timeout = job
        .timeout
        .min(job.deadline.saturating_duration_since(started));
    let outcome = if job.timeout.is_zero() {
        Err(CallError::new(
            ErrorCategory::Timeout,
            "the call's deadline passed before it could be sent",
        ))
    } else {
        attempt(&upstream, &job).await
    };
    if let Err(e) = &outcome
        && e.delivery == Delivery::NeverSent
    {
        job.ticket.mark_unsent();
    }
    Attempt {
        job,
        outcome,
        latency: started.elapsed(),
    }
}

/// Rounds of `input_required` a call may go through before it is given up.
const MAX_INPUT_ROUNDS: usize = 8;

/// The `_meta` key of the client capabilities a 2026-07-28 request carries.
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

async fn attempt(upstream: &Upstream, job: &CallJob) -> Result<CallReply, CallError> {
    let mut answers = Answers {
        input_responses: job.caller.input_responses.clone(),
        request_state: job.caller.request_state.clone(),
    };
    for _ in 0..MAX_INPUT_ROUNDS {
        let reply = match &upstream.line {
            Some(line) => line_round(upstream, line, job, &answers).await?,
            None => peer_round(upstream, job, &answers).await?,
        };
        match reply {
            CallReply::InputRequired(required) if !job.caller.takes_input_required => {
                // A 2026-07-28 upstream needs the caller's input first: ask
                // the caller, then send the call again with the answers.
                let (responses, state) = fulfil(&job.events, required, job.timeout).await?;
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

    fn error(&self, job: &CallJob) -> CallError {
        match self {
            Self::Deadline => CallError::new(
                ErrorCategory::Timeout,
                format!("no answer within {} ms", job.timeout.as_millis()),
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
async fn wait_for<T>(job: &CallJob, answer: impl Future<Output = T>) -> Result<T, GaveUp> {
    tokio::select! {
        answer = tokio::time::timeout(job.timeout, answer) => answer.map_err(|_| GaveUp::Deadline),
        () = job.events.closed() => Err(GaveUp::CallerLeft),
        () = job.cancel.cancelled() => Err(GaveUp::Superseded),
    }
}

fn caller_left_before_sending() -> CallError {
    CallError::new(
        ErrorCategory::Cancelled,
        "the caller went away before the call was sent",
    )
}

/// One `tools/call` round trip on the line: the request written as text,
/// its answer read as text, progress routed to the caller, and the
/// deadline and the caller's departure both cancelling it upstream.
async fn line_round(
    upstream: &Upstream,
    line: &Line,
    job: &CallJob,
    answers: &Answers,
) -> Result<CallReply, CallError> {
    if job.events.is_closed() {
        return Err(caller_left_before_sending());
    }
    let id = line.next_id();
    let text = request_text(upstream, job, answers, id)?;
    let token = ProgressToken(NumberOrString::Number(
        i64::try_from(id).unwrap_or(i64::MAX),
    ));
    let _outstanding = upstream.handler.outstanding();
    let _route = upstream.handler.watch_progress(token, job.events.clone());
    job.ticket.mark_sent();
    let Ok(answer) = line.request(id, text) else {
        return Err(CallError::new(
            ErrorCategory::Network,
            "upstream connection closed",
        ));
    };
    match wait_for(job, answer).await {
        Ok(Ok(answer)) => match answer.into_body() {
            Ok(result) => CallReply::from_upstream(result),
            Err(error) => Err(match serde_json::from_slice::<ErrorData>(&error) {
                Ok(e) => from_service_error(ServiceError::McpError(e), true),
                Err(e) => CallError::new(
                    ErrorCategory::Protocol,
                    format!("unreadable error from the upstream: {e}"),
                )
                .maybe_sent(),
            }),
        },
        Ok(Err(_)) => {
            Err(CallError::new(ErrorCategory::Network, "upstream connection closed").maybe_sent())
        }
        Err(gave_up) => {
            line.forget(id);
            line.notify(cancelled_text(id, gave_up.reason()));
            Err(gave_up.error(job))
        }
    }
}

/// The `tools/call` request as one line of JSON-RPC text.
fn request_text(
    upstream: &Upstream,
    job: &CallJob,
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
    serde_json::to_writer(&mut text, &job.name).map_err(unwritable)?;
    if let Some(arguments) = &job.arguments {
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
    if job.progress {
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
        match &job.caller.capabilities {
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

/// One `tools/call` round trip through rmcp (upstreams without a line).
async fn peer_round(
    upstream: &Upstream,
    job: &CallJob,
    answers: &Answers,
) -> Result<CallReply, CallError> {
    let mut params = CallToolRequestParams::new(job.name.clone());
    params.arguments = job.arguments.clone();
    params.input_responses = answers.input_responses.clone();
    params.request_state = answers.request_state.clone();
    let mut options = PeerRequestOptions::no_options();
    // The caller's capabilities go with each request to a 2026-07-28
    // upstream (a session's were fixed when it began).
    if upstream.stateless
        && let Some(caps) = &job.caller.capabilities
    {
        let mut meta = RequestMetaObject::new();
        meta.0
            .0
            .insert(META_CLIENT_CAPABILITIES.into(), caps.clone());
        options.meta = Some(meta);
    }
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    if job.events.is_closed() {
        return Err(caller_left_before_sending());
    }
    job.ticket.mark_sent();
    let _outstanding = upstream.handler.outstanding();
    let handle = match upstream
        .peer
        .send_request_with_option(request, options)
        .await
    {
        Ok(h) => h,
        Err(e) => return Err(from_service_error(e, false)),
    };
    let RequestHandle {
        rx,
        id,
        progress_token,
        ..
    } = handle;
    let _route = upstream
        .handler
        .watch_progress(progress_token, job.events.clone());
    match wait_for(job, rx).await {
        Ok(Ok(Ok(result))) => into_call_reply(result),
        Ok(Ok(Err(e))) => Err(from_service_error(e, true)),
        Ok(Err(_)) => {
            Err(CallError::new(ErrorCategory::Network, "upstream connection closed").maybe_sent())
        }
        Err(gave_up) => {
            let params = CancelledNotificationParam::new(Some(id), Some(gave_up.reason().into()));
            if let Err(e) = upstream.peer.notify_cancelled(params).await {
                tracing::debug!(error = %e, "could not send notifications/cancelled");
            }
            Err(gave_up.error(job))
        }
    }
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
