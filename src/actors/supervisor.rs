//! `SourceSupervisor`: starts one [`SourceActor`] per enabled source (spreading the start-up
//! connects with jitter), restarts one that stops unexpectedly (a panic or an error exit) within
//! its restart intensity, routes the API's commands to it, shuts it down when its source is
//! disabled or deleted, and answers listing questions. It knows nothing about connections: those
//! belong to the source actors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use uuid::Uuid;

use super::commands::{Pause, Reconnect, Remove, Resume, SendError, SendFrame, Shutdown, Update};
use super::connection::SourceShared;
use super::rate_limit::{startup_jitter, startup_spread};
use super::restart_budget::{MAX_RESTARTS, RestartBudget};
use super::runtime::SourceRuntime;
use super::source::board::Shown;
use super::source::exit::{ExitNotice, SourceExited};
use super::source::show;
use super::source::{KeptHold, SourceActor};
use super::spec::SourceSpec;
use crate::sources::slack::OpenBudget;
use crate::sources::status::{ConnectionCounts, SourceCounters, SourceState};

mod holding;
mod listing;

/// How long a restarted source actor waits before it connects: the connections its predecessor
/// left are told to stop and close within about a second.
const RESTART_CONNECT_DELAY: Duration = Duration::from_secs(1);

/// One source the supervisor knows.
struct Entry {
    spec: Arc<SourceSpec>,
    /// Its counters and Slack open budget, kept across restarts of its actor.
    shared: SourceShared,
    /// What it holds (pause, terminal failure), kept across restarts of its actor.
    kept: KeptHold,
    /// Its actor, while one runs.
    actor: Option<Addr<SourceActor>>,
    incarnation: u64,
    restarts: RestartBudget,
    /// What the source shows while no actor answers (disabled, failed after too many restarts, or
    /// `connecting` between an actor's end and its restart).
    idle: Shown,
    /// Whether this replica runs the source: always on a single node; with replicas, while it
    /// holds the source's lease ([`Hold`], [`LetGo`]).
    held: bool,
}

impl Entry {
    fn new(spec: Arc<SourceSpec>, counters: Arc<SourceCounters>, rt: &SourceRuntime) -> Entry {
        let held = !rt.clustered;
        let open_budget = OpenBudget::new(rt.slack_open_interval, 2);
        Entry {
            spec,
            shared: SourceShared {
                counters,
                open_budget: Arc::new(Mutex::new(open_budget)),
            },
            kept: KeptHold::default(),
            actor: None,
            incarnation: 0,
            restarts: RestartBudget::default(),
            idle: Shown::held(SourceState::Disabled, None, 0),
            held,
        }
    }

    fn idle_connections(&self) -> ConnectionCounts {
        ConnectionCounts {
            configured: u32::try_from(self.spec.connections()).unwrap_or(u32::MAX),
            ready: 0,
            reported: None,
        }
    }
}

/// The supervisor (one per process).
pub struct SourceSupervisor {
    rt: Arc<SourceRuntime>,
    initial: Vec<(Arc<SourceSpec>, serde_json::Value)>,
    entries: HashMap<Uuid, Entry>,
    incarnations: u64,
    /// Actors shut down (source disabled or deleted) that have not exited yet, by incarnation.
    closing: HashMap<u64, Addr<SourceActor>>,
    rng: StdRng,
    stopping: bool,
}

impl SourceSupervisor {
    /// A supervisor that will start `initial` sources (with their persisted counters).
    pub fn new(rt: Arc<SourceRuntime>, initial: Vec<(Arc<SourceSpec>, serde_json::Value)>) -> Self {
        SourceSupervisor {
            rt,
            initial,
            entries: HashMap::new(),
            incarnations: 0,
            closing: HashMap::new(),
            rng: StdRng::from_os_rng(),
            stopping: false,
        }
    }

    /// Starts a new actor for the source, connecting after `delay`.
    fn spawn(&mut self, id: Uuid, delay: Duration, ctx: &mut Context<Self>) {
        self.incarnations += 1;
        let incarnation = self.incarnations;
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let notice = ExitNotice::new(ctx.address().recipient(), id, incarnation);
        let actor = SourceActor::new(
            entry.spec.clone(),
            self.rt.clone(),
            (entry.shared.clone(), entry.kept.clone()),
            delay,
            notice,
        );
        entry.actor = Some(actor.start());
        entry.incarnation = incarnation;
        // What the source shows should its actor be gone before it answers (a restart is on its
        // way): not the `disabled` a new entry starts with.
        entry.idle = Shown::held(SourceState::Connecting, None, 0);
    }

