//! `mcpvisor status`: the services and active alerts of a running daemon,
//! as a table (or the combined JSON with `--json`); `--watch` redraws it
//! until Ctrl-C.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Daemon base URL (or MCPVISOR_URL).
    #[arg(long, env = "MCPVISOR_URL", default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Bearer token, where the daemon wants one for reading (or
    /// MCPVISOR_ADMIN_TOKEN).
    #[arg(long, env = "MCPVISOR_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the services, tools, sessions, active alerts and health as
    /// one JSON object.
    #[arg(long)]
    json: bool,
    /// Redraw every SECS seconds (default 2) until Ctrl-C.
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        default_missing_value = "2"
    )]
    watch: Option<f64>,
    /// Deadline of each request to the daemon, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let interval = match args.watch {
        Some(s) if !(s.is_finite() && s >= 0.1) => {
            bail!("--watch: `{s}` is not a number of seconds (at least 0.1)")
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .build()?;
    let token = args.token.as_deref().filter(|t| !t.is_empty());
    let render = |status: &Value| -> anyhow::Result<String> {
        if args.json {
            Ok(format!("{}\n", serde_json::to_string_pretty(status)?))
        } else {
            Ok(table(status))
        }
    };

    // The first snapshot must come, even when watching: a wrong URL fails
    // at once.
    let first = fetch(&client, &base, token).await?;
    let Some(interval) = interval else {
        print!("{}", render(&first)?);
        return Ok(());
    };

    let terminal = std::io::stdout().is_terminal();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut snapshot = Ok(first);
    let mut frames = 0u64;
    loop {
        let frame = match &snapshot {
            Ok(status) => render(status)?,
            Err(e) => {
                if !terminal {
                    eprintln!("error: {e:#}");
                }
                format!(
                    "{e:#}\n(retrying every {})\n",
                    human_secs(interval.as_secs_f64())
                )
            }
        };
        if terminal {
            // Home, clear, then the frame: one write, so it does not flicker.
            print!("\x1b[H\x1b[2J{frame}");
        } else if snapshot.is_ok() {
            if frames > 0 {
                println!();
            }
            print!("{frame}");
            frames += 1;
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        snapshot = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            s = fetch(&client, &base, token) => s,
        };
    }
}

/// `GET /api/services`, `/api/alerts?active=true` and `/api/health` (for
/// latency percentiles; optional), combined: the services body with the
/// daemon's URL, its active alerts and its health added.
async fn fetch(client: &reqwest::Client, base: &str, token: Option<&str>) -> anyhow::Result<Value> {
    let (services, alerts, health) = tokio::join!(
        get(client, base, "/api/services", token),
        get(client, base, "/api/alerts?active=true", token),
        get(client, base, "/api/health", token),
    );
    let mut status = services?;
    let alerts = alerts?;
    let Some(obj) = status.as_object_mut() else {
        bail!("{base}/api/services: not a JSON object");
    };
    obj.insert("url".into(), json!(base));
    obj.insert("alerts".into(), alerts["alerts"].clone());
    obj.insert("health".into(), health.unwrap_or(Value::Null));
    Ok(status)
}

/// One JSON GET, its errors naming the URL.
async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let url = format!("{base}{path}");
    let mut request = client.get(&url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach mcpvisor at {base}"))?;
    let status = response.status();
    if !status.is_success() {
        let body: Value = response.json().await.unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("");
        let hint = if matches!(status.as_u16(), 401 | 403) {
            " (--token or MCPVISOR_ADMIN_TOKEN)"
        } else {
            ""
        };
        bail!("{url}: {status}: {message}{hint}");
    }
    response
        .json()
        .await
        .with_context(|| format!("{url}: the answer is not JSON"))
}

