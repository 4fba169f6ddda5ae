//! Relaying requests other than tool calls — `resources/*`, `prompts/*`,
//! `completion/complete`, `logging/setLevel` — to the services that can
//! answer them, chosen from the catalog and ranked exactly as tool calls
//! are ([`best_first`]).
//!
//! Every request relayed here reads or sets state without side effects a
//! repeat would double, so a replica that fails at the connection level is
//! simply replaced by the next one. An upstream's JSON-RPC error is passed
//! on as it is.

use rmcp::model::{ClientRequest, ServerResult};
use tokio::sync::oneshot;

use crate::directory::Directory;
use crate::error::{CallError, ErrorCategory};
use crate::router::best_first;
pub use crate::service::relay::{Forward, RelayError};

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
