//! `SourceSupervisor`: the only holder of source actors. It loads every enabled source at start
//! (spreading connects with jitter under a global connect-rate limit), keeps one connection slot
//! per connection a source wants (one for generic sources, `connections` for Slack), starts a
//! fresh `SourceActor` per attempt in a slot, applies the slot's restart policy to each
//! `SourceDown`, persists every change of the source's state and answers the API's commands.
//! Generations make stale reports harmless, and because one actor handles every command in turn,
//! no slot ever has two live attempts (apart from the aging one a make-before-break replacement
//! takes over from).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use uuid::Uuid;

use super::messages::{
    CollectMetrics, DownReason, GetStatus, Pause, Reconnect, Remove, Resume, RetireSource,
    RotateDue, Send, SendError, SendFrame, Shutdown, SourceDown, SourceReady, StopSource, SwapSpec,
    Update,
};
use super::policy::{Decision, RestartPolicy, RetryState};
use super::publisher::Published;
use super::rate_limit::{ConnectRateLimiter, startup_jitter};
use super::runtime::{SourceRuntime, StatusWrite};
use super::source::SourceActor;
use super::spec::SourceSpec;
use super::status::{ConnectionCounts, Count, SourceCounters, SourceState, StatusSnapshot};
use crate::db::status::StateRecord;
use crate::metrics::{ReconnectReason, SourceSample};
use crate::sources::slack::{OpenBudget, ghost_warning};

/// One connection slot of a source: the attempt running in it (or scheduled), the aging attempt
/// it replaces (make-before-break), and its own restart policy. Generic sources have one slot;
/// Slack sources one per configured connection, so losing one never touches the others.
struct Slot {
    generation: u64,
    addr: Option<Addr<SourceActor>>,
    /// The aging attempt kept serving until its replacement is ready, with its generation.
    draining: Option<(Addr<SourceActor>, u64)>,
    pending: Option<SpawnHandle>,
    policy: RestartPolicy,
    /// `Connecting`, `Connected`, `Backoff` or `Failing`.
    state: SourceState,
    detail: Option<String>,
    connected_at: Option<DateTime<Utc>>,
    next_retry_at: Option<DateTime<Utc>>,
}

impl Slot {
    fn new(spec: &SourceSpec) -> Slot {
        Slot {
            generation: 0,
            addr: None,
            draining: None,
            pending: None,
            policy: RestartPolicy::new(spec.backoff()),
            state: SourceState::Connecting,
            detail: None,
            connected_at: None,
            next_retry_at: None,
        }
    }

    fn is_live(&self) -> bool {
        self.addr.is_some() || self.pending.is_some()
    }
}

/// What the status of a source shows; written (and logged) only when it changes.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    state: SourceState,
    detail: Option<String>,
    connected_at: Option<DateTime<Utc>>,
    next_retry_at: Option<DateTime<Utc>>,
    consecutive_failures: u32,
}

/// One supervised source.
struct Child {
    spec: Arc<SourceSpec>,
    slots: Vec<Slot>,
    /// A state of the whole source that overrides its slots: `paused`, `failed` or `disabled`.
    held: Option<(SourceState, Option<String>)>,
    counters: Arc<SourceCounters>,
    counters_written: u64,
    open_budget: Arc<Mutex<OpenBudget>>,
    /// The latest ghost-connection warning (Slack `hello` counted more connections than held).
    warning: Option<String>,
    /// The latest connection count the peer reported (Slack `hello`).
    num_connections: Option<u32>,
    shown: Option<Shown>,
    /// Connections a ready replacement took over from, still draining (until the peer closes
    /// them, when the peer asked for the refresh), with their generations.
    retiring: Vec<(Addr<SourceActor>, u64)>,
}

impl Child {
    /// The source's state from its slots: connected while any connection is ready, otherwise the
    /// most alarming state of its slots.
    fn aggregate(&self) -> Shown {
        let consecutive_failures = self
            .slots
            .iter()
            .map(|slot| slot.policy.consecutive_failures())
            .max()
            .unwrap_or(0);
        if let Some((state, detail)) = &self.held {
            return Shown {
                state: *state,
                detail: detail.clone(),
                connected_at: None,
                next_retry_at: None,
                consecutive_failures,
            };
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
        Shown {
            state,
            detail: worst.and_then(|slot| slot.detail.clone()),
            connected_at: None,
            next_retry_at: matches!(state, SourceState::Backoff | SourceState::Failing)
                .then(|| {
                    self.slots
                        .iter()
                        .filter_map(|slot| slot.next_retry_at)
                        .min()
                })
                .flatten(),
            consecutive_failures,
        }
    }

    /// The slot running (or scheduled as) `generation`.
    fn slot_of(&self, generation: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|slot| slot.generation == generation)
    }

