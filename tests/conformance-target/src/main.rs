//! An MCP server offering what the MCP conformance suite's server scenarios
//! call — its test tools, resources, prompts, completion and logging —
//! written from the scenario definitions on the official Rust SDK (rmcp).
//!
//! `scripts/interop.sh` runs the suite against it directly and through
//! mcpvisor fronting it: a scenario that passes directly must pass through
//! mcpvisor too.
//!
//! usage: conformance-target [--http 127.0.0.1:PORT]   (default: stdio)
//! Over HTTP it serves Streamable HTTP at /mcp (2026-07-28 and the session
//! revisions) and prints `conformance-target listening on URL` when bound.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
// The session revisions still use logging; the suite exercises it.
use rmcp::model::InputRequiredResult;
use rmcp::model::SubscriptionFilter;
#[allow(deprecated)]
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ServerCapabilities, ServerConfig, ServerNotification, ServerRequest, SetLevelRequestParams,
    SubscribeRequestParams, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{Peer, RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// Eight silent samples of WAV.
const WAV: &str =
    "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YRAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// One client's server: what every session shares (resource updates) and
/// what is its own (its session-era resource subscriptions).
#[derive(Clone)]
struct Target {
    /// URIs touched by `test_touch_resource`, for every session.
    touched: broadcast::Sender<String>,
    /// Tool list changes announced by `test_trigger_tool_change`.
    tools_changed: broadcast::Sender<()>,
    /// Session-era subscriptions: URI -> the task notifying them.
    subscriptions: Arc<Mutex<HashMap<String, tokio::task::AbortHandle>>>,
}

impl Target {
    fn new(touched: broadcast::Sender<String>, tools_changed: broadcast::Sender<()>) -> Self {
        Self {
            touched,
            tools_changed,
            subscriptions: Arc::default(),
        }
    }
}

/// Deserializes an rmcp type from JSON written the way the spec shows it.
/// Results are complete (`resultType`, which rmcp strips for session peers).
fn from<T: serde::de::DeserializeOwned>(mut v: Value) -> Result<T, ErrorData> {
    if let Some(o) = v.as_object_mut()
        && !o.contains_key("method")
    {
        o.entry("resultType").or_insert(json!("complete"));
    }
    serde_json::from_value(v).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

fn object_schema(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

fn tools() -> Vec<Tool> {
    let none = || object_schema(json!({}), &[]);
    let defs = [
        ("test_simple_text", "Returns simple text content", none()),
        ("test_image_content", "Returns image content", none()),
        ("test_audio_content", "Returns audio content", none()),
        (
            "test_embedded_resource",
            "Returns an embedded resource",
            none(),
        ),
        (
            "test_multiple_content_types",
            "Returns text, image and resource content",
            none(),
        ),
        (
            "test_tool_with_logging",
            "Sends log messages while it runs",
            none(),
        ),
        (
            "test_error_handling",
            "Always returns an error result",
            none(),
        ),
        (
            "test_tool_with_progress",
            "Reports progress while it runs",
            none(),
        ),
        (
            "test_sampling",
            "Asks the client to sample an LLM",
            object_schema(json!({"prompt": {"type": "string"}}), &["prompt"]),
        ),
        (
            "test_elicitation",
            "Asks the client for user input",
            object_schema(json!({"message": {"type": "string"}}), &["message"]),
        ),
        (
            "test_elicitation_sep1034_defaults",
            "Elicits a form whose fields have defaults",
            none(),
        ),
        (
            "test_elicitation_sep1330_enums",
            "Elicits a form with every enum shape",
            none(),
        ),
        (
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                    "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                    "phone": {"type": "string"}, "email": {"type": "string"}},
                "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
                "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
                "then": {"required": ["phone"]},
                "else": {"required": ["email"]},
                "additionalProperties": false
            }),
        ),
    ];
    let mrtr = [
        (
            "elicitation",
            "Asks for the caller's name by an input_required result",
        ),
        (
            "sampling",
            "Asks the caller's model a question by an input_required result",
        ),
        (
            "list_roots",
            "Asks for the caller's roots by an input_required result",
        ),
        (
            "request_state",
            "An input_required round that carries request state",
        ),
        (
            "multiple_inputs",
            "Asks for three inputs in one input_required round",
        ),
        ("multi_round", "Two input_required rounds before the result"),
        (
            "tampered_state",
            "Refuses a retry whose request state was altered",
        ),
        (
            "capabilities",
            "Asks only for what the caller declared it can give",
        ),
    ]
    .map(|(suffix, description)| {
        (
            format!("test_input_required_result_{suffix}"),
            description,
            object_schema(json!({}), &[]),
        )
    });
    let defs = defs
        .into_iter()
        .map(|(n, d, s)| (n.to_owned(), d, s))
        .chain([(
            "test_touch_resource".to_owned(),
            "Marks a resource as changed: subscribers get notifications/resources/updated",
            object_schema(json!({"uri": {"type": "string"}}), &["uri"]),
        )])
        .chain(mrtr)
        .chain(
            [
                (
                    "test_missing_capability",
                    "Needs the caller's sampling capability",
                ),
                (
                    "test_streaming_elicitation",
                    "Asks for input without a server request",
                ),
                (
                    "test_logging_tool",
                    "Logs only at a level the caller asked for",
                ),
                (
                    "test_trigger_tool_change",
                    "Announces a tool list change to listeners",
                ),
            ]
            .map(|(n, d)| (n.to_owned(), d, object_schema(json!({}), &[]))),
        );
    defs.filter_map(|(name, description, schema)| {
        serde_json::from_value(
            json!({"name": name, "description": description, "inputSchema": schema}),
        )
        .ok()
    })
    .collect()
}

fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

fn result(content: Value) -> Result<CallToolResponse, ErrorData> {
    let r: CallToolResult = from(json!({"content": content}))?;
    Ok(r.into())
}

/// What asking the client gave: its answer, or (2026-07-28, where a server
/// sends no requests) the `input_required` result to return instead.
enum Asked {
    Answer(Value),
    Required(CallToolResponse),
}

/// Asks the client `method`. In a session the request goes to the client
/// at once; in 2026-07-28 the answer comes back as `inputResponses[key]` on
/// the client's retry, and the first round returns `input_required`.
async fn ask(
    request: &CallToolRequestParams,
    cx: &RequestContext<RoleServer>,
    key: &str,
    method: &str,
    params: Value,
) -> Result<Asked, ErrorData> {
    if let Some(answer) = request.input_responses.as_ref().and_then(|r| r.get(key)) {
        return Ok(Asked::Answer(answer.clone()));
    }
    if cx.protocol_version().is_some_and(|v| !v.has_initialize()) {
        let required: InputRequiredResult = serde_json::from_value(json!({
            "resultType": "input_required",
            "inputRequests": {key: {"method": method, "params": params}}
        }))
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        return Ok(Asked::Required(CallToolResponse::InputRequired(required)));
    }
    let request: ServerRequest = from(json!({"method": method, "params": params}))?;
    let answer = cx
        .peer
        .send_request(request)
        .await
        .map_err(|e| ErrorData::internal_error(format!("{method}: {e}"), None))?;
    serde_json::to_value(answer)
        .map(Asked::Answer)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// The client's answer, or return the `input_required` result.
macro_rules! answer {
    ($asked:expr) => {
        match $asked? {
            Asked::Answer(v) => v,
            Asked::Required(r) => return Ok(r),
        }
    };
}

async fn log(peer: &Peer<RoleServer>, data: &str) {
    let note: Result<ServerNotification, _> = serde_json::from_value(json!({
        "method": "notifications/message",
        "params": {"level": "info", "logger": "conformance-target", "data": data}
    }));
    if let Ok(note) = note {
        let _ = peer.send_notification(note).await;
    }
}

impl ServerHandler for Target {
    fn get_info(&self) -> ServerConfig {
        let capabilities: ServerCapabilities = serde_json::from_value(json!({
            "tools": {"listChanged": true},
            "resources": {"subscribe": true},
            "prompts": {},
            "logging": {},
            "completions": {}
        }))
        .unwrap_or_default();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "mcpvisor-conformance-target",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Fixtures for the MCP conformance suite's server scenarios.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        let arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match request.name.as_ref() {
            "test_simple_text" => {
                result(json!([text("This is a simple text response for testing.")]))
            }
            "test_image_content" => {
                result(json!([{"type": "image", "data": PNG, "mimeType": "image/png"}]))
            }
            "test_audio_content" => {
                result(json!([{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]))
            }
            "test_embedded_resource" => result(json!([{"type": "resource", "resource": {
                "uri": "test://embedded-resource", "mimeType": "text/plain",
                "text": "This is an embedded resource content."}}])),
            "test_multiple_content_types" => result(json!([
                text("Multiple content types test:"),
                {"type": "image", "data": PNG, "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                    "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}
            ])),
            "test_tool_with_logging" => {
                for line in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ] {
                    log(&cx.peer, line).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                result(json!([text("Logging test completed")]))
            }
            "test_error_handling" => {
                let r: CallToolResult = from(json!({"content": [text(
                    "This tool intentionally returns an error for testing")], "isError": true}))?;
                Ok(r.into())
            }
            "test_tool_with_progress" => {
                if let Some(token) = cx.meta.get_progress_token() {
                    for step in [0.0, 50.0, 100.0] {
                        let p =
                            ProgressNotificationParam::new(token.clone(), step).with_total(100.0);
                        let _ = cx.peer.notify_progress(p).await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                result(json!([text("Progress test completed")]))
            }
            "test_sampling" => {
                let answer = answer!(
                    ask(
                        &request,
                        &cx,
                        "sampling",
                        "sampling/createMessage",
                        json!({
                            "messages": [{"role": "user", "content": text(&arg("prompt"))}],
                            "maxTokens": 100
                        }),
                    )
                    .await
                );
                let said = answer["content"]["text"].as_str().unwrap_or("").to_owned();
                result(json!([text(&format!("LLM response: {said}"))]))
            }
            "test_elicitation" => {
                let answer = answer!(
                    ask(
                        &request,
                        &cx,
                        "elicitation",
                        "elicitation/create",
                        json!({
                            "message": arg("message"),
                            "requestedSchema": object_schema(json!({
                                "username": {"type": "string", "description": "User's response"},
                                "email": {"type": "string", "description": "User's email address"}
                            }), &["username", "email"])
                        }),
                    )
                    .await
                );
                result(json!([text(&format!(
                    "User response: action={}, content={}",
                    answer["action"].as_str().unwrap_or("?"),
                    answer["content"]
                ))]))
            }
            "test_elicitation_sep1034_defaults" => {
                let answer = answer!(ask(&request, &cx, "elicitation", "elicitation/create", json!({
                    "message": "Please review and update the form fields with defaults",
                    "requestedSchema": object_schema(json!({
                        "name": {"type": "string", "default": "John Doe"},
                        "age": {"type": "integer", "default": 30},
                        "score": {"type": "number", "default": 95.5},
                        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                        "verified": {"type": "boolean", "default": true}
                    }), &[])
                }))
                .await);
                result(json!([text(&format!("Elicitation completed: {answer}"))]))
            }
            "test_elicitation_sep1330_enums" => {
                let titled = |label: &str| {
                    json!([1, 2, 3].iter().zip(["First", "Second", "Third"]).map(|(n, word)| {
                        json!({"const": format!("value{n}"), "title": format!("{word} {label}")})
                    }).collect::<Vec<_>>())
                };
                let answer = answer!(ask(&request, &cx, "elicitation", "elicitation/create", json!({
                    "message": "Please choose from each kind of enum",
                    "requestedSchema": object_schema(json!({
                        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                        "titledSingle": {"type": "string", "oneOf": titled("Option")},
                        "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                            "enumNames": ["Option One", "Option Two", "Option Three"]},
                        "untitledMulti": {"type": "array", "items": {"type": "string",
                            "enum": ["option1", "option2", "option3"]}},
                        "titledMulti": {"type": "array", "items": {"anyOf": titled("Choice")}}
                    }), &[])
                }))
                .await);
                result(json!([text(&format!("Elicitation completed: {answer}"))]))
            }
            "json_schema_2020_12_tool" => result(json!([text(&format!("Received: {args}"))])),
            name if name.starts_with("test_input_required_result_") => {
                mrtr_tool(&name["test_input_required_result_".len()..], &request, &cx)
            }
            "test_missing_capability" => {
                if cx
                    .meta
                    .client_capabilities()
                    .is_some_and(|c| c.sampling.is_some())
                {
                    return result(json!([text("sampling is available")]));
                }
                Err(ErrorData::new(
                    rmcp::model::ErrorCode(-32021),
                    "this tool needs the client's sampling capability",
                    Some(json!({"requiredCapabilities": {"sampling": {}}})),
                ))
            }
            "test_streaming_elicitation" => {
                if let Some(answer) = request
                    .input_responses
                    .as_ref()
                    .and_then(|r| r.get("confirm"))
                {
                    return result(json!([text(&format!("answered: {answer}"))]));
                }
                let required: InputRequiredResult = from(json!({
                    "resultType": "input_required",
                    "inputRequests": {"confirm": elicit("Continue?", "ok", "boolean")}
                }))?;
                Ok(CallToolResponse::InputRequired(required))
            }
            "test_logging_tool" => {
                // Only a request that names a level hears logs (2026-07-28).
                let level = cx.meta.0.0.get("io.modelcontextprotocol/logLevel").cloned();
                if level.is_some() {
                    log(&cx.peer, "logging tool ran").await;
                }
                result(json!([text("logged only if asked")]))
            }
            "test_trigger_tool_change" => {
                let _ = self.tools_changed.send(());
                result(json!([text("tool list change announced")]))
            }
            "test_touch_resource" => {
                let _ = self.touched.send(arg("uri"));
                result(json!([text(&format!("touched {}", arg("uri")))]))
            }
            other => Err(ErrorData::invalid_params(
                format!("Unknown tool: {other}"),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        from(json!({"resources": [
            {"uri": "test://static-text", "name": "static-text", "mimeType": "text/plain",
             "description": "A static text resource"},
            {"uri": "test://static-binary", "name": "static-binary", "mimeType": "image/png",
             "description": "A static binary resource"},
            {"uri": "test://watched-resource", "name": "watched-resource", "mimeType": "text/plain",
             "description": "A resource to subscribe to"}
        ]}))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        from(json!({"resourceTemplates": [
            {"uriTemplate": "test://template/{id}/data", "name": "template",
             "mimeType": "application/json", "description": "Data for an id"}
        ]}))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            "test://static-text" => json!({"uri": uri, "mimeType": "text/plain",
                "text": "This is the content of the static text resource."}),
            "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG}),
            "test://watched-resource" => {
                json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content."})
            }
            _ => match uri
                .strip_prefix("test://template/")
                .and_then(|r| r.strip_suffix("/data"))
                .filter(|id| !id.is_empty() && !id.contains('/'))
            {
                Some(id) => json!({"uri": uri, "mimeType": "application/json",
                    "text": json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string()}),
                None => {
                    return Err(ErrorData::invalid_params(
                        "Resource not found",
                        Some(json!({"uri": uri})),
                    ));
                }
            },
        };
        let r: ReadResourceResult = from(json!({"contents": [contents]}))?;
        Ok(r.into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let mut touched = self.touched.subscribe();
        let uri = request.uri.clone();
        let peer = cx.peer.clone();
        let task = tokio::spawn(async move {
            while let Ok(changed) = touched.recv().await {
                if changed == uri {
                    let note: Result<ServerNotification, _> = serde_json::from_value(json!({
                        "method": "notifications/resources/updated", "params": {"uri": uri}}));
                    if let Ok(note) = note
                        && peer.send_notification(note).await.is_err()
                    {
                        return;
                    }
                }
            }
        });
        if let Some(old) = self
            .subscriptions
            .lock()
            .map_err(|_| ErrorData::internal_error("poisoned", None))?
            .insert(request.uri, task.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Ok(mut subs) = self.subscriptions.lock()
            && let Some(task) = subs.remove(&request.uri)
        {
            task.abort();
        }
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::default();
        accepted.resource_subscriptions = requested.resource_subscriptions.clone();
        accepted.tools_list_changed = requested.tools_list_changed;
        Some(accepted)
    }

    /// 2026-07-28: resource updates go out on the listen stream.
    async fn listen(&self, cx: SubscriptionContext) -> Result<(), ErrorData> {
        let wanted = cx
            .sink()
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let tools = cx.sink().accepted().tools_list_changed == Some(true);
        let mut touched = self.touched.subscribe();
        let mut tool_changes = self.tools_changed.subscribe();
        loop {
            tokio::select! {
                () = cx.cancelled() => return Ok(()),
                Ok(()) = tool_changes.recv(), if tools => {
                    if cx.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
                changed = touched.recv() => match changed {
                    Ok(uri) if wanted.contains(&uri) => {
                        if cx.sink().notify_resource_updated(uri).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let required = |name: &str| json!({"name": name, "description": name, "required": true});
        from(json!({"prompts": [
            {"name": "test_simple_prompt", "description": "A prompt without arguments"},
            {"name": "test_prompt_with_arguments", "description": "A prompt with two arguments",
             "arguments": [required("arg1"), required("arg2")]},
            {"name": "test_prompt_with_embedded_resource",
             "description": "A prompt embedding a resource", "arguments": [required("resourceUri")]},
            {"name": "test_prompt_with_image", "description": "A prompt with an image"},
            {"name": "test_input_required_result_prompt",
             "description": "A prompt that needs the caller's context first"}
        ]}))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        let arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let user = |content: Value| json!({"role": "user", "content": content});
        let messages = match request.name.as_str() {
            "test_simple_prompt" => json!([user(text("This is a simple prompt for testing."))]),
            "test_prompt_with_arguments" => json!([user(text(&format!(
                "Prompt with arguments: arg1='{}', arg2='{}'",
                arg("arg1"),
                arg("arg2")
            )))]),
            "test_prompt_with_embedded_resource" => json!([
                user(
                    json!({"type": "resource", "resource": {"uri": arg("resourceUri"),
                    "mimeType": "text/plain", "text": "Embedded resource content for testing."}})
                ),
                user(text("Please process the embedded resource above."))
            ]),
            "test_prompt_with_image" => json!([
                user(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
                user(text("Please analyze the image above."))
            ]),
            "test_input_required_result_prompt" => {
                let context = request
                    .input_responses
                    .as_ref()
                    .and_then(|r| r.get("user_context"))
                    .and_then(|a| a.pointer("/content/context"))
                    .and_then(Value::as_str);
                let Some(context) = context else {
                    let required: InputRequiredResult = serde_json::from_value(json!({
                        "resultType": "input_required",
                        "inputRequests": {"user_context": elicit("What is the context?", "context", "string")}
                    }))
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                    return Ok(GetPromptResponse::InputRequired(required));
                };
                json!([user(text(&format!("Prompt for context: {context}")))])
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("Unknown prompt: {other}"),
                    None,
                ));
            }
        };
        let r: GetPromptResult = from(json!({"messages": messages}))?;
        Ok(r.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let typed = request.argument.value.to_lowercase();
        let values: Vec<&str> = ["test", "testing", "tested", "example"]
            .into_iter()
            .filter(|v| v.starts_with(&typed))
            .collect();
        from(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }
}

/// An `elicitation/create` input request for one field.
fn elicit(message: &str, field: &str, kind: &str) -> Value {
    json!({"method": "elicitation/create", "params": {
        "message": message,
        "requestedSchema": object_schema(json!({field: {"type": kind}}), &[field])}})
}

fn sample(question: &str) -> Value {
    json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": text(question)}], "maxTokens": 100}})
}

fn roots() -> Value {
    json!({"method": "roots/list", "params": {}})
}

/// Signs request state with a key of this process (SipHash with random
/// keys): an altered state fails verification.
fn sign(payload: &str) -> String {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let tag = KEY.get_or_init(Default::default).hash_one(payload);
    format!("{payload}~{tag:016x}")
}

/// The payload of a state this process signed.
fn verify(state: &str) -> Option<&str> {
    let (payload, _) = state.rsplit_once('~')?;
    (sign(payload) == state).then_some(payload)
}

/// The `input_required` fixtures (SEP-2322), keyed by tool-name suffix.
fn mrtr_tool(
    which: &str,
    request: &CallToolRequestParams,
    cx: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let responses = request.input_responses.clone().unwrap_or_default();
    let state = request.request_state.as_deref();
    let required =
        |requests: Value, state: Option<String>| -> Result<CallToolResponse, ErrorData> {
            let mut r = json!({"resultType": "input_required", "inputRequests": requests});
            if let Some(s) = state {
                r["requestState"] = json!(s);
            }
            serde_json::from_value(r)
                .map(CallToolResponse::InputRequired)
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))
        };
    let bad_state = || ErrorData::invalid_params("invalid or altered requestState", None);
    let accepted = |key: &str, field: &str| -> Result<Option<String>, ErrorData> {
        let Some(answer) = responses.get(key) else {
            return Ok(None);
        };
        let action = answer.get("action").and_then(Value::as_str);
        if !matches!(action, Some("accept" | "decline" | "cancel")) {
            return Err(ErrorData::invalid_params(
                format!("inputResponses.{key} is not an elicitation result"),
                None,
            ));
        }
        let value = answer.pointer(&format!("/content/{field}"));
        Ok(Some(value.map_or_else(String::new, |v| {
            v.as_str().map_or_else(|| v.to_string(), str::to_owned)
        })))
    };
    match which {
        "elicitation" => match accepted("user_name", "name")? {
            Some(name) => result(json!([text(&format!("Hello, {name}!"))])),
            None => required(
                json!({"user_name": elicit("What is your name?", "name", "string")}),
                None,
            ),
        },
        "sampling" => match responses.get("capital_question") {
            Some(answer) => result(json!([text(&format!(
                "The model said: {}",
                answer
                    .pointer("/content/text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ))])),
            None => required(
                json!({"capital_question": sample("What is the capital of France?")}),
                None,
            ),
        },
        "list_roots" => match responses.get("client_roots") {
            Some(answer) => result(json!([text(&format!("Roots: {}", answer["roots"]))])),
            None => required(json!({"client_roots": roots()}), None),
        },
        "request_state" | "tampered_state" => match state {
            None => required(
                json!({"confirm": elicit("Proceed?", "ok", "boolean")}),
                Some(sign(which)),
            ),
            Some(s) if verify(s) == Some(which) && responses.contains_key("confirm") => {
                result(json!([text("state-ok")]))
            }
            Some(_) => Err(bad_state()),
        },
        "multiple_inputs" => match state {
            None => required(
                json!({
                    "user_name": elicit("What is your name?", "name", "string"),
                    "greeting": sample("Generate a greeting"),
                    "client_roots": roots()
                }),
                Some(sign("multiple_inputs")),
            ),
            Some(s) if verify(s) == Some("multiple_inputs") => {
                if ["user_name", "greeting", "client_roots"]
                    .iter()
                    .all(|k| responses.contains_key(*k))
                {
                    result(json!([text("all three inputs received")]))
                } else {
                    Err(ErrorData::invalid_params("missing input responses", None))
                }
            }
            Some(_) => Err(bad_state()),
        },
        "multi_round" => match state.map(verify) {
            None => required(
                json!({"step1": elicit("What is your name?", "name", "string")}),
                Some(sign("multi_round:1")),
            ),
            Some(Some("multi_round:1")) => required(
                json!({"step2": elicit("What is your favourite colour?", "color", "string")}),
                Some(sign("multi_round:2")),
            ),
            Some(Some("multi_round:2")) => match accepted("step2", "color")? {
                Some(color) => result(json!([text(&format!("colour: {color}"))])),
                None => Err(ErrorData::invalid_params("missing step2", None)),
            },
            Some(_) => Err(bad_state()),
        },
        "capabilities" => {
            if !responses.is_empty() {
                return result(json!([text("inputs received")]));
            }
            let caps = cx.meta.client_capabilities().unwrap_or_default();
            let mut requests = serde_json::Map::new();
            if caps.sampling.is_some() {
                requests.insert("question".into(), sample("Anything to add?"));
            }
            if caps.elicitation.is_some() {
                requests.insert(
                    "name".into(),
                    elicit("What is your name?", "name", "string"),
                );
            }
            if caps.roots.is_some() {
                requests.insert("roots".into(), roots());
            }
            if requests.is_empty() {
                return Err(ErrorData::new(
                    rmcp::model::ErrorCode(-32021),
                    "this tool needs sampling, elicitation or roots",
                    Some(json!({"requiredCapabilities": {"sampling": {}}})),
                ));
            }
            required(Value::Object(requests), None)
        }
        other => Err(ErrorData::invalid_params(
            format!("Unknown tool: test_input_required_result_{other}"),
            None,
        )),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let running = Target::new(broadcast::channel(64).0, broadcast::channel(8).0)
                .serve(rmcp::transport::stdio())
                .await?;
            running.waiting().await?;
            Ok(())
        }
        [flag, addr] if flag == "--http" => serve_http(addr.parse()?).await,
        _ => anyhow::bail!("usage: conformance-target [--http 127.0.0.1:PORT]"),
    }
}

async fn serve_http(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let service = Arc::new(StreamableHttpService::new(
        {
            let touched = broadcast::channel(64).0;
            let tools_changed = broadcast::channel(8).0;
            move || Ok(Target::new(touched.clone(), tools_changed.clone()))
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    ));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "conformance-target listening on http://{}/mcp",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}
