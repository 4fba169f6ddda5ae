//! A frozen replica under load: the default two-replica daemon, eight
//! clients of a read-only tool, and the preferred (stdio) replica stopped
//! with SIGSTOP. Calls in flight on it are hedged to the other replica, it
//! is taken out of rotation within about one probe timeout, and it comes
//! back into rotation when it thaws. No call fails, none is slow.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, eventually};
use serde_json::json;

/// What one client saw.
#[derive(Default)]
struct Seen {
    ok: usize,
    failed: Vec<String>,
    worst: Duration,
    by_http_while_frozen: usize,
}

fn signal_group(pgid: u64, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} -{pgid}");
}

#[test]
fn a_frozen_preferred_replica_costs_no_call_and_no_slow_call() {
    let d = Daemon::start_default();
    let pgid = d.service("asana-stdio")["pid"].as_u64().expect("stdio pid");
    let frozen = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let base = d.base.clone();
            let (frozen, stop) = (frozen.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = common::client();
                let mut seen = Seen::default();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let r = client
                        .post(format!("{base}/api/mcp/stream"))
                        .json(
                            &json!({"toolName": "asana_list_workspaces", "arguments": {},
                               "streamingOptions": {"noCache": true}}),
                        )
                        .send()
                        .and_then(|r| r.text());
                    let took = started.elapsed();
                    seen.worst = seen.worst.max(took);
                    let events = r.map(|t| common::parse_sse(&t)).unwrap_or_default();
                    match events.iter().find(|e| e.event == "result") {
                        Some(e) => {
                            seen.ok += 1;
                            if frozen.load(Ordering::Relaxed) && e.data["service"] == "asana-http" {
                                seen.by_http_while_frozen += 1;
                            }
                        }
                        None => seen.failed.push(format!("{events:?}")),
                    }
                }
                seen
            })
        })
        .collect();
    // Load runs on both replicas' preferred one first.
    assert!(eventually(Duration::from_secs(10), || {
        d.service("asana-stdio")["callsOk"].as_u64() >= Some(50)
    }));

    signal_group(pgid, "-STOP");
    frozen.store(true, Ordering::Relaxed);
    // Out of rotation well before the freeze ends, without a restart.
    let suspect_seen = eventually(Duration::from_secs(4), || {
        d.service("asana-stdio")["suspect"] == true
    });
    let frozen_for = Duration::from_secs(4);
    std::thread::sleep(frozen_for.saturating_sub(Duration::from_millis(100)));
    frozen.store(false, Ordering::Relaxed);
    signal_group(pgid, "-CONT");

    // Back in rotation once it answers again.
    let back = eventually(Duration::from_secs(15), || {
        let s = d.service("asana-stdio");
        s["state"] == "ready" && s["suspect"] == false
    });
    let calls_before = d.service("asana-stdio")["callsOk"].as_u64().unwrap_or(0);
    let serving_again = eventually(Duration::from_secs(10), || {
        d.service("asana-stdio")["callsOk"].as_u64() > Some(calls_before + 20)
    });
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    let failed: Vec<&String> = seen.iter().flat_map(|s| &s.failed).collect();
    let ok: usize = seen.iter().map(|s| s.ok).sum();
    let worst = seen.iter().map(|s| s.worst).max().unwrap_or_default();
    let moved: usize = seen.iter().map(|s| s.by_http_while_frozen).sum();
    eprintln!(
        "freeze: {ok} calls ok, {} failed, worst {worst:?}, {moved} served by asana-http while frozen",
        failed.len()
    );
    assert!(failed.is_empty(), "failed calls: {failed:?}");
    assert!(
        worst < Duration::from_millis(1500),
        "slowest call took {worst:?}"
    );
    assert!(moved > 0, "no call went to the other replica while frozen");
    assert!(suspect_seen, "the frozen replica was never suspect");
    assert!(back, "the thawed replica did not come back into rotation");
    assert!(serving_again, "the thawed replica took no calls again");
    let (_, metrics) = d.get("/api/metrics");
    let text = metrics.to_string();
    assert!(text.contains("hedges"), "no hedge counted: {text:.400}");
}
