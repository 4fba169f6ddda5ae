//! Nobody unauthenticated runs a tool once client auth is configured;
//! Host and Origin are checked on every route; tokens from an OAuth issuer
//! are validated properly; a client sees and calls only its tools; secrets
//! appear nowhere; upstream headers go out exactly as configured.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{BIN, Daemon, client};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const CLIENT_TOKEN: &str = "client-token-0123456789abcdef";
const ADMIN: &str = common::ADMIN_TOKEN;

fn sim_service(extra: &str) -> String {
    format!(
        r#"
[[services]]
name = "asana"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", "--unit-latency-ms", "1"]
manifest = "builtin:asana"
{extra}
"#
    )
}

fn with_server(extra_server: &str, rest: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN}\"\n{extra_server}\n{rest}")
}

/// A 2026-07-28 `tools/call` or `tools/list` on /mcp with `auth` (a
/// bearer token) and extra headers; status and JSON body.
fn mcp(
    d: &Daemon,
    method: &str,
    params: Value,
    auth: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let mut r = client()
        .post(d.url("/mcp"))
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        r = r.header("mcp-name", name.to_owned());
    }
    if let Some(t) = auth {
        r = r.bearer_auth(t);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let res = r
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .send()
        .expect("POST /mcp");
    let status = res.status().as_u16();
    let h = res.headers().clone();
    (status, res.json().unwrap_or(Value::Null), h)
}

fn stream(
    d: &Daemon,
    tool: &str,
    args: Value,
    auth: Option<&str>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut r = client()
        .post(d.url("/api/mcp/stream"))
        .json(&json!({"toolName": tool, "arguments": args}));
    if let Some(t) = auth {
        r = r.bearer_auth(t);
    }
    let res = r.send().expect("POST /api/mcp/stream");
    let status = res.status().as_u16();
    let h = res.headers().clone();
    (status, res.text().unwrap_or_default(), h)
}

