//! The service's retry mailbox: failed calls that asked for patience wait
//! out a backoff here and are sent again, when that is safe.

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{CallJob, CallReply, CallTool, ServiceActor, call};
use crate::error::{CallError, Delivery};
use crate::retry::RetryConfig;
use crate::stream::StreamEvent;

impl ServiceActor {
    /// Answers a finished attempt, or puts the call in the retry mailbox.
    pub(super) fn settle(
        &mut self,
        ctx: &mut Context<Self>,
        attempt: call::Attempt,
        reply: oneshot::Sender<Result<CallReply, CallError>>,
    ) {
        let call::Attempt { job, outcome, .. } = attempt;
        let _span = job.span.clone().entered();
        let Err(e) = &outcome else {
            let _ = reply.send(outcome);
            return;
        };
        if let Some(wait) = e.retry_after {
            // Every call waits, not only this one: the upstream asked. No
            // longer than a call may last, whatever it asked for.
            let wait = wait.min(job.retry.deadline());
            if let Some(until) = Instant::now().checked_add(wait) {
                self.handle.throttle(until);
            }
        }
        let Some(delay) = self.retry_delay(&job, e) else {
            let _ = reply.send(outcome);
            return;
        };
        tracing::info!(
            service = %self.name(),
            tool = %job.name,
            category = %e.category,
            attempt = job.attempt,
            delay_ms = delay.as_millis() as u64,
            "retrying"
        );
        job.events.emit(StreamEvent::status(
            "retrying",
            format!(
                "{}: retrying on {} in {} ms (attempt {} of {})",
                e.category,
                self.name(),
                delay.as_millis(),
                job.attempt + 1,
                job.retry.policy(e.category).map_or(0, |p| p.max_attempts),
            ),
            Some(self.name()),
        ));
        self.metrics.retry(self.name(), e.category);
        self.waiting += 1;
        ctx.run_later(delay, move |act, ctx| {
            act.waiting -= 1;
            act.queue.push_front(CallTool { job, reply });
            act.dispatch(ctx);
        });
    }

    /// Whether (and when) a failed attempt goes to the retry mailbox: the
    /// category is retried in place, re-sending is safe, its strategy has
    /// attempts left, the mailbox has room, and the wait fits the deadline.
    fn retry_delay(&self, job: &CallJob, e: &CallError) -> Option<Duration> {
        if !RetryConfig::retried_in_place(e.category) {
            return None;
        }
        if e.delivery == Delivery::MaybeSent && !job.safe {
            return None;
        }
        let policy = job.retry.policy(e.category)?;
        if job.attempt >= policy.max_attempts || self.waiting >= job.retry.max_waiting {
            return None;
        }
        let delay = policy.delay(job.attempt, e.retry_after, fastrand::f64());
        Instant::now()
            .checked_add(delay)
            .is_some_and(|at| at <= job.deadline)
            .then_some(delay)
    }
}
