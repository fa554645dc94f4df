//! KEDA's ScaledObject semantics (activation, cooldown, initial cooldown, idle replicas,
//! fallback, pause), replayed through `decide` with a fake clock.

mod common;

use common::{counts, ext, prometheus_trigger, run, scaled_object_with_annotations, spec, t};
use serde_json::json;
use tidal_autoscaler::{Condition, Observations, Spec, State, decide};

const Q: &str = "s0-prometheus";

fn annotated(spec_json: serde_json::Value, annotations: serde_json::Value) -> Spec {
    Spec::from_scaled_object(&scaled_object_with_annotations(spec_json, annotations)).unwrap()
}

/// (case, activationThreshold, value, replicas before, replicas after, condition).
#[test]
fn activation_threshold_table() {
    let cases: &[(&str, f64, f64, u32, u32, Condition)] = &[
        (
            "value above activation scales from zero",
            0.0,
            0.5,
            0,
            1,
            Condition::Activated,
        ),
        (
            "default threshold 0: a value of 0 is not active",
            0.0,
            0.0,
            0,
            0,
            Condition::ScalingDisabled,
        ),
        (
            "the comparison is strict",
            50.0,
            50.0,
            0,
            0,
            Condition::ScalingDisabled,
        ),
        (
            "above the activation threshold",
            50.0,
            51.0,
            0,
            1,
            Condition::Activated,
        ),
        // keda-docs: threshold 10, activation 50, value 40 -> inactive and goes to zero even
        // though the HPA alone would want 4 replicas (cooldown elapsed: never active).
        (
            "activation wins over the target",
            50.0,
            40.0,
            3,
            0,
            Condition::Deactivated,
        ),
    ];
    for &(case, activation, value, before, after, condition) in cases {
        let spec =
            spec(json!({"triggers": [prometheus_trigger(10.0, activation)], "cooldownPeriod": 30}));
        let d = decide(
            &spec,
            &ext(Q, value, before),
            &State::new(before, t(0)),
            t(1),
        );
        assert_eq!(
            (d.desired_replicas, d.condition),
            (after, condition),
            "{case}: {}",
            d.reason
        );
        assert_eq!(d.active, value > activation, "{case}");
    }
}

#[test]
fn scale_from_zero_goes_to_min_replicas_and_names_the_trigger() {
    let spec = spec(json!({"minReplicaCount": 0, "maxReplicaCount": 10}));
    let d = decide(&spec, &ext(Q, 100.0, 0), &State::new(0, t(0)), t(5));
    // Straight to 1, not to the 20 the metric asks for: the HPA takes over from there.
    assert_eq!(d.desired_replicas, 1);
    assert_eq!(d.reason, "Scaled from 0 to 1, triggered by s0-prometheus");
    assert_eq!(d.state.last_active, Some(t(5)));
    let d2 = decide(&spec, &ext(Q, 100.0, 1), &d.state, t(6));
    assert_eq!(
        d2.desired_replicas, 5,
        "the HPA's default policy adds up to 4 pods"
    );
}

#[test]
fn scale_to_zero_only_after_the_cooldown_since_last_active() {
    let spec = spec(json!({"cooldownPeriod": 300}));
    // Active at t=0..=100 (value 10), then idle.
    let (_, ds) = run(&spec, State::new(1, t(0)), 0, 500, 1, |now, pods| {
        ext(Q, if now <= 100 { 5.0 } else { 0.0 }, pods)
    });
    let zero = ds.iter().find(|(_, d)| d.desired_replicas == 0).unwrap();
    assert_eq!(
        zero.0, 401,
        "cooldown ends strictly after last active (100) + 300"
    );
    assert_eq!(zero.1.condition, Condition::Deactivated);
    assert_eq!(
        zero.1.reason,
        "Deactivated from 1 to 0: no trigger active for the cooldown period"
    );
    let waiting = &ds.iter().find(|(s, _)| *s == 400).unwrap().1;
    assert_eq!(waiting.desired_replicas, 1);
    assert_eq!(waiting.condition, Condition::Cooldown);
    assert!(!waiting.active);
}

#[test]
fn hpa_keeps_scaling_down_during_the_cooldown() {
    let spec = spec(json!({
        "cooldownPeriod": 600,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}},
    }));
    // 4 replicas, then the queue empties: the HPA brings it to max(min, 1) = 1 at once, KEDA
    // to 0 only after the cooldown.
    let (_, ds) = run(&spec, State::new(4, t(0)), 0, 700, 10, |now, pods| {
        ext(Q, if now == 0 { 20.0 } else { 0.0 }, pods)
    });
    assert_eq!(counts(&ds), vec![4, 1, 0]);
    assert_eq!(
        ds.iter().find(|(_, d)| d.desired_replicas == 0).unwrap().0,
        610
    );
}

