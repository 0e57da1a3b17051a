//! The board's guarantees over random event sequences (seeded RNG), checked against a model the
//! test keeps on its own from the effects it saw, not from the board's state.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::*;

/// What the test knows of one connection it saw started.
#[derive(Debug, Clone, Default)]
struct Seen {
    slot: usize,
    ready: bool,
    ended: bool,
    /// Told to stop or retire: no longer serving its slot.
    released: bool,
    /// Told to stop (a retired connection still drains, and counts as a socket).
    stopped: bool,
    /// A replacement was asked for it.
    aging: bool,
}

/// The test's own model of the board, built from effects only.
#[derive(Default)]
struct Model {
    connections: HashMap<Generation, Seen>,
    scheduled: HashMap<usize, Generation>,
    /// `Some` from a pause or a terminal failure until an operator lifts it.
    held: Option<SourceState>,
    shown: Option<Shown>,
}

impl Model {
    fn absorb(&mut self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::Schedule {
                    slot, generation, ..
                } => {
                    self.scheduled.insert(*slot, *generation);
                }
                Effect::Unschedule { slot } => {
                    self.scheduled.remove(slot);
                }
                Effect::Start { slot, generation } => {
                    assert_eq!(self.scheduled.remove(slot), Some(*generation));
                    let fresh = Seen {
                        slot: *slot,
                        ..Seen::default()
                    };
                    assert!(self.connections.insert(*generation, fresh).is_none());
                }
                Effect::Stop { generation } | Effect::Retire { generation } => {
                    let seen = self.connections.get_mut(generation).expect("known");
                    assert!(!seen.ended, "stopping an ended connection");
                    seen.released = true;
                    seen.stopped |= matches!(effect, Effect::Stop { .. });
                }
                Effect::Show(shown) => self.shown = Some(shown.clone()),
                Effect::TerminalFailure => self.held = Some(SourceState::Failed),
                _ => {}
            }
        }
    }

    fn serving(&self) -> impl Iterator<Item = (&Generation, &Seen)> {
        self.connections
            .iter()
            .filter(|(_, s)| !s.ended && !s.released)
    }

    /// A report about `generation` is stale: never started, ended, or told to stop.
    fn is_stale(&self, generation: Generation) -> bool {
        self.connections
            .get(&generation)
            .is_none_or(|s| s.ended || (s.released && !s.aging))
    }
}

#[derive(Debug, Clone)]
enum Event {
    StartDue(usize, u16),
    Ready(u16, Option<u32>),
    Ended(u16, u8),
    Replace(u16),
    Reconnect,
    Pause,
    Resume,
    Update(usize, bool),
    Advance(u64),
    Shutdown,
}

fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0usize..4, any::<u16>()).prop_map(|(s, g)| Event::StartDue(s, g)),
        4 => (any::<u16>(), prop::option::of(0u32..6)).prop_map(|(g, n)| Event::Ready(g, n)),
        4 => (any::<u16>(), 0u8..5).prop_map(|(g, r)| Event::Ended(g, r)),
        2 => any::<u16>().prop_map(Event::Replace),
        1 => Just(Event::Reconnect),
        1 => Just(Event::Pause),
        1 => Just(Event::Resume),
        1 => (1usize..4, any::<bool>()).prop_map(|(c, same)| Event::Update(c, same)),
        2 => (0u64..120_000).prop_map(Event::Advance),
        1 => Just(Event::Shutdown),
    ]
}

fn reason(kind: u8) -> DownReason {
    match kind {
        0 => DownReason::Transient("peer closed".into()),
        1 => DownReason::Terminal("invalid_auth".into()),
        2 => DownReason::RateLimited {
            detail: "429".into(),
            retry_after: Duration::from_secs(5),
        },
        3 => DownReason::Throttled {
            detail: "too_many_websockets".into(),
            min_delay: Duration::from_secs(30),
        },
        _ => DownReason::Stopped,
    }
}

