//! `mcpvisor call`: one streamed tool call through a running daemon, with a
//! progress bar while the upstream reports progress and a count of the
//! chunks of an incremental tool's list as they arrive; the list is put
//! back together in the result printed at the end.

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
    /// Daemon base URL (or MCPVISOR_URL).
    #[arg(long, env = "MCPVISOR_URL", default_value = "http://127.0.0.1:3000")]
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
    let mut chunks = Chunks::default();
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
            "chunk" => {
                chunks.add(&data);
                if let Some(total) = chunks.total.filter(|t| *t > 0) {
                    bar.set_position((chunks.count * 100 / total) as u64);
                }
                bar.set_message(chunks.summary());
            }
            "result" => {
                bar.finish_and_clear();
                if chunks.count > 0 {
                    eprintln!("{}", chunks.summary());
                }
                if !args.events {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&chunks.reassemble(data))?
                    );
                }
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

/// The chunks of an incremental tool's list, as they arrive.
#[derive(Default)]
struct Chunks {
    count: usize,
    total: Option<usize>,
    items: Vec<Value>,
}

impl Chunks {
    fn add(&mut self, chunk: &Value) {
        self.count += 1;
        self.total = chunk["totalChunks"].as_u64().map(|t| t as usize);
        if let Some(items) = chunk["items"].as_array() {
            self.items.extend(items.iter().cloned());
        }
    }

    fn summary(&self) -> String {
        match self.total {
            Some(total) => format!(
                "chunk {} of {total}, {} items",
                self.count,
                self.items.len()
            ),
            None => format!("{} chunks, {} items", self.count, self.items.len()),
        }
    }

    /// The result with the list back in place: the daemon sends the list
    /// in chunks and an empty array where it was.
    fn reassemble(&mut self, mut result: Value) -> Value {
        if self.count == 0 {
            return result;
        }
        let pointer = result["chunked"]["pointer"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let slot = result
            .get_mut("structuredContent")
            .and_then(|s| s.pointer_mut(&pointer));
        if let Some(Value::Array(list)) = slot {
            *list = std::mem::take(&mut self.items);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_counted_and_put_back_in_place() {
        let mut chunks = Chunks::default();
        chunks.add(&json!({"index": 0, "totalChunks": 2, "count": 2, "items": [1, 2]}));
        assert_eq!(chunks.summary(), "chunk 1 of 2, 2 items");
        chunks.add(&json!({"index": 1, "totalChunks": 2, "count": 1, "items": [3]}));
        let result = json!({
            "chunked": {"chunks": 2, "items": 3, "pointer": "/data"},
            "structuredContent": {"data": [], "next_page": null},
        });
        let whole = chunks.reassemble(result);
        assert_eq!(whole["structuredContent"]["data"], json!([1, 2, 3]));
        assert_eq!(whole["structuredContent"]["next_page"], Value::Null);
    }
}
