//! The revision spoken upstream: negotiated by default, or the one a
//! service's config names, which is never negotiated away.

mod common;

use std::time::Duration;

use common::Daemon;

fn config(sim_protocols: &str, protocol: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "sim"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{{port}}", "--protocols", "{sim_protocols}"]
url = "http://127.0.0.1:{{port}}/mcp"
manifest = "builtin:asana"
protocol = "{protocol}"
[services.restart]
backoff_initial_ms = 50
"#
    )
}

#[test]
fn auto_negotiates_down_and_a_pinned_revision_is_kept_or_refused() {
    // Auto: a server without 2026-07-28 gets its newest session revision.
    let d = Daemon::start(&config("2025-06-18", "auto"));
    assert_eq!(d.service("sim")["protocol"], "2025-06-18");
    drop(d);

    // Pinned to a session revision the server also speaks: kept.
    let d = Daemon::start(&config("2026-07-28,2025-11-25", "2025-11-25"));
    assert_eq!(d.service("sim")["protocol"], "2025-11-25");
    drop(d);

    // Pinned to 2026-07-28, which the server lacks: refused, not downgraded.
    let d = Daemon::start_with(&config("2025-11-25", "2026-07-28"), false);
    d.wait_until("the refusal", Duration::from_secs(15), |d| {
        let s = d.service("sim");
        ["lastError", "lastExit"].iter().any(|k| {
            s[k].as_str()
                .is_some_and(|e| e.contains("configured protocol 2026-07-28"))
        })
    });
    assert_ne!(d.service("sim")["state"], "ready");
}
