//! `serving.kserve.io/v1alpha1` ServingRuntime and ClusterServingRuntime: how to run a format.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::inference_service::{ContainerSpec, PodFields};

/// `apiVersion` of ServingRuntimes.
pub const API_VERSION: &str = "serving.kserve.io/v1alpha1";

/// A ServingRuntime (namespaced) or ClusterServingRuntime; both share the spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServingRuntime {
    /// `serving.kserve.io/v1alpha1`.
    pub api_version: String,
    /// `ServingRuntime` or `ClusterServingRuntime`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the runtime serves and its container.
    pub spec: ServingRuntimeSpec,
}

impl ServingRuntime {
    /// True for a ClusterServingRuntime.
    pub fn is_cluster_scoped(&self) -> bool {
        self.kind == "ClusterServingRuntime"
    }

    /// The runtime's name.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

/// `spec:` of a ServingRuntime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServingRuntimeSpec {
    /// Formats this runtime can load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_model_formats: Vec<SupportedModelFormat>,
    /// Protocols it speaks; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocol_versions: Vec<String>,
    /// ModelMesh runtimes; never auto-selected for Standard mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_model: Option<bool>,
    /// A disabled runtime is never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Multi-node worker spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_spec: Option<Value>,
    /// ModelMesh adapter settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_in_adapter: Option<Value>,
    /// GRPC endpoints (ModelMesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_endpoint: Option<String>,
    /// GRPC data endpoint (ModelMesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_data_endpoint: Option<String>,
    /// HTTP data endpoint (ModelMesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_data_endpoint: Option<String>,
    /// Replicas (ModelMesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Storage helper (ModelMesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_helper: Option<Value>,
    /// Labels for the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for the pods (`prometheus.kserve.io/port`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The containers; `kserve-container` is the server.
    #[serde(default)]
    pub containers: Vec<ContainerSpec>,
    /// Pod fields merged under the InferenceService's.
    #[serde(flatten)]
    pub pod: PodFields,
}

/// One `supportedModelFormats` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedModelFormat {
    /// Format name.
    pub name: String,
    /// Format version (exact string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether auto-selection may pick this runtime for the format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_select: Option<bool>,
    /// Higher wins among auto-selected runtimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}
