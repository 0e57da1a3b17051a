//! `ConnectionActor`: one connection of one source, started by its [`SourceActor`] for one
//! generation of one slot, never restarted (a new attempt is a new actor with a new generation).
//! It drives the connection loop ([`run`]), forwards its source actor's commands to it, and reports
//! [`ConnectionReady`], [`ReplacementDue`] and, exactly once, [`ConnectionEnded`].
//!
//! [`SourceActor`]: super::source::SourceActor

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use self::run::{Command, ConnectionCtx, Outgoing};
use super::commands::SendError;
use super::runtime::SourceRuntime;
use super::spec::SourceSpec;
use crate::sources::slack::OpenBudget;
use crate::sources::status::SourceCounters;

pub mod connect;
pub mod dial;
pub mod outbound;
pub mod protocol;
pub mod reports;
pub mod run;
pub mod slack_open;

pub use reports::{ConnectionEnded, ConnectionReady, DownReason, ReplacementDue};

/// Source actor → connection actor: close gracefully (stop reading after a short quiet spell,
/// finish in-flight persists and ACKs, close) and stop. Answers nothing; the end is reported as
/// [`ConnectionEnded`].
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopConnection;

/// Source actor → connection actor: stop now, dropping the socket without a close handshake
/// (what a graceful [`StopConnection`] had not finished by its source's shutdown deadline; the
/// peer redelivers what was not ACKed). Answers nothing.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct AbortConnection;

/// Source actor → connection actor: a ready replacement took over from this connection
/// (make-before-break). It drains as [`Command::Retire`] says: until the peer closes it when the
/// peer asked for the refresh, else at once. Answers nothing.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct RetireConnection;

/// Source actor → connection actor: a new spec whose connection settings are unchanged
/// (expressions only): apply it from the next message on, without reconnecting. Answers nothing.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SwapSpec {
    /// The new spec.
    pub spec: Arc<SourceSpec>,
}

/// Source actor → connection actor: write one text frame. Answers once written, or
/// `NotConnected` when the connection is not ready.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), SendError>")]
pub struct WriteFrame {
    /// The frame's text.
    pub text: String,
}

/// Where a connection actor reports to: its source actor.
pub struct ReportTo {
    /// Readiness.
    pub ready: Recipient<ConnectionReady>,
    /// Replacement requests.
    pub replacement: Recipient<ReplacementDue>,
    /// The end.
    pub ended: Recipient<ConnectionEnded>,
}

/// What the connections of one source share (and keep across reconnects).
#[derive(Clone)]
pub struct SourceShared {
    /// Live counters.
    pub counters: Arc<SourceCounters>,
    /// The source's `apps.connections.open` budget (Slack).
    pub open_budget: Arc<Mutex<OpenBudget>>,
}

/// One connection of one source.
pub struct ConnectionActor {
    spec: Arc<SourceSpec>,
    generation: u64,
    rt: Arc<SourceRuntime>,
    shared: SourceShared,
    report: ReportTo,
    commands: Option<mpsc::Sender<Command>>,
    ended: bool,
}

impl ConnectionActor {
    /// A new connection of `generation` (started by its source actor only).
    pub fn new(
        spec: Arc<SourceSpec>,
        generation: u64,
        rt: Arc<SourceRuntime>,
        shared: SourceShared,
        report: ReportTo,
    ) -> ConnectionActor {
        ConnectionActor {
            spec,
            generation,
            rt,
            shared,
            report,
            commands: None,
            ended: false,
        }
    }

    fn report_end(&mut self, reason: DownReason) {
        if self.ended {
            return;
        }
        self.ended = true;
        tracing::info!(source_id = %self.spec.id, generation = self.generation, reason = reason.detail(), "connection down");
        self.report.ended.do_send(ConnectionEnded {
            generation: self.generation,
            reason,
        });
    }

    /// Hands `command` to the loop; stops the actor when the loop is gone.
    fn command(&self, command: Command, ctx: &mut Context<Self>) {
        match &self.commands {
            Some(tx) if tx.try_send(command).is_ok() => {}
            _ => ctx.stop(),
        }
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = mpsc::channel(64);
        self.commands = Some(tx);
        let generation = self.generation;
        let ready = self.report.ready.clone();
        let replacement = self.report.replacement.clone();
        let conn = ConnectionCtx {
            spec: self.spec.clone(),
            rt: self.rt.clone(),
            counters: self.shared.counters.clone(),
            open_budget: self.shared.open_budget.clone(),
            commands: rx,
            on_ready: Box::new(move |num_connections| {
                ready.do_send(ConnectionReady {
                    generation,
                    num_connections,
                })
            }),
            on_rotate: Box::new(move || replacement.do_send(ReplacementDue { generation })),
        };
        tracing::debug!(source_id = %self.spec.id, generation, "connecting");
        ctx.spawn(run::run(conn).into_actor(self).map(|reason, act, ctx| {
            act.report_end(reason);
            ctx.stop();
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.report_end(DownReason::Stopped);
    }
}

impl Drop for ConnectionActor {
    /// A connection actor that goes away without stopping (a panic unwinds it) still reports its
    /// end, so its source actor retries the slot instead of waiting for it forever.
    fn drop(&mut self) {
        self.report_end(DownReason::Transient(
            "the connection stopped unexpectedly".to_owned(),
        ));
    }
}

impl Handler<StopConnection> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: StopConnection, ctx: &mut Context<Self>) {
        self.command(Command::Stop, ctx);
    }
}

impl Handler<AbortConnection> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: AbortConnection, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<RetireConnection> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: RetireConnection, ctx: &mut Context<Self>) {
        self.command(Command::Retire, ctx);
    }
}

impl Handler<SwapSpec> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: SwapSpec, _: &mut Context<Self>) {
        self.spec = msg.spec.clone();
        if let Some(tx) = &self.commands {
            let _ = tx.try_send(Command::Swap(msg.spec));
        }
    }
}

impl Handler<WriteFrame> for ConnectionActor {
    type Result = ResponseFuture<Result<(), SendError>>;

    fn handle(&mut self, msg: WriteFrame, _: &mut Context<Self>) -> Self::Result {
        let tx = self.commands.clone();
        Box::pin(async move {
            let tx = tx.ok_or(SendError::NotConnected)?;
            let (reply, answer) = oneshot::channel();
            tx.send(Command::Send(Box::new(Outgoing {
                text: msg.text,
                reply,
            })))
            .await
            .map_err(|_| SendError::NotConnected)?;
            answer.await.unwrap_or(Err(SendError::NotConnected))
        })
    }
}
