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
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, InputRequiredResult, InputResponses, JsonObject, RequestId, RequestMetaObject,
    ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RequestHandle, RoleClient};

use crate::error::{CallError, Delivery, ErrorCategory};
use crate::retry::RetryConfig;
use crate::stream::EventSink;
use crate::transport::UpstreamHandler;
use crate::transport::errors::from_service_error;

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

/// A tool call's answer: its result, or the caller's input the upstream
/// needs first (2026-07-28, SEP-2322).
#[derive(Debug, Clone)]
pub enum CallReply {
    Complete(CallToolResult),
    InputRequired(InputRequiredResult),
}

impl CallReply {
    /// Whether the tool reported an error (`isError`).
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Complete(r) if r.is_error == Some(true))
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
}

/// What one attempt produced; the job comes back for a possible retry.
pub struct Attempt {
    pub job: CallJob,
    pub outcome: Result<CallReply, CallError>,
    pub latency: Duration,
}

/// Runs one attempt of a call to completion.
pub async fn run(
    peer: Peer<RoleClient>,
    handler: UpstreamHandler,
    stateless: bool,
    mut job: CallJob,
) -> Attempt {
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
        attempt(&peer, &handler, stateless, &job).await
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

async fn attempt(
    peer: &Peer<RoleClient>,
    handler: &UpstreamHandler,
    stateless: bool,
    job: &CallJob,
) -> Result<CallReply, CallError> {
    let mut params = CallToolRequestParams::new(job.name.clone());
    params.arguments = job.arguments.clone();
    params.input_responses = job.caller.input_responses.clone();
    params.request_state = job.caller.request_state.clone();
    // The caller's capabilities go with each request to a 2026-07-28
    // upstream (a session's were fixed when it began).
    let caller_meta = job
        .caller
        .capabilities
        .as_ref()
        .filter(|_| stateless)
        .map(|caps| {
            let mut meta = RequestMetaObject::new();
            meta.0.0.insert(
                "io.modelcontextprotocol/clientCapabilities".into(),
                caps.clone(),
            );
            meta
        });
    let options = || {
        let mut o = PeerRequestOptions::no_options();
        o.meta = caller_meta.clone();
        o
    };
    for _ in 0..MAX_INPUT_ROUNDS {
        match round(peer, handler, job, params.clone(), options()).await? {
            ServerResult::InputRequiredResult(required) if job.caller.takes_input_required => {
                return Ok(CallReply::InputRequired(required));
            }
            // A 2026-07-28 upstream needs the caller's input first: ask
            // the caller, then send the call again with the answers.
            ServerResult::InputRequiredResult(required) => {
                let (responses, state) = fulfil(&job.events, required, job.timeout).await?;
                params.input_responses = responses;
                params.request_state = state;
            }
            other => return into_call_result(other).map(CallReply::Complete),
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

/// One `tools/call` round trip, with progress routed to the caller and the
/// deadline and the caller's departure both cancelling it upstream.
async fn round(
    peer: &Peer<RoleClient>,
    handler: &UpstreamHandler,
    job: &CallJob,
    params: CallToolRequestParams,
    options: PeerRequestOptions,
) -> Result<ServerResult, CallError> {
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    if job.events.is_closed() {
        return Err(CallError::new(
            ErrorCategory::Cancelled,
            "the caller went away before the call was sent",
        ));
    }
    job.ticket.mark_sent();
    let _outstanding = handler.outstanding();
    let handle = match peer.send_request_with_option(request, options).await {
        Ok(h) => h,
        Err(e) => return Err(from_service_error(e, false)),
    };
    let RequestHandle {
        rx,
        id,
        progress_token,
        ..
    } = handle;
    let _route = handler.watch_progress(progress_token, job.events.clone());
    tokio::select! {
        answer = tokio::time::timeout(job.timeout, rx) => match answer {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(e))) => Err(from_service_error(e, true)),
            Ok(Err(_)) => Err(CallError::new(ErrorCategory::Network, "upstream connection closed").maybe_sent()),
            Err(_) => {
                cancel(peer, id, "deadline exceeded").await;
                Err(CallError::new(
                    ErrorCategory::Timeout,
                    format!("no answer within {} ms", job.timeout.as_millis()),
                )
                .maybe_sent())
            }
        },
        () = job.events.closed() => {
            cancel(peer, id, "client went away").await;
            Err(CallError::new(ErrorCategory::Cancelled, "the caller went away").maybe_sent())
        }
        () = job.cancel.cancelled() => {
            cancel(peer, id, "another replica answered first").await;
            Err(CallError::new(ErrorCategory::Cancelled, "another replica answered first").maybe_sent())
        }
    }
}

async fn cancel(peer: &Peer<RoleClient>, id: RequestId, reason: &str) {
    let params = CancelledNotificationParam::new(Some(id), Some(reason.to_owned()));
    if let Err(e) = peer.notify_cancelled(params).await {
        tracing::debug!(error = %e, "could not send notifications/cancelled");
    }
}

/// Accepts the result shapes a `tools/call` may legitimately produce.
fn into_call_result(result: ServerResult) -> Result<CallToolResult, CallError> {
    match result {
        ServerResult::CallToolResult(r) => Ok(r),
        // A bare `{}` parses as an empty result: a tool with no output.
        ServerResult::EmptyResult(_) => Ok(CallToolResult::success(Vec::new())),
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