/// Picks a generation: one the test saw (started or scheduled), or one never issued.
fn pick(model: &Model, raw: u16) -> Generation {
    let mut known: Vec<Generation> = model.connections.keys().copied().collect();
    known.extend(model.scheduled.values().copied());
    known.sort_unstable();
    if known.is_empty() || raw.is_multiple_of(7) {
        return 10_000 + Generation::from(raw);
    }
    known[usize::from(raw) % known.len()]
}

struct Run {
    closed: bool,
    board: Board,
    model: Model,
    now: Instant,
    wall: DateTime<Utc>,
    rng: StdRng,
}

impl Run {
    fn new(connections: usize, seed: u64) -> Run {
        let mut board = Board::new(connections, BackoffConfig::default());
        let mut model = Model::default();
        model.absorb(&board.start(Duration::from_millis(5)));
        Run {
            closed: false,
            board,
            model,
            now: Instant::now(),
            wall: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Feeds one event; checks what must hold of that step.
    fn step(&mut self, event: &Event) -> Result<(), TestCaseError> {
        let before = self.board.clone();
        let held_before = self.model.held;
        let (effects, stale) = match *event {
            Event::StartDue(slot, raw) => {
                let generation = pick(&self.model, raw);
                let stale = self.model.scheduled.get(&slot) != Some(&generation);
                (self.board.start_due(slot, generation), stale)
            }
            Event::Ready(raw, n) => {
                let generation = pick(&self.model, raw);
                let stale = self.model.is_stale(generation) || {
                    let seen = &self.model.connections[&generation];
                    seen.ready || seen.released || seen.aging
                };
                let effects = self.board.ready(generation, n, self.now, self.wall);
                if !stale {
                    self.model.connections.get_mut(&generation).unwrap().ready = true;
                }
                (effects, stale)
            }
            Event::Ended(raw, kind) => {
                let generation = pick(&self.model, raw);
                let stale = self.model.is_stale(generation);
                let why = reason(kind);
                let effects =
                    self.board
                        .ended(generation, &why, self.now, self.wall, &mut self.rng);
                if let Some(seen) = self.model.connections.get_mut(&generation) {
                    // A terminal failure of a connection serving its slot (not one already
                    // replaced, not one told to stop) fails the source.
                    if !stale && !seen.released && !seen.aging && kind == 1 {
                        prop_assert!(effects.contains(&Effect::TerminalFailure), "{effects:?}");
                    }
                    seen.ended = true;
                }
                (effects, stale)
            }
            Event::Replace(raw) => {
                let generation = pick(&self.model, raw);
                let stale =
                    self.model.is_stale(generation) || self.model.connections[&generation].released;
                let effects = self.board.replacement_due(generation);
                if !effects.is_empty() {
                    self.model.connections.get_mut(&generation).unwrap().aging = true;
                }
                (effects, stale)
            }
            Event::Reconnect => {
                self.model.held = None;
                (self.board.reconnect(), false)
            }
            Event::Pause => {
                self.model.held = Some(SourceState::Paused);
                (self.board.pause(), false)
            }
            Event::Resume => {
                self.model.held = None;
                (self.board.resume(), false)
            }
            Event::Update(connections, same) => {
                // A paused source stays paused; a failed one stays failed unless its connection
                // settings changed.
                let keeps = self.model.held == Some(SourceState::Paused)
                    || (self.model.held.is_some() && same);
                if !keeps {
                    self.model.held = None;
                }
                let backoff = BackoffConfig::default();
                (self.board.update(connections, backoff, same), false)
            }
            Event::Shutdown => {
                let effects = self.board.shutdown();
                if !self.closed {
                    // Every connection still open is told to stop.
                    let open = self.model.serving().count();
                    let stops = effects
                        .iter()
                        .filter(|e| matches!(e, Effect::Stop { .. }))
                        .count();
                    prop_assert!(stops >= open, "{stops} stops for {open} open: {effects:?}");
                }
                self.closed = true;
                self.model.absorb(&effects);
                return Ok(());
            }
            Event::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                self.wall += chrono::Duration::milliseconds(i64::try_from(ms).unwrap());
                (Vec::new(), false)
            }
        };
        if self.closed {
            prop_assert!(effects.is_empty(), "{event:?} after shutdown: {effects:?}");
            return Ok(());
        }
        if stale {
            prop_assert!(effects.is_empty(), "{event:?} was stale: {effects:?}");
            prop_assert_eq!(&self.board, &before, "{:?} was stale", event);
        }
        // Terminal and paused mean no start until an operator acts.
        let lifted = matches!(event, Event::Reconnect | Event::Resume | Event::Update(..));
        if held_before.is_some() && !lifted {
            let starts = effects
                .iter()
                .any(|e| matches!(e, Effect::Start { .. } | Effect::Schedule { .. }));
            prop_assert!(
                !starts,
                "held {held_before:?}, yet {event:?} started: {effects:?}"
            );
        }
        self.model.absorb(&effects);
        self.check()
    }

    /// What holds after every step.
    fn check(&self) -> Result<(), TestCaseError> {
        // Never two connections serving a slot, beyond the aging one of a make-before-break pair.
        let mut per_slot: HashMap<usize, (usize, usize)> = HashMap::new();
        for (_, seen) in self.model.serving() {
            let entry = per_slot.entry(seen.slot).or_default();
            if seen.aging {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
        }
        for (slot, (current, aging)) in &per_slot {
            prop_assert!(
                *current <= 1 && *aging <= 1,
                "slot {slot}: {current} + {aging}"
            );
        }
        // The board's socket count is the connections started, not ended and not told to stop.
        let sockets = self
            .model
            .connections
            .values()
            .filter(|s| !s.ended && !s.stopped)
            .count();
        prop_assert_eq!(self.board.sockets(), sockets);
        // Every change of the status was shown.
        let status = self.board.aggregate();
        prop_assert_eq!(self.model.shown.as_ref(), Some(&status));
        // The status is the documented function of the connections.
        let ready = self.model.serving().any(|(_, s)| s.ready && !s.released);
        let expected = match (self.model.held, ready) {
            (Some(held), _) => vec![held],
            (None, true) => vec![SourceState::Connected],
            (None, false) => vec![
                SourceState::Connecting,
                SourceState::Backoff,
                SourceState::Failing,
            ],
        };
        prop_assert!(
            expected.contains(&status.state),
            "{status:?}, expected {expected:?}"
        );
        if matches!(status.state, SourceState::Backoff | SourceState::Failing) {
            prop_assert!(status.next_retry_at.is_some());
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_event_sequences_keep_the_guarantees(
        connections in 1usize..4,
        events in prop::collection::vec(any_event(), 1..120),
        seed: u64,
    ) {
        let mut run = Run::new(connections, seed);
        run.check()?;
        for event in &events {
            run.step(event)?;
        }
    }
}

#[test]
fn a_replacement_takes_over_before_the_aging_connection_goes() {
    let mut run = Run::new(1, 1);
    let Some(&first) = run.model.scheduled.get(&0) else {
        panic!("nothing scheduled");
    };
    let effects = run.board.start_due(0, first);
    run.model.absorb(&effects);
    let now = run.now;
    run.model
        .absorb(&run.board.ready(first, None, now, run.wall));
    assert_eq!(run.board.aggregate().state, SourceState::Connected);
    let effects = run.board.replacement_due(first);
    let Some(Effect::Schedule { generation, .. }) = effects.last().cloned() else {
        panic!("no replacement scheduled: {effects:?}");
    };
    run.model.absorb(&effects);
    let started = run.board.start_due(0, generation);
    assert!(!started.iter().any(|e| matches!(e, Effect::Stop { .. })));
    assert_eq!(
        run.board.sockets(),
        2,
        "both serve until the replacement is ready"
    );
    assert_eq!(run.board.aggregate().state, SourceState::Connected);
    let effects = run.board.ready(generation, Some(2), now, run.wall);
    assert!(effects.contains(&Effect::Retire { generation: first }));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::GhostConnections { .. })),
        "the aging socket is still counted by the peer: {effects:?}"
    );
    let ended = run.board.ended(
        first,
        &DownReason::Transient("closed".into()),
        now,
        run.wall,
        &mut run.rng,
    );
    assert!(
        ended.is_empty(),
        "a retired connection's end is routine: {ended:?}"
    );
    assert_eq!(run.board.aggregate().consecutive_failures, 0);
}

#[test]
fn a_failed_replacement_shows_its_retry_once_the_aging_connection_goes() {
    let mut run = Run::new(1, 2);
    let first = run.model.scheduled[&0];
    run.model.absorb(&run.board.start_due(0, first));
    let now = run.now;
    run.model
        .absorb(&run.board.ready(first, None, now, run.wall));
    let effects = run.board.replacement_due(first);
    run.model.absorb(&effects);
    let replacement = run.model.scheduled[&0];
    run.model.absorb(&run.board.start_due(0, replacement));
    assert_eq!(
        run.board.writable(),
        Some(first),
        "the aging connection still writes"
    );
    let throttled = DownReason::Throttled {
        detail: "too_many_websockets".into(),
        min_delay: Duration::from_secs(30),
    };
    let effects = run
        .board
        .ended(replacement, &throttled, now, run.wall, &mut run.rng);
    run.model.absorb(&effects);
    assert_eq!(
        run.board.aggregate().state,
        SourceState::Connected,
        "still served"
    );
    let closed = DownReason::Transient("closed".into());
    let effects = run.board.ended(first, &closed, now, run.wall, &mut run.rng);
    run.model.absorb(&effects);
    let status = run.board.aggregate();
    assert_eq!(status.state, SourceState::Backoff, "{status:?}");
    assert!(
        status
            .next_retry_at
            .is_some_and(|at| at >= run.wall + chrono::Duration::seconds(30))
    );
    assert_eq!(status.detail.as_deref(), Some("too_many_websockets"));
    assert_eq!(run.board.writable(), None);
}

#[test]
fn a_board_started_held_connects_nothing_until_an_operator_acts() {
    let mut board = Board::new(2, BackoffConfig::default());
    let effects = board.start_held(SourceState::Paused, Some("paused by an operator".into()));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Schedule { .. } | Effect::Start { .. })),
        "{effects:?}"
    );
    assert_eq!(board.aggregate().state, SourceState::Paused);
    let resumed = board.resume();
    let schedules = resumed
        .iter()
        .filter(|e| matches!(e, Effect::Schedule { .. }))
        .count();
    assert_eq!(schedules, 2, "{resumed:?}");
    assert_eq!(board.aggregate().state, SourceState::Connecting);
}

#[test]
fn a_paused_source_stays_paused_whatever_a_new_spec_changes() {
    let mut board = Board::new(1, BackoffConfig::default());
    board.start_held(SourceState::Paused, Some("paused by an operator".into()));
    let starts = |effects: &[Effect]| {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::Schedule { .. } | Effect::Start { .. }))
            .count()
    };
    for same_connection in [true, false] {
        let effects = board.update(2, BackoffConfig::default(), same_connection);
        assert_eq!(starts(&effects), 0, "{effects:?}");
        assert_eq!(board.aggregate().state, SourceState::Paused);
    }
    // Resumed, it starts with the new slot count.
    assert_eq!(starts(&board.resume()), 2);
    // A failed source takes a new connection setting (it may be the fix), not a new expression.
    let mut failed = Board::new(1, BackoffConfig::default());
    failed.start_held(SourceState::Failed, Some("4401".into()));
    assert_eq!(starts(&failed.update(1, BackoffConfig::default(), true)), 0);
    assert_eq!(failed.aggregate().state, SourceState::Failed);
    assert_eq!(
        starts(&failed.update(1, BackoffConfig::default(), false)),
        1
    );
}