    /// Sockets this source holds right now (aging and retiring ones included).
    fn sockets(&self) -> usize {
        let slots: usize = self
            .slots
            .iter()
            .map(|slot| usize::from(slot.addr.is_some()) + usize::from(slot.draining.is_some()))
            .sum();
        slots + self.retiring.len()
    }
}

/// The supervisor (one per process).
pub struct SourceSupervisor {
    rt: Arc<SourceRuntime>,
    initial: Vec<(Arc<SourceSpec>, serde_json::Value)>,
    children: HashMap<Uuid, Child>,
    generations: u64,
    limiter: ConnectRateLimiter,
    rng: StdRng,
}

impl SourceSupervisor {
    /// A supervisor that will start `initial` sources (with their persisted counters).
    pub fn new(
        rt: Arc<SourceRuntime>,
        initial: Vec<(Arc<SourceSpec>, serde_json::Value)>,
        connects_per_second: f64,
    ) -> Self {
        SourceSupervisor {
            rt,
            initial,
            children: HashMap::new(),
            generations: 0,
            limiter: ConnectRateLimiter::new(connects_per_second, 10),
            rng: StdRng::from_os_rng(),
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    /// Writes (and logs) the source's status when it changed.
    fn show(&mut self, id: Uuid) {
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        let shown = child.aggregate();
        if child.shown.as_ref() == Some(&shown) {
            return;
        }
        tracing::info!(source_id = %id, state = shown.state.as_str(), detail = shown.detail.as_deref().unwrap_or(""), "source state");
        let record = StateRecord {
            state: shown.state.as_str().to_owned(),
            detail: shown.detail.clone(),
            connected_at: shown.connected_at,
            next_retry_at: shown.next_retry_at,
            consecutive_failures: i32::try_from(shown.consecutive_failures).unwrap_or(i32::MAX),
        };
        child.shown = Some(shown);
        self.rt.status.write(StatusWrite::State(id, record));
        if self.rt.publisher.has_subscribers() {
            let snapshot = Self::snapshot(child);
            let message = Published::source_status(child.spec.org_id, &child.spec.slug, &snapshot);
            self.rt.publisher.publish(message);
        }
    }

    /// Holds the whole source in `state` (paused, failed, disabled): every slot stops.
    fn hold(
        &mut self,
        id: Uuid,
        state: SourceState,
        detail: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        self.stop_all(id, ctx);
        if let Some(child) = self.children.get_mut(&id) {
            child.held = Some((state, detail));
        }
        self.show(id);
    }

    /// Stops the attempt of slot `i` and cancels a scheduled one; later reports of it are stale.
    /// The aging attempt it replaces keeps serving unless `drain_too`.
    fn stop_slot(&mut self, id: Uuid, i: usize, drain_too: bool, ctx: &mut Context<Self>) {
        let generation = self.next_generation();
        let Some(slot) = self
            .children
            .get_mut(&id)
            .and_then(|child| child.slots.get_mut(i))
        else {
            return;
        };
        slot.generation = generation;
        if let Some(handle) = slot.pending.take() {
            ctx.cancel_future(handle);
        }
        if let Some(addr) = slot.addr.take() {
            addr.do_send(StopSource);
        }
        if drain_too && let Some((addr, _)) = slot.draining.take() {
            addr.do_send(StopSource);
        }
        if slot.state == SourceState::Connected {
            slot.state = SourceState::Connecting;
            slot.connected_at = None;
        }
    }

    /// Stops every attempt of the source, aging and retiring ones included.
    fn stop_all(&mut self, id: Uuid, ctx: &mut Context<Self>) {
        if let Some(child) = self.children.get_mut(&id) {
            for (addr, _) in child.retiring.drain(..) {
                addr.do_send(StopSource);
            }
        }
        let slots = self.children.get(&id).map_or(0, |child| child.slots.len());
        for i in 0..slots {
            self.stop_slot(id, i, true, ctx);
        }
    }

    /// Connects every slot afresh now: backoff reset, nothing held.
    fn restart_all(&mut self, id: Uuid, ctx: &mut Context<Self>) {
        self.stop_all(id, ctx);
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        child.held = None;
        child.warning = None;
        for slot in &mut child.slots {
            slot.policy.reset();
            slot.state = SourceState::Connecting;
            slot.detail = None;
            slot.next_retry_at = None;
        }
        for i in 0..child.slots.len() {
            self.schedule_slot(id, i, Duration::ZERO, ctx);
        }
        self.show(id);
    }

    /// Schedules a fresh attempt in slot `i` after `delay` (and after a free connect slot).
    fn schedule_slot(&mut self, id: Uuid, i: usize, delay: Duration, ctx: &mut Context<Self>) {
        self.stop_slot(id, i, false, ctx);
        let Some(slot) = self
            .children
            .get_mut(&id)
            .and_then(|child| child.slots.get_mut(i))
        else {
            return;
        };
        let generation = slot.generation;
        slot.pending = Some(ctx.run_later(delay, move |act, ctx| {
            act.start_slot(id, i, generation, false, ctx)
        }));
    }

    /// Starts the attempt of `generation` in slot `i` unless it was superseded. Without a
    /// `reserved` connect slot it first books one, waiting for it when the global connect rate is
    /// exhausted (the booked slot is then used as is, never booked again).
    fn start_slot(
        &mut self,
        id: Uuid,
        i: usize,
        generation: u64,
        reserved: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(slot) = self.children.get(&id).and_then(|child| child.slots.get(i)) else {
            return;
        };
        if slot.generation != generation || slot.addr.is_some() {
            return;
        }
        if !reserved {
            let wait = self.limiter.reserve(Instant::now());
            if !wait.is_zero() {
                if let Some(slot) = self
                    .children
                    .get_mut(&id)
                    .and_then(|child| child.slots.get_mut(i))
                {
                    slot.pending = Some(ctx.run_later(wait, move |act, ctx| {
                        act.start_slot(id, i, generation, true, ctx)
                    }));
                }
                return;
            }
        }
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        let shared = (child.counters.clone(), child.open_budget.clone());
        let spec = child.spec.clone();
        let Some(slot) = child.slots.get_mut(i) else {
            return;
        };
        slot.pending = None;
        let actor = SourceActor::new(
            spec,
            generation,
            self.rt.clone(),
            shared,
            ctx.address().recipient(),
            ctx.address().recipient(),
            ctx.address().recipient(),
        );
        slot.addr = Some(actor.start());
        if slot.draining.is_none() && slot.state == SourceState::Connected {
            slot.state = SourceState::Connecting;
        }
        self.show(id);
    }

    fn add_child(
        &mut self,
        spec: Arc<SourceSpec>,
        counters: Arc<SourceCounters>,
        delay: Duration,
        ctx: &mut Context<Self>,
    ) {
        let id = spec.id;
        let enabled = spec.enabled;
        let child = Child {
            slots: (0..spec.connections()).map(|_| Slot::new(&spec)).collect(),
            spec,
            held: None,
            counters_written: counters.version(),
            counters,
            open_budget: Arc::new(Mutex::new(OpenBudget::new(self.rt.slack_open_interval, 2))),
            warning: None,
            num_connections: None,
            shown: None,
            retiring: Vec::new(),
        };
        let slots = child.slots.len();
        self.children.insert(id, child);
        if enabled {
            for i in 0..slots {
                self.schedule_slot(id, i, delay, ctx);
            }
            self.show(id);
        } else {
            self.hold(id, SourceState::Disabled, None, ctx);
        }
    }

    fn flush_counters(&mut self) {
        for (id, child) in &mut self.children {
            let version = child.counters.version();
            if version != child.counters_written {
                child.counters_written = version;
                self.rt.status.write(StatusWrite::Counters(
                    *id,
                    child.counters.to_json(),
                    child.counters.last_event_at(),
                ));
            }
        }
    }

    fn snapshot(child: &Child) -> StatusSnapshot {
        let shown = child.aggregate();
        StatusSnapshot {
            source_id: child.spec.id,
            state: shown.state,
            detail: shown.detail,
            connected_at: shown.connected_at,
            last_event_at: child.counters.last_event_at(),
            next_retry_at: shown.next_retry_at,
            consecutive_failures: shown.consecutive_failures,
            counters: child.counters.to_json(),
            connections: Some(ConnectionCounts {
                configured: u32::try_from(child.slots.len()).unwrap_or(u32::MAX),
                ready: u32::try_from(
                    child
                        .slots
                        .iter()
                        .filter(|slot| slot.state == SourceState::Connected)
                        .count(),
                )
                .unwrap_or(u32::MAX),
                reported: child.num_connections,
            }),
        }
    }
}

impl Actor for SourceSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let initial = std::mem::take(&mut self.initial);
        let spread = Duration::from_millis((initial.len() as u64 * 5).min(10_000));
        for (spec, stored_counters) in initial {
            let counters = Arc::new(SourceCounters::default());
            counters.restore(&stored_counters);
            let delay = startup_jitter(spread, &mut self.rng);
            self.add_child(spec, counters, delay, ctx);
        }
        ctx.run_interval(Duration::from_secs(1), |act, _| act.flush_counters());
    }
}

