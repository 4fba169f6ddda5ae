//! `mcpvisor call`: one streamed tool call through a running daemon, with a
//! progress bar while the upstream reports progress.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Tool name.
    tool: String,
    /// Arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// Daemon base URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Print every event as it arrives instead of a progress bar.
    #[arg(long)]
    events: bool,
}

pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    let arguments: Value = serde_json::from_str(&args.args).context("--args is not valid JSON")?;
    let body = json!({
        "toolName": args.tool,
        "arguments": arguments,
        "streamingOptions": {"enableProgress": true, "enableStatusUpdates": true},
    });
    let response = reqwest::Client::new()
        .post(format!("{}/api/mcp/stream", args.url.trim_end_matches('/')))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach mcpvisor at {}", args.url))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        bail!("{status}: {text}");
    }
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut events = super::sse::Events::new(response);
    let mut failed = None;
    while let Some(next) = events.next().await {
        let (event, data) = next?;
        if args.events {
            bar.suspend(|| println!("{event}: {data}"));
        }
        match event.as_str() {
            "progress" => {
                if let Some(p) = data["percentage"].as_f64() {
                    bar.set_position(p as u64);
                }
                if let Some(m) = data["message"].as_str() {
                    bar.set_message(m.to_owned());
                }
            }
            "status" => bar.set_message(data["message"].as_str().unwrap_or("").to_owned()),
            "result" if !args.events => {
                bar.finish_and_clear();
                println!("{}", serde_json::to_string_pretty(&data)?);
            }
            "error" => failed = Some(data),
            _ => {}
        }
    }
    bar.finish_and_clear();
    if let Some(e) = failed {
        bail!(
            "{}: {}",
            e["category"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
