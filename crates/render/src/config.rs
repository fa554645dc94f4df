//! The settings KServe keeps in its `inferenceservice-config` ConfigMap, as plain data.

use std::collections::BTreeMap;

/// Cluster-wide rendering settings. [`Config::default`] is KServe's shipped configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `ingress.ingressDomain` (default `example.com`).
    pub ingress_domain: String,
    /// `ingress.urlScheme` (default `http`).
    pub url_scheme: String,
    /// `ingress.domainTemplate`, with `{{ .Name }}`, `{{ .Namespace }}`, `{{ .IngressDomain }}`.
    pub domain_template: String,
    /// `autoscaler.scaleUpStabilizationWindowSeconds` (default 0).
    pub scale_up_stabilization_window_seconds: Option<i32>,
    /// `autoscaler.scaleDownStabilizationWindowSeconds` (default 300).
    pub scale_down_stabilization_window_seconds: Option<i32>,
    /// `storageInitializer` settings.
    pub storage_initializer: StorageInitializer,
    /// `inferenceService.resource`: requests and limits for custom containers.
    pub default_resources: BTreeMap<String, String>,
    /// `opentelemetryCollector.metricScalerEndpoint`.
    pub otel_metric_scaler_endpoint: String,
    /// The `queryTime` Tidal adds to graphite triggers (KEDA requires one; KServe sets none).
    pub graphite_query_time: String,
}

/// `storageInitializer:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageInitializer {
    /// The init container's image.
    pub image: String,
    /// CPU request.
    pub cpu_request: String,
    /// CPU limit.
    pub cpu_limit: String,
    /// Memory request.
    pub memory_request: String,
    /// Memory limit.
    pub memory_limit: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ingress_domain: "example.com".into(),
            url_scheme: "http".into(),
            domain_template: "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}".into(),
            scale_up_stabilization_window_seconds: Some(0),
            scale_down_stabilization_window_seconds: Some(300),
            storage_initializer: StorageInitializer {
                image: "kserve/storage-initializer:latest".into(),
                cpu_request: "100m".into(),
                cpu_limit: "1".into(),
                memory_request: "100Mi".into(),
                memory_limit: "1Gi".into(),
            },
            default_resources: [
                ("cpu".to_string(), "1".to_string()),
                ("memory".to_string(), "2Gi".to_string()),
            ]
            .into_iter()
            .collect(),
            otel_metric_scaler_endpoint: "keda-otel-scaler.keda.svc:4318".into(),
            graphite_query_time: "-5min".into(),
        }
    }
}

impl Config {
    /// The external host of an object, from the domain template.
    pub fn host(&self, name: &str, namespace: &str) -> String {
        self.domain_template
            .replace("{{ .Name }}", name)
            .replace("{{ .Namespace }}", namespace)
            .replace("{{ .IngressDomain }}", &self.ingress_domain)
    }
}
