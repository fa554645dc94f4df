//! What the API server checks before storing: InferenceServices are decoded strictly, defaulted
//! and validated exactly as `tidal validate` does (the core's rules, KServe's messages).

use serde_json::Value;
use tidal_api::{DecodeError, InferenceService, RawDocument};
use tidal_store::Resource;
use tidal_store::resource::INFERENCE_SERVICE;

use crate::status::ApiError;

/// Admits an object for create (`old` = None) or update: returns what to store.
pub fn admit(r: Resource, obj: Value, old: Option<&Value>) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if (!api_version.is_empty() && api_version != r.api_version())
        || (!kind.is_empty() && kind != r.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) and the kind ({kind}) do not match the path ({} {})",
            r.api_version(),
            r.kind
        )));
    }
    if r != INFERENCE_SERVICE {
        return Ok(obj);
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut typed_input = obj.clone();
    typed_input["apiVersion"] = r.api_version().into();
    typed_input["kind"] = r.kind.into();
    let doc = RawDocument {
        index: 0,
        value: typed_input,
    };
    let mut isvc: InferenceService = tidal_api::from_document(&doc).map_err(|e| match e {
        DecodeError::Fields { errors, .. } => ApiError::invalid(r, &name, &errors),
        other => ApiError::bad_request(other.to_string()),
    })?;
    tidal_api::apply_defaults(&mut isvc);
    let report = match old {
        Some(old) => {
            let old: InferenceService = serde_json::from_value(old.clone()).unwrap_or_default();
            tidal_api::validate_update(&old, &isvc)
        }
        None => tidal_api::validate(&isvc),
    };
    if !report.is_valid() {
        return Err(ApiError::invalid(r, &name, &report.errors));
    }
    let mut out = serde_json::to_value(&isvc).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Keep server-owned metadata the typed round trip may have normalised away.
    if let (Some(meta), Some(orig)) = (out.get_mut("metadata"), obj.get("metadata")) {
        for key in ["resourceVersion", "uid", "generation", "creationTimestamp"] {
            if let Some(v) = orig.get(key) {
                meta[key] = v.clone();
            }
        }
    }
    Ok(out)
}

/// Warnings to send back (`Warning:` headers), e.g. ignored fields.
pub fn warnings(r: Resource, obj: &Value) -> Vec<String> {
    if r != INFERENCE_SERVICE {
        return vec![];
    }
    let Ok(isvc) = serde_json::from_value::<InferenceService>(obj.clone()) else {
        return vec![];
    };
    tidal_api::validate(&isvc).warnings
}
