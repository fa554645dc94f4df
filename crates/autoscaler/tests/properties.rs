//! Property tests: random ScaledObjects driven by random observation sequences on a fake
//! clock. Invariants:
//! - replicas stay within `[idleReplicaCount or minReplicaCount (possibly 0), maxReplicaCount]`;
//! - nothing scales to zero (or idle) within `cooldownPeriod` of the last active poll, nor
//!   within `initialCooldownPeriod` of creation, nor while a trigger is failing;
//! - the HPA never scales down below a recommendation made within the scale-down window;
//! - an HPA scale-up never exceeds what the scale-up policies allow, given the history of
//!   the HPA's own changes.

mod common;

use common::{prometheus_trigger, scaled_object};
use proptest::prelude::*;
use serde_json::{Value, json};
use tidal_autoscaler::{
    Condition, Observations, PodSample, PolicyKind, SelectPolicy, Spec, State, Timestamp, decide,
};

#[derive(Debug, Clone)]
struct Case {
    min: u32,
    max: u32,
    idle: Option<u32>,
    cooldown: u32,
    initial_cooldown: u32,
    value_metric: bool,
    activation: u32,
    threshold: u32,
    with_cpu: bool,
    fallback: Option<(u32, u32)>,
    behavior: Value,
    start: u32,
    /// (seconds since the previous poll, queue value or None for a failed read, cpu usage %)
    steps: Vec<(u64, Option<u32>, i64)>,
}

fn policy() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("Pods"), Just("Percent")],
        1u32..=200,
        1u32..=60,
    )
        .prop_map(
            |(kind, value, period)| json!({"type": kind, "value": value, "periodSeconds": period}),
        )
}

fn rules() -> impl Strategy<Value = Value> {
    (
        0u32..=120,
        prop_oneof![Just("Max"), Just("Min"), Just("Disabled")],
        prop::collection::vec(policy(), 1..=2),
    )
        .prop_map(|(window, select, policies)| {
            json!({"stabilizationWindowSeconds": window, "selectPolicy": select, "policies": policies})
        })
}

fn case() -> impl Strategy<Value = Case> {
    (0u32..=3, 0u32..=15)
        .prop_flat_map(|(min, extra)| {
            let max = min.max(1) + extra;
            let idle = if min > 0 {
                prop::option::of(0..min).boxed()
            } else {
                Just(None).boxed()
            };
            (
                Just(min),
                Just(max),
                idle,
                (
                    0u32..=120,
                    0u32..=120,
                    any::<bool>(),
                    0u32..=5,
                    1u32..=10,
                    any::<bool>(),
                ),
                prop::option::of((0u32..=3, 0u32..=max)),
                (rules(), rules()),
            )
        })
        .prop_flat_map(|(min, max, idle, knobs, fallback, (up, down))| {
            let lower = idle.unwrap_or(min);
            (
                Just((min, max, idle, knobs, fallback, up, down)),
                lower..=max,
                prop::collection::vec(
                    (
                        0u64..=40,
                        prop::option::weighted(0.85, 0u32..=120),
                        0i64..=300,
                    ),
                    1..=50,
                ),
            )
        })
        .prop_map(
            |((min, max, idle, knobs, fallback, up, down), start, steps)| {
                let (cooldown, initial_cooldown, value_metric, activation, threshold, with_cpu) =
                    knobs;
                Case {
                    min,
                    max,
                    idle,
                    cooldown,
                    initial_cooldown,
                    value_metric,
                    activation,
                    threshold,
                    with_cpu,
                    fallback,
                    behavior: json!({"scaleUp": up, "scaleDown": down}),
                    start,
                    steps,
                }
            },
        )
}

