//! [`Spec`]: everything the decision needs from a ScaledObject (or a plain HPA), with every
//! default filled in and every field validated, so that [`decide`](crate::decide) never has to
//! interpret raw API objects.

use std::time::Duration;

use tidal_api::k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior,
};
use tidal_api::keda::{PAUSED_ANNOTATION, PAUSED_REPLICAS_ANNOTATION, ScaledObject};
use tidal_api::quantity::Quantity;

use crate::scalers::{AnyScaler, Scaler, ScalerError, parse_go_bool, parse_trigger};

/// `autoscaling.keda.sh/paused-scale-in`: no scale-down (HPA and scale to zero).
pub const PAUSED_SCALE_IN_ANNOTATION: &str = "autoscaling.keda.sh/paused-scale-in";
/// `autoscaling.keda.sh/paused-scale-out`: no scale-up (HPA and scale from zero).
pub const PAUSED_SCALE_OUT_ANNOTATION: &str = "autoscaling.keda.sh/paused-scale-out";
/// `autoscaling.keda.sh/force-activation`: treat the ScaledObject as active.
pub const FORCE_ACTIVATION_ANNOTATION: &str = "autoscaling.keda.sh/force-activation";

/// KEDA's defaults and the Kubernetes HPA's.
pub mod defaults {
    use std::time::Duration;

    /// `pollingInterval`.
    pub const POLLING_INTERVAL: Duration = Duration::from_secs(30);
    /// `cooldownPeriod`.
    pub const COOLDOWN_PERIOD: Duration = Duration::from_secs(300);
    /// `maxReplicaCount`.
    pub const MAX_REPLICA_COUNT: u32 = 100;
    /// The HPA's tolerance around a usage ratio of 1.
    pub const TOLERANCE: f64 = 0.1;
    /// `behavior.scaleDown.stabilizationWindowSeconds` (the controller's 5 minutes).
    pub const SCALE_DOWN_STABILIZATION: Duration = Duration::from_secs(300);
    /// The HPA's default metric when `metrics` is empty: CPU at 80% of requests.
    pub const CPU_UTILIZATION: u32 = 80;
}

/// Who owns the decision: KEDA (with activation, cooldown, fallback, pause) or a plain HPA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A KEDA ScaledObject: KEDA decides 0↔1, the HPA decides 1↔N.
    Keda,
    /// A plain `autoscaling/v2` HPA (KServe's `hpa` class): never scales to or from zero.
    Hpa,
}

/// A pod resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceName {
    /// CPU, in millicores (milli-values of cores).
    Cpu,
    /// Memory, in milli-bytes (milli-values of bytes).
    Memory,
}

impl ResourceName {
    /// `cpu` / `memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceName::Cpu => "cpu",
            ResourceName::Memory => "memory",
        }
    }
}

/// Where a metric's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricSource {
    /// Pod resource usage versus requests (metrics-server in Kubernetes).
    Resource {
        /// cpu or memory.
        resource: ResourceName,
        /// Restrict to one container (`ContainerResource`).
        container: Option<String>,
    },
    /// A value the daemon queries from the trigger's backend (KEDA's External metrics).
    External,
}

/// An HPA metric target. Values are milli-units (thousandths), as the HPA computes with
/// `MilliValue()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricTarget {
    /// Percent of the pods' requests (Resource metrics only).
    Utilization(u32),
    /// Target per replica, in milli-units.
    AverageValue(i64),
    /// Target for the metric as a whole, in milli-units (External metrics only).
    Value(i64),
}

/// One metric the decision scales on.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// The key of this metric in [`Observations`](crate::Observations) and in the decision's
    /// metric statuses (`s0-prometheus`, `cpu`).
    pub name: String,
    /// The trigger it came from (`None` for a plain HPA's metrics).
    pub trigger_index: Option<usize>,
    /// Resource or External.
    pub source: MetricSource,
    /// The HPA target.
    pub target: MetricTarget,
    /// KEDA's activation threshold (External metrics): active when value > this.
    pub activation_threshold: f64,
}

