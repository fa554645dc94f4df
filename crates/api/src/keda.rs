//! KEDA's `keda.sh/v1alpha1` ScaledObject and TriggerAuthentication.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `apiVersion` of KEDA's objects.
pub const API_VERSION: &str = "keda.sh/v1alpha1";

/// Annotation that pauses autoscaling at a fixed replica count.
pub const PAUSED_REPLICAS_ANNOTATION: &str = "autoscaling.keda.sh/paused-replicas";
/// Annotation that pauses autoscaling where it is.
pub const PAUSED_ANNOTATION: &str = "autoscaling.keda.sh/paused";

/// A KEDA ScaledObject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObject {
    /// `keda.sh/v1alpha1`.
    pub api_version: String,
    /// `ScaledObject`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to scale and on which triggers.
    pub spec: ScaledObjectSpec,
    /// What KEDA (or Tidal's autoscaler) observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ScaledObjectStatus>,
}

/// `spec:` of a ScaledObject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    /// The workload to scale.
    pub scale_target_ref: ScaleTarget,
    /// Seconds between trigger polls (KEDA default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<i32>,
    /// Seconds after the last active trigger before scaling to zero (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<i32>,
    /// Seconds after creation before the first scale to zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cooldown_period: Option<i32>,
    /// Replicas while no trigger is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_replica_count: Option<i32>,
    /// Lowest replica count (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replica_count: Option<i32>,
    /// Highest replica count (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<i32>,
    /// Replicas to hold when triggers keep failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// HPA settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<AdvancedConfig>,
    /// The triggers.
    pub triggers: Vec<ScaleTrigger>,
}

/// `scaleTargetRef:`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTarget {
    /// Defaults to `apps/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Defaults to `Deployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The workload's name.
    pub name: String,
    /// Container whose environment resolves `...FromEnv` trigger parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_source_container_name: Option<String>,
}

/// `fallback:`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    /// Consecutive failures before falling back.
    pub failure_threshold: i32,
    /// Replicas to hold.
    pub replicas: i32,
    /// `static`, `currentReplicas`, `currentReplicasIfHigher`, `currentReplicasIfLower`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<String>,
}

/// `advanced:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdvancedConfig {
    /// The HPA KEDA creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_pod_autoscaler_config: Option<HorizontalPodAutoscalerConfig>,
    /// Restore the original replica count when the ScaledObject is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to_original_replica_count: Option<bool>,
    /// A formula over the triggers' metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_modifiers: Option<Value>,
}

/// `advanced.horizontalPodAutoscalerConfig:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HorizontalPodAutoscalerConfig {
    /// The HPA's name (default `keda-hpa-{scaledobject}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Stabilization windows and policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// One trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTrigger {
    /// Scaler type: `cpu`, `memory`, `prometheus`, `graphite`, `external`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// Optional trigger name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Serve the last value between polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cached_metrics: Option<bool>,
    /// Scaler parameters, all strings.
    pub metadata: BTreeMap<String, String>,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<AuthenticationRef>,
    /// `Utilization`, `AverageValue` or `Value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<String>,
}

/// A trigger's `authenticationRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticationRef {
    /// TriggerAuthentication name.
    pub name: String,
    /// `TriggerAuthentication` (default) or `ClusterTriggerAuthentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `status:` of a ScaledObject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectStatus {
    /// `apps/v1.Deployment`: the SCALETARGETKIND column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target_kind: Option<String>,
    /// Group/version/kind/resource of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target_gvkr: Option<Value>,
    /// Replicas before KEDA took over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_replica_count: Option<i32>,
    /// When a trigger was last active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_time: Option<String>,
    /// External metric names (`s0-prometheus`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_metric_names: Vec<String>,
    /// Resource metric names (`cpu`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_metric_names: Vec<String>,
    /// The HPA KEDA manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa_name: Option<String>,
    /// Ready, Active, Fallback, Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<KedaCondition>,
    /// Per-trigger health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Value>,
    /// Replica count while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_replica_count: Option<i32>,
}

/// A KEDA condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KedaCondition {
    /// Ready, Active, Fallback, Paused.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False, Unknown.
    pub status: String,
    /// Reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A KEDA TriggerAuthentication: where a trigger's credentials come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthentication {
    /// `keda.sh/v1alpha1`.
    pub api_version: String,
    /// `TriggerAuthentication`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Credential sources.
    pub spec: TriggerAuthenticationSpec,
}

/// `spec:` of a TriggerAuthentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthenticationSpec {
    /// Parameters read from Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_target_ref: Vec<AuthSecretTargetRef>,
    /// Parameters read from ConfigMaps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_map_target_ref: Vec<AuthConfigMapTargetRef>,
    /// Parameters read from the target container's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<AuthEnvironment>,
    /// Cloud workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<Value>,
    /// HashiCorp Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashi_corp_vault: Option<Value>,
    /// Azure Key Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<Value>,
    /// AWS Secrets Manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_manager: Option<Value>,
    /// GCP Secret Manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_secret_manager: Option<Value>,
    /// Bound service account token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_service_account_token: Vec<Value>,
}

/// One `secretTargetRef` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSecretTargetRef {
    /// Trigger parameter name (`bearerToken`, `username`, `ca`, ...).
    pub parameter: String,
    /// Secret name.
    pub name: String,
    /// Key in the secret.
    pub key: String,
}

/// One `configMapTargetRef` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfigMapTargetRef {
    /// Trigger parameter name.
    pub parameter: String,
    /// ConfigMap name.
    pub name: String,
    /// Key in the ConfigMap.
    pub key: String,
}

/// One `env` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthEnvironment {
    /// Trigger parameter name.
    pub parameter: String,
    /// Environment variable name.
    pub name: String,
    /// Container to read it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
}
