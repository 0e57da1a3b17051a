//! The connection loop's deadlines (pong, readiness, rotation, idle data, a stop's quiet spell),
//! waited on with one timer: the loop sleeps until the earliest and then sees which one passed.
//! One timer instead of one per deadline keeps every connection's loop smaller and registers one
//! timer per turn of the loop instead of five.

use std::time::Duration;

use tokio::time::Instant;

use super::{Conn, DownReason, Stopping};

impl Conn {
    /// The earliest deadline that applies now (`reading`: the pong and idle deadlines only run
    /// while reading, since a connection held back by backpressure sees no pongs or frames).
    pub(super) fn next_deadline(&self, reading: bool, idle_timeout: Duration) -> Option<Instant> {
        [
            self.pong_due.filter(|_| reading),
            self.ready_due,
            self.rotate_due,
            reading.then(|| self.last_frame + idle_timeout),
            self.stopping.as_ref().map(Stopping::quiet_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Acts on the deadlines that passed by now: a missing pong, a connection never ready or
    /// silent for too long is down, a stop's quiet spell ends the loop, and a connection due for
    /// rotation asks for its replacement. Nothing passed (a timer that woke early) is no step.
    pub(super) fn on_deadline(
        &mut self,
        reading: bool,
        idle_timeout: Duration,
    ) -> Result<(), DownReason> {
        let now = Instant::now();
        let passed = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        if reading && passed(self.pong_due) {
            return Err(DownReason::Transient(
                "no pong within the pong timeout".into(),
            ));
        }
        if passed(self.ready_due) {
            return Err(DownReason::Transient(self.protocol.ready_timeout_detail()));
        }
        if reading && self.last_frame + idle_timeout <= now {
            return Err(DownReason::Transient(
                "no data from the peer within the idle timeout".into(),
            ));
        }
        if passed(self.stopping.as_ref().map(Stopping::quiet_at)) {
            return Err(DownReason::Stopped);
        }
        if passed(self.rotate_due) {
            self.rotate_due = None;
            self.rotate();
        }
        Ok(())
    }
}
