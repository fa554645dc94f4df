//! `render(&InferenceService) -> Desired`: the objects KServe's raw-mode controller would create
//! for an InferenceService (Deployment, Service, and a KEDA ScaledObject or an HPA per
//! component), plus the status URLs. Pure: the same input always gives the same output, and
//! nothing here does I/O. The embedded controller and the Kubernetes operator both call it.
//!
//! Where KServe emits an object KEDA would reject, Tidal emits a valid one instead; each such
//! choice is commented where it is made and listed in the README's compatibility section.

pub mod autoscaler;
pub mod component;
pub mod config;
pub mod container;
pub mod runtime;
pub mod workload;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;
use tidal_api::annotations::{self, AutoscalerClass};
use tidal_api::inference_service::ComponentKind;
use tidal_api::status::{Addressable, ComponentStatus};
use tidal_api::{InferenceService, ScaledObject, ServingRuntime};

pub use config::Config;
pub use runtime::builtin_runtimes;

/// What an InferenceService should own, and what its status should say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// One per component, in the order predictor, transformer, explainer.
    pub components: Vec<ComponentObjects>,
    /// `status.url`.
    pub url: String,
    /// `status.address.url`.
    pub address: Addressable,
    /// `status.components`.
    pub component_status: std::collections::BTreeMap<String, ComponentStatus>,
    /// The predictor's runtime, and whether it is a ClusterServingRuntime.
    pub runtime: Option<(String, bool)>,
    /// True when `serving.kserve.io/stop` is set: nothing is deployed.
    pub stopped: bool,
}

/// The objects of one component.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentObjects {
    /// Which component.
    pub kind: ComponentKind,
    /// The autoscaler class in force for it.
    pub class: AutoscalerClass,
    /// Its Service.
    pub service: Service,
    /// Its Deployment.
    pub deployment: Deployment,
    /// Its autoscaler, if the class has one.
    pub autoscaler: Option<Autoscaler>,
}

/// The autoscaler object of a component.
#[derive(Debug, Clone, PartialEq)]
pub enum Autoscaler {
    /// autoscalerClass `keda`.
    ScaledObject(Box<ScaledObject>),
    /// autoscalerClass `hpa` (or none given).
    Hpa(Box<HorizontalPodAutoscaler>),
}

impl Desired {
    /// Every object as JSON, in apply order: per component Service, Deployment, autoscaler.
    pub fn objects(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for c in &self.components {
            out.push(with_type_meta(&c.service, "v1", "Service"));
            out.push(with_type_meta(&c.deployment, "apps/v1", "Deployment"));
            match &c.autoscaler {
                Some(Autoscaler::ScaledObject(so)) => {
                    out.push(serde_json::to_value(so).expect("serializes"))
                }
                Some(Autoscaler::Hpa(hpa)) => out.push(with_type_meta(
                    hpa,
                    "autoscaling/v2",
                    "HorizontalPodAutoscaler",
                )),
                None => {}
            }
        }
        out
    }
}

/// k8s-openapi types carry their apiVersion and kind in the type, not the value; put them in.
fn with_type_meta<T: serde::Serialize>(obj: &T, api_version: &str, kind: &str) -> Value {
    let mut v = serde_json::to_value(obj).expect("k8s objects serialize");
    if let Value::Object(map) = &mut v {
        let mut out = serde_json::Map::new();
        out.insert("apiVersion".into(), api_version.into());
        out.insert("kind".into(), kind.into());
        out.extend(std::mem::take(map));
        *map = out;
    }
    v
}

/// Why an InferenceService could not be rendered (KServe's reasons from its status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `runtime:` names no runtime.
    #[error("No ServingRuntimes or ClusterServingRuntimes with the name: {0}")]
    RuntimeNotFound(String),
    /// The runtime is disabled.
    #[error("specified runtime {0} is disabled")]
    RuntimeDisabled(String),
    /// The runtime does not speak the model's protocol.
    #[error("specified runtime {runtime} does not support specified protocol version")]
    ProtocolNotSupported {
        /// Runtime name.
        runtime: String,
        /// Requested protocol.
        protocol: String,
    },
    /// The runtime does not load the model's format.
    #[error("specified runtime {runtime} does not support specified framework/version")]
    FormatNotSupported {
        /// Runtime name.
        runtime: String,
        /// The model format.
        format: String,
    },
    /// Auto-selection found nothing.
    #[error("no runtime found to support predictor with model type: {0}")]
    NoRuntime(String),
    /// The runtime has no `kserve-container`.
    #[error("failed to find kserve-container in ServingRuntime containers")]
    NoKserveContainer,
    /// A `{{...}}` placeholder Tidal cannot expand.
    #[error(
        "invalid template in {0:?}: only {{{{.Name}}}}, {{{{.Namespace}}}}, {{{{.Labels.x}}}} and {{{{.Annotations.x}}}} are supported"
    )]
    Template(String),
    /// A field passed through to the pod is not what Kubernetes expects there.
    #[error("{field}: Invalid value: {message}")]
    InvalidField {
        /// Path of the field from the InferenceService root.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The object has no implementation (validation would have said so).
    #[error("{0} has no model and no containers")]
    NoImplementation(&'static str),
}

impl RenderError {
    /// KServe's `lastFailureInfo.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::RuntimeNotFound(_) => "RuntimeNotRecognized",
            RenderError::RuntimeDisabled(_) => "RuntimeDisabled",
            RenderError::ProtocolNotSupported { .. }
            | RenderError::FormatNotSupported { .. }
            | RenderError::NoRuntime(_) => "NoSupportingRuntime",
            _ => "InvalidPredictorSpec",
        }
    }
}

/// Renders a defaulted, validated InferenceService. `runtimes` are the ServingRuntimes and
/// ClusterServingRuntimes to choose from (usually [`builtin_runtimes`] plus the user's).
pub fn render(
    isvc: &InferenceService,
    runtimes: &[ServingRuntime],
    config: &Config,
) -> Result<Desired, RenderError> {
    let name = isvc.metadata.name.as_deref().unwrap_or_default();
    let namespace = isvc
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(tidal_api::defaults::DEFAULT_NAMESPACE);
    let isvc_annotations = isvc.metadata.annotations.clone().unwrap_or_default();

    let mut desired = Desired {
        url: format!("{}://{}", config.url_scheme, config.host(name, namespace)),
        stopped: annotations::is_stopped(&isvc_annotations),
        ..Default::default()
    };
    // The in-cluster address goes to the transformer when there is one.
    let front = if isvc.spec.transformer.is_some() {
        ComponentKind::Transformer
    } else {
        ComponentKind::Predictor
    };

    for (kind, spec) in isvc.spec.components() {
        let built = component::build(isvc, kind, spec, runtimes, config)?;
        if kind == ComponentKind::Predictor {
            desired.runtime = built.runtime.clone();
        }
        let object_name = built.meta.name.clone().unwrap_or_default();
        if kind == front {
            desired.address = Addressable {
                url: Some(format!(
                    "http://{object_name}.{namespace}.svc.cluster.local"
                )),
            };
        }
        desired.component_status.insert(
            kind.as_str().to_string(),
            ComponentStatus {
                url: Some(format!("http://{}", config.host(&object_name, namespace))),
                ..Default::default()
            },
        );
        if desired.stopped {
            continue;
        }
        let deployment = workload::deployment(&built);
        let service = workload::service(&built);
        let autoscaler = autoscaler::build(&built, spec, namespace, config);
        desired.components.push(ComponentObjects {
            kind,
            class: built.class,
            service,
            deployment,
            autoscaler,
        });
    }
    Ok(desired)
}
