//! The result cache: repeated reads are hits, identical calls in flight
//! share one upstream call, writes make reads stale, results expire and
//! stay within their bounds, errors are never kept, and a caller can go
//! around it. The simulator's own call count proves what reached it.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Daemon, client, parse_sse};
use serde_json::{Value, json};

const TASK: &str = "1200000000000100";
const OTHER_TASK: &str = "1200000000000101";

/// One HTTP replica with the cache on; `cache` adds to the `[cache]`
/// section.
fn config(latency_ms: u64, cache: &str) -> String {
    common::web_sim(latency_ms, &format!("[cache]\nenabled = true\n{cache}"))
}

/// The result event of a `/api/mcp/stream` call with `body`.
fn call(d: &Daemon, body: Value) -> Value {
    let text = client()
        .post(d.url("/api/mcp/stream"))
        .json(&body)
        .send()
        .and_then(|r| r.text())
        .expect("stream call");
    parse_sse(&text)
        .into_iter()
        .find(|e| e.event == "result")
        .unwrap_or_else(|| panic!("no result: {text}"))
        .data
}

fn get_task(d: &Daemon, task: &str) -> Value {
    call(
        d,
        json!({"toolName": "asana_get_task", "arguments": {"task_id": task}}),
    )
}

fn name_of(result: &Value) -> String {
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    v["data"]["name"].as_str().unwrap_or_default().to_owned()
}

fn cache_stats(d: &Daemon) -> Value {
    d.get("/api/cache").1
}

#[test]
fn a_repeated_read_is_a_hit_whatever_its_key_order() {
    let d = Daemon::start(&config(0, ""));
    let first = call(
        &d,
        json!({"toolName": "asana_get_task", "arguments": {"task_id": TASK, "opt_fields": "name,notes"}}),
    );
    assert!(first.get("cached").is_none(), "{first}");
    // The same arguments, keys the other way round.
    let again = call(
        &d,
        json!({"toolName": "asana_get_task", "arguments": {"opt_fields": "name,notes", "task_id": TASK}}),
    );
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["content"], first["content"]);
    assert_eq!(d.sim_calls("web"), 1);

    let stats = cache_stats(&d);
    assert_eq!(stats["hits"], 1, "{stats}");
    assert_eq!(stats["misses"], 1, "{stats}");
    assert_eq!(stats["entries"], 1, "{stats}");
    assert!(stats["bytes"].as_u64() > Some(0), "{stats}");
    let metrics = d.metrics_text();
    assert!(
        metrics.contains(r#"mcpvisor_cache_lookups_total{group="asana",outcome="hit"} 1"#),
        "{metrics}"
    );

    // Asked to, it goes upstream, and the answer does not replace the entry.
    let bypass = call(
        &d,
        json!({"toolName": "asana_get_task", "arguments": {"task_id": TASK},
               "streamingOptions": {"noCache": true}}),
    );
    assert!(bypass.get("cached").is_none(), "{bypass}");
    assert_eq!(d.sim_calls("web"), 2);

    // An admin empties it.
    let r = client()
        .delete(d.url("/api/cache"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(get_task(&d, TASK).get("cached").is_none());
    assert_eq!(d.sim_calls("web"), 3);
}

#[test]
fn ten_identical_calls_at_once_make_one_upstream_call() {
    let d = Daemon::start(&config(600, ""));
    let base = d.base.clone();
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                let text = client()
                    .post(format!("{base}/api/mcp/stream"))
                    .json(&json!({"toolName": "asana_get_task", "arguments": {"task_id": TASK}}))
                    .send()
                    .and_then(|r| r.text())
                    .unwrap_or_default();
                parse_sse(&text)
                    .into_iter()
                    .find(|e| e.event == "result")
                    .map(|e| e.data)
            })
        })
        .collect();
    let results: Vec<Value> = callers
        .into_iter()
        .map(|t| t.join().unwrap().expect("every caller gets a result"))
        .collect();
    assert!(results.iter().all(|r| r["isError"] == false), "{results:?}");
    assert_eq!(d.sim_calls("web"), 1, "{results:?}");
    let shared = results
        .iter()
        .filter(|r| r["coalesced"] == true || r["cached"] == true)
        .count();
    assert_eq!(shared, 9, "{results:?}");
}

#[test]
fn a_waiter_that_leaves_does_not_cancel_the_others() {
    let d = Daemon::start(&config(2_500, ""));
    let base = d.base.clone();
    // The first caller gives up before the upstream answers.
    let impatient = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(1_200))
            .build()
            .unwrap()
            .post(format!("{base}/api/mcp/stream"))
            .json(&json!({"toolName": "asana_get_task", "arguments": {"task_id": TASK}}))
            .send()
            .and_then(|r| r.text())
            .is_err()
    });
    assert!(
        common::eventually(Duration::from_secs(5), || d.sim_calls("web") == 1),
        "the first call reached the upstream"
    );
    let patient = get_task(&d, TASK);
    assert!(impatient.join().unwrap(), "the first caller timed out");
    assert_eq!(patient["isError"], false, "{patient}");
    assert_eq!(patient["coalesced"], true, "{patient}");
    assert_eq!(d.sim_calls("web"), 1);
}

