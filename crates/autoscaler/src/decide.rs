//! [`decide`]: one poll's scaling decision, a pure function of the spec, the observations,
//! the state carried from the previous poll, and the time.

use std::collections::BTreeMap;
use std::fmt;

use crate::hpa::{self, MetricValue, Proposal, Recommendation, ScaleEvent, Tolerance};
use crate::observe::{MetricObservation, Observations, milli_from_f64};
use crate::spec::{Class, MetricSource, MetricSpec, MetricTarget, Pause, Spec};
use crate::time::Timestamp;

/// What the autoscaler remembers between polls of one ScaledObject (or HPA).
///
/// Start with [`State::new`] and replace it with [`Decision::state`] after every call. The
/// fields mirror what KEDA keeps in `status` (`lastActiveTime`, `health`) and what the HPA
/// controller keeps in memory (recommendations, scale events).
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The target's replica count (`scale.spec.replicas`). [`decide`] sets it to the desired
    /// count; if something else changes the target, the daemon overwrites it before the next
    /// call.
    pub current_replicas: u32,
    /// When the ScaledObject was created (for `initialCooldownPeriod`).
    pub created_at: Timestamp,
    /// The last poll at which a trigger was active (KEDA's `status.lastActiveTime`).
    pub last_active: Option<Timestamp>,
    /// Raw HPA recommendations within the stabilization windows. Empty until the HPA part
    /// first runs; its first entry is then the current count, as in Kubernetes.
    pub recommendations: Vec<Recommendation>,
    /// Replicas the HPA part added, within the longest policy period.
    pub scale_up_events: Vec<ScaleEvent>,
    /// Replicas the HPA part removed, within the longest policy period.
    pub scale_down_events: Vec<ScaleEvent>,
    /// Consecutive failed reads per External metric (KEDA's `status.health`); a success
    /// removes the entry.
    pub failures: BTreeMap<String, u32>,
}

impl State {
    /// The state of a ScaledObject created at `created_at` whose target has `current_replicas`.
    pub fn new(current_replicas: u32, created_at: Timestamp) -> Self {
        State {
            current_replicas,
            created_at,
            last_active: None,
            recommendations: Vec::new(),
            scale_up_events: Vec::new(),
            scale_down_events: Vec::new(),
            failures: BTreeMap::new(),
        }
    }

    /// Consecutive failures of one metric.
    pub fn consecutive_failures(&self, metric: &str) -> u32 {
        self.failures.get(metric).copied().unwrap_or(0)
    }
}

/// The condition a decision ended in: the reason of the HPA's `AbleToScale` / `ScalingLimited`
/// conditions and of KEDA's events and `Active` / `Fallback` / `Paused` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// A pause annotation froze or pinned the replicas.
    Paused,
    /// KEDA scaled from zero (or idle) because a trigger became active.
    Activated,
    /// KEDA scaled to zero (or idle): no trigger active for `cooldownPeriod`.
    Deactivated,
    /// No trigger is active, but `cooldownPeriod` (or `initialCooldownPeriod`) has not passed.
    Cooldown,
    /// A failing trigger's fallback replica count is in effect.
    Fallback,
    /// Scaling is off: the target is at zero (or at `idleReplicaCount`) and nothing activates it.
    ScalingDisabled,
    /// No metric could be computed (or some failed and the rest would scale down).
    FailedGetMetrics,
    /// The scale-up policies capped the change.
    ScaleUpLimit,
    /// The scale-down policies capped the change.
    ScaleDownLimit,
    /// Capped at `maxReplicas` (also: the target was above it).
    TooManyReplicas,
    /// Floored at `minReplicas` (also: the target was below it).
    TooFewReplicas,
    /// The scale-up stabilization window held the count down.
    ScaleUpStabilized,
    /// The scale-down stabilization window held the count up.
    ScaleDownStabilized,
    /// The metrics' recommendation passed unchanged.
    DesiredWithinRange,
}

