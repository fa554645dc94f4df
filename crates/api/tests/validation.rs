//! Every validation rule, one named test each, with the exact messages as golden snapshots.

use tidal_api::{
    InferenceService, apply_defaults, from_document, split_documents, validate, validate_update,
};

/// An InferenceService with the given annotations (YAML map body) and predictor (YAML body).
fn isvc(annotations: &str, predictor: &str) -> InferenceService {
    let indent = |s: &str, n: usize| {
        s.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    let text = format!(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: test\n  namespace: test-namespace\n  annotations:\n{}spec:\n  predictor:\n{}",
        indent(annotations, 4),
        indent(predictor, 4)
    );
    let doc = split_documents(&text).remove(0).expect("test YAML parses");
    let mut isvc: InferenceService = from_document(&doc).unwrap_or_else(|e| panic!("{e}\n{text}"));
    apply_defaults(&mut isvc);
    isvc
}

const KEDA: &str = "serving.kserve.io/autoscalerClass: keda";
const HPA: &str = "serving.kserve.io/autoscalerClass: hpa";
const MODEL: &str = "model:\n  modelFormat: {name: sklearn}\n  storageUri: gs://bucket/model\n";

/// Errors one per line, then warnings prefixed `Warning:`; "valid" when there are none.
fn outcome(isvc: &InferenceService) -> String {
    let report = validate(isvc);
    let mut lines: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    lines.extend(report.warnings.iter().map(|w| format!("Warning: {w}")));
    if lines.is_empty() {
        "valid".into()
    } else {
        lines.join("\n")
    }
}

fn keda(metrics: &str) -> String {
    let indent: String = metrics.lines().map(|l| format!("    {l}\n")).collect();
    format!("{MODEL}minReplicas: 1\nmaxReplicas: 3\nautoScaling:\n  metrics:\n{indent}")
}

macro_rules! golden {
    ($name:ident, $annotations:expr, $predictor:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(outcome(&isvc($annotations, &String::from($predictor))));
        }
    };
}

// --- accepted ---------------------------------------------------------------------------------
golden!(
    keda_cpu_utilization_80_is_valid,
    KEDA,
    keda(
        "- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}"
    )
);
golden!(
    keda_memory_average_value_1gi_is_valid,
    KEDA,
    keda(
        "- type: Resource\n  resource: {name: memory, target: {type: AverageValue, averageValue: 1Gi}}"
    )
);
golden!(
    keda_external_prometheus_with_query_only_is_valid,
    KEDA,
    keda(
        "- type: External\n  external: {metric: {backend: prometheus, query: up}, target: {type: Value, value: \"10\"}}"
    )
);
golden!(
    keda_podmetric_with_query_is_valid,
    KEDA,
    keda(
        "- type: PodMetric\n  podmetric: {metric: {backend: opentelemetry, query: q}, target: {type: Value, value: \"10\"}}"
    )
);
golden!(
    keda_scale_to_zero_with_an_external_metric_is_valid,
    KEDA,
    keda("- type: External\n  external: {metric: {query: up}, target: {type: Value, value: 1}}")
        .replace("minReplicas: 1", "minReplicas: 0")
);

// --- metadata and annotations -----------------------------------------------------------------
golden!(
    unknown_autoscaler_class_is_rejected,
    "serving.kserve.io/autoscalerClass: test",
    MODEL
);
golden!(
    serverless_mode_is_rejected,
    "serving.kserve.io/deploymentMode: Serverless",
    MODEL
);
golden!(
    knative_mode_is_rejected,
    "serving.kserve.io/deploymentMode: Knative",
    MODEL
);
golden!(
    modelmesh_mode_is_rejected,
    "serving.kserve.io/deploymentMode: ModelMesh",
    MODEL
);
golden!(
    unknown_mode_is_rejected,
    "serving.kserve.io/deploymentMode: Fast",
    MODEL
);

#[test]
fn raw_deployment_is_rewritten_to_standard() {
    let i = isvc("serving.kserve.io/deploymentMode: RawDeployment", MODEL);
    assert_eq!(
        i.metadata.annotations.unwrap()["serving.kserve.io/deploymentMode"],
        "Standard"
    );
    let i = isvc("other: x", MODEL);
    assert_eq!(
        i.metadata.annotations.unwrap()["serving.kserve.io/deploymentMode"],
        "Standard",
        "absent mode defaults to Standard"
    );
}

