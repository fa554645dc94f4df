//! The Kubernetes HPA documentation's worked examples, replayed through `decide` with a fake
//! clock (https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/).

mod common;

use common::{counts, cpu_pods, ext, run, spec, t};
use serde_json::json;
use tidal_api::k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use tidal_autoscaler::{
    Condition, Observations, PodSample, Spec, State, decide, hpa, hpa::Tolerance,
};

/// A plain HPA on CPU with the given target and behavior.
fn hpa_spec(target: serde_json::Value, min: i32, max: i32, behavior: serde_json::Value) -> Spec {
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "sklearn-iris-predictor"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sklearn-iris-predictor"},
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
            "behavior": behavior,
        }
    }))
    .unwrap();
    Spec::from_hpa(&hpa).unwrap()
}

/// No stabilization, no effective rate limit: the raw algorithm.
fn unlimited() -> serde_json::Value {
    json!({
        "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 10000, "periodSeconds": 1}]},
        "scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]},
    })
}

/// "desiredReplicas = ceil[currentReplicas * ( currentMetricValue / desiredMetricValue )]":
/// (case, current replicas, per-pod usage in milli-cores, target averageValue, expected).
#[test]
fn desired_replicas_formula_table() {
    let cases: &[(&str, u32, i64, &str, u32)] = &[
        ("200m of 100m doubles 1 replica", 1, 200, "100m", 2),
        ("200m of 100m doubles 3 replicas", 3, 200, "100m", 6),
        ("50m of 100m halves 4 replicas", 4, 50, "100m", 2),
        (
            "50m of 100m halves 3 replicas, rounding up",
            3,
            50,
            "100m",
            2,
        ),
        ("ratio 1.1 is inside the tolerance", 10, 110, "100m", 10),
        ("ratio 0.9 is inside the tolerance", 10, 90, "100m", 10),
        ("ratio 1.11 is outside: ceil(11.1)", 10, 111, "100m", 12),
        ("ratio 0.89 is outside: ceil(8.9)", 10, 89, "100m", 9),
        ("clamped at maxReplicas", 5, 1000, "100m", 20),
        ("clamped at minReplicas", 5, 1, "100m", 1),
    ];
    for &(case, current, usage, target, expected) in cases {
        let spec = hpa_spec(
            json!({"type": "AverageValue", "averageValue": target}),
            1,
            20,
            unlimited(),
        );
        let obs = Observations::new()
            .pods(current, current)
            .resource("cpu", cpu_pods(current, usage, 1000));
        let d = decide(&spec, &obs, &State::new(current, t(0)), t(1));
        assert_eq!(d.desired_replicas, expected, "{case}: {d:?}");
    }
}

#[test]
fn utilization_uses_requests_and_names_the_metric_in_the_event() {
    // 1 pod at 400m of a 500m request = 80% against a 40% target -> 2 replicas.
    let spec = hpa_spec(
        json!({"type": "Utilization", "averageUtilization": 40}),
        1,
        10,
        unlimited(),
    );
    let obs = Observations::new()
        .pods(1, 1)
        .resource("cpu", cpu_pods(1, 400, 500));
    let d = decide(&spec, &obs, &State::new(1, t(0)), t(1));
    assert_eq!(d.desired_replicas, 2);
    assert_eq!(
        d.reason,
        "New size: 2; reason: cpu resource utilization (percentage of request) above target"
    );
    assert_eq!(d.metrics[0].current.unwrap().average_utilization, Some(80));
    assert_eq!(d.condition, Condition::DesiredWithinRange);

    let obs = Observations::new()
        .pods(4, 4)
        .resource("cpu", cpu_pods(4, 50, 500));
    let d = decide(&spec, &obs, &State::new(4, t(0)), t(1));
    assert_eq!(d.desired_replicas, 1);
    assert_eq!(d.reason, "New size: 1; reason: All metrics below target");
}

#[test]
fn hpa_without_metrics_defaults_to_cpu_80_percent() {
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 5}
    }))
    .unwrap();
    let spec = Spec::from_hpa(&hpa).unwrap();
    assert_eq!(spec.min_replicas, 1);
    // 160% of request on 1 pod against 80% -> 2.
    let obs = Observations::new()
        .pods(1, 1)
        .resource("cpu", cpu_pods(1, 160, 100));
    assert_eq!(
        decide(&spec, &obs, &State::new(1, t(0)), t(1)).desired_replicas,
        2
    );
}