impl Condition {
    /// The CamelCase reason string Kubernetes and KEDA use.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Paused => "ScaledObjectPaused",
            Condition::Activated => "KEDAScaleTargetActivated",
            Condition::Deactivated => "KEDAScaleTargetDeactivated",
            Condition::Cooldown => "ScalerCooldown",
            Condition::Fallback => "FallbackExists",
            Condition::ScalingDisabled => "ScalingDisabled",
            Condition::FailedGetMetrics => "FailedGetMetrics",
            Condition::ScaleUpLimit => "ScaleUpLimit",
            Condition::ScaleDownLimit => "ScaleDownLimit",
            Condition::TooManyReplicas => "TooManyReplicas",
            Condition::TooFewReplicas => "TooFewReplicas",
            Condition::ScaleUpStabilized => "ScaleUpStabilized",
            Condition::ScaleDownStabilized => "ScaleDownStabilized",
            Condition::DesiredWithinRange => "DesiredWithinRange",
        }
    }

    /// The message Kubernetes attaches to the condition (KEDA-like text for KEDA's).
    pub fn message(self) -> &'static str {
        match self {
            Condition::Paused => "autoscaling is paused by annotation",
            Condition::Activated => "a trigger became active",
            Condition::Deactivated => "no trigger has been active for the cooldown period",
            Condition::Cooldown => "no trigger is active; waiting for the cooldown period",
            Condition::Fallback => "a failing trigger's fallback replica count is in effect",
            Condition::ScalingDisabled => {
                "scaling is disabled since the replica count of the target is zero"
            }
            Condition::FailedGetMetrics => "the HPA was unable to compute the replica count",
            Condition::ScaleUpLimit => {
                "the desired replica count is increasing faster than the maximum scale rate"
            }
            Condition::ScaleDownLimit => {
                "the desired replica count is decreasing faster than the maximum scale rate"
            }
            Condition::TooManyReplicas => {
                "the desired replica count is more than the maximum replica count"
            }
            Condition::TooFewReplicas => {
                "the desired replica count is less than the minimum replica count"
            }
            Condition::ScaleUpStabilized => {
                "recent recommendations were lower than current one, applying the lowest recent recommendation"
            }
            Condition::ScaleDownStabilized => {
                "recent recommendations were higher than current one, applying the highest recent recommendation"
            }
            Condition::DesiredWithinRange => "the desired count is within the acceptable range",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric in a decision, for an HPA-like `status.currentMetrics` and KEDA's `health`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStatus {
    /// [`MetricSpec::name`].
    pub name: String,
    /// The value the proposal was computed from (for a fallback: the synthetic value).
    pub current: Option<MetricValue>,
    /// The replica count this metric asked for.
    pub proposal: Option<u32>,
    /// External metrics: whether the value is above the activation threshold (a metric in
    /// fallback counts as active). `None` for Resource metrics.
    pub active: Option<bool>,
    /// Whether the fallback replaced this metric's value.
    pub fallback: bool,
    /// Consecutive failed reads.
    pub consecutive_failures: u32,
    /// Why the metric could not be used.
    pub error: Option<String>,
}

/// The outcome of one [`decide`] call.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count to set on the target.
    pub desired_replicas: u32,
    /// The count before this decision.
    pub previous_replicas: u32,
    /// The state to pass to the next call.
    pub state: State,
    /// KEDA's `Active` condition. For a plain HPA: whether scaling is enabled (replicas > 0).
    pub active: bool,
    /// Whether any trigger's fallback is in effect (KEDA's `Fallback` condition).
    pub fallback_active: bool,
    /// Whether a pause annotation is in effect (KEDA's `Paused` condition).
    pub paused: bool,
    /// What limited or caused the decision.
    pub condition: Condition,
    /// Human-readable, like the HPA's and KEDA's events: `New size: 3; reason: cpu resource
    /// utilization (percentage of request) above target` when the count changes, otherwise the
    /// condition's message.
    pub reason: String,
    /// Per metric, in spec order (empty while paused).
    pub metrics: Vec<MetricStatus>,
}

impl Decision {
    /// Whether the target's replica count must change.
    pub fn is_rescale(&self) -> bool {
        self.desired_replicas != self.previous_replicas
    }
}