#[test]
fn a_write_makes_the_services_reads_stale() {
    let d = Daemon::start(&config(0, ""));
    let before = get_task(&d, TASK);
    assert_eq!(get_task(&d, TASK)["cached"], true);
    let renamed = format!("renamed {}", name_of(&before));
    let update = call(
        &d,
        json!({"toolName": "asana_update_task", "arguments": {"task_id": TASK, "name": renamed}}),
    );
    assert_eq!(update["isError"], false, "{update}");
    let after = get_task(&d, TASK);
    assert!(after.get("cached").is_none(), "{after}");
    assert_eq!(name_of(&after), renamed);
    assert_eq!(get_task(&d, TASK)["cached"], true);
}

#[test]
fn results_expire_and_stay_within_their_bounds_and_errors_are_not_kept() {
    let d = Daemon::start(&config(0, "default_ttl_ms = 400\nmax_entries = 2"));
    let stored = Instant::now();
    get_task(&d, TASK);
    assert_eq!(get_task(&d, TASK)["cached"], true);
    // A miss comes once the TTL has run out, never before.
    assert!(common::eventually(Duration::from_secs(10), || {
        get_task(&d, TASK).get("cached").is_none()
    }));
    assert!(stored.elapsed() >= Duration::from_millis(400));

    // Two entries at most.
    for task in [TASK, OTHER_TASK, "1200000000000102", "1200000000000103"] {
        get_task(&d, task);
    }
    let stats = cache_stats(&d);
    assert!(stats["entries"].as_u64() <= Some(2), "{stats}");
    assert!(stats["evictions"].as_u64() >= Some(1), "{stats}");
    let metrics = d.metrics_text();
    assert!(
        metrics.contains("mcpvisor_cache_evictions_total"),
        "{metrics}"
    );

    // A tool error is never served from the cache.
    let calls = d.sim_calls("web");
    let missing = get_task(&d, "1299999999999999");
    assert_eq!(missing["isError"], true, "{missing}");
    let again = get_task(&d, "1299999999999999");
    assert!(again.get("cached").is_none(), "{again}");
    assert_eq!(d.sim_calls("web"), calls + 2);
}

#[test]
fn per_client_results_never_cross_clients_and_off_means_off() {
    let clients = r#"
[[auth.clients]]
name = "alice"
token = "alice-token-0123456789"
scopes = ["call", "read"]
[[auth.clients]]
name = "bob"
token = "bob-token-0123456789"
scopes = ["call", "read"]
"#;
    let d = Daemon::start_logged(
        &format!("{}{clients}", config(0, "scope = \"per_client\"")),
        &[],
        Some("alice-token-0123456789"),
    );
    let as_client = |token: &str| {
        let text = client()
            .post(d.url("/api/mcp/stream"))
            .bearer_auth(token)
            .json(&json!({"toolName": "asana_get_task", "arguments": {"task_id": TASK}}))
            .send()
            .and_then(|r| r.text())
            .unwrap();
        parse_sse(&text)
            .into_iter()
            .find(|e| e.event == "result")
            .unwrap_or_else(|| panic!("no result: {text}"))
            .data
    };
    assert!(as_client("alice-token-0123456789").get("cached").is_none());
    assert_eq!(as_client("alice-token-0123456789")["cached"], true);
    assert!(
        as_client("bob-token-0123456789").get("cached").is_none(),
        "alice's result went to bob"
    );
    assert_eq!(as_client("bob-token-0123456789")["cached"], true);

    let off = Daemon::start(&config(0, "").replace("enabled = true", "enabled = false"));
    get_task(&off, TASK);
    assert!(get_task(&off, TASK).get("cached").is_none());
    assert_eq!(off.sim_calls("web"), 2);
    assert_eq!(cache_stats(&off)["enabled"], false);
}

/// A stateless (2026-07-28) `tools/call` of `asana_get_task` on `/mcp`,
/// with `extra` in its `_meta`.
fn mcp_get_task(d: &Daemon, extra: Value) -> Value {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    if let (Some(m), Value::Object(extra)) = (meta.as_object_mut(), extra) {
        m.extend(extra);
    }
    let reply: Value = client()
        .post(d.url("/mcp"))
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "asana_get_task")
        .json(
            &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "asana_get_task", "arguments": {"task_id": TASK}, "_meta": meta}}),
        )
        .send()
        .and_then(|r| r.json())
        .expect("JSON reply");
    reply["result"].clone()
}

#[test]
fn mcp_clients_share_the_cache_and_can_go_around_it() {
    let d = Daemon::start(&config(0, ""));
    let first = mcp_get_task(&d, json!({}));
    assert_eq!(first["isError"], false, "{first}");
    assert!(
        first["_meta"].get("io.mcpvisor/cached").is_none(),
        "{first}"
    );
    let again = mcp_get_task(&d, json!({}));
    assert_eq!(again["_meta"]["io.mcpvisor/cached"], true, "{again}");
    assert_eq!(again["content"], first["content"]);
    // The SSE API reads the same entry.
    assert_eq!(get_task(&d, TASK)["cached"], true);
    assert_eq!(d.sim_calls("web"), 1);

    let around = mcp_get_task(&d, json!({"io.mcpvisor/noCache": true}));
    assert!(
        around["_meta"].get("io.mcpvisor/cached").is_none(),
        "{around}"
    );
    assert_eq!(d.sim_calls("web"), 2);
}
