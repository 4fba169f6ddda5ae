//! SEP-2322 `input_required` rounds through mcpvisor: a 2026-07-28 client
//! answers them itself, retrying with its answers and the state it was
//! given, which brings the retry back to the replica that asked; a session
//! client is asked on its call's stream and never sees a round.

mod common;

use common::{Daemon, conformance_target};
use serde_json::{Value, json};

fn daemon() -> Daemon {
    let target = conformance_target();
    let replica = |name: &str| {
        format!(
            r#"
[[services]]
name = "{name}"
group = "target"
transport = "streamable_http"
command = "{}"
args = ["--http", "127.0.0.1:{{port}}"]
url = "http://127.0.0.1:{{port}}/mcp"
"#,
            target.display()
        )
    };
    Daemon::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}{}",
        replica("one"),
        replica("two")
    ))
}

/// A 2026-07-28 `tools/call` with `extra` params; the JSON-RPC reply.
fn call(d: &Daemon, tool: &str, extra: Value, capabilities: Value) -> Value {
    let mut params = json!({"name": tool, "arguments": {}});
    if let (Some(p), Value::Object(more)) = (params.as_object_mut(), extra) {
        p.extend(more);
    }
    d.mcp("tools/call", params, capabilities)
}

fn all() -> Value {
    json!({"sampling": {}, "elicitation": {}, "roots": {}})
}

#[test]
fn a_2026_client_answers_rounds_that_return_to_the_replica_that_asked() {
    let d = daemon();
    let tool = "test_input_required_result_multi_round";
    let r1 = call(&d, tool, json!({}), all());
    let result = &r1["result"];
    assert_eq!(result["resultType"], "input_required", "{r1}");
    assert!(result["inputRequests"]["step1"].is_object(), "{r1}");
    let s1 = result["requestState"].as_str().unwrap().to_owned();
    assert!(s1.starts_with("mcpvisor1."), "{s1}");

    let r2 = call(
        &d,
        tool,
        json!({"requestState": s1,
               "inputResponses": {"step1": {"action": "accept", "content": {"name": "Ada"}}}}),
        all(),
    );
    let s2 = r2["result"]["requestState"].as_str().unwrap().to_owned();
    assert_eq!(r2["result"]["resultType"], "input_required", "{r2}");
    assert_ne!(s1, s2);

    let r3 = call(
        &d,
        tool,
        json!({"requestState": s2,
               "inputResponses": {"step2": {"action": "accept", "content": {"color": "blue"}}}}),
        all(),
    );
    assert_eq!(r3["result"]["resultType"], "complete", "{r3}");
    assert_eq!(r3["result"]["content"][0]["text"], "colour: blue");

    // Each replica signs its state with its own key: the rounds above only
    // succeed because every retry went back to the one that asked.
    let (_, services) = d.get("/api/services");
    let calls: Vec<u64> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["callsOk"].as_u64().unwrap())
        .collect();
    assert!(calls.contains(&0) && calls.contains(&3), "{calls:?}");
}

#[test]
fn altered_or_foreign_state_is_refused_and_capabilities_are_respected() {
    let d = daemon();
    let tool = "test_input_required_result_tampered_state";
    let r1 = call(&d, tool, json!({}), all());
    let state = r1["result"]["requestState"].as_str().unwrap();
    let answers = json!({"confirm": {"action": "accept", "content": {"ok": true}}});
    // Altered: the upstream that issued it refuses it.
    let r2 = call(
        &d,
        tool,
        json!({"requestState": format!("{state}-TAMPERED"), "inputResponses": answers}),
        all(),
    );
    assert_eq!(r2["error"]["code"], -32602, "{r2}");
    // Not mcpvisor's: refused before anything is sent.
    let r3 = call(
        &d,
        tool,
        json!({"requestState": "made-up", "inputResponses": answers}),
        all(),
    );
    assert_eq!(r3["error"]["code"], -32602, "{r3}");
    assert!(
        r3["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requestState")
    );

    // The upstream hears this caller's capabilities: sampling only.
    let r = call(
        &d,
        "test_input_required_result_capabilities",
        json!({}),
        json!({"sampling": {}}),
    );
    let requests = r["result"]["inputRequests"].as_object().unwrap();
    let methods: Vec<&str> = requests
        .values()
        .filter_map(|q| q["method"].as_str())
        .collect();
    assert_eq!(methods, ["sampling/createMessage"], "{r}");
}
