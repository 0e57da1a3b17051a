//! The `switchboard` binary as a user runs it: every subcommand as a subprocess, with its exit
//! status and output asserted, and a start exactly as the container image does it (unprivileged
//! user, a data dir it cannot write, PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait as _, Database};

#[path = "support/process.rs"]
mod process;
use process::{BIN, Served, free_port, switchboard};

const KEYS: &str = "k1:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=";

fn postgres_base() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A fresh PostgreSQL database for one test, dropped when the guard is.
struct PgDatabase {
    name: String,
    url: String,
}

async fn pg_database() -> PgDatabase {
    let name = format!("sb_cli_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(format!("{}/postgres", postgres_base()))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let url = format!("{}/{name}", postgres_base());
    PgDatabase { name, url }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(format!("{}/postgres", postgres_base())).await
                {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = admin.execute_unprepared(&sql).await;
                }
            });
        })
        .join();
    }
}

/// Runs `command` to its end: exit code, stdout, stderr.
fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `switchboard health` against `port` until it reports ready (or `timeout`).
/// `switchboard serve` with its data under `dir`, listening on 127.0.0.1:`port`.
fn serve(dir: &Path, port: u16) -> Served {
    let mut command = switchboard(dir);
    command
        .arg("serve")
        .env("SWITCHBOARD_BIND", format!("127.0.0.1:{port}"));
    Served::start(command)
}

fn wait_healthy(dir: &Path, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let (code, _, _) = run(switchboard(dir)
            .arg("health")
            .arg("--url")
            .arg(format!("http://127.0.0.1:{port}")));
        if code == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn keys_generate_prints_a_usable_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run(switchboard(dir.path()).args(["keys", "generate", "--kid", "prod1"]));
    assert_eq!(code, 0, "{err}");
    let entry = out.trim();
    let (kid, key) = entry.split_once(':').unwrap();
    assert_eq!(kid, "prod1");
    assert!(key.len() >= 40, "{entry}");
    let (code, _, err) = run(switchboard(dir.path()).args(["keys", "generate", "--kid", "a:b"]));
    assert_eq!(code, 1);
    assert!(err.starts_with("error:"), "{err}");
    // The printed entry is accepted as the keyring.
    let (code, out, err) = run(switchboard(dir.path())
        .arg("check")
        .env("SWITCHBOARD_SECRET_KEYS", entry));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration is valid"), "{out}");
}

#[test]
fn check_and_migrate_report_and_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(switchboard(dir.path()).arg("migrate"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "migrations applied");
    let (code, out, _) = run(switchboard(dir.path()).arg("check"));
    assert_eq!(code, 0);
    assert!(
        out.contains("configuration is valid (database sqlite://"),
        "{out}"
    );
    let (code, _, err) = run(switchboard(dir.path())
        .arg("check")
        .env("DATABASE_URL", "mysql://x"));
    assert_eq!(code, 1);
    assert!(err.contains("DATABASE_URL"), "{err}");
    let (code, _, err) = run(switchboard(dir.path())
        .arg("check")
        .env("SWITCHBOARD_REFRESH_GRACE_S", "5"));
    assert_eq!(code, 1);
    assert!(err.contains("SWITCHBOARD_REFRESH_GRACE_S"), "{err}");
    // Per-host pacing above the global cap could never be reached: refused, naming the setting.
    for (per_host, global) in [("0", "2000"), ("3000", "2000"), ("-5", "2000")] {
        let (code, _, err) = run(switchboard(dir.path())
            .arg("check")
            .env("SWITCHBOARD_CONNECTS_PER_SECOND_PER_HOST", per_host)
            .env("SWITCHBOARD_CONNECTS_PER_SECOND", global));
        assert_eq!(code, 1, "{per_host} under {global}");
        assert!(
            err.contains("SWITCHBOARD_CONNECTS_PER_SECOND_PER_HOST"),
            "{err}"
        );
    }
    let (code, _, err) = run(switchboard(dir.path())
        .arg("check")
        .env("SWITCHBOARD_CONNECTS_PER_SECOND_PER_HOST", "200")
        .env("SWITCHBOARD_CONNECTS_PER_SECOND", "200"));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(switchboard(dir.path()).arg("frobnicate"));
    assert_eq!(code, 2, "clap's usage error");
    assert!(err.contains("frobnicate"), "{err}");
}

#[actix_web::test]
async fn migrate_orgs_create_and_keys_rotate_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = pg_database().await;
    let url = db.url.clone();
    let old = "k0:YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=";
    let pg = |args: &[&str], keys: &str| {
        let mut command = switchboard(dir.path());
        command
            .args(args)
            .env("DATABASE_URL", &url)
            .env("SWITCHBOARD_SECRET_KEYS", keys);
        run(&mut command)
    };
    let (code, out, err) = pg(&["migrate"], old);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "migrations applied");
    let (code, out, err) = pg(&["orgs", "create", "Acme"], old);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Created org `Acme`") && out.contains("sbk_"),
        "{out}"
    );
    let (code, _, err) = pg(&["orgs", "create", "  "], old);
    assert_eq!(code, 1);
    assert!(err.contains("must not be blank"), "{err}");
    // A new primary key first, the old one kept: every secret is re-sealed under the new one.
    let (code, out, err) = pg(&["keys", "rotate"], &format!("{KEYS},{old}"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("re-encrypted") && out.contains("under key `k1`"),
        "{out}"
    );
    let (code, _, err) = pg(&["keys", "rotate"], "k1:short");
    assert_eq!(code, 1);
    assert!(err.contains("SWITCHBOARD_SECRET_KEYS"), "{err}");
}

