//! One component (predictor, transformer or explainer) resolved into the metadata and pod that
//! all of its objects share.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DeploymentStrategy;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Map, Value, json};
use tidal_api::annotations::{self, AutoscalerClass};
use tidal_api::inference_service::{ComponentKind, ComponentSpec, ContainerSpec};
use tidal_api::validation::component_object_name;
use tidal_api::{InferenceService, ServingRuntime};

use crate::config::Config;
use crate::container::{
    self, KSERVE_CONTAINER, MODEL_MOUNT_PATH, PROVISION_VOLUME, PVC_VOLUME, TemplateData,
};
use crate::{RenderError, runtime};

/// A component with everything its objects need.
#[derive(Debug, Clone)]
pub struct Component {
    /// Shared metadata: name, namespace, labels (with `app`), annotations, owner reference.
    pub meta: ObjectMeta,
    /// `app: isvc.{name}`: the selector of its pods.
    pub selector: BTreeMap<String, String>,
    /// The autoscaler class in force (component annotations may override the InferenceService's).
    pub class: AutoscalerClass,
    /// The pod template's spec.
    pub pod: PodSpec,
    /// Lowest replica count (default 1).
    pub min_replicas: i32,
    /// Highest replica count as given (0 when unset).
    pub max_replicas: i32,
    /// The runtime used, and whether it is cluster-scoped.
    pub runtime: Option<(String, bool)>,
    /// The Deployment strategy, when the user gave one.
    pub deployment_strategy: Option<DeploymentStrategy>,
}

