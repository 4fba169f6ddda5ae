//! `mcpvisor drill`: runs a restart or failover drill against a running
//! daemon, shows its steps live, and prints the report — a table, or one
//! JSON object with `--json`. Exits non-zero when the verdict is `fail`.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mcpvisor_actors::drill::{DrillKind, DrillReport, parse_duration};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// actor-panic, upstream-kill, upstream-hang, failover, restart-storm,
    /// outage or poison.
    kind: String,
    /// The replica to break (default: the preferred replica of the first
    /// logical service).
    #[arg(long)]
    service: Option<String>,
    /// Concurrent callers of the drill's load.
    #[arg(long)]
    load: Option<usize>,
    /// How long a hang, hold or outage lasts (e.g. 8s, 500ms).
    #[arg(long)]
    duration: Option<String>,
    /// The read-only tool the load calls.
    #[arg(long)]
    tool: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Daemon base URL (or MCPVISOR_URL).
    #[arg(long, env = "MCPVISOR_URL", default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Admin token (or MCPVISOR_ADMIN_TOKEN).
    #[arg(long, env = "MCPVISOR_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub async fn run(args: DrillArgs) -> anyhow::Result<()> {
    if DrillKind::parse(&args.kind).is_none() {
        let kinds: Vec<_> = DrillKind::ALL.iter().map(|k| k.as_str()).collect();
        bail!("no drill `{}`; kinds: {}", args.kind, kinds.join(", "));
    }
    let mut body = json!({});
    if let Some(s) = &args.service {
        body["service"] = json!(s);
    }
    if let Some(n) = args.load {
        body["load"] = json!(n);
    }
    if let Some(d) = &args.duration {
        let d = parse_duration(d).with_context(|| format!("--duration: cannot read `{d}`"))?;
        body["duration"] = json!(d.as_millis() as u64);
    }
    if let Some(t) = &args.tool {
        body["tool"] = json!(t);
    }
    let Some(token) = args.token.filter(|t| !t.is_empty()) else {
        bail!("drills need the admin token: --token or MCPVISOR_ADMIN_TOKEN");
    };
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/drills/{}",
            args.url.trim_end_matches('/'),
            args.kind
        ))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach mcpvisor at {}", args.url))?;
    if !response.status().is_success() {
        let status = response.status();
        let text: Value = response.json().await.unwrap_or_default();
        bail!(
            "{status}: {}",
            text["error"]["message"].as_str().unwrap_or("drill refused")
        );
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut phase = String::new();
    let mut report: Option<Value> = None;
    let mut failure: Option<Value> = None;
    let mut events = super::sse::Events::new(response);
    while let Some(next) = events.next().await {
        let (event, data) = next?;
        match event.as_str() {
            "phase" => {
                phase = format!(
                    "{}: {}",
                    data["name"].as_str().unwrap_or("?"),
                    data["detail"].as_str().unwrap_or("")
                );
                if !args.json {
                    bar.suspend(|| {
                        eprintln!(
                            "{:>7.1}s  {phase}",
                            data["at_ms"].as_f64().unwrap_or(0.0) / 1000.0
                        )
                    });
                }
                bar.set_message(phase.clone());
            }
            "progress" => bar.set_message(format!(
                "{phase}  [{} sent, {} ok, {} failed]",
                data["sent"], data["ok"], data["failed"]
            )),
            "report" => report = Some(data),
            "error" => failure = Some(data),
            _ => {}
        }
    }
    bar.finish_and_clear();
    if let Some(e) = failure {
        bail!(
            "{}",
            e["message"].as_str().unwrap_or("the drill failed to run")
        );
    }
    let report = report.context("the daemon closed the stream before the report")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let parsed: DrillReport =
            serde_json::from_value(report.clone()).context("unreadable drill report")?;
        print!("{}", parsed.table());
    }
    if report["verdict"] != "pass" {
        bail!("verdict: fail");
    }
    Ok(())
}
