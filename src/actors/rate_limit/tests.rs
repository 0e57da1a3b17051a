#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const SEC: Duration = Duration::from_secs(1);

/// Checks that no window `[connects[i], connects[j]]` holds more than `burst + rate × window`.
fn assert_rate(mut connects: Vec<Instant>, rate: f64, burst: u32) -> Result<(), TestCaseError> {
    connects.sort();
    for i in 0..connects.len() {
        for j in i..connects.len() {
            let window = (connects[j] - connects[i]).as_secs_f64();
            let allowed = f64::from(burst) + rate * window + 1e-9;
            prop_assert!(
                ((j - i + 1) as f64) <= allowed,
                "{} connects in {window}s (rate {rate}, burst {burst})",
                j - i + 1
            );
        }
    }
    Ok(())
}

#[test]
fn simultaneous_reservations_are_spread() {
    let mut limiter = ConnectRateLimiter::new(10.0, 2);
    let now = Instant::now();
    let waits: Vec<u64> = (0..5)
        .map(|_| limiter.reserve(now).as_millis() as u64)
        .collect();
    assert_eq!(waits, [0, 0, 100, 200, 300]);
    // After a long idle period the burst is available again, but no more than the burst.
    let later = now + SEC * 60;
    let waits: Vec<u64> = (0..3)
        .map(|_| limiter.reserve(later).as_millis() as u64)
        .collect();
    assert_eq!(waits, [0, 0, 100]);
}

#[test]
fn hosts_are_paced_apart_and_the_global_cap_binds_them_together() {
    let mut pacer = ConnectPacer::new(PacingRates {
        per_host: 50.0,
        global: 1_000_000.0,
    });
    let now = Instant::now();
    // One host: its burst at once, then 20 ms apart.
    let one: Vec<u64> = (0..12)
        .map(|_| pacer.reserve("127.0.0.2", now).as_millis() as u64)
        .collect();
    let burst = HOST_BURST as usize;
    assert!(one[..burst].iter().all(|w| *w == 0), "{one:?}");
    let spaced: Vec<u64> = (1..=(12 - burst) as u64).map(|k| k * 20).collect();
    assert_eq!(&one[burst..], &spaced[..]);
    // Another host (and the same host in another case) is not held up by the first.
    assert!(pacer.reserve("127.0.0.3", now).is_zero());
    assert_eq!(pacer.reserve("EXAMPLE.com", now), Duration::ZERO);
    assert_eq!(pacer.tracked_hosts(), 3);

    // A host booked ahead does not hold up the others.
    let ahead = pacer.reserve("127.0.0.2", now);
    assert_eq!(ahead, SEC / 50 * (13 - HOST_BURST));
    assert!(pacer.reserve("127.0.0.4", now).is_zero());

    // A global cap of 1,000/s over 300 hosts: 10 connects per 10 ms slot.
    let mut capped = ConnectPacer::new(PacingRates {
        per_host: 50.0,
        global: 1_000.0,
    });
    let waits: Vec<Duration> = (0..300)
        .map(|i| capped.reserve(&format!("10.0.0.{i}"), now))
        .collect();
    assert_eq!(capped.global_burst(), 20);
    for (i, wait) in waits.iter().enumerate() {
        assert_eq!(*wait, SEC / 100 * (i as u32 / 10), "connect {i}");
    }
}

#[test]
fn idle_hosts_are_forgotten_once_there_are_many() {
    let mut pacer = ConnectPacer::new(PacingRates {
        per_host: 50.0,
        global: 1e9,
    });
    let now = Instant::now();
    for i in 0..HOSTS_BEFORE_PRUNE {
        pacer.reserve(&format!("host-{i}"), now);
    }
    assert_eq!(pacer.tracked_hosts(), HOSTS_BEFORE_PRUNE);
    pacer.reserve("late", now + SEC);
    assert_eq!(pacer.tracked_hosts(), 1);
}

#[test]
fn the_pacing_host_is_the_urls_host_without_port() {
    assert_eq!(pacing_host("ws://127.0.0.2:9000/feed"), "127.0.0.2");
    assert_eq!(
        pacing_host("wss://Feed.Example.COM/x?y=1"),
        "feed.example.com"
    );
    assert_eq!(pacing_host("wss://[::1]:443/"), "::1");
    assert_eq!(pacing_host("not a url"), "not a url");
}