#[test]
fn serve_prints_the_first_key_becomes_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut served = serve(dir.path(), port);
    let key_line = served.wait_line("sbk_", Duration::from_secs(60));
    assert!(key_line.trim().starts_with("sbk_"), "{key_line}");
    assert!(
        wait_healthy(dir.path(), port, Duration::from_secs(30)),
        "never ready"
    );
    let saved = std::fs::read_to_string(dir.path().join("data/bootstrap-admin-key")).unwrap();
    assert_eq!(saved.trim(), key_line.trim());
    // A claim waiting for work when the stop comes is answered (nothing to claim) at once, and
    // does not hold the stop for its 30 s.
    let claim = waiting_claim(port, key_line.trim().to_owned());
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    served.signal("TERM");
    assert_eq!(served.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        stopping.elapsed()
    );
    let answer = claim.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""items":[]"#), "{answer}");
    // Not running any more: health fails with status 1.
    let (code, _, err) =
        run(switchboard(dir.path()).args(["health", "--url", &format!("http://127.0.0.1:{port}")]));
    assert_eq!(code, 1);
    assert!(err.contains("did not answer"), "{err}");
    // A second start finds the key and prints none.
    let again = serve(dir.path(), port);
    assert!(wait_healthy(dir.path(), port, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(300));
    let printed: Vec<String> = again.lines.try_iter().collect();
    assert!(!printed.iter().any(|l| l.contains("sbk_")), "{printed:?}");
}

/// `POST /v1/runs/claim` waiting up to 30 s, over a raw connection; the whole answer.
fn waiting_claim(port: u16, key: String) -> std::thread::JoinHandle<String> {
    use std::io::{Read as _, Write as _};
    std::thread::spawn(move || {
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = r#"{"wait_s": 30}"#;
        write!(
            socket,
            "POST /v1/runs/claim HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = socket.read_to_string(&mut answer);
        answer
    })
}

#[test]
fn a_second_process_on_the_same_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _first = serve(dir.path(), port);
    assert!(
        wait_healthy(dir.path(), port, Duration::from_secs(60)),
        "never ready"
    );
    let other_port = free_port();
    let mut second = serve(dir.path(), other_port);
    let refusal = second.wait_line("another Switchboard process", Duration::from_secs(40));
    assert!(refusal.contains("switchboard.db"), "{refusal}");
    let code = second.wait_exit(Duration::from_secs(10));
    assert_eq!(
        code,
        Some(1),
        "exits with status 1, as docs/operations.md says"
    );
    // The second never served, and the first is untouched.
    let (code, _, _) = run(switchboard(dir.path()).args([
        "health",
        "--url",
        &format!("http://127.0.0.1:{other_port}"),
    ]));
    assert_eq!(code, 1);
    assert!(wait_healthy(dir.path(), port, Duration::from_secs(5)));
}

/// A copy of the binary anyone may run (the build directory is usually private to its owner).
fn public_binary(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("switchboard");
    std::fs::copy(BIN, &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[actix_web::test]
async fn starts_as_the_image_does_without_a_writable_data_dir() {
    let root = running_as_root();
    let dir = tempfile::tempdir().unwrap();
    let binary = public_binary(dir.path());
    let db = pg_database().await;
    let url = db.url.clone();
    let port = free_port();
    // The image's data dir, but missing and under a directory the service may not write.
    let data = dir.path().join("readonly/data");
    std::fs::create_dir(dir.path().join("readonly")).unwrap();
    let mut command = if root {
        // setpriv execs the service itself (no parent left behind when the test kills it).
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&binary);
        c
    } else {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.path().join("readonly"),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        Command::new(&binary)
    };
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD_BIND", format!("0.0.0.0:{port}"))
        .env("SWITCHBOARD_DATA_DIR", &data)
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("DATABASE_URL", &url)
        .env("SWITCHBOARD_SECRET_KEYS", KEYS)
        .current_dir(dir.path());
    let mut served = Served::start(command);
    let key_line = served.wait_line("sbk_", Duration::from_secs(60));
    assert!(
        wait_healthy(dir.path(), port, Duration::from_secs(30)),
        "never ready:\n{}",
        served.seen.join("\n")
    );
    served.wait_line(
        "could not save the bootstrap admin key",
        Duration::from_secs(5),
    );
    let key = key_line.trim();
    // The printed key works.
    let client = awc::Client::default();
    let mut me = client
        .get(format!("http://127.0.0.1:{port}/v1/me"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status().as_u16(), 200, "{:?}", me.body().await);
}

/// Whether the tests run as root (they then start the service as `nobody`, as the image does).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
