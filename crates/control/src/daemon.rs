//! `tidal up`: the store, the API server, the controller and the supervisor in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tidal_store::Store;

use crate::api::{ApiState, router};
use crate::controller::Controller;
use crate::supervisor::Supervisor;

/// Settings of the daemon.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the database, logs and downloaded models live.
    pub data_dir: PathBuf,
    /// The API address.
    pub listen: SocketAddr,
    /// The gateway address (InferenceService traffic).
    pub gateway_listen: SocketAddr,
    /// The domain of InferenceService URLs.
    pub ingress_domain: String,
    /// The `tidal` executable replicas run.
    pub tidal: PathBuf,
}

/// Runs until `shutdown` resolves; then stops replicas gracefully.
pub async fn run(
    opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&opts.data_dir)?;
    let db = opts.data_dir.join("tidal.db");
    let store = Arc::new(Store::open(&db).map_err(std::io::Error::other)?);
    tracing::info!(database = %db.display(), "State loaded");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let supervisor = Supervisor::new(store.clone(), opts.tidal.clone(), opts.data_dir.clone());
    let log_dir = supervisor.log_dir().to_path_buf();
    let supervisor = tokio::spawn(supervisor.run(stop_rx.clone()));
    let config = tidal_render::Config {
        ingress_domain: opts.ingress_domain.clone(),
        ..Default::default()
    };
    let controller = tokio::spawn(Controller::new(store.clone(), config).run(stop_rx.clone()));
    let autoscaler =
        tokio::spawn(crate::autoscaling::Autoscaler::new(store.clone()).run(stop_rx.clone()));

    let gateway = Arc::new(tidal_gateway::Gateway::new());
    let routes = tokio::spawn(tidal_gateway::run_routes(
        gateway.clone(),
        store.clone(),
        stop_rx.clone(),
    ));
    let gw_listener = tokio::net::TcpListener::bind(opts.gateway_listen).await?;
    tracing::info!(address = %gw_listener.local_addr()?, "Gateway listening");
    let mut gw_stop = stop_rx.clone();
    let gw_server = axum::serve(gw_listener, tidal_gateway::app(gateway.clone()))
        .with_graceful_shutdown(async move {
            let _ = gw_stop.changed().await;
        });
    let gw_server = tokio::spawn(async move { gw_server.await });

    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "API server listening");
    let app = router(Arc::new(ApiState {
        store,
        log_dir,
        gateway: Some(gateway),
    }));
    let mut api_stop = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = api_stop.changed().await;
    });
    let server = tokio::spawn(async move { server.await });
    shutdown.await;
    tracing::info!("Shutting down: stopping replicas");
    let _ = stop_tx.send(true);
    let _ = controller.await;
    let _ = autoscaler.await;
    let _ = supervisor.await;
    let _ = server.await;
    let _ = gw_server.await;
    let _ = routes.await;
    tracing::info!("Stopped");
    Ok(())
}
