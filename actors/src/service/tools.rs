//! Keeping the tool registry current with what the upstream offers.

use actix::prelude::*;
use rmcp::model::{ServerNotification, SubscriptionFilter};
use rmcp::service::{Peer, RoleClient};

use super::{Incarnation, Refuse, ServiceActor};
use crate::model::ServiceState;

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
                .map(|result, act, ctx| {
                    match result {
                        Ok(Ok(tools)) => {
                            tracing::debug!(service = %act.name(), tools = tools.len(), "tools listed");
                            act.registry.set_live_tools(act.name(), tools);
                            if act.refuse_collisions(ctx) {
                                return;
                            }
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

    /// Under `router.tool_names = "never"` a tool name belongs to the
    /// first service in the configuration that offers it; a service that
    /// offers one another holds is refused — this one, or a later one that
    /// was up before this one listed its tools. Whether this one was.
    fn refuse_collisions(&mut self, ctx: &mut Context<Self>) -> bool {
        let table = self.registry.snapshot();
        let mut refused_self = None;
        for (group, names) in table.refused() {
            let reason = collision(group, names);
            for h in self.directory.all().iter() {
                if h.spec.group() != group {
                    continue;
                }
                if h.name() == self.name() {
                    refused_self = Some(reason.clone());
                } else if matches!(h.state(), ServiceState::Starting | ServiceState::Ready)
                    && let Some(addr) = h.addr()
                {
                    addr.do_send(Refuse {
                        reason: reason.clone(),
                    });
                }
            }
        }
        match refused_self {
            Some(reason) => {
                tracing::error!(service = %self.name(), %reason, "service refused");
                self.refuse(ctx, reason);
                true
            }
            None => false,
        }
    }
}

/// Why a logical service is refused under the `never` naming policy.
fn collision(group: &str, names: &[(String, String)]) -> String {
    let listed: Vec<String> = names
        .iter()
        .take(5)
        .map(|(name, holder)| format!("`{name}` (held by `{holder}`)"))
        .collect();
    let more = names.len().saturating_sub(listed.len());
    format!(
        "refused: `{group}` offers tool names another service holds: {}{}; \
         router.tool_names = \"never\" gives each name to the first service in the \
         configuration (rename the tools, or use prefix_on_conflict)",
        listed.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}
