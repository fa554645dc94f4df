//! The Kubernetes HPA v2 algorithm, as pure functions: per-metric replica proposals
//! (`replica_calculator.go`) and normalisation (stabilization windows and rate-limit policies,
//! `horizontal.go`). [`decide`](crate::decide) strings them together; they are public so that
//! each step can be tested and reused on its own.
//!
//! All arithmetic is on milli-values, as Kubernetes computes with `MilliValue()`.

use std::time::Duration;

use crate::observe::PodSample;
use crate::spec::{Behavior, PolicyKind, ScalingRules, SelectPolicy};
use crate::time::Timestamp;

/// The band around a usage ratio of 1 inside which a metric proposes no change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Ratios down to `1 - down` count as 1.
    pub down: f64,
    /// Ratios up to `1 + up` count as 1.
    pub up: f64,
}

impl Tolerance {
    /// The tolerances of a behavior (both 0.1 unless set).
    pub fn of(behavior: &Behavior) -> Self {
        Tolerance {
            down: behavior.scale_down.tolerance,
            up: behavior.scale_up.tolerance,
        }
    }

    /// `(1 - down) <= ratio <= (1 + up)`, both ends inclusive.
    pub fn within(&self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { down: 0.1, up: 0.1 }
    }
}

/// A metric's current value, as the HPA reports it in `status.currentMetrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricValue {
    /// Percent of requests (Resource Utilization).
    pub average_utilization: Option<u32>,
    /// Milli-units per pod.
    pub average_value: Option<i64>,
    /// Milli-units for the whole metric (External Value).
    pub value: Option<i64>,
}

/// One metric's replica proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// The replica count this metric asks for.
    pub replicas: u32,
    /// The value it was computed from.
    pub current: MetricValue,
}

fn ceil_replicas(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        // `as` saturates.
        x.ceil().min(u32::MAX as f64) as u32
    }
}

struct Grouped {
    /// Ready pods with a sample: (usage, request).
    counted: Vec<(i64, i64)>,
    /// Ready pods without a sample: request.
    missing: Vec<i64>,
    /// Pods that are not Ready: request.
    unready: Vec<i64>,
}

fn group(pods: &[PodSample]) -> Grouped {
    let mut g = Grouped {
        counted: Vec::new(),
        missing: Vec::new(),
        unready: Vec::new(),
    };
    for p in pods {
        match (p.ready, p.usage) {
            (false, _) => g.unready.push(p.request),
            (true, None) => g.missing.push(p.request),
            (true, Some(u)) => g.counted.push((u, p.request)),
        }
    }
    g
}