    /// Shuts the source's actor down (it shows `farewell` as its last status, when given).
    fn shut_down(&mut self, id: Uuid, farewell: Option<SourceState>) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(addr) = entry.actor.take() else {
            return;
        };
        let farewell_shown = farewell.map(|state| Shown::held(state, None, 0));
        if let Some(shown) = &farewell_shown {
            entry.idle = shown.clone();
        }
        if addr.connected() {
            addr.do_send(Shutdown {
                timeout: Shutdown::ON_CHANGE,
                farewell,
            });
            self.closing.insert(entry.incarnation, addr);
        } else if let Some(shown) = farewell_shown {
            // The actor is already gone (its exit notice is on its way): show the farewell here.
            self.show_idle(id, shown);
        }
    }

    /// Writes the counters of every source that changed since they were last written (one timer
    /// for all sources, however many there are).
    fn flush_counters(&self) {
        for entry in self.entries.values() {
            show::flush_counters(&self.rt, &entry.spec, &entry.shared.counters);
        }
    }

    /// Shows the status of a source no actor runs for.
    fn show_idle(&mut self, id: Uuid, shown: Shown) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        show::show(
            &self.rt,
            &entry.spec,
            &shown,
            &entry.shared.counters,
            entry.idle_connections(),
        );
        entry.idle = shown;
    }

    /// Adds a source it did not know.
    fn add(
        &mut self,
        spec: Arc<SourceSpec>,
        counters: Arc<SourceCounters>,
        delay: Duration,
        ctx: &mut Context<Self>,
    ) {
        let (id, enabled) = (spec.id, spec.enabled);
        let entry = Entry::new(spec, counters, &self.rt);
        let held = entry.held;
        self.entries.insert(id, entry);
        if enabled && held {
            self.spawn(id, delay, ctx);
        } else if !enabled {
            self.show_idle(id, Shown::held(SourceState::Disabled, None, 0));
        }
    }

    /// The actor of a known source, starting a fresh one for an enabled source that has none
    /// (failed after too many restarts) when `revive`. `Err(())`: the source is unknown.
    fn actor(
        &mut self,
        id: Uuid,
        revive: bool,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Addr<SourceActor>>, ()> {
        let entry = self.entries.get_mut(&id).ok_or(())?;
        if entry.actor.is_none() && revive && entry.spec.enabled && entry.held && !self.stopping {
            entry.restarts.reset();
            self.spawn(id, Duration::ZERO, ctx);
        }
        Ok(self.entries.get(&id).and_then(|entry| entry.actor.clone()))
    }

    /// Routes a command answered with "known" to the source's actor.
    fn route<M>(&mut self, id: Uuid, msg: M, revive: bool, ctx: &mut Context<Self>) -> Known
    where
        M: Message<Result = bool> + Send + 'static,
        SourceActor: Handler<M>,
    {
        match self.actor(id, revive, ctx) {
            Err(()) => Box::pin(async { false }),
            Ok(None) => Box::pin(async { true }),
            Ok(Some(addr)) => Box::pin(async move { addr.send(msg).await.unwrap_or(true) }),
        }
    }
}

/// The answer to a routed command: whether the source is known.
type Known = ResponseFuture<bool>;

impl Actor for SourceSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let initial = std::mem::take(&mut self.initial);
        let spread = startup_spread(initial.len());
        for (spec, stored_counters) in initial {
            let counters = Arc::new(SourceCounters::default());
            counters.restore(&stored_counters);
            let delay = startup_jitter(spread, &mut self.rng);
            self.add(spec, counters, delay, ctx);
        }
        ctx.run_interval(Duration::from_secs(1), |act, _| act.flush_counters());
    }
}

