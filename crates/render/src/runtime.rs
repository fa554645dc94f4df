//! Picking the ServingRuntime for `spec.predictor.model`, as KServe does: by name, or by
//! auto-selection over the runtimes that support the model's format and protocol.

use std::sync::OnceLock;

use tidal_api::ServingRuntime;
use tidal_api::inference_service::ModelSpec;

use crate::RenderError;

const BUILTIN: &str = include_str!("../runtimes/builtin.yaml");

/// KServe's built-in ClusterServingRuntimes (`kserve-sklearnserver`, ...), parsed once.
pub fn builtin_runtimes() -> &'static [ServingRuntime] {
    static RUNTIMES: OnceLock<Vec<ServingRuntime>> = OnceLock::new();
    RUNTIMES.get_or_init(|| {
        tidal_api::split_documents(BUILTIN)
            .into_iter()
            .map(|d| {
                let d = d.expect("builtin runtimes are valid YAML");
                tidal_api::from_document(&d).expect("builtin runtimes are valid ServingRuntimes")
            })
            .collect()
    })
}

/// Resolves the runtime for a model. `runtimes` holds namespaced ServingRuntimes (of the
/// InferenceService's namespace) and ClusterServingRuntimes; a namespaced one shadows a cluster
/// one of the same name.
pub fn select<'a>(
    model: &ModelSpec,
    namespace: &str,
    runtimes: &'a [ServingRuntime],
) -> Result<&'a ServingRuntime, RenderError> {
    let in_scope = |r: &&ServingRuntime| {
        r.is_cluster_scoped() || r.metadata.namespace.as_deref() == Some(namespace)
    };
    let format = model
        .model_format
        .as_ref()
        .map(|f| f.name.as_str())
        .unwrap_or_default();
    let version = model
        .model_format
        .as_ref()
        .and_then(|f| f.version.as_deref());

    if let Some(name) = model.runtime.as_deref() {
        let runtime = runtimes
            .iter()
            .filter(in_scope)
            .filter(|r| r.name() == name)
            .min_by_key(|r| r.is_cluster_scoped())
            .ok_or_else(|| RenderError::RuntimeNotFound(name.to_string()))?;
        if runtime.spec.disabled == Some(true) {
            return Err(RenderError::RuntimeDisabled(name.to_string()));
        }
        if let Some(p) = model.protocol_version.as_deref()
            && !runtime.spec.protocol_versions.is_empty()
            && !runtime.spec.protocol_versions.iter().any(|v| v == p)
        {
            return Err(RenderError::ProtocolNotSupported {
                runtime: name.to_string(),
                protocol: p.to_string(),
            });
        }
        let supports =
            runtime.spec.supported_model_formats.iter().any(|f| {
                f.name == format && version.is_none_or(|v| f.version.as_deref() == Some(v))
            });
        if !supports {
            return Err(RenderError::FormatNotSupported {
                runtime: name.to_string(),
                format: format_label(format, version),
            });
        }
        return Ok(runtime);
    }

    let protocol = model.protocol_version.as_deref().unwrap_or("v1");
    let candidates = |cluster: bool| {
        let mut found: Vec<&ServingRuntime> = runtimes
            .iter()
            .filter(in_scope)
            .filter(|r| r.is_cluster_scoped() == cluster)
            .filter(|r| r.spec.disabled != Some(true) && r.spec.multi_model != Some(true))
            .filter(|r| r.spec.worker_spec.is_none())
            .filter(|r| {
                r.spec.protocol_versions.is_empty()
                    || r.spec.protocol_versions.iter().any(|v| v == protocol)
            })
            .filter(|r| {
                r.spec.supported_model_formats.iter().any(|f| {
                    f.auto_select == Some(true)
                        && f.name == format
                        && version.is_none_or(|v| f.version.as_deref() == Some(v))
                })
            })
            .collect();
        // Lowest protocol, then name (creation times are equal for built-ins), then a stable sort
        // by the priority of the format's first entry: higher wins, any beats none.
        found.sort_by(|a, b| {
            lowest_protocol(a)
                .cmp(&lowest_protocol(b))
                .then_with(|| a.name().cmp(b.name()))
        });
        found.sort_by_key(|r| {
            let p = r
                .spec
                .supported_model_formats
                .iter()
                .find(|f| f.name == format)
                .and_then(|f| f.priority);
            std::cmp::Reverse(p.map_or(i64::MIN, i64::from))
        });
        found
    };
    candidates(false)
        .into_iter()
        .chain(candidates(true))
        .next()
        .ok_or_else(|| RenderError::NoRuntime(format_label(format, version)))
}

fn lowest_protocol(r: &ServingRuntime) -> usize {
    const ORDER: [&str; 4] = ["v1", "v2", "grpc-v1", "grpc-v2"];
    r.spec
        .protocol_versions
        .iter()
        .filter_map(|p| ORDER.iter().position(|o| o == p))
        .min()
        .unwrap_or(ORDER.len())
}

fn format_label(name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{name}:{v}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidal_api::inference_service::ModelFormat;

    fn model(format: &str, protocol: Option<&str>, runtime: Option<&str>) -> ModelSpec {
        ModelSpec {
            model_format: Some(ModelFormat {
                name: format.into(),
                version: None,
            }),
            protocol_version: protocol.map(Into::into),
            runtime: runtime.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn auto_selection_matches_kserve_outcomes() {
        let rts = builtin_runtimes();
        let pick = |f, p| select(&model(f, p, None), "default", rts).map(|r| r.name().to_string());
        assert_eq!(pick("sklearn", None).unwrap(), "kserve-sklearnserver");
        assert_eq!(pick("sklearn", Some("v2")).unwrap(), "kserve-mlserver");
        assert_eq!(pick("xgboost", Some("v2")).unwrap(), "kserve-mlserver");
        assert_eq!(
            pick("huggingface", None).unwrap(),
            "kserve-huggingfaceserver"
        );
        assert_eq!(
            pick("tensorflow", None).unwrap(),
            "kserve-tensorflow-serving"
        );
        assert_eq!(
            pick("tensorflow", Some("v2")).unwrap(),
            "kserve-tritonserver"
        );
        assert_eq!(pick("vLLM", Some("v2")).unwrap(), "kserve-vllmserver");
        assert!(matches!(pick("onnx", None), Err(RenderError::NoRuntime(f)) if f == "onnx"));
    }

    #[test]
    fn explicit_runtime_is_checked() {
        let rts = builtin_runtimes();
        let seed = select(
            &model("sklearn", Some("v2"), Some("kserve-sklearnserver")),
            "default",
            rts,
        )
        .unwrap();
        assert_eq!(seed.name(), "kserve-sklearnserver");
        let err = select(
            &model("sklearn", Some("grpc-v2"), Some("kserve-sklearnserver")),
            "default",
            rts,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "specified runtime kserve-sklearnserver does not support specified protocol version"
        );
        let err = select(
            &model("xgboost", None, Some("kserve-sklearnserver")),
            "default",
            rts,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "specified runtime kserve-sklearnserver does not support specified framework/version"
        );
        let err = select(&model("sklearn", None, Some("nope")), "default", rts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "No ServingRuntimes or ClusterServingRuntimes with the name: nope"
        );
    }
}
