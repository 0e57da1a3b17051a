//! The supervisor's answers to listing questions (status, metrics): asked of every source actor at
//! once, answered by the supervisor itself for a source without one.

use actix::prelude::*;
use futures_util::future::join_all;

use super::SourceSupervisor;
use crate::actors::commands::{CollectMetrics, GetSample, GetSnapshot, GetStatus};
use crate::actors::source::show;
use crate::metrics::SourceSample;
use crate::sources::status::StatusSnapshot;

impl Handler<GetStatus> for SourceSupervisor {
    type Result = ResponseFuture<Vec<StatusSnapshot>>;

    fn handle(&mut self, msg: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let asked: Vec<_> = msg
            .source_ids
            .iter()
            .filter_map(|id| self.entries.get(id))
            .map(|entry| {
                let idle = show::snapshot(
                    &entry.spec,
                    &entry.idle,
                    &entry.shared.counters,
                    entry.idle_connections(),
                );
                (entry.actor.clone(), idle)
            })
            .collect();
        Box::pin(async move {
            join_all(asked.into_iter().map(|(actor, idle)| async move {
                match actor {
                    Some(addr) => addr.send(GetSnapshot).await.unwrap_or(idle),
                    None => idle,
                }
            }))
            .await
        })
    }
}

impl Handler<CollectMetrics> for SourceSupervisor {
    type Result = ResponseFuture<Vec<SourceSample>>;

    fn handle(&mut self, _: CollectMetrics, _: &mut Context<Self>) -> Self::Result {
        let asked: Vec<_> = self
            .entries
            .values()
            .map(|entry| {
                let idle = SourceSample {
                    slug: entry.spec.slug.clone(),
                    state: entry.idle.state,
                    connections: 0,
                    counters: entry.shared.counters.to_json(),
                };
                (entry.actor.clone(), idle)
            })
            .collect();
        Box::pin(async move {
            join_all(asked.into_iter().map(|(actor, idle)| async move {
                match actor {
                    Some(addr) => addr.send(GetSample).await.unwrap_or(idle),
                    None => idle,
                }
            }))
            .await
        })
    }
}
