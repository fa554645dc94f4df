//! `serving.kserve.io/v1beta1` InferenceService: the user's object, as KServe defines it.
//!
//! Only what Tidal reads is typed; Kubernetes pod fields that are passed through untouched (affinity,
//! tolerations, ...) stay JSON values so that nothing the user wrote is lost on the way to the
//! Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::quantity::{MetricQuantity, ResourceQuantity};
use crate::status::InferenceServiceStatus;

/// Declares a struct with the given fields followed by every container field Tidal knows, and a
/// `container()` accessor. KServe inlines a Kubernetes Container into `model:`; declaring the
/// fields (rather than `#[serde(flatten)]`) keeps error paths precise
/// (`spec.predictor.model.resources.limits.cpu`).
macro_rules! with_container_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_devices: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidential: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy_rules: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_once: Option<Value>,
        }

        impl $name {
            /// The container fields alone.
            pub fn container(&self) -> ContainerSpec {
                ContainerSpec {
                    name: self.name.clone(),
                    image: self.image.clone(),
                    command: self.command.clone(),
                    args: self.args.clone(),
                    env: self.env.clone(),
                    resources: self.resources.clone(),
                    ports: self.ports.clone(),
                    volume_mounts: self.volume_mounts.clone(),
                    working_dir: self.working_dir.clone(),
                    image_pull_policy: self.image_pull_policy.clone(),
                    env_from: self.env_from.clone(),
                    liveness_probe: self.liveness_probe.clone(),
                    readiness_probe: self.readiness_probe.clone(),
                    startup_probe: self.startup_probe.clone(),
                    lifecycle: self.lifecycle.clone(),
                    security_context: self.security_context.clone(),
                    termination_message_path: self.termination_message_path.clone(),
                    termination_message_policy: self.termination_message_policy.clone(),
                    stdin: self.stdin.clone(),
                    tty: self.tty.clone(),
                    volume_devices: self.volume_devices.clone(),
                    resize_policy: self.resize_policy.clone(),
                    confidential: self.confidential.clone(),
                    restart_policy: self.restart_policy.clone(),
                    restart_policy_rules: self.restart_policy_rules.clone(),
                    stdin_once: self.stdin_once.clone(),
                }
            }
        }
    };
}

/// API group of KServe's objects.
pub const GROUP: &str = "serving.kserve.io";
/// `apiVersion` of an InferenceService.
pub const API_VERSION: &str = "serving.kserve.io/v1beta1";
/// Kind name.
pub const KIND: &str = "InferenceService";

/// An InferenceService.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceService {
    /// `serving.kserve.io/v1beta1`.
    pub api_version: String,
    /// `InferenceService`.
    pub kind: String,
    /// Kubernetes object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to serve and how to scale it.
    pub spec: InferenceServiceSpec,
    /// What the controller observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<InferenceServiceStatus>,
}

/// The three components of an InferenceService.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceSpec {
    /// The model server; required.
    pub predictor: ComponentSpec,
    /// An optional pre/post-processing component in front of the predictor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformer: Option<Box<ComponentSpec>>,
    /// An optional explanation component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explainer: Option<Box<ComponentSpec>>,
    /// Canary predictors (KServe HEAD); accepted and not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Value>,
}

/// Which component an object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// `spec.predictor`
    Predictor,
    /// `spec.transformer`
    Transformer,
    /// `spec.explainer`
    Explainer,
}

impl ComponentKind {
    /// `predictor`, `transformer` or `explainer`: the `component` label and the name suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Predictor => "predictor",
            ComponentKind::Transformer => "transformer",
            ComponentKind::Explainer => "explainer",
        }
    }
}

impl InferenceServiceSpec {
    /// The components present, predictor first.
    pub fn components(&self) -> impl Iterator<Item = (ComponentKind, &ComponentSpec)> {
        std::iter::once((ComponentKind::Predictor, &self.predictor))
            .chain(
                self.transformer
                    .as_deref()
                    .map(|c| (ComponentKind::Transformer, c)),
            )
            .chain(
                self.explainer
                    .as_deref()
                    .map(|c| (ComponentKind::Explainer, c)),
            )
    }
}

