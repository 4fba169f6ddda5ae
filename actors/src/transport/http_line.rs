//! Tool calls to a Streamable HTTP upstream without rmcp in between.
//!
//! A call is one `POST` of JSON-RPC text with an id from [`ID_BASE`] up,
//! sent with the session rmcp negotiated (its `Mcp-Session-Id`, learnt by
//! [`Watched`], the client rmcp's transport runs on) and the upstream's
//! protocol version. The answer comes back as one JSON body or on an SSE
//! stream; everything that stream carries besides the answer belongs to
//! this call and is served here: progress and log messages go to its
//! caller, the server's own requests (sampling, elicitation) are put to
//! its caller and answered with a `POST`, list changes go to the service
//! actor. rmcp keeps the rest of the session: the handshake, probes,
//! listings, relays and the standalone `GET` stream.
//!
//! [`ID_BASE`]: super::line::ID_BASE

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use rmcp::model::{ClientJsonRpcMessage, ErrorData, JsonObject, ProtocolVersion};
use rmcp::service::ServiceError;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use serde_json::value::RawValue;
use sse_stream::{Sse, SseStream};

use super::errors::{from_http_status, from_service_error};
use super::frame::{Heard, Peek, classify};
use super::handler::{UpstreamEvent, UpstreamHandler};
use super::line::{Answer, ID_BASE, Outgoing};
use crate::error::{CallError, ErrorCategory};
use crate::stream::StreamEvent;

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
const EVENT_STREAM: &str = "text/event-stream";

/// Times a call's SSE stream is resumed (`GET` with `Last-Event-ID`) after
/// it ended without the answer.
const MAX_RESUMES: usize = 3;

/// Most bytes of an error body read for its JSON-RPC error.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The session id rmcp's transport last used, shared with the line.
#[derive(Clone, Default)]
pub(super) struct SessionId(Arc<RwLock<Option<HeaderValue>>>);