impl MetricSpec {
    /// Whether the HPA reads this metric from the pods.
    pub fn is_resource(&self) -> bool {
        matches!(self.source, MetricSource::Resource { .. })
    }

    /// How the HPA names the metric in events: `cpu resource utilization (percentage of
    /// request)`, `memory resource`, `external metric s0-prometheus`.
    pub fn describe(&self) -> String {
        match (&self.source, self.target) {
            (
                MetricSource::Resource {
                    resource,
                    container: None,
                },
                MetricTarget::Utilization(_),
            ) => {
                format!(
                    "{} resource utilization (percentage of request)",
                    resource.as_str()
                )
            }
            (
                MetricSource::Resource {
                    resource,
                    container: Some(c),
                },
                MetricTarget::Utilization(_),
            ) => {
                format!(
                    "{} container resource utilization (percentage of request) of container {c}",
                    resource.as_str()
                )
            }
            (
                MetricSource::Resource {
                    resource,
                    container: None,
                },
                _,
            ) => {
                format!("{} resource", resource.as_str())
            }
            (
                MetricSource::Resource {
                    resource,
                    container: Some(c),
                },
                _,
            ) => {
                format!("{} container resource of container {c}", resource.as_str())
            }
            (MetricSource::External, _) => format!("external metric {}", self.name),
        }
    }
}

/// How a policy's `value` is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A number of pods.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// One HPA scaling policy: at most `value` pods (or percent) per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingPolicy {
    /// Pods or Percent.
    pub kind: PolicyKind,
    /// How many pods, or which percentage.
    pub value: u32,
    /// The sliding period the change is counted over (1 s to 30 min).
    pub period: Duration,
}

/// Which policy wins when several allow different changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The policy allowing the biggest change (the default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// `behavior.scaleUp` or `behavior.scaleDown`, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRules {
    /// Recommendations older than this no longer hold the replica count back.
    pub stabilization_window: Duration,
    /// Max, Min or Disabled.
    pub select_policy: SelectPolicy,
    /// The rate limits.
    pub policies: Vec<ScalingPolicy>,
    /// Usage ratios within `1 ± tolerance` change nothing (in this direction).
    pub tolerance: f64,
}

/// The HPA's `behavior`, with Kubernetes' defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Scale-up rules. Default: window 0, `Pods 4 / 15s` and `Percent 100 / 15s`, select Max.
    pub scale_up: ScalingRules,
    /// Scale-down rules. Default: window 300 s, `Percent 100 / 15s`, select Max.
    pub scale_down: ScalingRules,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            scale_up: ScalingRules {
                stabilization_window: Duration::ZERO,
                select_policy: SelectPolicy::Max,
                policies: vec![
                    ScalingPolicy {
                        kind: PolicyKind::Pods,
                        value: 4,
                        period: Duration::from_secs(15),
                    },
                    ScalingPolicy {
                        kind: PolicyKind::Percent,
                        value: 100,
                        period: Duration::from_secs(15),
                    },
                ],
                tolerance: defaults::TOLERANCE,
            },
            scale_down: ScalingRules {
                stabilization_window: defaults::SCALE_DOWN_STABILIZATION,
                select_policy: SelectPolicy::Max,
                policies: vec![ScalingPolicy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: Duration::from_secs(15),
                }],
                tolerance: defaults::TOLERANCE,
            },
        }
    }
}

impl Behavior {
    /// Fills Kubernetes' defaults into an `autoscaling/v2` behavior (`None` gives
    /// [`Behavior::default`]) and validates it as the API server would.
    ///
    /// Unlike Kubernetes, a missing behavior does not select the legacy algorithm (which caps
    /// each 15 s sync at `max(2 × current, 4)` without remembering earlier syncs); the
    /// defaulted behavior expresses the same limit per 15 s and, unlike the legacy path, stays
    /// correct however often [`decide`](crate::decide) is called.
    pub fn from_k8s(
        behavior: Option<&HorizontalPodAutoscalerBehavior>,
        field: &str,
    ) -> Result<Behavior, SpecError> {
        let mut out = Behavior::default();
        if let Some(b) = behavior {
            if let Some(up) = &b.scale_up {
                out.scale_up = rules(up, out.scale_up, &format!("{field}.scaleUp"))?;
            }
            if let Some(down) = &b.scale_down {
                out.scale_down = rules(down, out.scale_down, &format!("{field}.scaleDown"))?;
            }
        }
        Ok(out)
    }
}

