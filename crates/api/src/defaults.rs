//! Defaulting, as KServe's mutating webhook applies it before validation.

use crate::annotations::{DEPLOYMENT_MODE, DeploymentMode};
use crate::inference_service::{InferenceService, ModelFormat};

/// The namespace used when an object names none (as `kubectl` does with no context).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Applies KServe's defaults in place:
/// - the deprecated deployment modes become their new names (`RawDeployment` → `Standard`),
///   and an absent mode becomes `Standard` (Tidal's `defaultDeploymentMode`);
/// - a legacy framework predictor (`sklearn:`) becomes `model:` with that format;
/// - `model.protocolVersion` defaults to `v2` for the `triton` and `vLLM` formats, and for the
///   legacy `triton`, `onnx` and `huggingface` predictors.
///
/// Idempotent: defaulting a defaulted object changes nothing.
pub fn apply_defaults(isvc: &mut InferenceService) {
    if isvc.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        isvc.metadata.namespace = Some(DEFAULT_NAMESPACE.to_string());
    }
    let annotations = isvc
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    match annotations.get(DEPLOYMENT_MODE).map(String::as_str) {
        None => {
            annotations.insert(
                DEPLOYMENT_MODE.into(),
                DeploymentMode::Standard.as_str().into(),
            );
        }
        Some(v) => {
            if let Some(mode) = DeploymentMode::parse(v) {
                annotations.insert(DEPLOYMENT_MODE.into(), mode.as_str().into());
            }
        }
    }

    let predictor = &mut isvc.spec.predictor;
    if predictor.model.is_none()
        && let Some((format, mut model)) = predictor.legacy.take_single()
    {
        model.model_format = Some(ModelFormat {
            name: format.to_string(),
            version: None,
        });
        if model.protocol_version.is_none() && matches!(format, "triton" | "onnx" | "huggingface") {
            model.protocol_version = Some("v2".into());
        }
        predictor.model = Some(Box::new(model));
    }
    if let Some(model) = predictor.model.as_mut()
        && model.protocol_version.is_none()
        && model
            .model_format
            .as_ref()
            .is_some_and(|f| f.name == "triton" || f.name == "vLLM")
    {
        model.protocol_version = Some("v2".into());
    }
}
