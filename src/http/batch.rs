//! `POST /api/mcp/batch`: many tool calls, one SSE stream.
//!
//! The body is `{"calls": [{"id", "toolName", "arguments"}], "concurrency",
//! "perServiceConcurrency", "stopOnError"}`. Each call's `status`,
//! `progress`, `result` and `error` events carry its `id` and are written
//! in the order they happen; `done` ends the stream with totals. Every call
//! is its own call — its own validation, access check, safety rules,
//! retries and cache use — so a bad call (unknown tool, invalid arguments,
//! a tool the client may not use) fails alone. At most `concurrency` calls
//! run at once, and at most `perServiceConcurrency` on one logical service.
//! With `stopOnError`, calls not yet started after a failure are skipped.
//! Closing the connection cancels what is still running.
//!
//! Single-item reads whose manifest names a multi-get (`batch`: e.g.
//! `asana_get_task` into `asana_get_multiple_tasks_by_gid`) are folded:
//! calls of one such tool with the same other arguments become one
//! multi-get call, and its items are handed back one per call. If that
//! call fails or leaves an item out, the calls concerned are made on their
//! own, so a bad item fails alone (`noMerge` turns folding off).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use futures::StreamExt;
use mcpvisor_actors::cache::{CacheUse, canonical_json};
use mcpvisor_actors::manifest::MultiGet;
use mcpvisor_actors::router::{call_span, check_arguments};
use mcpvisor_actors::{CallError, CallReply, ErrorCategory, EventSink, Router, StreamEvent};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::AppState;
use super::errors::{ApiError, body_of};
use super::guard::{client_of, request_id_of};

/// Most calls in one batch.
pub const MAX_CALLS: usize = 100;
/// Most calls of one batch running at once.
const MAX_CONCURRENCY: usize = 32;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/mcp/batch", web::post().to(batch));
}

/// Body of `POST /api/mcp/batch`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchRequest {
    calls: Vec<BatchCall>,
    /// Calls running at once (default 4, at most 32).
    #[serde(default)]
    concurrency: Option<usize>,
    /// Calls running at once on one logical service (default: `concurrency`).
    #[serde(default)]
    per_service_concurrency: Option<usize>,
    /// Skip the calls not yet started once one has failed.
    #[serde(default)]
    stop_on_error: bool,
    /// Go around the result cache for every call.
    #[serde(default)]
    no_cache: bool,
    /// Never fold single-item reads into a multi-get.
    #[serde(default)]
    no_merge: bool,
}

/// One call of a batch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchCall {
    /// The caller's name for it (default: its index); unique in the batch.
    #[serde(default)]
    id: Option<Value>,
    tool_name: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
}

/// Writes events, numbered and tagged, to the client; shared by the calls.
#[derive(Clone)]
struct Out {
    tx: mpsc::Sender<sse::Event>,
    next_id: Arc<AtomicU64>,
    request_id: Arc<str>,
}

impl Out {
    async fn send(&self, event: &'static str, mut data: Value) {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        if let Value::Object(o) = &mut data {
            o.insert("timestamp".into(), json!(unix_ms()));
            o.insert("requestId".into(), json!(&*self.request_id));
        }
        let Ok(d) = sse::Data::new_json(data) else {
            return;
        };
        let _ = self.tx.send(d.event(event).id(n.to_string()).into()).await;
    }

    fn closed(&self) -> bool {
        self.tx.is_closed()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `data` with the call's id in front.
fn tagged(id: &Value, data: Value) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), id.clone());
    if let Value::Object(o) = data {
        m.extend(o);
    }
    Value::Object(m)
}

/// A call ready to run, or the error it fails with before it starts.
struct Prepared {
    id: Value,
    tool: String,
    group: Option<String>,
    arguments: Option<Map<String, Value>>,
    refused: Option<CallError>,
    /// The multi-get it may fold into.
    multi: Option<MultiGet>,
}

/// What the batch runs: a call, or single-item reads folded into one
/// multi-get call.
enum Unit {
    One(Prepared),
    Merged(Merged),
}

/// Calls of one single-item read, same arguments but the item, to be made
/// as one multi-get call.
struct Merged {
    rule: MultiGet,
    group: Option<String>,
    /// The multi-get's arguments.
    arguments: Map<String, Value>,
    members: Vec<Prepared>,
}

