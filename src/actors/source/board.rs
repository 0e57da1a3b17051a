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
use super::super::policy::{BackoffConfig, Decision, RestartPolicy, RetryState};
use crate::metrics::ReconnectReason;
use crate::sources::slack::ghost_warning;
use crate::sources::status::{ConnectionCounts, SourceState};

/// A connection's number, unique within one board.
pub type Generation = u64;

/// What the board asks its actor to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// After `after`, and after a free connect permit, report [`Board::start_due`] for this slot
    /// and generation (replacing any start scheduled for the slot before).
    Schedule {
        /// The slot.
        slot: usize,
        /// The generation to start.
        generation: Generation,
        /// How long to wait first.
        after: Duration,
    },
    /// Forget the start scheduled for this slot (its generation is stale now anyway).
    Unschedule {
        /// The slot.
        slot: usize,
    },
    /// Start a connection of `generation` now.
    Start {
        /// The slot.
        slot: usize,
        /// Its generation.
        generation: Generation,
    },
    /// Close this connection gracefully.
    Stop {
        /// The connection.
        generation: Generation,
    },
    /// A ready replacement took over from this connection: let it drain.
    Retire {
        /// The connection.
        generation: Generation,
    },
    /// Give these connections the new spec (expressions only; they keep running).
    Swap {
        /// The connections.
        generations: Vec<Generation>,
    },
    /// The source's status changed: write, log and publish it.
    Show(Shown),
    /// Count a reconnect (the source's `reconnects` counter, except for a routine refresh, and
    /// the reconnect metric by reason).
    Reconnected(ReconnectReason),
    /// Count a terminal failure.
    TerminalFailure,
    /// The peer counts more connections for these credentials than the source holds.
    GhostConnections {
        /// The peer's count.
        reported: u32,
        /// What the status says about it.
        warning: String,
    },
}

/// What the status of a source shows; an [`Effect::Show`] comes only when it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    /// The state.
    pub state: SourceState,
    /// Why (a failure, a pause, partial readiness, a ghost-connection warning).
    pub detail: Option<String>,
    /// Since when the earliest ready connection is ready.
    pub connected_at: Option<DateTime<Utc>>,
    /// When the next attempt is due.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The most consecutive failures of any slot.
    pub consecutive_failures: u32,
}

impl Shown {
    /// A source held in `state` (disabled, paused, failed) with no connection.
    pub fn held(state: SourceState, detail: Option<String>, consecutive_failures: u32) -> Shown {
        Shown {
            state,
            detail,
            connected_at: None,
            next_retry_at: None,
            consecutive_failures,
        }
    }
}

/// Whether a slot's current generation is idle, waiting to start, or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Scheduled,
    Running,
}

/// One connection slot (one for generic sources, `connections` for Slack): losing one never
/// touches the others.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    generation: Generation,
    phase: Phase,
    /// The current connection reported ready (a repeated report changes nothing).
    ready: bool,
    /// The aging connection kept serving until its replacement is ready.
    draining: Option<Generation>,
    policy: RestartPolicy,
    /// `Connecting`, `Connected`, `Backoff` or `Failing`.
    state: SourceState,
    detail: Option<String>,
    connected_at: Option<DateTime<Utc>>,
    next_retry_at: Option<DateTime<Utc>>,
}

impl Slot {
    fn new(backoff: &BackoffConfig) -> Slot {
        Slot {
            generation: 0,
            phase: Phase::Idle,
            ready: false,
            draining: None,
            policy: RestartPolicy::new(backoff.clone()),
            state: SourceState::Connecting,
            detail: None,
            connected_at: None,
            next_retry_at: None,
        }
    }

    fn is_live(&self) -> bool {
        self.phase != Phase::Idle
    }

