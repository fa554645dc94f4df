//! The controller: on every change to an InferenceService (or what it owns), render it with the
//! core's `render` and make the stored objects match; keep its status true.
//!
//! Owned objects no longer desired are deleted (which also removes a stale HPA when the class
//! changes from `hpa` to `keda`, something KServe leaves behind). A Deployment's `replicas` is
//! left to the autoscaler unless the class is `none`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tidal_api::status::{Condition, InferenceServiceStatus, condition};
use tidal_api::{InferenceService, ServingRuntime};
use tidal_render::{Autoscaler, Config, Desired};
use tidal_store::resource::{
    CLUSTER_SERVING_RUNTIME, DEPLOYMENT, HPA, INFERENCE_SERVICE, SCALED_OBJECT, SERVICE,
    SERVING_RUNTIME,
};
use tidal_store::{LabelSelector, Resource, Store, StoreError, UpdateScope};

/// Kinds the controller creates for an InferenceService.
const OWNED: [Resource; 4] = [SERVICE, DEPLOYMENT, SCALED_OBJECT, HPA];

/// The controller.
pub struct Controller {
    store: Arc<Store>,
    config: Config,
}

impl Controller {
    /// A controller over `store` rendering with `config`.
    pub fn new(store: Arc<Store>, config: Config) -> Self {
        Controller { store, config }
    }

