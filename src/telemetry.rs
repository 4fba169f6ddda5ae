//! OpenTelemetry: each call's span (`call`, with its `request_id`, `tool`,
//! `service` and `attempt`) exported over OTLP/HTTP to the collector that
//! `[telemetry] otlp_endpoint` names.
//!
//! The spans are the ones the logs already carry (see
//! `mcpvisor_actors::router::call_span`); a `tracing` layer turns them into
//! OpenTelemetry spans and a batch processor sends them, protobuf-encoded,
//! from a thread of its own. The exporter's HTTP client is mcpvisor's own
//! reqwest, on a small runtime of its own, so exports never run on (or
//! wait for) the threads that serve calls.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde::{Deserialize, Serialize};

/// `[telemetry]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector: a base URL (`/v1/traces` is added, as with
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`) or the traces URL itself. Empty: no
    /// export.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Headers for the collector (an API key, say; kept out of logs).
    pub headers: BTreeMap<String, String>,
    /// Deadline of one export.
    pub timeout_ms: u64,
    /// How long finished spans gather before they are sent together.
    pub batch_delay_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "mcpvisor".into(),
            headers: BTreeMap::new(),
            timeout_ms: 10_000,
            batch_delay_ms: 5_000,
        }
    }
}

impl TelemetryConfig {
    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        !self.otlp_endpoint.trim().is_empty()
    }

    /// The URL traces are posted to.
    pub fn traces_url(&self) -> String {
        let base = self.otlp_endpoint.trim();
        if base.trim_end_matches('/').ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{}/v1/traces", base.trim_end_matches('/'))
        }
    }
}

/// A running export: flushes what is left when dropped.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts the export `config` asks for; the tracer to layer into
    /// `tracing`.
    pub fn start(
        config: &TelemetryConfig,
    ) -> anyhow::Result<(Self, opentelemetry_sdk::trace::SdkTracer)> {
        let timeout = Duration::from_millis(config.timeout_ms.max(100));
        let client = Exporter::new(timeout)?;
        let headers: HashMap<String, String> = config
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(config.traces_url())
            .with_timeout(timeout)
            .with_headers(headers)
            .build()?;
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(config.batch_delay_ms.max(10)))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("mcpvisor");
        Ok((Self { provider }, tracer))
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "telemetry: could not flush the last spans");
        }
    }
}

/// The exporter's HTTP client: reqwest on a runtime thread of its own (the
/// batch processor calls it from its own thread, outside any runtime).
#[derive(Debug)]
struct Exporter {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Exporter {
    fn new(timeout: Duration) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Exporter {
    async fn send_bytes(
        &self,
        request: ::http::Request<bytes::Bytes>,
    ) -> Result<::http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let mut outgoing = client
            .request(parts.method, parts.uri.to_string())
            .body(body);
        for (name, value) in &parts.headers {
            outgoing = outgoing.header(name, value);
        }
        let sent = self.runtime.spawn(async move {
            let response = outgoing.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = sent.await??;
        let mut response = ::http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_the_base_with_the_signal_path() {
        let mut c = TelemetryConfig {
            otlp_endpoint: "http://127.0.0.1:4318".into(),
            ..TelemetryConfig::default()
        };
        assert_eq!(c.traces_url(), "http://127.0.0.1:4318/v1/traces");
        c.otlp_endpoint = "http://collector:4318/".into();
        assert_eq!(c.traces_url(), "http://collector:4318/v1/traces");
        c.otlp_endpoint = "https://otel.example/v1/traces".into();
        assert_eq!(c.traces_url(), "https://otel.example/v1/traces");
        assert!(c.enabled());
        assert!(!TelemetryConfig::default().enabled());
    }
}
