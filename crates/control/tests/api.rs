//! The embedded API and the controller, through the real router over an in-memory store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tidal_control::api::{ApiState, router};
use tidal_control::controller::Controller;
use tidal_store::Store;
use tower::ServiceExt;

const ISVC: &str = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices";

fn seed() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/sklearn-v2-iris.yaml"
    ))
    .unwrap();
    tidal_api::split_documents(&text).remove(0).unwrap().value
}

fn setup() -> (Arc<Store>, axum::Router) {
    let store = Arc::new(Store::in_memory().unwrap());
    let app = router(Arc::new(ApiState {
        store: store.clone(),
        log_dir: std::env::temp_dir(),
        gateway: None,
    }));
    (store, app)
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
    content_type: &str,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn create_get_list_and_not_found() {
    let (_, app) = setup();
    let (s, created) = call(&app, "POST", ISVC, Some(seed()), "application/json").await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["metadata"]["annotations"]["serving.kserve.io/deploymentMode"], "Standard",
        "defaulted"
    );
    assert_eq!(created["metadata"]["generation"], 1);
    let (s, got) = call(
        &app,
        "GET",
        &format!("{ISVC}/sklearn-v2-iris"),
        None,
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
    let (s, list) = call(
        &app,
        "GET",
        "/apis/serving.kserve.io/v1beta1/inferenceservices",
        None,
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["kind"], "InferenceServiceList");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (s, body) = call(&app, "GET", &format!("{ISVC}/nope"), None, "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(
        body["message"],
        "inferenceservices.serving.kserve.io \"nope\" not found"
    );
    let (s, _) = call(&app, "POST", ISVC, Some(seed()), "application/json").await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = call(
        &app,
        "GET",
        "/apis/example.com/v1/namespaces/default/widgets",
        None,
        "",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_specs_get_status_causes_and_change_nothing() {
    let (store, app) = setup();
    let mut bad = seed();
    bad["spec"]["predictor"]["minReplicas"] = json!(9);
    bad["spec"]["predictor"]["autoScaling"]["metrics"][0]["resource"]["target"]["averageUtilization"] =
        json!(150);
    let (s, body) = call(&app, "POST", ISVC, Some(bad), "application/json").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["reason"], "Invalid");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.predictor.minReplicas",
            "spec.predictor.autoScaling.metrics[0].resource.target.averageUtilization"
        ]
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("InferenceService.serving.kserve.io \"sklearn-v2-iris\" is invalid: ["),
        "{body}"
    );
    let (items, _) = store
        .list(
            tidal_store::resource::INFERENCE_SERVICE,
            None,
            &Default::default(),
        )
        .unwrap();
    assert!(items.is_empty());
    let mut typo = seed();
    typo["spec"]["predictor"]["minReplica"] = json!(1);
    let (s, body) = call(&app, "POST", ISVC, Some(typo), "application/json").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.predictor.minReplica"
    );
}

