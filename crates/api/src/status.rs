//! InferenceService status and the Knative-style conditions KServe sets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `status:` of an InferenceService.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceStatus {
    /// The generation the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions, sorted by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// External URL: `http://{name}-{namespace}.{domain}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// In-cluster address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    /// Per-component URLs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentStatus>,
    /// Model load state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_status: Option<Value>,
    /// `Standard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_mode: Option<String>,
    /// The namespaced ServingRuntime chosen for the predictor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_runtime_name: Option<String>,
    /// The ClusterServingRuntime chosen for the predictor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_serving_runtime_name: Option<String>,
}

/// `status.address`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addressable {
    /// The URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `status.components.{predictor,...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// The component's own URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The component's in-cluster address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
    /// Newest ready revision (Knative only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ready_revision: Option<String>,
}

/// A Knative-style condition (`type`, `status`, `severity`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `PredictorReady`, `IngressReady`, `Stopped`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// `Info` for conditions that do not gate Ready; empty for those that do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// RFC 3339 time of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Condition type names KServe uses.
pub mod condition {
    /// Aggregate readiness: PredictorReady ∧ IngressReady (∧ TransformerReady ∧ ExplainerReady).
    pub const READY: &str = "Ready";
    /// The predictor's Deployment is available.
    pub const PREDICTOR_READY: &str = "PredictorReady";
    /// The transformer's Deployment is available.
    pub const TRANSFORMER_READY: &str = "TransformerReady";
    /// The explainer's Deployment is available.
    pub const EXPLAINER_READY: &str = "ExplainerReady";
    /// Traffic can reach the service.
    pub const INGRESS_READY: &str = "IngressReady";
    /// The `serving.kserve.io/stop` annotation is in force.
    pub const STOPPED: &str = "Stopped";
}

impl InferenceServiceStatus {
    /// The condition of the given type, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Sets a condition, keeping `lastTransitionTime` when the status did not change and the
    /// list sorted by type as Knative does.
    pub fn set_condition(&mut self, mut c: Condition) {
        if let Some(old) = self.conditions.iter_mut().find(|o| o.type_ == c.type_) {
            if old.status == c.status {
                c.last_transition_time = old.last_transition_time.clone();
            }
            *old = c;
        } else {
            self.conditions.push(c);
        }
        self.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    }
}
