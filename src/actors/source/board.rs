//! The supervision board of one source: its connection slots, their generations, make-before-break
//! replacements, restart policies and the status they add up to, as a pure state machine.
//!
//! Events go in (a start is due, a connection is ready, a connection ended, a replacement is due,
//! an operator command, a new spec); [`Effect`]s come out (schedule or start a connection, stop or
//! retire one, show a status, count). The [`SourceActor`](super::SourceActor) only carries the
//! effects out. Nothing here touches a socket, a timer, a clock or a global random source: time and
//! randomness are passed in, so any sequence of events can be replayed in tests.
//!
//! Every connection has a generation, unique within the board. A report for a generation the board
//! no longer runs (stopped, replaced, superseded) is stale and changes nothing. A slot runs at most
//! one connection, plus the aging one its replacement takes over from (make-before-break); once the
//! replacement is ready the aging one is retired (it drains until the peer closes it) and no longer
//! belongs to the slot.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;

use super::super::connection::DownReason;
use super::super::policy::{BackoffConfig, Decision, RetryState};
use crate::metrics::ReconnectReason;
use crate::sources::slack::ghost_warning;
use crate::sources::status::SourceState;

/// A connection's number, unique within one board.
pub type Generation = u64;

mod commands;
mod effect;
mod slot;
mod view;

pub use effect::{Effect, Shown};
use slot::{Phase, Slot};

/// The board of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    slots: Vec<Slot>,
    backoff: BackoffConfig,
    /// A state of the whole source that overrides its slots: `paused` or `failed`.
    held: Option<(SourceState, Option<String>)>,
    /// Connections a ready replacement took over from, still draining.
    retiring: Vec<Generation>,
    generations: Generation,
    /// The latest ghost-connection warning.
    warning: Option<String>,
    /// The latest connection count the peer reported (Slack `hello`).
    num_connections: Option<u32>,
    shown: Option<Shown>,
    /// Shut down: every event is ignored from now on.
    closed: bool,
}

impl Board {
    /// A board of `connections` idle slots.
    pub fn new(connections: usize, backoff: BackoffConfig) -> Board {
        Board {
            slots: (0..connections.max(1))
                .map(|_| Slot::new(&backoff))
                .collect(),
            backoff,
            held: None,
            retiring: Vec::new(),
            generations: 0,
            warning: None,
            num_connections: None,
            shown: None,
            closed: false,
        }
    }

