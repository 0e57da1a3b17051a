//! Connect pacing for source connections: a token bucket per destination host under a global
//! safety cap, and a small start-up jitter, so a restart with many sources never turns into a
//! thundering herd on any one host (DESIGN §4.5) while sources of different hosts connect in
//! parallel.
//!
//! Pure like `policy`: time is passed in and randomness comes from the caller's `Rng`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;

/// Connects one host may take at once before its steady rate applies: one, so connects to a
/// host are spaced evenly and no second ever holds more than its rate (plus the one at its
/// edge). A restart still connects in parallel across hosts.
pub const HOST_BURST: u32 = 1;
/// Per-host buckets kept before idle ones (those with their full burst back) are dropped.
const HOSTS_BEFORE_PRUNE: usize = 4096;

/// A random start-up offset in `[0, spread]`, so sources loaded together do not connect together.
pub fn startup_jitter(spread: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// The start-up spread of `sources` sources loaded together: 20 µs each, at most 200 ms (5,000
/// sources are all scheduled within 0.1 s). The pacer, not the spread, keeps the rates; the
/// spread only keeps the supervisor's first tick from starting every actor's timer at once.
pub fn startup_spread(sources: usize) -> Duration {
    let micros = u64::try_from(sources)
        .unwrap_or(u64::MAX)
        .saturating_mul(20);
    Duration::from_micros(micros.min(200_000))
}

/// One token bucket (GCRA): `burst` connects at once, then `per_second`.
#[derive(Debug, Clone)]
pub struct ConnectRateLimiter {
    /// Time between two connects at the steady rate (rounded up, never faster than asked).
    interval: Duration,
    /// How far ahead of the steady schedule a burst may run: `interval * (burst - 1)`.
    tolerance: Duration,
    /// Theoretical time of the next connect at the steady rate.
    next: Option<Instant>,
}

impl ConnectRateLimiter {
    /// A limiter allowing `burst` (at least 1) immediate connects, then `per_second` connects a
    /// second. A zero, negative or NaN rate counts as 1.0.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let rate = if per_second > 0.0 { per_second } else { 1.0 };
        // Saturating float-to-int cast; ceil so the rate is never exceeded through rounding.
        let interval = Duration::from_nanos((1e9 / rate).ceil() as u64);
        let tolerance = interval
            .checked_mul(burst.max(1) - 1)
            .unwrap_or(Duration::MAX);
        Self {
            interval,
            tolerance,
            next: None,
        }
    }

    /// The earliest instant at or after `now` at which a connect conforms to this bucket.
    pub fn earliest(&self, now: Instant) -> Instant {
        match self.next {
            Some(next) => now.max(next.checked_sub(self.tolerance).unwrap_or(now)),
            None => now,
        }
    }

    /// Books a connect at `at`, which must not be before [`earliest`](Self::earliest).
    pub fn book(&mut self, at: Instant) {
        let next = self.next.map_or(at, |next| next.max(at));
        self.next = Some(next.checked_add(self.interval).unwrap_or(next));
    }

    /// Reserves one connect at `now`; the caller must wait the returned duration before it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let at = self.earliest(now);
        self.book(at);
        at - now
    }

    /// Whether the bucket is full again at `now` (it then behaves like a new one).
    fn is_idle(&self, now: Instant) -> bool {
        self.next.is_none_or(|next| next <= now)
    }
}

/// The rates a [`ConnectPacer`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct PacingRates {
    /// New connections per second to one destination host.
    pub per_host: f64,
    /// New connections per second over all hosts (the safety cap).
    pub global: f64,
}

/// Paces connects per destination host under a global cap: a connect to a host waits until its
/// host's bucket allows it and then for the first global time slot with room, and is booked in
/// both.
///
/// A host is the URL's host as written (a name or an address literal, lower-cased, without the
/// port), known before any DNS lookup: the permit is taken before the dial, a name served by many
/// addresses is still one service with one operator's limits, and `127.0.0.2` and `127.0.0.3`
/// are distinct hosts.
///
/// The global cap is a calendar of slots rather than a second token bucket: a host whose bucket
/// is booked seconds ahead must not push every other host's connects back, so the cap counts
/// connects per slot wherever in time they are booked.
#[derive(Debug)]
pub struct ConnectPacer {
    rates: PacingRates,
    hosts: HashMap<String, ConnectRateLimiter>,
    global: SlotCalendar,
    /// Per host, the connects actually started: a timer that fires late (a busy thread) must not
    /// let several booked connects start together, so each start is admitted against these too.
    started: HashMap<String, ConnectRateLimiter>,
}