#[test]
fn invalid_name_is_rejected() {
    let mut i = isvc(KEDA, MODEL);
    i.metadata.name = Some("Bad_Name".into());
    insta::assert_snapshot!(outcome(&i));
}

#[test]
fn name_too_long_for_its_service_is_rejected() {
    let mut i = isvc(KEDA, MODEL);
    i.metadata.name = Some("a".repeat(60));
    insta::assert_snapshot!(outcome(&i));
}

#[test]
fn missing_name_is_rejected() {
    let mut i = isvc(KEDA, MODEL);
    i.metadata.name = None;
    insta::assert_snapshot!(outcome(&i));
}

// --- replicas ---------------------------------------------------------------------------------
golden!(
    negative_min_replicas_is_rejected,
    KEDA,
    format!("{MODEL}minReplicas: -1")
);
golden!(
    negative_max_replicas_is_rejected,
    KEDA,
    format!("{MODEL}maxReplicas: -1")
);
golden!(
    min_greater_than_max_is_rejected,
    KEDA,
    format!("{MODEL}minReplicas: 5\nmaxReplicas: 3")
);
golden!(
    min_greater_than_unset_max_is_allowed,
    HPA,
    format!("{MODEL}minReplicas: 5")
);

// --- implementation ---------------------------------------------------------------------------
golden!(
    predictor_without_model_or_containers_is_rejected,
    KEDA,
    "minReplicas: 1"
);
golden!(
    model_without_format_is_rejected,
    KEDA,
    "model:\n  storageUri: gs://b/m"
);
golden!(
    unknown_protocol_is_rejected,
    KEDA,
    format!("{MODEL}  protocolVersion: v3")
);
golden!(
    unsupported_storage_uri_scheme_is_rejected,
    KEDA,
    "model:\n  modelFormat: {name: sklearn}\n  storageUri: ftp://host/model"
);
golden!(
    requests_above_limits_are_rejected,
    KEDA,
    format!("{MODEL}  resources:\n    requests: {{memory: 8Gi}}\n    limits: {{memory: 4Gi}}")
);
golden!(
    two_legacy_frameworks_are_rejected,
    KEDA,
    "sklearn: {storageUri: gs://a}\nxgboost: {storageUri: gs://b}"
);
golden!(
    container_without_image_or_command_is_rejected,
    KEDA,
    "containers:\n- name: kserve-container"
);
golden!(
    worker_spec_needs_class_none,
    KEDA,
    format!("{MODEL}workerSpec: {{}}")
);

#[test]
fn legacy_framework_becomes_model() {
    let i = isvc(KEDA, "sklearn: {storageUri: gs://a}");
    let model = i.spec.predictor.model.expect("defaulted into model");
    assert_eq!(model.model_format.unwrap().name, "sklearn");
    let i = isvc(KEDA, "triton: {storageUri: gs://a}");
    assert_eq!(
        i.spec.predictor.model.unwrap().protocol_version.as_deref(),
        Some("v2")
    );
}

