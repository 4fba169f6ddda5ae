//! The events a tool call produces while it runs.
//!
//! A call's events travel on one bounded channel from the service actor that
//! runs it straight to the HTTP handler that renders them — as MCP
//! `notifications/progress` on `/mcp`, as named SSE events on
//! `/api/mcp/stream`. The final outcome is not an event: it is the reply to
//! the `Execute` message, so it can never be lost to a full channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Something that happened during a call, before its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A routing, queueing or retry status line.
    Status {
        /// Machine-readable stage, e.g. `dispatched`, `queued`, `failover`.
        stage: &'static str,
        /// Human-readable detail.
        message: String,
        /// Service concerned, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// Upstream progress (`notifications/progress`) for this call.
    Progress {
        /// Progress so far; increases with every event.
        progress: f64,
        /// Total, when the upstream knows it.
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<f64>,
        /// Upstream's description of the step.
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A log message (`notifications/message`) the upstream sent while
    /// this call was the only one it was running.
    Log {
        /// Syslog-style level: debug, info, notice, warning, error, ...
        level: String,
        /// The upstream's logger name, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        logger: Option<String>,
        /// What it logged.
        data: Value,
    },
}

impl StreamEvent {
    /// A status line.
    pub fn status(stage: &'static str, message: impl Into<String>, service: Option<&str>) -> Self {
        Self::Status {
            stage,
            message: message.into(),
            service: service.map(str::to_owned),
        }
    }
}

/// Where a call's events go. Cheap to clone; sending never blocks the
/// engine: when the consumer is slower than the upstream, progress events
/// are dropped rather than queued without bound (the final outcome is never
/// an event, so nothing essential is lost).
///
/// Progress only ever increases on a sink (MCP requires it): events that
/// would go backwards — upstream notifications handled out of order, or a
/// failover restarting from zero — are dropped.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<StreamEvent>>,
    /// Highest progress emitted so far, as `f64` bits.
    high_water: Arc<AtomicU64>,
    /// Where the upstream's requests to the calling client go, when the
    /// caller can answer them.
    asks: Option<Asks>,
    /// The consumer shows progress: upstreams are asked for it.
    progress: bool,
    /// The consumer shows status lines (routing, retries, waiting).
    statuses: bool,
}

/// A request the upstream server made of the calling client while serving
/// its call — `sampling/createMessage`, `elicitation/create` — waiting for
/// the client's answer.
#[derive(Debug)]
pub struct ClientAsk {
    /// The MCP method.
    pub method: String,
    /// Its params, as the upstream sent them.
    pub params: Value,
    /// The client's result, or its JSON-RPC error.
    pub reply: oneshot::Sender<Result<Value, AskError>>,
}

/// A JSON-RPC error for an ask.
#[derive(Debug, Clone, PartialEq)]
pub struct AskError {
    pub code: i32,
    pub message: String,
    pub data: Option<Value>,
}

impl AskError {
    fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Asks {
    tx: mpsc::Sender<ClientAsk>,
    /// The calling client's declared capabilities.
    capabilities: Arc<Value>,
}

/// The client capability a server-to-client request needs.
fn capability_for(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

impl EventSink {
    /// A sink feeding `tx`.
    pub fn new(tx: mpsc::Sender<StreamEvent>) -> Self {
        Self {
            tx: Some(tx),
            high_water: Arc::new(AtomicU64::new(f64::NEG_INFINITY.to_bits())),
            asks: None,
            progress: true,
            statuses: true,
        }
    }

    /// A sink that discards everything (for calls nobody watches).
    pub fn discard() -> Self {
        Self {
            tx: None,
            high_water: Arc::new(AtomicU64::new(f64::NEG_INFINITY.to_bits())),
            asks: None,
            progress: false,
            statuses: false,
        }
    }

    /// The consumer shows no progress (an MCP client that gave no
    /// `progressToken`): upstreams need not report it. Reporting costs
    /// them a notification per step.
    pub fn without_progress(mut self) -> Self {
        self.progress = false;
        self
    }

    /// Whether the consumer shows progress.
    pub fn wants_progress(&self) -> bool {
        self.progress
    }

    /// The consumer shows no status lines (an MCP client): none are made.
    pub fn without_status(mut self) -> Self {
        self.statuses = false;
        self
    }

    /// Emits a status line, if the consumer shows them; the message is
    /// only written then.
    pub fn status(
        &self,
        stage: &'static str,
        message: impl FnOnce() -> String,
        service: Option<&str>,
    ) {
        if self.statuses {
            self.emit(StreamEvent::status(stage, message(), service));
        }
    }

    /// Raises the high-water mark to `p`; false if `p` does not exceed it.
    fn advance(&self, p: f64) -> bool {
        self.high_water
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                (p > f64::from_bits(bits)).then_some(p.to_bits())
            })
            .is_ok()
    }