/// A predictor, transformer or explainer: KServe's `PredictorSpec` / `TransformerSpec` /
/// `ExplainerSpec`, which inline a `ComponentExtensionSpec` and a Kubernetes `PodSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// A model served by a ServingRuntime (predictor only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Box<ModelSpec>>,
    /// Legacy framework-specific predictors (`sklearn:`, `xgboost:`, ...); defaulting turns them
    /// into `model` with the framework as the model format.
    #[serde(flatten)]
    pub legacy: LegacyFrameworks,
    /// Custom containers; the first is the server (`kserve-container`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerSpec>,
    /// `spec.predictor.name` changes the component's object names to `{isvc}-{name}-predictor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// Lowest replica count; 1 when unset. 0 allows scaling to zero (KEDA only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// Highest replica count; 0 or unset means "same as minReplicas".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// Legacy HPA target (percent for cpu).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target: Option<i32>,
    /// Legacy HPA metric: cpu, memory, concurrency or rps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_metric: Option<String>,
    /// Legacy metric target type; read by no KServe controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_metric_type: Option<String>,
    /// Metrics and behaviour for the autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling: Option<AutoScalingSpec>,
    /// Per-request concurrency limit (Knative; accepted and ignored in Standard mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i64>,
    /// Request timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Canary traffic (Knative only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_traffic_percent: Option<i64>,
    /// Labels added to this component's objects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to this component's objects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The Deployment's rollout strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_strategy: Option<Value>,
    /// Request/response logger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logger: Option<Value>,
    /// Request batcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batcher: Option<Value>,
    /// Multi-node worker pods (requires autoscalerClass `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_spec: Option<Value>,
    /// Storage URIs mounted at given paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_uris: Option<Value>,
    /// A ClusterStorageContainer to download with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_container_name: Option<String>,

    /// Pod-level fields passed through to the Deployment's pod template.
    #[serde(flatten)]
    pub pod: Box<PodFields>,
}

/// KServe's pre-`model` predictor fields, one per framework.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct LegacyFrameworks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sklearn: Option<Box<ModelSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xgboost: Option<Box<ModelSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lightgbm: Option<Box<ModelSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorflow: Option<Box<ModelSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pytorch: Option<Box<ModelSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triton: Option<Box<ModelSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<Box<ModelSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huggingface: Option<Box<ModelSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmml: Option<Box<ModelSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paddle: Option<Box<ModelSpec>>,
}

impl LegacyFrameworks {
    /// The format names of the legacy predictors that are set.
    pub fn names(&self) -> Vec<&'static str> {
        let mut copy = self.clone();
        copy.slots()
            .into_iter()
            .filter(|(_, m)| m.is_some())
            .map(|(n, _)| n)
            .collect()
    }

    /// Removes and returns the legacy predictor if exactly one is set.
    pub fn take_single(&mut self) -> Option<(&'static str, ModelSpec)> {
        let mut set = self.slots().into_iter().filter(|(_, m)| m.is_some());
        match (set.next(), set.next()) {
            (Some((name, slot)), None) => slot.take().map(|m| (name, *m)),
            _ => None,
        }
    }

    fn slots(&mut self) -> [(&'static str, &mut Option<Box<ModelSpec>>); 10] {
        [
            ("sklearn", &mut self.sklearn),
            ("xgboost", &mut self.xgboost),
            ("lightgbm", &mut self.lightgbm),
            ("tensorflow", &mut self.tensorflow),
            ("pytorch", &mut self.pytorch),
            ("triton", &mut self.triton),
            ("onnx", &mut self.onnx),
            ("huggingface", &mut self.huggingface),
            ("pmml", &mut self.pmml),
            ("paddle", &mut self.paddle),
        ]
    }
}

/// The PodSpec fields an InferenceService component may set, passed through verbatim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_service_links: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_aliases: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "hostIPC")]
    pub host_ipc: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "hostPID")]
    pub host_pid: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_claims: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_process_namespace: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_users: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname_override: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemption_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_gates: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_gates: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "setHostnameAsFQDN")]
    pub set_hostname_as_fqdn: Option<Value>,
}

