//! Hang detection: a replica that stops answering is taken out of rotation
//! within about one probe timeout, not when the freeze ends.
//!
//! A service is `suspect` when a probe fails, when its stdio child has
//! written nothing for longer than the probe timeout while calls are
//! outstanding, or when its calls keep losing hedge races (the router's
//! [`Suspect`] message). Then new calls go elsewhere, calls that were never
//! sent leave its lane for another replica at once, and it is probed
//! every probe timeout until an answer clears the suspicion. A freeze that
//! outlasts `restart_after_failures` probes ends in a restart (see
//! `probe.rs`); the process group is ended, frozen or not.

use std::time::Duration;

use actix::prelude::*;

use super::ServiceActor;

/// The router saw this service lose hedge races in a row.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Suspect {
    /// Why.
    pub reason: String,
}

impl Handler<Suspect> for ServiceActor {
    type Result = ();

    fn handle(&mut self, msg: Suspect, ctx: &mut Context<Self>) {
        self.suspect(ctx, msg.reason);
        // A prompt probe tells a slow replica from a frozen one.
        self.probe(ctx);
    }
}

impl ServiceActor {
    /// Marks the service suspect and moves its never-sent calls.
    pub(super) fn suspect(&mut self, ctx: &mut Context<Self>, reason: String) {
        if !self.handle.mark_suspect(&reason) {
            return;
        }
        tracing::warn!(service = %self.name(), %reason, "service suspect: taken out of rotation");
        self.metrics.suspected(self.name());
        // Calls waiting in its lane see the suspicion and move to another
        // replica where one can take them.
        self.recheck(ctx);
    }

    /// Clears a suspicion after an answer.
    pub(super) fn cleared(&mut self) {
        if self.handle.clear_suspect() {
            tracing::info!(service = %self.name(), "service answers again: back in rotation");
        }
    }

    /// Probes every probe timeout while suspect, so its return is seen
    /// soon; one chain of rechecks at a time.
    fn recheck(&mut self, ctx: &mut Context<Self>) {
        if self.rechecking {
            return;
        }
        self.rechecking = true;
        let every = Duration::from_millis(self.handle.spec.health.timeout_ms.max(100));
        ctx.run_later(every, |act, ctx| {
            act.rechecking = false;
            if act.handle.is_suspect() {
                act.probe(ctx);
                act.recheck(ctx);
            }
        });
    }

    /// The stdio watchdog: silence while calls are outstanding.
    pub(super) fn watch_output(&mut self, ctx: &mut Context<Self>) {
        let Some(seen) = &self.liveness else { return };
        let Some(lane) = &self.lane else { return };
        let Some(busy) = lane.busy_for() else { return };
        let limit = Duration::from_millis(self.handle.spec.health.timeout_ms.max(10));
        let silent = seen.silent_for().min(busy);
        if silent > limit && !self.handle.is_suspect() {
            let reason = format!(
                "no output for {} ms with {} call(s) outstanding",
                silent.as_millis(),
                lane.in_flight()
            );
            self.suspect(ctx, reason);
        }
    }
}
