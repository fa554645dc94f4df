//! A component's autoscaler: a KEDA ScaledObject (class `keda`), an HPA (class `hpa`, the
//! default), or nothing (`external`, `none`).

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget as HpaMetricTarget, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use tidal_api::annotations::AutoscalerClass;
use tidal_api::inference_service::{ComponentSpec, MetricsSpec};
use tidal_api::keda::{
    self, AdvancedConfig, AuthenticationRef, HorizontalPodAutoscalerConfig, ScaleTarget,
    ScaleTrigger,
};
use tidal_api::{ScaledObject, keda::ScaledObjectSpec};

use crate::Autoscaler;
use crate::component::Component;
use crate::config::Config;

/// KServe's CPU target when none is given.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// The autoscaler object for a component, by class.
pub fn build(
    c: &Component,
    spec: &ComponentSpec,
    namespace: &str,
    config: &Config,
) -> Option<Autoscaler> {
    match c.class {
        AutoscalerClass::Keda => Some(Autoscaler::ScaledObject(Box::new(scaled_object(
            c, spec, namespace, config,
        )))),
        AutoscalerClass::Hpa => Some(Autoscaler::Hpa(Box::new(hpa(c, spec)))),
        AutoscalerClass::External | AutoscalerClass::None => None,
    }
}

/// KServe's `createKedaScaledObject`.
pub fn scaled_object(
    c: &Component,
    spec: &ComponentSpec,
    namespace: &str,
    config: &Config,
) -> ScaledObject {
    let name = c.meta.name.clone().unwrap_or_default();
    let min = c.min_replicas;
    // KServe: max(maxReplicas, min). With minReplicas 0 and no maxReplicas that is 0, which KEDA
    // rejects; Tidal allows at least one replica.
    let max = c.max_replicas.max(min).max(1);
    let metrics: &[MetricsSpec] = spec.auto_scaling.as_ref().map_or(&[], |a| &a.metrics);
    let mut triggers: Vec<ScaleTrigger> = metrics
        .iter()
        .map(|m| trigger(m, &name, namespace, config))
        .collect();
    if triggers.is_empty() {
        // KServe emits `triggers: null`, which KEDA's CRD rejects; scale on CPU at KServe's default
        // target instead, as KServe's own HPA class does without metrics.
        triggers.push(cpu_memory_trigger(
            "cpu",
            "Utilization",
            DEFAULT_CPU_UTILIZATION.to_string(),
        ));
    }
    ScaledObject {
        api_version: keda::API_VERSION.into(),
        kind: "ScaledObject".into(),
        metadata: c.meta.clone(),
        spec: ScaledObjectSpec {
            scale_target_ref: ScaleTarget {
                name,
                ..Default::default()
            },
            min_replica_count: Some(min),
            max_replica_count: Some(max),
            advanced: keda_behavior(spec, config).map(|behavior| AdvancedConfig {
                horizontal_pod_autoscaler_config: Some(HorizontalPodAutoscalerConfig {
                    name: None,
                    behavior: Some(behavior),
                }),
                ..Default::default()
            }),
            triggers,
            polling_interval: knob(c, "tidal.dev/keda-polling-interval"),
            cooldown_period: knob(c, "tidal.dev/keda-cooldown-period"),
            initial_cooldown_period: knob(c, "tidal.dev/keda-initial-cooldown-period"),
            idle_replica_count: knob(c, "tidal.dev/keda-idle-replica-count"),
            fallback: match (
                knob(c, "tidal.dev/keda-fallback-failure-threshold"),
                knob(c, "tidal.dev/keda-fallback-replicas"),
            ) {
                (Some(failure_threshold), Some(replicas)) => Some(tidal_api::keda::Fallback {
                    failure_threshold,
                    replicas,
                    behavior: None,
                }),
                _ => None,
            },
        },
        status: None,
    }
}

/// A KEDA field set by annotation (see `tidal_api::annotations::KEDA_KNOBS`).
fn knob(c: &Component, key: &str) -> Option<i32> {
    c.meta.annotations.as_ref()?.get(key)?.trim().parse().ok()
}

/// The HPA behaviour KEDA is given: the stabilization windows from `autoScaling.behavior`, else
/// from the configuration (0 s up, 300 s down). Unlike KServe, which copies only the windows,
/// Tidal also passes the user's policies and selectPolicy through.
fn keda_behavior(spec: &ComponentSpec, config: &Config) -> Option<HorizontalPodAutoscalerBehavior> {
    let user = spec
        .auto_scaling
        .as_ref()
        .and_then(|a| a.behavior.clone())
        .unwrap_or_default();
    let side = |rules: Option<HPAScalingRules>, default: Option<i32>| {
        let mut rules = rules.unwrap_or_default();
        rules.stabilization_window_seconds = rules.stabilization_window_seconds.or(default);
        (rules != HPAScalingRules::default()).then_some(rules)
    };
    let behavior = HorizontalPodAutoscalerBehavior {
        scale_up: side(user.scale_up, config.scale_up_stabilization_window_seconds),
        scale_down: side(
            user.scale_down,
            config.scale_down_stabilization_window_seconds,
        ),
    };
    (behavior.scale_up.is_some() || behavior.scale_down.is_some()).then_some(behavior)
}

fn cpu_memory_trigger(resource: &str, metric_type: &str, value: String) -> ScaleTrigger {
    ScaleTrigger {
        type_: resource.into(),
        metadata: BTreeMap::from([("value".to_string(), value)]),
        metric_type: (!metric_type.is_empty()).then(|| metric_type.to_string()),
        ..Default::default()
    }
}