    /// Starts every slot after `delay`.
    pub fn start(&mut self, delay: Duration) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        for i in 0..self.slots.len() {
            self.schedule(i, delay, &mut out);
        }
        self.show(&mut out);
        out
    }

    /// Starts held in `state` (paused or failed, as the source's previous actor left it): nothing
    /// connects until an operator resumes or reconnects, or a new spec comes.
    pub fn start_held(&mut self, state: SourceState, detail: Option<String>) -> Vec<Effect> {
        let mut out = Vec::new();
        if !self.closed {
            self.hold(state, detail, &mut out);
        }
        out
    }

    /// The start of `generation` in `slot` is due (its delay passed and it holds a connect
    /// permit): start it unless it was superseded.
    pub fn start_due(&mut self, slot: usize, generation: Generation) -> Vec<Effect> {
        let mut out = Vec::new();
        if !self.is_due(slot, generation) {
            return out;
        }
        let slot_ref = &mut self.slots[slot];
        slot_ref.phase = Phase::Running;
        if slot_ref.draining.is_none() && slot_ref.state == SourceState::Connected {
            slot_ref.state = SourceState::Connecting;
        }
        out.push(Effect::Start { slot, generation });
        self.show(&mut out);
        out
    }

    /// Whether the start of `generation` in `slot` is still wanted.
    pub fn is_due(&self, slot: usize, generation: Generation) -> bool {
        !self.closed
            && self
                .slots
                .get(slot)
                .is_some_and(|s| s.generation == generation && s.phase == Phase::Scheduled)
    }

    /// The connection of `generation` is ready at `now` (`wall` on the calendar).
    pub fn ready(
        &mut self,
        generation: Generation,
        num_connections: Option<u32>,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(i) = self
            .running_slot(generation)
            .filter(|i| !self.slots[*i].ready)
        else {
            return out;
        };
        let sockets = self.sockets();
        let configured = self.slots.len();
        let slot = &mut self.slots[i];
        slot.policy.on_ready(now);
        slot.ready = true;
        slot.after_drain = None;
        slot.state = SourceState::Connected;
        slot.detail = None;
        slot.next_retry_at = None;
        slot.connected_at = Some(wall);
        if let Some(old) = slot.draining.take() {
            // Make-before-break: the replacement is ready, so the aging connection may go (once
            // the peer closed it, when the peer asked for the refresh).
            out.push(Effect::Retire { generation: old });
            self.retiring.push(old);
        }
        if let Some(reported) = num_connections {
            self.num_connections = Some(reported);
            // Slack counts the socket being replaced until it is closed, so compare with what
            // this source held when the hello came (never less than it is configured for).
            let held = u8::try_from(sockets.max(configured)).unwrap_or(u8::MAX);
            self.warning = ghost_warning(held, reported);
            if let Some(warning) = &self.warning {
                out.push(Effect::GhostConnections {
                    reported,
                    warning: warning.clone(),
                });
            }
        }
        self.show(&mut out);
        out
    }

    /// The connection of `generation` ended at `now` for `reason`.
    pub fn ended(
        &mut self,
        generation: Generation,
        reason: &DownReason,
        now: Instant,
        wall: DateTime<Utc>,
        rng: &mut impl Rng,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        if let Some(i) = self.retiring.iter().position(|g| *g == generation) {
            // A retired connection ended (the peer closed it, or its grace ran out): routine.
            self.retiring.swap_remove(i);
            return out;
        }
        if let Some(slot) = self
            .slots
            .iter_mut()
            .find(|slot| slot.draining == Some(generation))
        {
            // The aging connection ended before its replacement was ready (a ready replacement
            // retires it): routine, not a failure, but nothing is ready in this slot now.
            slot.draining = None;
            if slot.state == SourceState::Connected && !slot.ready {
                // A failed replacement's retry is pending: show it now.
                slot.state = slot.after_drain.take().unwrap_or(SourceState::Connecting);
                slot.connected_at = None;
            }
            self.show(&mut out);
            return out;
        }
        let Some(i) = self.running_slot(generation) else {
            return out;
        };
        self.slots[i].phase = Phase::Idle;
        self.slots[i].ready = false;
        match self.slots[i].policy.on_down(now, reason.class(), rng) {
            Decision::Retry { delay, state } => {
                out.push(Effect::Reconnected(match reason {
                    DownReason::RateLimited { .. } => ReconnectReason::RateLimited,
                    DownReason::Throttled { .. } => ReconnectReason::Throttled,
                    _ => ReconnectReason::Transient,
                }));
                let slot = &mut self.slots[i];
                // A replacement that failed leaves a ready aging connection serving: the slot
                // stays connected while its retry is scheduled.
                let serving = slot.draining.is_some() && slot.state == SourceState::Connected;
                let retry_state = match state {
                    RetryState::Backoff => SourceState::Backoff,
                    RetryState::Failing => SourceState::Failing,
                };
                slot.detail = Some(reason.detail().to_owned());
                slot.next_retry_at = chrono::Duration::from_std(delay).ok().map(|d| wall + d);
                if serving {
                    // Shown once the aging connection goes, unless a replacement is ready first.
                    slot.after_drain = Some(retry_state);
                } else {
                    slot.state = retry_state;
                    slot.connected_at = None;
                }
                self.schedule(i, delay, &mut out);
                self.show(&mut out);
            }
            Decision::Fail { reason } => {
                out.push(Effect::TerminalFailure);
                self.hold(SourceState::Failed, Some(reason), &mut out);
            }
            Decision::Pause { reason } => self.hold(SourceState::Paused, Some(reason), &mut out),
        }
        out
    }

    /// The connection of `generation` should be replaced (make-before-break): its slot starts a
    /// replacement and keeps it serving until the replacement is ready.
    pub fn replacement_due(&mut self, generation: Generation) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(i) = self.running_slot(generation) else {
            return out;
        };
        if self.slots[i].draining.is_some() {
            return out;
        }
        let next = self.next_generation();
        let slot = &mut self.slots[i];
        slot.draining = Some(generation);
        slot.generation = next;
        slot.phase = Phase::Scheduled;
        slot.ready = false;
        out.push(Effect::Reconnected(ReconnectReason::Refresh));
        out.push(Effect::Schedule {
            slot: i,
            generation: next,
            after: Duration::ZERO,
        });
        out
    }

    fn next_generation(&mut self) -> Generation {
        self.generations += 1;
        self.generations
    }

    /// The slot whose current connection is the running `generation`.
    fn running_slot(&self, generation: Generation) -> Option<usize> {
        if self.closed {
            return None;
        }
        self.slots
            .iter()
            .position(|slot| slot.generation == generation && slot.phase == Phase::Running)
    }

    /// Emits [`Effect::Show`] when the status changed.
    fn show(&mut self, out: &mut Vec<Effect>) {
        let shown = self.aggregate();
        if self.shown.as_ref() != Some(&shown) {
            self.shown = Some(shown.clone());
            out.push(Effect::Show(shown));
        }
    }

    /// Holds the whole source in `state` (paused, failed): every connection stops.
    fn hold(&mut self, state: SourceState, detail: Option<String>, out: &mut Vec<Effect>) {
        self.stop_all(out);
        self.held = Some((state, detail));
        self.show(out);
    }

    /// Stops slot `i`'s connection (and cancels a scheduled one) under a new generation, so later
    /// reports of it are stale. The aging connection it replaces keeps serving unless
    /// `drain_too`.
    fn stop_slot(&mut self, i: usize, drain_too: bool, out: &mut Vec<Effect>) {
        let next = self.next_generation();
        let slot = &mut self.slots[i];
        match slot.phase {
            Phase::Scheduled => out.push(Effect::Unschedule { slot: i }),
            Phase::Running => out.push(Effect::Stop {
                generation: slot.generation,
            }),
            Phase::Idle => {}
        }
        slot.generation = next;
        slot.phase = Phase::Idle;
        slot.ready = false;
        if drain_too && let Some(generation) = slot.draining.take() {
            out.push(Effect::Stop { generation });
        }
        // A ready aging connection still serving keeps the slot connected.
        if slot.draining.is_none() {
            slot.after_drain = None;
        }
        if slot.state == SourceState::Connected && slot.draining.is_none() {
            slot.state = SourceState::Connecting;
            slot.connected_at = None;
        }
    }

    /// Stops every connection, aging and retiring ones included.
    fn stop_all(&mut self, out: &mut Vec<Effect>) {
        for generation in self.retiring.drain(..) {
            out.push(Effect::Stop { generation });
        }
        for i in 0..self.slots.len() {
            self.stop_slot(i, true, out);
        }
    }

    /// Schedules a fresh connection in slot `i` after `delay`.
    fn schedule(&mut self, i: usize, delay: Duration, out: &mut Vec<Effect>) {
        self.stop_slot(i, false, out);
        let slot = &mut self.slots[i];
        slot.phase = Phase::Scheduled;
        out.push(Effect::Schedule {
            slot: i,
            generation: slot.generation,
            after: delay,
        });
    }

    /// Every slot connects afresh now: backoff reset, nothing held.
    fn restart_all(&mut self, out: &mut Vec<Effect>) {
        self.stop_all(out);
        self.held = None;
        self.warning = None;
        for slot in &mut self.slots {
            slot.policy.reset();
            slot.state = SourceState::Connecting;
            slot.detail = None;
            slot.next_retry_at = None;
        }
        for i in 0..self.slots.len() {
            self.schedule(i, Duration::ZERO, out);
        }
        self.show(out);
    }
}

#[cfg(test)]
mod tests;