#[tokio::test]
async fn stale_updates_conflict_and_patches_merge() {
    let (_, app) = setup();
    let (_, v1) = call(&app, "POST", ISVC, Some(seed()), "application/json").await;
    let mut a = v1.clone();
    a["spec"]["predictor"]["maxReplicas"] = json!(4);
    let (s, v2) = call(
        &app,
        "PUT",
        &format!("{ISVC}/sklearn-v2-iris"),
        Some(a),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v2}");
    assert_eq!(v2["metadata"]["generation"], 2);
    let mut b = v1.clone();
    b["spec"]["predictor"]["maxReplicas"] = json!(3);
    let (s, body) = call(
        &app,
        "PUT",
        &format!("{ISVC}/sklearn-v2-iris"),
        Some(b),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(body["reason"], "Conflict");
    let (s, v3) = call(
        &app,
        "PATCH",
        &format!("{ISVC}/sklearn-v2-iris"),
        Some(json!({"metadata": {"labels": {"team": "ml"}}, "spec": {"predictor": {"minReplicas": 2}}})),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v3}");
    assert_eq!(v3["spec"]["predictor"]["minReplicas"], 2);
    assert_eq!(
        v3["spec"]["predictor"]["maxReplicas"], 4,
        "the earlier update survives"
    );
    assert_eq!(v3["metadata"]["labels"]["team"], "ml");
    let (s, _) = call(
        &app,
        "PATCH",
        &format!("{ISVC}/sklearn-v2-iris"),
        Some(json!({"spec": {"predictor": {"minReplicas": 7}}})),
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "patches are validated too"
    );
}

#[tokio::test]
async fn controller_renders_owned_objects_and_deletion_cascades() {
    let (store, app) = setup();
    call(&app, "POST", ISVC, Some(seed()), "application/json").await;
    let controller = Controller::new(store.clone(), tidal_render::Config::default());
    controller.reconcile("default", "sklearn-v2-iris").unwrap();
    let (s, so) = call(
        &app,
        "GET",
        "/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/sklearn-v2-iris-predictor",
        None,
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(so["spec"]["triggers"][0]["type"], "cpu");
    assert_eq!(so["spec"]["minReplicaCount"], 1);
    assert_eq!(so["spec"]["maxReplicaCount"], 5);
    let (_, d) = call(
        &app,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/sklearn-v2-iris-predictor",
        None,
        "",
    )
    .await;
    assert_eq!(d["spec"]["replicas"], 1);
    let (_, svc) = call(
        &app,
        "GET",
        "/api/v1/namespaces/default/services/sklearn-v2-iris-predictor",
        None,
        "",
    )
    .await;
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    let (_, isvc) = call(&app, "GET", &format!("{ISVC}/sklearn-v2-iris"), None, "").await;
    assert_eq!(
        isvc["status"]["url"],
        "http://sklearn-v2-iris-default.example.com"
    );
    assert_eq!(
        isvc["status"]["clusterServingRuntimeName"],
        "kserve-sklearnserver"
    );
    let ready = isvc["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False", "no replica yet");

    // The autoscaler's replica count survives a re-render.
    call(
        &app,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/sklearn-v2-iris-predictor/scale",
        Some(json!({"spec": {"replicas": 3}})),
        "application/merge-patch+json",
    )
    .await;
    controller.reconcile("default", "sklearn-v2-iris").unwrap();
    let (_, d) = call(
        &app,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/sklearn-v2-iris-predictor",
        None,
        "",
    )
    .await;
    assert_eq!(d["spec"]["replicas"], 3);

    // Switching to hpa replaces the ScaledObject with an HPA.
    call(
        &app,
        "PATCH",
        &format!("{ISVC}/sklearn-v2-iris"),
        Some(json!({"metadata": {"annotations": {"serving.kserve.io/autoscalerClass": "hpa"}}})),
        "application/merge-patch+json",
    )
    .await;
    controller.reconcile("default", "sklearn-v2-iris").unwrap();
    let (s, _) = call(
        &app,
        "GET",
        "/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/sklearn-v2-iris-predictor",
        None,
        "",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, "GET", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/sklearn-v2-iris-predictor", None, "").await;
    assert_eq!(s, StatusCode::OK);

    let (s, _) = call(&app, "DELETE", &format!("{ISVC}/sklearn-v2-iris"), None, "").await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/apis/apps/v1/namespaces/default/deployments/sklearn-v2-iris-predictor",
        "/api/v1/namespaces/default/services/sklearn-v2-iris-predictor",
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/sklearn-v2-iris-predictor",
    ] {
        assert_eq!(
            call(&app, "GET", path, None, "").await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn watch_streams_changes_from_a_resource_version() {
    let (_, app) = setup();
    let (_, v1) = call(&app, "POST", ISVC, Some(seed()), "application/json").await;
    let rv = v1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    call(
        &app,
        "PATCH",
        &format!("{ISVC}/sklearn-v2-iris"),
        Some(json!({"metadata": {"labels": {"x": "1"}}})),
        "application/merge-patch+json",
    )
    .await;
    let req = Request::get(format!("{ISVC}?watch=true&resourceVersion={rv}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let line: Value = serde_json::from_slice(frame.data_ref().unwrap()).unwrap();
    assert_eq!(line["type"], "MODIFIED");
    assert_eq!(line["object"]["metadata"]["labels"]["x"], "1");
    // A live change arrives on the same stream.
    call(&app, "DELETE", &format!("{ISVC}/sklearn-v2-iris"), None, "").await;
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let line: Value = serde_json::from_slice(frame.data_ref().unwrap()).unwrap();
    assert_eq!(line["type"], "DELETED");
}

#[tokio::test]
async fn discovery_lists_the_kinds() {
    let (_, app) = setup();
    let (s, list) = call(&app, "GET", "/apis/keda.sh/v1alpha1", None, "").await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"scaledobjects") && names.contains(&"scaledobjects/status"),
        "{names:?}"
    );
    let (_, groups) = call(&app, "GET", "/apis", None, "").await;
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "serving.kserve.io")
    );
}

#[tokio::test]
async fn the_autoscaler_scales_deployments_of_plain_hpas_into_bounds() {
    let (store, app) = setup();
    let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {}}});
    call(
        &app,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some(d),
        "application/json",
    )
    .await;
    let hpa = json!({"metadata": {"name": "web"}, "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2, "maxReplicas": 4,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}});
    let (s, _) = call(
        &app,
        "POST",
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
        Some(hpa),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut autoscaler = tidal_control::autoscaling::Autoscaler::new(store.clone());
    autoscaler.poll_once();
    let (_, d) = call(
        &app,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
        "",
    )
    .await;
    assert_eq!(
        d["spec"]["replicas"], 2,
        "below minReplicas is raised to it"
    );
    let (_, hpa) = call(
        &app,
        "GET",
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web",
        None,
        "",
    )
    .await;
    assert_eq!(hpa["status"]["desiredReplicas"], 2);
    let (_, events) = call(&app, "GET", "/api/v1/namespaces/default/events", None, "").await;
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"SuccessfulRescale"), "{reasons:?}");
}
