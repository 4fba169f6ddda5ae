//! Connections to upstream MCP servers, one wire per module.
//!
//! [`connect`] turns a [`ServiceSpec`] into a live, negotiated
//! [`Connection`]: it launches the process if the spec names one, opens the
//! wire, and runs rmcp's `Auto` lifecycle — a `server/discover` probe for
//! 2026-07-28 servers that falls back to the `initialize` handshake for
//! 2025/2024 servers. The connection's `closed` future owns every resource
//! (rmcp service, child process); dropping it closes the wire and kills the
//! child, so a service actor that stops or crashes leaks nothing.

pub mod errors;
mod frame;
mod handler;
mod http_line;
pub mod line;
pub mod sse;
mod stdio;
mod streamable_http;
pub mod tap;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rmcp::ClientCacheConfig;
use rmcp::model::{ProtocolVersion, ServerPeerInfo};
use rmcp::service::{ClientInitializeError, ClientLifecycleMode, Peer, RoleClient, RunningService};

pub use handler::{UpstreamEvent, UpstreamHandler};

use crate::error::{CallError, ErrorCategory};
use crate::process::{Launch, ProcessSlot};
use crate::spec::{ServiceSpec, TransportKind};

/// A live upstream session.
pub struct Connection {
    /// Sends requests to the upstream.
    pub peer: Peer<RoleClient>,
    /// What the upstream said about itself, including the negotiated version.
    pub info: ServerPeerInfo,
    /// Process id of the launched server, if mcpvisor launched one.
    pub pid: Option<u32>,
    /// The URL connected to, for HTTP upstreams.
    pub endpoint: Option<String>,
    /// When a stdio server last wrote anything.
    pub liveness: Option<Arc<tap::Seen>>,
    /// The wire calls take to the server, past rmcp.
    pub wire: line::Wire,
    /// Resolves, with a reason, when the connection ends. Owns the
    /// connection's resources: drop it to close everything.
    pub closed: BoxFuture<'static, Closed>,
}

/// How a connection ended.
#[derive(Debug, Clone)]
pub struct Closed {
    /// What happened, for logs and `/api/services`.
    pub reason: String,
    /// The launched process's exit status, when it exited.
    pub exit: Option<std::process::ExitStatus>,
}

impl Closed {
    fn exited(status: std::io::Result<std::process::ExitStatus>) -> Self {
        Self {
            reason: format!(
                "upstream process exited ({})",
                status
                    .as_ref()
                    .map_or_else(|e| e.to_string(), |s| s.to_string())
            ),
            exit: status.ok(),
        }
    }

    fn other(reason: String) -> Self {
        Self { reason, exit: None }
    }

    /// Whether the process died by itself (an exit, or a fault such as
    /// SIGSEGV or SIGABRT) rather than being killed or stopped from outside.
    pub fn self_inflicted(&self) -> bool {
        let Some(status) = self.exit else {
            return false;
        };
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = status.signal() {
                return !matches!(
                    sig,
                    libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGPIPE
                );
            }
        }
        let _ = status;
        true
    }
}

impl Connection {
    /// The negotiated protocol revision.
    pub fn protocol(&self) -> &ProtocolVersion {
        &self.info.protocol_version
    }

    /// Whether the upstream speaks a session-less revision (2026-07-28+),
    /// where `ping` is gone and `server/discover` is the cheap probe.
    pub fn stateless(&self) -> bool {
        !self.info.protocol_version.has_initialize()
    }
}

/// The lifecycle an upstream is first opened with: prefer the current
/// revision, fall back to the newest session-based one the server accepts.
fn auto_lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    }
}

/// A protocol revision by name, if it is one rmcp knows.
pub fn known_version(name: &str) -> Option<ProtocolVersion> {
    ProtocolVersion::KNOWN_VERSIONS
        .iter()
        .find(|v| v.as_str() == name)
        .cloned()
}

/// The lifecycle a spec asks for: `auto`, or one pinned revision.
fn lifecycle_for(spec: &ServiceSpec, handler: &mut UpstreamHandler) -> ClientLifecycleMode {
    match spec
        .protocol
        .as_deref()
        .filter(|p| *p != "auto")
        .and_then(known_version)
    {
        None => auto_lifecycle(),
        Some(v) if v.has_initialize() => {
            handler.set_protocol_version(v);
            ClientLifecycleMode::Initialize
        }
        Some(v) => ClientLifecycleMode::Auto {
            preferred_versions: vec![v],
            legacy_version: None,
        },
    }
}

/// Why a handshake attempt failed.
pub(crate) enum Refusal {
    /// The server understood `server/discover` but listed only
    /// session-based revisions: open a session at this one instead.
    LegacyOnly(ProtocolVersion),
    /// The server answered `server/discover` with something that is not a
    /// discover result (some servers answer any unknown method with `{}`):
    /// it is no 2026-07-28 server, so open a session instead.
    NotDiscover(Box<ClientInitializeError>),
    /// Anything else.
    Failed(CallError),
}

impl From<CallError> for Refusal {
    fn from(e: CallError) -> Self {
        Self::Failed(e)
    }
}

