//! The annotations and labels KServe and KEDA give meaning to.

use std::collections::BTreeMap;

/// `serving.kserve.io/deploymentMode`: `Standard` (alias `RawDeployment`), `Knative`, `ModelMesh`.
pub const DEPLOYMENT_MODE: &str = "serving.kserve.io/deploymentMode";
/// `serving.kserve.io/autoscalerClass`: `hpa` (default), `keda`, `external`, `none`.
pub const AUTOSCALER_CLASS: &str = "serving.kserve.io/autoscalerClass";
/// `serving.kserve.io/stop`: `"true"` deletes the workload and keeps the InferenceService.
pub const STOP: &str = "serving.kserve.io/stop";
/// Where the storage initializer downloads from; set by the controller.
pub const STORAGE_SOURCE_URI: &str = "internal.serving.kserve.io/storage-initializer-sourceuri";
/// Whether the model volume is mounted read-only (default true).
pub const STORAGE_READONLY: &str = "storage.kserve.io/readonly";
/// Label on every object of an InferenceService.
pub const LABEL_ISVC: &str = "serving.kserve.io/inferenceservice";
/// Label naming the component (`predictor`, `transformer`, `explainer`).
pub const LABEL_COMPONENT: &str = "component";
/// Label selecting a component's pods: `isvc.{component name}`.
pub const LABEL_APP: &str = "app";

/// KEDA ScaledObject fields KServe's InferenceService has no place for, settable as annotations
/// (on the InferenceService or the component) and copied into the rendered ScaledObject:
/// `pollingInterval`, `cooldownPeriod`, `initialCooldownPeriod`, `idleReplicaCount`, and
/// `fallback` (`failureThreshold` and `replicas`, both needed).
pub const KEDA_KNOBS: &[(&str, &str)] = &[
    ("tidal.dev/keda-polling-interval", "pollingInterval"),
    ("tidal.dev/keda-cooldown-period", "cooldownPeriod"),
    (
        "tidal.dev/keda-initial-cooldown-period",
        "initialCooldownPeriod",
    ),
    ("tidal.dev/keda-idle-replica-count", "idleReplicaCount"),
    (
        "tidal.dev/keda-fallback-failure-threshold",
        "fallback.failureThreshold",
    ),
    ("tidal.dev/keda-fallback-replicas", "fallback.replicas"),
];

/// ISVC annotations never copied onto child objects.
pub const DISALLOWED_ON_CHILDREN: &[&str] = &[
    "autoscaling.knative.dev/min-scale",
    "autoscaling.knative.dev/max-scale",
    STORAGE_SOURCE_URI,
    "kubectl.kubernetes.io/last-applied-configuration",
    "modelFormat",
];

/// How KServe deploys an InferenceService. Tidal implements Standard only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentMode {
    /// Deployment + Service + HPA/ScaledObject (KServe's raw mode).
    Standard,
    /// Knative Serving (`Serverless` is its old name).
    Knative,
    /// ModelMesh.
    ModelMesh,
}

impl DeploymentMode {
    /// Parses an annotation value, resolving the deprecated aliases.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Standard" | "RawDeployment" => Some(DeploymentMode::Standard),
            "Knative" | "Serverless" => Some(DeploymentMode::Knative),
            "ModelMesh" => Some(DeploymentMode::ModelMesh),
            _ => None,
        }
    }

    /// The canonical annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentMode::Standard => "Standard",
            DeploymentMode::Knative => "Knative",
            DeploymentMode::ModelMesh => "ModelMesh",
        }
    }
}

/// Which autoscaler manages the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoscalerClass {
    /// A Kubernetes HPA on cpu/memory (the default).
    Hpa,
    /// A KEDA ScaledObject.
    Keda,
    /// Someone else scales the Deployment; Tidal creates no autoscaler.
    External,
    /// Fixed at minReplicas.
    None,
}

impl AutoscalerClass {
    /// The allowed annotation values.
    pub const ALLOWED: &'static [&'static str] = &["hpa", "keda", "external", "none"];

    /// Parses an annotation value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hpa" => Some(AutoscalerClass::Hpa),
            "keda" => Some(AutoscalerClass::Keda),
            "external" => Some(AutoscalerClass::External),
            "none" => Some(AutoscalerClass::None),
            _ => None,
        }
    }

    /// The class an annotation map selects (absent means `hpa`); `None` for an unknown value.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<Self> {
        annotations
            .get(AUTOSCALER_CLASS)
            .map_or(Some(AutoscalerClass::Hpa), |v| Self::parse(v))
    }

    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoscalerClass::Hpa => "hpa",
            AutoscalerClass::Keda => "keda",
            AutoscalerClass::External => "external",
            AutoscalerClass::None => "none",
        }
    }
}

/// True when `serving.kserve.io/stop` is `true` (any case).
pub fn is_stopped(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(STOP)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}
