//! Our side of an upstream session: what we do with what the server sends.
//!
//! Progress notifications are routed to the event sink of the call that
//! carries their token; list-changed notifications (tools, resources,
//! prompts) are passed to the owning service actor, which refreshes the
//! registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use rmcp::ClientHandler;
#[allow(deprecated)]
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProgressToken, ProtocolVersion,
};
#[allow(deprecated)]
use rmcp::model::{
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ElicitationCapability, ErrorCode, ErrorData, ResourceUpdatedNotificationParam,
    SamplingCapability,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};
use tokio::sync::mpsc;

use crate::stream::{EventSink, StreamEvent};

/// Something the upstream told us that the service actor must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// The upstream's tool list changed.
    ToolsChanged,
    /// Its resource list (or templates) changed.
    ResourcesChanged,
    /// Its prompt list changed.
    PromptsChanged,
    /// A resource it was asked to watch changed.
    ResourceUpdated(String),
}

/// The rmcp client handler of one upstream connection.
#[derive(Clone)]
pub struct UpstreamHandler {
    progress: Arc<DashMap<ProgressToken, EventSink>>,
    /// Requests to the upstream that a server request or log message could
    /// belong to (tool call rounds and relayed requests), counted from
    /// before they are sent.
    outstanding: Arc<AtomicUsize>,
    events: mpsc::UnboundedSender<UpstreamEvent>,
    /// Version asked for by an `initialize` handshake.
    protocol_version: ProtocolVersion,
}

impl UpstreamHandler {
    /// A handler that reports upstream events on `events`.
    pub fn new(events: mpsc::UnboundedSender<UpstreamEvent>) -> Self {
        Self {
            progress: Arc::new(DashMap::new()),
            outstanding: Arc::new(AtomicUsize::new(0)),
            events,
            protocol_version: ProtocolVersion::V_2025_11_25,
        }
    }

    /// Sets the version an `initialize` handshake asks for.
    pub fn set_protocol_version(&mut self, version: ProtocolVersion) {
        self.protocol_version = version;
    }

    /// Reports that the upstream's tool list changed (from a 2026-07-28
    /// `subscriptions/listen` stream rather than a session notification).
    pub fn tools_changed(&self) {
        self.report(UpstreamEvent::ToolsChanged);
    }

    /// Passes an event to the service actor (list changes heard outside
    /// rmcp's session, on a call's own stream).
    pub fn report(&self, event: UpstreamEvent) {
        let _ = self.events.send(event);
    }

    /// Passes progress to the call that carries `token`, if it still runs.
    /// Notifications may be handled out of order (rmcp handles each on a
    /// task of its own); the sink drops any that would go backwards.
    pub fn progress(
        &self,
        token: ProgressToken,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) {
        if let Some(sink) = self.progress.get(&token) {
            sink.emit(StreamEvent::Progress {
                progress,
                total,
                message,
            });
        }
    }

    /// Routes progress for `token` to `sink` until the guard is dropped.
    pub fn watch_progress(&self, token: ProgressToken, sink: EventSink) -> ProgressGuard {
        self.progress.insert(token.clone(), sink);
        ProgressGuard {
            map: self.progress.clone(),
            token,
        }
    }
}

/// One outstanding upstream request (see [`UpstreamHandler::outstanding`]).
pub struct OutstandingGuard(Arc<AtomicUsize>);

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Removes a progress route when the call ends.
pub struct ProgressGuard {
    map: Arc<DashMap<ProgressToken, EventSink>>,
    token: ProgressToken,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.map.remove(&self.token);
    }
}

impl UpstreamHandler {
    /// The one call a server request or log message can belong to: only
    /// while exactly one request that could have caused it is outstanding,
    /// and that request is a tool call with a caller.
    fn sole_call(&self) -> Option<EventSink> {
        if self.outstanding.load(Ordering::Acquire) != 1 || self.progress.len() != 1 {
            return None;
        }
        self.progress.iter().next().map(|e| e.value().clone())
    }

    /// Counts a request to the upstream as outstanding until the guard is
    /// dropped; take it before sending.
    pub fn outstanding(&self) -> OutstandingGuard {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        OutstandingGuard(self.outstanding.clone())
    }

    /// Relays a request the upstream makes of "the client" to the client
    /// whose call it is serving. Like log messages, such requests carry no
    /// call id on the wire, so they can be attributed only while exactly
    /// one call is running on this upstream; otherwise they are refused.
    async fn ask_caller<P: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, ErrorData> {
        let sink = self.sole_call();
        let Some(sink) = sink else {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("{method}: no single running call to relay it to"),
                None,
            ));
        };
        let params = serde_json::to_value(params)
            .map_err(|e| ErrorData::internal_error(format!("{method} params: {e}"), None))?;
        match sink.ask(method, params).await {
            Ok(v) => serde_json::from_value(v).map_err(|e| {
                ErrorData::internal_error(format!("the client's {method} result: {e}"), None)
            }),
            Err(e) => Err(ErrorData::new(ErrorCode(e.code), e.message, e.data)),
        }
    }
}

impl ClientHandler for UpstreamHandler {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.progress(
            params.progress_token,
            params.progress,
            params.total,
            params.message,
        );
    }

    /// Log messages are not tied to a request on the wire. While exactly
    /// one call is running on this upstream they belong to it and go to
    /// its caller; otherwise they only reach mcpvisor's own log, so that
    /// one client never sees what another client's call logged.
    /// (2026-07-28 deprecates logging; the session revisions still use it.)
    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let level = serde_json::to_value(params.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "info".into());
        if let Some(sink) = self.sole_call() {
            sink.emit(StreamEvent::Log {
                level,
                logger: params.logger,
                data: params.data,
            });
        } else {
            tracing::debug!(%level, logger = ?params.logger, data = %params.data, "upstream log message");
        }
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        let _ = self.events.send(UpstreamEvent::ToolsChanged);
    }

    async fn on_resource_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        let _ = self.events.send(UpstreamEvent::ResourcesChanged);
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self.events.send(UpstreamEvent::ResourceUpdated(params.uri));
    }

    async fn on_prompt_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        let _ = self.events.send(UpstreamEvent::PromptsChanged);
    }

    // Sampling is deprecated from 2026-07-28; session-era servers use it.
    #[allow(deprecated)]
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.ask_caller("sampling/createMessage", &params).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.ask_caller("elicitation/create", &params).await
    }

    /// Sampling and elicitation are offered on behalf of the calling
    /// clients: a request is relayed to the client whose call is running
    /// (see `ask_caller`) and refused when none can answer.
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities = ClientCapabilities::default();
        info.capabilities.sampling = Some(SamplingCapability::default());
        let mut elicitation = ElicitationCapability::default();
        elicitation.form = Some(Default::default());
        info.capabilities.elicitation = Some(elicitation);
        info.client_info = Implementation::new("mcpvisor", env!("CARGO_PKG_VERSION"));
        info.protocol_version = self.protocol_version.clone();
        info
    }
}