impl Handler<Update> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Update, ctx: &mut Context<Self>) {
        let spec = msg.spec;
        let id = spec.id;
        if self.stopping {
            return;
        }
        let Some(entry) = self.entries.get_mut(&id) else {
            self.add(spec, Arc::default(), Duration::ZERO, ctx);
            return;
        };
        if spec.revision < entry.spec.revision {
            return;
        }
        let was_enabled = entry.spec.enabled;
        entry.spec = spec.clone();
        match (&entry.actor, spec.enabled) {
            (Some(addr), true) => addr.do_send(Update { spec }),
            (None, true) if entry.held => {
                entry.restarts.reset();
                entry.kept.clear();
                self.spawn(id, Duration::ZERO, ctx);
            }
            (None, true) => {}
            (Some(_), false) => self.shut_down(id, Some(SourceState::Disabled)),
            (None, false) if was_enabled => {
                self.show_idle(id, Shown::held(SourceState::Disabled, None, 0));
            }
            (None, false) => {}
        }
    }
}

impl Handler<Remove> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Remove, _: &mut Context<Self>) {
        self.shut_down(msg.source_id, None);
        self.entries.remove(&msg.source_id);
    }
}

impl Handler<Reconnect> for SourceSupervisor {
    type Result = Known;

    fn handle(&mut self, msg: Reconnect, ctx: &mut Context<Self>) -> Known {
        self.route(msg.source_id, msg, true, ctx)
    }
}

impl Handler<Pause> for SourceSupervisor {
    type Result = Known;

    fn handle(&mut self, msg: Pause, ctx: &mut Context<Self>) -> Known {
        self.route(msg.source_id, msg, false, ctx)
    }
}

impl Handler<Resume> for SourceSupervisor {
    type Result = Known;

    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) -> Known {
        self.route(msg.source_id, msg, true, ctx)
    }
}

impl Handler<SendFrame> for SourceSupervisor {
    type Result = ResponseFuture<Result<(), SendError>>;

    fn handle(&mut self, msg: SendFrame, _: &mut Context<Self>) -> Self::Result {
        let target = match self.entries.get(&msg.source_id) {
            None => Err(SendError::Unknown),
            Some(entry) => entry.actor.clone().ok_or(SendError::NotConnected),
        };
        Box::pin(async move {
            target?
                .send(msg)
                .await
                .unwrap_or(Err(SendError::NotConnected))
        })
    }
}

impl Handler<SourceExited> for SourceSupervisor {
    type Result = ();

    fn handle(&mut self, msg: SourceExited, ctx: &mut Context<Self>) {
        if self.closing.remove(&msg.incarnation).is_some() || self.stopping {
            return;
        }
        let Some(entry) = self.entries.get_mut(&msg.source_id) else {
            return;
        };
        if entry.incarnation != msg.incarnation || entry.actor.is_none() {
            return;
        }
        entry.actor = None;
        if msg.clean {
            return;
        }
        if entry.restarts.allow(Instant::now()) {
            tracing::warn!(source_id = %msg.source_id, "the source actor stopped unexpectedly; restarting it");
            // Its successor connects once the connections it left have had their close grace.
            self.spawn(msg.source_id, RESTART_CONNECT_DELAY, ctx);
            return;
        }
        tracing::error!(source_id = %msg.source_id, "the source actor keeps stopping unexpectedly; the source is failed until an operator reconnects it");
        let detail = format!(
            "the source stopped unexpectedly {} times within {} s; reconnect it to try again",
            MAX_RESTARTS + 1,
            RestartBudget::WINDOW.as_secs()
        );
        self.show_idle(
            msg.source_id,
            Shown::held(SourceState::Failed, Some(detail), 0),
        );
    }
}

impl Handler<Shutdown> for SourceSupervisor {
    type Result = ResponseFuture<()>;

    /// Shuts every source actor down at once and answers when all of them answered (each within
    /// `timeout`), or after `timeout` at the latest.
    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let running: Vec<Addr<SourceActor>> = self
            .entries
            .values_mut()
            .filter_map(|entry| entry.actor.take())
            .collect();
        let closing: Vec<Addr<SourceActor>> = self.closing.values().cloned().collect();
        let deadline = tokio::time::Instant::now() + msg.timeout;
        Box::pin(async move {
            let asked = join_all(running.iter().map(|addr| addr.send(msg)));
            let _ = tokio::time::timeout_at(deadline, asked).await;
            while closing.iter().any(Addr::connected) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }
}