impl SessionId {
    fn get(&self) -> Option<HeaderValue> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, id: Option<&str>) {
        let value = id
            .and_then(|id| HeaderValue::from_str(id).ok())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

/// The HTTP client rmcp's transport runs on: reqwest's own, noting the
/// session id each message is sent with (or a handshake's answer
/// assigns), so the line's calls join the same session.
#[derive(Clone)]
pub(super) struct Watched {
    pub(super) client: reqwest::Client,
    pub(super) session: SessionId,
}

impl StreamableHttpClient for Watched {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        if session_id.is_some() {
            self.session.set(session_id.as_deref());
        }
        let response = self
            .client
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await?;
        if let StreamableHttpPostResponse::Json(_, Some(id))
        | StreamableHttpPostResponse::Sse(_, Some(id)) = &response
        {
            self.session.set(Some(id));
        }
        Ok(response)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.session.set(None);
        self.client
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<Sse, SseError>>,
        StreamableHttpError<Self::Error>,
    > {
        self.client
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<
        futures::stream::BoxStream<'static, Result<Sse, SseError>>,
        StreamableHttpError<Self::Error>,
    > {
        self.client
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

/// One Streamable HTTP upstream's line; cheap to clone.
#[derive(Clone)]
pub struct HttpLine(Arc<Shared>);

struct Shared {
    client: reqwest::Client,
    url: reqwest::Url,
    /// Sent with every request: the configured headers (and credentials),
    /// the content types and the negotiated protocol version.
    headers: HeaderMap,
    session: SessionId,
    /// The upstream's revision names requests in headers (SEP-2243).
    standard_headers: bool,
    handler: UpstreamHandler,
    next_id: AtomicU64,
    max_body: usize,
}

impl std::fmt::Debug for HttpLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLine").finish_non_exhaustive()
    }
}

/// What a new line needs to know.
pub(super) struct HttpLineParts {
    pub client: reqwest::Client,
    pub url: reqwest::Url,
    pub configured: HeaderMap,
    pub session: SessionId,
    pub version: ProtocolVersion,
    pub handler: UpstreamHandler,
    pub max_body: usize,
}

impl HttpLine {
    pub(super) fn new(parts: HttpLineParts) -> Self {
        let mut headers = parts.configured;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Ok(v) = HeaderValue::from_str(parts.version.as_str()) {
            headers.insert(PROTOCOL_VERSION, v);
        }
        Self(Arc::new(Shared {
            client: parts.client,
            url: parts.url,
            headers,
            session: parts.session,
            standard_headers: parts.version >= ProtocolVersion::STANDARD_HEADERS,
            handler: parts.handler,
            next_id: AtomicU64::new(ID_BASE),
            max_body: parts.max_body,
        }))
    }

    /// An id for the next request.
    pub fn next_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether a call to the tool with this input schema can take the line:
    /// a revision that names requests in headers also promotes arguments
    /// marked `x-mcp-header` to headers, which rmcp's transport writes.
    pub fn carries(&self, schema: &JsonObject) -> bool {
        !self.0.standard_headers || !marks_headers(schema)
    }

    /// A request to the endpoint with the configured and session headers.
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let request = self
            .0
            .client
            .request(method, self.0.url.clone())
            .headers(self.0.headers.clone());
        match self.0.session.get() {
            Some(session) => request.header(SESSION_ID, session),
            None => request,
        }
    }

    /// A `POST` of `body` with the session's headers.
    fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST).body(body)
    }

    /// Sends the `tools/call` written as `text` with `id` and reads until
    /// its answer, serving what arrives with it.
    pub(super) async fn exchange(
        &self,
        id: u64,
        text: Vec<u8>,
        out: &Outgoing<'_>,
    ) -> Result<Answer, CallError> {
        let mut request = self.post(text);
        if self.0.standard_headers {
            request = request
                .header(MCP_METHOD, HeaderValue::from_static("tools/call"))
                .header(MCP_NAME, header_text(out.name));
        }
        let response = request.send().await.map_err(unsent_or_lost)?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(response).await);
        }
        if status == StatusCode::ACCEPTED {
            return Err(CallError::new(
                ErrorCategory::Protocol,
                "the upstream accepted tools/call without answering it",
            )
            .maybe_sent());
        }
        let streamed = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(EVENT_STREAM));
        if streamed {
            return self.read_stream(id, response, out).await;
        }
        let body = read_limited(response, self.0.max_body).await?;
        match classify(&body) {
            Heard::Answer(answered, range, ok) if answered == id => Ok(Answer {
                line: body,
                body: range,
                ok,
            }),
            _ => Err(CallError::new(
                ErrorCategory::Protocol,
                format!(
                    "the upstream's reply to tools/call is not its answer: {}",
                    preview(&body)
                ),
            )
            .maybe_sent()),
        }
    }

    /// Reads the call's SSE stream until its answer, resuming it with
    /// `Last-Event-ID` if it ends first.
    async fn read_stream(
        &self,
        id: u64,
        response: reqwest::Response,
        out: &Outgoing<'_>,
    ) -> Result<Answer, CallError> {
        let mut response = response;
        let mut last_event = None;
        for resumed in 0..=MAX_RESUMES {
            let limit = self.0.max_body;
            let mut taken = 0usize;
            let bytes = response.bytes_stream().map(move |chunk| {
                let chunk = chunk.map_err(std::io::Error::other)?;
                taken += chunk.len();
                if taken > limit {
                    return Err(std::io::Error::other("response over the size limit"));
                }
                Ok(chunk)
            });
            let mut events = SseStream::from_bytes_stream(bytes);
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| {
                    CallError::new(
                        ErrorCategory::Network,
                        format!("the upstream's event stream failed: {e}"),
                    )
                    .maybe_sent()
                })?;
                if event.id.is_some() {
                    last_event = event.id;
                }
                if !matches!(event.event.as_deref(), None | Some("message")) {
                    continue;
                }
                let Some(data) = event.data else { continue };
                if let Some(answer) = self.heard(id, Bytes::from(data), out).await {
                    finish(events);
                    return Ok(answer);
                }
            }
            let Some(last) = last_event.clone().filter(|_| resumed < MAX_RESUMES) else {
                break;
            };
            tracing::debug!(last_event = %last, "resuming a call's event stream");
            response = self
                .request(reqwest::Method::GET)
                .header(ACCEPT, HeaderValue::from_static(EVENT_STREAM))
                .header(LAST_EVENT_ID, last)
                .send()
                .await
                .map_err(lost)?;
            if !response.status().is_success() {
                break;
            }
        }
        Err(CallError::new(
            ErrorCategory::Network,
            "the upstream's event stream ended before the answer",
        )
        .maybe_sent())
    }

    /// Serves one message of the call's stream; the answer, when it is one.
    async fn heard(&self, id: u64, data: Bytes, out: &Outgoing<'_>) -> Option<Answer> {
        match classify(&data) {
            Heard::Answer(answered, range, ok) if answered == id => {
                return Some(Answer {
                    line: data,
                    body: range,
                    ok,
                });
            }
            Heard::Answer(answered, ..) => {
                tracing::debug!(
                    id = answered,
                    "an answer for another request on a call's stream"
                );
            }
            Heard::Progress(p) => {
                self.0
                    .handler
                    .progress(p.progress_token, p.progress, p.total, p.message);
            }
            Heard::Other => self.served(&data, out).await,
        }
        None
    }

    /// A request or notification of the server's own on a call's stream.
    async fn served(&self, data: &[u8], out: &Outgoing<'_>) {
        let Ok(peek) = serde_json::from_slice::<Peek>(data) else {
            tracing::warn!(message = %preview(data), "unreadable message on a call's stream");
            return;
        };
        let params = || {
            peek.params
                .and_then(|p| serde_json::from_str(p.get()).ok())
                .unwrap_or_else(|| serde_json::json!({}))
        };
        match (peek.method, peek.id) {
            (Some(method), Some(request_id)) => {
                let reply = match out.events.ask(method, params()).await {
                    Ok(result) => serde_json::json!({
                        "jsonrpc": "2.0", "id": request_id, "result": result,
                    }),
                    Err(e) => serde_json::json!({
                        "jsonrpc": "2.0", "id": request_id,
                        "error": ErrorData::new(rmcp::model::ErrorCode(e.code), e.message, e.data),
                    }),
                };
                self.answer_server(method, request_id, &reply).await;
            }
            (Some("notifications/message"), None) => {
                let p = params();
                out.events.emit(StreamEvent::Log {
                    level: p["level"].as_str().unwrap_or("info").to_owned(),
                    logger: p["logger"].as_str().map(str::to_owned),
                    data: p.get("data").cloned().unwrap_or_default(),
                });
            }
            (Some(method), None) => {
                let event = match method {
                    "notifications/tools/list_changed" => Some(UpstreamEvent::ToolsChanged),
                    "notifications/resources/list_changed" => Some(UpstreamEvent::ResourcesChanged),
                    "notifications/prompts/list_changed" => Some(UpstreamEvent::PromptsChanged),
                    "notifications/resources/updated" => params()["uri"]
                        .as_str()
                        .map(|uri| UpstreamEvent::ResourceUpdated(uri.to_owned())),
                    _ => None,
                };
                match event {
                    Some(event) => self.0.handler.report(event),
                    None => tracing::debug!(%method, "notification on a call's stream"),
                }
            }
            (None, _) => {
                tracing::debug!(message = %preview(data), "a reply on a call's stream that is not its answer");
            }
        }
    }

    /// Posts the caller's reply to a server request made on a call's stream.
    async fn answer_server(&self, method: &str, request_id: &RawValue, reply: &serde_json::Value) {
        let body = match serde_json::to_vec(reply) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(%method, error = %e, "unwritable reply to a server request");
                return;
            }
        };
        match self.post(body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(%method, id = %request_id.get(), status = %r.status(), "the upstream refused the reply to its request");
            }
            Err(e) => {
                tracing::warn!(%method, id = %request_id.get(), error = %e.without_url(), "could not send the reply to the upstream's request");
            }
        }
    }

    /// Tells the upstream a call is no longer wanted (sent in the
    /// background: the caller has stopped waiting).
    pub(super) fn cancel(&self, text: Vec<u8>) {
        let request = self.post(text);
        tokio::spawn(async move {
            if let Err(e) = request.send().await {
                tracing::debug!(error = %e.without_url(), "could not send notifications/cancelled");
            }
        });
    }
}