/// `(ratio, utilization %, raw average usage)` as `GetResourceUtilizationRatio`.
fn utilization_ratio(metrics: &[(i64, i64)], target: u32) -> Result<(f64, u32, i64), String> {
    let usage: i128 = metrics.iter().map(|(u, _)| *u as i128).sum();
    let requests: i128 = metrics.iter().map(|(_, r)| *r as i128).sum();
    if requests <= 0 || metrics.is_empty() {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = (usage * 100 / requests).clamp(0, u32::MAX as i128) as u32;
    let raw = (usage / metrics.len() as i128) as i64;
    Ok((utilization as f64 / target as f64, utilization, raw))
}

/// The shared tail of the Resource calculations once missing and unready pods have been
/// filled in: no change when the new ratio is within tolerance or flips direction.
fn settle(current: u32, ratio: f64, new_ratio: f64, pods: usize, tol: Tolerance) -> u32 {
    if tol.within(new_ratio) || (ratio > 1.0 && new_ratio < 1.0) || (ratio < 1.0 && new_ratio > 1.0)
    {
        return current;
    }
    let proposal = ceil_replicas(new_ratio * pods as f64);
    if (new_ratio < 1.0 && proposal > current) || (new_ratio > 1.0 && proposal < current) {
        return current;
    }
    proposal
}

/// A Resource metric with a `Utilization` target (`GetResourceReplicas`).
///
/// Utilization is `Σ usage × 100 / Σ requests` (truncated to a whole percent) over Ready pods
/// with a sample. Without missing or unready pods the proposal is `ceil(ratio × ready pods)`,
/// or `current` inside the tolerance. Otherwise Kubernetes' conservative rules apply: on a
/// scale-down missing pods count as using `max(100%, target)` of their request, on a scale-up
/// as 0; on a scale-up unready pods count as 0; and a proposal that flips direction becomes
/// `current`.
pub fn resource_utilization(
    current: u32,
    pods: &[PodSample],
    target_percent: u32,
    tol: Tolerance,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    if pods.iter().any(|p| p.request <= 0) {
        return Err("missing request for the resource in some pods".into());
    }
    let g = group(pods);
    if g.counted.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let (ratio, utilization, raw) = utilization_ratio(&g.counted, target_percent)?;
    let current_value = MetricValue {
        average_utilization: Some(utilization),
        average_value: Some(raw),
        value: None,
    };
    let proposal = |replicas| Proposal {
        replicas,
        current: current_value,
    };
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if tol.within(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_replicas(ratio * g.counted.len() as f64)));
    }
    let mut metrics = g.counted.clone();
    if ratio < 1.0 {
        let fallback = target_percent.max(100) as i64;
        metrics.extend(g.missing.iter().map(|r| (r * fallback / 100, *r)));
    } else if ratio > 1.0 {
        metrics.extend(g.missing.iter().map(|r| (0, *r)));
    }
    if scale_up_with_unready {
        metrics.extend(g.unready.iter().map(|r| (0, *r)));
    }
    let (new_ratio, _, _) = utilization_ratio(&metrics, target_percent)?;
    Ok(proposal(settle(
        current,
        ratio,
        new_ratio,
        metrics.len(),
        tol,
    )))
}

/// A Resource metric with an `AverageValue` target (`GetRawResourceReplicas` →
/// `calcPlainMetricReplicas`): the same rules as [`resource_utilization`] on the average usage
/// per pod, with missing pods assumed exactly at target on a scale-down.
pub fn resource_average_value(
    current: u32,
    pods: &[PodSample],
    target_milli: i64,
    tol: Tolerance,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let g = group(pods);
    if g.counted.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let usage_ratio = |values: &[i64]| {
        let total: i128 = values.iter().map(|v| *v as i128).sum();
        let average = (total / values.len() as i128) as i64;
        (average as f64 / target_milli as f64, average)
    };
    let counted: Vec<i64> = g.counted.iter().map(|(u, _)| *u).collect();
    let (ratio, average) = usage_ratio(&counted);
    let proposal = |replicas| Proposal {
        replicas,
        current: MetricValue {
            average_value: Some(average),
            ..MetricValue::default()
        },
    };
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if tol.within(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_replicas(ratio * counted.len() as f64)));
    }
    let mut values = counted;
    if ratio < 1.0 {
        values.extend(g.missing.iter().map(|_| target_milli));
    } else if ratio > 1.0 {
        values.extend(g.missing.iter().map(|_| 0));
    }
    if scale_up_with_unready {
        values.extend(g.unready.iter().map(|_| 0));
    }
    let (new_ratio, _) = usage_ratio(&values);
    Ok(proposal(settle(
        current,
        ratio,
        new_ratio,
        values.len(),
        tol,
    )))
}

/// An External metric with a `Value` target (`GetExternalMetricReplicas`):
/// `ratio = usage / target`; at zero replicas `ceil(ratio)`, otherwise `current` inside the
/// tolerance, else `ceil(ratio × ready pods)`. Errors when no pod exists.
pub fn external_value(
    current: u32,
    usage_milli: i64,
    target_milli: i64,
    total_pods: u32,
    ready_pods: u32,
    tol: Tolerance,
) -> Result<Proposal, String> {
    let ratio = usage_milli as f64 / target_milli as f64;
    let replicas = if current != 0 {
        if tol.within(ratio) {
            current
        } else {
            if total_pods == 0 {
                return Err("no pods returned by selector while calculating replica count".into());
            }
            ceil_replicas(ratio * ready_pods as f64)
        }
    } else {
        ceil_replicas(ratio)
    };
    Ok(Proposal {
        replicas,
        current: MetricValue {
            value: Some(usage_milli),
            ..MetricValue::default()
        },
    })
}

