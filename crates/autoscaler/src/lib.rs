//! Tidal's autoscaling decisions: KEDA's ScaledObject semantics (activation, cooldown,
//! idle replicas, fallback, pause) on top of the Kubernetes HPA v2 algorithm (tolerance,
//! per-metric proposals, stabilization windows, rate-limit policies), as one pure function.
//!
//! # Design: decide, then apply
//!
//! KEDA splits scaling between its own loop (0↔1) and the HPA controller (1↔N). Tidal keeps
//! both halves and runs them as one step, [`decide`]:
//!
//! ```text
//! daemon poll loop (every second, later crate)          this crate (pure)
//! ────────────────────────────────────────────          ─────────────────────────────────
//! Spec::from_scaled_object(&so)      (on change)  ──►   Spec   (defaults filled, validated)
//! query each spec.scalers[i]; read pod usage      ──►   Observations
//! keep the State from the last Decision           ──►   State
//! now (fake clock in tests)                        ──►   Timestamp
//!                                                       decide(..) -> Decision
//! apply decision.desired_replicas; write status   ◄──   desired, condition, reason, metrics, state
//! ```
//!
//! Nothing here reads a clock, sleeps, or does I/O: the caller passes the time in as a
//! [`Timestamp`] and the state from the previous call as a [`State`]. Tests therefore replay
//! minutes of scaling history in microseconds with a fake clock, and the same code runs in the
//! embedded daemon and could run in an operator.
//!
//! The triggers are parsed by one scaler per file behind the small [`Scaler`] trait
//! ([`scalers`]): the parsed form says which metric the trigger feeds, its HPA target and its
//! activation threshold, and keeps the typed query configuration for the daemon. The HPA
//! formulas live in [`hpa`] as separate public functions.
//!
//! ```
//! use tidal_autoscaler::{Condition, Observations, Spec, State, Timestamp, decide};
//!
//! let so: tidal_api::ScaledObject = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "keda.sh/v1alpha1",
//!     "kind": "ScaledObject",
//!     "metadata": {"name": "llm-predictor"},
//!     "spec": {
//!         "scaleTargetRef": {"name": "llm-predictor"},
//!         "triggers": [{"type": "prometheus", "metadata": {
//!             "serverAddress": "http://prometheus:9090",
//!             "query": "sum(vllm:num_requests_waiting)",
//!             "threshold": "5",
//!         }}],
//!     },
//! }))
//! .unwrap();
//! let spec = Spec::from_scaled_object(&so).unwrap();
//! let state = State::new(0, Timestamp::from_secs(0));
//!
//! // Twelve requests are waiting: activate from zero.
//! let obs = Observations::new().external("s0-prometheus", 12.0);
//! let d = decide(&spec, &obs, &state, Timestamp::from_secs(1));
//! assert_eq!((d.desired_replicas, d.condition), (1, Condition::Activated));
//!
//! // A second later the HPA part takes over: ceil(12 / 5) = 3.
//! let obs = Observations::new().pods(1, 1).external("s0-prometheus", 12.0);
//! let d = decide(&spec, &obs, &d.state, Timestamp::from_secs(2));
//! assert_eq!(d.desired_replicas, 3);
//! assert_eq!(d.reason, "New size: 3; reason: external metric s0-prometheus above target");
//! ```
//!
//! # The algorithm
//!
//! One call of [`decide`]:
//!
//! 1. **Pause.** `autoscaling.keda.sh/paused-replicas: "n"` pins the count at `n`;
//!    `autoscaling.keda.sh/paused: "true"` (any value that is not a Go bool counts as true)
//!    keeps the current count. Metrics are not read, failures are not counted, and the HPA
//!    history is dropped, because KEDA deletes the HPA while paused.
//! 2. **Per metric** ([`hpa`]), all on milli-values, with `current` = the target's replicas:
//!    - Resource `Utilization`: utilization = `Σ usage × 100 / Σ requests` over Ready pods
//!      with a sample (whole percent), `ratio = utilization / target`; proposal
//!      `ceil(ratio × counted pods)`, or `current` when `|ratio − 1| ≤ tolerance` (0.1).
//!    - Resource `AverageValue`: the same with `ratio = average usage / target`.
//!    - External `AverageValue` (KEDA's default): `ceil(value / target)` whatever the
//!      current count, unless `value / (target × pods)` is within tolerance (then the pod
//!      count).
//!    - External `Value`: `ceil(value / target × ready pods)`, or `ceil(value / target)` at 0.
//! 3. **Fallback.** A failed External read increments the metric's consecutive failures; a
//!    success resets them. When they are **greater than** `fallback.failureThreshold` (KEDA's
//!    rule: threshold 3 means the 4th failure), the metric is replaced by the value that makes
//!    the HPA land on the fallback count (`target × replicas`, or `/ ready pods` for Value)
//!    and counts as active. The fallback count goes through the same max, stabilization and
//!    policies as any metric, as it does in KEDA.
//! 4. **Activation (KEDA).** An External trigger is active when its raw value is strictly
//!    greater than its `activationThreshold` (default 0), or while its fallback is in effect.
//!    The ScaledObject is active when any trigger is, when the `force-activation` annotation
//!    is true, or when every trigger is cpu/memory and no trigger failed (then always).
//!    Resource triggers take no part in activation otherwise (KEDA's rule; so with `cpu` and
//!    `prometheus` triggers, an idle Prometheus query scales to zero even under CPU load).
//!    - Active and at 0 (or below `minReplicaCount` with `idleReplicaCount` set): scale to
//!      `max(minReplicaCount, 1)` at once ([`Condition::Activated`]), unless `paused-scale-out`.
//!      The last-active time is refreshed whenever the object is active and no trigger failed.
//!    - Inactive, no trigger failing, above zero with `minReplicaCount: 0` (or above
//!      `idleReplicaCount`): scale to `idleReplicaCount` or 0 ([`Condition::Deactivated`]) once
//!      more than `cooldownPeriod` has passed since the last active poll **and** more than
//!      `initialCooldownPeriod` since creation; until then [`Condition::Cooldown`] and the HPA
//!      carries on. `paused-scale-in` blocks it.
//!    - A failing trigger never causes a scale to zero.
//!    - Inactive below `minReplicaCount` (no idle count): scale up to `minReplicaCount`.
//! 5. **HPA.** Nothing happens at 0 replicas ([`Condition::ScalingDisabled`]). A count above
//!    `max` or below the HPA minimum (`max(minReplicaCount, 1)` for KEDA, `minReplicas` for an
//!    HPA) is brought to that bound. Otherwise the proposal is the **max** over the metrics
//!    (if some metrics failed, only a proposal at or above `current` is used; if all failed,
//!    nothing changes: [`Condition::FailedGetMetrics`]), then:
//!    - **stabilization**: `current` raised to the *lowest* recommendation within the
//!      scale-up window and lowered to the *highest* within the scale-down window (the new one
//!      included; the first recommendation ever recorded is the current count, so a new
//!      object does not scale down within its first window);
//!    - **policies**: for each policy the count at the start of its period is
//!      `current − added + removed` within the period; a scale-up is capped at
//!      `min(max, selected limit)` with Pods `start + value` and Percent
//!      `ceil(start × (1 + value/100))`, a scale-down floored at `max(min, selected limit)` with
//!      Pods `start − value` and Percent `trunc(start × (1 − value/100))`; `selectPolicy` Max
//!      picks the biggest change, Min the smallest, Disabled none.
//!
//! The decision's [`Condition`] names what limited it, and [`Decision::reason`] reads like the
//! HPA's and KEDA's events (`New size: 3; reason: cpu resource utilization (percentage of
//! request) above target`).
//!
//! # Knobs
//!
//! From a ScaledObject ([`Spec::from_scaled_object`]):
//!
//! | knob | default | meaning |
//! |---|---|---|
//! | `spec.minReplicaCount` | 0 | lowest count; 0 allows scale to zero (needs a non-cpu/memory trigger) |
//! | `spec.maxReplicaCount` | 100 | highest count (≥ 1, ≥ min) |
//! | `spec.idleReplicaCount` | unset | count while inactive, must be < min; held while inactive |
//! | `spec.pollingInterval` | 30 s | how often the daemon should query the triggers (≥ 1); `decide` does not use it |
//! | `spec.cooldownPeriod` | 300 s | inactivity needed after the last active poll before scaling to zero / idle |
//! | `spec.initialCooldownPeriod` | 0 s | time after creation before the first scale to zero / idle |
//! | `spec.fallback.failureThreshold` | — | fallback applies after more than this many consecutive failures |
//! | `spec.fallback.replicas` | — | count to hold while a trigger fails |
//! | `spec.fallback.behavior` | `static` | `static`, `currentReplicas`, `currentReplicasIfHigher`, `currentReplicasIfLower` |
//! | `spec.advanced.horizontalPodAutoscalerConfig.behavior` | see [`Behavior::default`] | HPA stabilization windows, policies, selectPolicy, tolerance |
//! | `behavior.scaleUp` | window 0; Pods 4 / 15 s and Percent 100 / 15 s; Max | |
//! | `behavior.scaleDown` | window 300 s; Percent 100 / 15 s; Max | |
//! | `behavior.*.tolerance` | 0.1 | no change while the usage ratio is within 1 ± tolerance |
//! | `triggers[].metricType` | `AverageValue` | `AverageValue` or `Value` for External triggers; `Utilization` or `AverageValue` (required) for cpu/memory |
//! | `triggers[].metadata` | | per scaler, see [`scalers`] |
//! | annotation `autoscaling.keda.sh/paused` | | `"true"`: freeze the count |
//! | annotation `autoscaling.keda.sh/paused-replicas` | | `"n"`: pin the count at n |
//! | annotation `autoscaling.keda.sh/paused-scale-in` | | `"true"`: no scale-down, no scale to zero |
//! | annotation `autoscaling.keda.sh/paused-scale-out` | | `"true"`: no scale-up, no scale from zero |
//! | annotation `autoscaling.keda.sh/force-activation` | | `"true"`: always active |
//!
//! From a plain `autoscaling/v2` HPA ([`Spec::from_hpa`]): `minReplicas` (default 1, ≥ 1),
//! `maxReplicas`, `metrics` (Resource / ContainerResource cpu or memory; default CPU at 80%
//! utilization), `behavior` (as above). No activation, cooldown, fallback or pause.
//!
//! # Deliberate differences from Kubernetes and KEDA
//!
//! - **Pods.** Kubernetes sorts pods into ready, unready (Pending, or CPU pods not yet Ready
//!   within the 5-minute initialization period), missing (no sample) and ignored (deleted or
//!   failed). Tidal's daemon reports each pod's readiness directly ([`PodSample::ready`]):
//!   every pod that is not Ready is treated as Kubernetes treats unready pods (for memory
//!   too), Ready pods without a sample as missing; deleted pods should not be reported.
//!   Kubernetes' handling of missing and unready pods is then applied exactly.
//! - **No legacy path.** An HPA without `behavior` runs with the defaulted behavior rather
//!   than the legacy `max(2 × current, 4)` per-sync limit, so the result does not depend on how
//!   often `decide` is called.
//! - **Initial cooldown.** KEDA checks `initialCooldownPeriod` only until the first active
//!   poll; Tidal requires it to have passed in every case, so nothing scales to zero within it.
//! - **Idle replicas.** KEDA leaves an idle object to its HPA, which pushes it back up to
//!   `minReplicaCount` (kedacore/keda#2314); Tidal holds the idle count until a trigger is
//!   active.
//! - **Fallback value.** KEDA truncates the target to an integer before multiplying by the
//!   fallback count (so a target of 0.5 yields 0); Tidal multiplies the milli-value.
//! - **Failure counting.** Failures are counted per `decide` call. Call it once per poll of the
//!   triggers (not once per HPA-style sync), or the threshold is reached sooner than users
//!   expect (kedacore/keda#6053 describes KEDA's version of this).
//! - **Scale events.** Kubernetes keeps outdated scale events until a new event reuses their
//!   slot; Tidal drops events older than the longest policy period of either direction.
//! - **Not implemented:** `advanced.scalingModifiers` (rejected with
//!   [`SpecError::Unsupported`]), trigger types other than cpu, memory, prometheus, graphite and
//!   external, Object/Pods HPA metrics, the HPA's `HPAScaleToZero` gate.
//!
//! # Using the state
//!
//! [`State::new`] starts an object; after each call keep [`Decision::state`]. If applying the
//! decision fails, keep the previous state but set [`State::current_replicas`] to what the
//! target really has; if the target's count changes behind the autoscaler's back, overwrite
//! `current_replicas` before the next call (KEDA and the HPA read `/scale` every time).

mod decide;
pub mod hpa;
mod observe;
pub mod scalers;
mod spec;
mod time;

pub use decide::{Condition, Decision, MetricStatus, State, decide};
pub use observe::{MetricObservation, Observations, PodSample, milli_from_f64};
pub use scalers::{AnyScaler, Scaler, ScalerError};
pub use spec::{
    Behavior, Class, FORCE_ACTIVATION_ANNOTATION, FallbackBehavior, FallbackSpec, MetricSource,
    MetricSpec, MetricTarget, PAUSED_SCALE_IN_ANNOTATION, PAUSED_SCALE_OUT_ANNOTATION, Pause,
    PolicyKind, ResourceName, ScalingPolicy, ScalingRules, SelectPolicy, Spec, SpecError, defaults,
};
pub use time::Timestamp;
