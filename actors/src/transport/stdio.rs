//! Upstreams that are child processes speaking MCP on stdin/stdout.
//!
//! We spawn the child ourselves (rather than through rmcp's wrapper) so the
//! connection keeps the `Child`: its exit status is what a crash report
//! says, and `kill_on_drop` ties its life to the connection's.

use std::process::Stdio;

use rmcp::service::ClientServiceExt;
use tokio::process::Command;

use rmcp::service::ClientLifecycleMode;

use super::{Connection, Refusal, UpstreamHandler, program, refusal, server_info};
use crate::error::{CallError, ErrorCategory};
use crate::spec::ServiceSpec;

/// How long a closed session waits for its process's exit status.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Launches the server and negotiates a session with it.
pub async fn connect(
    spec: &ServiceSpec,
    handler: UpstreamHandler,
    lifecycle: ClientLifecycleMode,
) -> Result<Connection, Refusal> {
    let command = spec.command.as_deref().ok_or_else(|| {
        CallError::new(ErrorCategory::Internal, "stdio service without a command")
    })?;
    let mut cmd = Command::new(program(command)?);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The child's stderr is its log: pass it through to ours.
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| {
        CallError::new(
            ErrorCategory::Network,
            format!("cannot start `{command}`: {e}"),
        )
    })?;
    let pid = child.id();
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(CallError::new(ErrorCategory::Internal, "child pipes unavailable").into());
    };
    let running = tokio::select! {
        r = handler.serve_with_lifecycle((stdout, stdin), lifecycle) => r.map_err(refusal)?,
        status = child.wait() => {
            return Err(CallError::new(
                ErrorCategory::Network,
                format!("`{command}` exited during the handshake ({})",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string())),
            ).into());
        }
    };
    let (peer, info) = server_info(&running).await?;
    let closed = Box::pin(async move {
        let exited = |status: std::io::Result<std::process::ExitStatus>| {
            format!(
                "upstream process exited ({})",
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            )
        };
        tokio::select! {
            status = child.wait() => exited(status),
            reason = running.waiting() => {
                // The session usually ends because the process died; say so
                // when it did (a dying process closes its pipes first).
                match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                    Ok(status) => exited(status),
                    Err(_) => format!("stdio session ended ({reason:?}); the process kept running"),
                }
            }
        }
    });
    Ok(Connection {
        peer,
        info,
        pid,
        endpoint: None,
        closed,
    })
}