/// Folds calls that name a multi-get (and may use it) into merged units
/// of at most its `maxItems`; the rest stay single.
fn fold(prepared: Vec<Prepared>) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut groups: Vec<(String, Vec<Prepared>)> = Vec::new();
    for p in prepared {
        let item = p
            .multi
            .as_ref()
            .filter(|_| p.refused.is_none())
            .and_then(|m| p.arguments.as_ref()?.get(&m.argument)?.as_str().map(|_| m));
        let Some(rule) = item else {
            units.push(Unit::One(p));
            continue;
        };
        // Same tool, same arguments but the item.
        let mut rest = p.arguments.clone().unwrap_or_default();
        rest.remove(&rule.argument);
        let key = format!("{}\0{}", p.tool, canonical_json(&Value::Object(rest)));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(p),
            None => groups.push((key, vec![p])),
        }
    }
    for (_, members) in groups {
        if members.len() < 2 {
            units.extend(members.into_iter().map(Unit::One));
            continue;
        }
        let Some(rule) = members[0].multi.clone() else {
            continue;
        };
        let mut members = members.into_iter().peekable();
        while members.peek().is_some() {
            let chunk: Vec<Prepared> = members.by_ref().take(rule.max_items.max(1)).collect();
            if chunk.len() < 2 {
                units.extend(chunk.into_iter().map(Unit::One));
                continue;
            }
            let mut arguments = chunk[0].arguments.clone().unwrap_or_default();
            arguments.remove(&rule.argument);
            let items: Vec<Value> = chunk
                .iter()
                .filter_map(|p| p.arguments.as_ref()?.get(&rule.argument).cloned())
                .collect();
            arguments.insert(rule.list_argument.clone(), Value::Array(items));
            units.push(Unit::Merged(Merged {
                rule: rule.clone(),
                group: chunk[0].group.clone(),
                arguments,
                members: chunk,
            }));
        }
    }
    units
}

/// The JSON a result carries: its structured content, else its first
/// text block parsed.
fn result_json(result: &rmcp::model::CallToolResult) -> Option<Value> {
    result.structured_content.clone().or_else(|| {
        result
            .content
            .first()
            .and_then(|c| c.as_text())
            .and_then(|t| serde_json::from_str(&t.text).ok())
    })
}

/// How a batch call ended.
#[derive(Clone, Copy, PartialEq)]
enum Ended {
    Ok,
    Failed,
    Skipped,
}

