//! The idle scenario (1,000 connected sources by default, `--idle-sources N`, plain or `wss://`): resident memory and heap per
//! connection, CPU while idle; with the process figures it reads.

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;

use super::env::{Backend, Env, start_app};
use super::ingest::spawn_peer;

pub(crate) async fn idle(backend: Backend, sources: usize, tls: bool) {
    let mut env = Env::new(backend).await;
    // One peer host for every source: pace them at the global cap, not at 50/s.
    env.settings.connects_per_second_per_host = env.settings.connects_per_second;
    let (mut peer, url) = if tls {
        let dir = env.settings.data_dir.clone();
        let (ca, cert, key) = write_test_pki(&dir);
        env.settings.tls_ca_file = Some(ca);
        let (peer, plain) = spawn_peer(&["idle-tls", cert.as_str(), key.as_str()]);
        (peer, plain.replace("ws://127.0.0.1:", "wss://localhost:"))
    } else {
        spawn_peer(&["idle"])
    };
    let app = start_app(&env).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = proc_kib("VmRSS");
    let heap_before = heap_bytes();
    for i in 0..sources {
        app.source(&format!("idle-{i}"), &url).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut connected = 0;
    while Instant::now() < deadline {
        let row = app
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                app.db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM source_status WHERE state = 'connected'",
            ))
            .await
            .unwrap()
            .unwrap();
        connected = row.try_get::<i64>("", "n").unwrap();
        if connected as usize >= sources {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = proc_kib("VmRSS");
    let heap = heap_bytes().saturating_sub(heap_before);
    let cpu_before = cpu_seconds();
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let cpu = (cpu_seconds() - cpu_before) / window.as_secs_f64() * 100.0;
    println!(
        "idle{}  {:<9} {connected} connected sources: RSS +{:.1} MiB = {:.1} KiB per connection (heap in use {:.1} KiB per connection); CPU {cpu:.2} % of a core while idle",
        if tls { "-wss" } else { "    " },
        backend.name(),
        (after.saturating_sub(before)) as f64 / 1024.0,
        after.saturating_sub(before) as f64 / sources as f64,
        heap as f64 / 1024.0 / sources as f64,
    );
    let _ = peer.kill();
    app.stop().await;
}

/// Writes a CA (PEM), and a server certificate for `localhost` it issued with its key, into
/// `dir`; answers the three paths.
fn write_test_pki(dir: &std::path::Path) -> (std::path::PathBuf, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    let text = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    (paths.0.clone(), text(&paths.1), text(&paths.2))
}

/// Bytes the allocator has handed out and not taken back (jemalloc's `stats.allocated`).
pub(crate) fn heap_bytes() -> u64 {
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    tikv_jemalloc_ctl::stats::allocated::read().unwrap() as u64
}

pub(crate) fn proc_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}
