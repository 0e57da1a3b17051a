//! The HTTP servers: the API's listener, the API server (with `GET /metrics` unless that has a
//! listener of its own) and the metrics server. Started by `startup`.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use tracing_actix_web::TracingLogger;

use crate::api;
use crate::api::state::AppState;

/// Binds the API's listener; answers it with its port (port 0 picks one).
pub(crate) fn bind(address: std::net::SocketAddr) -> anyhow::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(address).with_context(|| format!("binding {address}"))?;
    let port = listener
        .local_addr()
        .context("reading the bound address")?
        .port();
    Ok((listener, port))
}

/// A server for `GET /metrics` alone, on its own address; returns it with its port.
pub(crate) fn metrics_server(
    bind: std::net::SocketAddr,
    state: web::Data<AppState>,
) -> anyhow::Result<(Server, u16)> {
    let listener =
        TcpListener::bind(bind).with_context(|| format!("binding the metrics address {bind}"))?;
    let port = listener
        .local_addr()
        .context("reading the bound metrics address")?
        .port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .service(api::metrics::metrics)
    })
    .workers(1)
    .listen(listener)
    .context("listening for metrics")?
    .shutdown_timeout(1)
    .run();
    tracing::info!(port, "serving metrics");
    Ok((server, port))
}

/// The HTTP server of the API (and of `GET /metrics` when `with_metrics`) on `listener`.
pub(crate) fn api_server(
    state: web::Data<AppState>,
    listener: TcpListener,
    with_metrics: bool,
) -> anyhow::Result<Server> {
    // The server stops gracefully on SIGTERM / SIGINT, waiting for requests in flight: waiting
    // claims answer at once rather than hold the stop for up to their `wait_s`.
    let notifier = state.notifier.clone();
    actix_web::rt::spawn(async move {
        crate::signals::stop_requested().await;
        notifier.close();
    });
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(api::fallback::head_as_get))
            .wrap(TracingLogger::default())
            // Outermost: takes a stream token out of the URL before anything logs it.
            .wrap(actix_web::middleware::from_fn(api::stream::hide_token))
            .app_data(state.clone())
            .configure(api::configure)
            .configure(|cfg| {
                if with_metrics {
                    cfg.service(api::metrics::metrics);
                }
            })
    })
    // A client that closes its side of the connection is gone: its request's handler is
    // dropped, so a long-polling claim whose worker hung up never takes a run for nobody (with
    // half-closed connections allowed, actix-web would keep waiting for it, see actix-web#1313).
    // Clients that send a request and then shut down their writing side are not supported.
    .h1_allow_half_closed(false)
    .listen(listener)
    .context("listening")?
    .shutdown_timeout(10)
    .run();
    Ok(server)
}
