//! The service's health probe: the cheapest round-trip its upstream's
//! protocol era has, on the actor's own timer.

use std::time::{Duration, Instant};

use actix::prelude::*;
use rmcp::model::{ClientRequest, DiscoverRequest, DiscoverRequestParams, PingRequest};
use rmcp::service::ServiceError;

use super::ServiceActor;
use crate::health::history::Source;
use crate::transport::errors::from_service_error;

impl ServiceActor {
    /// One health probe: the cheapest round-trip the upstream's era has.
    pub(super) fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(live) = &self.live else { return };
        if self.probe_in_flight {
            return;
        }
        self.probe_in_flight = true;
        let peer = live.peer.clone();
        let request = if live.stateless {
            ClientRequest::DiscoverRequest(DiscoverRequest::new(DiscoverRequestParams {}))
        } else {
            ClientRequest::PingRequest(PingRequest::default())
        };
        let timeout = Duration::from_millis(self.handle.spec.health.timeout_ms);
        let started = Instant::now();
        ctx.spawn(
            async move { tokio::time::timeout(timeout, peer.send_request(request)).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.probe_in_flight = false;
                    let failure = match result {
                        // Any answer, even a JSON-RPC error (a server without
                        // `ping`), shows the session is alive.
                        Ok(Ok(_)) | Ok(Err(ServiceError::McpError(_))) => None,
                        Ok(Err(e)) => Some(from_service_error(e, true).to_string()),
                        Err(_) => Some(format!("probe timed out after {} ms", timeout.as_millis())),
                    };
                    match failure {
                        None => {
                            act.probe_failures = 0;
                            act.cleared();
                            act.handle.record_success(started.elapsed(), false);
                            act.report(true, Some(started.elapsed()), Source::Probe, None);
                        }
                        Some(reason) => {
                            // Only the probes decide a restart: failed calls
                            // may be the calls' own fault.
                            act.probe_failures += 1;
                            let n = act.probe_failures;
                            act.handle.record_failure(&reason, false);
                            act.report(false, None, Source::Probe, Some(reason.clone()));
                            tracing::warn!(service = %act.name(), failures = n, %reason, "health probe failed");
                            if n >= act.handle.spec.health.restart_after_failures.max(1) {
                                act.crash(ctx, format!("{n} health probes failed in a row ({reason})"));
                            } else {
                                act.suspect(ctx, format!("health probe failed: {reason}"));
                            }
                        }
                    }
                }),
        );
    }
}
