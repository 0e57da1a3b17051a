//! How many sources a replica should take, and from whom: a pure function of what every live
//! replica holds. Capacity is counted in connections (a Slack source with four connections
//! weighs four), so every replica ends within one source of an even share.

use uuid::Uuid;

/// What one live replica holds, as the others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// The replica.
    pub replica: Uuid,
    /// Connections its sources keep.
    pub connections: i64,
    /// Whether it is handing everything over before it stops.
    pub draining: bool,
}

/// What this replica should do at its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Nothing: it has its share.
    Stay,
    /// Take up to this many free sources (no holder, or an expired lease).
    TakeFree(i64),
    /// Take over up to this many sources from this replica, make-before-break.
    TakeOver(Uuid, i64),
}

/// The move for `me` holding `mine` connections, given the live replicas (`me` among them), the
/// enabled sources' total weight and the part no one holds, taking over at most `batch` sources
/// per turn from a loaded replica (a joining replica takes its share gradually) and everything it
/// can from a draining one.
pub fn next_move(me: Uuid, mine: i64, loads: &[Load], total: i64, free: i64, batch: i64) -> Move {
    let serving = loads.iter().filter(|l| !l.draining).count().max(1);
    let serving = i64::try_from(serving).unwrap_or(i64::MAX);
    let high = (total + serving - 1) / serving;
    let low = total / serving;
    if loads.iter().any(|l| l.replica == me && l.draining) {
        return Move::Stay;
    }
    if free > 0 && mine < high {
        return Move::TakeFree((high - mine).min(free));
    }
    // A draining replica's sources all go, at once, to whoever is below the ceiling.
    let draining = loads
        .iter()
        .filter(|l| l.replica != me && l.draining && l.connections > 0)
        .max_by_key(|l| l.connections);
    if let Some(d) = draining
        && mine < high
    {
        return Move::TakeOver(d.replica, d.connections.min(high - mine));
    }
    if mine >= low {
        return Move::Stay;
    }
    // A loaded one's, a batch per turn, down to the ceiling.
    let loaded = loads
        .iter()
        .filter(|l| l.replica != me && !l.draining && l.connections > high)
        .max_by_key(|l| l.connections);
    match loaded {
        Some(d) => Move::TakeOver(
            d.replica,
            (d.connections - high).min(low - mine).min(batch).max(1),
        ),
        None => Move::Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(connections: i64) -> Load {
        Load {
            replica: Uuid::now_v7(),
            connections,
            draining: false,
        }
    }

    #[test]
    fn a_lone_replica_takes_every_free_source() {
        let me = load(0);
        assert_eq!(next_move(me.replica, 0, &[me], 9, 9, 50), Move::TakeFree(9));
    }

    #[test]
    fn free_sources_are_shared_up_to_the_ceiling() {
        let (me, other) = (load(0), load(0));
        assert_eq!(
            next_move(me.replica, 0, &[me, other], 9, 9, 50),
            Move::TakeFree(5)
        );
        assert_eq!(next_move(me.replica, 5, &[me, other], 9, 4, 50), Move::Stay);
    }

    #[test]
    fn a_joining_replica_takes_over_from_the_loaded_one_in_batches() {
        let (me, other) = (load(0), load(100));
        assert_eq!(
            next_move(me.replica, 0, &[me, other], 100, 0, 20),
            Move::TakeOver(other.replica, 20)
        );
        assert_eq!(
            next_move(me.replica, 40, &[me, other], 100, 0, 20),
            Move::TakeOver(other.replica, 10)
        );
        assert_eq!(
            next_move(me.replica, 50, &[me, other], 100, 0, 20),
            Move::Stay
        );
    }

    #[test]
    fn a_spread_within_one_of_even_is_left_alone() {
        let (me, a, b) = (load(3), load(4), load(3));
        assert_eq!(next_move(me.replica, 3, &[me, a, b], 10, 0, 50), Move::Stay);
    }

    #[test]
    fn a_draining_replica_hands_over_everything_and_takes_nothing() {
        let mut drainer = load(6);
        drainer.draining = true;
        let me = load(3);
        assert_eq!(
            next_move(me.replica, 3, &[me, drainer], 9, 0, 2),
            Move::TakeOver(drainer.replica, 6)
        );
        // 3/2/2 and the one with three drains: the others take one, then the last one, although
        // each already has its floor.
        let mut drainer = load(3);
        drainer.draining = true;
        let (b, c) = (load(2), load(2));
        assert_eq!(
            next_move(b.replica, 3, &[drainer, b, c], 7, 0, 50),
            Move::TakeOver(drainer.replica, 1)
        );
        assert_eq!(
            next_move(drainer.replica, 6, &[me, drainer], 9, 3, 50),
            Move::Stay
        );
    }
}
