//! `/metrics` is real Prometheus text (checked with a parser), and
//! `/api/metrics` carries the same figures as JSON.

mod common;

use common::{Daemon, client, two_replicas};
use serde_json::json;

fn scrape(d: &Daemon) -> prometheus_parse::Scrape {
    let r = client().get(d.url("/metrics")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = r.text().unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text")
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

fn find<'a>(
    scrape: &'a prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    for _ in 0..3 {
        d.stream("asana_list_workspaces", json!({}));
    }
    d.stream("asana_get_task", json!({"task_id": "0"})); // a tool error
    let scrape = scrape(&d);

    let ok = find(
        &scrape,
        "mcpvisor_calls_total",
        &[("tool", "asana_list_workspaces"), ("outcome", "ok")],
    )
    .expect("ok calls counted");
    assert_eq!(value(ok), 3.0);
    assert_eq!(ok.labels.get("service"), Some("asana-stdio"));
    let tool_error = find(
        &scrape,
        "mcpvisor_calls_total",
        &[("tool", "asana_get_task"), ("outcome", "tool_error")],
    );
    assert_eq!(tool_error.map(value), Some(1.0));
    for service in ["asana-stdio", "asana-http"] {
        let up = find(&scrape, "mcpvisor_service_up", &[("service", service)]).expect("up gauge");
        assert_eq!(value(up), 1.0);
        let closed = find(
            &scrape,
            "mcpvisor_service_breaker",
            &[("service", service), ("state", "closed")],
        );
        assert_eq!(closed.map(value), Some(1.0));
        for total in [
            "mcpvisor_service_restarts_total",
            "mcpvisor_service_breaker_opened_total",
        ] {
            let sample = find(&scrape, total, &[("service", service)]).expect(total);
            assert_eq!(value(sample), 0.0, "{total}");
        }
    }
    // Running totals are typed as counters, so rate() and increase() work
    // (the parser leaves OpenMetrics `_total` samples untyped; the TYPE
    // lines say it).
    let text = d.metrics_text();
    for family in [
        "mcpvisor_service_restarts",
        "mcpvisor_service_breaker_opened",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} counter")),
            "{family} is not a counter"
        );
    }
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "mcpvisor_call_duration_seconds")
        .expect("latency histogram");
    assert!(matches!(
        histogram.value,
        prometheus_parse::Value::Histogram(_)
    ));

    let (status, body) = d.get("/api/metrics");
    assert_eq!(status, 200);
    let series = body["mcpvisor_calls_total"]
        .as_array()
        .expect("calls in JSON");
    let json_ok = series
        .iter()
        .find(|s| s["labels"]["tool"] == "asana_list_workspaces" && s["labels"]["outcome"] == "ok")
        .unwrap();
    assert_eq!(json_ok["value"], 3.0);
}

#[test]
fn metrics_carry_the_process_series_and_each_services_processes() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let scrape = scrape(&d);
    let rss = find(&scrape, "process_resident_memory_bytes", &[]).expect("resident memory");
    assert!(value(rss) > 1_000_000.0, "{rss:?}");
    let fds = find(&scrape, "process_open_fds", &[]).expect("open fds");
    assert!(value(fds) >= 3.0);
    let threads = find(&scrape, "process_threads", &[]).expect("threads");
    assert!(value(threads) >= 2.0);
    assert!(find(&scrape, "process_cpu_seconds_total", &[]).is_some());
    // Each launched replica is a process group of its own: the warden and
    // the server.
    for service in ["asana-stdio", "asana-http"] {
        let n = find(
            &scrape,
            "mcpvisor_service_processes",
            &[("service", service)],
        )
        .unwrap_or_else(|| panic!("{service} processes"));
        assert!(value(n) >= 1.0, "{service}: {n:?}");
    }
}