/// An External metric with an `AverageValue` target (`GetExternalPerPodMetricReplicas`):
/// `ratio = usage / (target × pods)`; the pod count inside the tolerance, else
/// `ceil(usage / target)` whatever the current count.
pub fn external_average_value(
    total_pods: u32,
    usage_milli: i64,
    target_milli: i64,
    tol: Tolerance,
) -> Proposal {
    let ratio = usage_milli as f64 / (target_milli as f64 * total_pods as f64);
    let replicas = if tol.within(ratio) {
        total_pods
    } else {
        ceil_replicas(usage_milli as f64 / target_milli as f64)
    };
    let average = if total_pods == 0 {
        usage_milli
    } else {
        (usage_milli as f64 / total_pods as f64).ceil() as i64
    };
    Proposal {
        replicas,
        current: MetricValue {
            average_value: Some(average),
            ..MetricValue::default()
        },
    }
}

/// A raw (pre-normalisation) recommendation, kept for the stabilization windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// When it was made.
    pub at: Timestamp,
    /// The replica count the metrics asked for.
    pub replicas: u32,
}

/// A replica change the HPA made, kept for the rate-limit policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// When it was made.
    pub at: Timestamp,
    /// How many replicas were added (in the scale-up history) or removed (scale-down).
    pub change: u32,
}

/// Stabilization (`stabilizeRecommendationWithBehaviors`): the result is `current` pulled up
/// to the *lowest* recommendation within the scale-up window and down to the *highest* within
/// the scale-down window (both including `desired`). Records `desired` in `history` and drops
/// entries older than both windows.
pub fn stabilize(
    behavior: &Behavior,
    history: &mut Vec<Recommendation>,
    current: u32,
    desired: u32,
    now: Timestamp,
) -> u32 {
    let up_window = behavior.scale_up.stabilization_window;
    let down_window = behavior.scale_down.stabilization_window;
    let mut up = desired;
    let mut down = desired;
    for r in history.iter() {
        if r.at.within(now, up_window) {
            up = up.min(r.replicas);
        }
        if r.at.within(now, down_window) {
            down = down.max(r.replicas);
        }
    }
    let mut recommendation = current;
    if recommendation < up {
        recommendation = up;
    }
    if recommendation > down {
        recommendation = down;
    }
    history.retain(|r| r.at.within(now, up_window) || r.at.within(now, down_window));
    history.push(Recommendation {
        at: now,
        replicas: desired,
    });
    recommendation
}

fn change_in_period(events: &[ScaleEvent], period: Duration, now: Timestamp) -> i64 {
    events
        .iter()
        .filter(|e| e.at.within(now, period))
        .map(|e| e.change as i64)
        .sum()
}

/// The highest count the scale-up policies allow now
/// (`calculateScaleUpLimitWithScalingRules`). For each policy the count at the start of its
/// period is `current − added + removed` within the period; Pods adds `value`, Percent
/// multiplies by `1 + value/100` (rounded up). Max picks the largest, Min the smallest,
/// Disabled returns `current`.
pub fn scale_up_limit(
    rules: &ScalingRules,
    current: u32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    now: Timestamp,
) -> i64 {
    let select: fn(i64, i64) -> i64 = match rules.select_policy {
        SelectPolicy::Disabled => return current as i64,
        SelectPolicy::Min => i64::min,
        SelectPolicy::Max => i64::max,
    };
    let mut result: Option<i64> = None;
    for p in &rules.policies {
        let start = current as i64 - change_in_period(up_events, p.period, now)
            + change_in_period(down_events, p.period, now);
        let proposed = match p.kind {
            PolicyKind::Pods => start + p.value as i64,
            PolicyKind::Percent => (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i64,
        };
        result = Some(result.map_or(proposed, |r| select(r, proposed)));
    }
    result.unwrap_or(current as i64)
}

/// The lowest count the scale-down policies allow now
/// (`calculateScaleDownLimitWithBehaviors`): Pods subtracts `value` from the period's start,
/// Percent multiplies it by `1 − value/100` (truncated). Max picks the *lowest* (the biggest
/// change), Min the highest, Disabled returns `current`.
pub fn scale_down_limit(
    rules: &ScalingRules,
    current: u32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    now: Timestamp,
) -> i64 {
    let select: fn(i64, i64) -> i64 = match rules.select_policy {
        SelectPolicy::Disabled => return current as i64,
        SelectPolicy::Min => i64::max,
        SelectPolicy::Max => i64::min,
    };
    let mut result: Option<i64> = None;
    for p in &rules.policies {
        let start = current as i64 - change_in_period(up_events, p.period, now)
            + change_in_period(down_events, p.period, now);
        let proposed = match p.kind {
            PolicyKind::Pods => start - p.value as i64,
            PolicyKind::Percent => (start as f64 * (1.0 - p.value as f64 / 100.0)) as i64,
        };
        result = Some(result.map_or(proposed, |r| select(r, proposed)));
    }
    result.unwrap_or(current as i64)
}

/// Which limit the rate step hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The desired count passed unchanged.
    WithinRange,
    /// Capped by the scale-up policies.
    ScaleUpLimit,
    /// Capped by `maxReplicas`.
    TooManyReplicas,
    /// Floored by the scale-down policies.
    ScaleDownLimit,
    /// Floored by `minReplicas`.
    TooFewReplicas,
}

