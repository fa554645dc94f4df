//! Golden tests for every mapping case in KServe's own tests (keda_reconciler_test.go,
//! hpa_reconciler_test.go, rawkube_controller_test.go, test_autoscaling.py), one named test each,
//! plus the seed's two documents. Every rendered ScaledObject is checked against KEDA's CRD and
//! every input against KServe's CRD by the helpers.

mod common;

use common::*;
use tidal_api::annotations::AutoscalerClass;
use tidal_render::{Autoscaler, Config};

fn so_spec(predictor: &str) -> String {
    yaml(&scaled_object(&render_default(&isvc(&keda_isvc(predictor)))).spec)
}

/// Renders without validation: KServe's reconciler tests feed it specs its webhook rejects.
fn so_spec_unvalidated(predictor: &str) -> String {
    so_spec(predictor)
}

fn metrics(body: &str) -> String {
    let indent: String = body.lines().map(|l| format!("    {l}\n")).collect();
    format!("{MODEL}minReplicas: 1\nmaxReplicas: 3\nautoScaling:\n  metrics:\n{indent}")
}

// 1, 10, 12: replica bounds without autoScaling.
#[test]
fn min_and_max_without_autoscaling() {
    insta::assert_snapshot!(so_spec(&format!("{MODEL}minReplicas: 1\nmaxReplicas: 3")));
}

#[test]
fn only_max_replicas_defaults_min_to_one() {
    insta::assert_snapshot!(so_spec(&format!("{MODEL}maxReplicas: 4")));
}

// 11: KServe lifts max to min.
#[test]
fn min_above_max_lifts_max_to_min() {
    insta::assert_snapshot!(so_spec_unvalidated(&format!(
        "{MODEL}minReplicas: 5\nmaxReplicas: 3"
    )));
}

#[test]
fn only_min_replicas_pins_max_to_min() {
    insta::assert_snapshot!(so_spec(&format!("{MODEL}minReplicas: 2")));
}

// §12 pitfall: KServe would emit maxReplicaCount 0.
#[test]
fn scale_to_zero_without_max_gets_max_one() {
    let predictor = metrics("- type: External\n  external: {metric: {query: up, serverAddress: 'http://p:9090'}, target: {type: Value, value: '1'}}")
        .replace("minReplicas: 1\nmaxReplicas: 3\n", "minReplicas: 0\n");
    insta::assert_snapshot!(so_spec(&predictor));
}

// 2
#[test]
fn cpu_utilization_50() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}"
    )));
}

// 3
#[test]
fn external_prometheus_with_namespace() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: External\n  external:\n    metric: {backend: prometheus, serverAddress: 'http://prometheus-server', query: http_requests_total, namespace: test-namespace}\n    target: {type: Value, value: '100.9'}"
    )));
}

// 4
#[test]
fn podmetric_opentelemetry() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: PodMetric\n  podmetric:\n    metric: {backend: opentelemetry, query: otel_query, serverAddress: 'http://otel-server', operationOverTime: sum}\n    target: {type: Value, value: '200'}"
    )));
}

// 5
#[test]
fn rendering_is_deterministic_and_sensitive_to_max() {
    let a = render_default(&isvc(&keda_isvc(&format!(
        "{MODEL}minReplicas: 1\nmaxReplicas: 3"
    ))));
    let b = render_default(&isvc(&keda_isvc(&format!(
        "{MODEL}minReplicas: 1\nmaxReplicas: 3"
    ))));
    let c = render_default(&isvc(&keda_isvc(&format!(
        "{MODEL}minReplicas: 1\nmaxReplicas: 5"
    ))));
    assert_eq!(a, b);
    assert_ne!(scaled_object(&a).spec, scaled_object(&c).spec);
}

// 7
#[test]
fn cpu_average_value_keeps_150m() {
    insta::assert_snapshot!(so_spec_unvalidated(&metrics(
        "- type: Resource\n  resource: {name: cpu, target: {type: AverageValue, averageValue: 150m}}"
    )));
}

