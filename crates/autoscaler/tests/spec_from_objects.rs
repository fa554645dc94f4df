//! Building a `Spec` from ScaledObjects and HPAs: defaults and validation errors.

mod common;

use std::time::Duration;

use common::{prometheus_trigger, scaled_object, scaled_object_with_annotations, spec};
use serde_json::json;
use tidal_api::k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use tidal_autoscaler::{
    Behavior, Class, FallbackBehavior, MetricSource, MetricTarget, Pause, PolicyKind, ResourceName,
    SelectPolicy, Spec, SpecError,
};

#[test]
fn keda_defaults_are_filled_in() {
    let s = spec(json!({}));
    assert_eq!(s.class, Class::Keda);
    assert_eq!((s.min_replicas, s.max_replicas), (0, 100));
    assert_eq!(s.hpa_min_replicas(), 1);
    assert_eq!(s.polling_interval, Duration::from_secs(30));
    assert_eq!(s.cooldown_period, Duration::from_secs(300));
    assert_eq!(s.initial_cooldown_period, Duration::ZERO);
    assert_eq!(s.idle_replicas, None);
    assert_eq!(s.fallback, None);
    assert_eq!(s.pause, Pause::No);
    assert_eq!(s.behavior, Behavior::default());
    assert_eq!(s.metrics[0].name, "s0-prometheus");
    assert_eq!(s.metrics[0].source, MetricSource::External);
    assert_eq!(s.metrics[0].target, MetricTarget::AverageValue(5000));
    assert_eq!(s.scalers.len(), 1);
}

#[test]
fn kubernetes_behavior_defaults() {
    let b = Behavior::default();
    assert_eq!(b.scale_up.stabilization_window, Duration::ZERO);
    assert_eq!(b.scale_up.select_policy, SelectPolicy::Max);
    let up: Vec<_> = b
        .scale_up
        .policies
        .iter()
        .map(|p| (p.kind, p.value, p.period.as_secs()))
        .collect();
    assert_eq!(
        up,
        vec![(PolicyKind::Pods, 4, 15), (PolicyKind::Percent, 100, 15)]
    );
    assert_eq!(b.scale_down.stabilization_window, Duration::from_secs(300));
    let down: Vec<_> = b
        .scale_down
        .policies
        .iter()
        .map(|p| (p.kind, p.value, p.period.as_secs()))
        .collect();
    assert_eq!(down, vec![(PolicyKind::Percent, 100, 15)]);
    assert_eq!((b.scale_up.tolerance, b.scale_down.tolerance), (0.1, 0.1));
}

#[test]
fn kserve_style_behavior_with_only_windows_keeps_default_policies() {
    let s = spec(json!({
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 30},
            "scaleDown": {"stabilizationWindowSeconds": 60, "tolerance": "50m"},
        }}},
    }));
    assert_eq!(
        s.behavior.scale_up.stabilization_window,
        Duration::from_secs(30)
    );
    assert_eq!(
        s.behavior.scale_down.stabilization_window,
        Duration::from_secs(60)
    );
    assert_eq!(
        s.behavior.scale_up.policies,
        Behavior::default().scale_up.policies
    );
    assert_eq!(s.behavior.scale_down.tolerance, 0.05);
}

#[test]
fn kserve_rendered_memory_scaled_object() {
    // KServe's e2e expectation: memory AverageValue 10Gi, min 1, max 3.
    let s = spec(json!({
        "minReplicaCount": 1,
        "maxReplicaCount": 3,
        "triggers": [{"type": "memory", "metadata": {"value": "10Gi"}, "metricType": "AverageValue"}],
    }));
    assert_eq!(
        s.metrics[0].source,
        MetricSource::Resource {
            resource: ResourceName::Memory,
            container: None
        }
    );
    assert_eq!(
        s.metrics[0].target,
        MetricTarget::AverageValue(10 * 1024 * 1024 * 1024 * 1000)
    );
}

#[test]
fn annotations() {
    let with = |a| Spec::from_scaled_object(&scaled_object_with_annotations(json!({}), a));
    assert_eq!(
        with(json!({"autoscaling.keda.sh/paused-replicas": "0"}))
            .unwrap()
            .pause,
        Pause::Replicas(0)
    );
    assert_eq!(
        with(json!({"autoscaling.keda.sh/paused": "true"}))
            .unwrap()
            .pause,
        Pause::Frozen
    );
    assert_eq!(
        with(json!({"autoscaling.keda.sh/paused": "yes"}))
            .unwrap()
            .pause,
        Pause::Frozen,
        "not a bool: pauses"
    );
    assert_eq!(
        with(json!({"autoscaling.keda.sh/paused": "false"}))
            .unwrap()
            .pause,
        Pause::No
    );
    assert_eq!(
        with(json!({"autoscaling.keda.sh/paused": "false", "autoscaling.keda.sh/paused-replicas": "2"})).unwrap().pause,
        Pause::Replicas(2)
    );
    let s = with(json!({"autoscaling.keda.sh/paused-scale-in": "true"})).unwrap();
    assert!(s.pause_scale_in);
    assert_eq!(s.behavior.scale_down.select_policy, SelectPolicy::Disabled);
    let err = with(json!({"autoscaling.keda.sh/paused-replicas": "-1"})).unwrap_err();
    assert!(err.to_string().contains("paused-replicas"), "{err}");
}

#[test]
fn fallback_is_parsed() {
    let s = spec(
        json!({"fallback": {"failureThreshold": 3, "replicas": 6, "behavior": "currentReplicasIfHigher"}}),
    );
    let f = s.fallback.unwrap();
    assert_eq!(
        (f.failure_threshold, f.replicas, f.behavior),
        (3, 6, FallbackBehavior::CurrentReplicasIfHigher)
    );
    assert_eq!(f.replicas_for(9), 9);
}