/// One scaling decision. Pure: no I/O, no clock; call it once per poll of the triggers.
///
/// The steps, in order (the crate docs explain each rule):
/// 1. **Pause**: `paused-replicas: n` pins `n`, `paused: true` keeps the current count; the
///    HPA history is dropped (KEDA deletes the HPA while paused).
/// 2. **Metrics**: each metric's observation is turned into a proposal with the HPA formulas;
///    failed External reads are counted, and after more than `fallback.failureThreshold`
///    consecutive failures the fallback stands in for the metric.
/// 3. **KEDA** (ScaledObjects only): activation (scale from zero / idle), scale to zero /
///    idle after `cooldownPeriod`, up to `minReplicaCount` when below it.
/// 4. **HPA**: max over the proposals, stabilization, rate-limit policies, clamped to
///    `[max(min, 1), max]` for KEDA or `[min, max]` for an HPA. Nothing happens at zero.
pub fn decide(spec: &Spec, observations: &Observations, state: &State, now: Timestamp) -> Decision {
    let mut st = state.clone();
    let current = st.current_replicas;

    if spec.pause != Pause::No {
        let desired = match spec.pause {
            Pause::Replicas(n) => n,
            _ => current,
        };
        st.recommendations.clear();
        st.scale_up_events.clear();
        st.scale_down_events.clear();
        st.current_replicas = desired;
        let reason = if desired != current {
            format!("New size: {desired}; reason: autoscaling.keda.sh/paused-replicas is {desired}")
        } else {
            Condition::Paused.message().to_string()
        };
        return Decision {
            desired_replicas: desired,
            previous_replicas: current,
            state: st,
            active: false,
            fallback_active: false,
            paused: true,
            condition: Condition::Paused,
            reason,
            metrics: Vec::new(),
        };
    }

    let tol = Tolerance::of(&spec.behavior);
    let evaluated: Vec<Evaluated> = spec
        .metrics
        .iter()
        .map(|m| evaluate(spec, m, observations, &mut st, current, tol))
        .collect();
    let fallback_active = evaluated.iter().any(|e| e.status.fallback);
    let external_error = evaluated
        .iter()
        .zip(&spec.metrics)
        .any(|(e, m)| !m.is_resource() && e.status.error.is_some());

    let mut out = Outcome {
        spec,
        st,
        current,
        now,
    };
    let (desired, condition, reason, active) = match spec.class {
        Class::Hpa => {
            let (d, c, r) = out.hpa(&evaluated, false);
            (d, c, r, current > 0)
        }
        Class::Keda => out.keda(&evaluated, external_error),
    };
    let (condition, reason) = if fallback_active && condition == Condition::DesiredWithinRange {
        let reason = if desired == current {
            Condition::Fallback.message().to_string()
        } else {
            reason
        };
        (Condition::Fallback, reason)
    } else {
        (condition, reason)
    };
    let mut st = out.st;
    st.current_replicas = desired;
    Decision {
        desired_replicas: desired,
        previous_replicas: current,
        state: st,
        active,
        fallback_active,
        paused: false,
        condition,
        reason,
        metrics: evaluated.into_iter().map(|e| e.status).collect(),
    }
}

struct Evaluated {
    status: MetricStatus,
    /// The proposal, or why there is none.
    proposal: Result<u32, String>,
    /// How events describe the metric.
    description: String,
}

fn evaluate(
    spec: &Spec,
    m: &MetricSpec,
    obs: &Observations,
    st: &mut State,
    current: u32,
    tol: Tolerance,
) -> Evaluated {
    let observation = obs.metrics.get(&m.name);
    let mut status = MetricStatus {
        name: m.name.clone(),
        current: None,
        proposal: None,
        active: None,
        fallback: false,
        consecutive_failures: 0,
        error: None,
    };
    let mut description = m.describe();
    let result: Result<Proposal, String> = match &m.source {
        MetricSource::Resource { .. } => match observation {
            Some(MetricObservation::Resource(pods)) => match m.target {
                MetricTarget::Utilization(pct) => {
                    hpa::resource_utilization(current, pods, pct, tol)
                }
                MetricTarget::AverageValue(t) => hpa::resource_average_value(current, pods, t, tol),
                MetricTarget::Value(_) => {
                    Err("Value targets are not valid for resource metrics".into())
                }
            },
            Some(MetricObservation::Failed(e)) => Err(e.clone()),
            Some(MetricObservation::External(_)) => {
                Err("expected pod samples for a resource metric, got a single value".into())
            }
            None => Err(format!("no observation for metric {}", m.name)),
        },
        MetricSource::External => {
            let value = match observation {
                Some(MetricObservation::External(v)) => Ok(*v),
                Some(MetricObservation::Failed(e)) => Err(e.clone()),
                Some(MetricObservation::Resource(_)) => {
                    Err("expected a value for an external metric, got pod samples".into())
                }
                None => Err(format!("no observation for metric {}", m.name)),
            };
            let usage = match value {
                Ok(v) => {
                    st.failures.remove(&m.name);
                    status.active = Some(v > m.activation_threshold);
                    Ok(milli_from_f64(v))
                }
                Err(e) => {
                    let failures = st.failures.entry(m.name.clone()).or_insert(0);
                    *failures = failures.saturating_add(1);
                    status.consecutive_failures = *failures;
                    match spec.fallback {
                        Some(fb) if *failures > fb.failure_threshold => {
                            status.fallback = true;
                            status.active = Some(true);
                            description = format!("fallback for {description}");
                            fallback_usage(m.target, fb.replicas_for(current), obs.ready_pods)
                        }
                        _ => {
                            status.active = Some(false);
                            Err(e)
                        }
                    }
                }
            };
            usage.and_then(|usage| match m.target {
                MetricTarget::AverageValue(t) => {
                    Ok(hpa::external_average_value(obs.total_pods, usage, t, tol))
                }
                MetricTarget::Value(t) => {
                    hpa::external_value(current, usage, t, obs.total_pods, obs.ready_pods, tol)
                }
                MetricTarget::Utilization(_) => {
                    Err("Utilization targets are not valid for external metrics".into())
                }
            })
        }
    };
    let proposal = match result {
        Ok(p) => {
            status.current = Some(p.current);
            status.proposal = Some(p.replicas);
            Ok(p.replicas)
        }
        Err(e) => {
            status.error = Some(e.clone());
            Err(e)
        }
    };
    Evaluated {
        status,
        proposal,
        description,
    }
}