// 8
#[test]
fn memory_value_keeps_512mi() {
    insta::assert_snapshot!(so_spec_unvalidated(&metrics(
        "- type: Resource\n  resource: {name: memory, target: {type: Value, value: 512Mi}}"
    )));
}

// 9
#[test]
fn cpu_utilization_without_value_defaults_to_80() {
    insta::assert_snapshot!(so_spec_unvalidated(&metrics(
        "- type: Resource\n  resource: {name: cpu, target: {type: Utilization}}"
    )));
}

// 13
#[test]
fn cpu_75_and_memory_256mi() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 75}}\n- type: Resource\n  resource: {name: memory, target: {type: AverageValue, averageValue: 256Mi}}"
    )));
}

// 14
#[test]
fn external_prometheus_with_authentication() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: External\n  external:\n    metric: {backend: prometheus, serverAddress: 'http://prometheus-server', query: q, namespace: test-ns}\n    authenticationRef: {authModes: bearer, authenticationRef: {name: auth-secret}}\n    target: {type: Value, value: '123'}"
    )));
}

// 15
#[test]
fn external_prometheus_without_namespace_or_auth() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: External\n  external: {metric: {backend: prometheus, serverAddress: 'http://prometheus-server', query: q}, target: {type: Value, value: '99'}}"
    )));
}

#[test]
fn graphite_gets_the_query_time_keda_requires() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: External\n  external: {metric: {backend: graphite, serverAddress: 'http://graphite:81', query: 'stats.requests', namespace: ignored}, target: {type: Value, value: '50'}}"
    )));
}

// 16
#[test]
fn component_labels_and_annotations_reach_the_scaled_object() {
    let d = render_default(&isvc(&keda_isvc(&format!(
        "{MODEL}minReplicas: 2\nmaxReplicas: 5\nlabels: {{foo: bar}}\nannotations: {{anno: val}}"
    ))));
    insta::assert_snapshot!(yaml(scaled_object(&d)));
}

// 17
#[test]
fn behavior_windows_from_the_spec() {
    insta::assert_snapshot!(so_spec(&format!(
        "{MODEL}minReplicas: 1\nmaxReplicas: 3\nautoScaling:\n  behavior:\n    scaleDown: {{stabilizationWindowSeconds: 60}}\n    scaleUp: {{stabilizationWindowSeconds: 30}}"
    )));
}

#[test]
fn behavior_policies_are_passed_through() {
    insta::assert_snapshot!(so_spec(&format!(
        "{MODEL}minReplicas: 1\nmaxReplicas: 3\nautoScaling:\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 10\n      policies: [{{type: Pods, value: 1, periodSeconds: 5}}]\n      selectPolicy: Min"
    )));
}

// 18
#[test]
fn behavior_windows_from_the_configuration() {
    let config = Config {
        scale_up_stabilization_window_seconds: Some(15),
        scale_down_stabilization_window_seconds: Some(45),
        ..Config::default()
    };
    let d = render_with(
        &isvc(&keda_isvc(&format!("{MODEL}autoScaling: {{}}"))),
        &config,
    );
    insta::assert_snapshot!(yaml(&scaled_object(&d).spec));
}

// 19
#[test]
fn target_strings_are_kept_as_typed() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: External\n  external: {metric: {query: a}, target: {type: Value, value: '0.6'}}\n- type: Resource\n  resource: {name: memory, target: {type: AverageValue, averageValue: 50Gi}}\n- type: External\n  external: {metric: {query: b}, target: {type: Value, value: 900m}}"
    )
    .replace("value: 900m", "value: '900'")));
}