    /// A channel of the given capacity and its sink.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<StreamEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self::new(tx), rx)
    }

    /// Emits an event without waiting; drops it if the consumer lags.
    pub fn emit(&self, event: StreamEvent) {
        if let StreamEvent::Progress { progress, .. } = &event
            && !self.advance(*progress)
        {
            return;
        }
        if let Some(tx) = &self.tx
            && let Err(mpsc::error::TrySendError::Full(ev)) = tx.try_send(event)
        {
            tracing::debug!(?ev, "event channel full; dropping event");
        }
    }

    /// Lets the upstream ask the calling client (declaring `capabilities`)
    /// for sampling or elicitation; the asks arrive on the returned receiver.
    pub fn with_asks(mut self, capabilities: Value) -> (Self, mpsc::Receiver<ClientAsk>) {
        let (tx, rx) = mpsc::channel(8);
        self.asks = Some(Asks {
            tx,
            capabilities: Arc::new(capabilities),
        });
        (self, rx)
    }

    /// Asks the calling client `method` and waits for its answer. Fails
    /// with "method not found" when the caller cannot be asked (the SSE
    /// API, a stateless request) or did not declare the capability.
    pub async fn ask(&self, method: &str, params: Value) -> Result<Value, AskError> {
        const METHOD_NOT_FOUND: i32 = -32601;
        let Some(asks) = &self.asks else {
            return Err(AskError::new(
                METHOD_NOT_FOUND,
                format!("the calling client cannot be asked for {method} through mcpvisor"),
            ));
        };
        if let Some(cap) = capability_for(method)
            && asks.capabilities.get(cap).is_none()
        {
            return Err(AskError::new(
                METHOD_NOT_FOUND,
                format!("the calling client did not declare the `{cap}` capability"),
            ));
        }
        let (reply, answer) = oneshot::channel();
        let ask = ClientAsk {
            method: method.to_owned(),
            params,
            reply,
        };
        if asks.tx.send(ask).await.is_err() {
            return Err(AskError::new(-32603, "the calling client went away"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(AskError::new(-32603, "the calling client went away")))
    }

    /// Changes whenever the call reports progress: a sign of life that
    /// tells a long call from a stuck one.
    pub fn progress_mark(&self) -> u64 {
        self.high_water.load(Ordering::Relaxed)
    }

    /// Whether the consumer has gone away (the HTTP client disconnected).
    pub fn is_closed(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.is_closed())
    }

    /// Resolves when the consumer goes away; never, for a discarding sink.
    pub async fn closed(&self) {
        match &self.tx {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }
}

/// Splits the array at `pointer` inside `value` into chunks of `size` items.
///
/// Returns the chunks and the value with the array replaced by an empty one,
/// so the final result still carries every other field. `None` when there is
/// no array at the pointer (the result is then delivered whole).
pub fn split_chunks(
    mut value: Value,
    pointer: &str,
    size: usize,
) -> Option<(Vec<Vec<Value>>, Value)> {
    let slot = value.pointer_mut(pointer)?;
    let Value::Array(items) = std::mem::take(slot) else {
        return None;
    };
    *slot = Value::Array(Vec::new());
    let size = size.max(1);
    let mut chunks = Vec::with_capacity(items.len().div_ceil(size));
    let mut iter = items.into_iter().peekable();
    while iter.peek().is_some() {
        chunks.push(iter.by_ref().take(size).collect());
    }
    Some((chunks, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunks_split_the_array_and_keep_the_rest() {
        let v = json!({"data": [1, 2, 3, 4, 5], "next_page": null});
        let (chunks, rest) = split_chunks(v, "/data", 2).unwrap();
        assert_eq!(
            chunks,
            vec![
                vec![json!(1), json!(2)],
                vec![json!(3), json!(4)],
                vec![json!(5)]
            ]
        );
        assert_eq!(rest, json!({"data": [], "next_page": null}));
    }

    #[test]
    fn no_array_means_no_chunks() {
        assert!(split_chunks(json!({"data": {"gid": "1"}}), "/data", 2).is_none());
        assert!(split_chunks(json!({"x": 1}), "/data", 2).is_none());
    }

    #[test]
    fn progress_never_goes_backwards() {
        let (sink, mut rx) = EventSink::channel(8);
        let p = |v: f64| StreamEvent::Progress {
            progress: v,
            total: None,
            message: None,
        };
        for v in [1.0, 3.0, 2.0, 3.0, 1.0, 4.0] {
            sink.clone().emit(p(v));
        }
        let mut seen = Vec::new();
        while let Ok(StreamEvent::Progress { progress, .. }) = rx.try_recv() {
            seen.push(progress);
        }
        assert_eq!(seen, vec![1.0, 3.0, 4.0]);
    }

    #[tokio::test]
    async fn sink_reports_closed_consumer() {
        let (sink, rx) = EventSink::channel(4);
        sink.emit(StreamEvent::status("queued", "waiting", None));
        assert!(!sink.is_closed());
        drop(rx);
        sink.closed().await;
        assert!(sink.is_closed());
    }
}