#[test]
fn initial_cooldown_period_holds_a_new_object_that_was_never_active() {
    let spec = spec(json!({"initialCooldownPeriod": 120, "cooldownPeriod": 10}));
    let (_, ds) = run(&spec, State::new(1, t(0)), 0, 130, 1, |_, pods| {
        ext(Q, 0.0, pods)
    });
    assert_eq!(
        ds.iter().find(|(_, d)| d.desired_replicas == 0).unwrap().0,
        121
    );
    assert_eq!(ds[60].1.condition, Condition::Cooldown);
}

#[test]
fn without_initial_cooldown_a_never_active_object_scales_to_zero_at_once() {
    // KEDA: lastActiveTime nil -> the cooldown is ignored.
    let spec = spec(json!({}));
    let d = decide(&spec, &ext(Q, 0.0, 2), &State::new(2, t(0)), t(1));
    assert_eq!(d.desired_replicas, 0);
}

#[test]
fn initial_cooldown_also_holds_after_an_early_activation() {
    // Deliberate difference from KEDA (which checks it only while never active): nothing
    // scales to zero within initialCooldownPeriod of creation.
    let spec = spec(json!({"initialCooldownPeriod": 600, "cooldownPeriod": 30}));
    let (_, ds) = run(&spec, State::new(1, t(0)), 0, 700, 5, |now, pods| {
        ext(Q, if now == 5 { 3.0 } else { 0.0 }, pods)
    });
    assert_eq!(
        ds.iter().find(|(_, d)| d.desired_replicas == 0).unwrap().0,
        605
    );
}

#[test]
fn idle_replica_count_is_used_while_inactive_and_min_when_active() {
    let spec = spec(
        json!({"idleReplicaCount": 0, "minReplicaCount": 2, "maxReplicaCount": 10, "cooldownPeriod": 60}),
    );
    // Active at 0: straight to minReplicaCount.
    let d = decide(&spec, &ext(Q, 1.0, 0), &State::new(0, t(0)), t(1));
    assert_eq!(d.desired_replicas, 2);
    // Inactive for more than the cooldown: to the idle count.
    let d = decide(&spec, &ext(Q, 0.0, 2), &d.state, t(62));
    assert_eq!(d.desired_replicas, 0);
    assert_eq!(d.condition, Condition::Deactivated);
}

#[test]
fn a_non_zero_idle_count_is_held_until_a_trigger_is_active() {
    let spec = spec(
        json!({"idleReplicaCount": 1, "minReplicaCount": 3, "maxReplicaCount": 10, "cooldownPeriod": 0}),
    );
    let (state, ds) = run(&spec, State::new(4, t(0)), 1, 61, 10, |_, pods| {
        ext(Q, 0.0, pods)
    });
    assert_eq!(
        counts(&ds),
        vec![1],
        "to idle at once, then held (no flapping back to min)"
    );
    assert_eq!(ds.last().unwrap().1.condition, Condition::ScalingDisabled);
    // Active again: from idle (below min) to min.
    let d = decide(&spec, &ext(Q, 2.0, 1), &state, t(70));
    assert_eq!((d.desired_replicas, d.condition), (3, Condition::Activated));
    assert_eq!(d.reason, "Scaled from 1 to 3, triggered by s0-prometheus");
}

#[test]
fn inactive_below_min_without_idle_goes_to_min() {
    let spec = spec(json!({"minReplicaCount": 2}));
    let d = decide(&spec, &ext(Q, 0.0, 0), &State::new(0, t(0)), t(1));
    assert_eq!(
        (d.desired_replicas, d.condition),
        (2, Condition::TooFewReplicas)
    );
}

