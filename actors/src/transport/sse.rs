//! The legacy HTTP+SSE transport (protocol 2024-11-05), which remote
//! servers still use: a long-lived `GET` stream whose first event,
//! `endpoint`, names the URL to POST messages to; the server's messages
//! (responses, notifications) all arrive on that stream.
//!
//! rmcp has no client for it any more, so this is an rmcp [`Transport`] of
//! our own: outgoing messages are POSTed, incoming ones read from the
//! stream by a task that ends (closing the session) when the stream does.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::RoleClient;
use rmcp::transport::Transport;
use rmcp::transport::streamable_http_client::HttpStatusError;
use sse_stream::SseStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Messages buffered between the stream reader and the session.
const BUFFER: usize = 256;

/// A failure of the legacy SSE transport.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// The HTTP request failed.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error status.
    #[error("{0}")]
    Status(#[source] HttpStatusError),
    /// The stream ended or broke before naming the POST endpoint.
    #[error("the SSE stream sent no endpoint event")]
    NoEndpoint,
    /// The endpoint event is not a usable URL.
    #[error("bad endpoint `{0}`")]
    BadEndpoint(String),
}

/// An open legacy SSE session.
pub struct LegacySse {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    incoming: mpsc::Receiver<ServerJsonRpcMessage>,
    reader: JoinHandle<()>,
}

impl Drop for LegacySse {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn status_error(r: &reqwest::Response) -> SseError {
    let retry_after = r
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    SseError::Status(HttpStatusError::new(r.status().as_u16(), retry_after))
}

impl LegacySse {
    /// Opens the stream at `url` and waits for its `endpoint` event.
    pub async fn open(
        client: reqwest::Client,
        url: &str,
        headers: &HashMap<HeaderName, HeaderValue>,
        timeout: Duration,
    ) -> Result<Self, SseError> {
        let headers: HeaderMap = headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let base = reqwest::Url::parse(url).map_err(|_| SseError::BadEndpoint(url.to_owned()))?;
        let response = client
            .get(base.clone())
            .headers(headers.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(status_error(&response));
        }
        let mut events = SseStream::from_bytes_stream(response.bytes_stream());
        let endpoint = tokio::time::timeout(timeout, async {
            while let Some(Ok(event)) = events.next().await {
                if event.event.as_deref() == Some("endpoint") {
                    return event.data;
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or(SseError::NoEndpoint)?;
        let endpoint = base
            .join(endpoint.trim())
            .map_err(|_| SseError::BadEndpoint(endpoint.clone()))?;
        let (tx, incoming) = mpsc::channel(BUFFER);
        let reader = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Ok(event) = event else { break };
                if !matches!(event.event.as_deref(), None | Some("message")) {
                    continue;
                }
                let Some(data) = event.data else { continue };
                match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                    Ok(message) => {
                        if tx.send(message).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable message on the SSE stream"),
                }
            }
        });
        Ok(Self {
            client,
            endpoint,
            headers,
            incoming,
            reader,
        })
    }
}

impl Transport<RoleClient> for LegacySse {
    type Error = SseError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let request = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .json(&item);
        async move {
            let response = request.send().await?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(status_error(&response))
            }
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<ServerJsonRpcMessage>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.reader.abort();
        Ok(())
    }
}
