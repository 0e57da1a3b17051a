//! The fault harness: each fault against real peers and real storage, reporting one line per
//! fault — events sent, events stored, runs expected, runs present — and asserting that nothing is
//! lost and no run is doubled. `scripts/test` runs it with the rest; the figures in
//! `docs/reliability.md` come from
//! `cargo test --test api faults:: -- --nocapture --test-threads=1 | grep '^FAULT'`.
//!
//! 1. SIGKILL of the service (a child process) mid-burst, on a Slack source (the peer redelivers
//!    what was not ACKed) and on a generic source with `ack_expr` (likewise), on both engines.
//! 2. PostgreSQL stopped for 30 s mid-stream, then started again.
//! 3. A peer that accepts, sends and drops, again and again.
//! 4. SQLite's disk full, then space again.

use std::path::Path;
use std::time::{Duration, Instant};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, create_pg_database, spawn_with, test_settings};
use crate::ingest::{create_automation, create_source, runs_of, undispatched, wait_state};
use crate::ledger_peer::LedgerPeer;
use crate::pgtemp::TempPostgres;
use crate::process::{Served, free_port, switchboard};
use crate::slack::{TOKEN, messages, slack_body};
use crate::slack_peer::{SlackPeer, SlackPeerConfig};

/// One row of the faults table.
struct Report {
    fault: &'static str,
    engine: &'static str,
    sent: u64,
    stored: u64,
    runs_expected: u64,
    runs_present: u64,
    note: String,
}

impl Report {
    /// Prints the row (`FAULT | …`) and asserts nothing was lost or doubled.
    fn check(self) {
        println!(
            "FAULT | {} | {} | sent {} | stored {} | runs expected {} | runs present {} | {}",
            self.fault,
            self.engine,
            self.sent,
            self.stored,
            self.runs_expected,
            self.runs_present,
            self.note
        );
        assert_eq!(
            self.stored, self.sent,
            "{}: events lost or doubled",
            self.fault
        );
        assert_eq!(
            self.runs_present, self.runs_expected,
            "{}: runs lost or doubled",
            self.fault
        );
    }
}

fn engine(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

async fn count_events(db: &DatabaseConnection, source: &str) -> u64 {
    entity::event::Entity::find()
        .filter(entity::event::Column::Source.eq(source))
        .count(db)
        .await
        .unwrap()
}

async fn count_runs(db: &DatabaseConnection) -> u64 {
    entity::automation_run::Entity::find()
        .count(db)
        .await
        .unwrap()
}

async fn count_runs_of(db: &DatabaseConnection, automation: &str) -> u64 {
    let id: uuid::Uuid = automation.parse().unwrap();
    entity::automation_run::Entity::find()
        .filter(entity::automation_run::Column::AutomationId.eq(id))
        .count(db)
        .await
        .unwrap()
}

async fn count_undispatched(db: &DatabaseConnection) -> u64 {
    entity::event::Entity::find()
        .filter(entity::event::Column::DispatchedAt.is_null())
        .count(db)
        .await
        .unwrap()
}

/// The service as a child process, on `port`, with the given storage.
struct Service {
    dir: tempfile::TempDir,
    port: u16,
    env: Vec<(String, String)>,
    served: Option<Served>,
    client: awc::Client,
}

impl Service {
    async fn new(
        backend: Backend,
        extra: &[(&str, String)],
    ) -> (Service, Option<crate::helpers::PgDatabase>) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut env = vec![
            ("SWITCHBOARD_BIND".to_owned(), format!("127.0.0.1:{port}")),
            (
                "SWITCHBOARD_BOOTSTRAP_API_KEY".to_owned(),
                ADMIN_KEY.to_owned(),
            ),
            (
                "SWITCHBOARD_ALLOW_PRIVATE_NETWORKS".to_owned(),
                "true".to_owned(),
            ),
            (
                "SWITCHBOARD_SECRET_KEYS".to_owned(),
                switchboard::crypto::Keyring::generate_entry("f1"),
            ),
        ];
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let (url, guard) = create_pg_database().await;
                env.push(("DATABASE_URL".to_owned(), url));
                Some(guard)
            }
        };
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let service = Service {
            dir,
            port,
            env,
            served: None,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        };
        (service, pg)
    }

    fn database_url(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                format!("sqlite://{}/data/switchboard.db", self.dir.path().display())
            })
    }

    /// Starts the process and waits until it is ready.
    async fn start(&mut self) {
        let mut command = switchboard(self.dir.path());
        command.arg("serve");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        self.served = Some(Served::start(command));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ready = self.client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the service never became ready: {:?}",
            self.served.as_ref().map(|s| &s.seen)
        );
    }

    fn kill(&mut self) {
        if let Some(served) = self.served.as_mut() {
            served.signal("KILL");
            served.wait_exit(Duration::from_secs(10));
        }
        self.served = None;
    }

    /// The process id of the running service.
    fn pid(&self) -> u32 {
        self.served.as_ref().map(|s| s.child.id()).unwrap()
    }

    /// Posts an operator command (no body expected back) and checks it was accepted.
    async fn act(&self, path: &str) {
        let resp = self
            .client
            .post(self.url(path))
            .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
            .send_json(&json!({}))
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let mut resp = self
            .client
            .post(self.url(path))
            .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
            .send_json(&body)
            .await
            .unwrap();
        let bytes = resp.body().await.unwrap();
        assert!(
            resp.status().is_success(),
            "{path}: {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let mut resp = self
            .client
            .get(self.url(path))
            .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&resp.body().await.unwrap()).unwrap()
    }

    /// Creates the source `body` describes and waits until it is connected; answers its id.
    async fn connect_source(&self, body: Value) -> String {
        let id = self.post("/v1/websocket-sources", body).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.wait_connected(&id).await;
        id
    }

    async fn wait_connected(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.get(&format!("/v1/websocket-sources/{id}")).await["status"]["state"]
                == "connected"
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("source {id} never connected");
    }
}