async fn batch(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<BatchRequest>,
) -> HttpResponse {
    let request_id = request_id_of(&req);
    match start(state, &req, body.into_inner(), request_id.clone()) {
        Ok(response) => response,
        Err(e) => super::errors::response_with_id(&e, &request_id),
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError(
        CallError::new(ErrorCategory::Validation, message),
        Some(actix_web::http::StatusCode::BAD_REQUEST),
    )
}

fn start(
    state: web::Data<AppState>,
    req: &HttpRequest,
    body: BatchRequest,
    request_id: Arc<str>,
) -> Result<HttpResponse, ApiError> {
    if body.calls.is_empty() {
        return Err(bad_request("`calls` is empty".into()));
    }
    if body.calls.len() > MAX_CALLS {
        return Err(bad_request(format!(
            "a batch holds at most {MAX_CALLS} calls; this one has {}",
            body.calls.len()
        )));
    }
    let concurrency = body.concurrency.unwrap_or(4).clamp(1, MAX_CONCURRENCY);
    let per_service = body
        .per_service_concurrency
        .unwrap_or(concurrency)
        .clamp(1, concurrency);
    let client = client_of(req);
    let table = state.registry.snapshot();
    let mut seen = HashSet::new();
    let mut prepared = Vec::with_capacity(body.calls.len());
    for (i, call) in body.calls.into_iter().enumerate() {
        let id = match call.id {
            None => json!(i),
            Some(v @ (Value::String(_) | Value::Number(_))) => v,
            Some(_) => {
                return Err(bad_request(format!(
                    "calls[{i}].id must be a string or a number"
                )));
            }
        };
        if !seen.insert(id.to_string()) {
            return Err(bad_request(format!("calls[{i}].id {id} is used twice")));
        }
        let entry = table.get(&call.tool_name);
        let arguments = Value::Object(call.arguments.unwrap_or_default());
        let refused = match entry {
            None => Some(CallError::new(
                ErrorCategory::NotFound,
                format!("no tool named `{}`", call.tool_name),
            )),
            Some(_) if !client.may_use(&call.tool_name) => Some(CallError::new(
                ErrorCategory::Auth,
                format!(
                    "client `{}` may not use the tool `{}`",
                    client.name, call.tool_name
                ),
            )),
            Some(e) => check_arguments(e, &arguments).err(),
        };
        let Value::Object(arguments) = arguments else {
            unreachable!("built as an object above")
        };
        // A multi-get of the same logical service the client may use.
        let multi = entry
            .and_then(|e| e.manifest.as_ref()?.batch.clone().map(|m| (e, m)))
            .filter(|(e, m)| {
                table
                    .get(&m.into)
                    .is_some_and(|into| into.group == e.group && client.may_use(&m.into))
            })
            .map(|(_, m)| m);
        prepared.push(Prepared {
            id,
            tool: call.tool_name,
            group: entry.map(|e| e.group.clone()),
            arguments: (!arguments.is_empty()).then_some(arguments),
            refused,
            multi,
        });
    }

    let (tx, rx) = mpsc::channel::<sse::Event>(state.server.event_buffer.max(8));
    let out = Out {
        tx,
        next_id: Arc::new(AtomicU64::new(0)),
        request_id: request_id.clone(),
    };
    let run = Run {
        router: state.router.clone(),
        out,
        buffer: state.server.event_buffer,
        cache: CacheUse {
            bypass: body.no_cache,
            client: Some(client.name.clone()),
        },
        stop_on_error: body.stop_on_error,
        no_merge: body.no_merge,
        per_service,
        failed: Arc::new(AtomicBool::new(false)),
        services: prepared
            .iter()
            .filter_map(|p| p.group.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .map(|g| (g, Arc::new(Semaphore::new(per_service))))
            .collect(),
        request_id,
    };
    let open = state.metrics.stream_opened("api_batch");
    actix_web::rt::spawn(async move {
        let _open = open;
        let started = Instant::now();
        let total = prepared.len();
        run.out
            .send(
                "status",
                json!({"stage": "accepted", "calls": total, "concurrency": concurrency,
                       "perServiceConcurrency": per_service}),
            )
            .await;
        let units = if run.no_merge {
            prepared.into_iter().map(Unit::One).collect()
        } else {
            fold(prepared)
        };
        let ended: Vec<Ended> = futures::stream::iter(units)
            .map(|u| run.unit(u))
            .buffer_unordered(concurrency)
            .collect::<Vec<Vec<Ended>>>()
            .await
            .into_iter()
            .flatten()
            .collect();
        let count = |k: Ended| ended.iter().filter(|e| **e == k).count();
        run.out
            .send(
                "done",
                json!({
                    "ok": count(Ended::Failed) == 0 && count(Ended::Skipped) == 0,
                    "calls": total,
                    "succeeded": count(Ended::Ok),
                    "failed": count(Ended::Failed),
                    "skipped": count(Ended::Skipped),
                    "durationMs": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                }),
            )
            .await;
    });

    Ok(state.sse_response(rx, req))
}

/// What every call of one batch shares.
struct Run {
    router: Router,
    out: Out,
    buffer: usize,
    cache: CacheUse,
    stop_on_error: bool,
    /// Run every call on its own, multi-gets or not.
    no_merge: bool,
    per_service: usize,
    failed: Arc<AtomicBool>,
    /// A permit pool per logical service.
    services: HashMap<String, Arc<Semaphore>>,
    request_id: Arc<str>,
}

impl Run {
    async fn unit(&self, unit: Unit) -> Vec<Ended> {
        match unit {
            Unit::One(p) => vec![self.one(p).await],
            Unit::Merged(m) => self.merged(m).await,
        }
    }

    /// One multi-get call for several single-item reads, its items handed
    /// back one per call. If it fails, or leaves an item out, those calls
    /// are made on their own: a bad item fails alone.
    async fn merged(&self, m: Merged) -> Vec<Ended> {
        let Merged {
            rule,
            group,
            arguments,
            members,
        } = m;
        if self.stop_on_error && self.failed.load(Ordering::Acquire) {
            return self.singly(members).await;
        }
        let n = members.len();
        for p in &members {
            self.out
                .send(
                    "status",
                    tagged(
                        &p.id,
                        json!({"stage": "merged", "message": format!(
                            "fetched with {} other call(s) in one call of `{}`", n - 1, rule.into)}),
                    ),
                )
                .await;
        }
        let permit = match group.as_ref().and_then(|g| self.services.get(g)) {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        let (sink, _events) = EventSink::channel(self.buffer);
        let span = call_span(&format!("{}/merged", self.request_id), &rule.into);
        let call = self.router.execute(super::unaskable_call(
            rule.into.clone(),
            Some(arguments),
            false,
            sink,
            span,
            self.cache.clone(),
        ));
        let outcome = tokio::select! {
            o = call => o,
            () = self.out.tx.closed() => return vec![Ended::Skipped; n],
        };
        drop(permit);
        let done = match outcome {
            Ok(done) => done,
            Err(e) => {
                tracing::debug!(tool = %rule.into, error = %e, "multi-get failed; calling one by one");
                return self.singly(members).await;
            }
        };
        let CallReply::Complete(result) = &done.result else {
            return self.singly(members).await;
        };
        let whole = result_json(&result.typed()).filter(|_| !result.is_error());
        let Some(whole) = whole else {
            return self.singly(members).await;
        };
        let items: Vec<Value> = whole
            .pointer(&rule.items_pointer)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut ended = Vec::with_capacity(n);
        let mut missing = Vec::new();
        for p in members {
            let want = p
                .arguments
                .as_ref()
                .and_then(|a| a.get(&rule.argument))
                .cloned();
            let item = items
                .iter()
                .find(|i| want.is_some() && i.get(&rule.item_key) == want.as_ref());
            let Some(item) = item else {
                missing.push(p);
                continue;
            };
            let mut single = whole.clone();
            if let Some(slot) = single.pointer_mut(&rule.items_pointer) {
                *slot = item.clone();
            }
            let body = json!({
                "service": done.service,
                "attempts": done.attempts,
                "durationMs": u64::try_from(done.elapsed.as_millis()).unwrap_or(u64::MAX),
                "isError": false,
                "content": [{"type": "text", "text": single.to_string()}],
                "structuredContent": single,
                "merged": {"into": rule.into, "calls": n},
            });
            self.out.send("result", tagged(&p.id, body)).await;
            ended.push(Ended::Ok);
        }
        ended.extend(self.singly(missing).await);
        ended
    }

    /// Calls made one by one (within the per-service bound).
    async fn singly(&self, calls: Vec<Prepared>) -> Vec<Ended> {
        futures::stream::iter(calls)
            .map(|p| self.one(p))
            .buffer_unordered(self.per_service)
            .collect()
            .await
    }

    async fn one(&self, p: Prepared) -> Ended {
        let id = p.id;
        if self.out.closed() {
            return Ended::Skipped;
        }
        if let Some(e) = p.refused {
            self.fail(&id, &e).await;
            return Ended::Failed;
        }
        let _permit = match p.group.as_ref().and_then(|g| self.services.get(g)) {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        if self.stop_on_error && self.failed.load(Ordering::Acquire) {
            self.out
                .send(
                    "status",
                    tagged(
                        &id,
                        json!({"stage": "skipped", "message": "an earlier call failed (stopOnError)"}),
                    ),
                )
                .await;
            return Ended::Skipped;
        }
        let (sink, mut events) = EventSink::channel(self.buffer);
        let span = call_span(&format!("{}/{id}", self.request_id), &p.tool);
        let call = self.router.execute(super::unaskable_call(
            p.tool.clone(),
            p.arguments,
            true,
            sink,
            span,
            self.cache.clone(),
        ));
        tokio::pin!(call);
        let outcome = loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => self.event(&id, event).await,
                outcome = &mut call => break outcome,
                // The client left: dropping the call cancels it upstream.
                () = self.out.tx.closed() => return Ended::Skipped,
            }
        };
        while let Ok(event) = events.try_recv() {
            self.event(&id, event).await;
        }
        match outcome {
            Ok(done) => match done.result {
                CallReply::Complete(result) => {
                    let is_error = result.is_error();
                    let result = result.typed();
                    let mut body = json!({
                        "service": done.service,
                        "attempts": done.attempts,
                        "durationMs": u64::try_from(done.elapsed.as_millis()).unwrap_or(u64::MAX),
                        "isError": is_error,
                        "content": result.content,
                        "structuredContent": result.structured_content,
                    });
                    if done.cached {
                        body["cached"] = json!(true);
                    }
                    if done.coalesced {
                        body["coalesced"] = json!(true);
                    }
                    self.out.send("result", tagged(&id, body)).await;
                    if is_error {
                        self.failed.store(true, Ordering::Release);
                        Ended::Failed
                    } else {
                        Ended::Ok
                    }
                }
                CallReply::InputRequired(_) => {
                    let e = CallError::new(
                        ErrorCategory::Internal,
                        "the upstream asked for the caller's input, which this API cannot give",
                    );
                    self.fail(&id, &e).await;
                    Ended::Failed
                }
            },
            Err(e) => {
                self.fail(&id, &e).await;
                Ended::Failed
            }
        }
    }

    async fn fail(&self, id: &Value, e: &CallError) {
        self.failed.store(true, Ordering::Release);
        self.out
            .send("error", tagged(id, body_of(e)["error"].clone()))
            .await;
    }

    async fn event(&self, id: &Value, event: StreamEvent) {
        let (name, data) = match event {
            StreamEvent::Progress {
                progress,
                total,
                message,
            } => {
                let percentage = total
                    .filter(|t| *t > 0.0)
                    .map(|t| (progress / t * 100.0).min(100.0));
                (
                    "progress",
                    json!({"progress": progress, "total": total, "percentage": percentage, "message": message}),
                )
            }
            StreamEvent::Status {
                stage,
                message,
                service,
            } => (
                "status",
                json!({"stage": stage, "message": message, "service": service}),
            ),
            StreamEvent::Log {
                level,
                logger,
                data,
            } => (
                "log",
                json!({"level": level, "logger": logger, "data": data}),
            ),
        };
        self.out.send(name, tagged(id, data)).await;
    }
}