#[test]
fn fallback_after_more_than_failure_threshold_consecutive_failures() {
    let spec = spec(json!({
        "minReplicaCount": 1,
        "fallback": {"failureThreshold": 3, "replicas": 6},
    }));
    let fail = |pods| {
        Observations::new()
            .pods(pods, pods)
            .failed(Q, "connection refused")
    };
    let mut state = State::new(2, t(0));
    for i in 1..=3u32 {
        let d = decide(&spec, &fail(2), &state, t(i as u64));
        assert_eq!(d.desired_replicas, 2, "failure {i}: no fallback yet");
        assert_eq!(d.condition, Condition::FailedGetMetrics);
        assert!(!d.fallback_active);
        assert_eq!(d.metrics[0].consecutive_failures, i);
        state = d.state;
    }
    let d = decide(&spec, &fail(2), &state, t(4));
    assert!(d.fallback_active, "4th failure > threshold 3");
    assert_eq!(d.desired_replicas, 6);
    assert!(d.active, "a trigger in fallback counts as active");
    assert!(
        d.reason
            .contains("fallback for external metric s0-prometheus"),
        "{}",
        d.reason
    );
    let d = decide(&spec, &fail(6), &d.state, t(20));
    assert_eq!((d.desired_replicas, d.condition), (6, Condition::Fallback));
    // A success resets the count and ends the fallback.
    let d = decide(&spec, &ext(Q, 10.0, 6), &d.state, t(21));
    assert!(!d.fallback_active);
    assert_eq!(d.state.consecutive_failures(Q), 0);
}

#[test]
fn fallback_replicas_still_obey_the_scale_up_policies() {
    let spec = spec(json!({
        "minReplicaCount": 1,
        "maxReplicaCount": 50,
        "fallback": {"failureThreshold": 0, "replicas": 30},
    }));
    let d = decide(
        &spec,
        &Observations::new().pods(2, 2).failed(Q, "x"),
        &State::new(2, t(0)),
        t(1),
    );
    assert_eq!(
        (d.desired_replicas, d.condition),
        (6, Condition::ScaleUpLimit)
    );
}

/// (behavior, current, expected replicas)
#[test]
fn fallback_behavior_table() {
    let cases = [
        ("static", 4, 6),
        ("currentReplicas", 4, 4),
        ("currentReplicasIfHigher", 4, 6),
        ("currentReplicasIfHigher", 9, 9),
        ("currentReplicasIfLower", 4, 4),
        ("currentReplicasIfLower", 9, 6),
    ];
    for (behavior, current, expected) in cases {
        let spec = spec(json!({
            "minReplicaCount": 1,
            "fallback": {"failureThreshold": 0, "replicas": 6, "behavior": behavior},
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}},
        }));
        let obs = Observations::new().pods(current, current).failed(Q, "x");
        let d = decide(&spec, &obs, &State::new(current, t(0)), t(1));
        assert_eq!(d.desired_replicas, expected, "{behavior} from {current}");
    }
}

#[test]
fn fallback_with_a_value_metric_spreads_over_ready_pods() {
    let mut trigger = prometheus_trigger(5.0, 0.0);
    trigger["metricType"] = json!("Value");
    let spec = spec(
        json!({"minReplicaCount": 1, "triggers": [trigger], "fallback": {"failureThreshold": 0, "replicas": 4}}),
    );
    let d = decide(
        &spec,
        &Observations::new().pods(2, 2).failed(Q, "x"),
        &State::new(2, t(0)),
        t(1),
    );
    assert_eq!(d.desired_replicas, 4);
}

#[test]
fn a_failing_trigger_never_scales_to_zero() {
    for fallback in [json!(null), json!({"failureThreshold": 2, "replicas": 3})] {
        let mut so = json!({"cooldownPeriod": 0});
        if !fallback.is_null() {
            so["fallback"] = fallback.clone();
        }
        let spec = spec(so);
        let (_, ds) = run(&spec, State::new(3, t(0)), 0, 600, 15, |_, pods| {
            Observations::new().pods(pods, pods).failed(Q, "timeout")
        });
        assert!(
            ds.iter().all(|(_, d)| d.desired_replicas > 0),
            "fallback {fallback}"
        );
    }
}

#[test]
fn a_partial_trigger_error_does_not_refresh_last_active() {
    let spec =
        spec(json!({"triggers": [prometheus_trigger(5.0, 0.0), prometheus_trigger(5.0, 0.0)]}));
    let obs = Observations::new()
        .pods(1, 1)
        .external(Q, 3.0)
        .failed("s1-prometheus", "x");
    let mut state = State::new(1, t(0));
    state.last_active = Some(t(2));
    let d = decide(&spec, &obs, &state, t(10));
    assert!(d.active);
    assert_eq!(d.state.last_active, Some(t(2)));
}

