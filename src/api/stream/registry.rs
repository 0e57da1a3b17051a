//! Who holds live-stream sessions in this process: at most `SWITCHBOARD_STREAM_MAX_SESSIONS` in
//! all and `SWITCHBOARD_STREAM_MAX_SESSIONS_PER_KEY` per API key (more are refused before the
//! upgrade), and the sessions of a key that is revoked are told to close.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use uuid::Uuid;

/// Registry → session: the API key the session authenticated with was revoked; close now.
/// Answers nothing.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct KeyRevoked;

/// The open sessions of this process.
pub struct StreamSessions {
    max_total: usize,
    max_per_key: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    sessions: HashMap<u64, Entry>,
}

struct Entry {
    key_id: Uuid,
    revoke: Option<Recipient<KeyRevoked>>,
}

/// Why a session was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The process holds its maximum.
    #[error("too many live-stream sessions are open (at most {0}); retry later")]
    Total(usize),
    /// The key holds its maximum.
    #[error("this API key holds too many live-stream sessions (at most {0}); close one first")]
    PerKey(usize),
}

impl StreamSessions {
    /// A registry with these caps.
    pub fn new(max_total: usize, max_per_key: usize) -> Arc<StreamSessions> {
        Arc::new(StreamSessions {
            max_total,
            max_per_key,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits one more session of `key_id`, or says which cap it would exceed. The session is
    /// counted until the ticket is dropped.
    pub fn admit(self: &Arc<Self>, key_id: Uuid) -> Result<Ticket, Refused> {
        let mut inner = self.lock();
        if inner.sessions.len() >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        let held = inner
            .sessions
            .values()
            .filter(|entry| entry.key_id == key_id)
            .count();
        if held >= self.max_per_key {
            return Err(Refused::PerKey(self.max_per_key));
        }
        inner.next_id += 1;
        let id = inner.next_id;
        inner.sessions.insert(
            id,
            Entry {
                key_id,
                revoke: None,
            },
        );
        Ok(Ticket {
            id,
            registry: self.clone(),
        })
    }

    /// Tells every session of `key_id` to close; returns how many were told.
    pub fn revoke(&self, key_id: Uuid) -> usize {
        let inner = self.lock();
        let mut told = 0;
        for entry in inner.sessions.values().filter(|e| e.key_id == key_id) {
            if let Some(revoke) = &entry.revoke {
                revoke.do_send(KeyRevoked);
                told += 1;
            }
        }
        told
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.lock().sessions.len()
    }
}

/// One admitted session; dropping it (when the session ends) frees its place.
pub struct Ticket {
    id: u64,
    registry: Arc<StreamSessions>,
}

impl Ticket {
    /// Where to tell the session that its key was revoked (set once the session has started).
    pub fn attach(&self, revoke: Recipient<KeyRevoked>) {
        if let Some(entry) = self.registry.lock().sessions.get_mut(&self.id) {
            entry.revoke = Some(revoke);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.lock().sessions.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn caps_hold_in_total_and_per_key_and_dropping_frees() {
        let registry = StreamSessions::new(3, 2);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let a1 = registry.admit(a).unwrap();
        let _a2 = registry.admit(a).unwrap();
        assert_eq!(registry.admit(a).err(), Some(Refused::PerKey(2)));
        let _b1 = registry.admit(b).unwrap();
        assert_eq!(registry.admit(b).err(), Some(Refused::Total(3)));
        drop(a1);
        assert_eq!(registry.open(), 2);
        assert!(registry.admit(a).is_ok());
    }
}
