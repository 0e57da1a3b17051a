//! `SourceSupervisor`: the only holder of source actors. It loads every enabled source at start
//! (spreading connects with jitter under a global connect-rate limit), starts a fresh
//! `SourceActor` per attempt, applies the restart policy to each `SourceDown`, persists every state
//! transition and answers the API's commands. Generations make stale reports harmless, and because
//! one actor handles every command in turn, no source ever has two live attempts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use uuid::Uuid;

use super::messages::{
    DownReason, GetStatus, Pause, Reconnect, Remove, Resume, RotateDue, Send, SendError, SendFrame,
    Shutdown, SourceDown, SourceReady, StopSource, SwapSpec, Update,
};
use super::policy::{Decision, FailureClass, RestartPolicy, RetryState};
use super::rate_limit::{ConnectRateLimiter, startup_jitter};
use super::runtime::{SourceRuntime, StatusWrite};
use super::source::SourceActor;
use super::spec::SourceSpec;
use super::status::{Count, SourceCounters, SourceState, StatusSnapshot};
use crate::db::status::StateRecord;

/// One supervised source.
struct Child {
    spec: Arc<SourceSpec>,
    generation: u64,
    addr: Option<Addr<SourceActor>>,
    /// The aging attempt kept serving until its replacement is ready, with its generation.
    draining: Option<(Addr<SourceActor>, u64)>,
    pending: Option<SpawnHandle>,
    policy: RestartPolicy,
    counters: Arc<SourceCounters>,
    counters_written: u64,
    state: SourceState,
    detail: Option<String>,
    connected_at: Option<DateTime<Utc>>,
    next_retry_at: Option<DateTime<Utc>>,
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

    fn set_state(&mut self, id: Uuid, state: SourceState, detail: Option<String>) {
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        child.state = state;
        child.detail = detail.clone();
        if state != SourceState::Connected {
            child.connected_at = None;
        }
        if !matches!(state, SourceState::Backoff | SourceState::Failing) {
            child.next_retry_at = None;
        }
        tracing::info!(source_id = %id, state = state.as_str(), detail = detail.as_deref().unwrap_or(""), "source state");
        let record = StateRecord {
            state: state.as_str().to_owned(),
            detail,
            connected_at: child.connected_at,
            next_retry_at: child.next_retry_at,
            consecutive_failures: i32::try_from(child.policy.consecutive_failures())
                .unwrap_or(i32::MAX),
        };
        self.rt.status.write(StatusWrite::State(id, record));
    }

    /// Stops the running attempt and cancels a scheduled one; later reports of it are stale.
    fn stop_child(&mut self, id: Uuid, ctx: &mut Context<Self>) {
        let generation = self.next_generation();
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        child.generation = generation;
        if let Some(handle) = child.pending.take() {
            ctx.cancel_future(handle);
        }
        if let Some(addr) = child.addr.take() {
            addr.do_send(StopSource);
        }
        if let Some((addr, _)) = child.draining.take() {
            addr.do_send(StopSource);
        }
    }

    /// Schedules a fresh attempt after `delay` (and after a free connect slot).
    fn schedule_start(&mut self, id: Uuid, delay: Duration, ctx: &mut Context<Self>) {
        self.stop_child(id, ctx);
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        let generation = child.generation;
        child.pending = Some(ctx.run_later(delay, move |act, ctx| {
            act.start_child(id, generation, false, ctx)
        }));
    }

    /// Starts the attempt of `generation` unless it was superseded. Without a `reserved` connect
    /// slot it first books one, waiting for it when the global connect rate is exhausted (the
    /// booked slot is then used as is, never booked again).
    fn start_child(&mut self, id: Uuid, generation: u64, reserved: bool, ctx: &mut Context<Self>) {
        let Some(child) = self.children.get(&id) else {
            return;
        };
        if child.generation != generation || child.addr.is_some() {
            return;
        }
        if !reserved {
            let wait = self.limiter.reserve(Instant::now());
            if !wait.is_zero() {
                if let Some(child) = self.children.get_mut(&id) {
                    child.pending = Some(ctx.run_later(wait, move |act, ctx| {
                        act.start_child(id, generation, true, ctx)
                    }));
                }
                return;
            }
        }
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        child.pending = None;
        let actor = SourceActor::new(
            child.spec.clone(),
            generation,
            self.rt.clone(),
            child.counters.clone(),
            ctx.address().recipient(),
            ctx.address().recipient(),
            ctx.address().recipient(),
        );
        child.addr = Some(actor.start());
        self.set_state(id, SourceState::Connecting, None);
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
            policy: RestartPolicy::new(spec.backoff()),
            spec,
            generation: 0,
            addr: None,
            draining: None,
            pending: None,
            counters_written: counters.version(),
            counters,
            state: SourceState::Connecting,
            detail: None,
            connected_at: None,
            next_retry_at: None,
        };
        self.children.insert(id, child);
        if enabled {
            self.schedule_start(id, delay, ctx);
        } else {
            self.set_state(id, SourceState::Disabled, None);
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
        StatusSnapshot {
            source_id: child.spec.id,
            state: child.state,
            detail: child.detail.clone(),
            connected_at: child.connected_at,
            last_event_at: child.counters.last_event_at(),
            next_retry_at: child.next_retry_at,
            consecutive_failures: child.policy.consecutive_failures(),
            counters: child.counters.to_json(),
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
        let running = child.addr.is_some() || child.pending.is_some();
        let hot_swap =
            running && spec.enabled && child.spec.enabled && child.spec.same_connection(&spec);
        child.spec = spec.clone();
        if hot_swap {
            if let Some(addr) = &child.addr {
                addr.do_send(SwapSpec { spec });
            }
            return;
        }
        child.policy = RestartPolicy::new(spec.backoff());
        if spec.enabled {
            self.schedule_start(id, Duration::ZERO, ctx);
        } else {
            self.stop_child(id, ctx);
            self.set_state(id, SourceState::Disabled, None);
        }
    }
}

impl Handler<Remove> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Remove, ctx: &mut Context<Self>) {
        self.stop_child(msg.source_id, ctx);
        self.children.remove(&msg.source_id);
    }
}