    /// Reconciles on every relevant change, and everything every few seconds, until `stop`.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut events = self.store.subscribe();
        self.reconcile_all();
        let mut resync = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = resync.tick() => self.reconcile_all(),
                e = events.recv() => match e {
                    Ok(e) if e.resource == INFERENCE_SERVICE => self.reconcile_logged(e.namespace().unwrap_or("default"), e.name()),
                    Ok(e) if OWNED.contains(&e.resource) => {
                        if let Some(owner) = owner_isvc(&e.object) {
                            self.reconcile_logged(e.namespace().unwrap_or("default"), &owner);
                        }
                    }
                    Ok(e) if e.resource == SERVING_RUNTIME || e.resource == CLUSTER_SERVING_RUNTIME => self.reconcile_all(),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.reconcile_all(),
                    Err(_) => return,
                },
            }
        }
    }

    fn reconcile_all(&self) {
        let Ok((items, _)) = self
            .store
            .list(INFERENCE_SERVICE, None, &LabelSelector::default())
        else {
            return;
        };
        for i in items {
            let (ns, name) = tidal_store::namespace_and_name(&i);
            self.reconcile_logged(ns, name);
        }
    }

    fn reconcile_logged(&self, ns: &str, name: &str) {
        if let Err(e) = self.reconcile(ns, name) {
            tracing::warn!(namespace = ns, name, error = %e, "Reconcile failed");
        }
    }

    /// Makes the objects of one InferenceService match its rendering.
    pub fn reconcile(&self, ns: &str, name: &str) -> Result<(), StoreError> {
        let raw = match self.store.get(INFERENCE_SERVICE, Some(ns), name) {
            Ok(v) => v,
            Err(StoreError::NotFound { .. }) => return Ok(()), // Deletion cascades in the store.
            Err(e) => return Err(e),
        };
        let isvc: InferenceService =
            serde_json::from_value(raw.clone()).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let uid = raw
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let runtimes = self.runtimes(ns);
        let desired = match tidal_render::render(&isvc, &runtimes, &self.config) {
            Ok(d) => d,
            Err(e) => {
                crate::events::record(
                    &self.store,
                    &raw,
                    "Warning",
                    "InternalError",
                    &e.to_string(),
                    "v1beta1Controllers",
                );
                let mut status = current_status(&raw);
                set(
                    &mut status,
                    condition::PREDICTOR_READY,
                    "False",
                    Some(e.reason()),
                    Some(&e.to_string()),
                );
                set(
                    &mut status,
                    condition::READY,
                    "False",
                    Some(e.reason()),
                    Some(&e.to_string()),
                );
                status.model_status = Some(json!({
                    "transitionStatus": "InvalidSpec",
                    "states": {"targetModelState": "FailedToLoad"},
                    "lastFailureInfo": {"reason": e.reason(), "message": e.to_string()},
                }));
                return self.write_status(ns, name, &raw, status);
            }
        };

        let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
        for c in &desired.components {
            let deployment = serde_json::to_value(&c.deployment).expect("serializes");
            let keep_replicas = c.class != tidal_api::annotations::AutoscalerClass::None;
            self.apply(
                SERVICE,
                ns,
                serde_json::to_value(&c.service).expect("serializes"),
                false,
            )?;
            self.apply(DEPLOYMENT, ns, deployment, keep_replicas)?;
            wanted.insert((SERVICE.kind.into(), name_of(&c.service.metadata)));
            wanted.insert((DEPLOYMENT.kind.into(), name_of(&c.deployment.metadata)));
            match &c.autoscaler {
                Some(Autoscaler::ScaledObject(so)) => {
                    self.apply(
                        SCALED_OBJECT,
                        ns,
                        serde_json::to_value(so).expect("serializes"),
                        false,
                    )?;
                    self.scaled_object_status(ns, so)?;
                    wanted.insert((SCALED_OBJECT.kind.into(), name_of(&so.metadata)));
                }
                Some(Autoscaler::Hpa(hpa)) => {
                    self.apply(
                        HPA,
                        ns,
                        serde_json::to_value(hpa).expect("serializes"),
                        false,
                    )?;
                    wanted.insert((HPA.kind.into(), name_of(&hpa.metadata)));
                }
                None => {}
            }
        }
        // Owned objects that are no longer desired (a class switch, a removed component, stop).
        for r in OWNED {
            let (items, _) = self.store.list(r, Some(ns), &LabelSelector::default())?;
            for o in items {
                let owned = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|x| x.get("uid").and_then(Value::as_str) == Some(uid.as_str()))
                    });
                let oname = o
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if owned && !wanted.contains(&(r.kind.to_string(), oname.clone())) {
                    tracing::info!(
                        kind = r.kind,
                        name = oname,
                        "Deleting object no longer desired"
                    );
                    let _ = self.store.delete(r, Some(ns), &oname);
                }
            }
        }
        let status = self.status(ns, &raw, &desired)?;
        self.write_status(ns, name, &raw, status)
    }

    /// The ScaledObject status KEDA writes when it takes a ScaledObject over: the target's kind,
    /// Ready, and for cpu/memory-only triggers (which KEDA hands to the HPA and never polls)
    /// Active while the target has replicas. The autoscaler refines Active and Fallback for the
    /// triggers it polls.
    fn scaled_object_status(
        &self,
        ns: &str,
        so: &tidal_api::ScaledObject,
    ) -> Result<(), StoreError> {
        let name = name_of(&so.metadata);
        let target = &so.spec.scale_target_ref.name;
        let ready_replicas = self
            .store
            .get(DEPLOYMENT, Some(ns), target)
            .ok()
            .and_then(|d| d.pointer("/status/readyReplicas").and_then(Value::as_i64))
            .unwrap_or(0);
        let resource_only = so
            .spec
            .triggers
            .iter()
            .all(|t| t.type_ == "cpu" || t.type_ == "memory");
        let paused = so.metadata.annotations.as_ref().is_some_and(|a| {
            a.contains_key(tidal_api::keda::PAUSED_ANNOTATION)
                || a.contains_key(tidal_api::keda::PAUSED_REPLICAS_ANNOTATION)
        });
        self.store.modify(SCALED_OBJECT, Some(ns), &name, None, UpdateScope::Status, |current| {
            let mut next = current.clone();
            let old = current.get("status").cloned().unwrap_or(json!({}));
            // Once the autoscaler has written conditions, they are its to keep.
            if old.get("currentReplicas").is_some() {
                return Ok::<_, StoreError>(next);
            }
            let keep = |type_: &str| {
                old.get("conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
            };
            let active = if resource_only {
                if ready_replicas > 0 {
                    json!({"type": "Active", "status": "True", "reason": "ScalerActive", "message": "Scaling is performed because triggers are active"})
                } else {
                    json!({"type": "Active", "status": "False", "reason": "ScalerNotActive", "message": "Scaling is not performed because triggers are not active"})
                }
            } else {
                keep("Active").unwrap_or(json!({"type": "Active", "status": "Unknown"}))
            };
            let fallback = keep("Fallback").unwrap_or(if resource_only {
                json!({"type": "Fallback", "status": "Unknown"})
            } else {
                json!({"type": "Fallback", "status": "False", "reason": "NoFallbackFound", "message": "No fallbacks are active on this scaled object"})
            });
            let paused_c = if paused {
                json!({"type": "Paused", "status": "True", "reason": "ScaledObjectPaused", "message": "ScaledObject is paused"})
            } else {
                json!({"type": "Paused", "status": "Unknown"})
            };
            let mut status = old.clone();
            status["scaleTargetKind"] = json!("apps/v1.Deployment");
            status["scaleTargetGVKR"] = json!({"group": "apps", "kind": "Deployment", "resource": "deployments", "version": "v1"});
            status["conditions"] = json!([
                {"type": "Ready", "status": "True", "reason": "ScaledObjectReady", "message": "ScaledObject is defined correctly and is ready for scaling"},
                active,
                fallback,
                paused_c,
            ]);
            if resource_only {
                status["resourceMetricNames"] = json!(so.spec.triggers.iter().map(|t| t.type_.clone()).collect::<Vec<_>>());
            } else {
                status["externalMetricNames"] = json!(so.spec.triggers.iter().enumerate().filter(|(_, t)| t.type_ != "cpu" && t.type_ != "memory").map(|(i, t)| format!("s{i}-{}", t.type_)).collect::<Vec<_>>());
            }
            status["hpaName"] = json!(format!("keda-hpa-{name}"));
            next["status"] = status;
            Ok::<_, StoreError>(next)
        })?;
        Ok(())
    }

    fn runtimes(&self, ns: &str) -> Vec<ServingRuntime> {
        let mut out: Vec<ServingRuntime> = Vec::new();
        for r in [SERVING_RUNTIME, CLUSTER_SERVING_RUNTIME] {
            let scope = if r.namespaced { Some(ns) } else { None };
            if let Ok((items, _)) = self.store.list(r, scope, &LabelSelector::default()) {
                out.extend(
                    items
                        .into_iter()
                        .filter_map(|v| serde_json::from_value(v).ok()),
                );
            }
        }
        out.extend(tidal_render::builtin_runtimes().iter().cloned());
        out
    }

    /// Creates or updates one owned object; `keep_replicas` leaves an existing Deployment's
    /// `spec.replicas` to the autoscaler.
    fn apply(
        &self,
        r: Resource,
        ns: &str,
        mut desired: Value,
        keep_replicas: bool,
    ) -> Result<(), StoreError> {
        let name = desired
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match self.store.get(r, Some(ns), &name) {
            Err(StoreError::NotFound { .. }) => {
                if r == DEPLOYMENT && desired.pointer("/spec/replicas").is_none() {
                    // A new Deployment starts at one replica (Kubernetes' default) until its
                    // autoscaler says otherwise.
                    desired["spec"]["replicas"] = json!(1);
                }
                let created = self.store.create(r, Some(ns), desired)?;
                if r == SCALED_OBJECT {
                    for (reason, message) in [
                        ("KEDAScalersStarted", "Started scalers watch"),
                        ("ScaledObjectReady", "ScaledObject is ready for scaling"),
                    ] {
                        crate::events::record(
                            &self.store,
                            &created,
                            "Normal",
                            reason,
                            message,
                            "keda-operator",
                        );
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
            Ok(_) => {
                self.store
                    .modify(r, Some(ns), &name, None, UpdateScope::Main, |current| {
                        let mut next = current.clone();
                        if keep_replicas && let Some(replicas) = current.pointer("/spec/replicas") {
                            desired["spec"]["replicas"] = replicas.clone();
                        }
                        next["spec"] = desired["spec"].clone();
                        for key in ["labels", "annotations", "ownerReferences"] {
                            next["metadata"][key] = desired["metadata"][key].clone();
                        }
                        Ok::<_, StoreError>(next)
                    })?;
                Ok(())
            }
        }
    }

    /// Status as KServe's raw mode sets it: PredictorReady from the Deployment's availability,
    /// IngressReady once the predictor is ready (the gateway routes by host), Ready = both.
    fn status(
        &self,
        ns: &str,
        raw: &Value,
        desired: &Desired,
    ) -> Result<InferenceServiceStatus, StoreError> {
        let mut status = current_status(raw);
        status.url = Some(desired.url.clone());
        status.address = Some(desired.address.clone());
        status.deployment_mode = Some("Standard".into());
        match &desired.runtime {
            Some((name, true)) => {
                status.cluster_serving_runtime_name = Some(name.clone());
                status.serving_runtime_name = None;
            }
            Some((name, false)) => {
                status.serving_runtime_name = Some(name.clone());
                status.cluster_serving_runtime_name = None;
            }
            None => {}
        }
        if desired.stopped {
            set(
                &mut status,
                condition::PREDICTOR_READY,
                "False",
                Some("Stopped"),
                None,
            );
            set(
                &mut status,
                condition::INGRESS_READY,
                "False",
                Some("Stopped"),
                None,
            );
            set(
                &mut status,
                condition::READY,
                "False",
                Some("Stopped"),
                None,
            );
            set_info(&mut status, condition::STOPPED, "True");
            return Ok(status);
        }
        set_info(&mut status, condition::STOPPED, "False");
        let mut all_ready = true;
        for c in &desired.components {
            let dname = name_of(&c.deployment.metadata);
            let d = self.store.get(DEPLOYMENT, Some(ns), &dname).ok();
            let ready = d
                .as_ref()
                .and_then(|d| d.pointer("/status/readyReplicas"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let (state, reason, message) = if ready > 0 {
                (
                    "True",
                    Some("MinimumReplicasAvailable"),
                    Some("Deployment has minimum availability.".to_string()),
                )
            } else {
                (
                    "False",
                    Some("MinimumReplicasUnavailable"),
                    Some("Deployment does not have minimum availability.".to_string()),
                )
            };
            all_ready &= ready > 0;
            let cond = match c.kind {
                tidal_api::inference_service::ComponentKind::Predictor => {
                    condition::PREDICTOR_READY
                }
                tidal_api::inference_service::ComponentKind::Transformer => {
                    condition::TRANSFORMER_READY
                }
                tidal_api::inference_service::ComponentKind::Explainer => {
                    condition::EXPLAINER_READY
                }
            };
            set(&mut status, cond, state, reason, message.as_deref());
            let component = status
                .components
                .entry(c.kind.as_str().to_string())
                .or_default();
            component.url = if ready > 0 {
                desired
                    .component_status
                    .get(c.kind.as_str())
                    .and_then(|s| s.url.clone())
            } else {
                None
            };
        }
        let ingress = if all_ready { "True" } else { "False" };
        set(&mut status, condition::INGRESS_READY, ingress, None, None);
        set(
            &mut status,
            condition::READY,
            ingress,
            if all_ready {
                None
            } else {
                Some("PredictorNotReady")
            },
            None,
        );
        status.observed_generation = raw.pointer("/metadata/generation").and_then(Value::as_i64);
        Ok(status)
    }

    fn write_status(
        &self,
        ns: &str,
        _name: &str,
        raw: &Value,
        status: InferenceServiceStatus,
    ) -> Result<(), StoreError> {
        let status = serde_json::to_value(status).expect("serializes");
        if raw.get("status") == Some(&status) {
            return Ok(());
        }
        let mut next = raw.clone();
        next["status"] = status;
        match self
            .store
            .update(INFERENCE_SERVICE, Some(ns), next, UpdateScope::Status)
        {
            // Someone changed the object meanwhile; the change's event brings us back.
            Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

fn current_status(raw: &Value) -> InferenceServiceStatus {
    raw.get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default()
}

fn set(
    status: &mut InferenceServiceStatus,
    type_: &str,
    state: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    status.set_condition(Condition {
        type_: type_.into(),
        status: state.into(),
        severity: None,
        last_transition_time: Some(tidal_store::time::now()),
        reason: reason.map(Into::into),
        message: message.map(Into::into),
    });
}

fn set_info(status: &mut InferenceServiceStatus, type_: &str, state: &str) {
    status.set_condition(Condition {
        type_: type_.into(),
        status: state.into(),
        severity: Some("Info".into()),
        last_transition_time: Some(tidal_store::time::now()),
        reason: None,
        message: None,
    });
}

fn name_of(meta: &k8s_openapi_meta::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// The InferenceService that owns an object, if any.
fn owner_isvc(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("kind").and_then(Value::as_str) == Some("InferenceService"))
        .and_then(|o| o.get("name").and_then(Value::as_str))
        .map(str::to_string)
}

mod k8s_openapi_meta {
    pub use tidal_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
}
