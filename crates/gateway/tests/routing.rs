//! The gateway over real upstream servers: Host and path routing, readiness, retries, limits.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tidal_gateway::{Gateway, app};
use tidal_store::Store;
use tidal_store::resource::{INFERENCE_SERVICE, POD};
use tower_free::oneshot;

mod tower_free {
    //! `Router::oneshot` without the tower crate: call the service once.
    use axum::body::Body;
    use axum::http::{Request, Response};

    pub async fn oneshot(app: axum::Router, req: Request<Body>) -> Response<Body> {
        use tower_service::Service;
        let mut svc = app.into_service::<Body>();
        std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut svc, cx))
            .await
            .unwrap();
        svc.call(req).await.unwrap()
    }
}

/// An upstream answering `name` and the path it saw.
async fn upstream(name: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .fallback(move |req: Request<Body>| async move { format!("{name} {}", req.uri()) });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn pod(store: &Store, name: &str, app_label: &str, port: u16, ready: bool) {
    store
        .create(
            POD,
            Some("default"),
            json!({"metadata": {"name": name, "labels": {"app": app_label}, "annotations": {"tidal.dev/port": port.to_string()}},
                   "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}),
        )
        .unwrap();
}

fn isvc(store: &Store, name: &str) {
    store
        .create(
            INFERENCE_SERVICE,
            Some("default"),
            json!({"metadata": {"name": name}, "spec": {"predictor": {}},
                   "status": {"url": format!("http://{name}-default.example.com")}}),
        )
        .unwrap();
}

async fn send(gw: &Arc<Gateway>, host: &str, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let req = Request::post(path)
        .header("host", host)
        .body(Body::from(body))
        .unwrap();
    let resp = oneshot(app(gw.clone()), req).await;
    let status = resp.status();
    (
        status,
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned(),
    )
}

#[tokio::test]
async fn routes_by_host_and_path_to_ready_replicas_only() {
    let store = Store::in_memory().unwrap();
    let a = upstream("a").await;
    let dead = upstream("draining").await;
    isvc(&store, "iris");
    pod(
        &store,
        "iris-predictor-x-aaaaa",
        "isvc.iris-predictor",
        a,
        true,
    );
    pod(
        &store,
        "iris-predictor-x-bbbbb",
        "isvc.iris-predictor",
        dead,
        false,
    );
    let gw = Arc::new(Gateway::new());
    gw.rebuild(&store);
    for _ in 0..20 {
        let (s, body) = send(
            &gw,
            "iris-default.example.com",
            "/v2/models/iris/infer",
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            body, "a /v2/models/iris/infer",
            "never the not-ready replica"
        );
    }
    let (s, body) = send(
        &gw,
        "iris-predictor-default.example.com:8080",
        "/v1/models/iris",
        vec![],
    )
    .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "a /v1/models/iris"));
    let (s, body) = send(
        &gw,
        "127.0.0.1",
        "/serving/default/iris/v2/health/ready?x=1",
        vec![],
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, "a /v2/health/ready?x=1")
    );
    let (s, body) = send(&gw, "other.example.com", "/v2", vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        body.contains("no InferenceService serves host \\\"other.example.com\\\""),
        "{body}"
    );
    let c = gw.counters("default/iris").unwrap();
    assert_eq!(c.ok.load(Ordering::Relaxed), 22);
    assert_eq!(c.in_flight.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn balances_retries_and_limits() {
    let store = Store::in_memory().unwrap();
    let a = upstream("a").await;
    let b = upstream("b").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    isvc(&store, "m");
    pod(&store, "m-predictor-x-aaaaa", "isvc.m-predictor", a, true);
    pod(&store, "m-predictor-x-bbbbb", "isvc.m-predictor", b, true);
    pod(
        &store,
        "m-predictor-x-ccccc",
        "isvc.m-predictor",
        closed,
        true,
    );
    let gw = Arc::new(Gateway::new());
    gw.rebuild(&store);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let (s, body) = send(&gw, "m-default.example.com", "/", vec![]).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "a refused connection is retried elsewhere: {body}"
        );
        *seen
            .entry(body.split(' ').next().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        ["a", "b"],
        "both live replicas take traffic: {seen:?}"
    );
    let (s, _) = send(
        &gw,
        "m-default.example.com",
        "/",
        vec![0; tidal_gateway::MAX_BODY_BYTES + 1],
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // No ready replica: 503 naming the InferenceService.
    isvc(&store, "cold");
    gw.rebuild(&store);
    let (s, body) = send(&gw, "cold-default.example.com", "/", vec![]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("default/cold"), "{body}");
}

#[test]
fn power_of_two_choices_prefers_the_less_busy_replica() {
    use std::sync::atomic::AtomicUsize;
    use tidal_gateway::{Endpoint, pick};
    let ep = |port: u16, n: usize| {
        Arc::new(Endpoint {
            pod: port.to_string(),
            addr: ([127, 0, 0, 1], port).into(),
            outstanding: AtomicUsize::new(n),
        })
    };
    let busy = ep(1, 10);
    let idle = ep(2, 0);
    for seed in 0..100u64 {
        let chosen = pick(
            &[busy.clone(), idle.clone()],
            &[],
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
        .unwrap();
        assert_eq!(chosen.addr.port(), 2);
    }
    assert!(pick(std::slice::from_ref(&busy), &[busy.addr], 7).is_none());
}