impl Handler<Reconnect> for SourceSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: Reconnect, ctx: &mut Context<Self>) -> bool {
        let Some(child) = self.children.get_mut(&msg.source_id) else {
            return false;
        };
        child.policy.reset();
        child.counters.add(Count::Reconnects, 1);
        if child.spec.enabled {
            self.schedule_start(msg.source_id, Duration::ZERO, ctx);
            self.set_state(msg.source_id, SourceState::Connecting, None);
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
        self.stop_child(msg.source_id, ctx);
        self.set_state(
            msg.source_id,
            SourceState::Paused,
            Some("paused by an operator".to_owned()),
        );
        true
    }
}

impl Handler<Resume> for SourceSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> bool {
        let Some(child) = self.children.get_mut(&msg.source_id) else {
            return false;
        };
        child.policy.reset();
        if child.spec.enabled && child.addr.is_none() {
            self.schedule_start(msg.source_id, Duration::ZERO, ctx);
            self.set_state(msg.source_id, SourceState::Connecting, None);
        }
        true
    }
}

impl Handler<Send> for SourceSupervisor {
    type Result = ResponseFuture<Result<(), SendError>>;

    fn handle(&mut self, msg: Send, _: &mut Context<Self>) -> Self::Result {
        let target = match self.children.get(&msg.source_id) {
            None => Err(SendError::Unknown),
            Some(child) if child.state != SourceState::Connected => Err(SendError::NotConnected),
            Some(child) => child.addr.clone().ok_or(SendError::NotConnected),
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

impl Handler<SourceReady> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: SourceReady, _: &mut Context<Self>) {
        let Some(child) = self.children.get_mut(&msg.source_id) else {
            return;
        };
        if child.generation != msg.generation {
            return;
        }
        child.policy.on_ready(Instant::now());
        child.connected_at = Some(crate::db::now());
        if let Some((old, _)) = child.draining.take() {
            // Make-before-break: the replacement is ready, so the old connection may go.
            old.do_send(StopSource);
        }
        self.set_state(msg.source_id, SourceState::Connected, None);
    }
}

impl Handler<SourceDown> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: SourceDown, ctx: &mut Context<Self>) {
        let id = msg.source_id;
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        if child
            .draining
            .as_ref()
            .is_some_and(|(_, g)| *g == msg.generation)
        {
            child.draining = None;
            return;
        }
        if child.generation != msg.generation {
            return;
        }
        child.addr = None;
        let class = match &msg.reason {
            DownReason::Terminal(reason) => FailureClass::Terminal {
                reason: reason.clone(),
            },
            DownReason::RateLimited { retry_after, .. } => FailureClass::RateLimited {
                retry_after: *retry_after,
            },
            DownReason::Stopped | DownReason::Transient(_) => FailureClass::Transient,
        };
        let decision = child.policy.on_down(Instant::now(), class, &mut self.rng);
        let detail = Some(msg.reason.detail().to_owned());
        match decision {
            Decision::Retry { delay, state } => {
                child.counters.add(Count::Reconnects, 1);
                child.next_retry_at = chrono::Duration::from_std(delay)
                    .ok()
                    .map(|d| crate::db::now() + d);
                let state = match state {
                    RetryState::Backoff => SourceState::Backoff,
                    RetryState::Failing => SourceState::Failing,
                };
                self.schedule_start(id, delay, ctx);
                self.set_state(id, state, detail);
            }
            Decision::Fail { reason } => self.set_state(id, SourceState::Failed, Some(reason)),
            Decision::Pause { reason } => self.set_state(id, SourceState::Paused, Some(reason)),
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
        if child.generation != msg.generation || child.draining.is_some() {
            return;
        }
        let Some(old) = child.addr.take() else { return };
        tracing::info!(source_id = %msg.source_id, "rotating an aged connection (make-before-break)");
        child.draining = Some((old, msg.generation));
        child.generation = generation;
        self.start_child(msg.source_id, generation, false, ctx);
    }
}

impl Handler<Shutdown> for SourceSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<Addr<SourceActor>> = self
            .children
            .values()
            .flat_map(|c| {
                c.addr
                    .iter()
                    .cloned()
                    .chain(c.draining.iter().map(|(a, _)| a.clone()))
            })
            .collect();
        let ids: Vec<Uuid> = self.children.keys().copied().collect();
        for id in ids {
            self.stop_child(id, ctx);
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
