//! Where the engine's actors run: on the threads that serve HTTP.
//!
//! A tool call arrives on an HTTP worker thread. When the service actor
//! that owns the upstream connection — and with it the tasks that read and
//! write the upstream's pipes or sockets — lives on that same thread, the
//! call's hand-off and its answer are local wake-ups, not a message to
//! another thread and back (each of which costs a futex, an eventfd write
//! and, on a virtual machine, an inter-processor interrupt). So the
//! application registers each HTTP worker's arbiter here as the worker
//! starts, and the engine starts its actors on them once they are known.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::dev::channel::{AddressReceiver, channel};
use actix::prelude::*;
use tokio::sync::Notify;

/// The arbiters actors may live on, in the order they registered.
#[derive(Clone, Default)]
pub struct Homes(Arc<Inner>);

#[derive(Default)]
struct Inner {
    arbiters: Mutex<Vec<ArbiterHandle>>,
    changed: Notify,
}

impl Homes {
    /// Registers the current thread's arbiter (call it on each HTTP worker
    /// as it starts).
    pub fn register_current(&self) {
        self.0
            .arbiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arbiter::current());
        self.0.changed.notify_waiters();
    }

    /// The registered arbiters.
    pub fn all(&self) -> Vec<ArbiterHandle> {
        self.0
            .arbiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until `count` arbiters are registered (or `patience` passes);
    /// those there are, or the current thread's when there are none.
    pub async fn wait_for(&self, count: usize, patience: Duration) -> Vec<ArbiterHandle> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = self.all();
            if now.len() >= count {
                return now;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let now = self.all();
                if now.is_empty() {
                    tracing::warn!("no HTTP worker registered; the engine runs on its own thread");
                    return vec![Arbiter::current()];
                }
                return now;
            }
        }
    }
}

/// An actor's address before the actor runs: messages sent meanwhile wait
/// in its mailbox. Lets the HTTP server be built with the engine's
/// addresses before the threads the engine will run on exist.
pub struct Unstarted<A: Actor<Context = Context<A>>> {
    addr: Addr<A>,
    rx: AddressReceiver<A>,
}

impl<A: Actor<Context = Context<A>>> Default for Unstarted<A> {
    fn default() -> Self {
        let (tx, rx) = channel(16);
        Self {
            addr: Addr::new(tx),
            rx,
        }
    }
}

impl<A: Actor<Context = Context<A>>> Unstarted<A> {
    /// The address the actor will have.
    pub fn addr(&self) -> Addr<A> {
        self.addr.clone()
    }

    /// Starts the actor `make` builds on `arbiter`, behind the address.
    pub fn start_in(self, arbiter: &ArbiterHandle, make: impl FnOnce() -> A + Send + 'static)
    where
        A: Send,
    {
        let rx = self.rx;
        arbiter.spawn_fn(move || {
            Context::with_receiver(rx).run(make());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Actor for Echo {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "Option<String>")]
    struct WhereAreYou;

    impl Handler<WhereAreYou> for Echo {
        type Result = Option<String>;
        fn handle(&mut self, _: WhereAreYou, _: &mut Context<Self>) -> Self::Result {
            Some(format!("{:?}", std::thread::current().id()))
        }
    }

    #[actix_rt::test]
    async fn an_unstarted_actor_keeps_its_mail_and_runs_where_it_is_started() {
        let unstarted = Unstarted::<Echo>::default();
        let addr = unstarted.addr();
        let asked = addr.send(WhereAreYou);
        let home = Arbiter::new();
        let homes = Homes::default();
        let registering = homes.clone();
        home.spawn_fn(move || registering.register_current());
        let found = homes.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(found.len(), 1);
        unstarted.start_in(&found[0], || Echo);
        let there = asked.await.unwrap();
        assert_ne!(there, Some(format!("{:?}", std::thread::current().id())));
        home.stop();
    }
}
