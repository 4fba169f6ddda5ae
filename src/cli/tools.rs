//! `mcpvisor tools`: what tools there are.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct ToolsArgs {
    /// Ask a running daemon at this base URL (or MCPVISOR_URL).
    #[arg(
        long,
        env = "MCPVISOR_URL",
        default_value = "http://127.0.0.1:3000",
        conflicts_with = "config"
    )]
    url: String,
    /// Read the tools from a config's manifests instead (no daemon needed).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: ToolsArgs) -> anyhow::Result<()> {
    let tools: Vec<Value> = match &args.config {
        Some(path) => {
            let config = Config::load(Some(path))?;
            let mut out = Vec::new();
            for s in &config.services {
                if let Some(m) = config.manifest_for(s)? {
                    for t in m.tools {
                        if !out.iter().any(|o: &Value| o["name"] == json!(t.name)) {
                            out.push(json!({"name": t.name, "description": t.description, "service": s.group()}));
                        }
                    }
                }
            }
            out
        }
        None => {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }}});
            let reply: Value = reqwest::Client::new()
                .post(format!("{}/mcp", args.url.trim_end_matches('/')))
                .header("MCP-Protocol-Version", "2026-07-28")
                .header("Mcp-Method", "tools/list")
                .header("Accept", "application/json, text/event-stream")
                .json(&body)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            reply["result"]["tools"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tools)?);
        return Ok(());
    }
    for t in &tools {
        let desc = t["description"].as_str().unwrap_or("");
        let short: String = desc.chars().take(90).collect();
        println!("{:<36} {short}", t["name"].as_str().unwrap_or("?"));
    }
    eprintln!("{} tools", tools.len());
    Ok(())
}