impl Handler<Update> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Update, ctx: &mut Context<Self>) {
        let spec = msg.spec;
        let id = spec.id;
        let Some(child) = self.children.get_mut(&id) else {
            self.add_child(
                spec,
                Arc::new(SourceCounters::default()),
                Duration::ZERO,
                ctx,
            );
            return;
        };
        if spec.revision < child.spec.revision {
            return;
        }
        let running = child.slots.iter().any(Slot::is_live);
        let hot_swap =
            running && spec.enabled && child.spec.enabled && child.spec.same_connection(&spec);
        if hot_swap {
            child.spec = spec.clone();
            for slot in &child.slots {
                let aging = slot.draining.as_ref().map(|(addr, _)| addr);
                for addr in slot.addr.iter().chain(aging) {
                    addr.do_send(SwapSpec { spec: spec.clone() });
                }
            }
            return;
        }
        self.stop_all(id, ctx);
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        child.slots = (0..spec.connections()).map(|_| Slot::new(&spec)).collect();
        child.spec = spec.clone();
        if spec.enabled {
            self.restart_all(id, ctx);
        } else {
            self.hold(id, SourceState::Disabled, None, ctx);
        }
    }
}

impl Handler<Remove> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Remove, ctx: &mut Context<Self>) {
        self.stop_all(msg.source_id, ctx);
        self.children.remove(&msg.source_id);
    }
}

