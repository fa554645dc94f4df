//! The autoscaler's poll loop: for each ScaledObject, measure its triggers, call the pure
//! [`tidal_autoscaler::decide`], scale the Deployment, and write status and Events.
//!
//! Resource triggers are measured from the replica processes themselves: CPU as the change in
//! `utime + stime` from `/proc/{pid}/stat` over the last [`CPU_WINDOW`] (USER_HZ = 100), memory as the
//! resident set from `/proc/{pid}/statm`, each against the container's request (CPU Utilization
//! is usage ÷ `requests.cpu`, as the HPA computes it). External triggers (prometheus, graphite)
//! are queried by the metrics pipeline; until a trigger can be read it counts as failing, which
//! blocks scale-down and, past `fallback.failureThreshold`, uses the fallback.
//!
//! Cadence: upstream, KEDA's `pollingInterval` (default 30 s) is how often KEDA queries a
//! trigger's source, while cpu and memory go through the HPA, which reads metrics-server every
//! sync period (15 s). Embedded mode keeps that split at local speed: ScaledObjects with an
//! external trigger are polled every second unless `pollingInterval` is set, and objects with
//! only cpu/memory are decided every [`RESOURCE_SYNC_PERIOD`] (the HPA sync period's analogue),
//! so a load step is acted on within about half a second. Every other knob keeps its KEDA/HPA
//! meaning; stabilization windows still govern how fast replicas go away.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tidal_api::ScaledObject;
use tidal_autoscaler::{
    MetricObservation, MetricSource, Observations, PodSample, ResourceName, Spec, State, Timestamp,
    decide,
};
use tidal_store::resource::{DEPLOYMENT, HPA, POD, SCALED_OBJECT};
use tidal_store::{LabelSelector, Store, StoreError, UpdateScope};

/// Linux's USER_HZ: clock ticks per second in `/proc/{pid}/stat`.
const TICKS_PER_SECOND: f64 = 100.0;
/// The embedded default poll interval for ScaledObjects with external triggers.
pub const EMBEDDED_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often objects with only resource (cpu/memory) metrics are decided.
pub const RESOURCE_SYNC_PERIOD: Duration = Duration::from_millis(250);
/// How often the loop wakes to see what is due.
const TICK: Duration = Duration::from_millis(125);
/// CPU usage is the rate over about this much recent time: long enough to span a few clock
/// ticks per core, short enough that a load step shows within one sync period or two.
pub const CPU_WINDOW: Duration = Duration::from_millis(500);

struct Tracked {
    state: State,
    last_poll: Option<Instant>,
}

/// The poll loop.
pub struct Autoscaler {
    store: Arc<Store>,
    tracked: HashMap<String, Tracked>,
    /// Recent `(ticks, when)` samples per replica process, oldest first.
    cpu: HashMap<u32, VecDeque<(u64, Instant)>>,
    epoch: Instant,
}

