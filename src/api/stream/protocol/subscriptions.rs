//! The subscriptions of one connection and which of them a message is sent to.

use serde_json::Value;

use super::{MAX_SUBSCRIPTIONS, Refusal, Subscription, Topic};
use crate::pipeline::expr::to_value;

/// The subscriptions of one connection, in the order they were made.
#[derive(Debug, Default)]
pub struct Subscriptions {
    items: Vec<Subscription>,
}

impl Subscriptions {
    /// Adds a subscription unless its id is taken or the connection holds the maximum.
    pub fn add(&mut self, subscription: Subscription) -> Result<&Subscription, Refusal> {
        let id = Some(subscription.id.as_str());
        if self.get(&subscription.id).is_some() {
            return Err(Refusal::new("id: a subscription with this id exists", id));
        }
        if self.items.len() >= MAX_SUBSCRIPTIONS {
            return Err(Refusal::new(
                format!("too many subscriptions (at most {MAX_SUBSCRIPTIONS} per connection)"),
                id,
            ));
        }
        self.items.push(subscription);
        Ok(&self.items[self.items.len() - 1])
    }

    /// Removes the subscription with `id`.
    pub fn remove(&mut self, id: &str) -> Result<Subscription, Refusal> {
        let index = self
            .items
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| Refusal::new("id: no subscription with this id", Some(id)))?;
        Ok(self.items.remove(index))
    }

    /// The subscription with `id`.
    pub fn get(&self, id: &str) -> Option<&Subscription> {
        self.items.iter().find(|s| s.id == id)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether any subscription asks for `topic` from `source` (before building its data).
    pub fn wants(&self, topic: Topic, source: &str) -> bool {
        self.items.iter().any(|s| s.wants(topic, source))
    }

    /// The ids of the subscriptions that `data` (of `topic`, from `source`) is sent to, and the
    /// refusals of those whose filter exceeded its limits (removed here: the caller sends the
    /// refusal frames). The data is converted for the filters once, and only when a candidate has
    /// a filter.
    pub fn matching(&mut self, topic: Topic, source: &str, data: &Value) -> Matching {
        let mut converted = None;
        let mut matching = Matching::default();
        self.items.retain(|s| {
            if !s.wants(topic, source) {
                return true;
            }
            let accepted = match &s.filter {
                None => Ok(true),
                Some(_) => s.accepts(converted.get_or_insert_with(|| to_value(data))),
            };
            match accepted {
                Ok(true) => matching.ids.push(s.id.clone()),
                Ok(false) => {}
                Err(detail) => {
                    matching.ended.push(Refusal::new(detail, Some(&s.id)));
                    return false;
                }
            }
            true
        });
        matching
    }
}

/// Where one message goes: the subscriptions it is sent to, and the refusals of those whose
/// filter could not be evaluated within its limits (already removed).
#[derive(Debug, Default)]
pub struct Matching {
    /// The ids of the subscriptions to send it to.
    pub ids: Vec<String>,
    /// One refusal per subscription ended.
    pub ended: Vec<Refusal>,
}
