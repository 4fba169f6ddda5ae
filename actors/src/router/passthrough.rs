//! Relaying requests other than tool calls — `resources/*`, `prompts/*`,
//! `completion/complete`, `logging/setLevel` — to the services that can
//! answer them, chosen from the catalog and ranked exactly as tool calls
//! are ([`best_first`]).
//!
//! Every request relayed here reads or sets state without side effects a
//! repeat would double, so a replica that fails at the connection level is
//! simply replaced by the next one. An upstream's JSON-RPC error is passed
//! on as it is.

use std::sync::Arc;

use rmcp::model::{ClientRequest, ServerResult};
use tokio::sync::oneshot;

use super::best_first;
use crate::error::{CallError, ErrorCategory};
use crate::model::Directory;
use crate::registry::Registry;
use crate::service::Incarnation;
pub use crate::service::forward::{Forward, RelayError, Watch};

/// Names of every configured service, in config order.
pub fn service_names(directory: &Directory) -> Vec<String> {
    directory
        .all()
        .iter()
        .map(|h| h.name().to_owned())
        .collect()
}

/// Sends `request` to the best of `candidates`, moving to the next one
/// when a service cannot be reached. `what` names the request in errors.
pub async fn forward(
    directory: &Directory,
    candidates: &[String],
    request: ClientRequest,
    what: &str,
) -> Result<ServerResult, RelayError> {
    let services = best_first(candidates.iter().filter_map(|n| directory.get(n)));
    if services.is_empty() {
        let why = if candidates.is_empty() {
            format!("no service offers {what}")
        } else {
            format!(
                "no service that offers {what} is available ({})",
                candidates.join(", ")
            )
        };
        return Err(RelayError::Failed(CallError::new(
            ErrorCategory::ServiceUnavailable,
            why,
        )));
    }
    let mut last = None;
    for h in services {
        let Some(addr) = h.addr() else { continue };
        let (tx, rx) = oneshot::channel();
        let sent = addr.try_send(Forward {
            request: request.clone(),
            reply: tx,
        });
        let outcome = match sent {
            Ok(()) => rx.await.unwrap_or_else(|_| {
                Err(RelayError::Failed(CallError::new(
                    ErrorCategory::Network,
                    format!("{} went down during the request", h.name()),
                )))
            }),
            Err(_) => Err(RelayError::Failed(CallError::new(
                ErrorCategory::Overload,
                format!("{} cannot take the request", h.name()),
            ))),
        };
        match outcome {
            Err(RelayError::Failed(mut e)) => {
                tracing::debug!(service = %h.name(), error = %e, "relay falls over to the next service");
                e.services.push(h.name().to_owned());
                last = Some(RelayError::Failed(e));
            }
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| {
        RelayError::Failed(CallError::new(
            ErrorCategory::ServiceUnavailable,
            format!("no service could answer {what}"),
        ))
    }))
}

/// One client's subscription to a resource, through the service that owns
/// it. Dropping it ends the subscription; the upstream subscription itself
/// closes with the last client's.
pub struct ResourceWatch {
    registry: Arc<Registry>,
    directory: Arc<Directory>,
    service: String,
    uri: String,
}

impl std::fmt::Debug for ResourceWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceWatch")
            .field("service", &self.service)
            .field("uri", &self.uri)
            .finish()
    }
}

impl ResourceWatch {
    /// The service watched.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The resource watched.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

impl Drop for ResourceWatch {
    fn drop(&mut self) {
        if self.registry.catalog().unwatch(&self.service, &self.uri)
            && let Some(addr) = self.directory.get(&self.service).and_then(|h| h.addr())
        {
            addr.do_send(Watch {
                uri: self.uri.clone(),
                on: false,
                reply: None,
            });
        }
    }
}

/// Subscribes a client to `uri` on the best of `candidates` (services that
/// offer it and accept subscriptions).
pub async fn watch(
    registry: &Arc<Registry>,
    directory: &Arc<Directory>,
    candidates: &[String],
    uri: &str,
) -> Result<ResourceWatch, RelayError> {
    let Some(h) = best_first(candidates.iter().filter_map(|n| directory.get(n)))
        .into_iter()
        .next()
    else {
        return Err(RelayError::Failed(CallError::new(
            ErrorCategory::ServiceUnavailable,
            format!("no available service accepts subscriptions to `{uri}`"),
        )));
    };
    let watch = ResourceWatch {
        registry: registry.clone(),
        directory: directory.clone(),
        service: h.name().to_owned(),
        uri: uri.to_owned(),
    };
    if !registry.catalog().watch(h.name(), uri) {
        return Ok(watch); // the upstream subscription is already open
    }
    let (tx, rx) = oneshot::channel();
    let sent = h.addr().map(|addr| {
        addr.try_send(Watch {
            uri: uri.to_owned(),
            on: true,
            reply: Some(tx),
        })
    });
    let outcome = match sent {
        Some(Ok(())) => rx.await.unwrap_or_else(|_| {
            Err(RelayError::Failed(CallError::new(
                ErrorCategory::Network,
                format!("{} went down while subscribing", h.name()),
            )))
        }),
        _ => Err(RelayError::Failed(CallError::new(
            ErrorCategory::ServiceUnavailable,
            format!("{} cannot take the subscription", h.name()),
        ))),
    };
    // On failure, dropping `watch` takes the count back down.
    outcome.map(|()| watch)
}