impl Autoscaler {
    /// A loop over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Autoscaler {
            store,
            tracked: HashMap::new(),
            cpu: HashMap::new(),
            epoch: Instant::now(),
        }
    }

    /// Polls until `stop`.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => self.poll_once(),
            }
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.epoch.elapsed())
    }

    /// Polls every ScaledObject and HPA that is due.
    pub fn poll_once(&mut self) {
        let mut seen = Vec::new();
        for r in [SCALED_OBJECT, HPA] {
            let Ok((objects, _)) = self.store.list(r, None, &LabelSelector::default()) else {
                continue;
            };
            for raw in objects {
                let (ns, name) = tidal_store::namespace_and_name(&raw);
                let key = format!("{}/{ns}/{name}", r.kind);
                seen.push(key.clone());
                let result = if r == HPA {
                    self.poll_hpa(&key, ns, name, &raw)
                } else {
                    self.poll(&key, ns, name, &raw)
                };
                if let Err(e) = result {
                    tracing::debug!(object = key, error = %e, "Autoscaler poll failed");
                }
            }
        }
        self.tracked.retain(|k, _| seen.contains(k));
    }

    fn poll(&mut self, key: &str, ns: &str, name: &str, raw: &Value) -> Result<(), StoreError> {
        let so: ScaledObject =
            serde_json::from_value(raw.clone()).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let spec = match Spec::from_scaled_object(&so) {
            Ok(s) => s,
            Err(e) => {
                self.set_ready_false(ns, name, &e.to_string())?;
                return Ok(());
            }
        };
        let resource_only = spec
            .metrics
            .iter()
            .all(|m| matches!(m.source, MetricSource::Resource { .. }));
        let interval = if resource_only {
            RESOURCE_SYNC_PERIOD
        } else if so.spec.polling_interval.is_some() {
            spec.polling_interval
        } else {
            EMBEDDED_POLL_INTERVAL
        };
        let target = so.spec.scale_target_ref.name.clone();
        let Some((decision, current)) =
            self.decide_and_scale(key, ns, raw, &spec, &target, interval, "keda-operator")?
        else {
            return Ok(());
        };

        let metrics: Vec<Value> = decision
            .metrics
            .iter()
            .map(|m| {
                let mut v = json!({"name": m.name});
                if let Some(c) = &m.current {
                    if let Some(u) = c.average_utilization {
                        v["currentAverageUtilization"] = json!(u);
                    }
                    if let Some(a) = c.average_value {
                        v["currentAverageValue"] = json!(format!("{a}m"));
                    }
                    if let Some(x) = c.value {
                        v["currentValue"] = json!(format!("{x}m"));
                    }
                }
                if let Some(e) = &m.error {
                    v["error"] = json!(e);
                }
                v
            })
            .collect();
        let resource_only = spec.metrics.iter().all(|m| m.is_resource());
        let (active, reason, message) = if decision.active {
            (
                "True",
                "ScalerActive",
                "Scaling is performed because triggers are active",
            )
        } else {
            (
                "False",
                "ScalerNotActive",
                "Scaling is not performed because triggers are not active",
            )
        };
        let fallback = if resource_only {
            json!({"type": "Fallback", "status": "Unknown"})
        } else if decision.fallback_active {
            json!({"type": "Fallback", "status": "True", "reason": "FallbackExists", "message": "At least one trigger is falling back on this scaled object"})
        } else {
            json!({"type": "Fallback", "status": "False", "reason": "NoFallbackFound", "message": "No fallbacks are active on this scaled object"})
        };
        let paused = if decision.paused {
            json!({"type": "Paused", "status": "True", "reason": "ScaledObjectPaused", "message": "ScaledObject is paused"})
        } else {
            json!({"type": "Paused", "status": "Unknown"})
        };
        let last_active = decision.state.last_active.map(|t| {
            let ago = self.now().saturating_since(t);
            tidal_store::time::rfc3339(SystemTime::now() - ago)
        });
        let desired = decision.desired_replicas;
        let condition = decision.condition.as_str();
        let reason_text = decision.reason.clone();
        self.store.modify(SCALED_OBJECT, Some(ns), name, None, UpdateScope::Status, |cur| {
            let mut next = cur.clone();
            let mut status = cur.get("status").cloned().unwrap_or(json!({}));
            status["scaleTargetKind"] = json!("apps/v1.Deployment");
            status["conditions"] = json!([
                {"type": "Ready", "status": "True", "reason": "ScaledObjectReady", "message": "ScaledObject is defined correctly and is ready for scaling"},
                {"type": "Active", "status": active, "reason": reason, "message": message},
                fallback,
                paused,
            ]);
            if let Some(t) = &last_active {
                status["lastActiveTime"] = json!(t);
            }
            // An HPA-like view of the last decision.
            status["currentReplicas"] = json!(current);
            status["desiredReplicas"] = json!(desired);
            status["currentMetrics"] = json!(metrics);
            status["lastScaleCondition"] = json!({"type": condition, "message": reason_text});
            next["status"] = status;
            Ok::<_, StoreError>(next)
        })?;
        Ok(())
    }

    /// One poll of a plain HPA (autoscalerClass `hpa`): Resource metrics only, never to zero.
    fn poll_hpa(&mut self, key: &str, ns: &str, name: &str, raw: &Value) -> Result<(), StoreError> {
        let hpa: tidal_api::k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler =
            serde_json::from_value(raw.clone()).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let spec = match Spec::from_hpa(&hpa) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(hpa = key, error = %e, "Cannot autoscale");
                return Ok(());
            }
        };
        let target = hpa
            .spec
            .as_ref()
            .map(|s| s.scale_target_ref.name.clone())
            .unwrap_or_default();
        let Some((decision, current)) = self.decide_and_scale(
            key,
            ns,
            raw,
            &spec,
            &target,
            RESOURCE_SYNC_PERIOD,
            "horizontal-pod-autoscaler",
        )?
        else {
            return Ok(());
        };
        let metrics: Vec<Value> = decision
            .metrics
            .iter()
            .filter_map(|m| {
                let c = m.current.as_ref()?;
                let resource = m.name.split(':').next().unwrap_or(&m.name);
                let mut current = json!({});
                if let Some(u) = c.average_utilization {
                    current["averageUtilization"] = json!(u);
                }
                if let Some(a) = c.average_value {
                    current["averageValue"] = json!(format!("{a}m"));
                }
                Some(
                    json!({"type": "Resource", "resource": {"name": resource, "current": current}}),
                )
            })
            .collect();
        let (desired, condition, reason) = (
            decision.desired_replicas,
            decision.condition.as_str(),
            decision.reason.clone(),
        );
        self.store.modify(HPA, Some(ns), name, None, UpdateScope::Status, |cur| {
            let mut next = cur.clone();
            next["status"] = json!({
                "currentReplicas": current,
                "desiredReplicas": desired,
                "currentMetrics": metrics,
                "conditions": [
                    {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
                    {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"},
                    {"type": "ScalingLimited", "status": if condition == "TooManyReplicas" || condition == "TooFewReplicas" { "True" } else { "False" }, "reason": condition, "message": reason},
                ],
            });
            Ok::<_, StoreError>(next)
        })?;
        Ok(())
    }

    /// When `key`'s poll is due: measure the target's replicas, decide, scale the Deployment and
    /// record the rescale Event on `raw` (the ScaledObject or HPA). Returns the decision and the
    /// replica count it started from; `None` when not due or the target does not exist yet.
    #[allow(clippy::too_many_arguments)]
    fn decide_and_scale(
        &mut self,
        key: &str,
        ns: &str,
        raw: &Value,
        spec: &Spec,
        target: &str,
        interval: Duration,
        component: &str,
    ) -> Result<Option<(tidal_autoscaler::Decision, u32)>, StoreError> {
        let deployment = match self.store.get(DEPLOYMENT, Some(ns), target) {
            Ok(d) => d,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let current = deployment
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1) as u32;
        let now = self.now();
        let tracked = self
            .tracked
            .entry(key.to_string())
            .or_insert_with(|| Tracked {
                state: State::new(current, now),
                last_poll: None,
            });
        // Half a tick of slack, so timer jitter cannot push a poll to the tick after.
        if tracked
            .last_poll
            .is_some_and(|t| t.elapsed() + TICK / 2 < interval)
        {
            return Ok(None);
        }
        tracked.last_poll = Some(Instant::now());
        // Someone else (a user, `kubectl scale`) may have changed the count.
        tracked.state.current_replicas = current;
        let observations = self.observe(ns, &deployment, spec);
        let tracked = self.tracked.get_mut(key).expect("tracked above");
        let decision = decide(spec, &observations, &tracked.state, now);
        tracked.state = decision.state.clone();
        if decision.is_rescale() {
            let desired = decision.desired_replicas;
            self.store.modify(
                DEPLOYMENT,
                Some(ns),
                target,
                None,
                UpdateScope::Main,
                |cur| {
                    let mut next = cur.clone();
                    next["spec"]["replicas"] = json!(desired);
                    Ok::<_, StoreError>(next)
                },
            )?;
            tracing::info!(
                object = key,
                from = decision.previous_replicas,
                to = desired,
                reason = decision.reason,
                "Scaled"
            );
            crate::events::record(
                &self.store,
                raw,
                "Normal",
                "SuccessfulRescale",
                &decision.reason,
                component,
            );
        }
        Ok(Some((decision, current)))
    }

    fn set_ready_false(&self, ns: &str, name: &str, message: &str) -> Result<(), StoreError> {
        self.store.modify(SCALED_OBJECT, Some(ns), name, None, UpdateScope::Status, |cur| {
            let mut next = cur.clone();
            next["status"]["conditions"] = json!([
                {"type": "Ready", "status": "False", "reason": "ScaledObjectCheckFailed", "message": message},
                {"type": "Active", "status": "Unknown"},
                {"type": "Fallback", "status": "Unknown"},
                {"type": "Paused", "status": "Unknown"},
            ]);
            Ok::<_, StoreError>(next)
        })?;
        Ok(())
    }

    /// Measures every metric of `spec` for the Deployment's replicas.
    fn observe(&mut self, ns: &str, deployment: &Value, spec: &Spec) -> Observations {
        let labels: std::collections::BTreeMap<String, String> = deployment
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let selector = LabelSelector::from_labels(&labels);
        let pods: Vec<Value> = self
            .store
            .list(POD, Some(ns), &selector)
            .map(|(p, _)| p)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                p.pointer("/status/containerStatuses/0/state/terminated")
                    .is_none()
            })
            .collect();
        let ready = |p: &Value| {
            p.pointer("/status/conditions/0/status")
                .and_then(Value::as_str)
                == Some("True")
        };
        let total = pods.len() as u32;
        let ready_count = pods.iter().filter(|p| ready(p)).count() as u32;
        let mut obs = Observations::new().pods(total, ready_count);
        for m in &spec.metrics {
            match &m.source {
                MetricSource::Resource { resource, .. } => {
                    let samples = pods
                        .iter()
                        .map(|p| {
                            let pid = p
                                .pointer("/metadata/annotations/tidal.dev~1pid")
                                .and_then(Value::as_str)
                                .and_then(|s| s.parse::<u32>().ok());
                            let request = container_request(p, *resource);
                            let usage = pid.and_then(|pid| match resource {
                                ResourceName::Cpu => self.cpu_millicores(pid),
                                ResourceName::Memory => {
                                    rss_bytes(pid).map(|b| b.saturating_mul(1000))
                                }
                            });
                            PodSample {
                                ready: ready(p),
                                usage,
                                request,
                            }
                        })
                        .collect();
                    obs = obs.resource(&m.name, samples);
                }
                MetricSource::External => {
                    obs.metrics.insert(
                        m.name.clone(),
                        MetricObservation::Failed("external metrics are read by the metrics pipeline, which is not running".into()),
                    );
                }
            }
        }
        obs
    }

    /// CPU used by `pid` over about the last [`CPU_WINDOW`], in millicores (`None` on the
    /// first sample).
    fn cpu_millicores(&mut self, pid: u32) -> Option<i64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let now = Instant::now();
        let samples = self.cpu.entry(pid).or_default();
        samples.push_back((ticks, now));
        // Keep the newest sample at least a window old as the baseline, and nothing older.
        while samples
            .get(1)
            .is_some_and(|&(_, at)| now.duration_since(at) >= CPU_WINDOW)
        {
            samples.pop_front();
        }
        let &(t0, i0) = samples.front()?;
        let secs = now.duration_since(i0).as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        Some((((ticks.saturating_sub(t0)) as f64 / TICKS_PER_SECOND) / secs * 1000.0) as i64)
    }
}

/// The resident set of `pid`, in bytes.
fn rss_bytes(pid: u32) -> Option<i64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The pod's request for a resource in milli-units (1 CPU when a container gives none, the
/// runtimes' default).
fn container_request(pod: &Value, resource: ResourceName) -> i64 {
    let key = match resource {
        ResourceName::Cpu => "cpu",
        ResourceName::Memory => "memory",
    };
    let q = pod
        .pointer(&format!("/spec/containers/0/resources/requests/{key}"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<tidal_api::quantity::Quantity>().ok());
    match (q, resource) {
        (Some(q), _) => q.millis() as i64,
        (None, ResourceName::Cpu) => 1000,
        (None, ResourceName::Memory) => 0,
    }
}
