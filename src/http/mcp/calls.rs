//! `tools/call` on `/mcp`: route the call, stream its progress, answer.
//!
//! When the client accepts SSE the reply is a stream: the caller's
//! `notifications/progress` as the upstream reports them, then the result.
//! Otherwise one JSON reply. Failures of the tool or of the services behind
//! it come back as a tool result with `isError: true` (the model can read
//! those); a malformed request or an unknown tool is a JSON-RPC error.

use super::jsonrpc;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpvisor_actors::cache::CacheUse;
use mcpvisor_actors::router::{call_span, check_arguments};
use mcpvisor_actors::stream::ClientAsk;
use mcpvisor_actors::{
    CallError, CallOutcome, CallReply, Caller, ErrorCategory, EventSink, Execute, StreamEvent,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::super::AppState;
use super::forwarded::log_severity;
use super::session::Session;
use super::{Era, era, reply, reply_text, rpc_error, rpc_result};

/// The `_meta` key of a `tools/call` that asks to skip the result cache.
pub const META_NO_CACHE: &str = "io.mcpvisor/noCache";
/// The `_meta` key of a result served from the cache.
const META_CACHED: &str = "io.mcpvisor/cached";
/// The `_meta` key of a result shared with an identical call in flight.
const META_COALESCED: &str = "io.mcpvisor/coalesced";

/// Text form of a JSON-RPC id, as sessions key in-flight calls.
pub fn request_key(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn tools_call(
    state: web::Data<AppState>,
    req: HttpRequest,
    era: Era,
    id: Value,
    params: Value,
) -> HttpResponse {
    let Some(name) = params
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return reply(
            StatusCode::OK,
            rpc_error(
                Some(&id),
                jsonrpc::INVALID_PARAMS,
                "tools/call needs a string `name`",
                None,
            ),
        );
    };
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o.clone()),
        Some(_) => {
            return reply(
                StatusCode::OK,
                rpc_error(
                    Some(&id),
                    jsonrpc::INVALID_PARAMS,
                    "`arguments` must be an object",
                    None,
                ),
            );
        }
    };
    let (caller, pinned) = match caller(&era, &params) {
        Ok(c) => c,
        Err(message) => {
            return reply(
                StatusCode::OK,
                rpc_error(Some(&id), jsonrpc::INVALID_PARAMS, &message, None),
            );
        }
    };
    let table = state.registry.snapshot();
    let Some(entry) = table.get(&name).cloned() else {
        return reply(
            StatusCode::OK,
            rpc_error(
                Some(&id),
                jsonrpc::INVALID_PARAMS,
                &format!("Unknown tool: {name}"),
                None,
            ),
        );
    };
    let client = super::super::guard::client_of(&req);
    if !client.may_use(&name) {
        let e = CallError::new(
            ErrorCategory::Auth,
            format!("client `{}` may not use the tool `{name}`", client.name),
        );
        return reply(
            StatusCode::OK,
            rpc_result(&id, era.finish(error_result(&e))),
        );
    }
    // Validated once, here: the router is told so.
    let empty = Value::Object(serde_json::Map::new());
    let given = match params.get("arguments") {
        Some(v @ Value::Object(_)) => v,
        _ => &empty,
    };
    if let Err(e) = check_arguments(&entry, given) {
        return reply(
            StatusCode::OK,
            rpc_result(&id, era.finish(error_result(&e))),
        );
    }
    let meta = era::meta(Some(&params));
    let notes = CallNotes {
        progress_token: meta.and_then(|m| m.get("progressToken")).cloned(),
        min_log: match &era {
            // Without logging/setLevel a session hears what servers send.
            Era::Session(s) => Some(s.log_level().as_deref().and_then(log_severity).unwrap_or(0)),
            Era::Stateless => meta
                .and_then(|m| m.get(era::META_LOG_LEVEL))
                .and_then(Value::as_str)
                .and_then(log_severity),
        },
    };
    let tracked = match &era {
        Era::Session(s) => Some(s.track(request_key(&id))),
        Era::Stateless => None,
    };
    // An MCP client sees no status lines, and progress only for a token.
    let (sink, mut events) = EventSink::channel(state.server.event_buffer);
    let sink = sink.without_status();
    let sink = if notes.progress_token.is_some() {
        sink
    } else {
        sink.without_progress()
    };
    // A session client reading the call's SSE stream can be asked for
    // sampling or elicitation on the upstream's behalf, on that stream.
    let takes_sse = era::accepts_sse(&req);
    let session = match &era {
        Era::Session(s) if takes_sse => Some(s.clone()),
        _ => None,
    };
    let (sink, mut asks) = match &session {
        Some(s) => {
            let (sink, rx) = sink.with_asks(s.client_capabilities.clone());
            (sink, Some(rx))
        }
        None => (sink, None),
    };
    let span = call_span(&super::super::guard::request_id_of(&req), &name);
    let cache = CacheUse {
        bypass: meta
            .and_then(|m| m.get(META_NO_CACHE))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        client: Some(client.name.clone()),
    };
    let call = state.router.execute(Execute {
        tool: name,
        arguments,
        validated: true,
        events: sink,
        caller,
        service: pinned,
        span,
        cache,
    });

    let cancel = tracked.as_ref().map(|t| t.token.clone());
    let cancelled = async move {
        match cancel {
            Some(token) => token.cancelled_owned().await,
            None => std::future::pending().await,
        }
    };
    let mut call = Box::pin(call);
    tokio::pin!(cancelled);
    if !takes_sse {
        // One JSON answer; progress has nowhere to go.
        let outcome = tokio::select! {
            o = &mut call => o,
            () = &mut cancelled => return HttpResponse::Accepted().finish(),
        };
        drop(events);
        let (status, body) = answer(&id, &era, outcome);
        return reply_text(status, body);
    }
    // The client takes either. Until there is something to stream (or a
    // heartbeat's time has passed), wait: a call that ends first gets one
    // JSON answer, with the HTTP status its error calls for.
    let window = tokio::time::sleep(state.heartbeat());
    tokio::pin!(window);
    let first = loop {
        tokio::select! {
            biased;
            Some(event) = events.recv() => {
                if notes.renders(&event) {
                    break Some(First::Event(event));
                }
            }
            Some(ask) = next_ask(&mut asks) => break Some(First::Ask(ask)),
            o = &mut call => {
                drop(events);
                let (status, body) = answer(&id, &era, o);
                return reply_text(status, body);
            }
            () = &mut cancelled => return HttpResponse::Accepted().finish(),
            () = &mut window => break None,
        }
    };

    let (tx, rx) = mpsc::channel::<sse::Event>(state.server.event_buffer.max(8));
    let open = state.metrics.stream_opened("mcp_call");
    actix_web::rt::spawn(async move {
        let _open = open;
        let _tracked = tracked;
        // Requests relayed to the client that are still unanswered when the
        // call ends are forgotten with it.
        let mut asked = AskedOnBehalf {
            session: session.clone(),
            ids: Vec::new(),
        };
        let cancelled = async {
            match &_tracked {
                Some(t) => t.token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cancelled);
        match first {
            Some(First::Event(event)) => forward(&tx, &notes, event).await,
            Some(First::Ask(ask)) => {
                if let Some(session) = &session {
                    asked.ids.push(relay_ask(&tx, session, ask).await);
                }
            }
            None => {}
        }
        let outcome = loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => forward(&tx, &notes, event).await,
                Some(ask) = next_ask(&mut asks) => {
                    if let Some(session) = &session {
                        asked.ids.push(relay_ask(&tx, session, ask).await);
                    }
                }
                o = &mut call => break o,
                () = tx.closed() => return, // client left: dropping `events` cancels upstream
                () = &mut cancelled => return,
            }
        };
        while let Ok(event) = events.try_recv() {
            forward(&tx, &notes, event).await;
        }
        let (_, body) = answer(&id, &era, outcome);
        let data = sse::Data::new(body);
        let _ = tx.send(data.event("message").into()).await;
    });
    state.sse_response(rx, &req)
}

