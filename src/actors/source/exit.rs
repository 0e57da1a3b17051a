//! How the supervisor learns that a source actor is gone, however it went: a [`SourceExited`]
//! sent from the actor's `Drop`, which runs on a clean stop, on an error exit and while a panic
//! unwinds alike.

use actix::prelude::*;
use uuid::Uuid;

/// Source actor → supervisor (sent when the actor is dropped): the source actor of this
/// incarnation is gone. `clean`: it was shut down on purpose; otherwise the supervisor restarts it
/// (within its restart intensity). Answers nothing.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SourceExited {
    /// The source.
    pub source_id: Uuid,
    /// Which start of its actor this was (the supervisor counts them).
    pub incarnation: u64,
    /// Whether the actor was shut down on purpose.
    pub clean: bool,
}

/// Sends [`SourceExited`] when dropped.
pub struct ExitNotice {
    to: Recipient<SourceExited>,
    source_id: Uuid,
    incarnation: u64,
    clean: bool,
}

impl ExitNotice {
    /// A notice for this incarnation of the source's actor.
    pub fn new(to: Recipient<SourceExited>, source_id: Uuid, incarnation: u64) -> ExitNotice {
        ExitNotice {
            to,
            source_id,
            incarnation,
            clean: false,
        }
    }

    /// The actor is being shut down on purpose.
    pub fn mark_clean(&mut self) {
        self.clean = true;
    }
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        self.to.do_send(SourceExited {
            source_id: self.source_id,
            incarnation: self.incarnation,
            clean: self.clean,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use tokio::sync::mpsc;

    /// Stands in for the supervisor: forwards every exit it hears of.
    struct Listener(mpsc::UnboundedSender<SourceExited>);

    impl Actor for Listener {
        type Context = Context<Self>;
    }

    impl Handler<SourceExited> for Listener {
        type Result = ();

        fn handle(&mut self, msg: SourceExited, _: &mut Context<Self>) {
            let _ = self.0.send(msg);
        }
    }

    /// Stands in for a source actor holding its notice.
    struct Doomed(ExitNotice);

    impl Actor for Doomed {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    enum Fate {
        Panic,
        Stop,
        Shutdown,
    }

    impl Handler<Fate> for Doomed {
        type Result = ();

        fn handle(&mut self, msg: Fate, ctx: &mut Context<Self>) {
            match msg {
                Fate::Panic => panic!("a bug in a source actor"),
                Fate::Stop => ctx.stop(),
                Fate::Shutdown => {
                    self.0.mark_clean();
                    ctx.stop();
                }
            }
        }
    }

    /// A panic in a handler, an error exit and a shutdown each reach the supervisor exactly once,
    /// marked clean only for the shutdown, and the arbiter goes on running after the panic.
    #[actix::test]
    async fn every_way_out_is_reported() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let listener = Listener(tx).start();
        let id = Uuid::new_v4();
        for (incarnation, fate) in [(1, Fate::Panic), (2, Fate::Stop), (3, Fate::Shutdown)] {
            let notice = ExitNotice::new(listener.clone().recipient(), id, incarnation);
            let doomed = Doomed(notice).start();
            doomed.do_send(fate);
            let exited = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                .await
                .expect("reported in time")
                .expect("reported");
            assert_eq!(exited.incarnation, incarnation);
            assert_eq!(exited.source_id, id);
            assert_eq!(exited.clean, incarnation == 3);
        }
        assert!(rx.try_recv().is_err(), "each exit is reported once");
    }
}