#[test]
fn paused_replicas_pins_and_paused_freezes() {
    let pinned = annotated(
        json!({}),
        json!({"autoscaling.keda.sh/paused-replicas": "3"}),
    );
    let mut state = State::new(7, t(0));
    state.failures.insert(Q.into(), 1);
    let d = decide(&pinned, &Observations::new().failed(Q, "x"), &state, t(1));
    assert_eq!((d.desired_replicas, d.condition), (3, Condition::Paused));
    assert!(d.paused);
    assert_eq!(
        d.state.consecutive_failures(Q),
        1,
        "failures are not counted while paused"
    );
    assert_eq!(
        d.reason,
        "New size: 3; reason: autoscaling.keda.sh/paused-replicas is 3"
    );

    let frozen = annotated(json!({}), json!({"autoscaling.keda.sh/paused": "true"}));
    let d = decide(&frozen, &ext(Q, 1000.0, 7), &State::new(7, t(0)), t(1));
    assert_eq!((d.desired_replicas, d.condition), (7, Condition::Paused));

    let not_paused = annotated(json!({}), json!({"autoscaling.keda.sh/paused": "false"}));
    let d = decide(&not_paused, &ext(Q, 1000.0, 7), &State::new(7, t(0)), t(1));
    assert_eq!(
        d.desired_replicas, 14,
        "doubled by the default scale-up policy"
    );
}

#[test]
fn paused_scale_in_blocks_scale_down_and_scale_to_zero() {
    let spec = annotated(
        json!({"cooldownPeriod": 0}),
        json!({"autoscaling.keda.sh/paused-scale-in": "true"}),
    );
    let (_, ds) = run(&spec, State::new(5, t(0)), 0, 900, 15, |_, pods| {
        ext(Q, 0.0, pods)
    });
    assert!(ds.iter().all(|(_, d)| d.desired_replicas == 5));
}

#[test]
fn paused_scale_out_blocks_scale_up_and_scale_from_zero() {
    let spec = annotated(
        json!({}),
        json!({"autoscaling.keda.sh/paused-scale-out": "true"}),
    );
    let d = decide(&spec, &ext(Q, 100.0, 0), &State::new(0, t(0)), t(1));
    assert_eq!((d.desired_replicas, d.condition), (0, Condition::Paused));
    let d = decide(&spec, &ext(Q, 100.0, 2), &State::new(2, t(0)), t(1));
    assert_eq!(d.desired_replicas, 2);
}

#[test]
fn force_activation_keeps_the_object_active() {
    let spec = annotated(
        json!({"cooldownPeriod": 0}),
        json!({"autoscaling.keda.sh/force-activation": "true"}),
    );
    let d = decide(&spec, &ext(Q, 0.0, 0), &State::new(0, t(0)), t(1));
    assert_eq!(d.desired_replicas, 1);
    assert!(d.active);
    let d = decide(&spec, &ext(Q, 0.0, 1), &d.state, t(100));
    assert_eq!(d.desired_replicas, 1);
}

#[test]
fn cpu_only_objects_are_always_active() {
    let spec = spec(json!({
        "minReplicaCount": 1,
        "cooldownPeriod": 0,
        "triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}],
    }));
    let obs = Observations::new()
        .pods(1, 1)
        .resource("cpu", common::cpu_pods(1, 10, 100));
    let d = decide(&spec, &obs, &State::new(1, t(0)), t(1));
    assert!(d.active);
    assert_eq!(d.state.last_active, Some(t(1)));
}

#[test]
fn resource_triggers_do_not_keep_a_mixed_object_active() {
    // KEDA's rule: only External triggers decide activity when there are any. CPU load does
    // not prevent a scale to zero once the queue trigger is inactive for the cooldown.
    let spec = spec(json!({
        "cooldownPeriod": 0,
        "triggers": [
            prometheus_trigger(5.0, 0.0),
            {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}},
        ],
    }));
    let obs = Observations::new()
        .pods(2, 2)
        .external(Q, 0.0)
        .resource("cpu", common::cpu_pods(2, 95, 100));
    let d = decide(&spec, &obs, &State::new(2, t(0)), t(1));
    assert!(!d.active);
    assert_eq!(d.desired_replicas, 0);
}

#[test]
fn missing_observations_count_as_failures() {
    let spec = spec(json!({"minReplicaCount": 1}));
    let d = decide(
        &spec,
        &Observations::new().pods(1, 1),
        &State::new(1, t(0)),
        t(1),
    );
    assert_eq!(d.condition, Condition::FailedGetMetrics);
    assert_eq!(d.state.consecutive_failures(Q), 1);
    assert!(
        d.metrics[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no observation")
    );
}
