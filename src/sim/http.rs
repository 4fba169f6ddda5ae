//! The simulator over Streamable HTTP: rmcp's service on a plain hyper
//! server, with the rate-limit knob in front of it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use dashmap::DashMap;
use futures::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use super::SimServer;
use super::faults::{FaultUpdate, Faults};
use super::server::SimStats;
use std::sync::atomic::Ordering;

/// Serves until the process is stopped.
pub async fn serve(server: SimServer, addr: SocketAddr) -> anyhow::Result<()> {
    let faults = server.faults().clone();
    let stats = server.stats().clone();
    let legacy = Arc::new(Legacy {
        server: server.clone(),
        sessions: DashMap::new(),
    });
    let service = Arc::new(StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    ));
    if std::env::var_os("MCPVISOR_PARENT_STDIN").is_some() {
        // Launched by mcpvisor: stdin closes when our supervisor is gone.
        tokio::spawn(async {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut sink).await;
            tracing::info!("supervisor went away (stdin closed); exiting");
            std::process::exit(0);
        });
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "simulator listening on http://{local}/mcp");
    // Readiness line for whoever launched us.
    println!("mcpvisor-sim listening on http://{local}/mcp");
    loop {
        let (stream, _) = listener.accept().await?;
        // Small SSE writes must not wait for delayed ACKs (Nagle).
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let faults = faults.clone();
        let stats = stats.clone();
        let legacy = legacy.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                route(
                    req,
                    service.clone(),
                    faults.clone(),
                    stats.clone(),
                    legacy.clone(),
                )
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

type Reply = hyper::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

/// `/mcp` (with the fault knobs in front), `/sim/stats`, `/sim/faults`.
async fn route(
    req: hyper::Request<hyper::body::Incoming>,
    service: Arc<StreamableHttpService<SimServer, LocalSessionManager>>,
    faults: Arc<Faults>,
    stats: Arc<SimStats>,
    legacy: Arc<Legacy>,
) -> Result<Reply, Infallible> {
    match (req.method().clone(), req.uri().path()) {
        (hyper::Method::GET, "/sse") => Ok(legacy.open()),
        (hyper::Method::POST, "/message") => Ok(legacy.post(req, &faults).await),
        (hyper::Method::GET, "/sim/stats") => Ok(json(&serde_json::json!({
            "calls": stats.calls.load(Ordering::Relaxed),
            "completed": stats.completed.load(Ordering::Relaxed),
            "cancelled": stats.cancelled.load(Ordering::Relaxed),
            "callTimesMs": stats.call_times(),
            "rateLimitedAtMs": stats.refusals(),
            "lastRequestHeaders": stats.last_headers(),
            "faults": faults.state(),
        }))),
        (hyper::Method::POST, "/sim/faults") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(plain(400, "unreadable body")),
            };
            match serde_json::from_slice::<FaultUpdate>(&body) {
                Ok(update) => {
                    faults.update(update);
                    Ok(json(&faults.state()))
                }
                Err(_) => Ok(plain(400, "bad fault update")),
            }
        }
        (_, "/mcp") => {
            let slow = faults.slow();
            if !slow.is_zero() {
                tokio::time::sleep(slow).await;
            }
            let tool_call = req
                .headers()
                .get("mcp-method")
                .is_some_and(|m| m.as_bytes() == b"tools/call");
            if req.method() == hyper::Method::POST {
                stats.saw_headers(req.headers());
            }
            if req.method() == hyper::Method::POST
                && let Some(secs) = faults.rate_limited(tool_call)
            {
                stats.refused();
                return Ok(rate_limited(secs));
            }
            Ok(service.handle(req).await)
        }
        _ => Ok(plain(404, "not found")),
    }
}

/// The legacy HTTP+SSE transport (2024-11-05): `GET /sse` opens a session
/// whose first event names `/message?sessionId=...`; messages POSTed there
/// go to an rmcp server session, whose messages come back on the stream.
struct Legacy {
    server: SimServer,
    sessions: DashMap<String, mpsc::Sender<ClientJsonRpcMessage>>,
}

impl Legacy {
    fn open(self: &Arc<Self>) -> Reply {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (in_tx, in_rx) = mpsc::channel::<ClientJsonRpcMessage>(64);
        let (out_tx, out_rx) = mpsc::channel::<ServerJsonRpcMessage>(64);
        self.sessions.insert(id.clone(), in_tx);
        let incoming = Box::pin(futures::stream::unfold(in_rx, |mut rx| async move {
            rx.recv().await.map(|m| (m, rx))
        }));
        let server = self.server.clone();
        let this = self.clone();
        let session = id.clone();
        tokio::spawn(async move {
            use rmcp::ServiceExt;
            match server.serve((PollSender::new(out_tx), incoming)).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => tracing::debug!(error = %e, "legacy SSE session ended before it began"),
            }
            this.sessions.remove(&session);
        });
        let first = format!("event: endpoint\ndata: /message?sessionId={id}\n\n");
        // The stream owns the session: when the client goes away the body
        // is dropped, the session's inbox with it, and the server ends.
        let owner = SessionOwner {
            legacy: self.clone(),
            id,
        };
        let events = futures::stream::once(async move { first }).chain(futures::stream::unfold(
            (out_rx, owner),
            |(mut rx, owner)| async move {
                let message = rx.recv().await?;
                let data = serde_json::to_string(&message).unwrap_or_default();
                Some((format!("event: message\ndata: {data}\n\n"), (rx, owner)))
            },
        ));
        let body =
            StreamBody::new(events.map(|text| Ok::<_, Infallible>(Frame::data(Bytes::from(text)))));
        let mut r = hyper::Response::new(BodyExt::boxed(body));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        r
    }

    async fn post(&self, req: hyper::Request<hyper::body::Incoming>, faults: &Faults) -> Reply {
        // The same knobs as /mcp: latency, and 429s for tool calls.
        let slow = faults.slow();
        if !slow.is_zero() {
            tokio::time::sleep(slow).await;
        }
        let session = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("sessionId=")))
            .map(str::to_owned);
        let Some(tx) = session.and_then(|s| self.sessions.get(&s).map(|t| t.clone())) else {
            return plain(404, "no such session");
        };
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return plain(400, "unreadable body"),
        };
        let tool_call = serde_json::from_slice::<serde_json::Value>(&body)
            .is_ok_and(|v| v["method"] == "tools/call");
        if let Some(secs) = faults.rate_limited(tool_call) {
            self.server.stats().refused();
            return rate_limited(secs);
        }
        match serde_json::from_slice::<ClientJsonRpcMessage>(&body) {
            Ok(message) => match tx.send(message).await {
                Ok(()) => plain(202, "accepted"),
                Err(_) => plain(404, "session closed"),
            },
            Err(_) => plain(400, "not a JSON-RPC message"),
        }
    }
}

/// Removes a legacy session when its SSE stream is dropped.
struct SessionOwner {
    legacy: Arc<Legacy>,
    id: String,
}

impl Drop for SessionOwner {
    fn drop(&mut self) {
        self.legacy.sessions.remove(&self.id);
    }
}

/// A simulated 429 with its Retry-After.
fn rate_limited(secs: u64) -> Reply {
    let mut r = plain(429, "rate limited (simulated)");
    if let Ok(v) = hyper::header::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    r
}

fn json(value: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn plain(status: u16, body: &'static str) -> Reply {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r
}