/// Resolves one component.
pub fn build(
    isvc: &InferenceService,
    kind: ComponentKind,
    spec: &ComponentSpec,
    runtimes: &[ServingRuntime],
    config: &Config,
) -> Result<Component, RenderError> {
    let isvc_name = isvc.metadata.name.as_deref().unwrap_or_default();
    let namespace = isvc
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(tidal_api::defaults::DEFAULT_NAMESPACE);
    let isvc_labels = isvc.metadata.labels.clone().unwrap_or_default();
    let isvc_annotations = isvc.metadata.annotations.clone().unwrap_or_default();
    let name = component_object_name(isvc_name, kind, spec);
    let template = TemplateData {
        name: isvc_name,
        namespace,
        labels: &isvc_labels,
        annotations: &isvc_annotations,
    };

    // The server container, the runtime it came from, and where the model is.
    let (server, runtime, storage_uri, extra_containers) = match (&spec.model, kind) {
        (Some(model), ComponentKind::Predictor) => {
            let rt = runtime::select(model, namespace, runtimes)?;
            let base = rt
                .spec
                .containers
                .iter()
                .find(|c| c.name.as_deref() == Some(KSERVE_CONTAINER))
                .ok_or(RenderError::NoKserveContainer)?;
            let merged = template.expand_container(&container::merge(base, &model.container()))?;
            let mut server = merged;
            let server_type = rt
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("serving.kserve.io/server-type"))
                .map_or(rt.name(), String::as_str);
            if let Some(image) = &server.image {
                server.image = Some(container::image_with_tag(
                    image,
                    model.runtime_version.as_deref(),
                    server_type,
                    container::has_gpu(&server),
                ));
            }
            let others: Vec<(ContainerSpec, String)> = rt
                .spec
                .containers
                .iter()
                .filter(|c| c.name.as_deref() != Some(KSERVE_CONTAINER))
                .map(|c| (c.clone(), c.name.clone().unwrap_or_default()))
                .chain(
                    spec.containers
                        .iter()
                        .map(|c| (c.clone(), c.name.clone().unwrap_or_default())),
                )
                .collect();
            (server, Some(rt), model.storage_uri.clone(), others)
        }
        _ => {
            let first = spec
                .containers
                .first()
                .ok_or(RenderError::NoImplementation(kind.as_str()))?;
            let mut server = first.clone();
            container::default_resources(&mut server, config);
            let uri = server
                .env
                .iter()
                .flatten()
                .find(|e| e.name == "STORAGE_URI")
                .and_then(|e| e.value.clone());
            let others = spec.containers[1..]
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    container::default_resources(&mut c, config);
                    let n = c.name.clone().unwrap_or_default();
                    (c, n)
                })
                .collect();
            (server, None, uri, others)
        }
    };

    // Metadata shared by every object of the component.
    let mut labels: BTreeMap<String, String> =
        runtime.map(|r| r.spec.labels.clone()).unwrap_or_default();
    labels.extend(isvc_labels.clone());
    labels.extend(spec.labels.clone());
    labels.insert(annotations::LABEL_ISVC.into(), isvc_name.into());
    labels.insert(annotations::LABEL_COMPONENT.into(), kind.as_str().into());
    let app = format!("isvc.{name}");
    labels.insert(annotations::LABEL_APP.into(), app.clone());

    let allowed = |k: &String| !annotations::DISALLOWED_ON_CHILDREN.contains(&k.as_str());
    let mut meta_annotations: BTreeMap<String, String> = runtime
        .map(|r| r.spec.annotations.clone())
        .unwrap_or_default();
    meta_annotations.extend(
        isvc_annotations
            .iter()
            .filter(|(k, _)| allowed(k))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    if let Some(uri) = &storage_uri {
        meta_annotations.insert(annotations::STORAGE_SOURCE_URI.into(), uri.clone());
    }
    meta_annotations.extend(
        spec.annotations
            .iter()
            .filter(|(k, _)| allowed(k))
            .map(|(k, v)| (k.clone(), v.clone())),
    );

    let class =
        AutoscalerClass::from_annotations(&meta_annotations).unwrap_or(AutoscalerClass::Hpa);

    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.into()),
        labels: Some(labels),
        annotations: (!meta_annotations.is_empty()).then_some(meta_annotations.clone()),
        owner_references: Some(vec![OwnerReference {
            api_version: tidal_api::inference_service::API_VERSION.into(),
            kind: tidal_api::inference_service::KIND.into(),
            name: isvc_name.into(),
            uid: isvc.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..Default::default()
    };

    let pod = pod_spec(
        isvc_name,
        spec,
        runtime,
        &server,
        &extra_containers,
        storage_uri.as_deref(),
        &meta_annotations,
        config,
    )
    .map_err(|(field, message)| RenderError::InvalidField {
        field: format!("spec.{}.{field}", kind.as_str()),
        message,
    })?;

    Ok(Component {
        meta,
        selector: BTreeMap::from([(annotations::LABEL_APP.to_string(), app)]),
        class,
        pod,
        min_replicas: spec.min_replicas.unwrap_or(1),
        max_replicas: spec.max_replicas.unwrap_or(0),
        runtime: runtime.map(|r| (r.name().to_string(), r.is_cluster_scoped())),
        deployment_strategy: spec
            .deployment_strategy
            .clone()
            .map(serde_path_to_error::deserialize)
            .transpose()
            .map_err(|e| RenderError::InvalidField {
                field: format!("spec.{}.deploymentStrategy.{}", kind.as_str(), e.path()),
                message: e.into_inner().to_string(),
            })?,
    })
}

#[allow(clippy::too_many_arguments)]
fn pod_spec(
    isvc_name: &str,
    spec: &ComponentSpec,
    runtime: Option<&ServingRuntime>,
    server: &ContainerSpec,
    extra: &[(ContainerSpec, String)],
    storage_uri: Option<&str>,
    annotations_: &BTreeMap<String, String>,
    config: &Config,
) -> Result<PodSpec, (String, String)> {
    // Runtime pod fields KServe copies (MergePodSpec), then the component's own on top.
    let mut pod: Map<String, Value> = Map::new();
    if let Some(rt) = runtime {
        let rt_pod = serde_json::to_value(&rt.spec.pod).expect("pod fields serialize");
        for key in [
            "nodeSelector",
            "affinity",
            "tolerations",
            "volumes",
            "imagePullSecrets",
            "schedulerName",
            "resourceClaims",
        ] {
            if let Some(v) = rt_pod.get(key) {
                pod.insert(key.into(), v.clone());
            }
        }
    }
    if let Value::Object(own) = serde_json::to_value(&spec.pod).expect("pod fields serialize") {
        for (k, v) in own {
            if k == "volumes" {
                let mut volumes = pod
                    .remove("volumes")
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default();
                for vol in v.as_array().into_iter().flatten() {
                    volumes.retain(|x| x.get("name") != vol.get("name"));
                    volumes.push(vol.clone());
                }
                pod.insert(k, Value::Array(volumes));
            } else {
                pod.insert(k, v);
            }
        }
    }

    let mut server = container::to_k8s(server, server.name.as_deref().unwrap_or(KSERVE_CONTAINER))
        .map_err(|(f, m)| (format!("containers[0].{f}"), m))?;
    let mut containers: Vec<Container> = Vec::new();
    if server.readiness_probe.is_none() {
        let port = server
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .map_or(8080, |p| p.container_port);
        server.readiness_probe = Some(
            serde_json::from_value(json!({
                "tcpSocket": {"port": port},
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3
            }))
            .expect("valid probe"),
        );
    }
    let mut init_containers: Vec<Value> = pod
        .remove("initContainers")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let mut volumes: Vec<Value> = pod
        .remove("volumes")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();

    if let Some(uri) = storage_uri {
        let read_only = annotations_
            .get(annotations::STORAGE_READONLY)
            .is_none_or(|v| v != "false");
        let mounts = server.volume_mounts.get_or_insert_with(Vec::new);
        if let Some(pvc) = uri.strip_prefix("pvc://") {
            let (claim, sub_path) = pvc.split_once('/').unwrap_or((pvc, ""));
            volumes.push(json!({"name": PVC_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}));
            mounts.push(
                serde_json::from_value(json!({
                    "name": PVC_VOLUME, "mountPath": MODEL_MOUNT_PATH, "readOnly": read_only, "subPath": sub_path
                }))
                .expect("valid mount"),
            );
        } else {
            init_containers.push(
                serde_json::to_value(container::storage_initializer(uri, config))
                    .expect("serializes"),
            );
            volumes.push(json!({"name": PROVISION_VOLUME, "emptyDir": {}}));
            mounts.push(
                serde_json::from_value(json!({"name": PROVISION_VOLUME, "mountPath": MODEL_MOUNT_PATH, "readOnly": read_only}))
                    .expect("valid mount"),
            );
        }
    }
    containers.push(server);
    for (i, (c, name)) in extra.iter().enumerate() {
        containers.push(
            container::to_k8s(c, name)
                .map_err(|(f, m)| (format!("containers[{}].{f}", i + 1), m))?,
        );
    }
    for c in &mut containers {
        container::set_env(c, "INFERENCE_SERVICE_NAME", isvc_name);
    }

    pod.insert(
        "containers".into(),
        serde_json::to_value(&containers).expect("serializes"),
    );
    if !init_containers.is_empty() {
        pod.insert("initContainers".into(), Value::Array(init_containers));
    }
    if !volumes.is_empty() {
        pod.insert("volumes".into(), Value::Array(volumes));
    }
    serde_path_to_error::deserialize(Value::Object(pod))
        .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
}
