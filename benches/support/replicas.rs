//! The replicas scenario (PostgreSQL only): `sources` generic sources over 50 loopback hosts (the
//! child-process peer of `hosts_peer.rs`), held by one replica running in this process with
//! `cluster = true`. A second replica is started as a child process (the `switchboard` binary):
//! time until the leases are spread evenly (±1) and every source is connected exactly once. Then
//! the child is SIGKILLed: time until every one of its sources is held and connected again.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait as _, DatabaseConnection, Statement};
use secrecy::ExposeSecret as _;

use super::env::{Backend, Env, start_app};
use super::reconnect::{HostsPeer, check_open_files, create_sources};

/// Lease counts per replica (unexpired leases only), most first.
async fn spread(db: &DatabaseConnection) -> Vec<i64> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM source_leases WHERE expires_at >= now() \
             GROUP BY replica_id ORDER BY n DESC",
        ))
        .await
        .unwrap();
    rows.iter().map(|r| r.try_get("", "n").unwrap()).collect()
}

/// Waits until `cond` holds for the lease counts and the peer has `sources` connections open;
/// answers how long it took from `since`.
async fn until(
    db: &DatabaseConnection,
    peer: &mut HostsPeer,
    sources: usize,
    since: Instant,
    cond: impl Fn(&[i64]) -> bool,
) -> Option<Duration> {
    while since.elapsed() < Duration::from_secs(300) {
        let counts = spread(db).await;
        if cond(&counts) && peer.ask("open").parse::<usize>().unwrap() == sources {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn replica(env: &Env) -> Child {
    let settings = &env.settings;
    let keys = settings
        .secret_keys
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned();
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", settings.database_url())
        .env("SWITCHBOARD_BIND", "127.0.0.1:0")
        .env("SWITCHBOARD_DATA_DIR", settings.data_dir.join("replica-2"))
        .env("SWITCHBOARD_SECRET_KEYS", keys)
        .env("SWITCHBOARD_CLUSTER", "true")
        .env("SWITCHBOARD_ALLOW_PRIVATE_NETWORKS", "true")
        .env("SWITCHBOARD_CONNECTS_PER_SECOND", "2000")
        .env("SWITCHBOARD_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn show(what: &str, took: Option<Duration>) {
    match took {
        Some(took) => println!("          {what}: {:.1} s", took.as_secs_f64()),
        None => println!("          {what}: not within 300 s"),
    }
}

pub(crate) async fn replicas(sources: usize) {
    check_open_files(sources + 1_000);
    let mut env = Env::new(Backend::Postgres).await;
    env.settings.cluster = true;
    let mut peer = HostsPeer::spawn(50);
    let app = start_app(&env).await;
    let created = Instant::now();
    create_sources(&app, &peer, sources).await;
    let total = i64::try_from(sources).unwrap();
    let alone = until(&app.db, &mut peer, sources, created, |c| c == [total]).await;
    println!(
        "replicas  postgres  {sources} sources over 50 hosts, batch {} per turn, lease {} s",
        env.settings.cluster_handover_batch, env.settings.cluster_lease_s
    );
    show(
        "one replica: created through the API, all held and connected",
        alone,
    );
    let joined = Instant::now();
    let mut second = replica(&env);
    let even = |c: &[i64]| c.len() == 2 && c[0] - c[1] <= 1 && c.iter().sum::<i64>() == total;
    let balanced = until(&app.db, &mut peer, sources, joined, even).await;
    show(
        "a second replica joins → spread ±1, each source connected once",
        balanced,
    );
    let killed = Instant::now();
    let _ = second.kill();
    let _ = second.wait();
    let back = until(&app.db, &mut peer, sources, killed, |c| c == [total]).await;
    show(
        "the second replica SIGKILLed → all held and connected again",
        back,
    );
    peer.kill();
    app.stop().await;
}
