//! Keeping the tool registry current with what the upstream offers.

use actix::prelude::*;
use rmcp::model::{ServerNotification, SubscriptionFilter};
use rmcp::service::{Peer, RoleClient};

use super::ServiceActor;

impl ServiceActor {
    /// 2026-07-28 servers announce list changes only on a
    /// `subscriptions/listen` stream; hold one open for the connection's life.
    pub(super) fn listen_for_tool_changes(
        &mut self,
        ctx: &mut Context<Self>,
        peer: Peer<RoleClient>,
    ) {
        let Some(live) = &self.live else { return };
        let handler = live.handler.clone();
        let service = self.name().to_owned();
        ctx.spawn(
            async move {
                let filter = SubscriptionFilter::builder().tools_list_changed().build();
                let mut sub = match peer.listen(filter).await {
                    Ok(sub) => sub,
                    Err(e) => {
                        tracing::debug!(%service, error = %e, "subscriptions/listen refused");
                        return;
                    }
                };
                loop {
                    match sub.next().await {
                        Ok(Some(ServerNotification::ToolListChangedNotification(_))) => {
                            handler.tools_changed()
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                tracing::debug!(%service, "tool change subscription ended");
            }
            .into_actor(self),
        );
    }

    pub(super) fn refresh_tools(&mut self, ctx: &mut Context<Self>) {
        let Some(live) = &self.live else { return };
        let peer = live.peer.clone();
        let limits = &self.handle.spec.limits;
        let timeout = limits.call_timeout().min(limits.connect_timeout());
        ctx.spawn(
            async move { tokio::time::timeout(timeout, peer.list_all_tools()).await }
                .into_actor(self)
                .map(|result, act, _| {
                    match result {
                        Ok(Ok(tools)) => {
                            tracing::debug!(service = %act.name(), tools = tools.len(), "tools listed");
                            act.registry.set_live_tools(act.name(), tools);
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(service = %act.name(), error = %e, "tools/list failed")
                        }
                        Err(_) => tracing::warn!(service = %act.name(), "tools/list timed out"),
                    }
                    act.become_ready();
                }),
        );
    }
}