// --- KEDA rules -------------------------------------------------------------------------------
golden!(
    keda_rejects_scale_metric,
    KEDA,
    format!("{MODEL}scaleMetric: cpu")
);
golden!(
    keda_warns_on_scale_target,
    KEDA,
    format!(
        "{MODEL}scaleTarget: 50\nautoScaling:\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}"
    )
);
golden!(
    keda_resource_without_resource_is_rejected,
    KEDA,
    keda("- type: Resource")
);
golden!(
    keda_cpu_must_be_utilization,
    KEDA,
    keda(
        "- type: Resource\n  resource: {name: cpu, target: {type: AverageValue, averageValue: 150m}}"
    )
);
golden!(
    keda_memory_value_is_rejected,
    KEDA,
    keda("- type: Resource\n  resource: {name: memory, target: {type: Value, value: 512Mi}}")
);
golden!(
    keda_memory_below_one_mib_is_rejected,
    KEDA,
    keda(
        "- type: Resource\n  resource: {name: memory, target: {type: AverageValue, averageValue: 512Ki}}"
    )
);
golden!(
    keda_memory_average_value_missing_is_rejected,
    KEDA,
    keda("- type: Resource\n  resource: {name: memory, target: {type: AverageValue}}")
);
golden!(
    keda_unsupported_resource_is_rejected,
    KEDA,
    keda(
        "- type: Resource\n  resource: {name: disk, target: {type: Utilization, averageUtilization: 50}}"
    )
);
golden!(
    keda_utilization_missing_is_rejected,
    KEDA,
    keda("- type: Resource\n  resource: {name: cpu, target: {type: Utilization}}")
);
golden!(
    keda_utilization_above_100_is_rejected,
    KEDA,
    keda(
        "- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 120}}"
    )
);
golden!(
    keda_utilization_zero_is_rejected,
    KEDA,
    keda(
        "- type: Resource\n  resource: {name: memory, target: {type: Utilization, averageUtilization: 0}}"
    )
);
golden!(
    keda_external_without_external_is_rejected,
    KEDA,
    keda("- type: External")
);
golden!(
    keda_external_empty_query_is_rejected,
    KEDA,
    keda(
        "- type: External\n  external: {metric: {query: \"\"}, target: {type: Value, value: \"1\"}}"
    )
);
golden!(
    keda_external_without_threshold_is_rejected,
    KEDA,
    keda("- type: External\n  external: {metric: {query: up}, target: {type: Value}}")
);
golden!(
    keda_external_threshold_with_unit_is_rejected,
    KEDA,
    keda("- type: External\n  external: {metric: {query: up}, target: {type: Value, value: 10k}}")
);
golden!(
    keda_external_unknown_backend_is_rejected,
    KEDA,
    keda(
        "- type: External\n  external: {metric: {backend: influx, query: up}, target: {type: Value, value: \"1\"}}"
    )
);
golden!(
    keda_podmetric_without_podmetric_is_rejected,
    KEDA,
    keda("- type: PodMetric")
);
golden!(
    keda_podmetric_empty_query_is_rejected,
    KEDA,
    keda(
        "- type: PodMetric\n  podmetric: {metric: {query: \"\"}, target: {type: Value, value: \"1\"}}"
    )
);
golden!(
    keda_podmetric_without_threshold_is_rejected,
    KEDA,
    keda("- type: PodMetric\n  podmetric: {metric: {query: q}, target: {type: Value}}")
);
golden!(
    keda_average_value_type_needs_average_value,
    KEDA,
    keda(
        "- type: External\n  external: {metric: {query: up}, target: {type: AverageValue, value: \"1\"}}"
    )
);
golden!(
    keda_unknown_metric_type_is_rejected,
    KEDA,
    keda("- type: UnknownType")
);
golden!(
    keda_unknown_target_type_is_rejected,
    KEDA,
    keda(
        "- type: Resource\n  resource: {name: cpu, target: {type: Percent, averageUtilization: 5}}"
    )
);
golden!(keda_scale_to_zero_on_cpu_only_is_rejected, KEDA, keda("- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}").replace("minReplicas: 1", "minReplicas: 0"));
golden!(
    keda_without_metrics_warns_and_defaults_to_cpu,
    KEDA,
    format!("{MODEL}minReplicas: 1\nmaxReplicas: 3")
);
golden!(keda_reports_every_error_at_once, KEDA, keda("- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 120}}\n- type: External\n  external: {metric: {query: \"\"}, target: {type: Value, value: \"1\"}}\n- type: PodMetric").replace("minReplicas: 1", "minReplicas: 4"));

