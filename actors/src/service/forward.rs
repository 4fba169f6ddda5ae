//! Requests other than tool calls: keeping this service's entry in the
//! catalog current, and forwarding `resources/read`, `prompts/get`,
//! `completion/complete` and the like to the upstream as they are.

use actix::prelude::*;
// resources/subscribe is legacy-only: exactly what session-era upstreams need.
#[allow(deprecated)]
use rmcp::model::{
    ClientRequest, ErrorData, ServerNotification, ServerResult, SubscribeRequest,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequest, UnsubscribeRequestParams,
};
use tokio::sync::oneshot;

use super::ServiceActor;
use crate::catalog::{Offer, ResourceUpdate};
use crate::error::{CallError, ErrorCategory};
use crate::transport::errors::from_service_error;

/// Why a forwarded request has no result.
#[derive(Debug)]
pub enum RelayError {
    /// The upstream answered with a JSON-RPC error: passed on verbatim.
    Upstream(ErrorData),
    /// It could not be asked, or gave no answer.
    Failed(CallError),
}

/// Asks the service to forward one request upstream.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forward {
    pub request: ClientRequest,
    pub reply: oneshot::Sender<Result<ServerResult, RelayError>>,
}

impl Handler<Forward> for ServiceActor {
    type Result = ();

    fn handle(&mut self, msg: Forward, ctx: &mut Context<Self>) {
        let Some(live) = &self.live else {
            let _ = msg.reply.send(Err(RelayError::Failed(CallError::new(
                ErrorCategory::ServiceUnavailable,
                format!("{} is not connected", self.name()),
            ))));
            return;
        };
        let peer = live.peer.clone();
        let timeout = self.handle.spec.limits.call_timeout();
        // A relayed request counts against attributing server requests and
        // log messages to a single running call.
        let outstanding = live.handler.outstanding();
        ctx.spawn(
            async move {
                let _outstanding = outstanding;
                let outcome =
                    match tokio::time::timeout(timeout, peer.send_request(msg.request)).await {
                        Ok(Ok(result)) => Ok(result),
                        Ok(Err(rmcp::ServiceError::McpError(e))) => Err(RelayError::Upstream(e)),
                        Ok(Err(e)) => Err(RelayError::Failed(from_service_error(e, true))),
                        Err(_) => Err(RelayError::Failed(
                            CallError::new(
                                ErrorCategory::Timeout,
                                format!("no answer within {} ms", timeout.as_millis()),
                            )
                            .maybe_sent(),
                        )),
                    };
                let _ = msg.reply.send(outcome);
            }
            .into_actor(self),
        );
    }
}

impl ServiceActor {
    /// Lists what the upstream offers besides tools, by its declared
    /// capabilities, and replaces this service's catalog entry.
    pub(super) fn refresh_offer(&mut self, ctx: &mut Context<Self>) {
        let Some(live) = &self.live else { return };
        let peer = live.peer.clone();
        let mut offer = Offer::from_capabilities(&live.capabilities);
        let timeout = self.handle.spec.limits.call_timeout();
        let service = self.name().to_owned();
        ctx.spawn(
            async move {
                let listed = async {
                    if offer.has_resources {
                        offer.resources = peer.list_all_resources().await?;
                        // Templates are optional even for resource servers.
                        offer.templates = peer.list_all_resource_templates().await.unwrap_or_default();
                    }
                    if offer.has_prompts {
                        offer.prompts = peer.list_all_prompts().await?;
                    }
                    Ok::<_, rmcp::ServiceError>(())
                };
                match tokio::time::timeout(timeout, listed).await {
                    Ok(Ok(())) => Some(offer),
                    Ok(Err(e)) => {
                        tracing::warn!(%service, error = %e, "listing resources/prompts failed");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(%service, "listing resources/prompts timed out");
                        None
                    }
                }
            }
            .into_actor(self)
            .map(|offer, act, _| {
                if let Some(offer) = offer {
                    tracing::debug!(service = %act.name(), resources = offer.resources.len(),
                        templates = offer.templates.len(), prompts = offer.prompts.len(), "offer listed");
                    act.registry.catalog().set(act.name(), offer);
                }
            }),
        );
    }
}

/// Opens (`on`) or closes this service's upstream subscription to a
/// resource. The catalog counts the clients; this is sent for the first
/// and after the last.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watch {
    pub uri: String,
    pub on: bool,
    pub reply: Option<oneshot::Sender<Result<(), RelayError>>>,
}

impl Handler<Watch> for ServiceActor {
    type Result = ();

