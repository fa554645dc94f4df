//! Shared helpers: read an InferenceService, check it against the KServe CRD, render it, and
//! check every rendered ScaledObject against KEDA's CRD.

#![allow(dead_code)]

use std::sync::OnceLock;

use serde_json::Value;
use tidal_api::{InferenceService, ScaledObject, apply_defaults, from_document, split_documents};
use tidal_render::{Autoscaler, Config, Desired, builtin_runtimes, render};

/// The `openAPIV3Schema` of a CRD file under `tests/crds/`, compiled.
pub fn crd_validator(file: &str) -> jsonschema::Validator {
    let path = format!("{}/tests/crds/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let crd: Value = serde_norway::from_str(&text).expect("CRD parses");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    jsonschema::validator_for(schema).expect("CRD schema compiles")
}

pub fn isvc_schema() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| crd_validator("serving.kserve.io_inferenceservices.yaml"))
}

pub fn scaled_object_schema() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| crd_validator("keda.sh_scaledobjects.yaml"))
}

pub fn trigger_authentication_schema() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| crd_validator("keda.sh_triggerauthentications.yaml"))
}

/// Panics with every schema error when `value` does not satisfy `schema`.
pub fn assert_schema_valid(schema: &jsonschema::Validator, value: &Value, what: &str) {
    let errors: Vec<String> = schema
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} violates its CRD schema:\n{}\n{}",
        errors.join("\n"),
        serde_norway::to_string(value).unwrap()
    );
}

/// Reads an InferenceService from YAML, checks the input against KServe's CRD, and defaults it.
pub fn isvc(yaml: &str) -> InferenceService {
    let doc = split_documents(yaml).remove(0).expect("test YAML parses");
    assert_schema_valid(isvc_schema(), &doc.value, "input InferenceService");
    let mut isvc: InferenceService = from_document(&doc).unwrap_or_else(|e| panic!("{e}"));
    apply_defaults(&mut isvc);
    isvc
}

/// Renders with the given config, checking every ScaledObject against KEDA's CRD and every
/// HPA's behavior against the same autoscaling/v2 schema KEDA embeds.
pub fn render_with(isvc: &InferenceService, config: &Config) -> Desired {
    let desired =
        render(isvc, builtin_runtimes(), config).unwrap_or_else(|e| panic!("render failed: {e}"));
    for c in &desired.components {
        match &c.autoscaler {
            Some(Autoscaler::ScaledObject(so)) => assert_schema_valid(
                scaled_object_schema(),
                &serde_json::to_value(so).unwrap(),
                "ScaledObject",
            ),
            Some(Autoscaler::Hpa(hpa)) => {
                let v = serde_json::to_value(hpa).unwrap();
                let roundtrip: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler =
                    serde_json::from_value(v.clone())
                        .expect("HPA is a valid autoscaling/v2 object");
                assert_eq!(&roundtrip, hpa.as_ref());
                if let Some(behavior) = v.pointer("/spec/behavior") {
                    let so = serde_json::json!({
                        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {},
                        "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [],
                                 "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}}}
                    });
                    assert_schema_valid(scaled_object_schema(), &so, "HPA behavior");
                }
            }
            None => {}
        }
    }
    desired
}

pub fn render_default(isvc: &InferenceService) -> Desired {
    render_with(isvc, &Config::default())
}

/// The predictor's ScaledObject.
pub fn scaled_object(d: &Desired) -> &ScaledObject {
    match &d.components[0].autoscaler {
        Some(Autoscaler::ScaledObject(so)) => so,
        other => panic!("expected a ScaledObject, got {other:?}"),
    }
}

/// YAML of a value, for snapshots.
pub fn yaml<T: serde::Serialize>(v: &T) -> String {
    serde_norway::to_string(v).unwrap()
}

/// All rendered objects as one multi-document YAML string.
pub fn all_yaml(d: &Desired) -> String {
    d.objects()
        .iter()
        .map(yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// An InferenceService named `test` in `test-namespace` with the given annotations and predictor.
pub fn keda_isvc(predictor: &str) -> String {
    with_annotations(
        "serving.kserve.io/deploymentMode: Standard\nserving.kserve.io/autoscalerClass: keda",
        predictor,
    )
}

pub fn with_annotations(annotations: &str, predictor: &str) -> String {
    let indent = |s: &str, n: usize| {
        s.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    format!(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: test\n  namespace: test-namespace\n  uid: 00000000-0000-0000-0000-000000000001\n  annotations:\n{}spec:\n  predictor:\n{}",
        indent(annotations, 4),
        indent(predictor, 4)
    )
}

pub const MODEL: &str = "model:\n  modelFormat: {name: sklearn}\n  storageUri: gs://bucket/model\n";
