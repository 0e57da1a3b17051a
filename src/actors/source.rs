//! `SourceActor`: one connection attempt of one source, started fresh from a spec by the
//! supervisor for every attempt. It runs the connection loop, forwards commands to it, and reports
//! `SourceReady` and, exactly once, `SourceDown` to the supervisor.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::connection::{self, Command, ConnectionCtx};
use super::messages::{
    DownReason, RetireSource, RotateDue, SendError, SendFrame, SourceDown, SourceReady, StopSource,
    SwapSpec,
};
use super::runtime::SourceRuntime;
use super::spec::SourceSpec;
use super::status::SourceCounters;
use crate::sources::slack::OpenBudget;

/// One attempt of one source.
pub struct SourceActor {
    spec: Arc<SourceSpec>,
    generation: u64,
    rt: Arc<SourceRuntime>,
    counters: Arc<SourceCounters>,
    open_budget: Arc<Mutex<OpenBudget>>,
    ready: Recipient<SourceReady>,
    down: Recipient<SourceDown>,
    rotate: Recipient<RotateDue>,
    commands: Option<mpsc::Sender<Command>>,
    started_at: Instant,
    reported: bool,
}

impl SourceActor {
    /// A new attempt (started by the supervisor only).
    pub fn new(
        spec: Arc<SourceSpec>,
        generation: u64,
        rt: Arc<SourceRuntime>,
        shared: (Arc<SourceCounters>, Arc<Mutex<OpenBudget>>),
        ready: Recipient<SourceReady>,
        down: Recipient<SourceDown>,
        rotate: Recipient<RotateDue>,
    ) -> SourceActor {
        let (counters, open_budget) = shared;
        SourceActor {
            rotate,
            spec,
            generation,
            rt,
            counters,
            open_budget,
            ready,
            down,
            commands: None,
            started_at: Instant::now(),
            reported: false,
        }
    }

    fn report(&mut self, reason: DownReason) {
        if self.reported {
            return;
        }
        self.reported = true;
        tracing::info!(source_id = %self.spec.id, generation = self.generation, reason = reason.detail(), "connection down");
        self.down.do_send(SourceDown {
            source_id: self.spec.id,
            generation: self.generation,
            reason,
            uptime: self.started_at.elapsed(),
        });
    }
}

impl Actor for SourceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = mpsc::channel(64);
        self.commands = Some(tx);
        let (ready, source_id, generation) = (self.ready.clone(), self.spec.id, self.generation);
        let rotate = self.rotate.clone();
        let conn = ConnectionCtx {
            spec: self.spec.clone(),
            rt: self.rt.clone(),
            counters: self.counters.clone(),
            open_budget: self.open_budget.clone(),
            commands: rx,
            on_ready: Box::new(move |num_connections| {
                ready.do_send(SourceReady {
                    source_id,
                    generation,
                    num_connections,
                })
            }),
            on_rotate: Box::new(move || {
                rotate.do_send(RotateDue {
                    source_id,
                    generation,
                })
            }),
        };
        tracing::debug!(source_id = %source_id, generation, "connecting");
        ctx.spawn(
            connection::run(conn)
                .into_actor(self)
                .map(|reason, act, ctx| {
                    act.report(reason);
                    ctx.stop();
                }),
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.report(DownReason::Stopped);
    }
}

impl Handler<StopSource> for SourceActor {
    type Result = ();

    fn handle(&mut self, _: StopSource, ctx: &mut Context<Self>) {
        match &self.commands {
            Some(tx) if tx.try_send(Command::Stop).is_ok() => {}
            _ => ctx.stop(),
        }
    }
}

impl Handler<RetireSource> for SourceActor {
    type Result = ();

    fn handle(&mut self, _: RetireSource, ctx: &mut Context<Self>) {
        match &self.commands {
            Some(tx) if tx.try_send(Command::Retire).is_ok() => {}
            _ => ctx.stop(),
        }
    }
}

impl Handler<SwapSpec> for SourceActor {
    type Result = ();

    fn handle(&mut self, msg: SwapSpec, _: &mut Context<Self>) {
        self.spec = msg.spec.clone();
        if let Some(tx) = &self.commands {
            let _ = tx.try_send(Command::Swap(msg.spec));
        }
    }
}

impl Handler<SendFrame> for SourceActor {
    type Result = ResponseFuture<Result<(), SendError>>;

    fn handle(&mut self, msg: SendFrame, _: &mut Context<Self>) -> Self::Result {
        let tx = self.commands.clone();
        Box::pin(async move {
            let tx = tx.ok_or(SendError::NotConnected)?;
            let (reply, answer) = oneshot::channel();
            tx.send(Command::Send(msg.text, reply))
                .await
                .map_err(|_| SendError::NotConnected)?;
            answer.await.unwrap_or(Err(SendError::NotConnected))
        })
    }
}
