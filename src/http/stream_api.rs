//! `/api/mcp/stream`: a tool call as a stream of named SSE events.
//!
//! `POST` takes `{toolName, arguments, streamingOptions}` and answers with
//! `text/event-stream`: `status`, `progress`, `chunk`, then `result` or
//! `error`, then `done` — each with an id and a timestamp, written as it
//! happens. Unknown tools and schema-invalid arguments are refused with a
//! JSON error *before* the stream starts, so clients get a real status code.
//! Closing the connection cancels the call upstream. `GET` lists the tools
//! that stream, with their manifest metadata.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, HttpResponse, Responder, web};
use actix_web_lab::sse;
use mcpvisor_actors::cache::CacheUse;
use mcpvisor_actors::manifest::Streaming;
use mcpvisor_actors::router::{call_span, check_arguments};
use mcpvisor_actors::stream::split_chunks;
use mcpvisor_actors::{CallError, CallReply, ErrorCategory, EventSink, StreamEvent};
use rmcp::model::CallToolResult;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::AppState;
use super::errors::{ApiError, body_of};
use super::guard::{client_of, request_id_of};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/mcp/stream")
            .route(web::post().to(stream_call))
            .route(web::get().to(list_streaming)),
    );
}

/// Body of `POST /api/mcp/stream`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StreamRequest {
    tool_name: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
    #[serde(default)]
    streaming_options: StreamingOptions,
}

/// What the client wants to see.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct StreamingOptions {
    enable_progress: bool,
    enable_status_updates: bool,
    /// Split large list results into `chunk` events (incremental tools).
    enable_chunks: bool,
    /// Items per chunk; default from the manifest.
    chunk_size: Option<usize>,
    /// Go upstream even when the result cache holds an answer.
    no_cache: bool,
}

impl Default for StreamingOptions {
    fn default() -> Self {
        Self {
            enable_progress: true,
            enable_status_updates: true,
            enable_chunks: true,
            chunk_size: None,
            no_cache: false,
        }
    }
}

/// `POST /api/mcp/stream`. Errors before the stream starts carry the
/// request id in their body, as the stream's events do.
async fn stream_call(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<StreamRequest>,
) -> HttpResponse {
    let request_id = request_id_of(&req);
    match start_stream(state, &req, body, request_id.clone()).await {
        Ok(response) => response,
        Err(e) => super::errors::response_with_id(&e, &request_id),
    }
}