// 20
#[test]
fn envtest_memory_average_value_10gi_without_autoscaler_config() {
    let config = Config {
        scale_up_stabilization_window_seconds: None,
        scale_down_stabilization_window_seconds: None,
        ..Config::default()
    };
    let text = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: raw-foo-1\n  namespace: default\n  annotations:\n    serving.kserve.io/deploymentMode: Standard\n    serving.kserve.io/autoscalerClass: keda\nspec:\n  predictor:\n    minReplicas: 1\n    maxReplicas: 3\n    model:\n      modelFormat: {name: tensorflow}\n      storageUri: s3://test/mnist/export\n      runtimeVersion: 1.14.0\n    autoScaling:\n      metrics:\n      - type: Resource\n        resource: {name: memory, target: {type: AverageValue, averageValue: 10Gi}}\n";
    let d = render_with(&isvc(text), &config);
    let so = scaled_object(&d);
    let expected: tidal_api::keda::ScaledObjectSpec = serde_norway::from_str(
        "scaleTargetRef: {name: raw-foo-1-predictor}\ntriggers: [{type: memory, metadata: {value: 10Gi}, metricType: AverageValue}]\nminReplicaCount: 1\nmaxReplicaCount: 3\n",
    )
    .unwrap();
    assert_eq!(so.spec, expected);
    insta::assert_snapshot!(all_yaml(&d));
}

// 22
#[test]
fn stop_annotation_renders_nothing() {
    let d = render_default(&isvc(&with_annotations(
        "serving.kserve.io/autoscalerClass: keda\nserving.kserve.io/stop: 'True'",
        MODEL,
    )));
    assert!(d.stopped);
    assert!(d.components.is_empty());
    assert!(d.objects().is_empty());
}

// 23
#[test]
fn e2e_memory_utilization_50() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: Resource\n  resource: {name: memory, target: {type: Utilization, averageUtilization: 50}}"
    )));
}

#[test]
fn e2e_external_prometheus_integer_value() {
    insta::assert_snapshot!(so_spec(&metrics(
        "- type: External\n  external: {metric: {backend: prometheus, serverAddress: 'http://localhost:9090', query: http_requests_per_second}, target: {type: Value, value: 50}}"
    )));
}

