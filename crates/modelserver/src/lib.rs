//! Tidal's model server: the serving core (a [`dataplane::DataPlane`] over [`model::Model`]s),
//! KServe's v1 and the Open Inference Protocol v2 as thin protocol adapters, Prometheus metrics,
//! and graceful shutdown. Every embedded replica runs this.

pub mod dataplane;
pub mod generative;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod runtimes;
pub mod storage;
pub mod tensor;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::dataplane::DataPlane;

/// The largest request body accepted (KServe has no limit; 64 MiB keeps a bad client from
/// exhausting memory).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The whole HTTP application: `/`, `/metrics`, v1 and v2.
pub fn app(dp: Arc<DataPlane>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { axum::Json(serde_json::json!({"status": "alive"})) }),
        )
        .route("/metrics", get(metrics))
        .with_state(dp.clone())
        .merge(protocol::v1::router(dp.clone()))
        .merge(protocol::v2::router(dp.clone()))
        .merge(protocol::openai::router(dp))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

async fn metrics(State(dp): State<Arc<DataPlane>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        dp.metrics_text(),
    )
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// in-flight requests to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dp: Arc<DataPlane>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(dp))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("Shutting down: finishing in-flight requests");
}