fn rules(
    r: &HPAScalingRules,
    defaults: ScalingRules,
    field: &str,
) -> Result<ScalingRules, SpecError> {
    let stabilization_window = match r.stabilization_window_seconds {
        None => defaults.stabilization_window,
        Some(s) if (0..=3600).contains(&s) => Duration::from_secs(s as u64),
        Some(s) => {
            return Err(SpecError::invalid(
                format!("{field}.stabilizationWindowSeconds"),
                s,
                "must be between 0 and 3600",
            ));
        }
    };
    let select_policy = match r.select_policy.as_deref() {
        None | Some("Max") => SelectPolicy::Max,
        Some("Min") => SelectPolicy::Min,
        Some("Disabled") => SelectPolicy::Disabled,
        Some(other) => {
            return Err(SpecError::invalid(
                format!("{field}.selectPolicy"),
                other,
                "must be Max, Min or Disabled",
            ));
        }
    };
    let policies = match &r.policies {
        None => defaults.policies,
        Some(list) if list.is_empty() => {
            return Err(SpecError::invalid(
                format!("{field}.policies"),
                "[]",
                "must specify at least one policy",
            ));
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, p)| policy(p, &format!("{field}.policies[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    let tolerance = match &r.tolerance {
        None => defaults.tolerance,
        Some(q) => {
            let parsed: Quantity = q.0.parse().map_err(|_| {
                SpecError::invalid(format!("{field}.tolerance"), &q.0, "must be a quantity")
            })?;
            let t = parsed.as_f64();
            if t < 0.0 {
                return Err(SpecError::invalid(
                    format!("{field}.tolerance"),
                    &q.0,
                    "must not be negative",
                ));
            }
            t
        }
    };
    Ok(ScalingRules {
        stabilization_window,
        select_policy,
        policies,
        tolerance,
    })
}

fn policy(p: &HPAScalingPolicy, field: &str) -> Result<ScalingPolicy, SpecError> {
    let kind = match p.type_.as_str() {
        "Pods" => PolicyKind::Pods,
        "Percent" => PolicyKind::Percent,
        other => {
            return Err(SpecError::invalid(
                format!("{field}.type"),
                other,
                "must be Pods or Percent",
            ));
        }
    };
    if p.value <= 0 {
        return Err(SpecError::invalid(
            format!("{field}.value"),
            p.value,
            "must be greater than 0",
        ));
    }
    if !(1..=1800).contains(&p.period_seconds) {
        return Err(SpecError::invalid(
            format!("{field}.periodSeconds"),
            p.period_seconds,
            "must be between 1 and 1800",
        ));
    }
    Ok(ScalingPolicy {
        kind,
        value: p.value as u32,
        period: Duration::from_secs(p.period_seconds as u64),
    })
}

/// Which replica count to hold once a trigger has failed too often (`fallback.behavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackBehavior {
    /// `static` (default): `fallback.replicas`.
    Static,
    /// `currentReplicas`: keep the current count.
    CurrentReplicas,
    /// `currentReplicasIfHigher`: `max(current, fallback.replicas)`.
    CurrentReplicasIfHigher,
    /// `currentReplicasIfLower`: `min(current, fallback.replicas)`.
    CurrentReplicasIfLower,
}

/// `spec.fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackSpec {
    /// The fallback applies once a trigger has failed **more than** this many consecutive
    /// times (KEDA: `numberOfFailures > failureThreshold`).
    pub failure_threshold: u32,
    /// `fallback.replicas`.
    pub replicas: u32,
    /// `fallback.behavior`.
    pub behavior: FallbackBehavior,
}

