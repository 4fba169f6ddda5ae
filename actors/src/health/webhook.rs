//! Alert delivery to an HTTP endpoint: POST the alert event as JSON, retry
//! a few times, and never hold up the engine — a full queue drops the
//! newest event with a log line rather than blocking.

use std::time::Duration;

use tokio::sync::mpsc;

use super::alerts::AlertEvent;

/// Events waiting for delivery before new ones are dropped.
const QUEUE: usize = 256;
/// Attempts per event.
const ATTEMPTS: u32 = 4;

/// A handle to the delivery task.
#[derive(Debug, Clone)]
pub struct Webhook {
    tx: mpsc::Sender<AlertEvent>,
}

impl Webhook {
    /// Starts delivering to `url` on the current runtime.
    pub fn spawn(url: String, timeout: Duration) -> Self {
        let (tx, mut rx) = mpsc::channel::<AlertEvent>(QUEUE);
        tokio::spawn(async move {
            let client = match reqwest::Client::builder().timeout(timeout).build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "alert webhook disabled: no HTTP client");
                    return;
                }
            };
            while let Some(event) = rx.recv().await {
                deliver(&client, &url, &event).await;
            }
        });
        Self { tx }
    }

    /// Queues an event; drops it if the queue is full.
    pub fn send(&self, event: AlertEvent) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!("alert webhook queue full; event dropped");
        }
    }
}

async fn deliver(client: &reqwest::Client, url: &str, event: &AlertEvent) {
    let mut pause = Duration::from_millis(250);
    for attempt in 1..=ATTEMPTS {
        match client.post(url).json(event).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(status = %r.status(), attempt, "alert webhook refused the event")
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), attempt, "alert webhook unreachable")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    tracing::error!("alert webhook gave up on an event after {ATTEMPTS} attempts");
}
