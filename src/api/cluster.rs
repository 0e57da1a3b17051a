//! `GET /v1/cluster` (admin): the replicas sharing this database, with their heartbeat age, the
//! sources and connections each holds, and which one leads the once-per-cluster upkeep (a single
//! node answers `clustered: false` and no replicas). `POST /v1/cluster/drain` (admin) stops the
//! replica that receives it as SIGTERM does: it hands its sources over to the others
//! make-before-break, then exits. Both concern every org of the deployment, so only the admins of
//! the operator's org (`default`, made on first start) may call them; other orgs' admins get 403.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::body::NoBody;
use crate::api::caller::Admin;
use crate::api::state::AppState;
use crate::db;
use crate::error::ApiError;

/// One replica as the cluster sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaOut {
    /// Its id (new at every start).
    pub id: Uuid,
    /// Where it serves its API.
    pub address: String,
    /// Its version.
    pub version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: i64,
    /// Handing its sources over before it stops.
    pub draining: bool,
    /// Sources it holds.
    pub sources: i64,
    /// Connections those sources keep.
    pub connections: i64,
    /// Live-stream subscribers it serves.
    pub streams: i32,
    /// Whether it runs the once-per-cluster upkeep (undispatched-event sweep, retention).
    pub leader: bool,
    /// Whether this is the replica that answered.
    pub this_replica: bool,
}

/// The cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterOut {
    /// Whether this process runs as one of several replicas (`SWITCHBOARD_CLUSTER`).
    pub clustered: bool,
    /// The live replicas, by id.
    pub replicas: Vec<ReplicaOut>,
}

/// The replicas sharing this database.
#[utoipa::path(context_path = "/v1", tag = "ops", security(("bearer" = [])),
    responses((status = 200, body = ClusterOut), (status = 403, body = crate::error::Problem)))]
#[get("/cluster")]
pub async fn get_cluster(
    state: web::Data<AppState>,
    caller: Admin,
) -> Result<HttpResponse, ApiError> {
    require_operator(&state, &caller).await?;
    let cluster = &state.cluster;
    if !cluster.enabled {
        return Ok(HttpResponse::Ok().json(ClusterOut {
            clustered: false,
            replicas: Vec::new(),
        }));
    }
    let rows = db::cluster::replicas::alive(&state.db, cluster.lease.as_secs_f64()).await?;
    let leader = rows.iter().filter(|r| !r.draining).map(|r| r.id).min();
    let replicas = rows
        .into_iter()
        .map(|r| ReplicaOut {
            leader: Some(r.id) == leader,
            this_replica: r.id == cluster.replica_id,
            id: r.id,
            address: r.address,
            version: r.version,
            started_at: r.started_at,
            heartbeat_age_ms: r.heartbeat_age_ms,
            draining: r.draining,
            sources: r.sources,
            connections: r.connections,
            streams: r.streams,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ClusterOut {
        clustered: true,
        replicas,
    }))
}

/// Fails with 403 unless the caller is an admin of the operator's org
/// ([`db::orgs::operator_org_id`]): the cluster is every org's.
async fn require_operator(state: &AppState, caller: &Admin) -> Result<(), ApiError> {
    if db::orgs::operator_org_id(&state.db).await? == Some(caller.org_id) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "admin of an org other than the operator's".to_owned(),
        ))
    }
}

/// Hands this replica's sources over to the other replicas, then stops it (as SIGTERM does).
#[utoipa::path(context_path = "/v1", tag = "ops", security(("bearer" = [])),
    responses((status = 202), (status = 403, body = crate::error::Problem)))]
#[post("/cluster/drain")]
pub async fn drain(
    state: web::Data<AppState>,
    caller: Admin,
    _: NoBody,
) -> Result<HttpResponse, ApiError> {
    require_operator(&state, &caller).await?;
    state.notifier.close();
    state.cluster.stop_requested.notify_one();
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "status": "draining",
        "replica": state.cluster.enabled.then_some(state.cluster.replica_id),
    })))
}
