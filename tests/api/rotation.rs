//! `switchboard keys rotate` re-seals every secret under the new primary key; the app keeps
//! reading them after a restart; a wrong key fails start-up loudly, naming the key id.
use sea_orm::EntityTrait;
use secrecy::SecretString;
use serde_json::json;
use switchboard::crypto::Keyring;
use switchboard::startup::Application;

use crate::helpers::{ADMIN_KEY, Backend, spawn_with, test_settings};

async fn rotate_and_restart(backend: Backend) {
    let (mut settings, dir, pg) = test_settings(backend).await;
    let old = Keyring::generate_entry("old");
    settings.secret_keys = Some(SecretString::from(old.clone()));
    let app = spawn_with(backend, settings.clone(), dir, pg).await;
    let created = app
        .post(
            "/v1/websocket-sources",
            ADMIN_KEY,
            json!({"name": "g", "source": "g", "kind": "generic",
        "config": {"url": "wss://feed.example.com/", "headers": {"X-Token": "rotate-me"}}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let hook = app
        .post(
            "/v1/webhooks",
            ADMIN_KEY,
            json!({"name": "h", "source": "h", "verifier": {"preset": "github"}}),
        )
        .await;
    assert_eq!(hook.status, 201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    app.stop().await;

    // Rotate: a new primary key first, the old one still listed.
    let new = Keyring::generate_entry("new");
    let both = Keyring::parse(&format!("{new},{old}")).unwrap();
    let report = switchboard::rotate::reseal_all(&app.db, &both)
        .await
        .unwrap();
    assert_eq!(report.resealed, 2);
    for row in entity::websocket_source::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
    {
        assert_eq!(
            Keyring::sealed_kid(row.secrets.as_ref().unwrap()).unwrap(),
            "new"
        );
    }
    let again = switchboard::rotate::reseal_all(&app.db, &both)
        .await
        .unwrap();
    assert_eq!((again.resealed, again.current), (0, 2));

    // Restart with only the new key: secrets still open (a PATCH opens and re-seals them).
    let mut restarted = settings.clone();
    restarted.secret_keys = Some(SecretString::from(new.clone()));
    let (_, dir2, _) = test_settings(Backend::Sqlite).await;
    let app2 = spawn_with(backend, restarted, dir2, None).await;
    let patched = app2
        .patch(
            &format!("/v1/websocket-sources/{id}"),
            ADMIN_KEY,
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["config"]["header_names"], json!(["X-Token"]));
    app2.stop().await;

    // A wrong key under the same id fails loudly at start-up.
    let mut wrong = settings.clone();
    wrong.secret_keys = Some(SecretString::from(Keyring::generate_entry("new")));
    let err = Application::build(wrong)
        .await
        .err()
        .expect("start-up refuses a wrong key");
    let message = format!("{err:#}");
    assert!(message.contains("`new`"), "{message}");
    // And a keyring without the sealing key id names the missing id.
    let mut missing = settings.clone();
    missing.secret_keys = Some(SecretString::from(Keyring::generate_entry("other")));
    let err = Application::build(missing)
        .await
        .err()
        .expect("start-up refuses a missing key id");
    assert!(format!("{err:#}").contains("`new`"), "{err:#}");
    drop(app);
}

#[actix_web::test]
async fn rotation_keeps_secrets_readable_sqlite() {
    rotate_and_restart(Backend::Sqlite).await;
}

#[actix_web::test]
async fn rotation_keeps_secrets_readable_postgres() {
    rotate_and_restart(Backend::Postgres).await;
}
