//! `SourceActor`: one per enabled source, started (and restarted) by the supervisor. It owns the
//! source's connections — each a [`ConnectionActor`] child it starts and stops, whose reports come
//! back to it — and carries out what its pure [`Board`] decides: when each slot connects, which
//! connection a replacement takes over from, the backoff timers, and the status writes. Its mailbox
//! takes the API's commands ([`commands`](super::commands)) and its connections' reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::sync::oneshot;

use self::board::{Board, Effect, Generation};
use self::exit::ExitNotice;
use super::connection::{
    ConnectionActor, ReportTo, RetireConnection, SourceShared, StopConnection, SwapSpec,
};
use super::runtime::SourceRuntime;
use super::spec::SourceSpec;
use crate::sources::status::{Count, SourceState};

pub mod board;
pub mod exit;
mod handlers;
pub mod show;

/// What a source holds (an operator's pause, a terminal failure), kept by the supervisor across
/// restarts of its actor so that a restarted actor does not connect a source that should not.
#[derive(Clone, Default)]
pub struct KeptHold(Arc<Mutex<Option<Held>>>);

/// A held state and its detail.
type Held = (SourceState, Option<String>);

impl KeptHold {
    fn get(&self) -> Option<Held> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Remembers what a shown status holds (nothing unless paused or failed).
    fn remember(&self, shown: &board::Shown) {
        let held = matches!(shown.state, SourceState::Paused | SourceState::Failed)
            .then(|| (shown.state, shown.detail.clone()));
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = held;
    }

    /// Holds `state` (paused or failed) with its detail: a source taken over from another replica
    /// starts as its previous holder left it.
    pub fn hold(&self, state: SourceState, detail: Option<String>) {
        if matches!(state, SourceState::Paused | SourceState::Failed) {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((state, detail));
        }
    }

    /// Forgets the hold (a new spec starts the source afresh).
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The actor of one source.
pub struct SourceActor {
    spec: Arc<SourceSpec>,
    rt: Arc<SourceRuntime>,
    shared: SourceShared,
    kept: KeptHold,
    board: Board,
    /// Open connections by generation (until they report their end).
    connections: HashMap<Generation, Addr<ConnectionActor>>,
    /// The scheduled start of each slot.
    timers: HashMap<usize, SpawnHandle>,
    rng: StdRng,
    initial_delay: Duration,
    /// The destination host its connects are paced by (from the spec).
    pacing_host: String,
    exit: ExitNotice,
    /// Shutdowns waiting for the last connection to end.
    drained: Vec<oneshot::Sender<()>>,
}

impl SourceActor {
    /// The actor of `spec`'s source (an enabled one), connecting after `initial_delay` (started by
    /// the supervisor only). `shared` (counters, the Slack open budget) outlives the actor, so a
    /// restarted actor goes on counting and pacing where its predecessor stopped.
    pub fn new(
        spec: Arc<SourceSpec>,
        rt: Arc<SourceRuntime>,
        (shared, kept): (SourceShared, KeptHold),
        initial_delay: Duration,
        exit: ExitNotice,
    ) -> SourceActor {
        SourceActor {
            pacing_host: spec.pacing_host(),
            kept,
            board: Board::new(spec.connections(), spec.backoff()),
            shared,
            spec,
            rt,
            connections: HashMap::new(),
            timers: HashMap::new(),
            rng: StdRng::from_os_rng(),
            initial_delay,
            exit,
            drained: Vec::new(),
        }
    }