/// A generic source `slug` reading `peer`: event key `type`, dedup key `id`, ACK `{ack: id}`.
fn ledger_source(slug: &str, peer: &LedgerPeer) -> Value {
    json!({"name": slug, "source": slug, "kind": "generic", "event_key_expr": "type",
        "dedup_key_expr": "id", "config": {"url": peer.url(), "ack_expr": "{ack: id}"}})
}

/// Waits until every event of the service's database is dispatched.
async fn all_dispatched(db: &DatabaseConnection) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count_undispatched(db).await > 0 {
        assert!(Instant::now() < deadline, "events left undispatched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sigkill_mid_burst_slack(backend: Backend) {
    let peer = SlackPeer::start(
        SlackPeerConfig::new(TOKEN)
            .ack_deadline(Duration::from_secs(2))
            .max_redeliveries(50),
    );
    let (mut service, _pg) =
        Service::new(backend, &[("SWITCHBOARD_SLACK_API_BASE", peer.api_base())]).await;
    service.start().await;
    service
        .post("/v1/automations", json!({"name": "all", "trigger": {"type": "event", "source": "slack", "on": "message"}}))
        .await;
    let id = service
        .post(
            "/v1/websocket-sources",
            slack_body("slack", json!({"connections": 2})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    service.wait_connected(&id).await;
    let sent = peer.send_envelopes(messages(3_000, "k")).len() as u64;
    assert!(
        peer.wait_until(Duration::from_secs(60), |p| p.acks().len() >= 500)
            .await,
        "the burst started"
    );
    service.kill();
    let acked_before_kill = peer.acks().len();
    service.start().await;
    assert!(
        peer.wait_until(Duration::from_secs(120), |p| p.unacked().is_empty())
            .await,
        "{} envelopes never ACKed after the restart",
        peer.unacked().len()
    );
    let db = switchboard::db::connect_url(&service.database_url(), 2)
        .await
        .unwrap();
    all_dispatched(&db).await;
    Report {
        fault: "SIGKILL mid-burst, Slack source",
        engine: engine(backend),
        sent,
        stored: count_events(&db, "slack").await,
        runs_expected: sent,
        runs_present: count_runs(&db).await,
        note: format!(
            "{acked_before_kill} ACKed before the kill, {} redelivered by the peer",
            peer.redeliveries().len()
        ),
    }
    .check();
}

async fn sigkill_mid_burst_generic(backend: Backend) {
    let peer = LedgerPeer::start();
    peer.append("g", 3_000);
    let (mut service, _pg) = Service::new(backend, &[]).await;
    service.start().await;
    service
        .post(
            "/v1/automations",
            json!({"name": "all", "trigger": {"type": "event", "source": "feed", "on": "*"}}),
        )
        .await;
    let body = ledger_source("feed", &peer);
    service.post("/v1/websocket-sources", body).await;
    assert!(
        peer.wait_until(Duration::from_secs(60), |p| p.acked() >= 500)
            .await,
        "the burst started"
    );
    service.kill();
    let acked_before_kill = peer.acked();
    service.start().await;
    assert!(
        peer.wait_until(Duration::from_secs(120), |p| p.unacked() == 0)
            .await,
        "{} messages never ACKed after the restart",
        peer.unacked()
    );
    let db = switchboard::db::connect_url(&service.database_url(), 2)
        .await
        .unwrap();
    all_dispatched(&db).await;
    Report {
        fault: "SIGKILL mid-burst, generic source with ack_expr",
        engine: engine(backend),
        sent: peer.len() as u64,
        stored: count_events(&db, "feed").await,
        runs_expected: peer.len() as u64,
        runs_present: count_runs(&db).await,
        note: format!(
            "{acked_before_kill} ACKed before the kill, {} redelivered by the peer",
            peer.redelivered()
        ),
    }
    .check();
}

#[actix_web::test]
async fn sigkill_mid_burst_slack_sqlite() {
    sigkill_mid_burst_slack(Backend::Sqlite).await;
}

#[actix_web::test]
async fn sigkill_mid_burst_slack_postgres() {
    sigkill_mid_burst_slack(Backend::Postgres).await;
}

#[actix_web::test]
async fn sigkill_mid_burst_generic_sqlite() {
    sigkill_mid_burst_generic(Backend::Sqlite).await;
}

#[actix_web::test]
async fn sigkill_mid_burst_generic_postgres() {
    sigkill_mid_burst_generic(Backend::Postgres).await;
}

#[actix_web::test]
async fn postgres_restarted_mid_stream() {
    let pg = TempPostgres::start();
    let (mut settings, dir, _) = test_settings(Backend::Sqlite).await;
    settings.database_url = Some(pg.url());
    settings.allow_private_networks = true;
    let app = spawn_with(Backend::Postgres, settings, dir, None).await;
    let peer = LedgerPeer::start();
    let automation = create_automation(&app, "stream", json!("*"), None).await;
    let body = ledger_source("stream", &peer);
    let id = create_source(&app, body).await;
    wait_state(&app, &id, "connected").await;
    peer.append_paced("p", 2_000, 40.0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unready = app.request("GET", "/readyz", None, None).await;
    assert_eq!(unready.status, 503, "{}", unready.text);
    assert!(unready.headers.get("retry-after").is_some());
    tokio::time::sleep(Duration::from_secs(27)).await;
    let acked_while_down = peer.acked();
    let back = Instant::now();
    pg.start_again();
    let resumed = peer
        .wait_until(Duration::from_secs(10), |p| {
            p.first_ack_after(back).is_some()
        })
        .await;
    assert!(resumed, "no ACK after the database returned");
    let resumed_after = peer.first_ack_after(back).unwrap().duration_since(back);
    assert!(
        peer.wait_until(Duration::from_secs(60), |p| p.len() == 2_000
            && p.unacked() == 0)
            .await,
        "{} never ACKed",
        peer.unacked()
    );
    assert!(
        crate::helpers::eventually(Duration::from_secs(60), || async {
            undispatched(&app).await == 0
        })
        .await
    );
    assert_eq!(
        peer.connections().len(),
        1,
        "the source reconnected because of the database"
    );
    assert_eq!(app.request("GET", "/readyz", None, None).await.status, 200);
    assert!(
        resumed_after <= Duration::from_secs(1),
        "ACKs resumed {resumed_after:?} after the database returned"
    );
    Report {
        fault: "PostgreSQL stopped 30 s mid-stream",
        engine: "postgres",
        sent: 2_000,
        stored: count_events(&app.db, "stream").await,
        runs_expected: 2_000,
        runs_present: runs_of(&app, &automation).await,
        note: format!(
            "ACKs resumed {} ms after the database returned; {} ACKed before the restart; 1 connection throughout",
            resumed_after.as_millis(),
            acked_while_down
        ),
    }
    .check();
}

/// What the service process holds, as a leak check reads it. The SQLite pool opens connections
/// lazily (up to its maximum), each with its own worker thread and database files, so those are
/// counted apart: pool growth under a loaded machine is not a leak, a socket or a thread per flap is.
struct ProcessSample {
    /// Open descriptors other than the database's files under the data dir.
    fds: usize,
    /// Threads other than the SQLite pool's `sqlx-sqlite-worker-N`.
    threads: usize,
    /// TCP sockets the process holds to `peer_port`, in any state.
    peer_sockets: usize,
    /// Resident memory in KiB.
    rss_kib: u64,
}

/// Reads [`ProcessSample`] of `pid` from `/proc`; `data_dir` holds its database files.
fn process_sample(pid: u32, data_dir: &std::path::Path, peer_port: u16) -> ProcessSample {
    let mut fds = 0;
    let mut socket_inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.starts_with(data_dir) {
            continue;
        }
        fds += 1;
        let text = target.to_string_lossy();
        if let Some(inode) = text
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            socket_inodes.insert(inode.to_owned());
        }
    }
    // /proc/PID/net/tcp lists the namespace's sockets: "sl local rem st ... uid timeout inode".
    let remote_port = format!(":{peer_port:04X}");
    let peer_sockets = std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 9 && cols[2].ends_with(&remote_port) && socket_inodes.contains(cols[9])
        })
        .count();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            !comm.starts_with("sqlx-sqlite")
        })
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    ProcessSample {
        fds,
        threads,
        peer_sockets,
        rss_kib,
    }
}