#[test]
fn five_thousand_sources_over_fifty_hosts_connect_within_three_seconds_at_the_defaults() {
    let mut pacer = ConnectPacer::new(PacingRates {
        per_host: 50.0,
        global: 2_000.0,
    });
    let now = Instant::now();
    let last = (0..5_000)
        .map(|i| pacer.reserve(&format!("127.0.0.{}", 2 + i % 50), now))
        .max()
        .unwrap();
    assert!(last < SEC * 3, "{last:?}");
}

/// Starts that bunch (timers firing late) are spread again by `admit`.
#[test]
fn late_timers_are_admitted_at_the_host_rate() {
    let mut pacer = ConnectPacer::new(PacingRates {
        per_host: 50.0,
        global: 2_000.0,
    });
    let now = Instant::now();
    let waits: Vec<Duration> = (0..30).map(|_| pacer.reserve("h", now)).collect();
    // Every timer fires 600 ms late, at once: only the burst starts, the rest wait their turn.
    let late = now + SEC * 6 / 10;
    let admitted: Vec<Duration> = waits.iter().map(|_| pacer.admit("h", late)).collect();
    let burst = HOST_BURST as usize;
    assert!(admitted[..burst].iter().all(Duration::is_zero));
    assert!(
        admitted[burst..].iter().all(|w| *w == SEC / 50),
        "{admitted:?}"
    );
}

proptest! {
    /// Whenever the connects ask to start, and however often they are turned away and ask
    /// again after the wait they were given, the starts admitted keep the host's rate.
    #[test]
    fn admitted_starts_keep_the_host_rate(
        asks in prop::collection::vec(0u64..3_000, 1..120),
    ) {
        let mut pacer = ConnectPacer::new(PacingRates { per_host: 50.0, global: 2_000.0 });
        let start = Instant::now();
        let mut pending: Vec<Instant> = asks.iter().map(|ms| start + Duration::from_millis(*ms)).collect();
        let mut started = Vec::new();
        while !pending.is_empty() {
            pending.sort();
            let at = pending.remove(0);
            let wait = pacer.admit("h", at);
            if wait.is_zero() {
                started.push(at);
            } else {
                pending.push(at + wait);
            }
        }
        assert_rate(started, 50.0, HOST_BURST)?;
    }

    #[test]
    fn limiter_never_exceeds_burst_plus_rate(
        rate in 0.2f64..50.0, burst in 1u32..10, gaps in prop::collection::vec(0u64..2_000, 1..60),
    ) {
        let mut limiter = ConnectRateLimiter::new(rate, burst);
        let mut now = Instant::now();
        let mut connects = Vec::new();
        for gap in gaps {
            now += Duration::from_millis(gap);
            connects.push(now + limiter.reserve(now));
        }
        assert_rate(connects, rate, burst)?;
    }

    /// Whatever the order and timing of requests over a few hosts, no host's connects ever
    /// exceed its burst plus its rate over any window, and all of them together never exceed
    /// the global burst plus the global rate.
    #[test]
    fn pacer_keeps_every_hosts_rate_and_the_global_cap(
        per_host in 1.0f64..100.0,
        global in 1.0f64..400.0,
        requests in prop::collection::vec((0u64..50, 0usize..4), 1..300),
    ) {
        let mut pacer = ConnectPacer::new(PacingRates { per_host, global });
        let mut now = Instant::now();
        let mut by_host: Vec<Vec<Instant>> = vec![Vec::new(); 4];
        let mut all = Vec::new();
        for (gap, host) in requests {
            now += Duration::from_millis(gap);
            let at = now + pacer.reserve(&format!("127.0.0.{}", host + 2), now);
            by_host[host].push(at);
            all.push(at);
        }
        for connects in by_host {
            assert_rate(connects, per_host, HOST_BURST)?;
        }
        assert_rate(all, global, pacer.global_burst())?;
    }

    #[test]
    fn startup_jitter_stays_within_the_spread(spread_ms in 0u64..600_000, seed: u64) {
        let spread = Duration::from_millis(spread_ms);
        let mut rng = StdRng::seed_from_u64(seed);
        prop_assert!(startup_jitter(spread, &mut rng) <= spread);
    }

    #[test]
    fn the_startup_spread_is_a_fraction_of_a_second(sources in 0usize..1_000_000) {
        prop_assert!(startup_spread(sources) <= Duration::from_millis(200));
    }
}
