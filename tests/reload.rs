//! Configuration reload while running: `SIGHUP` and `POST /api/reload`
//! start, stop and restart the services that changed, leave the others
//! (and their calls) alone, and refuse a broken file while the old
//! configuration keeps serving.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ADMIN_TOKEN, Daemon, PROJECT};
use serde_json::{Value, json};

/// A config with the given replicas of one logical service (`name`,
/// unit latency in ms), each a stdio simulator.
fn config(replicas: &[(&str, u64)]) -> String {
    let mut text = format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n");
    for (name, latency) in replicas {
        text.push_str(&format!(
            r#"
[[services]]
name = "{name}"
group = "asana"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", "--unit-latency-ms", "{latency}"]
manifest = "builtin:asana"
[services.health]
interval_ms = 200
"#
        ));
    }
    text
}

fn hangup(d: &Daemon) {
    let status = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

fn names(d: &Daemon) -> Vec<String> {
    let (_, body) = d.get("/api/services");
    body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

fn alerts(d: &Daemon, active: bool) -> Vec<Value> {
    let path = if active {
        "/api/alerts?active=true"
    } else {
        "/api/alerts"
    };
    d.get(path).1["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn sighup_adds_a_service_while_a_stream_on_another_completes() {
    let d = Daemon::start_logged(&config(&[("one", 20)]), &[], None);
    let file = d.dir().join("mcpvisor.toml");
    let pid = d.pid();
    let first_generation = d.service("one")["generation"].clone();
    std::thread::scope(|s| {
        // ~2 s of progress on `one`, across the reload.
        let call = s.spawn(|| {
            d.stream(
                "asana_get_project_hierarchy",
                json!({"project_id": PROJECT}),
            )
        });
        d.wait_until("the call to be in flight", Duration::from_secs(10), |d| {
            d.service("one")["inFlight"].as_u64() > Some(0)
        });
        std::fs::write(&file, config(&[("one", 20), ("two", 1)])).unwrap();
        hangup(&d);
        d.wait_until("`two` to be ready", Duration::from_secs(20), |d| {
            d.service("two")["state"] == "ready"
        });
        let events = call.join().unwrap();
        let progress = events.iter().filter(|e| e.event == "progress").count();
        assert_eq!(progress, 106, "the stream on `one` went on");
        assert!(events.iter().any(|e| e.event == "result"), "{events:?}");
    });
    assert_eq!(d.pid(), pid);
    assert_eq!(
        d.service("one")["generation"],
        first_generation,
        "an unchanged service is not restarted"
    );
    assert_eq!(names(&d), ["one", "two"]);
    assert!(d.log().contains("configuration reloaded"), "{}", d.log());
    let reloaded = alerts(&d, false)
        .into_iter()
        .find(|a| {
            a["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("config_reloaded"))
        })
        .expect("the reload in the alert history");
    assert!(
        reloaded["message"].as_str().unwrap().contains("added two"),
        "{reloaded}"
    );
}

#[test]
fn a_broken_file_is_refused_and_the_daemon_keeps_serving() {
    let d = Daemon::start_logged(&config(&[("one", 1)]), &[], None);
    let file = d.dir().join("mcpvisor.toml");
    let broken = config(&[("one", 1)]).replace("interval_ms = 200", "interval_ms = \"often\"");
    std::fs::write(&file, &broken).unwrap();
    hangup(&d);
    d.wait_until("the refusal alert", Duration::from_secs(10), |d| {
        alerts(d, true).iter().any(|a| a["key"] == "config_refused")
    });
    let alert = alerts(&d, true)
        .into_iter()
        .find(|a| a["key"] == "config_refused")
        .unwrap();
    let message = alert["message"].as_str().unwrap();
    assert!(
        message.contains("mcpvisor.toml:") && message.contains("services[0].health.interval_ms"),
        "file, line and field: {message}"
    );
    // The API says the same, and the old configuration still serves.
    let r = common::client()
        .post(d.url("/api/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("interval_ms"),
        "{body}"
    );
    assert_eq!(d.service("one")["state"], "ready");
    let events = d.stream("asana_list_workspaces", json!({}));
    assert!(events.iter().any(|e| e.event == "result"), "{events:?}");

    // A good file afterwards applies, and the refusal alert closes.
    std::fs::write(&file, config(&[("one", 1), ("two", 1)])).unwrap();
    let r = common::client()
        .post(d.url("/api/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().unwrap();
    assert_eq!(body["added"], json!(["two"]), "{body}");
    assert!(
        !alerts(&d, true)
            .iter()
            .any(|a| a["key"] == "config_refused")
    );
}

#[test]
fn reload_removes_and_restarts_changed_services() {
    let d = Daemon::start(&config(&[("one", 1), ("two", 1)]));
    let file = d.dir().join("mcpvisor.toml");
    let old_pid = d.service("one")["pid"].clone();
    // Reloading needs the admin token.
    let unauthenticated = common::client().post(d.url("/api/reload")).send().unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);

    // `two` goes; `one` gets another latency (a changed spec); `three` comes.
    std::fs::write(&file, config(&[("one", 2), ("three", 1)])).unwrap();
    let r = common::client()
        .post(d.url("/api/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().unwrap();
    assert_eq!(body["removed"], json!(["two"]), "{body}");
    assert_eq!(body["restarted"], json!(["one"]), "{body}");
    assert_eq!(body["added"], json!(["three"]), "{body}");
    d.wait_until("the new set, ready", Duration::from_secs(20), |d| {
        names(d) == ["one", "three"]
            && ["one", "three"]
                .iter()
                .all(|s| d.service(s)["state"] == "ready")
    });
    assert_ne!(d.service("one")["pid"], old_pid, "`one` runs its new spec");
    let events = d.stream("asana_list_workspaces", json!({}));
    assert!(events.iter().any(|e| e.event == "result"), "{events:?}");
    // Nothing changed: nothing happens.
    let r = common::client()
        .post(d.url("/api/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    let body: Value = r.json().unwrap();
    assert_eq!(body["unchanged"], json!(["one", "three"]), "{body}");
    assert_eq!(body["restarted"], json!([]), "{body}");
}

/// A fragment of `services.d` with one stdio simulator replica.
fn fragment(name: &str) -> String {
    config(&[(name, 1)])
        .split_once("\n[[services]]")
        .map(|(_, rest)| format!("[[services]]{rest}"))
        .unwrap()
}

#[test]
fn services_d_fragments_and_server_lists_are_watched() {
    let dir = tempfile::tempdir().unwrap();
    let fragments = dir.path().join("services.d");
    std::fs::create_dir(&fragments).unwrap();
    std::fs::write(fragments.join("20-two.toml"), fragment("two")).unwrap();
    let main = format!(
        "{}[discovery]\nservices_dir = \"services.d\"\nmcp_servers_files = [\"desktop.json\"]\n",
        config(&[("one", 1)])
    );
    let d = Daemon::start_file_in(dir, "mcpvisor.toml", &main, &[]);
    assert_eq!(names(&d), ["one", "two"], "fragments are read at start");
    let ready = |d: &Daemon, want: &[&str]| {
        names(d) == want && want.iter().all(|s| d.service(s)["state"] == "ready")
    };
    let limit = Duration::from_secs(20);

    // A fragment added: started, without a signal.
    std::fs::write(fragments.join("30-three.toml"), fragment("three")).unwrap();
    d.wait_until("`three` from services.d", limit, |d| {
        ready(d, &["one", "two", "three"])
    });
    // A desktop server list appearing: its server is a service.
    let list = json!({"mcpServers": {"four": {"command": common::BIN,
        "args": ["sim", "--stdio", "--unit-latency-ms", "0"]}}});
    std::fs::write(d.dir().join("desktop.json"), list.to_string()).unwrap();
    d.wait_until("`four` from desktop.json", limit, |d| {
        ready(d, &["one", "two", "three", "four"])
    });
    // A fragment removed: its service stops and goes.
    std::fs::remove_file(fragments.join("20-two.toml")).unwrap();
    d.wait_until("`two` gone", limit, |d| ready(d, &["one", "three", "four"]));
    // A broken fragment: refused, naming it; everything keeps running.
    std::fs::write(
        fragments.join("40-bad.toml"),
        "[[services]]\nname = \"bad\"\ntransport = \"pigeon\"\n",
    )
    .unwrap();
    d.wait_until("the refusal", limit, |d| {
        alerts(d, true).iter().any(|a| {
            a["key"] == "config_refused"
                && a["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("40-bad.toml:3"))
        })
    });
    assert!(ready(&d, &["one", "three", "four"]));
    // `four` offers the same tools as the `asana` group: names are prefixed.
    let events = d.stream("asana.asana_list_workspaces", json!({}));
    assert!(events.iter().any(|e| e.event == "result"), "{events:?}");
}