/// Renders one call event on the call's SSE stream: progress for the
/// caller's token, and upstream log messages when the client takes them.
async fn forward(tx: &mpsc::Sender<sse::Event>, call: &CallNotes, event: StreamEvent) {
    let note = match event {
        StreamEvent::Progress {
            progress,
            total,
            message,
        } => {
            let Some(token) = &call.progress_token else {
                return;
            };
            let mut params = json!({"progressToken": token, "progress": progress});
            if let Some(t) = total {
                params["total"] = json!(t);
            }
            if let Some(m) = message {
                params["message"] = json!(m);
            }
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})
        }
        StreamEvent::Log {
            level,
            logger,
            data,
        } if call.wants_log(&level) => {
            let mut params = json!({"level": level, "data": data});
            if let Some(l) = logger {
                params["logger"] = json!(l);
            }
            json!({"jsonrpc": "2.0", "method": "notifications/message", "params": params})
        }
        _ => return,
    };
    if let Ok(data) = sse::Data::new_json(note) {
        let _ = tx.send(data.event("message").into()).await;
    }
}

async fn next_ask(asks: &mut Option<mpsc::Receiver<ClientAsk>>) -> Option<ClientAsk> {
    match asks {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends the upstream's request to the client on the call's stream; the
/// client's answer arrives as a POST and is matched by id.
async fn relay_ask(tx: &mpsc::Sender<sse::Event>, session: &Session, ask: ClientAsk) -> String {
    let id = session.expect_answer(ask.reply);
    let request = json!({"jsonrpc": "2.0", "id": id, "method": ask.method, "params": ask.params});
    if let Ok(data) = sse::Data::new_json(request) {
        let _ = tx.send(data.event("message").into()).await;
    }
    id
}

/// Ids of the requests one call relayed to its client.
struct AskedOnBehalf {
    session: Option<Arc<Session>>,
    ids: Vec<String>,
}

impl Drop for AskedOnBehalf {
    fn drop(&mut self) {
        if let Some(s) = &self.session {
            for id in &self.ids {
                s.forget(id);
            }
        }
    }
}

/// The first thing a call has to stream.
enum First {
    Event(StreamEvent),
    Ask(ClientAsk),
}

/// What a call's client asked to hear about besides its result.
struct CallNotes {
    /// Its `progressToken`, if it gave one.
    progress_token: Option<Value>,
    /// The lowest log level it hears, if any: in a session what it set
    /// with `logging/setLevel` (everything until it does); in 2026-07-28
    /// the request's `_meta` logLevel (nothing without one).
    min_log: Option<u8>,
}

impl CallNotes {
    fn wants_log(&self, level: &str) -> bool {
        self.min_log
            .is_some_and(|min| log_severity(level).is_none_or(|l| l >= min))
    }

    /// Whether `event` becomes a message on this call's stream.
    fn renders(&self, event: &StreamEvent) -> bool {
        match event {
            StreamEvent::Progress { .. } => self.progress_token.is_some(),
            StreamEvent::Log { level, .. } => self.wants_log(level),
            StreamEvent::Status { .. } => false,
        }
    }
}

/// The `tools/call` result for an outcome.
type Outcome = Result<mcpvisor_actors::CallOutcome, CallError>;

/// The JSON-RPC answer to a call, and the HTTP status it goes with. An
/// upstream's own JSON-RPC error is passed on as it came (a protocol
/// error stays one); mcpvisor's failures are tool results with their
/// category in `_meta`, readable by the model.
fn answer(id: &Value, era: &Era, outcome: Outcome) -> (StatusCode, String) {
    if let Err(e) = &outcome
        && let Some(code) = e.upstream_code
    {
        // MissingRequiredClientCapability is a 400 on HTTP (2026-07-28).
        let status = if code == jsonrpc::MISSING_CLIENT_CAPABILITY {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        return (
            status,
            super::wire(&rpc_error(
                Some(id),
                code,
                &e.message,
                e.upstream_data.as_deref().cloned(),
            )),
        );
    }
    // A result of its own goes out as the upstream wrote it, unless the
    // client's era needs `resultType` taken out.
    if let Ok(CallOutcome {
        result: CallReply::Complete(r),
        cached: false,
        coalesced: false,
        ..
    }) = &outcome
    {
        let stateless = matches!(era, Era::Stateless);
        // Where a 2026-07-28 upstream wrote it first (as its SDKs do), the
        // `resultType` an older client must not see is cut off the front.
        let json = match r.json().strip_prefix(br#"{"resultType":"complete","#) {
            Some(rest) if !stateless => Some([&b"{"[..], rest].concat()),
            _ => None,
        };
        if stateless || !r.has_result_type() || json.is_some() {
            let json = json.as_deref().unwrap_or(r.json());
            let text = match json.strip_prefix(b"{") {
                // A 2026-07-28 client reads `resultType`; older upstreams
                // do not write it.
                Some(rest) if stateless && !r.has_result_type() => {
                    let comma = if rest.trim_ascii_start().starts_with(b"}") {
                        ""
                    } else {
                        ","
                    };
                    let mut spliced = format!(r#"{{"resultType":"complete"{comma}"#).into_bytes();
                    spliced.extend_from_slice(rest);
                    jsonrpc::result_text(&super::id_text(id), &spliced)
                }
                _ => jsonrpc::result_text(&super::id_text(id), json),
            };
            return (StatusCode::OK, text);
        }
    }
    (
        StatusCode::OK,
        super::wire(&rpc_result(id, era.finish(render(outcome)))),
    )
}

/// What the caller brings to the call, and the service it must go to.
/// A 2026-07-28 client answers an upstream's `input_required` itself, by
/// calling again with `inputResponses` and the `requestState` it was given
/// (which names the service that asked); a session client is asked on its
/// call's stream instead. Both tell 2026-07-28 upstreams what they can do.
fn caller(era: &Era, params: &Value) -> Result<(Caller, Option<String>), String> {
    match era {
        Era::Session(s) => Ok((
            Caller {
                capabilities: Some(s.client_capabilities.clone()),
                ..Caller::default()
            },
            None,
        )),
        Era::Stateless => {
            let input_responses = match params.get("inputResponses") {
                None => None,
                Some(Value::Object(o)) => {
                    Some(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                }
                Some(_) => return Err("`inputResponses` must be an object".into()),
            };
            let (service, request_state) = match params.get("requestState") {
                None | Some(Value::Null) => (None, None),
                Some(Value::String(state)) => {
                    let (service, upstream) = unwrap_state(state)
                        .ok_or_else(|| "`requestState` was not issued by mcpvisor".to_owned())?;
                    (Some(service), upstream)
                }
                Some(_) => return Err("`requestState` must be a string".into()),
            };
            let capabilities =
                era::meta(Some(params)).and_then(|m| m.get(era::META_CAPABILITIES).cloned());
            Ok((
                Caller {
                    capabilities,
                    input_responses,
                    request_state,
                    takes_input_required: true,
                },
                service,
            ))
        }
    }
}

/// Prefix of the `requestState` mcpvisor hands out: the service that asked
/// (base64url), then the upstream's own state, which stays opaque to us.
const STATE_PREFIX: &str = "mcpvisor1.";

fn wrap_state(service: &str, upstream: Option<&str>) -> String {
    format!(
        "{STATE_PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(service),
        upstream.unwrap_or("")
    )
}

fn unwrap_state(state: &str) -> Option<(String, Option<String>)> {
    let (service, upstream) = state.strip_prefix(STATE_PREFIX)?.split_once('.')?;
    let service = String::from_utf8(URL_SAFE_NO_PAD.decode(service).ok()?).ok()?;
    Some((service, (!upstream.is_empty()).then(|| upstream.to_owned())))
}

fn render(outcome: Outcome) -> Value {
    match outcome {
        Ok(CallOutcome {
            result: CallReply::InputRequired(mut required),
            service,
            ..
        }) => {
            required.request_state = Some(wrap_state(&service, required.request_state.as_deref()));
            serde_json::to_value(&required).unwrap_or_else(|e| {
                error_result(&CallError::new(
                    ErrorCategory::Internal,
                    format!("unserialisable result: {e}"),
                ))
            })
        }
        Ok(CallOutcome {
            result: CallReply::Complete(result),
            cached,
            coalesced,
            ..
        }) => {
            let mut v = result.value();
            // Where the answer came from, when not from a call of its own.
            let from = if cached {
                Some(META_CACHED)
            } else if coalesced {
                Some(META_COALESCED)
            } else {
                None
            };
            if let (Some(key), Some(result)) = (from, v.as_object_mut()) {
                let meta = result
                    .entry("_meta")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert(key.to_owned(), Value::Bool(true));
                }
            }
            v
        }
        Err(e) => error_result(&e),
    }
}

/// A failed call as a tool result the model can read, with the details
/// (category, retryability, services tried) in `_meta`.
fn error_result(e: &CallError) -> Value {
    json!({
        "content": [{"type": "text", "text": format!("{}: {}", e.category, e.message)}],
        "isError": true,
        "_meta": {"io.mcpvisor/error": super::super::errors::body_of(e)["error"]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpvisor_actors::CallOutcome;
    use std::time::Duration;

    fn outcome(result: &str) -> Outcome {
        let reply = CallReply::from_upstream(bytes::Bytes::copy_from_slice(result.as_bytes()))
            .expect("a result");
        Ok(CallOutcome {
            result: reply,
            service: "s".into(),
            attempts: 1,
            elapsed: Duration::ZERO,
            hedged: false,
            cached: false,
            coalesced: false,
        })
    }

    fn session() -> Era {
        let sessions = super::super::Sessions::new(Duration::from_secs(60), 4);
        let (_, s) = sessions
            .create("2025-06-18".into(), json!({}), "c".into())
            .expect("a session");
        Era::Session(s)
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).expect("JSON")
    }

    #[test]
    fn results_go_out_as_written_in_the_clients_era() {
        let from_2026 =
            r#"{"resultType":"complete","content":[{"type":"text","text":"x"}],"extra":1}"#;
        let from_2025 = r#"{"content":[],"isError":true}"#;
        // A session client never sees resultType; the rest is untouched.
        let (status, text) = answer(&json!(7), &session(), outcome(from_2026));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"x"}],"extra":1}}"#
        );
        let (_, text) = answer(&json!("a"), &session(), outcome(from_2025));
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":"a","result":{"content":[],"isError":true}}"#
        );
        // A 2026-07-28 client always does.
        let (_, text) = answer(&json!(1), &Era::Stateless, outcome(from_2025));
        assert_eq!(parsed(&text)["result"]["resultType"], "complete");
        assert_eq!(parsed(&text)["result"]["isError"], true);
        let (_, text) = answer(&json!(1), &Era::Stateless, outcome(from_2026));
        assert_eq!(parsed(&text)["result"]["extra"], 1);
        // resultType elsewhere than first is still taken out for a session.
        let (_, text) = answer(
            &json!(1),
            &session(),
            outcome(r#"{"content":[],"resultType":"complete"}"#),
        );
        assert!(
            parsed(&text)["result"].get("resultType").is_none(),
            "{text}"
        );
    }

    #[test]
    fn an_exact_id_is_written_back_as_sent() {
        let id = Value::String(format!("{}12345678901234567890123", super::super::RAW_ID));
        let (_, text) = answer(&id, &session(), outcome(r#"{"content":[]}"#));
        assert!(
            text.starts_with(r#"{"jsonrpc":"2.0","id":12345678901234567890123,"#),
            "{text}"
        );
    }
}
