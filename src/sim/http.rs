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

use super::SimServer;

/// Serves until the process is stopped.
pub async fn serve(server: SimServer, addr: SocketAddr) -> anyhow::Result<()> {
    let faults = server.faults().clone();
    let stats = server.stats().clone();
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
        tokio::spawn(async move {
            let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let service = service.clone();
                let faults = faults.clone();
                let stats = stats.clone();
                async move {
                    if req.uri().path() == "/sim/stats" {
                        let body = serde_json::to_vec(&*stats).unwrap_or_default();
                        let mut r = hyper::Response::new(Full::new(Bytes::from(body)).boxed());
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        return Ok::<_, Infallible>(r);
                    }
                    if req.uri().path() != "/mcp" {
                        return Ok::<_, Infallible>(plain(404, "not found"));
                    }
                    if req.method() == hyper::Method::POST
                        && let Some(secs) = faults.rate_limited()
                    {
                        let mut r = plain(429, "rate limited (simulated)");
                        if let Ok(v) = hyper::header::HeaderValue::from_str(&secs.to_string()) {
                            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
                        }
                        return Ok(r);
                    }
                    Ok(service.handle(req).await)
                }
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

fn plain(
    status: u16,
    body: &'static str,
) -> hyper::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r
}
