//! The sources this process holds, each with the fencing epoch of its lease. The cluster coordinator
//! writes it; the status writer stamps every write with the source's epoch (0 when not held, or
//! on a single node, where nothing is ever held and every source runs); the API asks it whether a
//! command can be executed here.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use uuid::Uuid;

/// The held sources and their epochs (cheap to clone; shared).
#[derive(Clone, Default, Debug)]
pub struct Epochs(Arc<RwLock<HashMap<Uuid, i64>>>);

impl Epochs {
    /// The epoch under which this process holds `source_id`, 0 when it does not hold it.
    pub fn get(&self, source_id: Uuid) -> i64 {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&source_id)
            .copied()
            .unwrap_or(0)
    }

    /// Whether this process holds `source_id`.
    pub fn holds(&self, source_id: Uuid) -> bool {
        self.get(source_id) > 0
    }

    /// This process now holds `source_id` under `epoch`.
    pub fn set(&self, source_id: Uuid, epoch: i64) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(source_id, epoch);
    }

    /// This process no longer holds `source_id`.
    pub fn remove(&self, source_id: Uuid) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&source_id);
    }

    /// Keeps only the sources in `held` (what the last renewal answered).
    pub fn retain(&self, held: &std::collections::HashSet<Uuid>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| held.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_not_held_has_epoch_zero() {
        let epochs = Epochs::default();
        let id = Uuid::now_v7();
        assert_eq!(epochs.get(id), 0);
        epochs.set(id, 7);
        assert!(epochs.holds(id));
        assert_eq!(epochs.clone().get(id), 7);
        epochs.remove(id);
        assert!(!epochs.holds(id));
    }
}