// --- HPA rules --------------------------------------------------------------------------------
golden!(
    hpa_rejects_unsupported_scale_metric,
    HPA,
    format!("{MODEL}scaleMetric: concurrency")
);
golden!(
    hpa_rejects_scale_target_above_100,
    HPA,
    format!("{MODEL}scaleTarget: 120")
);
golden!(
    hpa_rejects_memory_scale_target_below_one,
    HPA,
    format!("{MODEL}scaleMetric: memory\nscaleTarget: 0")
);
golden!(
    hpa_rejects_external_metrics,
    HPA,
    keda(
        "- type: External\n  external: {metric: {query: up}, target: {type: Value, value: \"1\"}}"
    )
);
golden!(
    hpa_warns_that_it_cannot_scale_to_zero,
    HPA,
    format!("{MODEL}minReplicas: 0")
);
golden!(
    absent_class_reports_hpa_findings_as_warnings,
    "other: x",
    keda(
        "- type: External\n  external: {metric: {query: up}, target: {type: Value, value: \"1\"}}"
    )
);
golden!(
    external_class_warns_that_metrics_are_ignored,
    "serving.kserve.io/autoscalerClass: external",
    keda(
        "- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}"
    )
);

// --- behavior ---------------------------------------------------------------------------------
golden!(
    behavior_window_above_an_hour_is_rejected,
    KEDA,
    format!(
        "{MODEL}autoScaling:\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}\n  behavior:\n    scaleDown: {{stabilizationWindowSeconds: 4000}}"
    )
);
golden!(
    behavior_bad_policy_is_rejected,
    KEDA,
    format!(
        "{MODEL}autoScaling:\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}\n  behavior:\n    scaleUp:\n      selectPolicy: Most\n      policies: [{{type: Replicas, value: 0, periodSeconds: 0}}]"
    )
);

// --- updates ----------------------------------------------------------------------------------
#[test]
fn deployment_mode_cannot_change_once_set() {
    let mut old = isvc(KEDA, MODEL);
    old.status = Some(tidal_api::status::InferenceServiceStatus {
        deployment_mode: Some("Standard".into()),
        ..Default::default()
    });
    let mut new = old.clone();
    new.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("serving.kserve.io/deploymentMode".into(), "Knative".into());
    let report = validate_update(&old, &new);
    insta::assert_snapshot!(
        report
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// --- the seed ---------------------------------------------------------------------------------
#[test]
fn the_seed_documents_are_valid() {
    for file in ["sklearn-v2-iris.yaml", "huggingface-fbopt.yaml"] {
        let text = std::fs::read_to_string(format!(
            "{}/../../examples/seed/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let doc = split_documents(&text).remove(0).unwrap();
        let mut i: InferenceService = from_document(&doc).unwrap();
        apply_defaults(&mut i);
        assert_eq!(outcome(&i), "valid", "{file}");
    }
}

// --- pass-through fields ----------------------------------------------------------------------
golden!(
    pass_through_fields_must_have_kubernetes_shapes,
    KEDA,
    format!(
        "{MODEL}  readinessProbe: {{httpGet: {{port: [1]}}}}\ntolerations: [{{effect: 5}}]\ndeploymentStrategy: {{type: 3}}"
    )
);

#[test]
fn decoding_errors_name_the_field() {
    let cases = [
        (
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n",
            "spec: Required value",
        ),
        (
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec: {predictor: {model: {modelFormat: {name: s}, resources: {limits: {cpu: lots}}}}}\n",
            "spec.predictor.model.resources.limits.cpu: Invalid value: invalid value \"lots\"",
        ),
        (
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec: {predictor: {model: {modelFormat: {}}}}\n",
            "spec.predictor.model.modelFormat.name: Required value",
        ),
        (
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec: {predictor: {maxReplicas: 1.5}}\n",
            "spec.predictor.maxReplicas: Invalid value: invalid type: floating point `1.5`, expected i32",
        ),
        (
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec: {predictor: {autoScaling: {metrics: [{type: External, external: {metric: {query: q}, target: {type: Value, value: 1.5}}}]}}}\n",
            "spec.predictor.autoScaling.metrics[0].external.target.value: Invalid value: value must be string or integer",
        ),
    ];
    for (text, want) in cases {
        let doc = split_documents(text).remove(0).unwrap();
        let err = from_document::<InferenceService>(&doc)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err}\n  should contain\n{want}");
    }
}

golden!(
    keda_knob_annotations_must_be_integers,
    "serving.kserve.io/autoscalerClass: keda\ntidal.dev/keda-cooldown-period: soon\ntidal.dev/keda-polling-interval: '0'\ntidal.dev/keda-fallback-replicas: '2'",
    keda(
        "- type: Resource\n  resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}"
    )
);