/// Classifies a failed handshake.
pub(crate) fn refusal(err: ClientInitializeError) -> Refusal {
    if let ClientInitializeError::NoCompatibleProtocolVersion {
        server_supported, ..
    } = &err
        && let Some(best) = server_supported
            .iter()
            .filter(|v| v.has_initialize())
            .max_by(|a, b| a.as_str().cmp(b.as_str()))
    {
        return Refusal::LegacyOnly(best.clone());
    }
    if let ClientInitializeError::ExpectedInitResult(Some(_)) = &err {
        return Refusal::NotDiscover(Box::new(err));
    }
    Refusal::Failed(errors::from_init_error(err))
}

/// Connects to the upstream a spec describes, within `timeout`; a process
/// it launches takes `slot` (one instance per service).
pub async fn connect(
    spec: &ServiceSpec,
    slot: &Arc<ProcessSlot>,
    mut handler: UpstreamHandler,
    timeout: Duration,
) -> Result<Connection, CallError> {
    let attempt = async {
        let mut lifecycle = lifecycle_for(spec, &mut handler);
        // A revision named in the config is not negotiated away.
        let fallback_allowed = spec.protocol.as_deref().is_none_or(|p| p == "auto");
        let pinned_refused = || {
            CallError::new(
                ErrorCategory::Protocol,
                format!(
                    "the upstream does not speak the configured protocol {}",
                    spec.protocol.as_deref().unwrap_or("?")
                ),
            )
        };
        loop {
            let result = match spec.transport {
                TransportKind::Stdio => {
                    stdio::connect(spec, slot, handler.clone(), lifecycle.clone()).await
                }
                TransportKind::StreamableHttp | TransportKind::Sse => {
                    streamable_http::connect(
                        spec,
                        slot,
                        handler.clone(),
                        lifecycle.clone(),
                        timeout,
                    )
                    .await
                }
            };
            match result {
                Ok(conn) => return Ok(conn),
                Err(Refusal::Failed(e)) => return Err(e),
                Err(Refusal::LegacyOnly(_)) if !fallback_allowed => return Err(pinned_refused()),
                Err(Refusal::LegacyOnly(version))
                    if matches!(lifecycle, ClientLifecycleMode::Auto { .. }) =>
                {
                    tracing::info!(service = %spec.name, %version, "upstream is session-based only; reconnecting with initialize");
                    lifecycle = ClientLifecycleMode::Initialize;
                    handler.set_protocol_version(version);
                }
                Err(Refusal::NotDiscover(_)) if !fallback_allowed => return Err(pinned_refused()),
                Err(Refusal::NotDiscover(e)) => {
                    if !matches!(lifecycle, ClientLifecycleMode::Auto { .. }) {
                        return Err(errors::from_init_error(*e));
                    }
                    tracing::info!(service = %spec.name, reply = %e, "upstream does not know server/discover; reconnecting with initialize");
                    lifecycle = ClientLifecycleMode::Initialize;
                    handler.set_protocol_version(ProtocolVersion::V_2025_11_25);
                }
                Err(Refusal::LegacyOnly(version)) => {
                    return Err(CallError::new(
                        ErrorCategory::Protocol,
                        format!("upstream refused protocol {version} it had offered"),
                    ));
                }
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(CallError::new(
            ErrorCategory::Timeout,
            format!("no MCP handshake within {} ms", timeout.as_millis()),
        )),
    }
}

/// The peer of a fresh session and what it said about itself. The
/// response cache is switched off: health probes and tool refreshes must
/// reach the server, not a remembered answer.
async fn server_info(
    running: &RunningService<RoleClient, UpstreamHandler>,
) -> Result<(Peer<RoleClient>, ServerPeerInfo), CallError> {
    let peer = running.peer().clone();
    peer.set_response_cache_config(ClientCacheConfig::disabled())
        .await;
    let info = peer
        .peer_info()
        .map(|i| (*i).clone())
        .ok_or_else(|| CallError::new(ErrorCategory::Protocol, "no server info after handshake"))?;
    Ok((peer, info))
}

/// Resolves `@self` to the running executable.
fn program(command: &str) -> Result<std::path::PathBuf, CallError> {
    if command == "@self" {
        std::env::current_exe().map_err(|e| {
            CallError::new(
                ErrorCategory::Internal,
                format!("cannot locate own executable: {e}"),
            )
        })
    } else {
        Ok(command.into())
    }
}

/// The process a spec launches; `fill` expands placeholders in `args` and
/// `env` values.
fn launch_spec(spec: &ServiceSpec, fill: &dyn Fn(&str) -> String) -> Result<Launch, CallError> {
    let command = spec
        .command
        .as_deref()
        .ok_or_else(|| CallError::new(ErrorCategory::Internal, "no command to launch"))?;
    Ok(Launch {
        program: program(command)?,
        args: spec.args.iter().map(|a| fill(a).into()).collect(),
        env: spec
            .env
            .iter()
            .map(|(k, v)| (k.into(), fill(v).into()))
            .collect(),
        cwd: spec.cwd.as_ref().map(Into::into),
        grace: spec.limits.stop_grace(),
    })
}
