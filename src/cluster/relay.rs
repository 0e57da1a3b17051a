//! Operator commands across replicas: the replica that received a command for a source it does
//! not hold writes it to the command table and waits for the answer; the holder, woken by
//! `NOTIFY`, executes it through its supervisor (only while it holds the source's lease, so a
//! replica that lost the source cannot act on it) and writes the answer.

use std::time::{Duration, Instant};

use actix::Addr;
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use super::ClusterShared;
use crate::actors::commands::{Pause, Reconnect, Resume, SendError, SendFrame};
use crate::actors::supervisor::SourceSupervisor;
use crate::db::cluster::commands;

/// How long the sending replica waits for the holder's answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// A command that can travel to another replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// [`Reconnect`].
    Reconnect,
    /// [`Pause`].
    Pause,
    /// [`Resume`].
    Resume,
    /// [`SendFrame`] with this text.
    Send(String),
}

impl Relayed {
    fn kind(&self) -> &'static str {
        match self {
            Relayed::Reconnect => "reconnect",
            Relayed::Pause => "pause",
            Relayed::Resume => "resume",
            Relayed::Send(_) => "send",
        }
    }

    fn parse(kind: &str, body: String) -> Option<Relayed> {
        match kind {
            "reconnect" => Some(Relayed::Reconnect),
            "pause" => Some(Relayed::Pause),
            "resume" => Some(Relayed::Resume),
            "send" => Some(Relayed::Send(body)),
            _ => None,
        }
    }
}

/// An operator command that can travel to the replica holding its source.
pub trait Relayable {
    /// The source it is for.
    fn source_id(&self) -> Uuid;
    /// The command as it travels.
    fn relayed(&self) -> Relayed;
}

impl Relayable for Reconnect {
    fn source_id(&self) -> Uuid {
        self.source_id
    }
    fn relayed(&self) -> Relayed {
        Relayed::Reconnect
    }
}

impl Relayable for Pause {
    fn source_id(&self) -> Uuid {
        self.source_id
    }
    fn relayed(&self) -> Relayed {
        Relayed::Pause
    }
}

impl Relayable for Resume {
    fn source_id(&self) -> Uuid {
        self.source_id
    }
    fn relayed(&self) -> Relayed {
        Relayed::Resume
    }
}

/// The holder's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accepted (sent, for a frame).
    Done,
    /// The holder's supervisor does not know the source.
    Unknown,
    /// A frame could not be sent: no ready connection.
    NotConnected,
}

impl Answer {
    fn as_str(self) -> &'static str {
        match self {
            Answer::Done => "done",
            Answer::Unknown => "unknown",
            Answer::NotConnected => "not_connected",
        }
    }

    fn parse(value: &str) -> Answer {
        match value {
            "done" => Answer::Done,
            "not_connected" => Answer::NotConnected,
            _ => Answer::Unknown,
        }
    }
}

/// Sends `command` to the replica holding `source_id` and waits for its answer (`None`: no
/// replica answered within [`ANSWER_WAIT`]; the source may be between holders).
pub async fn relay(
    db: &DatabaseConnection,
    source_id: Uuid,
    command: Relayed,
) -> Result<Option<Answer>, DbErr> {
    let body = match &command {
        Relayed::Send(text) => text.as_str(),
        _ => "",
    };
    let id = commands::insert(db, source_id, command.kind(), body).await?;
    let started = Instant::now();
    let mut wait = Duration::from_millis(2);
    while started.elapsed() < ANSWER_WAIT {
        tokio::time::sleep(wait).await;
        if let Some(answer) = commands::answer_of(db, id).await? {
            return Ok(Some(Answer::parse(&answer)));
        }
        wait = (wait * 2).min(Duration::from_millis(25));
    }
    Ok(None)
}

/// Executes command `id` when this replica holds its source's lease (else leaves it to the
/// holder).
pub async fn execute(
    db: &DatabaseConnection,
    shared: &ClusterShared,
    supervisor: &Addr<SourceSupervisor>,
    id: i64,
) -> Result<(), DbErr> {
    // Claimed only while this replica holds the source's lease, by the database: a replica that
    // lost the source (or never had it) leaves the command to the holder.
    let Some(row) = commands::claim(db, id, shared.replica_id).await? else {
        return Ok(());
    };
    let Some(command) = Relayed::parse(&row.kind, row.body) else {
        return commands::answer(db, id, Answer::Unknown.as_str()).await;
    };
    let source_id = row.source_id;
    let known = |known: Result<bool, actix::MailboxError>| match known {
        Ok(true) => Answer::Done,
        _ => Answer::Unknown,
    };
    let answer = match command {
        Relayed::Reconnect => known(supervisor.send(Reconnect { source_id }).await),
        Relayed::Pause => known(supervisor.send(Pause { source_id }).await),
        Relayed::Resume => known(supervisor.send(Resume { source_id }).await),
        Relayed::Send(text) => match supervisor.send(SendFrame { source_id, text }).await {
            Ok(Ok(())) => Answer::Done,
            Ok(Err(SendError::Unknown)) => Answer::Unknown,
            Ok(Err(SendError::NotConnected)) | Err(_) => Answer::NotConnected,
        },
    };
    commands::answer(db, id, answer.as_str()).await
}
