//! The simulator's MCP server: the manifest's tools over the workspace.

use std::borrow::Cow;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use mcpvisor_actors::manifest::Manifest;
use mcpvisor_actors::registry::tool_from_manifest;
use rmcp::model::SubscriptionFilter;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use super::SimOptions;
use super::faults::{Faults, Verdict};
use super::workspace::{Scale, SimError, Workspace};

/// The manifest whose tools the simulator serves.
const MANIFEST: &str = include_str!("../../manifests/asana.json");

/// What the simulator has done, for tests and drills (`GET /sim/stats`).
#[derive(Debug, Default)]
pub struct SimStats {
    /// Calls received.
    pub calls: AtomicU64,
    /// Calls answered with a result.
    pub completed: AtomicU64,
    /// Calls stopped by the client's cancellation.
    pub cancelled: AtomicU64,
    /// Arrival times (unix ms) of the most recent calls.
    call_times: Mutex<std::collections::VecDeque<u64>>,
    /// When (unix ms) requests were refused with 429.
    rate_limited: Mutex<Vec<u64>>,
    /// The headers of the latest `POST /mcp`, as they arrived (a test of
    /// what a client sends upstream reads them).
    last_headers: Mutex<Vec<(String, String)>>,
}

/// Call arrival times kept.
const CALL_TIMES: usize = 1_000;

impl SimStats {
    /// Remembers a request's headers.
    pub fn saw_headers(&self, headers: &hyper::HeaderMap) {
        let list = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        *self.last_headers.lock().unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// The headers of the latest `POST /mcp`.
    pub fn last_headers(&self) -> serde_json::Map<String, serde_json::Value> {
        self.last_headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect()
    }

    fn arrived(&self) -> u64 {
        let mut times = self.call_times.lock().unwrap_or_else(|p| p.into_inner());
        if times.len() == CALL_TIMES {
            times.pop_front();
        }
        times.push_back(unix_ms());
        self.calls.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records a request refused with 429.
    pub fn refused(&self) {
        let mut times = self.rate_limited.lock().unwrap_or_else(|p| p.into_inner());
        if times.len() < CALL_TIMES {
            times.push(unix_ms());
        }
    }

    /// When requests were refused with 429 (unix ms).
    pub fn refusals(&self) -> Vec<u64> {
        self.rate_limited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Arrival times (unix ms) of the most recent calls, oldest first.
    pub fn call_times(&self) -> Vec<u64> {
        self.call_times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The simulated Asana MCP server. Cheap to clone: all state is shared.
#[derive(Clone)]
pub struct SimServer {
    stats: Arc<SimStats>,
    exec_log: Option<Arc<Mutex<std::fs::File>>>,
    /// The tool withdrawn after some calls, and when.
    hide: Option<(String, u64)>,
    hidden: Arc<AtomicBool>,
    /// Announces tool list changes to `subscriptions/listen` streams.
    tools_changed: tokio::sync::broadcast::Sender<()>,
    tools: Arc<Vec<Tool>>,
    workspace: Arc<Mutex<Workspace>>,
    faults: Arc<Faults>,
    versions: Arc<Vec<ProtocolVersion>>,
}

impl SimServer {
    /// A server over a freshly seeded workspace.
    pub fn new(opts: &SimOptions) -> anyhow::Result<Self> {
        let manifest = Manifest::parse(std::path::Path::new("builtin:asana"), MANIFEST)?;
        let mut tools: Vec<Tool> = manifest.tools.iter().map(tool_from_manifest).collect();
        tools.extend(extra_tools(opts.extra_tools));
        let versions = if opts.protocols.is_empty() {
            ProtocolVersion::KNOWN_VERSIONS.to_vec()
        } else {
            opts.protocols
                .iter()
                .map(|v| {
                    serde_json::from_value(serde_json::Value::String(v.clone()))
                        .with_context(|| format!("unknown protocol version `{v}`"))
                })
                .collect::<anyhow::Result<_>>()?
        };
        let exec_log = match &opts.exec_log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open execution log {}", path.display()))?;
                Some(Arc::new(Mutex::new(file)))
            }
            None => None,
        };
        Ok(Self {
            stats: Arc::default(),
            exec_log,
            hide: opts.hide_tool.clone().zip(opts.hide_after_calls),
            hidden: Arc::default(),
            tools_changed: tokio::sync::broadcast::channel(16).0,
            tools: Arc::new(tools),
            workspace: Arc::new(Mutex::new(Workspace::seeded(opts.seed, Scale::default()))),
            faults: Arc::new(Faults::new(opts.faults.clone())),
            versions: Arc::new(versions),
        })
    }

    /// Records an executed write in the execution log, if there is one.
    fn log_execution(&self, tool: &str, args: &rmcp::model::JsonObject) {
        let Some(log) = &self.exec_log else { return };
        let read_only = self
            .tools
            .iter()
            .find(|t| t.name == tool)
            .and_then(|t| t.annotations.as_ref())
            .and_then(|a| a.read_only_hint)
            == Some(true);
        if read_only {
            return;
        }
        let line = serde_json::json!({"tool": tool, "arguments": args, "atMs": unix_ms()});
        let mut file = log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(file, "{line}").and_then(|()| file.flush()) {
            tracing::error!(error = %e, "cannot write the execution log");
        }
    }

    /// The tools currently offered.
    fn visible_tools(&self) -> impl Iterator<Item = &Tool> {
        let hidden = self.hidden.load(Ordering::Acquire);
        self.tools.iter().filter(move |t| {
            !(hidden
                && self
                    .hide
                    .as_ref()
                    .is_some_and(|(name, _)| t.name == name.as_str()))
        })
    }

    /// Counters of what the simulator did.
    pub fn stats(&self) -> &Arc<SimStats> {
        &self.stats
    }

    /// Shared fault state (the HTTP layer applies rate limiting).
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }
}

/// Names of the synthetic tools of `--extra-tools`.
const EXTRA_TOOL_PREFIX: &str = "sim_extra_";

/// The `n` synthetic tools of `--extra-tools`.
pub fn extra_tools(n: usize) -> impl Iterator<Item = Tool> {
    (1..=n).map(extra_tool)
}

/// Synthetic tool number `n`: read-only, one optional string argument.
fn extra_tool(n: usize) -> Tool {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"note": {"type": "string", "maxLength": 200}},
        "additionalProperties": false,
    });
    let mut tool = Tool::default();
    tool.name = format!("{EXTRA_TOOL_PREFIX}{n:05}").into();
    tool.description = Some(format!("Synthetic tool {n}: answers with its own name.").into());
    if let serde_json::Value::Object(schema) = schema {
        tool.input_schema = Arc::new(schema);
    }
    let mut hints = rmcp::model::ToolAnnotations::default();
    hints.read_only_hint = Some(true);
    tool.annotations = Some(hints);
    tool
}