#[test]
fn the_highest_metric_wins() {
    // cpu asks for 3, the queue for 5.
    let spec = spec(json!({
        "minReplicaCount": 1,
        "triggers": [
            {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}},
            common::prometheus_trigger(5.0, 0.0),
        ],
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": unlimited()}},
    }));
    let obs = Observations::new()
        .pods(2, 2)
        .resource("cpu", cpu_pods(2, 75, 100))
        .external("s1-prometheus", 25.0);
    let d = decide(&spec, &obs, &State::new(2, t(0)), t(1));
    assert_eq!(d.metrics[0].proposal, Some(3));
    assert_eq!(d.metrics[1].proposal, Some(5));
    assert_eq!(d.desired_replicas, 5);
    assert_eq!(
        d.reason,
        "New size: 5; reason: external metric s1-prometheus above target"
    );
}

#[test]
fn keda_docs_average_value_versus_value() {
    // "queue of 20 and threshold 5: AverageValue -> 4 whatever the current count; Value with
    // 3 replicas -> 12".
    let average = spec(
        json!({"minReplicaCount": 1, "advanced": {"horizontalPodAutoscalerConfig": {"behavior": unlimited()}}}),
    );
    for current in [1, 3, 9] {
        let d = decide(
            &average,
            &ext("s0-prometheus", 20.0, current),
            &State::new(current, t(0)),
            t(1),
        );
        assert_eq!(d.desired_replicas, 4, "AverageValue from {current}");
    }
    let mut value_trigger = common::prometheus_trigger(5.0, 0.0);
    value_trigger["metricType"] = json!("Value");
    let value = spec(
        json!({"minReplicaCount": 1, "triggers": [value_trigger], "advanced": {"horizontalPodAutoscalerConfig": {"behavior": unlimited()}}}),
    );
    let d = decide(
        &value,
        &ext("s0-prometheus", 20.0, 3),
        &State::new(3, t(0)),
        t(1),
    );
    assert_eq!(d.desired_replicas, 12);
    assert_eq!(d.metrics[0].current.unwrap().value, Some(20_000));
}

/// Default scale-up: "4 pods or 100% of the currently running replicas may at most be added
/// every 15 seconds".
#[test]
fn default_scale_up_policies_allow_4_pods_or_double_per_15s() {
    let spec = spec(json!({"minReplicaCount": 1, "maxReplicaCount": 50}));
    // The queue asks for 40 replicas throughout.
    let (_, ds) = run(&spec, State::new(1, t(0)), 0, 60, 5, |_, pods| {
        ext("s0-prometheus", 200.0, pods)
    });
    assert_eq!(counts(&ds), vec![5, 10, 20, 40]);
    let at = |secs| ds.iter().find(|(s, _)| *s == secs).unwrap().1.clone();
    assert_eq!(at(0).condition, Condition::ScaleUpLimit);
    assert_eq!(at(5).desired_replicas, 5, "no second step within 15 s");
    assert_eq!(at(15).desired_replicas, 10);
    assert_eq!(at(30).desired_replicas, 20);
    assert_eq!(at(45).desired_replicas, 40);
    assert_eq!(at(45).condition, Condition::DesiredWithinRange);
}

/// The docs' scale-down example: Pods 4 / 60 s and Percent 10 / 60 s. "If there are 80
/// replicas and the target has to be scaled down to 10 replicas then during the first step 8
/// replicas will be reduced. In the next iteration when the number of replicas is 72, 10% of
/// the pods is 7.2 but the number is rounded up to 8. [...] When the number of replicas falls
/// below 40 the first policy (Pods) is applied and 4 replicas will be reduced at a time."
#[test]
fn scale_down_policy_example_with_select_policy_max_min_and_disabled() {
    let cases: &[(&str, Vec<u32>, Condition)] = &[
        (
            "Max",
            vec![72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10],
            Condition::DesiredWithinRange,
        ),
        // Min stops at 11: 50 / (5 × 11) = 0.91 is inside the tolerance, so the metric asks for 11.
        (
            "Min",
            vec![
                76, 72, 68, 64, 60, 56, 52, 48, 44, 40, 36, 32, 28, 25, 22, 19, 17, 15, 13, 11,
            ],
            Condition::DesiredWithinRange,
        ),
        ("Disabled", vec![80], Condition::ScaleDownLimit),
    ];
    for (select, expected, last_condition) in cases {
        let spec = spec(json!({
            "minReplicaCount": 1,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
                "stabilizationWindowSeconds": 0,
                "selectPolicy": select,
                "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 60},
                    {"type": "Percent", "value": 10, "periodSeconds": 60},
                ],
            }}}},
        }));
        // The queue asks for 10 replicas (50 / 5) throughout; decide every 15 s for 30 min.
        let (_, ds) = run(&spec, State::new(80, t(0)), 0, 1800, 15, |_, pods| {
            ext("s0-prometheus", 50.0, pods)
        });
        let mut seen = counts(&ds);
        if seen.first() == Some(&80) && seen.len() > 1 {
            seen.remove(0);
        }
        assert_eq!(&seen, expected, "selectPolicy {select}");
        assert_eq!(
            ds.last().unwrap().1.condition,
            *last_condition,
            "selectPolicy {select}"
        );
        // One step per 60 s period at most.
        let changes: Vec<u64> = ds
            .iter()
            .filter(|(_, d)| d.is_rescale())
            .map(|(s, _)| *s)
            .collect();
        assert!(
            changes.windows(2).all(|w| w[1] - w[0] >= 60),
            "{select}: {changes:?}"
        );
    }
}