impl Handler<Reconnect> for SourceSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: Reconnect, ctx: &mut Context<Self>) -> bool {
        let Some(child) = self.children.get_mut(&msg.source_id) else {
            return false;
        };
        child.counters.add(Count::Reconnects, 1);
        self.rt.metrics.reconnected(ReconnectReason::Operator);
        if child.spec.enabled {
            self.restart_all(msg.source_id, ctx);
        }
        true
    }
}

impl Handler<Pause> for SourceSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: Pause, ctx: &mut Context<Self>) -> bool {
        if !self.children.contains_key(&msg.source_id) {
            return false;
        }
        self.hold(
            msg.source_id,
            SourceState::Paused,
            Some("paused by an operator".to_owned()),
            ctx,
        );
        true
    }
}

impl Handler<Resume> for SourceSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> bool {
        let Some(child) = self.children.get(&msg.source_id) else {
            return false;
        };
        let idle = child.held.is_some() || !child.slots.iter().any(Slot::is_live);
        if child.spec.enabled && idle {
            self.restart_all(msg.source_id, ctx);
        }
        true
    }
}

impl Handler<Send> for SourceSupervisor {
    type Result = ResponseFuture<Result<(), SendError>>;

    fn handle(&mut self, msg: Send, _: &mut Context<Self>) -> Self::Result {
        let target = match self.children.get(&msg.source_id) {
            None => Err(SendError::Unknown),
            Some(child) => child
                .slots
                .iter()
                .filter(|slot| slot.state == SourceState::Connected)
                .find_map(|slot| slot.addr.clone())
                .filter(|_| child.held.is_none())
                .ok_or(SendError::NotConnected),
        };
        Box::pin(async move {
            let addr = target?;
            addr.send(SendFrame { text: msg.text })
                .await
                .unwrap_or(Err(SendError::NotConnected))
        })
    }
}

impl Handler<GetStatus> for SourceSupervisor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, msg: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.source_ids
                .iter()
                .filter_map(|id| self.children.get(id))
                .map(Self::snapshot)
                .collect(),
        )
    }
}

impl Handler<CollectMetrics> for SourceSupervisor {
    type Result = MessageResult<CollectMetrics>;

    fn handle(&mut self, _: CollectMetrics, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.children
                .values()
                .map(|child| SourceSample {
                    slug: child.spec.slug.clone(),
                    state: child.aggregate().state,
                    connections: child.sockets() as u64,
                    counters: child.counters.to_json(),
                })
                .collect(),
        )
    }
}

