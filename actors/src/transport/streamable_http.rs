//! Upstreams reached over HTTP — MCP Streamable HTTP, or the legacy
//! HTTP+SSE transport — optionally launched and watched by us (a "managed"
//! HTTP upstream: `command` + `url`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::service::ClientServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use rmcp::service::ClientLifecycleMode;

use super::errors::from_transport_error;
use super::http_line::{HttpLine, HttpLineParts, SessionId, Watched};
use super::line::Wire;
use super::sse::LegacySse;
use super::{Closed, Connection, Refusal, UpstreamHandler, launch_spec, refusal, server_info};
use crate::error::{CallError, ErrorCategory};
use crate::process::{ProcessSlot, UpstreamProcess};
use crate::spec::{ServiceSpec, TransportKind};

/// Placeholder in `url`, `args` and `env` values for a port chosen at each
/// start (servers such as the npm ones read their port from `PORT`).
const PORT_PLACEHOLDER: &str = "{port}";

/// Largest tool result accepted from an HTTP upstream.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Launches the server if the spec names one, then negotiates a session.
pub async fn connect(
    spec: &ServiceSpec,
    slot: &Arc<ProcessSlot>,
    handler: UpstreamHandler,
    lifecycle: ClientLifecycleMode,
    timeout: Duration,
) -> Result<Connection, Refusal> {
    let template = spec.url.as_deref().ok_or_else(|| {
        CallError::new(
            ErrorCategory::Internal,
            "streamable_http service without a url",
        )
    })?;
    let port = if template.contains(PORT_PLACEHOLDER) {
        Some(free_port()?)
    } else {
        None
    };
    let fill = |s: &str| match port {
        Some(p) => s.replace(PORT_PLACEHOLDER, &p.to_string()),
        None => s.to_owned(),
    };
    // Credentials in the URL become a Basic Authorization header (the
    // config refuses them beside a configured one) and leave the URL, so
    // it can be shown and logged.
    let (url, basic) = split_userinfo(&fill(template));

    let mut child = match spec.command {
        Some(_) => Some(launch(spec, slot, &fill).await?),
        None => None,
    };
    let pid = child.as_ref().map(UpstreamProcess::pid);
    if let Some(c) = child.as_mut() {
        wait_until_listening(&url, c, timeout).await?;
    }

    let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
    config.max_json_response_size = MAX_RESPONSE_BYTES;
    config.max_sse_event_size = MAX_RESPONSE_BYTES;
    // Room beyond the call limit, so health probes and tools/list never
    // queue behind long calls on an upstream that answers in plain JSON.
    config.max_concurrent_requests = spec.limits.max_in_flight.max(1) + 2;
    // Headers go upstream exactly as configured (a Basic Authorization
    // stays Basic); nothing of the downstream client's request does.
    let mut headers = HashMap::new();
    if let Some(basic) = basic {
        headers.insert(reqwest::header::AUTHORIZATION, basic);
    }
    for (name, value) in &spec.headers {
        let bad = |what: &str| {
            CallError::new(
                ErrorCategory::Internal,
                format!("header `{name}`: invalid {what}"),
            )
        };
        headers.insert(
            HeaderName::try_from(name.as_str()).map_err(|_| bad("name"))?,
            HeaderValue::try_from(value.as_str()).map_err(|_| bad("value"))?,
        );
    }
    config.custom_headers = headers;
    let client = reqwest::Client::builder()
        .connect_timeout(timeout)
        .build()
        .map_err(|e| CallError::new(ErrorCategory::Internal, format!("http client: {e}")))?;
    let configured: HeaderMap = config
        .custom_headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let session = SessionId::default();
    let running = if spec.transport == TransportKind::Sse {
        let sse = LegacySse::open(client.clone(), &url, &config.custom_headers, timeout)
            .await
            .map_err(|e| from_transport_error(&e, false))?;
        handler
            .clone()
            .serve_with_lifecycle(sse, lifecycle)
            .await
            .map_err(refusal)?
    } else {
        let watched = Watched {
            client: client.clone(),
            session: session.clone(),
        };
        let transport = StreamableHttpClientTransport::with_client(watched, config);
        handler
            .clone()
            .serve_with_lifecycle(transport, lifecycle)
            .await
            .map_err(refusal)?
    };
    let (peer, info) = server_info(&running).await?;
    // Calls take a line of their own past rmcp, in the session it opened.
    let wire = match reqwest::Url::parse(&url) {
        Ok(parsed) if spec.transport == TransportKind::StreamableHttp => {
            Wire::Http(HttpLine::new(HttpLineParts {
                client,
                url: parsed,
                configured,
                session,
                version: info.protocol_version.clone(),
                handler,
                max_body: MAX_RESPONSE_BYTES,
            }))
        }
        _ => Wire::Peer,
    };
    let closed = Box::pin(async move {
        match child {
            Some(mut child) => {
                // `wait()` would close the child's stdin first; keep it.
                let _stdin = child.child_mut().stdin.take();
                tokio::select! {
                    status = child.wait() => Closed::exited(status),
                    reason = running.waiting() => Closed::other(format!("http session ended ({reason:?})")),
                }
            }
            None => Closed::other(match running.waiting().await {
                Ok(reason) => format!("http session ended ({reason:?})"),
                Err(e) => format!("http session task failed: {e}"),
            }),
        }
    });
    Ok(Connection {
        peer,
        info,
        pid,
        endpoint: Some(crate::secrets::redact_url(&url)),
        liveness: None,
        wire,
        closed,
    })
}

async fn launch(
    spec: &ServiceSpec,
    slot: &Arc<ProcessSlot>,
    fill: &dyn Fn(&str) -> String,
) -> Result<UpstreamProcess, CallError> {
    let mut launch = launch_spec(spec, fill)?;
    // The child's stdin stays open for as long as we hold the process:
    // servers that watch it (the simulator does, via this variable) exit
    // when mcpvisor goes away.
    launch
        .env
        .push(("MCPVISOR_PARENT_STDIN".into(), "1".into()));
    let mut process = UpstreamProcess::spawn(&launch, slot, |cmd| {
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
    })
    .await
    .map_err(|e| CallError::new(ErrorCategory::Network, e.to_string()))?;
    if let Some(stderr) = process.child_mut().stderr.take() {
        super::stdio::log_stderr(spec.name.clone(), stderr);
    }
    Ok(process)
}

/// The URL without its userinfo, and the Basic Authorization header that
/// userinfo stands for.
fn split_userinfo(url: &str) -> (String, Option<HeaderValue>) {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return (url.to_owned(), None);
    };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return (url.to_owned(), None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = format!(
        "{}:{}",
        decode(parsed.username()),
        decode(parsed.password().unwrap_or(""))
    );
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok();
    if let Some(v) = value.as_mut() {
        v.set_sensitive(true);
    }
    (parsed.to_string(), value)
}

/// A port that was free a moment ago on loopback.
fn free_port() -> Result<u16, CallError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| CallError::new(ErrorCategory::Internal, format!("no free port: {e}")))
}

/// Waits until the launched server accepts TCP connections on the URL's
/// address, or fails early if the process exits first.
async fn wait_until_listening(
    url: &str,
    child: &mut UpstreamProcess,
    timeout: Duration,
) -> Result<(), CallError> {
    let addr = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .ok_or_else(|| CallError::new(ErrorCategory::Internal, format!("bad url `{url}`")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CallError::new(
                ErrorCategory::Network,
                format!("upstream process exited before listening ({status})"),
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CallError::new(
                ErrorCategory::Timeout,
                format!(
                    "upstream process did not listen on {addr} within {} ms",
                    timeout.as_millis()
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