async fn start_stream(
    state: web::Data<AppState>,
    req: &HttpRequest,
    body: web::Json<StreamRequest>,
    request_id: std::sync::Arc<str>,
) -> Result<HttpResponse, ApiError> {
    let StreamRequest {
        tool_name,
        arguments,
        streaming_options: options,
    } = body.into_inner();
    let table = state.registry.snapshot();
    let entry = table.get(&tool_name).cloned().ok_or_else(|| {
        CallError::new(
            ErrorCategory::NotFound,
            format!("no tool named `{tool_name}`"),
        )
    })?;
    let client = client_of(req);
    let client_name = client.name.clone();
    if !client.may_use(&tool_name) {
        return Err(ApiError(
            CallError::new(
                ErrorCategory::Auth,
                format!(
                    "client `{}` may not use the tool `{tool_name}`",
                    client.name
                ),
            ),
            Some(actix_web::http::StatusCode::FORBIDDEN),
        ));
    }
    // Validated once, here, so bad arguments are refused before a stream.
    let arguments = Value::Object(arguments.unwrap_or_default());
    check_arguments(&entry, &arguments)?;
    let Value::Object(arguments) = arguments else {
        unreachable!("built as an object above")
    };
    let arguments = (!arguments.is_empty()).then_some(arguments);

    let streaming = entry.manifest.as_ref().and_then(|m| m.streaming.clone());
    let (sink, mut engine_rx) = EventSink::channel(state.server.event_buffer);
    let sink = if options.enable_progress {
        sink
    } else {
        sink.without_progress()
    };
    let sink = if options.enable_status_updates {
        sink
    } else {
        sink.without_status()
    };
    let (tx, rx) = mpsc::channel::<sse::Event>(state.server.event_buffer.max(8));
    let router = state.router.clone();
    let started = Instant::now();

    let open = state.metrics.stream_opened("api_stream");
    let span = call_span(&request_id, &tool_name);
    let task_span = span.clone();
    actix_web::rt::spawn(tracing::Instrument::instrument(
        async move {
            let _open = open;
            let mut out = Emitter {
                tx,
                next_id: 0,
                request_id,
            };
            if options.enable_status_updates {
                out.send(
                    "status",
                    json!({"stage": "accepted", "tool": tool_name, "mode": streaming}),
                )
                .await;
            }
            let call = router.execute(super::unaskable_call(
                tool_name.clone(),
                arguments,
                true,
                sink,
                span,
                CacheUse {
                    bypass: options.no_cache,
                    client: Some(client_name),
                },
            ));
            tokio::pin!(call);
            // Status-mode tools say they are still working while they run.
            let working_every = match &streaming {
                Some(Streaming::Status { interval_ms }) if options.enable_status_updates => {
                    Some(Duration::from_millis((*interval_ms).max(100)))
                }
                _ => None,
            };
            let mut working =
                tokio::time::interval(working_every.unwrap_or(Duration::from_secs(3600)));
            working.reset();
            let outcome = loop {
                tokio::select! {
                    biased;
                    _ = working.tick(), if working_every.is_some() => {
                        out.send("status", json!({
                            "stage": "working",
                            "message": "the call is still running",
                            "elapsedMs": started.elapsed().as_millis() as u64,
                        })).await;
                    }
                    Some(event) = engine_rx.recv() => match event {
                        StreamEvent::Progress { progress, total, message } if options.enable_progress => {
                            let percentage = total.filter(|t| *t > 0.0).map(|t| (progress / t * 100.0).min(100.0));
                            out.send("progress", json!({
                                "progress": progress, "total": total, "percentage": percentage, "message": message,
                            })).await;
                        }
                        StreamEvent::Status { stage, message, service } if options.enable_status_updates => {
                            out.send("status", json!({"stage": stage, "message": message, "service": service})).await;
                        }
                        StreamEvent::Log { level, logger, data } if options.enable_status_updates => {
                            out.send("log", json!({"level": level, "logger": logger, "data": data})).await;
                        }
                        _ => {}
                    },
                    result = &mut call => break result,
                    () = out.tx.closed() => {
                        // The client left: dropping the call's event receiver
                        // makes the service cancel the upstream request.
                        tracing::debug!(tool = %tool_name, "stream client disconnected; cancelling");
                        return;
                    }
                }
            };
            // Progress that raced the final answer still goes out first.
            while let Ok(StreamEvent::Progress {
                progress,
                total,
                message,
            }) = engine_rx.try_recv()
            {
                if options.enable_progress {
                    let percentage = total
                        .filter(|t| *t > 0.0)
                        .map(|t| (progress / t * 100.0).min(100.0));
                    out.send("progress", json!({"progress": progress, "total": total, "percentage": percentage, "message": message})).await;
                }
            }
            let ok = match outcome {
                Ok(done) => match done.result {
                    CallReply::Complete(result) => {
                        let served = Served {
                            service: done.service,
                            attempts: done.attempts,
                            elapsed: done.elapsed,
                            cached: done.cached,
                            coalesced: done.coalesced,
                        };
                        out.result(result.typed(), &served, streaming.as_ref(), &options)
                            .await;
                        true
                    }
                    // Only callers that take input_required get one.
                    CallReply::InputRequired(_) => {
                        let e = CallError::new(
                            ErrorCategory::Internal,
                            "the upstream asked for the caller's input, which this API cannot give",
                        );
                        out.send("error", body_of(&e)["error"].clone()).await;
                        false
                    }
                },
                Err(e) => {
                    out.send("error", body_of(&e)["error"].clone()).await;
                    false
                }
            };
            let elapsed = started.elapsed().as_millis() as u64;
            out.send(
                "done",
                json!({"ok": ok, "durationMs": elapsed, "events": out.next_id + 1}),
            )
            .await;
        },
        task_span,
    ));

    Ok(state.sse_response(rx, req))
}

