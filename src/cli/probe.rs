//! `mcpvisor probe URL`: connects to an MCP server the way a service actor
//! does — same transports, same era negotiation — and reports what it
//! found: the protocol it settled on, the server, its tools, and
//! optionally the result of one call. A quick check of an upstream before
//! it goes in a config, and how mcpvisor's client side is put through the
//! conformance suite's client scenarios.
//!
//! `check-config --probe` does the same for every enabled service of a
//! config, and shows the tool names its services would fight over.

use std::time::Duration;

use anyhow::{Context, bail};
use mcpvisor_actors::spec::ServiceSpec;
use mcpvisor_actors::transport::{self, UpstreamHandler};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Arguments of `mcpvisor probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The server's endpoint: its Streamable HTTP URL, or the SSE stream
    /// URL of a legacy HTTP+SSE server (with `--transport sse`).
    pub url: String,
    /// `streamable_http` (default) or `sse`.
    #[arg(long, default_value = "streamable_http")]
    pub transport: String,
    /// A tool to call after listing.
    #[arg(long)]
    pub tool: Option<String>,
    /// The call's arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Deadline for connecting and for the call, in milliseconds.
    #[arg(long, default_value_t = 20_000)]
    pub timeout_ms: u64,
}

pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let arguments: Value = serde_json::from_str(&args.args).context("--args is not JSON")?;
    let Value::Object(arguments) = arguments else {
        bail!("--args must be a JSON object");
    };
    let spec: ServiceSpec = serde_json::from_value(json!({
        "name": "probe",
        "transport": args.transport,
        "url": args.url,
    }))
    .context("--transport must be streamable_http or sse")?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let (events, _ignored) = mpsc::unbounded_channel();
    let conn = transport::connect(
        &spec,
        &Default::default(),
        UpstreamHandler::new(events),
        timeout,
    )
    .await
    .map_err(|e| anyhow::anyhow!("connect to {}: {e}", args.url))?;
    let server = conn.info.server_info.as_ref().map_or_else(
        || "(unnamed)".to_owned(),
        |i| format!("{} {}", i.name, i.version),
    );
    println!("protocol {} server {server}", conn.protocol());
    let tools = tokio::time::timeout(timeout, conn.peer.list_all_tools())
        .await
        .context("tools/list timed out")?
        .context("tools/list")?;
    println!(
        "tools ({}): {}",
        tools.len(),
        tools
            .iter()
            .map(|t| t.name.as_ref())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let Some(tool) = args.tool else {
        return Ok(());
    };
    let mut request = CallToolRequestParams::new(tool.clone());
    request.arguments = Some(arguments);
    let result = tokio::time::timeout(timeout, conn.peer.call_tool(request))
        .await
        .with_context(|| format!("{tool} timed out"))?
        .with_context(|| format!("calling {tool}"))?;
    println!("result {}", serde_json::to_string(&result)?);
    if result.is_error == Some(true) {
        bail!("{tool} answered with isError");
    }
    Ok(())
}

/// `check-config --probe`: connects to every enabled service of `config`
/// as its service actor would (launching the servers it launches, which
/// end when the probe does), lists its live tools, and shows the names two
/// logical services offer with what the naming policy does about them.
/// Fails if a service cannot be reached, or would be refused.
pub async fn services(config: crate::config::Config) -> anyhow::Result<()> {
    let registry = config.registry()?;
    let mut unreachable = Vec::new();
    println!("probing {} service(s):", config.services.len());
    for spec in config.services.iter().filter(|s| s.enabled) {
        let (events, _ignored) = mpsc::unbounded_channel();
        let timeout = spec.limits.connect_timeout();
        let conn = match transport::connect(
            spec,
            &Default::default(),
            UpstreamHandler::new(events),
            timeout,
        )
        .await
        {
            Ok(conn) => conn,
            Err(e) => {
                println!("  - {}: unreachable: {e}", spec.name);
                unreachable.push(spec.name.clone());
                continue;
            }
        };
        let server = conn.info.server_info.as_ref().map_or_else(
            || "(unnamed)".to_owned(),
            |i| format!("{} {}", i.name, i.version),
        );
        match tokio::time::timeout(timeout, conn.peer.list_all_tools()).await {
            Ok(Ok(tools)) => {
                println!(
                    "  - {}: protocol {}, server {server}, {} live tools",
                    spec.name,
                    conn.protocol(),
                    tools.len()
                );
                registry.set_live_tools(&spec.name, tools);
            }
            Ok(Err(e)) => {
                println!("  - {}: tools/list failed: {e}", spec.name);
                unreachable.push(spec.name.clone());
            }
            Err(_) => {
                println!("  - {}: tools/list timed out", spec.name);
                unreachable.push(spec.name.clone());
            }
        }
    }
    let table = registry.snapshot();
    println!(
        "live tools  {} (naming: {:?})",
        table.len(),
        config.router.tool_names
    );
    let conflicts = registry.conflicts();
    if conflicts.is_empty() {
        println!("conflicts   none");
    } else {
        println!(
            "conflicts   {} tool name(s) offered by more than one service:",
            conflicts.len()
        );
        for (name, groups) in conflicts.iter().take(20) {
            println!("  {name}: {}", groups.join(", "));
        }
        if conflicts.len() > 20 {
            println!("  ... and {} more", conflicts.len() - 20);
        }
    }
    let refused: Vec<&String> = table.refused().keys().collect();
    if !unreachable.is_empty() || !refused.is_empty() {
        let mut problems = Vec::new();
        if !unreachable.is_empty() {
            problems.push(format!("unreachable: {}", unreachable.join(", ")));
        }
        if !refused.is_empty() {
            problems.push(format!(
                "would be refused under tool_names = \"never\": {}",
                refused
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        bail!("{}", problems.join("; "));
    }
    Ok(())
}
