//! The live stream across replicas: while another replica serves stream clients, every message
//! published here is relayed to it through PostgreSQL `NOTIFY` (batched, in publication order, so
//! that each source's messages stay in order), and what other replicas relay is published here
//! for this replica's clients. Nothing is relayed while no other replica has a client.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::protocol::{self, Topic};
use crate::actors::publisher::{Published, Publisher};
use crate::cluster::{ClusterShared, STREAM_CHANNEL};
use crate::db::cluster::stream;

/// Most messages relayed in one go.
const BATCH: usize = 500;

/// A message as it travels: who published it, its topic, org, source and data.
fn outgoing(message: &Published, me: Uuid) -> Option<Value> {
    if matches!(message, Published::Relayed { .. }) {
        return None;
    }
    let (topic, org_id, source) = protocol::route(message);
    Some(json!({
        "r": me, "t": topic.as_str(), "o": org_id, "s": source, "d": protocol::data(message),
    }))
}

/// Publishes here what another replica relayed (a JSON array of messages).
fn incoming(payload: &str, me: Uuid, publisher: &Publisher) {
    let Ok(Value::Array(messages)) = serde_json::from_str::<Value>(payload) else {
        tracing::warn!("an unreadable relayed stream message was skipped");
        return;
    };
    for mut m in messages {
        let from = m["r"].as_str().and_then(|r| r.parse::<Uuid>().ok());
        let org_id = m["o"].as_str().and_then(|o| o.parse::<Uuid>().ok());
        let topic = m["t"].as_str().filter(|t| Topic::parse(t).is_some());
        let (Some(from), Some(org_id), Some(topic)) = (from, org_id, topic) else {
            continue;
        };
        if from == me {
            continue;
        }
        publisher.publish(Published::Relayed {
            topic_name: topic.to_owned(),
            org_id,
            source: m["s"].as_str().unwrap_or_default().to_owned(),
            data: Arc::new(m["d"].take()),
        });
    }
}

/// The listener's handler of the stream channel: inline batches and stored ones (`@<id>`).
pub fn receiver(
    db: DatabaseConnection,
    me: Uuid,
    publisher: Publisher,
) -> Arc<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync> {
    Arc::new(move |payload: String| {
        let (db, publisher) = (db.clone(), publisher.clone());
        Box::pin(async move {
            let Some(id) = payload.strip_prefix('@') else {
                incoming(&payload, me, &publisher);
                return;
            };
            let Ok(id) = id.parse::<i64>() else {
                return;
            };
            match stream::stored(&db, id).await {
                Ok(Some(body)) => incoming(&body, me, &publisher),
                Ok(None) => {
                    tracing::warn!(id, "a relayed stream batch was pruned before it was read")
                }
                Err(err) => tracing::warn!(error = %err, "reading a relayed stream batch failed"),
            }
        })
    })
}

/// Relays what is published here while another replica serves stream clients, and reports how
/// many stream clients this replica serves (for the heartbeat).
pub async fn relay(db: DatabaseConnection, shared: Arc<ClusterShared>, publisher: Publisher) {
    let me = shared.replica_id;
    loop {
        shared
            .local_streams
            .store(publisher.receiver_count(), Ordering::Release);
        if !shared.others_streaming.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let mut rx = publisher.subscribe();
        while shared.others_streaming.load(Ordering::Acquire) {
            // This subscription is not a client.
            let clients = publisher.receiver_count().saturating_sub(1);
            shared.local_streams.store(clients, Ordering::Release);
            let first = match tokio::time::timeout(Duration::from_millis(250), rx.recv()).await {
                Err(_) => continue,
                Ok(Err(RecvError::Closed)) => return,
                Ok(Err(RecvError::Lagged(n))) => {
                    tracing::warn!(
                        lost = n,
                        "the stream relay fell behind; messages were not relayed"
                    );
                    continue;
                }
                Ok(Ok(message)) => message,
            };
            let mut batch: Vec<Value> = outgoing(&first, me).into_iter().collect();
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(message) => batch.extend(outgoing(&message, me)),
                    Err(_) => break,
                }
            }
            send(&db, &batch).await;
        }
    }
}

/// Sends a batch as a few payloads, each as large as fits inline (a single larger message is
/// stored).
async fn send(db: &DatabaseConnection, batch: &[Value]) {
    let mut payload = String::from("[");
    for message in batch {
        let text = message.to_string();
        if payload.len() > 1 && payload.len() + text.len() + 2 > stream::MAX_PAYLOAD {
            payload.push(']');
            send_one(db, &payload).await;
            payload = String::from("[");
        }
        if payload.len() > 1 {
            payload.push(',');
        }
        payload.push_str(&text);
    }
    if payload.len() > 1 {
        payload.push(']');
        send_one(db, &payload).await;
    }
}

async fn send_one(db: &DatabaseConnection, payload: &str) {
    if let Err(err) = stream::send(db, STREAM_CHANNEL, payload).await {
        tracing::warn!(error = %err, "relaying stream messages to the other replicas failed");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_relayed_message_arrives_as_published_and_is_never_relayed_again() {
        let (here, there) = (Uuid::new_v4(), Uuid::new_v4());
        let org_id = Uuid::new_v4();
        let original = Published::RunChanged {
            kind: crate::actors::publisher::RunChange::Claimed,
            org_id,
            run_id: Uuid::new_v4(),
            automation_id: Uuid::new_v4(),
            source: "feed".into(),
            attempt: 1,
            status: crate::db::statuses::RunStatus::Running,
            error: None,
        };
        let wire = Value::Array(vec![outgoing(&original, there).unwrap()]).to_string();
        let publisher = Publisher::new();
        let mut rx = publisher.subscribe();
        incoming(&wire, here, &publisher);
        let arrived = rx.try_recv().unwrap();
        assert_eq!(protocol::route(&arrived), protocol::route(&original));
        assert_eq!(protocol::data(&arrived), protocol::data(&original));
        assert!(outgoing(&arrived, here).is_none());
        // What this replica sent itself comes back through NOTIFY too: skipped.
        incoming(&wire, there, &publisher);
        assert!(rx.try_recv().is_err());
    }
}