/// Numbers, timestamps and tags (request id) events, and writes them to
/// the client.
struct Emitter {
    tx: mpsc::Sender<sse::Event>,
    next_id: u64,
    request_id: std::sync::Arc<str>,
}

impl Emitter {
    async fn send(&mut self, event: &'static str, mut data: Value) {
        self.next_id += 1;
        if let Value::Object(o) = &mut data {
            o.insert("timestamp".into(), json!(unix_ms()));
            o.insert("requestId".into(), json!(&*self.request_id));
        }
        let Ok(d) = sse::Data::new_json(data) else {
            return;
        };
        let _ = self
            .tx
            .send(d.event(event).id(self.next_id.to_string()).into())
            .await;
    }

    async fn result(
        &mut self,
        result: CallToolResult,
        served: &Served,
        streaming: Option<&Streaming>,
        options: &StreamingOptions,
    ) {
        let is_error = result.is_error.unwrap_or(false);
        let structured = result.structured_content.clone().or_else(|| {
            // Text-only servers (like the real Asana one) put JSON in text.
            result
                .content
                .first()
                .and_then(|c| c.as_text())
                .and_then(|t| serde_json::from_str(&t.text).ok())
        });
        if let (
            Some(Streaming::Incremental {
                chunk_size,
                items_pointer,
            }),
            Some(value),
            true,
            false,
        ) = (
            streaming,
            structured.clone(),
            options.enable_chunks,
            is_error,
        ) {
            let size = options.chunk_size.unwrap_or(*chunk_size).max(1);
            if let Some((chunks, rest)) = split_chunks(value, items_pointer, size) {
                let total_chunks = chunks.len();
                let mut items = 0;
                for (index, chunk) in chunks.into_iter().enumerate() {
                    items += chunk.len();
                    out_chunk(self, index, total_chunks, chunk).await;
                }
                let mut body = served.fields();
                body.insert("isError".into(), json!(false));
                body.insert(
                    "chunked".into(),
                    json!({"chunks": total_chunks, "items": items, "pointer": items_pointer}),
                );
                body.insert("structuredContent".into(), rest);
                self.send("result", Value::Object(body)).await;
                return;
            }
        }
        let mut body = served.fields();
        body.insert("isError".into(), json!(is_error));
        body.insert("content".into(), json!(result.content));
        body.insert(
            "structuredContent".into(),
            structured.unwrap_or(Value::Null),
        );
        self.send("result", Value::Object(body)).await;
    }
}

/// Where a result came from.
struct Served {
    service: String,
    attempts: u32,
    elapsed: Duration,
    cached: bool,
    coalesced: bool,
}

impl Served {
    /// The result event's fields about it: `cached` and `coalesced` only
    /// when true.
    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("service".into(), json!(self.service));
        m.insert("attempts".into(), json!(self.attempts));
        m.insert(
            "durationMs".into(),
            json!(u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX)),
        );
        if self.cached {
            m.insert("cached".into(), json!(true));
        }
        if self.coalesced {
            m.insert("coalesced".into(), json!(true));
        }
        m
    }
}

async fn out_chunk(out: &mut Emitter, index: usize, total: usize, items: Vec<Value>) {
    out.send(
        "chunk",
        json!({"index": index, "totalChunks": total, "count": items.len(), "items": items}),
    )
    .await;
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `GET /api/mcp/stream`: tools that stream, with their manifest metadata.
async fn list_streaming(state: web::Data<AppState>, req: HttpRequest) -> impl Responder {
    let table = state.registry.snapshot();
    let client = client_of(&req);
    let tools: Vec<Value> = table
        .tools()
        .iter()
        .filter(|e| client.may_use(&e.tool.name))
        .filter_map(|e| {
            let m = e.manifest.as_ref()?;
            let streaming = m.streaming.as_ref()?;
            Some(json!({
                "name": e.tool.name,
                "title": e.tool.title,
                "description": e.tool.description,
                "service": e.group,
                "providers": e.providers,
                "category": m.category,
                "priority": m.priority,
                "streaming": streaming,
                "performance": m.performance,
                "annotations": e.annotations(),
            }))
        })
        .collect();
    HttpResponse::Ok().json(json!({"count": tools.len(), "tools": tools}))
}