/// The value KEDA serves for a metric in fallback so that the HPA lands on `replicas`:
/// `target × replicas` (AverageValue) or `target × replicas / ready pods` (Value).
fn fallback_usage(target: MetricTarget, replicas: u32, ready_pods: u32) -> Result<i64, String> {
    let clamp = |v: i128| v.clamp(0, i64::MAX as i128) as i64;
    match target {
        MetricTarget::AverageValue(t) => Ok(clamp(t as i128 * replicas as i128)),
        MetricTarget::Value(t) if ready_pods > 0 => {
            Ok(clamp(t as i128 * replicas as i128 / ready_pods as i128))
        }
        MetricTarget::Value(_) => {
            Err("fallback: no ready replicas to spread a Value target over".into())
        }
        MetricTarget::Utilization(_) => Err("fallback does not apply to resource metrics".into()),
    }
}

struct Outcome<'a> {
    spec: &'a Spec,
    st: State,
    current: u32,
    now: Timestamp,
}

impl Outcome<'_> {
    /// KEDA's executor (`RequestScale`), then the HPA. Returns (desired, condition, reason,
    /// active).
    fn keda(
        &mut self,
        evaluated: &[Evaluated],
        external_error: bool,
    ) -> (u32, Condition, String, bool) {
        let spec = self.spec;
        let current = self.current;
        let all_resource = spec.metrics.iter().all(MetricSpec::is_resource);
        let active_triggers: Vec<&str> = evaluated
            .iter()
            .filter(|e| e.status.active == Some(true))
            .map(|e| e.status.name.as_str())
            .collect();
        let active = spec.force_activation
            || (all_resource && !external_error)
            || !active_triggers.is_empty();

        if active {
            let below_min_with_idle = spec.idle_replicas.is_some() && current < spec.min_replicas;
            if below_min_with_idle || current == 0 {
                if spec.pause_scale_out {
                    return (
                        current,
                        Condition::Paused,
                        "a trigger is active but autoscaling.keda.sh/paused-scale-out blocks scaling out".into(),
                        true,
                    );
                }
                let desired = spec.min_replicas.max(1);
                self.st.last_active = Some(self.now);
                let by = if active_triggers.is_empty() {
                    if spec.force_activation {
                        "autoscaling.keda.sh/force-activation".to_string()
                    } else {
                        "resource triggers".to_string()
                    }
                } else {
                    active_triggers.join(", ")
                };
                return (
                    desired,
                    Condition::Activated,
                    format!("Scaled from {current} to {desired}, triggered by {by}"),
                    true,
                );
            }
            if !external_error {
                self.st.last_active = Some(self.now);
            }
            let (d, c, r) = self.hpa(evaluated, false);
            return (d, c, r, true);
        }

        // Inactive. An erroring trigger never causes a scale to zero (with or without
        // fallback); the HPA carries on with the metrics it has.
        if external_error {
            let (d, c, r) = self.hpa(evaluated, false);
            return (d, c, r, false);
        }
        let above_idle = spec.idle_replicas.is_some_and(|idle| current > idle);
        if above_idle || (current > 0 && spec.min_replicas == 0) {
            if !spec.pause_scale_in && self.cooldown_elapsed() {
                let desired = spec.idle_replicas.unwrap_or(0);
                return (
                    desired,
                    Condition::Deactivated,
                    format!(
                        "Deactivated from {current} to {desired}: no trigger active for the cooldown period"
                    ),
                    false,
                );
            }
            let (d, c, r) = self.hpa(evaluated, true);
            return (d, c, r, false);
        }
        if spec.idle_replicas.is_none() && current < spec.min_replicas {
            return (
                spec.min_replicas,
                Condition::TooFewReplicas,
                format!(
                    "New size: {}; reason: Current number of replicas below Spec.MinReplicas",
                    spec.min_replicas
                ),
                false,
            );
        }
        if current > 0 && spec.idle_replicas == Some(current) {
            // KEDA leaves this to the HPA, which pushes back up to minReplicaCount and flaps
            // (kedacore/keda#2314). Tidal holds the idle count while nothing is active.
            return (
                current,
                Condition::ScalingDisabled,
                format!("idle at idleReplicaCount ({current}) until a trigger is active"),
                false,
            );
        }
        let (d, c, r) = self.hpa(evaluated, false);
        (d, c, r, false)
    }

    /// Scale to zero / idle is allowed once `initialCooldownPeriod` has passed since creation
    /// and `cooldownPeriod` since the last active poll (if there was one). Both bounds are
    /// strict, as KEDA's `Before(now)`.
    fn cooldown_elapsed(&self) -> bool {
        let spec = self.spec;
        let initial_done = self.now > self.st.created_at + spec.initial_cooldown_period;
        let cooldown_done = self
            .st
            .last_active
            .is_none_or(|t| self.now > t + spec.cooldown_period);
        initial_done && cooldown_done
    }

    /// The HPA controller's reconcile with `behavior` set. `in_cooldown` turns a no-change
    /// result into [`Condition::Cooldown`].
    fn hpa(&mut self, evaluated: &[Evaluated], in_cooldown: bool) -> (u32, Condition, String) {
        let spec = self.spec;
        let current = self.current;
        let now = self.now;
        if current == 0 {
            return (
                0,
                Condition::ScalingDisabled,
                Condition::ScalingDisabled.message().into(),
            );
        }
        if self.st.recommendations.is_empty() {
            self.st.recommendations.push(Recommendation {
                at: now,
                replicas: current,
            });
        }
        let min = spec.hpa_min_replicas();
        let max = spec.max_replicas;
        let (desired, condition, cause) = if current > max {
            (
                max,
                Condition::TooManyReplicas,
                "Current number of replicas above Spec.MaxReplicas".to_string(),
            )
        } else if current < min {
            (
                min,
                Condition::TooFewReplicas,
                "Current number of replicas below Spec.MinReplicas".to_string(),
            )
        } else {
            let mut best: Option<(u32, &Evaluated)> = None;
            let mut invalid: Vec<&str> = Vec::new();
            for e in evaluated {
                match &e.proposal {
                    Ok(p) => {
                        if best.is_none_or(|(b, _)| *p > b) {
                            best = Some((*p, e));
                        }
                    }
                    Err(err) => invalid.push(err),
                }
            }
            let Some((proposal, by)) = best.filter(|(p, _)| invalid.is_empty() || *p >= current)
            else {
                let first = invalid.first().copied().unwrap_or("no metrics");
                return (
                    current,
                    Condition::FailedGetMetrics,
                    format!(
                        "invalid metrics ({} invalid out of {}), first error is: {first}",
                        invalid.len(),
                        evaluated.len()
                    ),
                );
            };
            let stabilized = hpa::stabilize(
                &spec.behavior,
                &mut self.st.recommendations,
                current,
                proposal,
                now,
            );
            let (limited, limit) = hpa::rate_limit(
                &spec.behavior,
                min,
                max,
                current,
                stabilized,
                &self.st.scale_up_events,
                &self.st.scale_down_events,
                now,
            );
            let condition = if limited != stabilized {
                match limit {
                    hpa::Limit::ScaleUpLimit => Condition::ScaleUpLimit,
                    hpa::Limit::TooManyReplicas => Condition::TooManyReplicas,
                    hpa::Limit::ScaleDownLimit => Condition::ScaleDownLimit,
                    hpa::Limit::TooFewReplicas | hpa::Limit::WithinRange => {
                        Condition::TooFewReplicas
                    }
                }
            } else if stabilized != proposal {
                if proposal >= current {
                    Condition::ScaleUpStabilized
                } else {
                    Condition::ScaleDownStabilized
                }
            } else {
                Condition::DesiredWithinRange
            };
            let cause = if proposal > current {
                format!("{} above target", by.description)
            } else {
                "All metrics below target".to_string()
            };
            (limited, condition, cause)
        };
        if desired != current {
            hpa::record_scale_event(
                &spec.behavior,
                &mut self.st.scale_up_events,
                &mut self.st.scale_down_events,
                current,
                desired,
                now,
            );
            return (
                desired,
                condition,
                format!("New size: {desired}; reason: {cause}"),
            );
        }
        if in_cooldown {
            return (
                current,
                Condition::Cooldown,
                Condition::Cooldown.message().into(),
            );
        }
        (current, condition, condition.message().into())
    }
}
