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
mod handler;
mod stdio;
mod streamable_http;

use std::time::Duration;

use futures::future::BoxFuture;
use rmcp::ClientCacheConfig;
use rmcp::model::{ProtocolVersion, ServerPeerInfo};
use rmcp::service::{ClientLifecycleMode, Peer, RoleClient, RunningService};

pub use handler::{UpstreamEvent, UpstreamHandler};

use crate::error::{CallError, ErrorCategory};
use crate::spec::{ServiceSpec, TransportKind};

/// A live upstream session.
pub struct Connection {
    /// Sends requests to the upstream.
    pub peer: Peer<RoleClient>,
    /// What the upstream said about itself, including the negotiated version.
    pub info: ServerPeerInfo,
    /// Process id of the launched server, if mcpvisor launched one.
    pub pid: Option<u32>,
    /// Resolves, with a reason, when the connection ends. Owns the
    /// connection's resources: drop it to close everything.
    pub closed: BoxFuture<'static, String>,
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

/// The lifecycle every upstream is opened with: prefer the current
/// revision, fall back to the newest session-based one the server accepts.
fn lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    }
}

/// Connects to the upstream a spec describes, within `timeout`.
pub async fn connect(
    spec: &ServiceSpec,
    handler: UpstreamHandler,
    timeout: Duration,
) -> Result<Connection, CallError> {
    let attempt = async {
        match spec.transport {
            TransportKind::Stdio => stdio::connect(spec, handler).await,
            TransportKind::StreamableHttp => streamable_http::connect(spec, handler, timeout).await,
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