#[test]
fn scale_down_limit_condition_while_waiting_for_the_period() {
    let spec = spec(json!({
        "minReplicaCount": 1,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}],
        }}}},
    }));
    let (_, ds) = run(&spec, State::new(20, t(0)), 0, 30, 15, |_, pods| {
        ext("s0-prometheus", 5.0, pods)
    });
    assert_eq!(ds[0].1.desired_replicas, 16);
    assert_eq!(ds[0].1.condition, Condition::ScaleDownLimit);
    assert_eq!(
        ds[0].1.reason,
        "New size: 16; reason: All metrics below target"
    );
    assert_eq!(ds[1].1.desired_replicas, 16);
    assert_eq!(ds[1].1.condition, Condition::ScaleDownLimit);
}

#[test]
fn percent_900_scale_up_example_grows_tenfold_per_period() {
    let spec = spec(json!({
        "minReplicaCount": 1,
        "maxReplicaCount": 1000,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {
            "policies": [{"type": "Percent", "value": 900, "periodSeconds": 15}],
        }}}},
    }));
    let (_, ds) = run(&spec, State::new(1, t(0)), 0, 45, 15, |_, pods| {
        ext("s0-prometheus", 10_000.0, pods)
    });
    assert_eq!(counts(&ds), vec![10, 100, 1000]);
    assert_eq!(ds.last().unwrap().1.condition, Condition::TooManyReplicas);
}

/// "stabilizationWindowSeconds: 300 [...] all desired states from the past 5 minutes will be
/// considered": a dip does not scale down until the last high recommendation is 300 s old.
#[test]
fn scale_down_stabilization_window_uses_the_highest_recent_recommendation() {
    let spec = spec(json!({"minReplicaCount": 1}));
    // 10 replicas wanted until t=60, then 2.
    let (_, ds) = run(&spec, State::new(10, t(0)), 0, 400, 15, |now, pods| {
        ext("s0-prometheus", if now <= 60 { 50.0 } else { 10.0 }, pods)
    });
    let first_change = ds.iter().find(|(_, d)| d.is_rescale()).unwrap();
    assert_eq!(
        first_change.0, 360,
        "first time the t=60 recommendation is outside (now-300, now]"
    );
    assert_eq!(first_change.1.desired_replicas, 2);
    let held = ds.iter().find(|(s, _)| *s == 345).unwrap();
    assert_eq!(held.1.desired_replicas, 10);
    assert_eq!(held.1.condition, Condition::ScaleDownStabilized);
}

#[test]
fn scale_up_stabilization_window_uses_the_lowest_recent_recommendation() {
    let spec = spec(json!({
        "minReplicaCount": 1,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 60}}}},
    }));
    // 2 wanted at t=0, 4 from t=15 on.
    let (_, ds) = run(&spec, State::new(2, t(0)), 0, 90, 15, |now, pods| {
        ext("s0-prometheus", if now == 0 { 10.0 } else { 20.0 }, pods)
    });
    let at = |secs| ds.iter().find(|(s, _)| *s == secs).unwrap().1.clone();
    assert_eq!(at(45).desired_replicas, 2);
    assert_eq!(at(45).condition, Condition::ScaleUpStabilized);
    assert_eq!(at(60).desired_replicas, 4);
}