#[actix_web::test]
async fn a_flapping_peer_backs_off_and_leaks_nothing() {
    let (mut service, _pg) = Service::new(Backend::Sqlite, &[]).await;
    service.start().await;
    let pid = service.pid();
    let peer = LedgerPeer::start();
    peer.append("f", 200);
    let automation = service
        .post(
            "/v1/automations",
            json!({"name": "flap", "trigger": {"type": "event", "source": "flap", "on": "*"}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = service.connect_source(ledger_source("flap", &peer)).await;
    let connected = process_sample(pid, service.dir.path(), peer.port());
    assert_eq!(
        connected.peer_sockets, 1,
        "a connected source holds one socket to its peer"
    );
    let path = |action: &str| format!("/v1/websocket-sources/{id}/{action}");
    service.act(&path("pause")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = process_sample(pid, service.dir.path(), peer.port());
    assert_eq!(
        before.peer_sockets, 0,
        "a paused source holds no socket to its peer"
    );

    // The peer accepts, sends one message and drops, every time. Left to itself the source backs
    // off as documented: full jitter under a cap doubling from 1 s, so attempts thin out.
    peer.set_flapping(true);
    let started = Instant::now();
    service.act(&path("resume")).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let natural: Vec<Instant> = peer
        .connections()
        .into_iter()
        .filter(|t| *t >= started)
        .collect();
    let ends: Vec<Instant> = peer.ends().into_iter().filter(|t| *t >= started).collect();
    let sent_before_forcing = peer.len();
    assert!(
        natural.len() >= 3 && natural.len() <= 12,
        "{} attempts in 20 s",
        natural.len()
    );
    // The n-th retry waits at most `min(cap, 1 s * 2^n)` after the connection went down. It is
    // measured from the peer's drop of the connection before it, so the connection's own life
    // is not counted; the slack covers the drop being noticed and a loaded machine's scheduling.
    // A backoff that did not grow is caught by the attempt count above.
    for (n, (dropped, next)) in ends.iter().zip(natural.iter().skip(1)).enumerate() {
        let cap = Duration::from_secs(1 << n.min(8)) + Duration::from_millis(2500);
        let gap = next.saturating_duration_since(*dropped);
        assert!(
            gap <= cap,
            "attempt {} came {gap:?} after the peer dropped the one before (cap {cap:?})",
            n + 1
        );
    }
    // An operator forcing reconnects drives 100 flaps in about a minute.
    let forced = Instant::now();
    for _ in 0..100 {
        service.act(&path("reconnect")).await;
        tokio::time::sleep(Duration::from_millis(550)).await;
    }
    let flaps = peer
        .connections()
        .into_iter()
        .filter(|t| *t >= forced)
        .count();
    peer.set_flapping(false);
    service.act(&path("reconnect")).await;
    assert!(
        peer.wait_until(Duration::from_secs(30), |p| p.unacked() == 0)
            .await,
        "{} unACKed",
        peer.unacked()
    );
    let db = switchboard::db::connect_url(&service.database_url(), 2)
        .await
        .unwrap();
    assert!(
        crate::helpers::eventually(Duration::from_secs(30), || async {
            count_undispatched(&db).await == 0
        })
        .await
    );
    service.act(&path("pause")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = process_sample(pid, service.dir.path(), peer.port());
    assert!(flaps >= 100, "{flaps} flaps");
    assert_eq!(
        after.peer_sockets, 0,
        "sockets to the peer left open after {flaps} flaps and a pause"
    );
    assert!(
        after.fds <= before.fds + 2,
        "file descriptors {} → {}",
        before.fds,
        after.fds
    );
    assert!(
        after.threads <= before.threads + 2,
        "threads {} → {}",
        before.threads,
        after.threads
    );
    let grown_kib = after.rss_kib.saturating_sub(before.rss_kib);
    assert!(
        grown_kib < 32 * 1024,
        "resident memory grew {grown_kib} KiB"
    );
    let sent = peer.len() as u64;
    assert!(sent as usize >= sent_before_forcing);
    Report {
        fault: "peer flapping (accept, send, drop)",
        engine: "sqlite",
        sent,
        stored: count_events(&db, "flap").await,
        runs_expected: sent,
        runs_present: count_runs_of(&db, &automation).await,
        note: format!(
            "{} attempts in 20 s left alone; {flaps} forced flaps in {:.0} s; at rest fds {} → {}, threads {} → {}, RSS +{grown_kib} KiB (the service process)",
            natural.len(),
            forced.elapsed().as_secs_f64(),
            before.fds,
            after.fds,
            before.threads,
            after.threads
        ),
    }
    .check();
}

/// Mounts a tmpfs of `mib` MiB at `dir` (as root, or through `sudo -n`).
fn mount_small(dir: &Path, mib: u32) -> bool {
    let args = [
        "mount",
        "-t",
        "tmpfs",
        "-o",
        &format!("size={mib}m"),
        "tmpfs",
    ];
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut command = if root {
        std::process::Command::new(args[0])
    } else {
        let mut c = std::process::Command::new("sudo");
        c.arg("-n").arg(args[0]);
        c
    };
    command.args(&args[1..]).arg(dir);
    command.status().is_ok_and(|s| s.success())
}

fn unmount(dir: &Path) {
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(dir)
        .status();
    let _ = std::process::Command::new("sudo")
        .args(["-n", "umount", "-l"])
        .arg(dir)
        .status();
}

/// Fills the file system of `filler` until not even 512 bytes fit.
fn fill(filler: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(filler).unwrap();
    for size in [64 * 1024, 4 * 1024, 512] {
        let block = vec![0u8; size];
        while file.write_all(&block).is_ok() {}
    }
    let _ = file.sync_all();
}

#[actix_web::test]
async fn sqlite_disk_full_then_space_again() {
    let (mut settings, dir, _) = test_settings(Backend::Sqlite).await;
    let data = dir.path().join("small");
    std::fs::create_dir(&data).unwrap();
    assert!(
        mount_small(&data, 32),
        "mounting a 32 MiB tmpfs needs root or passwordless sudo (scripts/test runs as root in CI)"
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            unmount(self.0);
        }
    }
    let _unmount = Unmount(&data);
    settings.data_dir = data.clone();
    settings.allow_private_networks = true;
    let app = spawn_with(Backend::Sqlite, settings, dir, None).await;
    let peer = LedgerPeer::start();
    let automation = create_automation(&app, "disk", json!("*"), None).await;
    let body = ledger_source("disk", &peer);
    let id = create_source(&app, body).await;
    wait_state(&app, &id, "connected").await;
    peer.append("a", 200);
    assert!(
        peer.wait_until(Duration::from_secs(30), |p| p.acked() == 200)
            .await
    );

    let filler = data.join("filler");
    fill(&filler);
    // Large messages: the free pages SQLite already holds cannot take them all.
    peer.set_padding(16 * 1024);
    peer.append("b", 300);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let acked_while_full = peer.acked();
    let status = app
        .get(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY)
        .await
        .body["status"]
        .clone();
    assert!(
        acked_while_full < 500,
        "everything ACKed although the disk is full"
    );
    assert!(
        status["counters"]["storage_errors"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );

    std::fs::remove_file(&filler).unwrap();
    if !peer
        .wait_until(Duration::from_secs(30), |p| p.unacked() == 0)
        .await
    {
        let logs = String::from_utf8_lossy(&crate::helpers::logs().lock().unwrap()).into_owned();
        let relevant: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .rev()
            .take(30)
            .collect();
        let status = app
            .get(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY)
            .await
            .body["status"]
            .clone();
        panic!(
            "{} never ACKed once space returned; status {status}; logs:\n{}",
            peer.unacked(),
            relevant.join("\n")
        );
    }
    assert!(
        crate::helpers::eventually(Duration::from_secs(30), || async {
            undispatched(&app).await == 0
        })
        .await
    );
    let check: Vec<String> = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "PRAGMA integrity_check",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    assert_eq!(check, vec!["ok".to_owned()], "the database is damaged");
    assert_eq!(
        peer.connections().len(),
        1,
        "the source reconnected because of the disk"
    );
    Report {
        fault: "SQLite disk full, then space again",
        engine: "sqlite",
        sent: 500,
        stored: count_events(&app.db, "disk").await,
        runs_expected: 500,
        runs_present: runs_of(&app, &automation).await,
        note: format!(
            "{} of 300 ACKed while full (only what was already stored); integrity_check ok; 1 connection throughout",
            acked_while_full - 200
        ),
    }
    .check();
}

/// A graceful stop writes every source's last counters before the process exits: events stored
/// just before SIGTERM are counted in the persisted status, which a restart continues from.
#[actix_web::test]
async fn a_graceful_stop_persists_the_last_counters() {
    let (mut service, _pg) = Service::new(Backend::Sqlite, &[]).await;
    service.start().await;
    let peer = LedgerPeer::start();
    let id = service.connect_source(ledger_source("last", &peer)).await;
    let db = switchboard::db::connect_url(&service.database_url(), 2)
        .await
        .unwrap();
    for round in 0..3 {
        // The counters are written once a second: a stop right after a burst finds the newest
        // increments not written yet, unless the stop writes them itself.
        let before = count_events(&db, "last").await;
        peer.append(&format!("r{round}-"), 25);
        assert!(
            crate::helpers::eventually(Duration::from_secs(20), || async {
                count_events(&db, "last").await == before + 25
            })
            .await
        );
    }
    let served = service.served.as_mut().unwrap();
    served.signal("TERM");
    assert_eq!(
        served.wait_exit(Duration::from_secs(30)),
        Some(0),
        "a clean exit"
    );
    let status = entity::source_status::Entity::find_by_id(id.parse::<uuid::Uuid>().unwrap())
        .one(&db)
        .await
        .unwrap()
        .expect("a status row");
    assert_eq!(status.counters["events_stored"], 75, "{}", status.counters);
    assert_eq!(status.counters["acks"], 75, "{}", status.counters);
}