/// The rate step (`convertDesiredReplicasWithBehaviorRate`): caps a scale-up at
/// `min(max, max(up limit, current))` and floors a scale-down at
/// `max(min, min(down limit, current))`.
#[allow(clippy::too_many_arguments)]
pub fn rate_limit(
    behavior: &Behavior,
    min: u32,
    max: u32,
    current: u32,
    desired: u32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    now: Timestamp,
) -> (u32, Limit) {
    if desired > current {
        let limit = scale_up_limit(&behavior.scale_up, current, up_events, down_events, now)
            .max(current as i64);
        let (allowed, why) = if (max as i64) > limit {
            (limit as u32, Limit::ScaleUpLimit)
        } else {
            (max, Limit::TooManyReplicas)
        };
        if desired > allowed {
            return (allowed, why);
        }
    } else if desired < current {
        let limit = scale_down_limit(&behavior.scale_down, current, up_events, down_events, now)
            .min(current as i64);
        let (allowed, why) = if (min as i64) < limit {
            (limit as u32, Limit::ScaleDownLimit)
        } else {
            (min, Limit::TooFewReplicas)
        };
        if desired < allowed {
            return (allowed, why);
        }
    }
    (desired, Limit::WithinRange)
}

/// Records a rescale from `from` to `to` in the matching history and drops events older
/// than the longest policy period in either direction (they can no longer limit anything).
pub fn record_scale_event(
    behavior: &Behavior,
    up_events: &mut Vec<ScaleEvent>,
    down_events: &mut Vec<ScaleEvent>,
    from: u32,
    to: u32,
    now: Timestamp,
) {
    let longest = behavior
        .scale_up
        .policies
        .iter()
        .chain(&behavior.scale_down.policies)
        .map(|p| p.period)
        .max()
        .unwrap_or(Duration::ZERO);
    up_events.retain(|e| e.at.within(now, longest));
    down_events.retain(|e| e.at.within(now, longest));
    if to > from {
        up_events.push(ScaleEvent {
            at: now,
            change: to - from,
        });
    } else if to < from {
        down_events.push(ScaleEvent {
            at: now,
            change: from - to,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance { down: 0.1, up: 0.1 };

    fn pods(samples: &[(bool, Option<i64>, i64)]) -> Vec<PodSample> {
        samples
            .iter()
            .map(|&(ready, usage, request)| PodSample {
                ready,
                usage,
                request,
            })
            .collect()
    }

    #[test]
    fn tolerance_band_is_inclusive_at_both_ends() {
        assert!(TOL.within(0.9));
        assert!(TOL.within(1.1));
        assert!(TOL.within(110.0 / 100.0));
        assert!(TOL.within(90.0 / 100.0));
        assert!(!TOL.within(111.0 / 100.0));
        assert!(!TOL.within(89.0 / 100.0));
    }

    #[test]
    fn utilization_truncates_to_a_whole_percent_before_the_ratio() {
        // 3 pods, usage 155m each on 100m requests: 155% of a 50% target -> ceil(3.1 * 3) = 10.
        let p = pods(&[(true, Some(155), 100); 3]);
        let got = resource_utilization(3, &p, 50, TOL).unwrap();
        assert_eq!(got.replicas, 10);
        assert_eq!(got.current.average_utilization, Some(155));
        assert_eq!(got.current.average_value, Some(155));
    }

    #[test]
    fn missing_pods_count_at_full_request_on_scale_down() {
        // 2 ready pods at 20% (target 50) and one missing pod: the missing pod counts as 100%,
        // so (20+20+100)/3 = 46% -> ratio 0.93 is within tolerance -> keep 3.
        let p = pods(&[
            (true, Some(20), 100),
            (true, Some(20), 100),
            (true, None, 100),
        ]);
        assert_eq!(resource_utilization(3, &p, 50, TOL).unwrap().replicas, 3);
        // Without the missing pod the 2 ready pods would propose ceil(0.4 * 2) = 1.
        let p = pods(&[(true, Some(20), 100), (true, Some(20), 100)]);
        assert_eq!(resource_utilization(2, &p, 50, TOL).unwrap().replicas, 1);
    }

    #[test]
    fn unready_pods_count_as_zero_on_scale_up() {
        // 1 ready pod at 200% of a 100% target, 1 unready pod: (200 + 0) / 2 = 100% -> within
        // tolerance after filling in -> keep current.
        let p = pods(&[(true, Some(200), 100), (false, None, 100)]);
        assert_eq!(resource_utilization(2, &p, 100, TOL).unwrap().replicas, 2);
        // 1 ready at 400%, 1 unready: (400 + 0)/2 = 200% -> ceil(2 * 2) = 4.
        let p = pods(&[(true, Some(400), 100), (false, Some(900), 100)]);
        assert_eq!(resource_utilization(2, &p, 100, TOL).unwrap().replicas, 4);
    }

    #[test]
    fn resource_errors() {
        assert!(resource_utilization(1, &[], 50, TOL).is_err());
        assert!(resource_utilization(1, &pods(&[(true, Some(10), 0)]), 50, TOL).is_err());
        assert!(resource_utilization(1, &pods(&[(false, Some(10), 100)]), 50, TOL).is_err());
        assert!(resource_average_value(1, &pods(&[(true, None, 0)]), 50, TOL).is_err());
    }

    #[test]
    fn average_value_missing_pods_sit_at_target_on_scale_down() {
        // ready pods at 100m and 100m, target 500m, one missing: (100+100+500)/3 = 233m
        // ratio 0.466 -> ceil(0.466 * 3) = 2 (instead of 1 without the missing pod).
        let p = pods(&[(true, Some(100), 0), (true, Some(100), 0), (true, None, 0)]);
        assert_eq!(resource_average_value(3, &p, 500, TOL).unwrap().replicas, 2);
    }

    #[test]
    fn external_average_value_ignores_the_current_count() {
        // KEDA docs: queue 20, threshold 5 -> 4 replicas whatever the current count.
        assert_eq!(external_average_value(1, 20_000, 5_000, TOL).replicas, 4);
        assert_eq!(external_average_value(9, 20_000, 5_000, TOL).replicas, 4);
        assert_eq!(external_average_value(0, 20_000, 5_000, TOL).replicas, 4);
        // Within tolerance of the pod count: keep it.
        assert_eq!(external_average_value(4, 21_000, 5_000, TOL).replicas, 4);
    }

    #[test]
    fn external_value_scales_with_ready_pods() {
        // KEDA docs: Value with 3 replicas, queue 20, threshold 5 -> 3 * 20/5 = 12.
        assert_eq!(
            external_value(3, 20_000, 5_000, 3, 3, TOL)
                .unwrap()
                .replicas,
            12
        );
        // From zero: ceil(ratio).
        assert_eq!(
            external_value(0, 20_000, 5_000, 0, 0, TOL)
                .unwrap()
                .replicas,
            4
        );
        // No pods at all while current > 0.
        assert!(external_value(3, 20_000, 5_000, 0, 0, TOL).is_err());
    }
}