impl FallbackSpec {
    /// The replica count the fallback asks for, given the current count.
    pub fn replicas_for(&self, current: u32) -> u32 {
        match self.behavior {
            FallbackBehavior::Static => self.replicas,
            FallbackBehavior::CurrentReplicas => current,
            FallbackBehavior::CurrentReplicasIfHigher => current.max(self.replicas),
            FallbackBehavior::CurrentReplicasIfLower => current.min(self.replicas),
        }
    }
}

/// The pause annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Not paused.
    No,
    /// `autoscaling.keda.sh/paused: "true"`: keep the current replica count.
    Frozen,
    /// `autoscaling.keda.sh/paused-replicas: "<n>"`: pin the replica count to n.
    Replicas(u32),
}

/// Everything [`decide`](crate::decide) needs to know about one autoscaled workload.
///
/// Build it with [`Spec::from_scaled_object`] or [`Spec::from_hpa`]; the fields are public so
/// that tests and the daemon can inspect (or, in tests, construct) it directly.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// KEDA or plain HPA semantics.
    pub class: Class,
    /// `minReplicaCount` (KEDA, default 0) or `minReplicas` (HPA, default 1).
    pub min_replicas: u32,
    /// `maxReplicaCount` / `maxReplicas` (KEDA default 100).
    pub max_replicas: u32,
    /// `idleReplicaCount`: replicas while inactive (must be below `min_replicas`).
    pub idle_replicas: Option<u32>,
    /// `pollingInterval` (default 30 s): how often the daemon should query the triggers.
    /// [`decide`](crate::decide) itself does not depend on it.
    pub polling_interval: Duration,
    /// `cooldownPeriod` (default 300 s): time since the last active poll before scaling to
    /// zero or idle.
    pub cooldown_period: Duration,
    /// `initialCooldownPeriod` (default 0): time after creation before the first scale to zero.
    pub initial_cooldown_period: Duration,
    /// `fallback`.
    pub fallback: Option<FallbackSpec>,
    /// `paused` / `paused-replicas` annotations.
    pub pause: Pause,
    /// `paused-scale-in`: scaling down and to zero are blocked.
    pub pause_scale_in: bool,
    /// `paused-scale-out`: scaling up and from zero are blocked.
    pub pause_scale_out: bool,
    /// `force-activation`: the ScaledObject is always active.
    pub force_activation: bool,
    /// The HPA behavior (defaults filled in; paused directions set to Disabled).
    pub behavior: Behavior,
    /// One metric per trigger, in trigger order.
    pub metrics: Vec<MetricSpec>,
    /// The parsed triggers, in trigger order (empty for a plain HPA). The daemon queries
    /// `metrics[i]` through `scalers[i]`.
    pub scalers: Vec<AnyScaler>,
}

impl Spec {
    /// The lower bound the HPA part works within: KEDA's HPA gets `max(min, 1)`.
    pub fn hpa_min_replicas(&self) -> u32 {
        match self.class {
            Class::Keda => self.min_replicas.max(1),
            Class::Hpa => self.min_replicas,
        }
    }