/// KServe's `getKedaMetrics` for one metric.
fn trigger(m: &MetricsSpec, component: &str, namespace: &str, config: &Config) -> ScaleTrigger {
    let original = |q: Option<&tidal_api::quantity::MetricQuantity>| {
        q.map_or("0", |q| q.original()).to_string()
    };
    match m.type_.as_str() {
        "Resource" => {
            let Some(r) = &m.resource else {
                return ScaleTrigger::default();
            };
            let value = match r.target.type_.as_str() {
                "Utilization" => match r.target.average_utilization {
                    Some(u) => u.to_string(),
                    None if r.name == "cpu" => DEFAULT_CPU_UTILIZATION.to_string(),
                    None => "0".into(),
                },
                "AverageValue" => original(r.target.average_value.as_ref()),
                "Value" => original(r.target.value.as_ref()),
                _ => "0".into(),
            };
            cpu_memory_trigger(&r.name, &r.target.type_, value)
        }
        "External" => {
            let Some(e) = &m.external else {
                return ScaleTrigger::default();
            };
            let mut metadata = BTreeMap::from([
                ("serverAddress".to_string(), e.metric.server_address.clone()),
                ("query".to_string(), e.metric.query.clone()),
                ("threshold".to_string(), original(e.target.value.as_ref())),
            ]);
            if e.metric.backend == "prometheus"
                && let Some(ns) = e.metric.namespace.as_deref().filter(|n| !n.is_empty())
            {
                metadata.insert("namespace".into(), ns.into());
            }
            if e.metric.backend == "graphite" {
                // KEDA's graphite scaler requires queryTime and KServe never sets one.
                metadata.insert("queryTime".into(), config.graphite_query_time.clone());
            }
            let auth = e.authentication_ref.as_ref();
            if let Some(modes) = auth
                .and_then(|a| a.auth_modes.as_deref())
                .filter(|m| !m.is_empty())
            {
                metadata.insert("authModes".into(), modes.into());
            }
            ScaleTrigger {
                type_: e.metric.backend.clone(),
                metadata,
                authentication_ref: auth
                    .and_then(|a| a.authentication_ref.as_ref())
                    .filter(|r| !r.name.is_empty())
                    .map(|r| AuthenticationRef {
                        name: r.name.clone(),
                        kind: None,
                    }),
                ..Default::default()
            }
        }
        "PodMetric" => {
            let Some(p) = &m.podmetric else {
                return ScaleTrigger::default();
            };
            if p.metric.backend != "opentelemetry" {
                return ScaleTrigger::default();
            }
            let mut metadata = BTreeMap::from([
                (
                    "metricQuery".to_string(),
                    format!(
                        "sum({}{{namespace=\"{namespace}\", deployment=\"{component}\"}})",
                        p.metric.query
                    ),
                ),
                ("targetValue".to_string(), original(p.target.value.as_ref())),
                (
                    "scalerAddress".to_string(),
                    p.metric
                        .server_address
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| config.otel_metric_scaler_endpoint.clone()),
                ),
            ]);
            if let Some(op) = p
                .metric
                .operation_over_time
                .as_deref()
                .filter(|o| !o.is_empty())
            {
                metadata.insert("operationOverTime".into(), op.into());
            }
            ScaleTrigger {
                type_: "external".into(),
                metadata,
                ..Default::default()
            }
        }
        _ => ScaleTrigger::default(),
    }
}

/// KServe's HPA (`hpa_reconciler.go`). Unlike KServe, which drops it, `autoScaling.behavior` is
/// passed through, so the same YAML means the same thing under either class.
pub fn hpa(c: &Component, spec: &ComponentSpec) -> HorizontalPodAutoscaler {
    let name = c.meta.name.clone().unwrap_or_default();
    let min = c.min_replicas.max(1);
    let max = c.max_replicas.max(min);
    HorizontalPodAutoscaler {
        metadata: c.meta.clone(),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name,
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(hpa_metrics(spec)),
            behavior: spec.auto_scaling.as_ref().and_then(|a| a.behavior.clone()),
        }),
        status: None,
    }
}

fn resource_metric(name: &str, target: HpaMetricTarget) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: name.into(),
            target,
        }),
        ..Default::default()
    }
}

fn utilization(u: i32) -> HpaMetricTarget {
    HpaMetricTarget {
        type_: "Utilization".into(),
        average_utilization: Some(u),
        ..Default::default()
    }
}

/// KServe's `getHPAMetrics`.
fn hpa_metrics(spec: &ComponentSpec) -> Vec<MetricSpec> {
    match &spec.auto_scaling {
        Some(auto) => auto
            .metrics
            .iter()
            .filter_map(|m| m.resource.as_ref().filter(|_| m.type_ == "Resource"))
            .filter_map(|r| match (r.name.as_str(), r.target.type_.as_str()) {
                ("cpu", _) => Some(resource_metric(
                    "cpu",
                    utilization(
                        r.target
                            .average_utilization
                            .unwrap_or(DEFAULT_CPU_UTILIZATION),
                    ),
                )),
                ("memory", "Utilization") => r
                    .target
                    .average_utilization
                    .map(|u| resource_metric("memory", utilization(u))),
                ("memory", "AverageValue") => r.target.average_value.as_ref().map(|v| {
                    resource_metric(
                        "memory",
                        HpaMetricTarget {
                            type_: "AverageValue".into(),
                            average_value: Some(K8sQuantity(v.quantity().canonical())),
                            ..Default::default()
                        },
                    )
                }),
                _ => None,
            })
            .collect(),
        None => match spec.scale_metric.as_deref().unwrap_or("cpu") {
            "memory" => spec
                .scale_target
                .map(|t| vec![resource_metric("memory", utilization(t))])
                .unwrap_or_default(),
            _ => vec![resource_metric(
                "cpu",
                utilization(spec.scale_target.unwrap_or(DEFAULT_CPU_UTILIZATION)),
            )],
        },
    }
}