    /// Carries out what the board decided, in order.
    fn apply(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for effect in effects {
            match effect {
                Effect::Schedule {
                    slot,
                    generation,
                    after,
                } => self.schedule(slot, generation, after, ctx),
                Effect::Unschedule { slot } => {
                    if let Some(handle) = self.timers.remove(&slot) {
                        ctx.cancel_future(handle);
                    }
                }
                Effect::Start { slot, generation } => {
                    self.timers.remove(&slot);
                    self.start_connection(generation, ctx);
                }
                Effect::Stop { generation } => {
                    if let Some(addr) = self.connections.get(&generation) {
                        addr.do_send(StopConnection);
                    }
                }
                Effect::Retire { generation } => {
                    if let Some(addr) = self.connections.get(&generation) {
                        addr.do_send(RetireConnection);
                    }
                }
                Effect::Swap { generations } => {
                    for addr in generations.iter().filter_map(|g| self.connections.get(g)) {
                        addr.do_send(SwapSpec {
                            spec: self.spec.clone(),
                        });
                    }
                }
                Effect::Show(shown) => {
                    self.kept.remember(&shown);
                    show::show(
                        &self.rt,
                        &self.spec,
                        &shown,
                        &self.shared.counters,
                        self.board.connection_counts(),
                    );
                }
                Effect::Reconnected(reason) => {
                    if reason != crate::metrics::ReconnectReason::Refresh {
                        self.shared.counters.add(Count::Reconnects, 1);
                    }
                    self.rt.metrics.reconnected(reason);
                }
                Effect::TerminalFailure => {
                    self.rt.metrics.terminal_failures.inc();
                }
                Effect::GhostConnections { reported, warning } => {
                    tracing::warn!(source_id = %self.spec.id, num_connections = reported, "{warning}");
                }
            }
        }
    }

    /// Waits `after`, then for a connect permit of its host's rate and the global cap, then tells
    /// the board the start is due (unless it was superseded meanwhile).
    fn schedule(
        &mut self,
        slot: usize,
        generation: Generation,
        after: Duration,
        ctx: &mut Context<Self>,
    ) {
        let handle = ctx.run_later(after, move |act, ctx| {
            if !act.board.is_due(slot, generation) {
                return;
            }
            let wait = act.rt.reserve_connect(&act.pacing_host, Instant::now());
            act.start_when_admitted(slot, generation, wait, ctx);
        });
        if let Some(old) = self.timers.insert(slot, handle) {
            ctx.cancel_future(old);
        }
    }

    /// After `wait` (the booked slot), starts the connection once the pacer admits it at the
    /// time it actually starts (a late timer waits its turn again).
    fn start_when_admitted(
        &mut self,
        slot: usize,
        generation: Generation,
        wait: Duration,
        ctx: &mut Context<Self>,
    ) {
        let admit = move |act: &mut Self, ctx: &mut Context<Self>| {
            if !act.board.is_due(slot, generation) {
                return;
            }
            let again = act.rt.admit_connect(&act.pacing_host, Instant::now());
            if again.is_zero() {
                let effects = act.board.start_due(slot, generation);
                act.apply(effects, ctx);
            } else {
                act.start_when_admitted(slot, generation, again, ctx);
            }
        };
        if wait.is_zero() {
            admit(self, ctx);
        } else {
            let handle = ctx.run_later(wait, admit);
            self.timers.insert(slot, handle);
        }
    }

    fn start_connection(&mut self, generation: Generation, ctx: &mut Context<Self>) {
        let report = ReportTo {
            ready: ctx.address().recipient(),
            replacement: ctx.address().recipient(),
            ended: ctx.address().recipient(),
        };
        let actor = ConnectionActor::new(
            self.spec.clone(),
            generation,
            self.rt.clone(),
            self.shared.clone(),
            report,
        );
        self.connections.insert(generation, actor.start());
    }

    fn flush_counters(&mut self) {
        show::flush_counters(&self.rt, &self.spec, &self.shared.counters);
    }

    /// Wakes the shutdowns waiting for the last connection to end, once none is left.
    fn wake_drained(&mut self) {
        if self.connections.is_empty() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Actor for SourceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Counters are written every second by the supervisor (one timer for every source), and
        // by this actor when it stops.
        let effects = match self.kept.get() {
            Some((state, detail)) => self.board.start_held(state, detail),
            None => self.board.start(self.initial_delay),
        };
        self.apply(effects, ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.flush_counters();
    }
}