    fn handle(&mut self, msg: Watch, ctx: &mut Context<Self>) {
        // The catalog's count decides: messages from a watcher leaving and
        // one arriving can cross, so an "off" while someone still watches
        // (or an "on" after the last left) is stale.
        let watched = self
            .registry
            .catalog()
            .watched(self.name())
            .contains(&msg.uri);
        if msg.on != watched {
            if let Some(reply) = msg.reply {
                let _ = reply.send(Ok(()));
            }
            return;
        }
        self.watch_upstream(ctx, msg.uri, msg.on, msg.reply);
    }
}

impl ServiceActor {
    /// A session-era upstream is sent `resources/subscribe` /
    /// `unsubscribe`; a 2026-07-28 one gets a `subscriptions/listen` stream
    /// for the URI, held open for as long as the watch lasts.
    #[allow(deprecated)]
    pub(super) fn watch_upstream(
        &mut self,
        ctx: &mut Context<Self>,
        uri: String,
        on: bool,
        reply: Option<oneshot::Sender<Result<(), RelayError>>>,
    ) {
        let respond = |reply: Option<oneshot::Sender<Result<(), RelayError>>>, r| {
            if let Some(tx) = reply {
                let _ = tx.send(r);
            }
        };
        let Some(live) = &self.live else {
            // Re-opened from the catalog when the service connects.
            respond(
                reply,
                Err(RelayError::Failed(CallError::new(
                    ErrorCategory::ServiceUnavailable,
                    format!("{} is not connected", self.name()),
                ))),
            );
            return;
        };
        let peer = live.peer.clone();
        if !live.stateless {
            let request = if on {
                ClientRequest::SubscribeRequest(SubscribeRequest::new(SubscribeRequestParams::new(
                    uri,
                )))
            } else {
                ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
                    UnsubscribeRequestParams::new(uri),
                ))
            };
            let timeout = self.handle.spec.limits.call_timeout();
            ctx.spawn(
                async move {
                    let r = match tokio::time::timeout(timeout, peer.send_request(request)).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(rmcp::ServiceError::McpError(e))) => Err(RelayError::Upstream(e)),
                        Ok(Err(e)) => Err(RelayError::Failed(from_service_error(e, true))),
                        Err(_) => Err(RelayError::Failed(timed_out(timeout))),
                    };
                    respond(reply, r);
                }
                .into_actor(self),
            );
            return;
        }
        if !on {
            if let Some((_, handle)) = self.resource_listens.remove(&uri) {
                ctx.cancel_future(handle);
            }
            respond(reply, Ok(()));
            return;
        }
        if self.resource_listens.contains_key(&uri) {
            respond(reply, Ok(()));
            return;
        }
        let catalog_uri = uri.clone();
        let service = self.name().to_owned();
        let registry = self.registry.clone();
        let timeout = self.handle.spec.limits.call_timeout();
        self.listen_seq += 1;
        let seq = self.listen_seq;
        let ended_uri = uri.clone();
        let handle = ctx.spawn(
            async move {
                let filter = SubscriptionFilter::builder()
                    .resource_subscriptions([catalog_uri.clone()])
                    .build();
                let mut sub = match tokio::time::timeout(timeout, peer.listen(filter)).await {
                    Ok(Ok(sub)) => {
                        respond(reply, Ok(()));
                        sub
                    }
                    Ok(Err(e)) => {
                        respond(reply, Err(RelayError::Failed(from_service_error(e, true))));
                        return;
                    }
                    Err(_) => {
                        respond(reply, Err(RelayError::Failed(timed_out(timeout))));
                        return;
                    }
                };
                while let Ok(Some(note)) = sub.next().await {
                    if let ServerNotification::ResourceUpdatedNotification(n) = note {
                        registry.catalog().publish(ResourceUpdate {
                            service: service.clone(),
                            uri: n.params.uri,
                        });
                    }
                }
                tracing::debug!(%service, uri = %catalog_uri, "resource subscription ended");
            }
            .into_actor(self)
            .map(move |(), act, _| {
                // Ended on its own: forget it, so the next watcher reopens it.
                if act
                    .resource_listens
                    .get(&ended_uri)
                    .is_some_and(|(s, _)| *s == seq)
                {
                    act.resource_listens.remove(&ended_uri);
                }
            }),
        );
        self.resource_listens.insert(uri, (seq, handle));
    }

    /// An upstream's `notifications/resources/updated` (session revisions).
    pub(super) fn resource_updated(&self, uri: String) {
        self.registry.catalog().publish(ResourceUpdate {
            service: self.name().to_owned(),
            uri,
        });
    }
}

fn timed_out(timeout: std::time::Duration) -> CallError {
    CallError::new(
        ErrorCategory::Timeout,
        format!("no answer within {} ms", timeout.as_millis()),
    )
    .maybe_sent()
}