fn build(c: &Case) -> Spec {
    let mut trigger = prometheus_trigger(c.threshold as f64, c.activation as f64);
    if c.value_metric {
        trigger["metricType"] = json!("Value");
    }
    let mut triggers = vec![trigger];
    if c.with_cpu {
        triggers
            .push(json!({"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}));
    }
    let mut so = json!({
        "minReplicaCount": c.min,
        "maxReplicaCount": c.max,
        "cooldownPeriod": c.cooldown,
        "initialCooldownPeriod": c.initial_cooldown,
        "triggers": triggers,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": c.behavior}},
    });
    if let Some(idle) = c.idle {
        so["idleReplicaCount"] = json!(idle);
    }
    if let Some((failure_threshold, replicas)) = c.fallback {
        so["fallback"] = json!({"failureThreshold": failure_threshold, "replicas": replicas});
    }
    Spec::from_scaled_object(&scaled_object(so)).expect("generated ScaledObjects are valid")
}

fn observe(current: u32, value: Option<u32>, cpu: i64) -> Observations {
    let mut o = Observations::new().pods(current, current);
    o = match value {
        Some(v) => o.external("s0-prometheus", v as f64),
        None => o.failed("s0-prometheus", "connection refused"),
    };
    o.resource(
        "cpu",
        (0..current).map(|_| PodSample::ready(cpu, 100)).collect(),
    )
}

/// The scale-up limit recomputed from the test's own record of HPA changes.
fn policy_limit(spec: &Spec, current: u32, history: &[(u64, i64)], now: u64) -> Option<i64> {
    let rules = &spec.behavior.scale_up;
    let limits = rules.policies.iter().map(|p| {
        let period = p.period.as_secs();
        let (mut added, mut removed) = (0i64, 0i64);
        for &(at, change) in history {
            if now - at < period {
                if change > 0 {
                    added += change;
                } else {
                    removed -= change;
                }
            }
        }
        let start = current as i64 - added + removed;
        match p.kind {
            PolicyKind::Pods => start + p.value as i64,
            PolicyKind::Percent => (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i64,
        }
    });
    match rules.select_policy {
        SelectPolicy::Disabled => None,
        SelectPolicy::Max => limits.max(),
        SelectPolicy::Min => limits.min(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn keda_and_hpa_invariants_hold(c in case()) {
        let spec = build(&c);
        let lower = c.idle.unwrap_or(c.min);
        let hpa_min = spec.hpa_min_replicas();
        let down_window = spec.behavior.scale_down.stabilization_window.as_secs();
        let mut state = State::new(c.start, Timestamp::ZERO);
        let mut now = 0u64;
        let mut last_active: Option<u64> = None;
        let mut hpa_history: Vec<(u64, i64)> = Vec::new();
        for &(dt, value, cpu) in &c.steps {
            now += dt;
            let prev = state.current_replicas;
            let d = decide(&spec, &observe(prev, value, cpu), &state, Timestamp::from_secs(now));
            let desired = d.desired_replicas;

            // Bounds, with min possibly 0.
            prop_assert!(desired >= lower && desired <= c.max,
                "{desired} outside [{lower}, {}]: {d:?}", c.max);

            // No scale to zero / idle inside the cooldowns or while the trigger fails.
            if desired < hpa_min && desired < prev {
                prop_assert_eq!(d.condition, Condition::Deactivated);
                if let Some(t) = last_active {
                    prop_assert!(now > t + c.cooldown as u64,
                        "scaled to {desired} at {now}, last active {t}, cooldown {}", c.cooldown);
                }
                prop_assert!(now > c.initial_cooldown as u64);
                prop_assert!(value.is_some(), "scaled to zero while the trigger fails");
            }

            let hpa_path = !matches!(d.condition, Condition::Activated | Condition::Deactivated | Condition::Paused);
            // No HPA scale-down below a recommendation inside the scale-down window.
            if hpa_path && desired < prev {
                for r in &state.recommendations {
                    let age = now - r.at.as_duration().as_secs();
                    if age < down_window {
                        prop_assert!(desired >= r.replicas,
                            "scaled down to {desired} at {now} within {down_window}s of a recommendation of {} at {}",
                            r.replicas, now - age);
                    }
                }
            }
            // No HPA scale-up beyond the policy limit (a count below the HPA's minimum is
            // raised to it without policies, as in Kubernetes).
            if hpa_path && desired > prev && prev >= hpa_min {
                let limit = policy_limit(&spec, prev, &hpa_history, now);
                prop_assert!(limit.is_some(), "scaled up with selectPolicy Disabled: {d:?}");
                prop_assert!(desired as i64 <= limit.unwrap().max(prev as i64),
                    "scaled {prev} -> {desired} at {now}, policy limit {limit:?}");
            }

            if hpa_path && desired != prev {
                hpa_history.push((now, desired as i64 - prev as i64));
            }
            if d.active {
                last_active = Some(now);
            }
            state = d.state;
        }
    }

    #[test]
    fn pinned_replicas_are_applied_whatever_the_metrics(
        pinned in 0u32..=50, start in 0u32..=50, value in prop::option::of(0u32..=1000)
    ) {
        let so = common::scaled_object_with_annotations(
            json!({}),
            json!({"autoscaling.keda.sh/paused-replicas": pinned.to_string()}),
        );
        let spec = Spec::from_scaled_object(&so).unwrap();
        let d = decide(&spec, &observe(start, value, 0), &State::new(start, Timestamp::ZERO), Timestamp::from_secs(1));
        prop_assert_eq!(d.desired_replicas, pinned);
        prop_assert_eq!(d.condition, Condition::Paused);
    }
}