#[test]
fn a_new_hpa_does_not_scale_down_within_its_first_window() {
    // The first recommendation recorded is the current count (recordInitialRecommendation).
    let spec = spec(json!({"minReplicaCount": 1}));
    let (_, ds) = run(&spec, State::new(6, t(0)), 0, 301, 1, |_, pods| {
        ext("s0-prometheus", 0.0, pods)
    });
    assert!(ds.iter().take(300).all(|(_, d)| d.desired_replicas == 6));
    assert_eq!(ds.last().unwrap().1.desired_replicas, 1);
}

#[test]
fn current_count_outside_the_bounds_is_clamped_without_reading_metrics() {
    let spec = spec(json!({"minReplicaCount": 2, "maxReplicaCount": 5}));
    let obs = Observations::new()
        .pods(9, 9)
        .failed("s0-prometheus", "connection refused");
    let d = decide(&spec, &obs, &State::new(9, t(0)), t(1));
    assert_eq!(d.desired_replicas, 5);
    assert_eq!(d.condition, Condition::TooManyReplicas);
    assert_eq!(
        d.reason,
        "New size: 5; reason: Current number of replicas above Spec.MaxReplicas"
    );
}

#[test]
fn failed_metrics_block_scale_down_but_not_scale_up() {
    let spec = spec(json!({
        "minReplicaCount": 1,
        "triggers": [common::prometheus_trigger(5.0, 0.0), common::prometheus_trigger(5.0, 0.0)],
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": unlimited()}},
    }));
    let obs = |v| {
        Observations::new()
            .pods(4, 4)
            .external("s0-prometheus", v)
            .failed("s1-prometheus", "timeout")
    };
    let down = decide(&spec, &obs(5.0), &State::new(4, t(0)), t(1));
    assert_eq!(down.desired_replicas, 4);
    assert_eq!(down.condition, Condition::FailedGetMetrics);
    assert!(
        down.reason.contains("1 invalid out of 2"),
        "{}",
        down.reason
    );
    let up = decide(&spec, &obs(40.0), &State::new(4, t(0)), t(1));
    assert_eq!(up.desired_replicas, 8);
}

#[test]
fn unready_and_missing_pods_follow_the_kubernetes_rules() {
    let spec = hpa_spec(
        json!({"type": "Utilization", "averageUtilization": 50}),
        1,
        10,
        unlimited(),
    );
    // 5 ready pods at 60% and 2 unready pods, 7 replicas. Ready pods alone say
    // ceil(1.2 × 5) = 6, a scale-down. Kubernetes counts unready pods as 0% on a scale-up:
    // 300 / 7 = 42%, which flips the direction, so the count stays at 7.
    let mut pods = cpu_pods(5, 60, 100);
    pods.extend(
        [PodSample {
            ready: false,
            usage: None,
            request: 100,
        }; 2],
    );
    let obs = Observations::new().pods(7, 5).resource("cpu", pods);
    let d = decide(&spec, &obs, &State::new(7, t(0)), t(1));
    assert_eq!(d.desired_replicas, 7);
    // The reported utilization is that of the ready pods.
    assert_eq!(d.metrics[0].current.unwrap().average_utilization, Some(60));

    // 2 ready pods at 20% and 1 Ready pod without a sample, on a scale-down: the missing pod
    // counts as 100% of its request, (20+20+100)/3 = 46% -> within tolerance -> stay at 3.
    let mut pods = cpu_pods(2, 20, 100);
    pods.push(PodSample {
        ready: true,
        usage: None,
        request: 100,
    });
    let obs = Observations::new().pods(3, 3).resource("cpu", pods);
    assert_eq!(
        decide(&spec, &obs, &State::new(3, t(0)), t(1)).desired_replicas,
        3
    );
}

#[test]
fn per_metric_functions_match_the_documented_formulas() {
    let tol = Tolerance::default();
    // currentMetricValue 200m, desired 100m, 1 replica -> 2 (Value target, 1 ready pod).
    assert_eq!(
        hpa::external_value(1, 200, 100, 1, 1, tol)
            .unwrap()
            .replicas,
        2
    );
    // 50m / 100m halves.
    assert_eq!(
        hpa::external_value(4, 50, 100, 4, 4, tol).unwrap().replicas,
        2
    );
    // Within tolerance: unchanged.
    assert_eq!(
        hpa::external_value(4, 105, 100, 4, 4, tol)
            .unwrap()
            .replicas,
        4
    );
}
