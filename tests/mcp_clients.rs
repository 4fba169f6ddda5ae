//! Any MCP client sees and calls every tool: the official Rust SDK (rmcp)
//! against `/mcp`, as a 2026-07-28 (stateless) client and as a 2025-11-25
//! (session) client, including across eras to a 2024-11-05 upstream.

mod common;

use std::sync::{Arc, Mutex};

use common::{Daemon, PROJECT, two_replicas};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation,
    ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, RoleClient, RunningService,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, object};

/// A client that records the progress notifications it receives.
#[derive(Clone)]
struct Recorder {
    info: ClientConfig,
    progress: Arc<Mutex<Vec<f64>>>,
}

impl Recorder {
    fn new(version: ProtocolVersion) -> Self {
        let mut info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcpvisor-test", "1"),
        );
        info.protocol_version = version;
        Self {
            info,
            progress: Arc::default(),
        }
    }
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params.progress);
    }
}

async fn connect(
    d: &Daemon,
    lifecycle: ClientLifecycleMode,
    version: ProtocolVersion,
) -> (RunningService<RoleClient, Recorder>, Recorder) {
    let recorder = Recorder::new(version);
    let transport = StreamableHttpClientTransport::from_uri(d.url("/mcp"));
    let client = recorder
        .clone()
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("connect to /mcp");
    (client, recorder)
}

async fn lists_and_calls_with_progress(
    client: &RunningService<RoleClient, Recorder>,
    recorder: &Recorder,
) {
    let tools = client.list_all_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 42, "both replicas' tools, merged");
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "tools come in a deterministic order");
    let hierarchy = tools
        .iter()
        .find(|t| t.name == "asana_get_project_hierarchy")
        .unwrap();
    assert_eq!(
        hierarchy.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );

    let result = client
        .peer()
        .call_tool(
            CallToolRequestParams::new("asana_get_project_hierarchy")
                .with_arguments(object!({"project_id": PROJECT})),
        )
        .await
        .expect("tools/call");
    assert_ne!(result.is_error, Some(true));
    let structured = result.structured_content.expect("structured content");
    assert_eq!(structured["data"]["project"]["gid"], PROJECT);
    let progress = recorder.progress.lock().unwrap().clone();
    assert!(
        progress.len() >= 50,
        "expected the upstream's progress, got {} notifications",
        progress.len()
    );
    assert!(progress.iter().all(|p| *p >= 1.0 && *p <= 106.0));
}

/// The blocking test harness and the async SDK live on different threads.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn rmcp_client_on_2026_07_28_lists_and_calls_with_progress() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    block_on(async {
        let (client, recorder) = connect(
            &d,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
            ProtocolVersion::V_2026_07_28,
        )
        .await;
        assert_eq!(
            client.peer_info().unwrap().protocol_version,
            ProtocolVersion::V_2026_07_28
        );
        lists_and_calls_with_progress(&client, &recorder).await;
        client.cancel().await.ok();
    });
}

#[test]
fn rmcp_client_on_2025_11_25_lists_and_calls_with_progress() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    block_on(async {
        let (client, recorder) = connect(
            &d,
            ClientLifecycleMode::Initialize,
            ProtocolVersion::V_2025_11_25,
        )
        .await;
        assert_eq!(
            client.peer_info().unwrap().protocol_version,
            ProtocolVersion::V_2025_11_25
        );
        lists_and_calls_with_progress(&client, &recorder).await;
        client.cancel().await.ok();
    });
}

#[test]
fn a_2026_client_reaches_a_2024_11_05_upstream_through_mcpvisor() {
    let config = two_replicas(
        &["--protocols", "2024-11-05"],
        &["--protocols", "2024-11-05"],
    );
    let d = Daemon::start(&config);
    assert_eq!(d.service("asana-stdio")["protocol"], "2024-11-05");
    let http = d.service("asana-http");
    assert_eq!(http["protocol"], "2024-11-05", "{http}");
    block_on(async {
        let (client, recorder) = connect(
            &d,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
            ProtocolVersion::V_2026_07_28,
        )
        .await;
        lists_and_calls_with_progress(&client, &recorder).await;
        client.cancel().await.ok();
    });
}