fn challenge(h: &reqwest::header::HeaderMap) -> String {
    h.get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_client_token_is_required_everywhere_but_the_probes() {
    let d = Daemon::start_logged(
        &with_server("", &sim_service("")),
        &[("MCPVISOR_CLIENT_TOKEN", CLIENT_TOKEN)],
        Some(CLIENT_TOKEN),
    );
    for auth in [None, Some("wrong-token-wrong-token")] {
        let (status, _, h) = mcp(
            &d,
            "tools/call",
            json!({"name": "asana_list_workspaces"}),
            auth,
            &[],
        );
        assert_eq!(status, 401, "/mcp with {auth:?}");
        assert!(challenge(&h).starts_with("Bearer"), "{h:?}");
        let (status, _, h) = stream(&d, "asana_list_workspaces", json!({}), auth);
        assert_eq!(status, 401, "/api/mcp/stream with {auth:?}");
        assert!(challenge(&h).starts_with("Bearer"));
        for path in ["/api/services", "/api/health", "/api/alerts", "/metrics"] {
            let s = client().get(d.url(path)).send().unwrap().status().as_u16();
            assert_eq!(s, 401, "{path} without a token");
        }
    }
    let (status, body, _) = mcp(
        &d,
        "tools/call",
        json!({"name": "asana_list_workspaces"}),
        Some(CLIENT_TOKEN),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["isError"], false, "{body}");
    let (status, text, _) = stream(&d, "asana_list_workspaces", json!({}), Some(CLIENT_TOKEN));
    assert_eq!(status, 200);
    assert!(text.contains("event: result"), "{text}");
    // A client token is no admin token.
    let s = client()
        .post(d.url("/api/services/asana/disable"))
        .bearer_auth(CLIENT_TOKEN)
        .send()
        .unwrap();
    assert_eq!(s.status().as_u16(), 403);
    assert!(challenge(s.headers()).contains("insufficient_scope"));
    // The admin token is.
    let s = client()
        .post(d.url("/api/drills/nope"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(s.status().as_u16(), 404, "admin got past the guard");
    // Percent-encoding a path does not change its class.
    for path in [
        "/api/%64rills/upstream-kill",
        "/api/%73ervices/asana/disable",
    ] {
        let s = client()
            .post(d.url(path))
            .bearer_auth(CLIENT_TOKEN)
            .send()
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(s, 403, "{path} with a client token");
    }
    let s = client()
        .post(d.url("/%6Dcp"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 401, "/%6Dcp without a token");
    // Probes stay open.
    for path in ["/readyz", "/healthz"] {
        assert_eq!(
            client().get(d.url(path)).send().unwrap().status().as_u16(),
            200
        );
    }
    // Tokens never reach the log.
    let log = d.log();
    assert!(
        !log.contains(CLIENT_TOKEN) && !log.contains(ADMIN),
        "a token in the log"
    );
    assert!(log.contains("client authentication on"), "{log}");
}

#[test]
fn a_client_limited_to_some_tools_sees_and_calls_only_those() {
    let config = with_server(
        "",
        &format!(
            r#"
[[auth.clients]]
name = "reader"
token = "{CLIENT_TOKEN}"
scopes = ["call", "read"]
tools = {{ allow = ["asana_get_*"] }}
{}"#,
            sim_service("")
        ),
    );
    let d = Daemon::start_logged(&config, &[], Some(CLIENT_TOKEN));
    let (_, body, _) = mcp(&d, "tools/list", json!({}), Some(CLIENT_TOKEN), &[]);
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(!names.is_empty());
    assert!(
        names.iter().all(|n| n.starts_with("asana_get_")),
        "{names:?}"
    );
    assert_eq!(body["result"]["cacheScope"], "private");
    let (_, listed) = d.get("/api/mcp/stream");
    assert!(
        listed["tools"].as_array().unwrap().iter().all(|t| t["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("asana_get_"))),
        "{listed}"
    );
    // Refused before anything is sent.
    let (_, body, _) = mcp(
        &d,
        "tools/call",
        json!({"name": "asana_delete_task", "arguments": {"task_id": "1200000000000100"}}),
        Some(CLIENT_TOKEN),
        &[],
    );
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert_eq!(
        body["result"]["_meta"]["io.mcpvisor/error"]["category"],
        "auth"
    );
    let (status, text, _) = stream(
        &d,
        "asana_delete_task",
        json!({"task_id": "1200000000000100"}),
        Some(CLIENT_TOKEN),
    );
    assert_eq!(status, 403, "{text}");
    let (status, text, _) = stream(
        &d,
        "asana_get_task",
        json!({"task_id": "1200000000000100"}),
        Some(CLIENT_TOKEN),
    );
    assert_eq!(status, 200);
    assert!(text.contains("event: result"), "{text}");
}

#[test]
fn foreign_origins_and_hosts_are_refused_on_every_route() {
    let d = Daemon::start(&with_server("", &sim_service("")));
    let routes = [
        "/mcp",
        "/api/mcp/stream",
        "/api/services",
        "/metrics",
        "/sse",
        "/message",
    ];
    for path in routes {
        let post = matches!(path, "/mcp" | "/api/mcp/stream" | "/message");
        let req = |h: (&str, &str)| {
            let r = if post {
                client().post(d.url(path)).json(&json!({}))
            } else {
                client().get(d.url(path))
            };
            r.header(h.0, h.1).send().unwrap().status().as_u16()
        };
        assert_eq!(
            req(("origin", "http://evil.example")),
            403,
            "Origin on {path}"
        );
        assert_eq!(req(("host", "evil.example:3000")), 403, "Host on {path}");
    }
    // A local page and a plain local call still work.
    let (status, body, h) = mcp(
        &d,
        "tools/call",
        json!({"name": "asana_list_workspaces"}),
        None,
        &[("origin", "http://localhost:5173")],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://localhost:5173")
    );
    let (status, text, _) = stream(&d, "asana_list_workspaces", json!({}), None);
    assert_eq!(status, 200);
    assert!(text.contains("event: result"));
    // A preflight from a local page learns what it may send.
    let r = client()
        .request(reqwest::Method::OPTIONS, d.url("/mcp"))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(
        r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("mcp-session-id")
    );
    // A name given in server.allowed_hosts is served.
    let d = Daemon::start(&with_server(
        "allowed_hosts = [\"mcp.internal\"]",
        &sim_service(""),
    ));
    let s = client()
        .get(d.url("/api/services"))
        .header("host", "mcp.internal:3000")
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 200);
}

#[test]
fn a_wildcard_origin_and_an_open_non_loopback_listener_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let wild = write("wild.toml", "[server]\nallowed_origins = [\"*\"]\n");
    let (ok, _, err) = common::check_config_file(&wild);
    assert!(!ok);
    assert!(
        err.contains("wild.toml:2") && err.contains("server.allowed_origins"),
        "{err}"
    );
    // Refused before anything is bound.
    let open = write(
        "open.toml",
        &format!("[server]\nlisten = \"0.0.0.0:0\"\n{}", sim_service("")),
    );
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&open)
        .env("MCPVISOR_LOG", "error")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("without client authentication"), "{err}");
}

#[test]
fn json_rpc_ids_of_the_wrong_type_are_invalid_requests() {
    let d = Daemon::start(&with_server("", &sim_service("")));
    for id in [json!(true), json!([]), json!({}), Value::Null] {
        let r = client()
            .post(d.url("/mcp"))
            .header("accept", "application/json")
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "id {id}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["error"]["code"], -32600, "id {id}: {body}");
    }
}

#[test]
fn a_client_over_its_rate_gets_429_with_retry_after() {
    let config = with_server(
        "",
        &format!(
            r#"
[[auth.clients]]
name = "slow"
token = "{CLIENT_TOKEN}"
scopes = ["call", "read"]
requests_per_second = 1
[auth.limits]
burst = 1
{}"#,
            sim_service("")
        ),
    );
    let d = Daemon::start_logged(&config, &[], Some(CLIENT_TOKEN));
    let statuses: Vec<(u16, Option<String>)> = (0..4)
        .map(|_| {
            let r = client()
                .get(d.url("/api/alerts"))
                .bearer_auth(CLIENT_TOKEN)
                .send()
                .unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (r.status().as_u16(), retry)
        })
        .collect();
    assert!(
        statuses.iter().any(|(s, r)| *s == 429 && r.is_some()),
        "{statuses:?}"
    );
}

// ---- OAuth 2.1 resource server -------------------------------------------

/// An Ed25519 key pair: the private half as PKCS#8 DER, for minting.
fn ed25519_key(seed_byte: u8) -> EncodingKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let seed: Vec<u8> = (0..32u8)
        .map(|i| {
            i.wrapping_mul(31)
                .wrapping_add(seed_byte)
                .wrapping_add(fastrand::u8(..))
        })
        .collect();
    der.extend_from_slice(&seed);
    EncodingKey::from_ed_der(&der)
}

/// Serves `jwks` at `http://127.0.0.1:PORT/jwks` until the test ends;
/// counts the fetches.
fn serve_jwks(jwks: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = fetches.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
            let mut rest = [0u8; 1];
            let _ = s.read(&mut rest);
        }
    });
    (url, fetches)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn oauth_access_tokens_are_validated_and_the_metadata_is_linked() {
    let key = ed25519_key(1);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some("k1".into());
    let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    let (jwks_url, fetches) = serve_jwks(jwks);
    let issuer = "https://issuer.test";
    let resource = "http://127.0.0.1:3000/mcp";
    let config = with_server(
        "",
        &format!(
            r#"
[auth.oauth]
issuer = "{issuer}"
resource = "{resource}"
jwks_url = "{jwks_url}"
leeway_secs = 5
{}"#,
            sim_service("")
        ),
    );
    let mint = |key: &EncodingKey, kid: &str, claims: Value| {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        encode(&h, &claims, key).unwrap()
    };
    let good = json!({"iss": issuer, "aud": resource, "sub": "alice", "exp": now() + 300,
                      "scope": "call read"});
    let valid = mint(&key, "k1", good.clone());
    let d = Daemon::start_logged(&config, &[], Some(&valid));

    let call = |token: &str| {
        mcp(
            &d,
            "tools/call",
            json!({"name": "asana_list_workspaces"}),
            Some(token),
            &[],
        )
        .0
    };
    assert_eq!(call(&valid), 200);
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        mint(&key, "k1", c)
    };
    let expired = with(json!({"exp": now() - 600}));
    let not_yet = with(json!({"nbf": now() + 600}));
    let wrong_aud = with(json!({"aud": "http://127.0.0.1:9999/mcp"}));
    let wrong_iss = with(json!({"iss": "https://other.test"}));
    let other_key = ed25519_key(2);
    let wrong_sig = mint(&other_key, "k1", good.clone());
    let unknown_kid = mint(&key, "k9", good.clone());
    let alg_none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
            b64.encode(good.to_string())
        )
    };
    for (what, token) in [
        ("expired", &expired),
        ("not yet valid", &not_yet),
        ("wrong audience", &wrong_aud),
        ("wrong issuer", &wrong_iss),
        ("wrong signature", &wrong_sig),
        ("unknown kid", &unknown_kid),
        ("alg none", &alg_none),
    ] {
        assert_eq!(call(token), 401, "{what} accepted");
    }
    // An unknown kid made the daemon look again — once, not per request.
    let seen = fetches.load(std::sync::atomic::Ordering::Relaxed);
    assert!((2..=3).contains(&seen), "JWKS fetched {seen} times");
    // A token without the admin scope is no admin.
    let s = client()
        .post(d.url("/api/services/asana/disable"))
        .bearer_auth(&valid)
        .send()
        .unwrap();
    assert_eq!(s.status().as_u16(), 403);
    // The 401 points at the metadata, which names the issuer.
    let (status, _, h) = mcp(&d, "tools/list", json!({}), None, &[]);
    assert_eq!(status, 401);
    let c = challenge(&h);
    let expected = "http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp";
    assert!(
        c.contains(&format!("resource_metadata=\"{expected}\"")),
        "{c}"
    );
    let meta: Value = client()
        .get(d.url("/.well-known/oauth-protected-resource/mcp"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta["resource"], resource);
    assert_eq!(meta["authorization_servers"], json!([issuer]));
    assert!(
        meta["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("call"))
    );
}

// ---- Secrets ------------------------------------------------------------

#[test]
fn secrets_appear_nowhere_and_headers_reach_the_upstream_as_configured() {
    // The managed HTTP upstream gets a password and a key in its URL, a
    // Basic Authorization header and an env secret; another service has
    // credentials only in its URL.
    let url_pass = "urlPassw0rd-7f3a";
    let url_key = "queryKey-9c21";
    let basic = "Basic dXNlcjpoZWFkZXJTZWNyZXQtNDRhMQ==";
    let env_secret = "envSecret-5e77";
    let config = with_server(
        "",
        &format!(
            r#"
[[services]]
name = "web"
group = "asana"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{{port}}", "--unit-latency-ms", "1"]
url = "http://127.0.0.1:{{port}}/mcp?key={url_key}"
env = {{ SIM_TOKEN = "{env_secret}" }}
manifest = "builtin:asana"
[services.headers]
Authorization = "{basic}"
X-Custom = "exactly as written"

[[services]]
name = "web2"
group = "asana"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{{port}}", "--unit-latency-ms", "1"]
url = "http://svc:{url_pass}@127.0.0.1:{{port}}/mcp"
manifest = "builtin:asana"
"#
        ),
    );
    let d = Daemon::start_logged(
        &config,
        &[("MCPVISOR_CLIENT_TOKEN", CLIENT_TOKEN)],
        Some(CLIENT_TOKEN),
    );
    // A call on each replica.
    for _ in 0..4 {
        let (status, text, _) = stream(&d, "asana_list_workspaces", json!({}), Some(CLIENT_TOKEN));
        assert_eq!(status, 200, "{text}");
    }
    let endpoint = |name: &str| d.service(name)["endpoint"].as_str().unwrap().to_owned();
    // What the upstream received: the configured headers, byte for byte,
    // userinfo as Basic, and nothing of the client's token.
    let stats_of = |name: &str| -> Value {
        let url = endpoint(name).replace("/mcp", "/sim/stats");
        let url = url.split('?').next().unwrap().to_owned();
        client().get(url).send().unwrap().json().unwrap()
    };
    let web = stats_of("web");
    let h = &web["lastRequestHeaders"];
    assert_eq!(h["authorization"], basic, "{h}");
    assert_eq!(h["x-custom"], "exactly as written");
    let web2 = stats_of("web2");
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("svc:{url_pass}"))
    );
    assert_eq!(
        web2["lastRequestHeaders"]["authorization"],
        expected.as_str()
    );
    for stats in [&web, &web2] {
        assert!(
            !stats.to_string().contains(CLIENT_TOKEN),
            "the client token went upstream"
        );
    }

    // Now look everywhere a secret could leak.
    let secrets = [
        url_pass,
        url_key,
        "dXNlcjpoZWFkZXJTZWNyZXQtNDRhMQ",
        env_secret,
        CLIENT_TOKEN,
        ADMIN,
    ];
    let mut seen = String::new();
    for path in [
        "/api/services",
        "/api/health",
        "/api/alerts",
        "/metrics",
        "/api/metrics",
        "/api/mcp/stream",
        "/api/health/web/history",
        "/api/drills",
    ] {
        let r = client()
            .get(d.url(path))
            .bearer_auth(CLIENT_TOKEN)
            .send()
            .unwrap();
        seen.push_str(&r.text().unwrap_or_default());
    }
    // An admin route with the token in the query: the access log keeps no query.
    let _ = client()
        .post(d.url(&format!("/api/services/web/inject-panic?token={ADMIN}")))
        .bearer_auth(ADMIN)
        .send();
    let out = std::process::Command::new(BIN)
        .args(["check-config"])
        .arg(d.dir().join("mcpvisor.toml"))
        .env("MCPVISOR_CLIENT_TOKEN", CLIENT_TOKEN)
        .output()
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&out.stdout));
    seen.push_str(&String::from_utf8_lossy(&out.stderr));
    // The endpoint is shown with its credentials and query values hidden.
    assert!(endpoint("web").contains("key=***"), "{}", endpoint("web"));
    d.wait_until(
        "web restarted after its panic",
        std::time::Duration::from_secs(20),
        |d| d.service("web")["state"] == "ready",
    );
    seen.push_str(&d.log());
    for s in secrets {
        if let Some(at) = seen.find(s) {
            panic!(
                "secret `{s}` leaked: …{}…",
                &seen[at.saturating_sub(300)..(at + 100).min(seen.len())]
            );
        }
    }
}