/// (case, spec fields, the field the error must name)
#[test]
fn invalid_scaled_objects_table() {
    let cpu = json!({"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}});
    let cases = [
        (
            "min above max",
            json!({"minReplicaCount": 5, "maxReplicaCount": 2}),
            "spec.minReplicaCount",
        ),
        (
            "negative min",
            json!({"minReplicaCount": -1}),
            "spec.minReplicaCount",
        ),
        (
            "max 0",
            json!({"maxReplicaCount": 0}),
            "spec.maxReplicaCount",
        ),
        (
            "idle not below min",
            json!({"minReplicaCount": 1, "idleReplicaCount": 1}),
            "spec.idleReplicaCount",
        ),
        (
            "idle 0 with min 0",
            json!({"idleReplicaCount": 0}),
            "spec.idleReplicaCount",
        ),
        (
            "polling 0",
            json!({"pollingInterval": 0}),
            "spec.pollingInterval",
        ),
        (
            "negative cooldown",
            json!({"cooldownPeriod": -5}),
            "spec.cooldownPeriod",
        ),
        ("no triggers", json!({"triggers": []}), "spec.triggers"),
        (
            "cpu only with min 0",
            json!({"triggers": [cpu.clone()]}),
            "spec.minReplicaCount",
        ),
        (
            "fallback with cpu only",
            json!({"minReplicaCount": 1, "triggers": [cpu.clone()], "fallback": {"failureThreshold": 1, "replicas": 1}}),
            "spec.fallback",
        ),
        (
            "unknown fallback behavior",
            json!({"fallback": {"failureThreshold": 1, "replicas": 1, "behavior": "sometimes"}}),
            "spec.fallback.behavior",
        ),
        (
            "scaling modifiers",
            json!({"advanced": {"scalingModifiers": {"formula": "a + b", "target": "2"}}}),
            "spec.advanced.scalingModifiers",
        ),
        (
            "bad select policy",
            json!({"advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"selectPolicy": "Most"}}}}}),
            "scaleUp.selectPolicy",
        ),
        (
            "window too long",
            json!({"advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 3601}}}}}),
            "scaleDown.stabilizationWindowSeconds",
        ),
        (
            "policy period too long",
            json!({"advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}}}}}),
            "scaleDown.policies[0].periodSeconds",
        ),
        (
            "unknown policy type",
            json!({"advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 15}]}}}}}),
            "scaleUp.policies[0].type",
        ),
        (
            "empty policies",
            json!({"advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"policies": []}}}}}),
            "scaleUp.policies",
        ),
        (
            "bad trigger metadata names index and key",
            json!({"triggers": [prometheus_trigger(5.0, 0.0), {"type": "graphite", "metadata": {"serverAddress": "http://g", "query": "q"}}]}),
            "spec.triggers[1]: graphite trigger: metadata.queryTime is required",
        ),
        (
            "duplicate resource metrics",
            json!({"minReplicaCount": 1, "triggers": [cpu.clone(), cpu]}),
            "duplicate metric name",
        ),
    ];
    for (case, fields, field) in cases {
        let err = Spec::from_scaled_object(&scaled_object(fields)).unwrap_err();
        assert!(
            err.to_string().contains(field),
            "{case}: {err} should name {field}"
        );
    }
}

#[test]
fn scaling_modifiers_are_reported_as_unsupported() {
    let err = Spec::from_scaled_object(&scaled_object(
        json!({"advanced": {"scalingModifiers": {"formula": "x"}}}),
    ))
    .unwrap_err();
    assert!(matches!(err, SpecError::Unsupported { .. }), "{err:?}");
}

fn hpa(spec: serde_json::Value) -> Result<Spec, SpecError> {
    let mut base = json!({"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 5});
    for (k, v) in spec.as_object().unwrap() {
        base[k] = v.clone();
    }
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({"spec": base})).unwrap();
    Spec::from_hpa(&hpa)
}

#[test]
fn plain_hpa_specs() {
    let s = hpa(json!({"metrics": [
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "512Mi"}}},
        {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "kserve-container", "target": {"type": "Utilization", "averageUtilization": 60}}},
    ]}))
    .unwrap();
    assert_eq!(s.class, Class::Hpa);
    assert_eq!(
        (s.min_replicas, s.hpa_min_replicas(), s.max_replicas),
        (1, 1, 5)
    );
    assert_eq!(s.metrics[0].name, "memory");
    assert_eq!(s.metrics[1].name, "cpu:kserve-container");
    assert_eq!(s.metrics[1].target, MetricTarget::Utilization(60));

    let cases = [
        (
            "external metrics need KEDA",
            json!({"metrics": [{"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "1"}}}]}),
            "spec.metrics[0].type",
        ),
        ("min 0", json!({"minReplicas": 0}), "spec.minReplicas"),
        (
            "max below min",
            json!({"minReplicas": 3, "maxReplicas": 2}),
            "spec.maxReplicas",
        ),
        (
            "utilization without a value",
            json!({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]}),
            "averageUtilization",
        ),
        (
            "Value target",
            json!({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Value", "value": "1"}}}]}),
            "target.type",
        ),
        (
            "gpu",
            json!({"metrics": [{"type": "Resource", "resource": {"name": "nvidia.com/gpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}),
            "resource.name",
        ),
    ];
    for (case, fields, field) in cases {
        let err = hpa(fields).unwrap_err();
        assert!(
            err.to_string().contains(field),
            "{case}: {err} should name {field}"
        );
    }
}