impl ConnectPacer {
    /// A pacer with no connect booked yet.
    pub fn new(rates: PacingRates) -> Self {
        Self {
            rates,
            hosts: HashMap::new(),
            global: SlotCalendar::new(rates.global),
            started: HashMap::new(),
        }
    }

    /// Admits a booked connect to `host` that is about to start at `now`: zero when it may start
    /// now (and it is counted), else how long to wait before asking again. Booked connects whose
    /// timers fire on time are always admitted at once.
    pub fn admit(&mut self, host: &str, now: Instant) -> Duration {
        if self.started.len() >= HOSTS_BEFORE_PRUNE {
            self.started.retain(|_, bucket| !bucket.is_idle(now));
        }
        let rate = self.rates.per_host;
        let bucket = self
            .started
            .entry(host.to_ascii_lowercase())
            .or_insert_with(|| ConnectRateLimiter::new(rate, HOST_BURST));
        let at = bucket.earliest(now);
        if at <= now {
            bucket.book(now);
            Duration::ZERO
        } else {
            at - now
        }
    }

    /// Reserves one connect to `host` at `now`; answers how long to wait before it.
    pub fn reserve(&mut self, host: &str, now: Instant) -> Duration {
        if self.hosts.len() >= HOSTS_BEFORE_PRUNE {
            self.hosts.retain(|_, bucket| !bucket.is_idle(now));
        }
        let rate = self.rates.per_host;
        let bucket = self
            .hosts
            .entry(host.to_ascii_lowercase())
            .or_insert_with(|| ConnectRateLimiter::new(rate, HOST_BURST));
        let at = self.global.book_from(bucket.earliest(now), now);
        bucket.book(at);
        at - now
    }

    /// The most connects the global cap lets through beyond its rate in any window.
    pub fn global_burst(&self) -> u32 {
        self.global.per_slot * 2
    }

    /// Hosts with a bucket (idle ones are dropped once there are many).
    pub fn tracked_hosts(&self) -> usize {
        self.hosts.len()
    }
}

/// The global cap: time cut into slots of `per_slot / rate` seconds from the first booking, each
/// holding at most `per_slot` connects (one hundredth of a second's worth, at least one). Any
/// window of `w` seconds spans at most `w / slot + 2` slots, so it holds at most
/// `rate × w + 2 × per_slot` connects.
#[derive(Debug)]
struct SlotCalendar {
    slot: Duration,
    per_slot: u32,
    epoch: Option<Instant>,
    /// Connects booked per slot index, for slots not yet in the past.
    booked: BTreeMap<u64, u32>,
}

impl SlotCalendar {
    fn new(rate: f64) -> Self {
        let rate = if rate > 0.0 { rate } else { 1.0 };
        // Saturating float-to-int casts; the slot is rounded up so the rate is never exceeded.
        let per_slot = ((rate / 100.0).floor() as u32).max(1);
        let slot = Duration::from_nanos((f64::from(per_slot) * 1e9 / rate).ceil() as u64);
        Self {
            slot,
            per_slot,
            epoch: None,
            booked: BTreeMap::new(),
        }
    }

    /// Books the first instant at or after `from` in a slot with room, and answers it.
    fn book_from(&mut self, from: Instant, now: Instant) -> Instant {
        let epoch = *self.epoch.get_or_insert(now);
        let slot_nanos = self.slot.as_nanos().max(1);
        let index_of = |t: Instant| {
            u64::try_from(t.saturating_duration_since(epoch).as_nanos() / slot_nanos)
                .unwrap_or(u64::MAX)
        };
        // Slots before `now` can no longer be booked: forget them.
        self.booked = self.booked.split_off(&index_of(now));
        let mut index = index_of(from);
        while self.booked.get(&index).is_some_and(|n| *n >= self.per_slot) {
            index += 1;
        }
        *self.booked.entry(index).or_insert(0) += 1;
        let start = u32::try_from(index)
            .ok()
            .and_then(|i| self.slot.checked_mul(i))
            .and_then(|offset| epoch.checked_add(offset))
            .unwrap_or(from);
        from.max(start)
    }
}

/// The pacing key of a connection URL: its host, lower-cased, without port or brackets; the
/// whole string when it does not parse (it then fails at the dial, paced like any other).
pub fn pacing_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
        })
        .unwrap_or_else(|| url.to_owned())
}

#[cfg(test)]
#[path = "rate_limit/tests.rs"]
mod tests;