#[test]
fn userinfo_beside_an_authorization_header_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.toml");
    std::fs::write(
        &path,
        r#"[[services]]
name = "both"
transport = "streamable_http"
url = "http://u:p@127.0.0.1:9/mcp"
[services.headers]
Authorization = "Bearer x"
"#,
    )
    .unwrap();
    let (ok, _, err) = common::check_config_file(&path);
    assert!(!ok);
    assert!(
        err.contains("both.toml:6") && err.contains("headers.Authorization"),
        "{err}"
    );
    assert!(!err.contains("u:p@"), "{err}");
}

#[test]
fn client_garbage_is_no_error_in_the_log() {
    let d = Daemon::start_logged(&with_server("", &sim_service("")), &[], None);
    let addr = d.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GARBAGE \x01\x02\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"));
    let r = client()
        .post(d.url("/mcp"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The next request is served (and flushes the log).
    assert_eq!(d.get("/api/services").0, 200);
    let log = d.log();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn json_rpc_ids_come_back_exactly_as_sent() {
    let d = Daemon::start(&with_server("", &sim_service("")));
    let session = client()
        .post(d.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        )
        .send()
        .unwrap()
        .headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    for id in [
        "18446744073709551617",
        "-99999999999999999999",
        "1.50",
        "12",
    ] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        let text = client()
            .post(d.url("/mcp"))
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(body)
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(text.contains(&format!(r#""id":{id}"#)), "id {id}: {text}");
    }
}

#[test]
fn a_session_belongs_to_the_client_that_opened_it() {
    let other = "other-token-0123456789abcdef";
    let config = with_server(
        "",
        &format!(
            r#"
[[auth.clients]]
name = "a"
token = "{CLIENT_TOKEN}"
scopes = ["call", "read"]
[[auth.clients]]
name = "b"
token = "{other}"
scopes = ["call", "read"]
{}"#,
            sim_service("")
        ),
    );
    let d = Daemon::start_logged(&config, &[], Some(CLIENT_TOKEN));
    let init = client()
        .post(d.url("/mcp"))
        .bearer_auth(CLIENT_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        )
        .send()
        .unwrap();
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let ping = |token: &str| {
        client()
            .post(d.url("/mcp"))
            .bearer_auth(token)
            .header("accept", "application/json")
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ping(CLIENT_TOKEN), 200);
    assert_eq!(ping(other), 404, "another client used the session");

    // So does a stream of the HTTP+SSE transport, and nobody without a
    // token opens one.
    let open = |token: Option<&str>| {
        let mut r = client().get(d.url("/sse"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap()
    };
    assert_eq!(open(None).status().as_u16(), 401);
    let stream = open(Some(CLIENT_TOKEN));
    assert_eq!(stream.status().as_u16(), 200);
    let mut lines = BufReader::new(stream).lines();
    let endpoint = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("data: ").map(str::to_owned))
        .expect("an endpoint event");
    assert!(endpoint.starts_with("/message?sessionId="), "{endpoint}");
    let post = |token: Option<&str>| {
        let mut r = client().post(d.url(&endpoint));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        )
        .send()
        .unwrap()
        .status()
        .as_u16()
    };
    assert_eq!(post(None), 401);
    assert_eq!(
        post(Some(other)),
        404,
        "another client posted to the stream"
    );
    assert_eq!(post(Some(CLIENT_TOKEN)), 202);
    let answer = lines
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("data: ").map(str::to_owned))
        .expect("the initialize answer on the stream");
    assert!(
        answer.contains("\"protocolVersion\":\"2024-11-05\""),
        "{answer}"
    );
}
