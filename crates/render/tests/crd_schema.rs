//! The CRD schemas themselves: the seed's inputs satisfy KServe's CRD, the typed API keeps every
//! field KServe's CRD declares, and TriggerAuthentications pass through intact.

mod common;

use common::*;
use serde_json::Value;
use tidal_api::{InferenceService, TriggerAuthentication, from_document, split_documents};

#[test]
fn seed_inputs_satisfy_the_inference_service_crd() {
    for file in ["sklearn-v2-iris.yaml", "huggingface-fbopt.yaml"] {
        let text = std::fs::read_to_string(format!(
            "{}/../../examples/seed/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let doc = split_documents(&text).remove(0).unwrap();
        assert_schema_valid(isvc_schema(), &doc.value, file);
    }
}

#[test]
fn the_crd_schema_rejects_what_tidal_rejects() {
    let bad = serde_json::json!({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "x"},
        "spec": {"predictor": {"autoScaling": {"metrics": [{"type": "Bogus"}]}}}
    });
    assert!(!isvc_schema().is_valid(&bad));
}

/// Every property the CRD declares for a component, a model and a metric survives
/// decoding, so strict decoding never calls a real KServe field unknown.
#[test]
fn typed_api_covers_every_crd_field() {
    let path = format!(
        "{}/tests/crds/serving.kserve.io_inferenceservices.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let crd: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let mut missing = Vec::new();
    for component in ["predictor", "transformer", "explainer"] {
        let props = spec[component]["properties"].as_object().unwrap();
        for key in props.keys() {
            // Explainer implementations (art) and similar framework blocks are not modelled.
            if component == "explainer" && key == "art" {
                continue;
            }
            let sample = sample_for(&props[key]);
            let mut doc = serde_json::json!({
                "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "x"},
                "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}}
            });
            doc["spec"][component][key] = sample;
            let raw = tidal_api::RawDocument {
                index: 0,
                value: doc,
            };
            if let Err(e) = from_document::<InferenceService>(&raw) {
                missing.push(format!("spec.{component}.{key}: {e}"));
            }
        }
    }
    let model = spec["predictor"]["properties"]["model"]["properties"]
        .as_object()
        .unwrap();
    for key in model.keys() {
        let mut doc = serde_json::json!({
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "x"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}}
        });
        doc["spec"]["predictor"]["model"][key] = sample_for(&model[key]);
        if let Err(e) = from_document::<InferenceService>(&tidal_api::RawDocument {
            index: 0,
            value: doc,
        }) {
            missing.push(format!("spec.predictor.model.{key}: {e}"));
        }
    }
    assert!(
        missing.is_empty(),
        "fields the CRD declares but Tidal drops:\n{}",
        missing.join("\n")
    );
}

/// A minimal non-empty value of a schema's type (enough to detect a dropped key).
fn sample_for(schema: &Value) -> Value {
    if let Some(e) = schema.get("enum").and_then(|e| e.as_array()) {
        return e[0].clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "x".into(),
        Some("integer") => 1.into(),
        Some("number") => 1.into(),
        Some("boolean") => true.into(),
        Some("array") => Value::Array(vec![sample_for(&schema["items"])]),
        _ if schema.get("x-kubernetes-int-or-string").is_some() => "1".into(),
        _ => {
            // An object: fill its required fields so typed decoding can succeed.
            let mut o = serde_json::Map::new();
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let k = r.as_str().unwrap();
                o.insert(k.into(), sample_for(&schema["properties"][k]));
            }
            if o.is_empty()
                && let Some((k, v)) = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .and_then(|p| p.iter().next())
            {
                // Some property, so the value is not "empty" (empty values are never flagged).
                o.insert(k.clone(), sample_for(v));
            }
            if o.is_empty() {
                o.insert("x".into(), "y".into());
            }
            Value::Object(o)
        }
    }
}

#[test]
fn trigger_authentication_round_trips_and_satisfies_its_crd() {
    let text = "apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: prom-auth\n  namespace: default\nspec:\n  secretTargetRef:\n  - parameter: bearerToken\n    name: prom-secret\n    key: token\n  env:\n  - parameter: username\n    name: PROM_USER\n";
    let doc = split_documents(text).remove(0).unwrap();
    assert_schema_valid(
        trigger_authentication_schema(),
        &doc.value,
        "input TriggerAuthentication",
    );
    let ta: TriggerAuthentication = from_document(&doc).unwrap();
    let back = serde_json::to_value(&ta).unwrap();
    assert_eq!(back, doc.value);
    assert_schema_valid(
        trigger_authentication_schema(),
        &back,
        "rendered TriggerAuthentication",
    );
}