impl ServerHandler for SimServer {
    fn get_info(&self) -> ServerConfig {
        let newest = self
            .versions
            .iter()
            .max_by(|a, b| a.as_str().cmp(b.as_str()))
            .cloned()
            .unwrap_or_default();
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcpvisor-sim-asana",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions("A simulated Asana workspace with seeded, deterministic data.");
        info.protocol_version = newest;
        info
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned((*self.versions).clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.visible_tools().cloned().collect(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.visible_tools().find(|t| t.name == name).cloned()
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::default();
        accepted.tools_list_changed = requested.tools_list_changed;
        Some(accepted)
    }

    async fn listen(&self, cx: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.tools_changed.subscribe();
        loop {
            tokio::select! {
                () = cx.cancelled() => return Ok(()),
                change = changes.recv() => match change {
                    Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if cx.sink().notify_tool_list_changed().await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if self.get_tool(&request.name).is_none() {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        if request.name.starts_with(EXTRA_TOOL_PREFIX) {
            self.stats.arrived();
            self.stats.completed.fetch_add(1, Ordering::Relaxed);
            let name = request.name.to_string();
            return Ok(CallToolResult::success(vec![ContentBlock::text(name)]).into());
        }
        let n = self.stats.arrived();
        if let Some((tool, after)) = &self.hide
            && n == *after
        {
            tracing::info!(%tool, "withdrawing tool");
            self.hidden.store(true, Ordering::Release);
            let _ = self.tools_changed.send(());
            // Session-era clients hear it on their session.
            if cx.protocol_version().is_some_and(|v| v.has_initialize()) {
                let _ = cx.peer.notify_tool_list_changed().await;
            }
        }
        match self.faults.on_call(request.arguments.as_ref()) {
            Verdict::Run => {}
            Verdict::Fail => {
                return Ok(CallToolResult::error(vec![ContentBlock::text(
                    "simulated upstream failure",
                )])
                .into());
            }
            Verdict::Hang => {
                cx.ct.cancelled().await;
                self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                return Err(ErrorData::internal_error("cancelled", None));
            }
        }
        let args = request.arguments.unwrap_or_default();
        // The workspace answers at once; the simulated API latency follows,
        // one step (and one progress notification) per Asana request.
        let output = {
            let mut ws = self.workspace.lock().unwrap_or_else(|p| p.into_inner());
            let output = ws.call(&request.name, &args);
            if output.is_ok() {
                self.log_execution(&request.name, &args);
            }
            output
        };
        let output = match output {
            Ok(o) => o,
            Err(SimError::InvalidArgument { field, reason }) => {
                return Err(ErrorData::invalid_params(
                    format!("`{field}`: {reason}"),
                    None,
                ));
            }
            Err(e @ SimError::NotFound { .. }) => {
                return Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into());
            }
            Err(e) => return Err(ErrorData::invalid_params(e.to_string(), None)),
        };
        let token = cx.meta.get_progress_token();
        let units = output.work_units.max(1);
        let unit = self.faults.unit_latency();
        let base = self.faults.latency();
        tokio::select! {
            () = cx.ct.cancelled() => {
                self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                return Err(ErrorData::internal_error("cancelled", None));
            }
            () = async {
                if !base.is_zero() {
                    tokio::time::sleep(base).await;
                }
                for done in 1..=units {
                    if !unit.is_zero() {
                        tokio::time::sleep(unit).await;
                    }
                    if let Some(token) = &token {
                        let p = ProgressNotificationParam::new(token.clone(), f64::from(done))
                            .with_total(f64::from(units))
                            .with_message(format!("{} request {done} of {units}", request.name));
                        let _ = cx.peer.notify_progress(p).await;
                    }
                }
            } => {}
        }
        let text = serde_json::to_string(&output.value).unwrap_or_default();
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = Some(output.value);
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        Ok(result.into())
    }
}
