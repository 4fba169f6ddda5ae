//! The simulated Asana service: a real MCP server (stdio or Streamable
//! HTTP) over a seeded in-memory workspace, with fault knobs.
//!
//! It is what the default configuration supervises, and what tests and
//! drills break on purpose. Built on rmcp's server side, so every run is
//! also a check of mcpvisor against an independent MCP implementation.

mod faults;
mod http;
mod server;
pub mod workspace;

use std::net::SocketAddr;

use clap::Args;

pub use server::{SimServer, extra_tools};

/// `mcpvisor sim` options.
#[derive(Debug, Clone, Args)]
pub struct SimOptions {
    /// Serve MCP on stdin/stdout.
    #[arg(long, conflicts_with = "http")]
    pub stdio: bool,
    /// Serve MCP Streamable HTTP on this address (path /mcp).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Seed of the generated workspace.
    #[arg(long, default_value_t = 7, env = "SIM_SEED")]
    pub seed: u64,
    /// Protocol revisions to offer (newest first), e.g. "2024-11-05" to act
    /// like an older server. Default: every revision rmcp knows.
    #[arg(long, value_delimiter = ',', env = "SIM_PROTOCOLS")]
    pub protocols: Vec<String>,
    /// Withdraw this tool after `--hide-after-calls` calls, announcing the
    /// change (`notifications/tools/list_changed`): a server whose tool list
    /// changes while it runs.
    #[arg(long, value_name = "TOOL", requires = "hide_after_calls")]
    pub hide_tool: Option<String>,
    /// See `--hide-tool`.
    #[arg(long, value_name = "N")]
    pub hide_after_calls: Option<u64>,
    /// Append one JSON line per executed write (tool and arguments) to this
    /// file, flushed before the call is answered: a record that survives
    /// `kill -9`, for counting executions across crashes and replicas.
    #[arg(long, value_name = "PATH", env = "SIM_EXEC_LOG")]
    pub exec_log: Option<std::path::PathBuf>,
    /// Also offer this many synthetic read-only tools (`sim_extra_00001`,
    /// ...), each answering with its own name: a large tool list for
    /// benchmarks of the registry and `tools/list`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub extra_tools: usize,
    #[command(flatten)]
    pub faults: faults::FaultOptions,
}

/// Runs the simulator until its transport closes.
pub async fn run(opts: SimOptions) -> anyhow::Result<()> {
    let server = SimServer::new(&opts)?;
    match opts.http {
        Some(addr) => http::serve(server, addr).await,
        None => {
            use rmcp::ServiceExt;
            let running = match stdio_pipes() {
                Some(pipes) => server.serve(pipes).await?,
                None => server.serve(rmcp::transport::stdio()).await?,
            };
            running.waiting().await?;
            Ok(())
        }
    }
}

/// Stdin and stdout as non-blocking pipes, when they are pipes (as a
/// client that launches the simulator makes them). tokio's own stdin reads
/// on a blocking thread, a hand-off per read: over a pipe the reactor can
/// wait on it directly.
fn stdio_pipes() -> Option<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
)> {
    use std::os::fd::{AsFd, OwnedFd};
    let duplicate =
        |fd: std::os::fd::BorrowedFd<'_>| -> Option<OwnedFd> { fd.try_clone_to_owned().ok() };
    let stdin = duplicate(std::io::stdin().as_fd())?;
    let stdout = duplicate(std::io::stdout().as_fd())?;
    let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(stdin).ok()?;
    let writer = tokio::net::unix::pipe::Sender::from_owned_fd(stdout).ok()?;
    Some((reader, writer))
}
