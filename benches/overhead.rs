//! What mcpvisor costs: `tools/call` latency and throughput through the
//! daemon's `/mcp` versus straight to an identical simulator, measured side
//! by side in one run (rounds alternate between the two paths).
//!
//! `cargo bench --bench overhead` (env: BENCH_CALLS, BENCH_CONCURRENCY).
//! Everything runs on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::ClientConfig;
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;

const BIN: &str = env!("CARGO_BIN_EXE_mcpvisor");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a process and returns it with the URL from its first stdout line.
fn spawn(args: &[&str], config: Option<&std::path::Path>, prefix: &str) -> (Proc, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("MCPVISOR_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_owned();
    (Proc(child), url)
}

async fn connect(url: &str) -> RunningService<RoleClient, ClientConfig> {
    ClientConfig::default()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(url.to_owned()),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("connect")
}

async fn call(client: &RunningService<RoleClient, ClientConfig>) {
    let r = client
        .peer()
        .call_tool(CallToolRequestParams::new("asana_list_workspaces"))
        .await
        .expect("call");
    assert_ne!(r.is_error, Some(true));
}

/// Sequential latencies of `n` calls.
async fn latencies(client: &RunningService<RoleClient, ClientConfig>, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        call(client).await;
        out.push(t.elapsed());
    }
    out
}

/// Calls per second with `concurrency` callers making `n` calls in all.
async fn throughput(
    client: Arc<RunningService<RoleClient, ClientConfig>>,
    n: usize,
    concurrency: usize,
) -> f64 {
    let t = Instant::now();
    let per = n / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    call(&c).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (per * concurrency) as f64 / t.elapsed().as_secs_f64()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let rounds = 5;

    // The direct path: a simulator of our own on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (_sim, direct_url) = spawn(
        &["sim", "--http", &addr, "--unit-latency-ms", "0"],
        None,
        "mcpvisor-sim listening on ",
    );
    // The mcpvisor path: the daemon supervising an identical simulator.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "sim"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{port}", "--unit-latency-ms", "0"]
url = "http://127.0.0.1:{port}/mcp"
manifest = "builtin:asana"
[services.limits]
max_in_flight = 64
"#,
    )
    .unwrap();
    let (_daemon, base) = spawn(&["serve"], Some(&config), "mcpvisor listening on ");
    let via_url = format!("{base}/mcp");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Wait for the daemon's upstream to come up: retry a first call.
        let via = Arc::new(connect(&via_url).await);
        let direct = Arc::new(connect(&direct_url).await);
        for _ in 0..200 {
            if via.peer().call_tool(CallToolRequestParams::new("asana_list_workspaces")).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Warm both paths.
        latencies(&direct, 200).await;
        latencies(&via, 200).await;

        let mut lat = [Vec::new(), Vec::new()];
        let mut tput = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            // Alternate the order so drift hits both paths alike.
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let client = if which == 0 { &direct } else { &via };
                lat[which].extend(latencies(client, calls / rounds).await);
                tput[which].push(throughput(client.clone(), calls, concurrency).await);
            }
        }
        println!("tools/call asana_list_workspaces, 2026-07-28 client, {calls} sequential calls per path, \
                  throughput with {concurrency} concurrent callers, {rounds} alternating rounds");
        println!("{:<10} {:>9} {:>9} {:>9} {:>12}", "path", "p50 ms", "p99 ms", "mean ms", "calls/s");
        let mut p50 = [0.0; 2];
        let mut rate = [0.0; 2];
        for (which, name) in [(0, "direct"), (1, "mcpvisor")] {
            let v = &mut lat[which];
            v.sort();
            let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1000.0;
            p50[which] = pct(v, 0.5);
            rate[which] = median(&mut tput[which]);
            println!("{:<10} {:>9.3} {:>9.3} {:>9.3} {:>12.0}", name, p50[which], pct(v, 0.99), mean, rate[which]);
        }
        println!(
            "overhead: p50 +{:.3} ms ({:.2}x), throughput {:.2}x of direct",
            p50[1] - p50[0],
            p50[1] / p50[0],
            rate[1] / rate[0]
        );
    });
}