    /// Reads a ScaledObject, fills KEDA's defaults and validates what KEDA's admission webhook
    /// and CRD validate.
    pub fn from_scaled_object(so: &ScaledObject) -> Result<Spec, SpecError> {
        let s = &so.spec;
        let min_replicas = non_negative(s.min_replica_count, 0, "spec.minReplicaCount")?;
        let max_replicas = non_negative(
            s.max_replica_count,
            defaults::MAX_REPLICA_COUNT as i32,
            "spec.maxReplicaCount",
        )?;
        if max_replicas < 1 {
            return Err(SpecError::invalid(
                "spec.maxReplicaCount",
                max_replicas,
                "must be at least 1",
            ));
        }
        if min_replicas > max_replicas {
            return Err(SpecError::invalid(
                "spec.minReplicaCount",
                min_replicas,
                format!("must not be greater than maxReplicaCount ({max_replicas})"),
            ));
        }
        let idle_replicas = match s.idle_replica_count {
            None => None,
            Some(idle) => {
                let idle = non_negative(Some(idle), 0, "spec.idleReplicaCount")?;
                if idle >= min_replicas {
                    return Err(SpecError::invalid(
                        "spec.idleReplicaCount",
                        idle,
                        format!("must be lower than minReplicaCount ({min_replicas})"),
                    ));
                }
                Some(idle)
            }
        };
        let polling = non_negative(
            s.polling_interval,
            defaults::POLLING_INTERVAL.as_secs() as i32,
            "spec.pollingInterval",
        )?;
        if polling < 1 {
            return Err(SpecError::invalid(
                "spec.pollingInterval",
                polling,
                "must be at least 1",
            ));
        }
        let cooldown = non_negative(
            s.cooldown_period,
            defaults::COOLDOWN_PERIOD.as_secs() as i32,
            "spec.cooldownPeriod",
        )?;
        let initial_cooldown =
            non_negative(s.initial_cooldown_period, 0, "spec.initialCooldownPeriod")?;

        if s.triggers.is_empty() {
            return Err(SpecError::invalid(
                "spec.triggers",
                "[]",
                "must have at least one trigger",
            ));
        }
        let mut scalers = Vec::with_capacity(s.triggers.len());
        let mut metrics: Vec<MetricSpec> = Vec::with_capacity(s.triggers.len());
        for (i, trigger) in s.triggers.iter().enumerate() {
            let scaler = parse_trigger(i, trigger)
                .map_err(|source| SpecError::Trigger { index: i, source })?;
            let name = scaler.metric_name();
            if metrics.iter().any(|m| m.name == name) {
                return Err(SpecError::invalid(
                    format!("spec.triggers[{i}]"),
                    &name,
                    "duplicate metric name",
                ));
            }
            metrics.push(MetricSpec {
                name,
                trigger_index: Some(i),
                source: scaler.source(),
                target: scaler.target(),
                activation_threshold: scaler.activation_threshold(),
            });
            scalers.push(scaler);
        }
        let only_resource = metrics.iter().all(MetricSpec::is_resource);
        if only_resource && min_replicas == 0 {
            return Err(SpecError::invalid(
                "spec.minReplicaCount",
                0,
                "must be at least 1 when all triggers are cpu or memory (they cannot scale to zero)",
            ));
        }

        let fallback = match &s.fallback {
            None => None,
            Some(f) => {
                let failure_threshold = non_negative(
                    Some(f.failure_threshold),
                    0,
                    "spec.fallback.failureThreshold",
                )?;
                let replicas = non_negative(Some(f.replicas), 0, "spec.fallback.replicas")?;
                let behavior = match f.behavior.as_deref() {
                    None | Some("") | Some("static") => FallbackBehavior::Static,
                    Some("currentReplicas") => FallbackBehavior::CurrentReplicas,
                    Some("currentReplicasIfHigher") => FallbackBehavior::CurrentReplicasIfHigher,
                    Some("currentReplicasIfLower") => FallbackBehavior::CurrentReplicasIfLower,
                    Some("scalingModifiers") => {
                        return Err(SpecError::Unsupported {
                            field: "spec.fallback.behavior".into(),
                            message: "scalingModifiers is not implemented".into(),
                        });
                    }
                    Some(other) => {
                        return Err(SpecError::invalid(
                            "spec.fallback.behavior",
                            other,
                            "must be static, currentReplicas, currentReplicasIfHigher or currentReplicasIfLower",
                        ));
                    }
                };
                if only_resource {
                    return Err(SpecError::invalid(
                        "spec.fallback",
                        "",
                        "at least one trigger (that is not cpu or memory) has to be defined to use fallback",
                    ));
                }
                Some(FallbackSpec {
                    failure_threshold,
                    replicas,
                    behavior,
                })
            }
        };

        let advanced = s.advanced.as_ref();
        if advanced
            .and_then(|a| a.scaling_modifiers.as_ref())
            .is_some()
        {
            return Err(SpecError::Unsupported {
                field: "spec.advanced.scalingModifiers".into(),
                message: "scaling modifiers (formulas over triggers) are not implemented".into(),
            });
        }
        let mut behavior = Behavior::from_k8s(
            advanced
                .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
                .and_then(|h| h.behavior.as_ref()),
            "spec.advanced.horizontalPodAutoscalerConfig.behavior",
        )?;

        let annotation = |key: &str| {
            so.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map(|v| v.trim())
        };
        // Go's ParseBool; a value that is not a bool still pauses.
        let truthy = |key: &str| annotation(key).is_some_and(|v| parse_go_bool(v).unwrap_or(true));
        let pause = match annotation(PAUSED_REPLICAS_ANNOTATION) {
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) => Pause::Replicas(n),
                Err(_) => {
                    return Err(SpecError::invalid(
                        format!("metadata.annotations[{PAUSED_REPLICAS_ANNOTATION}]"),
                        raw,
                        "must be a non-negative integer",
                    ));
                }
            },
            None if truthy(PAUSED_ANNOTATION) => Pause::Frozen,
            None => Pause::No,
        };
        let pause_scale_in =
            annotation(PAUSED_SCALE_IN_ANNOTATION).and_then(parse_go_bool) == Some(true);
        let pause_scale_out =
            annotation(PAUSED_SCALE_OUT_ANNOTATION).and_then(parse_go_bool) == Some(true);
        if pause_scale_in {
            behavior.scale_down.select_policy = SelectPolicy::Disabled;
        }
        if pause_scale_out {
            behavior.scale_up.select_policy = SelectPolicy::Disabled;
        }

        Ok(Spec {
            class: Class::Keda,
            min_replicas,
            max_replicas,
            idle_replicas,
            polling_interval: Duration::from_secs(polling as u64),
            cooldown_period: Duration::from_secs(cooldown as u64),
            initial_cooldown_period: Duration::from_secs(initial_cooldown as u64),
            fallback,
            pause,
            pause_scale_in,
            pause_scale_out,
            force_activation: annotation(FORCE_ACTIVATION_ANNOTATION).and_then(parse_go_bool)
                == Some(true),
            behavior,
            metrics,
            scalers,
        })
    }

    /// Reads a plain `autoscaling/v2` HPA: Resource metrics only (cpu/memory, Utilization or
    /// AverageValue), `minReplicas` default 1, no scale to zero, no KEDA features. An HPA
    /// without metrics gets Kubernetes' default, CPU at 80% utilization.
    pub fn from_hpa(hpa: &HorizontalPodAutoscaler) -> Result<Spec, SpecError> {
        let Some(s) = &hpa.spec else {
            return Err(SpecError::invalid("spec", "", "is required"));
        };
        let min_replicas = non_negative(s.min_replicas, 1, "spec.minReplicas")?;
        if min_replicas < 1 {
            return Err(SpecError::invalid(
                "spec.minReplicas",
                min_replicas,
                "must be at least 1",
            ));
        }
        let max_replicas = non_negative(Some(s.max_replicas), 0, "spec.maxReplicas")?;
        if max_replicas < min_replicas {
            return Err(SpecError::invalid(
                "spec.maxReplicas",
                max_replicas,
                format!("must be greater than or equal to minReplicas ({min_replicas})"),
            ));
        }
        let mut metrics = Vec::new();
        for (i, m) in s.metrics.iter().flatten().enumerate() {
            let field = format!("spec.metrics[{i}]");
            let (resource, container, target) = match (
                m.type_.as_str(),
                &m.resource,
                &m.container_resource,
            ) {
                ("Resource", Some(r), _) => (&r.name, None, &r.target),
                ("ContainerResource", _, Some(r)) => {
                    (&r.name, Some(r.container.clone()), &r.target)
                }
                (other, _, _) => {
                    return Err(SpecError::Unsupported {
                        field: format!("{field}.type"),
                        message: format!(
                            "{other:?}: a plain HPA supports Resource and ContainerResource metrics only; use a KEDA ScaledObject for external metrics"
                        ),
                    });
                }
            };
            let resource = match resource.as_str() {
                "cpu" => ResourceName::Cpu,
                "memory" => ResourceName::Memory,
                other => {
                    return Err(SpecError::invalid(
                        format!("{field}.resource.name"),
                        other,
                        "must be cpu or memory",
                    ));
                }
            };
            let target = match (
                target.type_.as_str(),
                target.average_utilization,
                &target.average_value,
            ) {
                ("Utilization", Some(u), _) if u > 0 => MetricTarget::Utilization(u as u32),
                ("Utilization", other, _) => {
                    return Err(SpecError::invalid(
                        format!("{field}.resource.target.averageUtilization"),
                        format!("{other:?}"),
                        "must be greater than 0",
                    ));
                }
                ("AverageValue", _, Some(q)) => {
                    let milli =
                        q.0.parse::<Quantity>()
                            .ok()
                            .and_then(|q| i64::try_from(q.millis()).ok())
                            .filter(|m| *m > 0);
                    match milli {
                        Some(m) => MetricTarget::AverageValue(m),
                        None => {
                            return Err(SpecError::invalid(
                                format!("{field}.resource.target.averageValue"),
                                &q.0,
                                "must be a quantity greater than 0",
                            ));
                        }
                    }
                }
                (other, _, _) => {
                    return Err(SpecError::invalid(
                        format!("{field}.resource.target.type"),
                        other,
                        "must be Utilization or AverageValue (with averageUtilization / averageValue set)",
                    ));
                }
            };
            let name = match &container {
                Some(c) => format!("{}:{c}", resource.as_str()),
                None => resource.as_str().to_string(),
            };
            if metrics.iter().any(|m: &MetricSpec| m.name == name) {
                return Err(SpecError::invalid(field, &name, "duplicate metric"));
            }
            metrics.push(MetricSpec {
                name,
                trigger_index: None,
                source: MetricSource::Resource {
                    resource,
                    container,
                },
                target,
                activation_threshold: 0.0,
            });
        }
        if metrics.is_empty() {
            metrics.push(MetricSpec {
                name: "cpu".into(),
                trigger_index: None,
                source: MetricSource::Resource {
                    resource: ResourceName::Cpu,
                    container: None,
                },
                target: MetricTarget::Utilization(defaults::CPU_UTILIZATION),
                activation_threshold: 0.0,
            });
        }
        Ok(Spec {
            class: Class::Hpa,
            min_replicas,
            max_replicas,
            idle_replicas: None,
            polling_interval: Duration::from_secs(15),
            cooldown_period: Duration::ZERO,
            initial_cooldown_period: Duration::ZERO,
            fallback: None,
            pause: Pause::No,
            pause_scale_in: false,
            pause_scale_out: false,
            force_activation: false,
            behavior: Behavior::from_k8s(s.behavior.as_ref(), "spec.behavior")?,
            metrics,
            scalers: Vec::new(),
        })
    }
}

fn non_negative(value: Option<i32>, default: i32, field: &str) -> Result<u32, SpecError> {
    let v = value.unwrap_or(default);
    u32::try_from(v).map_err(|_| SpecError::invalid(field, v, "must not be negative"))
}

/// A ScaledObject or HPA the autoscaler cannot act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field has a value that is not allowed.
    #[error("{field}: {message} (got {value})")]
    Invalid {
        /// JSON path of the field (`spec.maxReplicaCount`).
        field: String,
        /// The value as written.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A field selects a feature Tidal does not implement.
    #[error("{field}: not supported: {message}")]
    Unsupported {
        /// JSON path of the field.
        field: String,
        /// Why.
        message: String,
    },
    /// A trigger's metadata is invalid.
    #[error("spec.triggers[{index}]: {source}")]
    Trigger {
        /// Position in `spec.triggers`.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: ScalerError,
    },
}

impl SpecError {
    fn invalid(field: impl Into<String>, value: impl ToString, message: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            value: value.to_string(),
            message: message.into(),
        }
    }
}
