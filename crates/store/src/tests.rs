use super::*;
use crate::resource::{DEPLOYMENT, INFERENCE_SERVICE, POD, SCALED_OBJECT};

fn isvc(name: &str) -> Value {
    json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
           "metadata": {"name": name, "labels": {"team": "a"}}, "spec": {"predictor": {"minReplicas": 1}}})
}

#[test]
fn create_assigns_kubernetes_metadata() {
    let s = Store::in_memory().unwrap();
    let o = s
        .create(INFERENCE_SERVICE, Some("default"), isvc("a"))
        .unwrap();
    let m = &o["metadata"];
    assert_eq!(m["namespace"], "default");
    assert_eq!(m["generation"], 1);
    assert_eq!(m["uid"].as_str().unwrap().len(), 36);
    assert!(
        m["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 1
    );
    assert!(time::parse_rfc3339(m["creationTimestamp"].as_str().unwrap()).is_some());
    let err = s
        .create(INFERENCE_SERVICE, Some("default"), isvc("a"))
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    let g = s
        .create(
            POD,
            Some("default"),
            json!({"metadata": {"generateName": "p-"}}),
        )
        .unwrap();
    assert!(g["metadata"]["name"].as_str().unwrap().starts_with("p-"));
}

#[test]
fn stale_resource_version_conflicts_and_generation_tracks_spec() {
    let s = Store::in_memory().unwrap();
    let v1 = s
        .create(INFERENCE_SERVICE, Some("default"), isvc("a"))
        .unwrap();
    let mut a = v1.clone();
    a["spec"]["predictor"]["minReplicas"] = json!(2);
    let v2 = s
        .update(INFERENCE_SERVICE, Some("default"), a, UpdateScope::Main)
        .unwrap();
    assert_eq!(v2["metadata"]["generation"], 2);
    // A second writer still holding v1 loses, instead of overwriting.
    let mut b = v1.clone();
    b["spec"]["predictor"]["minReplicas"] = json!(3);
    let err = s
        .update(INFERENCE_SERVICE, Some("default"), b, UpdateScope::Main)
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    // Status updates leave spec and generation alone.
    let mut st = v2.clone();
    st["status"] = json!({"url": "http://x"});
    st["spec"]["predictor"]["minReplicas"] = json!(9);
    let v3 = s
        .update(INFERENCE_SERVICE, Some("default"), st, UpdateScope::Status)
        .unwrap();
    assert_eq!(v3["spec"]["predictor"]["minReplicas"], 2);
    assert_eq!(v3["status"]["url"], "http://x");
    assert_eq!(v3["metadata"]["generation"], 2);
    // A main update keeps the stored status.
    let mut m = v3.clone();
    m["status"] = json!(null);
    m["metadata"]["labels"]["team"] = json!("b");
    let v4 = s
        .update(INFERENCE_SERVICE, Some("default"), m, UpdateScope::Main)
        .unwrap();
    assert_eq!(v4["status"]["url"], "http://x");
    assert_eq!(v4["metadata"]["generation"], 2, "labels are not spec");
}

#[test]
fn concurrent_modifications_never_lose_an_update() {
    let s = Arc::new(Store::in_memory().unwrap());
    s.create(
        DEPLOYMENT,
        Some("default"),
        json!({"metadata": {"name": "d"}, "spec": {"replicas": 0}}),
    )
    .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    s.modify(
                        DEPLOYMENT,
                        Some("default"),
                        "d",
                        None,
                        UpdateScope::Main,
                        |cur| {
                            let mut next = cur.clone();
                            next["spec"]["replicas"] =
                                json!(cur["spec"]["replicas"].as_i64().unwrap() + 1);
                            Ok::<_, StoreError>(next)
                        },
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        s.get(DEPLOYMENT, Some("default"), "d").unwrap()["spec"]["replicas"],
        200
    );
}

#[test]
fn delete_cascades_to_owned_objects() {
    let s = Store::in_memory().unwrap();
    let owner = s
        .create(INFERENCE_SERVICE, Some("default"), isvc("a"))
        .unwrap();
    let uid = owner["metadata"]["uid"].clone();
    let owned = |name: &str, uid: &Value| json!({"metadata": {"name": name, "ownerReferences": [{"uid": uid, "name": "a", "kind": "InferenceService", "apiVersion": "serving.kserve.io/v1beta1"}]}, "spec": {}});
    let d = s
        .create(DEPLOYMENT, Some("default"), owned("a-predictor", &uid))
        .unwrap();
    s.create(SCALED_OBJECT, Some("default"), owned("a-predictor", &uid))
        .unwrap();
    s.create(
        POD,
        Some("default"),
        owned("a-predictor-abc-12345", &d["metadata"]["uid"]),
    )
    .unwrap();
    s.create(
        DEPLOYMENT,
        Some("default"),
        json!({"metadata": {"name": "unrelated"}, "spec": {}}),
    )
    .unwrap();
    let mut rx = s.subscribe();
    s.delete(INFERENCE_SERVICE, Some("default"), "a").unwrap();
    let all = LabelSelector::default();
    assert!(s.list(SCALED_OBJECT, None, &all).unwrap().0.is_empty());
    assert!(
        s.list(POD, None, &all).unwrap().0.is_empty(),
        "grandchildren go too"
    );
    assert_eq!(s.list(DEPLOYMENT, None, &all).unwrap().0.len(), 1);
    let mut deleted = Vec::new();
    while let Ok(e) = rx.try_recv() {
        assert_eq!(e.type_, EventType::Deleted);
        deleted.push(format!("{}/{}", e.resource.kind, e.name()));
    }
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "Deployment/a-predictor",
            "InferenceService/a",
            "Pod/a-predictor-abc-12345",
            "ScaledObject/a-predictor"
        ]
    );
}

#[test]
fn list_by_selector_and_watch_from_a_resource_version() {
    let s = Store::in_memory().unwrap();
    s.create(INFERENCE_SERVICE, Some("default"), isvc("a"))
        .unwrap();
    let (_, rv) = s
        .list(
            INFERENCE_SERVICE,
            Some("default"),
            &LabelSelector::default(),
        )
        .unwrap();
    let mut b = isvc("b");
    b["metadata"]["labels"]["team"] = json!("z");
    s.create(INFERENCE_SERVICE, Some("ns2"), b).unwrap();
    let sel = LabelSelector::parse("team=z").unwrap();
    let (items, _) = s.list(INFERENCE_SERVICE, None, &sel).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["namespace"], "ns2");
    let since = s.events_since(rv).unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].name(), "b");
    assert_eq!(since[0].type_, EventType::Added);
}

#[test]
fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidal.db");
    let uid = {
        let s = Store::open(&path).unwrap();
        s.create(INFERENCE_SERVICE, Some("default"), isvc("a"))
            .unwrap()["metadata"]["uid"]
            .clone()
    };
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.get(INFERENCE_SERVICE, Some("default"), "a").unwrap()["metadata"]["uid"],
        uid
    );
    let rv = s.resource_version().unwrap();
    let next = s
        .create(INFERENCE_SERVICE, Some("default"), isvc("b"))
        .unwrap();
    assert!(
        next["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv
    );
}
