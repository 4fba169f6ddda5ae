//! OpenTelemetry export: with `[telemetry] otlp_endpoint` set, each call's
//! span reaches an OTLP/HTTP collector — here one the test runs on
//! loopback, which decodes what it is sent with the OTLP protobuf types —
//! carrying the call's request id, tool, service and attempt, under the
//! configured service name and with the configured headers; the headers'
//! secrets never reach the daemon's log.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Daemon;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use serde_json::json;

/// What the collector received: each request's headers and decoded body.
type Received = Arc<Mutex<Vec<(http::HeaderMap, ExportTraceServiceRequest)>>>;

/// An OTLP/HTTP collector on an ephemeral loopback port, on a runtime of
/// its own; it stops with the test.
fn collector() -> (String, Received) {
    let received: Received = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let store = received.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let store = store.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let store = store.clone();
                            async move {
                                use http_body_util::BodyExt;
                                let headers = req.headers().clone();
                                let path = req.uri().path().to_owned();
                                let body = req.into_body().collect().await?.to_bytes();
                                if path == "/v1/traces"
                                    && let Ok(decoded) = ExportTraceServiceRequest::decode(body)
                                {
                                    store.lock().unwrap().push((headers, decoded));
                                }
                                Ok::<_, hyper::Error>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::new()),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}"), received)
}

/// A span's string (or integer) attribute.
fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            Any::IntValue(i) => Some(i.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

#[test]
fn call_spans_reach_an_otlp_collector() {
    let (endpoint, received) = collector();
    let secret = "otlp-api-key-5f3a9c";
    let d = Daemon::start_logged(
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
[telemetry]
otlp_endpoint = "{endpoint}"
service_name = "mcpvisor-under-test"
batch_delay_ms = 100
headers = {{ "x-api-key" = "{secret}" }}
[[services]]
name = "asana-stdio"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio"]
manifest = "builtin:asana"
"#
        ),
        // Spans go out whatever the log level.
        &[("MCPVISOR_LOG", "warn")],
        None,
    );
    let response = common::client()
        .post(d.url("/api/mcp/stream"))
        .header("x-request-id", "otel-req-7")
        .json(&json!({"toolName": "asana_list_workspaces", "arguments": {}}))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(response.contains("event: result"), "{response}");

    let found = common::eventually(Duration::from_secs(20), || {
        received.lock().unwrap().iter().any(|(_, r)| {
            r.resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .any(|s| {
                    s.name == "call" && attribute(s, "request_id").as_deref() == Some("otel-req-7")
                })
        })
    });
    assert!(found, "no call span arrived");
    let received = received.lock().unwrap();
    let (headers, request) = received
        .iter()
        .find(|(_, r)| {
            r.resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .any(|s| attribute(s, "request_id").as_deref() == Some("otel-req-7"))
        })
        .unwrap();
    assert_eq!(headers["x-api-key"], secret);
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    let service_name = resource
        .attributes
        .iter()
        .find(|a| a.key == "service.name")
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            _ => None,
        });
    assert_eq!(service_name.as_deref(), Some("mcpvisor-under-test"));
    let span = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .find(|s| attribute(s, "request_id").as_deref() == Some("otel-req-7"))
        .unwrap();
    assert_eq!(
        attribute(span, "tool").as_deref(),
        Some("asana_list_workspaces")
    );
    assert_eq!(attribute(span, "service").as_deref(), Some("asana-stdio"));
    assert_eq!(attribute(span, "attempt").as_deref(), Some("1"));
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    drop(received);
    assert!(
        !d.log().contains(secret),
        "the collector's key reached the log"
    );
}