/// Reads a call's stream to its end once the answer is in, so that its
/// connection goes back to the pool rather than being closed: at once when
/// the end has already arrived, else on a task of its own for a while.
fn finish<S>(mut events: S)
where
    S: futures::Stream + Unpin + Send + 'static,
{
    use futures::FutureExt;
    loop {
        match events.next().now_or_never() {
            Some(Some(_)) => continue,
            Some(None) => return,
            None => break,
        }
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN_PATIENCE, async {
            while events.next().await.is_some() {}
        })
        .await;
    });
}

/// How long a call's stream may stay open after its answer before its
/// connection is given up.
const DRAIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether an input schema marks any property `x-mcp-header`.
fn marks_headers(schema: &JsonObject) -> bool {
    fn any(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(o) => marks_headers(o),
            serde_json::Value::Array(items) => items.iter().any(any),
            _ => false,
        }
    }
    schema
        .iter()
        .any(|(key, value)| key == "x-mcp-header" || any(value))
}

/// A header value for text that may not travel bare: SEP-2243 wraps text
/// with surrounding blanks, characters outside visible ASCII, or the
/// wrapper's own shape as `=?base64?…?=`.
fn header_text(text: &str) -> HeaderValue {
    let padded = text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']);
    let unprintable = !text.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let wrapped = text.starts_with("=?base64?") && text.ends_with("?=");
    let value = if !(padded || unprintable || wrapped) {
        text.to_owned()
    } else {
        use base64::Engine;
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A request that failed on its way: refused connections never reached
/// the upstream; anything later may have.
fn unsent_or_lost(e: reqwest::Error) -> CallError {
    if e.is_connect() {
        CallError::new(
            ErrorCategory::Network,
            format!("connect failed: {}", e.without_url()),
        )
    } else {
        lost(e)
    }
}

/// A request that failed after it may have reached the upstream. The URL
/// stays out of the message (a query string may carry a token).
fn lost(e: reqwest::Error) -> CallError {
    CallError::new(
        ErrorCategory::Network,
        format!("upstream request failed: {}", e.without_url()),
    )
    .maybe_sent()
}

/// The error an unsuccessful HTTP status stands for: the JSON-RPC error in
/// its body when there is one, else the status's meaning.
async fn status_error(response: reqwest::Response) -> CallError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let by_status = from_http_status(status, retry_after.as_deref());
    let Ok(body) = read_limited(response, MAX_ERROR_BODY).await else {
        return by_status;
    };
    #[derive(serde::Deserialize)]
    struct Failure {
        error: ErrorData,
    }
    match serde_json::from_slice::<Failure>(&body) {
        Ok(Failure { error }) => CallError {
            delivery: by_status.delivery,
            retry_after: by_status.retry_after,
            ..from_service_error(ServiceError::McpError(error), true)
        },
        Err(_) => by_status,
    }
}

/// A whole response body, refused past `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes, CallError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_big(limit));
    }
    let mut whole = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(lost)? {
        if whole.is_empty() && response.content_length() == Some(chunk.len() as u64) {
            return Ok(chunk);
        }
        if whole.len() + chunk.len() > limit {
            return Err(too_big(limit));
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(whole))
}

