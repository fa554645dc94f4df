//! Helpers shared by the integration tests: ScaledObjects from JSON, a fake clock, and
//! observation builders.
#![allow(dead_code)]

use serde_json::{Value, json};
use tidal_api::keda::ScaledObject;
use tidal_autoscaler::{Decision, Observations, PodSample, Spec, State, Timestamp, decide};

/// `secs` on the fake clock.
pub fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// A ScaledObject with the given `spec` fields merged over a minimal one.
pub fn scaled_object(spec: Value) -> ScaledObject {
    scaled_object_with_annotations(spec, json!({}))
}

/// Same, with annotations.
pub fn scaled_object_with_annotations(spec: Value, annotations: Value) -> ScaledObject {
    let mut base = json!({
        "scaleTargetRef": {"name": "sklearn-iris-predictor"},
        "triggers": [prometheus_trigger(5.0, 0.0)],
    });
    for (k, v) in spec.as_object().expect("spec is an object") {
        base[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "sklearn-iris-predictor", "namespace": "default", "annotations": annotations},
        "spec": base,
    }))
    .expect("valid ScaledObject JSON")
}

/// A Prometheus trigger (metric `s{index}-prometheus`).
pub fn prometheus_trigger(threshold: f64, activation: f64) -> Value {
    json!({
        "type": "prometheus",
        "metadata": {
            "serverAddress": "http://prometheus.monitoring.svc.cluster.local:9090",
            "query": "sum(vllm:num_requests_waiting{model_name=\"m\"})",
            "threshold": threshold.to_string(),
            "activationThreshold": activation.to_string(),
        }
    })
}

/// The Spec of a ScaledObject that must be valid.
pub fn spec(spec: Value) -> Spec {
    Spec::from_scaled_object(&scaled_object(spec)).expect("valid spec")
}

/// One external value with `pods` ready pods.
pub fn ext(name: &str, value: f64, pods: u32) -> Observations {
    Observations::new().pods(pods, pods).external(name, value)
}

/// `pods` ready pods each using `usage` of `request` (milli-units).
pub fn cpu_pods(pods: u32, usage: i64, request: i64) -> Vec<PodSample> {
    (0..pods)
        .map(|_| PodSample::ready(usage, request))
        .collect()
}

/// Runs `decide` every `step` seconds from `from` to `to` (inclusive) with observations from
/// `obs(now_secs, current)`, returning every decision.
pub fn run(
    spec: &Spec,
    mut state: State,
    from: u64,
    to: u64,
    step: u64,
    mut obs: impl FnMut(u64, u32) -> Observations,
) -> (State, Vec<(u64, Decision)>) {
    let mut out = Vec::new();
    let mut now = from;
    while now <= to {
        let o = obs(now, state.current_replicas);
        let d = decide(spec, &o, &state, t(now));
        state = d.state.clone();
        out.push((now, d));
        now += step;
    }
    (state, out)
}

/// The replica counts a run went through, without repeats.
pub fn counts(decisions: &[(u64, Decision)]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for (_, d) in decisions {
        if out.last() != Some(&d.desired_replicas) {
            out.push(d.desired_replicas);
        }
    }
    out
}