#[test]
fn e2e_podmetric_with_default_scaler_address() {
    let text = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: isvc-sklearn-keda-otel-add-on\n  namespace: kserve-ci-e2e-test\n  annotations:\n    serving.kserve.io/deploymentMode: Standard\n    serving.kserve.io/autoscalerClass: keda\n    sidecar.opentelemetry.io/inject: isvc-sklearn-keda-otel-add-on-predictor\nspec:\n  predictor:\n    minReplicas: 1\n    maxReplicas: 3\n    model: {modelFormat: {name: sklearn}, storageUri: gs://kfserving-examples/models/sklearn/1.0/model}\n    autoScaling:\n      metrics:\n      - type: PodMetric\n        podmetric: {metric: {backend: opentelemetry, query: process_cpu_seconds_total, metricNames: [process_cpu_seconds_total]}, target: {type: Value, value: 8}}\n";
    insta::assert_snapshot!(yaml(&scaled_object(&render_default(&isvc(text))).spec));
}

// 24
#[test]
fn class_dispatch() {
    let class_of = |annotations: &str| {
        let d = render_default(&isvc(&with_annotations(
            annotations,
            &format!("{MODEL}minReplicas: 2\nmaxReplicas: 4"),
        )));
        let c = &d.components[0];
        let kind = match &c.autoscaler {
            Some(Autoscaler::ScaledObject(_)) => "ScaledObject",
            Some(Autoscaler::Hpa(_)) => "HorizontalPodAutoscaler",
            None => "none",
        };
        (c.class, kind, c.deployment.spec.as_ref().unwrap().replicas)
    };
    assert_eq!(
        class_of("other: x"),
        (AutoscalerClass::Hpa, "HorizontalPodAutoscaler", None)
    );
    assert_eq!(
        class_of("serving.kserve.io/autoscalerClass: hpa"),
        (AutoscalerClass::Hpa, "HorizontalPodAutoscaler", None)
    );
    assert_eq!(
        class_of("serving.kserve.io/autoscalerClass: keda"),
        (AutoscalerClass::Keda, "ScaledObject", None)
    );
    assert_eq!(
        class_of("serving.kserve.io/autoscalerClass: external"),
        (AutoscalerClass::External, "none", None)
    );
    assert_eq!(
        class_of("serving.kserve.io/autoscalerClass: none"),
        (AutoscalerClass::None, "none", Some(2))
    );
}

#[test]
fn component_annotation_overrides_the_class() {
    let d = render_default(&isvc(&with_annotations(
        "serving.kserve.io/autoscalerClass: hpa",
        &format!("{MODEL}annotations: {{serving.kserve.io/autoscalerClass: keda}}"),
    )));
    assert_eq!(d.components[0].class, AutoscalerClass::Keda);
}

// 26
#[test]
fn hpa_cpu_utilization_75() {
    let d = render_default(&isvc(&with_annotations(
        "serving.kserve.io/autoscalerClass: hpa",
        &metrics(
            "- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 75}}",
        ),
    )));
    let Some(Autoscaler::Hpa(hpa)) = &d.components[0].autoscaler else {
        panic!("expected an HPA")
    };
    insta::assert_snapshot!(yaml(hpa.as_ref()));
}

#[test]
fn hpa_memory_average_value_is_canonical() {
    let d = render_default(&isvc(&with_annotations(
        "serving.kserve.io/autoscalerClass: hpa",
        &metrics(
            "- type: Resource\n  resource: {name: memory, target: {type: AverageValue, averageValue: 1024Mi}}",
        ),
    )));
    let Some(Autoscaler::Hpa(hpa)) = &d.components[0].autoscaler else {
        panic!("expected an HPA")
    };
    insta::assert_snapshot!(yaml(&hpa.spec));
}

#[test]
fn hpa_legacy_scale_metric_memory() {
    let d = render_default(&isvc(&with_annotations(
        "other: x",
        &format!("{MODEL}scaleMetric: memory\nscaleTarget: 60\nminReplicas: 0"),
    )));
    let Some(Autoscaler::Hpa(hpa)) = &d.components[0].autoscaler else {
        panic!("expected an HPA")
    };
    insta::assert_snapshot!(yaml(&hpa.spec));
}

// --- whole objects ----------------------------------------------------------------------------

#[test]
fn seed_sklearn_v2_iris() {
    let text = std::fs::read_to_string(format!(
        "{}/../../examples/seed/sklearn-v2-iris.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let d = render_default(&isvc(&text));
    let so = scaled_object(&d);
    assert_eq!(
        so.metadata.name.as_deref(),
        Some("sklearn-v2-iris-predictor")
    );
    assert_eq!(so.spec.scale_target_ref.name, "sklearn-v2-iris-predictor");
    assert_eq!(
        (so.spec.min_replica_count, so.spec.max_replica_count),
        (Some(1), Some(5))
    );
    assert_eq!(so.spec.triggers.len(), 1);
    assert_eq!(so.spec.triggers[0].type_, "cpu");
    assert_eq!(
        so.spec.triggers[0].metric_type.as_deref(),
        Some("Utilization")
    );
    assert_eq!(so.spec.triggers[0].metadata["value"], "50");
    assert_eq!(d.url, "http://sklearn-v2-iris-default.example.com");
    insta::assert_snapshot!(all_yaml(&d));
}

#[test]
fn seed_huggingface_fbopt() {
    let text = std::fs::read_to_string(format!(
        "{}/../../examples/seed/huggingface-fbopt.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let d = render_default(&isvc(&text));
    let so = scaled_object(&d);
    let t = &so.spec.triggers[0];
    assert_eq!(t.type_, "prometheus");
    assert_eq!(
        t.metadata["serverAddress"],
        "http://prometheus.istio-system.svc.cluster.local:9090"
    );
    assert_eq!(t.metadata["query"], "vllm:num_requests_running");
    assert_eq!(t.metadata["threshold"], "2");
    assert_eq!(
        d.runtime,
        Some(("kserve-huggingfaceserver".to_string(), true))
    );
    insta::assert_snapshot!(all_yaml(&d));
}

#[test]
fn custom_container_predictor_gets_default_resources() {
    let d = render_default(&isvc(&keda_isvc(
        "containers:\n- name: kserve-container\n  image: example/server:1\n  ports: [{containerPort: 9000, name: h2c-port}]\n  env: [{name: STORAGE_URI, value: 's3://b/m'}]\nminReplicas: 1\nmaxReplicas: 2\nautoScaling:\n  metrics:\n  - type: Resource\n    resource: {name: memory, target: {type: AverageValue, averageValue: 10Gi}}",
    )));
    insta::assert_snapshot!(all_yaml(&d));
}

#[test]
fn transformer_gets_its_own_objects_and_the_address() {
    let text = format!(
        "{}  transformer:\n    minReplicas: 1\n    maxReplicas: 2\n    containers:\n    - name: kserve-container\n      image: example/transformer:1\n      args: [--predictor_host, test-predictor.test-namespace]\n",
        keda_isvc(&metrics(
            "- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}"
        ))
    );
    let d = render_default(&isvc(&text));
    let names: Vec<_> = d
        .objects()
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "Service/test-predictor",
            "Deployment/test-predictor",
            "ScaledObject/test-predictor",
            "Service/test-transformer",
            "Deployment/test-transformer",
            "ScaledObject/test-transformer"
        ]
    );
    assert_eq!(
        d.address.url.as_deref(),
        Some("http://test-transformer.test-namespace.svc.cluster.local")
    );
    insta::assert_snapshot!(yaml(&d.components[1].deployment));
}

#[test]
fn pvc_storage_mounts_the_claim_without_an_init_container() {
    let d = render_default(&isvc(&keda_isvc(
        "model:\n  modelFormat: {name: sklearn}\n  storageUri: pvc://models-claim/iris/v1\n",
    )));
    insta::assert_snapshot!(yaml(
        &d.components[0]
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
    ));
}

#[test]
fn model_overrides_merge_into_the_runtime_container() {
    let d = render_default(&isvc(&keda_isvc(
        "model:\n  modelFormat: {name: huggingface}\n  args: [--model_name=fbopt, --model_id=facebook/opt-125m]\n  env: [{name: HF_HOME, value: /tmp}]\n  resources: {limits: {cpu: '2', memory: 4Gi, nvidia.com/gpu: '1'}}\n",
    )));
    insta::assert_snapshot!(yaml(
        &d.components[0]
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers
    ));
}

#[test]
fn runtime_errors_carry_kserve_reasons() {
    let i = isvc(&keda_isvc("model:\n  modelFormat: {name: onnx}\n"));
    let err =
        tidal_render::render(&i, tidal_render::builtin_runtimes(), &Config::default()).unwrap_err();
    assert_eq!(err.reason(), "NoSupportingRuntime");
    assert_eq!(
        err.to_string(),
        "no runtime found to support predictor with model type: onnx"
    );
}

#[test]
fn status_urls() {
    let d = render_default(&isvc(&keda_isvc(MODEL)));
    assert_eq!(d.url, "http://test-test-namespace.example.com");
    assert_eq!(
        d.address.url.as_deref(),
        Some("http://test-predictor.test-namespace.svc.cluster.local")
    );
    assert_eq!(
        d.component_status["predictor"].url.as_deref(),
        Some("http://test-predictor-test-namespace.example.com")
    );
}

#[test]
fn keda_knobs_from_annotations() {
    let d = render_default(&isvc(&with_annotations(
        "serving.kserve.io/autoscalerClass: keda\ntidal.dev/keda-polling-interval: '5'\ntidal.dev/keda-cooldown-period: '60'\ntidal.dev/keda-idle-replica-count: '0'\ntidal.dev/keda-fallback-failure-threshold: '3'\ntidal.dev/keda-fallback-replicas: '2'",
        &metrics(
            "- type: External\n  external: {metric: {query: up, serverAddress: 'http://p:9090'}, target: {type: Value, value: '1'}}",
        ),
    )));
    insta::assert_snapshot!(yaml(&scaled_object(&d).spec));
}