impl Handler<SourceReady> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: SourceReady, _: &mut Context<Self>) {
        let Some(child) = self.children.get_mut(&msg.source_id) else {
            return;
        };
        let Some(i) = child.slot_of(msg.generation) else {
            return;
        };
        let sockets = child.sockets();
        let configured = child.slots.len();
        let slot = &mut child.slots[i];
        slot.policy.on_ready(Instant::now());
        slot.state = SourceState::Connected;
        slot.detail = None;
        slot.next_retry_at = None;
        slot.connected_at = Some(crate::db::now());
        if let Some((old, generation)) = slot.draining.take() {
            // Make-before-break: the replacement is ready, so the old connection may go (once
            // the peer closed it, when the peer asked for the refresh).
            old.do_send(RetireSource);
            child.retiring.push((old, generation));
        }
        if let Some(count) = msg.num_connections {
            child.num_connections = Some(count);
            // Slack counts the socket being replaced until it is closed, so compare with what
            // this source held when the hello came (never less than it is configured for).
            let held = u8::try_from(sockets.max(configured)).unwrap_or(u8::MAX);
            child.warning = ghost_warning(held, count);
            if let Some(warning) = &child.warning {
                tracing::warn!(source_id = %msg.source_id, num_connections = count, "{warning}");
            }
        }
        self.show(msg.source_id);
    }
}

impl Handler<SourceDown> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: SourceDown, ctx: &mut Context<Self>) {
        let id = msg.source_id;
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        if let Some(i) = child
            .retiring
            .iter()
            .position(|(_, g)| *g == msg.generation)
        {
            // A retired connection ended (the peer closed it, or its grace ran out): routine.
            child.retiring.swap_remove(i);
            return;
        }
        if let Some(slot) = child.slots.iter_mut().find(|slot| {
            slot.draining
                .as_ref()
                .is_some_and(|(_, g)| *g == msg.generation)
        }) {
            // The aging connection ended before its replacement was ready (a ready replacement
            // takes `draining`): routine, not a failure, but nothing is ready in this slot now.
            slot.draining = None;
            if slot.state == SourceState::Connected {
                slot.state = SourceState::Connecting;
                slot.connected_at = None;
            }
            self.show(id);
            return;
        }
        let Some(i) = child.slot_of(msg.generation) else {
            return;
        };
        let slot = &mut child.slots[i];
        slot.addr = None;
        let decision = slot
            .policy
            .on_down(Instant::now(), msg.reason.class(), &mut self.rng);
        match decision {
            Decision::Retry { delay, state } => {
                child.counters.add(Count::Reconnects, 1);
                self.rt.metrics.reconnected(match &msg.reason {
                    DownReason::RateLimited { .. } => ReconnectReason::RateLimited,
                    DownReason::Throttled { .. } => ReconnectReason::Throttled,
                    _ => ReconnectReason::Transient,
                });
                slot.state = match state {
                    RetryState::Backoff => SourceState::Backoff,
                    RetryState::Failing => SourceState::Failing,
                };
                slot.detail = Some(msg.reason.detail().to_owned());
                slot.connected_at = None;
                slot.next_retry_at = chrono::Duration::from_std(delay)
                    .ok()
                    .map(|d| crate::db::now() + d);
                self.schedule_slot(id, i, delay, ctx);
                self.show(id);
            }
            Decision::Fail { reason } => {
                self.rt.metrics.terminal_failures.inc();
                self.hold(id, SourceState::Failed, Some(reason), ctx);
            }
            Decision::Pause { reason } => self.hold(id, SourceState::Paused, Some(reason), ctx),
        }
    }
}

impl Handler<RotateDue> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: RotateDue, ctx: &mut Context<Self>) {
        let generation = self.next_generation();
        let Some(child) = self.children.get_mut(&msg.source_id) else {
            return;
        };
        let Some(i) = child.slot_of(msg.generation) else {
            return;
        };
        let slot = &mut child.slots[i];
        if slot.draining.is_some() {
            return;
        }
        let Some(old) = slot.addr.take() else { return };
        tracing::info!(source_id = %msg.source_id, "replacing a connection (make-before-break)");
        self.rt.metrics.reconnected(ReconnectReason::Refresh);
        slot.draining = Some((old, msg.generation));
        slot.generation = generation;
        self.start_slot(msg.source_id, i, generation, false, ctx);
    }
}

impl Handler<Shutdown> for SourceSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<Addr<SourceActor>> = self
            .children
            .values()
            .flat_map(|c| {
                let retiring = c.retiring.iter().map(|(a, _)| a.clone());
                c.slots
                    .iter()
                    .flat_map(|slot| {
                        slot.addr
                            .iter()
                            .cloned()
                            .chain(slot.draining.iter().map(|(a, _)| a.clone()))
                    })
                    .chain(retiring)
                    .collect::<Vec<_>>()
            })
            .collect();
        let ids: Vec<Uuid> = self.children.keys().copied().collect();
        for id in ids {
            self.stop_all(id, ctx);
        }
        self.flush_counters();
        let deadline = tokio::time::Instant::now() + msg.timeout;
        Box::pin(
            async move {
                while addrs.iter().any(Addr::connected) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            .into_actor(self),
        )
    }
}