with_container_fields! {
    /// `spec.predictor.model`: a model format plus the container fields that override the
    /// runtime's `kserve-container`.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(missing_docs)]
    pub struct ModelSpec {
    /// The model's format (`sklearn`, `huggingface`, ...), used to pick a runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_format: Option<ModelFormat>,
    /// A ServingRuntime or ClusterServingRuntime name; picked automatically when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Overrides the runtime image's tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// `v1`, `v2`, `grpc-v1` or `grpc-v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Where the model lives (`gs://`, `s3://`, `pvc://`, `https://`, a local path, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_uri: Option<String>,
    /// Storage spec (key/path in a storage secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Value>,
    }
}

/// A model format name and optional version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelFormat {
    /// Format name, case-sensitive (`sklearn`, `huggingface`, `vLLM`, ...).
    pub name: String,
    /// Exact version string to match against runtimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

with_container_fields! {
    /// The container fields Tidal reads; the rest pass through as JSON.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(missing_docs)]
    pub struct ContainerSpec {}
}

/// Container resource requests and limits; quantities are checked when read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Upper bounds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, ResourceQuantity>,
    /// What the scheduler reserves; CPU Utilization is measured against `requests.cpu`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, ResourceQuantity>,
    /// Dynamic resource claims, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
}

/// `autoScaling`: what to scale on and how fast.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScalingSpec {
    /// Triggers, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricsSpec>,
    /// HPA scaling behaviour (stabilization windows and policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// One metric to scale on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// `Resource`, `External` or `PodMetric`.
    #[serde(rename = "type")]
    pub type_: String,
    /// cpu or memory of the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSource>,
    /// A query against Prometheus or Graphite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalMetricSource>,
    /// A per-pod metric collected by OpenTelemetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub podmetric: Option<PodMetricSource>,
}

/// `resource:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetricSource {
    /// `cpu` or `memory`.
    pub name: String,
    /// The target.
    pub target: MetricTarget,
}

/// `external:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricSource {
    /// The query and where to send it.
    pub metric: ExternalMetrics,
    /// How to authenticate to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<ExtMetricAuthentication>,
    /// The threshold.
    pub target: MetricTarget,
}

/// `external.metric:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetrics {
    /// `prometheus` (default) or `graphite`.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// The backend's URL.
    #[serde(default)]
    pub server_address: String,
    /// PromQL or a Graphite target.
    #[serde(default)]
    pub query: String,
    /// Tenant namespace for Prometheus (Thanos/Cortex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

fn default_backend() -> String {
    "prometheus".into()
}

/// `external.authenticationRef:` (note KServe's nesting).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtMetricAuthentication {
    /// `bearer`, `basic`, `tls`, ... comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_modes: Option<String>,
    /// The KEDA TriggerAuthentication to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<AuthenticationRef>,
}

/// A reference to a TriggerAuthentication by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticationRef {
    /// Name in the InferenceService's namespace.
    pub name: String,
}

/// `podmetric:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricSource {
    /// What to collect and query.
    pub metric: PodMetrics,
    /// The threshold.
    pub target: MetricTarget,
}

/// `podmetric.metric:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics {
    /// `opentelemetry`.
    #[serde(default = "default_otel")]
    pub backend: String,
    /// The KEDA OTel scaler address; the configured default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
    /// Metrics the collector scrapes from the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_names: Vec<String>,
    /// Metric name (wrapped into a per-deployment sum).
    #[serde(default)]
    pub query: String,
    /// `last_one`, `rate`, `count`, `avg`, `min`, `max`, `sum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_over_time: Option<String>,
}

fn default_otel() -> String {
    "opentelemetry".into()
}

/// A metric target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricTarget {
    /// `Utilization`, `AverageValue` or `Value`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// Total value (External).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<MetricQuantity>,
    /// Per-replica value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<MetricQuantity>,
    /// Percent of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
}