    fn sockets(&self) -> usize {
        usize::from(self.phase == Phase::Running) + usize::from(self.draining.is_some())
    }
}

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
            if slot.state == SourceState::Connected {
                slot.state = SourceState::Connecting;
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
                if !serving {
                    slot.state = match state {
                        RetryState::Backoff => SourceState::Backoff,
                        RetryState::Failing => SourceState::Failing,
                    };
                    slot.detail = Some(reason.detail().to_owned());
                    slot.connected_at = None;
                    slot.next_retry_at = chrono::Duration::from_std(delay).ok().map(|d| wall + d);
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

    /// Operator `Reconnect`: every slot connects afresh now, backoff reset, nothing held.
    pub fn reconnect(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        out.push(Effect::Reconnected(ReconnectReason::Operator));
        self.restart_all(&mut out);
        out
    }

    /// Operator `Pause`: every connection closes; nothing starts until `resume` or `reconnect`.
    pub fn pause(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        if !self.closed {
            let detail = Some("paused by an operator".to_owned());
            self.hold(SourceState::Paused, detail, &mut out);
        }
        out
    }

    /// Operator `Resume`: a held (paused, failed) or idle source connects afresh; a running one is
    /// left alone.
    pub fn resume(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let idle = self.held.is_some() || !self.slots.iter().any(Slot::is_live);
        if !self.closed && idle {
            self.restart_all(&mut out);
        }
        out
    }

    /// A new spec. `same_connection`: only its expressions changed, so running connections take
    /// it in place; otherwise every slot restarts with the new slot count and backoff.
    pub fn update(
        &mut self,
        connections: usize,
        backoff: BackoffConfig,
        same_connection: bool,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        let running = self.slots.iter().any(Slot::is_live);
        if running && same_connection {
            let generations = self
                .slots
                .iter()
                .flat_map(|slot| {
                    let current = (slot.phase == Phase::Running).then_some(slot.generation);
                    current.into_iter().chain(slot.draining)
                })
                .collect();
            out.push(Effect::Swap { generations });
            return out;
        }
        self.stop_all(&mut out);
        self.slots = (0..connections.max(1))
            .map(|_| Slot::new(&backoff))
            .collect();
        self.backoff = backoff;
        self.restart_all(&mut out);
        out
    }

    /// The source shuts down: every connection stops; nothing happens any more.
    pub fn shutdown(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        self.stop_all(&mut out);
        self.closed = true;
        out
    }

    /// The generation of a ready connection that can write a frame (none while held).
    pub fn writable(&self) -> Option<Generation> {
        if self.held.is_some() || self.closed {
            return None;
        }
        self.slots
            .iter()
            .find(|slot| slot.state == SourceState::Connected && slot.phase == Phase::Running)
            .map(|slot| slot.generation)
    }

    /// The source's status from its slots (the documented function, DESIGN §4.6): a held state
    /// (paused, failed) wins; else `connected` while any slot is ready (the detail says how many
    /// when not all are, else the ghost-connection warning); else the most alarming state of the
    /// slots (`failing` over `backoff` over `connecting`) with that slot's detail and the earliest
    /// retry. `consecutive_failures` is the most of any slot.
    pub fn aggregate(&self) -> Shown {
        let consecutive_failures = self
            .slots
            .iter()
            .map(|slot| slot.policy.consecutive_failures())
            .max()
            .unwrap_or(0);
        if let Some((state, detail)) = &self.held {
            return Shown::held(*state, detail.clone(), consecutive_failures);
        }
        let ready: Vec<&Slot> = self
            .slots
            .iter()
            .filter(|slot| slot.state == SourceState::Connected)
            .collect();
        if !ready.is_empty() {
            let total = self.slots.len();
            let detail = if ready.len() < total {
                Some(format!("{} of {total} connections ready", ready.len()))
            } else {
                self.warning.clone()
            };
            return Shown {
                state: SourceState::Connected,
                detail,
                connected_at: ready.iter().filter_map(|slot| slot.connected_at).min(),
                next_retry_at: None,
                consecutive_failures,
            };
        }
        let rank = |state: SourceState| match state {
            SourceState::Failing => 3,
            SourceState::Backoff => 2,
            _ => 1,
        };
        let worst = self.slots.iter().max_by_key(|slot| rank(slot.state));
        let state = worst.map_or(SourceState::Connecting, |slot| slot.state);
        let retrying = matches!(state, SourceState::Backoff | SourceState::Failing);
        Shown {
            state,
            detail: worst.and_then(|slot| slot.detail.clone()),
            connected_at: None,
            next_retry_at: retrying
                .then(|| self.slots.iter().filter_map(|s| s.next_retry_at).min())
                .flatten(),
            consecutive_failures,
        }
    }

    /// How many connections the source keeps, has ready, and the peer counts.
    pub fn connection_counts(&self) -> ConnectionCounts {
        let ready = self
            .slots
            .iter()
            .filter(|slot| slot.state == SourceState::Connected)
            .count();
        ConnectionCounts {
            configured: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
            ready: u32::try_from(ready).unwrap_or(u32::MAX),
            reported: self.num_connections,
        }
    }

    /// Sockets the source holds right now (aging and retiring ones included).
    pub fn sockets(&self) -> usize {
        self.slots.iter().map(Slot::sockets).sum::<usize>() + self.retiring.len()
    }

    /// Whether `generation` is a connection the board counts as open (running, draining or
    /// retiring).
    pub fn is_open(&self, generation: Generation) -> bool {
        self.retiring.contains(&generation)
            || self.slots.iter().any(|slot| {
                slot.draining == Some(generation)
                    || (slot.phase == Phase::Running && slot.generation == generation)
            })
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