fn too_big(limit: usize) -> CallError {
    CallError::new(
        ErrorCategory::Protocol,
        format!("the upstream's reply is over {limit} bytes"),
    )
    .maybe_sent()
}

/// The start of a message, for errors and logs.
fn preview(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(&data[..data.len().min(200)]);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::EventSink;
    use crate::transport::line::{Caller, Ticket};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::sync::mpsc;

    /// What a test call borrows.
    #[derive(Default)]
    struct Held {
        caller: Caller,
        ticket: Ticket,
        cancel: tokio_util::sync::CancellationToken,
        schema: JsonObject,
    }

    impl Held {
        fn out<'a>(&'a self, name: &'a str, events: &'a EventSink) -> Outgoing<'a> {
            Outgoing {
                name,
                arguments: None,
                caller: &self.caller,
                events,
                ticket: &self.ticket,
                timeout: std::time::Duration::from_secs(10),
                cancel: &self.cancel,
                progress: true,
                schema: &self.schema,
            }
        }
    }

    fn line_to(
        url: reqwest::Url,
        version: ProtocolVersion,
        session: SessionId,
        configured: HeaderMap,
        handler: &UpstreamHandler,
    ) -> HttpLine {
        HttpLine::new(HttpLineParts {
            client: reqwest::Client::new(),
            url,
            configured,
            session,
            version,
            handler: handler.clone(),
            max_body: 1 << 20,
        })
    }

    /// One HTTP/1.1 request as a loopback upstream reads it.
    struct Seen {
        method: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    async fn read_request(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Seen> {
        let mut line = String::new();
        reader.read_line(&mut line).await.ok()?;
        let method = line.split(' ').next()?.to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await.ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':')?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.ok()?;
        Some(Seen {
            method,
            headers,
            body: String::from_utf8(body).ok()?,
        })
    }

    /// An upstream whose call stream carries progress, a log line and an
    /// elicitation, then breaks off; the answer comes when the stream is
    /// resumed. With `json`, it answers calls with a JSON body instead.
    /// Every request it reads goes to `seen`, with the number of the
    /// connection it came on.
    async fn upstream(seen: mpsc::UnboundedSender<(usize, Seen)>, json: bool) -> reqwest::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for connection in 0.. {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut reader = BufReader::new(read);
                    while let Some(request) = read_request(&mut reader).await {
                        let body: serde_json::Value =
                            serde_json::from_str(&request.body).unwrap_or_default();
                        let reply = if json && body["method"] == "tools/call" {
                            let text = format!(
                                r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[]}}}}"#,
                                body["id"]
                            );
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                                text.len()
                            )
                        } else if request.method == "GET" {
                            let id = ID_BASE;
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                                 id: e3\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"done\"}}]}}}}\n\n"
                            )
                        } else if body["method"] == "tools/call" {
                            let id = &body["id"];
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                                 id: e1\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":{id},\"progress\":1,\"total\":2}}}}\n\n\
                                 data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"data\":\"halfway\"}}}}\n\n\
                                 id: e2\ndata: {{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"elicitation/create\",\"params\":{{\"message\":\"sure?\",\"requestedSchema\":{{\"type\":\"object\",\"properties\":{{}}}}}}}}\n\n"
                            )
                        } else {
                            "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_owned()
                        };
                        let close = reply.contains("connection: close");
                        let _ = seen.send((connection, request));
                        if write.write_all(reply.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        reqwest::Url::parse(&url).unwrap()
    }

    #[tokio::test]
    async fn a_call_stream_is_served_and_resumed_until_its_answer() {
        let (tx, mut seen) = mpsc::unbounded_channel();
        let url = upstream(tx, false).await;
        let (events_tx, _events) = mpsc::unbounded_channel();
        let handler = UpstreamHandler::new(events_tx);
        let session = SessionId::default();
        session.set(Some("sess-1"));
        let mut configured = HeaderMap::new();
        configured.insert("x-api-key", HeaderValue::from_static("k"));
        let line = line_to(
            url,
            ProtocolVersion::V_2025_11_25,
            session,
            configured,
            &handler,
        );
        let (sink, mut events) = EventSink::channel(16);
        let (sink, mut asks) = sink.with_asks(serde_json::json!({"elicitation": {}}));
        tokio::spawn(async move {
            while let Some(ask) = asks.recv().await {
                assert_eq!(ask.method, "elicitation/create");
                let _ = ask.reply.send(Ok(serde_json::json!({"action": "accept"})));
            }
        });
        let id = line.next_id();
        let token = rmcp::model::ProgressToken(rmcp::model::NumberOrString::Number(id as i64));
        let _route = handler.watch_progress(token, sink.clone());
        let held = Held::default();
        let out = held.out("slow", &sink);
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"slow"}}}}"#
        );
        let answer = line.exchange(id, text.into_bytes(), &out).await.unwrap();
        let body = answer.into_body().unwrap();
        assert_eq!(&body[..], br#"{"content":[{"type":"text","text":"done"}]}"#);

        // The call, with the session and configured headers.
        let (_, call) = seen.recv().await.unwrap();
        assert_eq!(call.method, "POST");
        assert_eq!(call.header("mcp-session-id"), Some("sess-1"));
        assert_eq!(call.header("x-api-key"), Some("k"));
        assert_eq!(call.header("mcp-protocol-version"), Some("2025-11-25"));
        assert_eq!(
            call.header("mcp-method"),
            None,
            "a session revision names nothing"
        );
        // The caller's answer to the elicitation, posted back.
        let (_, reply) = seen.recv().await.unwrap();
        let reply: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            reply,
            serde_json::json!({"jsonrpc":"2.0","id":"s1","result":{"action":"accept"}})
        );
        // The stream resumed after the last event it had.
        let (_, resume) = seen.recv().await.unwrap();
        assert_eq!(resume.method, "GET");
        assert_eq!(resume.header("last-event-id"), Some("e2"));
        assert_eq!(resume.header("mcp-session-id"), Some("sess-1"));

        let mut kinds = Vec::new();
        while let Ok(event) = events.try_recv() {
            kinds.push(match event {
                StreamEvent::Progress { progress, .. } => format!("progress {progress}"),
                StreamEvent::Log { data, .. } => format!("log {data}"),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(kinds, ["progress 1", "log \"halfway\""]);
    }

    #[test]
    fn names_travel_bare_unless_they_cannot() {
        assert_eq!(
            header_text("asana_list_workspaces"),
            "asana_list_workspaces"
        );
        assert_eq!(header_text(" padded"), "=?base64?IHBhZGRlZA==?=");
        assert_eq!(header_text("café"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(
            header_text("=?base64?eA==?="),
            "=?base64?PT9iYXNlNjQ/ZUE9PT89?="
        );
    }

    #[test]
    fn schemas_that_mark_headers_are_found_at_any_depth() {
        let plain = serde_json::json!({"type":"object","properties":{"q":{"type":"string"}}});
        let marked = serde_json::json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"}}});
        let object = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        assert!(!marks_headers(&object(plain)));
        assert!(marks_headers(&object(marked)));
    }

    #[tokio::test]
    async fn a_2026_call_is_named_in_headers_and_its_connection_reused() {
        let (tx, mut seen) = mpsc::unbounded_channel();
        let url = upstream(tx, true).await;
        let (events_tx, _events) = mpsc::unbounded_channel();
        let line = line_to(
            url,
            ProtocolVersion::V_2026_07_28,
            SessionId::default(),
            HeaderMap::new(),
            &UpstreamHandler::new(events_tx),
        );
        let held = Held::default();
        let sink = EventSink::discard();
        let out = held.out("caf\u{e9}", &sink);
        for _ in 0..2 {
            let id = line.next_id();
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call"}}"#);
            let answer = line.exchange(id, text.into_bytes(), &out).await.unwrap();
            assert_eq!(&answer.into_body().unwrap()[..], br#"{"content":[]}"#);
        }
        let (first, call) = seen.recv().await.unwrap();
        assert_eq!(call.header("mcp-method"), Some("tools/call"));
        assert_eq!(call.header("mcp-name"), Some("=?base64?Y2Fmw6k=?="));
        assert_eq!(call.header("mcp-protocol-version"), Some("2026-07-28"));
        assert_eq!(call.header("mcp-session-id"), None);
        let (second, _) = seen.recv().await.unwrap();
        assert_eq!(first, second, "the second call reuses the connection");
        // A tool whose schema puts arguments in headers goes through rmcp.
        let marked = serde_json::json!({"properties": {"r": {"x-mcp-header": "R"}}});
        assert!(!line.carries(marked.as_object().unwrap()));
        assert!(line.carries(&held.schema));
    }

    #[tokio::test]
    async fn a_refused_call_is_never_sent_and_its_error_names_no_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let url =
            reqwest::Url::parse(&format!("http://127.0.0.1:{port}/mcp?token=s3cret")).unwrap();
        let (events_tx, _events) = mpsc::unbounded_channel();
        let handler = UpstreamHandler::new(events_tx);
        let line = line_to(
            url,
            ProtocolVersion::V_2025_11_25,
            SessionId::default(),
            HeaderMap::new(),
            &handler,
        );
        let held = Held::default();
        let sink = EventSink::discard();
        let id = line.next_id();
        let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call"}}"#);
        let e = line
            .exchange(id, text.into_bytes(), &held.out("t", &sink))
            .await
            .expect_err("nothing listens there");
        assert_eq!(e.delivery, crate::error::Delivery::NeverSent, "{e:?}");
        assert!(!e.message.contains("s3cret"), "{}", e.message);
    }
}
