//! The `apps.connections.open` budget of one Slack app, shared by every replica: Slack limits the
//! call per app, so with replicas (a hand-over opens the new holder's connections while the old
//! ones still run; several sources may use one app) the bucket lives in the database. The same
//! GCRA as the in-process [`crate::sources::slack::OpenBudget`]: calls at one per `interval`, a
//! burst of `burst`, none before a 429's `Retry-After`.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr};

use super::pg;

/// Books the next call of `app`; answers how long to wait before making it.
pub async fn reserve(
    db: &impl ConnectionTrait,
    app: &str,
    interval: Duration,
    burst: u32,
) -> Result<Duration, DbErr> {
    let tolerance = interval.saturating_mul(burst.max(1) - 1);
    // Every expression of SET reads the row as it was: `next` is the booked schedule, `at` the
    // moment this call may go.
    let sql = "INSERT INTO slack_open_budgets AS b (app, next_at, last_at) \
         VALUES ($1, now() + make_interval(secs => $2), now()) \
         ON CONFLICT (app) DO UPDATE SET \
           last_at = GREATEST(now(), GREATEST(b.next_at, now()) - make_interval(secs => $3), \
             COALESCE(b.not_before, now())), \
           next_at = GREATEST(GREATEST(b.next_at, now()), \
             GREATEST(now(), GREATEST(b.next_at, now()) - make_interval(secs => $3), \
               COALESCE(b.not_before, now()))) + make_interval(secs => $2) \
         RETURNING GREATEST(EXTRACT(EPOCH FROM (last_at - now())), 0)::float8 AS wait_s";
    let row = db
        .query_one_raw(pg(
            sql,
            vec![
                app.into(),
                interval.as_secs_f64().into(),
                tolerance.as_secs_f64().into(),
            ],
        ))
        .await?;
    let wait_s: f64 = match row {
        Some(row) => row.try_get("", "wait_s")?,
        None => 0.0,
    };
    Ok(Duration::try_from_secs_f64(wait_s).unwrap_or_default())
}

/// A 429 asked to wait `retry_after`: no call of `app` before then, on any replica.
pub async fn hold(
    db: &impl ConnectionTrait,
    app: &str,
    retry_after: Duration,
) -> Result<(), DbErr> {
    db.execute_raw(pg(
        "UPDATE slack_open_budgets SET \
           not_before = GREATEST(COALESCE(not_before, now()), now() + make_interval(secs => $2)), \
           next_at = GREATEST(next_at, now() + make_interval(secs => $2)) WHERE app = $1",
        vec![app.into(), retry_after.as_secs_f64().into()],
    ))
    .await?;
    Ok(())
}
