//! Upstreams that are child processes speaking MCP on stdin/stdout.
//!
//! We launch the child ourselves (rather than through rmcp's wrapper): it
//! runs in a process group of its own ([`crate::process`]), its exit status
//! is what a crash report says, its stdout passes through a [`Tap`] that
//! tells when it last wrote anything, and its stderr lines are logged with
//! the service's name.

use std::process::Stdio;
use std::sync::Arc;

use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use tokio::io::AsyncBufReadExt;

use super::tap::{Seen, Tap};
use super::{Closed, Connection, Refusal, UpstreamHandler, launch_spec, refusal, server_info};
use crate::error::{CallError, ErrorCategory};
use crate::process::{ProcessSlot, UpstreamProcess};
use crate::spec::ServiceSpec;

/// How long a closed session waits for its process's exit status.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Launches the server and negotiates a session with it.
pub async fn connect(
    spec: &ServiceSpec,
    slot: &Arc<ProcessSlot>,
    handler: UpstreamHandler,
    lifecycle: ClientLifecycleMode,
) -> Result<Connection, Refusal> {
    let launch = launch_spec(spec, &|s| s.to_owned())?;
    let mut process = UpstreamProcess::spawn(&launch, slot, |cmd| {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    })
    .await
    .map_err(|e| CallError::new(ErrorCategory::Network, e.to_string()))?;
    let pid = process.pid();
    let child = process.child_mut();
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(CallError::new(ErrorCategory::Internal, "child pipes unavailable").into());
    };
    if let Some(stderr) = child.stderr.take() {
        log_stderr(spec.name.clone(), stderr);
    }
    let seen = Arc::new(Seen::default());
    let stdout = Tap::new(stdout, seen.clone());
    // Tool calls take the line; rmcp's session runs on what it leaves.
    let (line, pipes) = super::line::open(stdout, stdin, handler.clone());
    let running = tokio::select! {
        r = handler.serve_with_lifecycle(pipes, lifecycle) => r.map_err(|e| {
            match (refusal(e), seen.stray_line()) {
                // What arrived explains a failed handshake better than the
                // parser's complaint about it.
                (Refusal::Failed(e), Some(line)) => Refusal::Failed(CallError::new(
                    ErrorCategory::Protocol,
                    format!("handshake failed: the upstream wrote non-JSON on stdout: `{line}` ({})", e.message),
                )),
                (other, _) => other,
            }
        })?,
        status = process.wait() => {
            let mut message = format!(
                "`{}` exited during the handshake ({})",
                spec.command.as_deref().unwrap_or("?"),
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            );
            if let Some(line) = seen.stray_line() {
                message.push_str(&format!("; it wrote non-JSON on stdout: `{line}`"));
            }
            return Err(CallError::new(ErrorCategory::Network, message).into());
        }
    };
    let (peer, info) = server_info(&running).await?;
    let closed = Box::pin(async move {
        tokio::select! {
            status = process.wait() => Closed::exited(status),
            reason = running.waiting() => {
                // The session usually ends because the process died; say so
                // when it did (a dying process closes its pipes first).
                match tokio::time::timeout(EXIT_GRACE, process.wait()).await {
                    Ok(status) => Closed::exited(status),
                    Err(_) => Closed::other(format!("stdio session ended ({reason:?}); the process kept running")),
                }
            }
        }
    });
    Ok(Connection {
        peer,
        info,
        pid: Some(pid),
        endpoint: None,
        liveness: Some(seen),
        line: Some(line),
        closed,
    })
}

/// Logs the child's stderr, line by line, under the service's name.
pub(super) fn log_stderr(service: String, stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "mcpvisor::upstream", %service, "{line}");
        }
    });
}