/// The text of one snapshot: a header line, the services, the alerts.
fn table(status: &Value) -> String {
    let empty = Vec::new();
    let services = status["services"].as_array().unwrap_or(&empty);
    let ready = services.iter().filter(|s| s["state"] == "ready").count();
    let mut out = format!(
        "mcpvisor at {}: {ready}/{} services ready, {} tools, {} MCP sessions\n\n",
        status["url"].as_str().unwrap_or("?"),
        services.len(),
        status["tools"],
        status["mcpSessions"],
    );

    let p50 = |name: &str| {
        status["health"]["services"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["service"] == name))
            .and_then(|h| h["p50Ms"].as_f64())
    };
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let name = text(&s["name"]);
            let mut state = text(&s["state"]);
            if s["suspect"] == true {
                state.push_str(" (suspect)");
            }
            let mut in_flight = text(&s["inFlight"]);
            if let Some(q) = s["queued"].as_u64().filter(|q| *q > 0) {
                in_flight.push_str(&format!(" +{q} queued"));
            }
            // The health history's median, else the calls' moving average.
            let latency = match p50(&name) {
                Some(ms) => human_ms(ms),
                None => match s["latencyEwmaMs"].as_f64() {
                    Some(ms) if ms > 0.0 => format!("~{}", human_ms(ms)),
                    _ => "-".into(),
                },
            };
            // Per-service tool counts, where the daemon reports them.
            let tools = match &s["tools"] {
                Value::Array(a) => a.len().to_string(),
                Value::Number(n) => n.to_string(),
                _ => "-".into(),
            };
            vec![
                name,
                text(&s["group"]),
                state,
                text(&s["health"]),
                text(&s["breaker"]),
                text(&s["restarts"]),
                in_flight,
                latency,
                tools,
            ]
        })
        .collect();
    out.push_str(&columns(
        &[
            "NAME",
            "GROUP",
            "STATE",
            "HEALTH",
            "BREAKER",
            "RESTARTS",
            "IN-FLIGHT",
            "P50",
            "TOOLS",
        ],
        &[false, false, false, false, false, true, true, true, true],
        &rows,
    ));

    let alerts = status["alerts"].as_array().unwrap_or(&empty);
    out.push('\n');
    if alerts.is_empty() {
        out.push_str("no active alerts\n");
        return out;
    }
    out.push_str(&format!("{} active alert(s)\n", alerts.len()));
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let service = a["service"]
                .as_str()
                .map_or_else(|| text(&a["group"]), str::to_owned);
            let since = a["durationMs"].as_f64().map_or_else(
                || "-".into(),
                |ms| format!("{} ago", human_secs(ms / 1000.0)),
            );
            vec![text(&a["severity"]), service, since, text(&a["message"])]
        })
        .collect();
    out.push_str(&columns(
        &["SEVERITY", "SERVICE", "SINCE", "MESSAGE"],
        &[false, false, true, false],
        &rows,
    ));
    out
}

/// A JSON value as a cell: strings bare, nothing as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Rows under headers, each column as wide as its widest cell (two spaces
/// apart; `right` ones right-aligned), the last one unpadded.
fn columns(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([headers[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let last = i + 1 == cells.len();
            if i > 0 {
                l.push_str("  ");
            }
            if right[i] {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                if !last {
                    l.push_str(&" ".repeat(pad));
                }
            }
        }
        l.truncate(l.trim_end().len());
        l.push('\n');
        l
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Milliseconds for a person: `0.8ms`, `12ms`, `1.4s`.
fn human_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

/// Seconds for a person: `45s`, `3m12s`, `2h05m`, `3d04h`.
fn human_secs(secs: f64) -> String {
    if secs < 10.0 && secs.fract() != 0.0 {
        return format!("{secs:.1}s");
    }
    let s = secs as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_right_align_numbers() {
        let rows = vec![
            vec!["a".to_owned(), "10".to_owned(), "x".to_owned()],
            vec!["longer".to_owned(), "2".to_owned(), "yy".to_owned()],
        ];
        assert_eq!(
            columns(&["NAME", "N", "LAST"], &[false, true, false], &rows),
            "NAME     N  LAST\na       10  x\nlonger   2  yy\n"
        );
    }

    #[test]
    fn the_table_shows_services_and_alerts() {
        let status = json!({
            "url": "http://127.0.0.1:3000",
            "tools": 42,
            "mcpSessions": 1,
            "services": [
                {"name": "a", "group": "g", "state": "ready", "health": "healthy",
                 "breaker": "closed", "restarts": 0, "inFlight": 1, "queued": 0,
                 "suspect": false, "latencyEwmaMs": 3.0},
                {"name": "b", "group": "g", "state": "restarting", "health": "unhealthy",
                 "breaker": "open", "restarts": 3, "inFlight": 0, "queued": 2,
                 "suspect": false, "latencyEwmaMs": 0.0},
            ],
            "alerts": [{"severity": "error", "service": "b", "group": "g",
                        "message": "b is down", "durationMs": 75_000}],
            "health": {"services": [{"service": "a", "p50Ms": 1.25}]},
        });
        let t = table(&status);
        assert!(
            t.starts_with(
                "mcpvisor at http://127.0.0.1:3000: 1/2 services ready, 42 tools, 1 MCP sessions\n"
            ),
            "{t}"
        );
        assert!(t.contains("a     g      ready"), "{t}");
        assert!(t.contains("1.2ms") || t.contains("1.3ms"), "{t}");
        assert!(t.contains("0 +2 queued"), "{t}");
        assert!(t.contains("1 active alert(s)"), "{t}");
        assert!(t.contains("error     b        1m15s ago  b is down"), "{t}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_secs(2.0), "2s");
        assert_eq!(human_secs(0.5), "0.5s");
        assert_eq!(human_secs(192.0), "3m12s");
        assert_eq!(human_secs(7500.0), "2h05m");
        assert_eq!(human_ms(0.84), "0.8ms");
        assert_eq!(human_ms(1400.0), "1.4s");
    }
}
