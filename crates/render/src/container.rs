//! Building containers: the runtime's `kserve-container` merged with the InferenceService's
//! fields (KServe's strategic merge), `{{.Name}}` placeholders, and the storage initializer.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar};
use serde_json::{Value, json};
use tidal_api::inference_service::{ContainerSpec, Resources};
use tidal_api::quantity::ResourceQuantity;

use crate::RenderError;
use crate::config::Config;

/// The name of the model server container.
pub const KSERVE_CONTAINER: &str = "kserve-container";
/// Where models are mounted.
pub const MODEL_MOUNT_PATH: &str = "/mnt/models";
/// The emptyDir the storage initializer downloads into.
pub const PROVISION_VOLUME: &str = "kserve-provision-location";
/// The volume of a `pvc://` storage URI.
pub const PVC_VOLUME: &str = "kserve-pvc-source";

/// Applies `user` over `base` as KServe's strategic merge does: args appended, env merged by
/// name, resources per key, ports by containerPort, volume mounts by mountPath, and any other
/// field the user set replacing the runtime's.
pub fn merge(base: &ContainerSpec, user: &ContainerSpec) -> ContainerSpec {
    let mut out = base.clone();
    let args: Vec<String> = base
        .args
        .iter()
        .flatten()
        .chain(user.args.iter().flatten())
        .cloned()
        .collect();
    out.args = (!args.is_empty()).then_some(args);
    out.env = merge_by(base.env.as_ref(), user.env.as_ref(), |e: &EnvVar| {
        e.name.clone()
    });
    out.ports = merge_by(base.ports.as_ref(), user.ports.as_ref(), |p| {
        p.container_port
    });
    out.volume_mounts = merge_by(
        base.volume_mounts.as_ref(),
        user.volume_mounts.as_ref(),
        |m| m.mount_path.clone(),
    );
    out.resources = match (&base.resources, &user.resources) {
        (Some(b), Some(u)) => {
            let mut r = b.clone();
            r.limits.extend(u.limits.clone());
            r.requests.extend(u.requests.clone());
            Some(r)
        }
        (b, u) => u.clone().or_else(|| b.clone()),
    };
    macro_rules! replace {
        ($($field:ident),*) => { $( if user.$field.is_some() { out.$field = user.$field.clone(); } )* };
    }
    replace!(
        image,
        command,
        working_dir,
        image_pull_policy,
        env_from,
        liveness_probe,
        readiness_probe,
        startup_probe,
        lifecycle,
        security_context,
        termination_message_path,
        termination_message_policy,
        stdin,
        tty,
        volume_devices,
        resize_policy,
        confidential,
        restart_policy,
        restart_policy_rules,
        stdin_once
    );
    out
}

fn merge_by<T: Clone, K: PartialEq>(
    base: Option<&Vec<T>>,
    user: Option<&Vec<T>>,
    key: impl Fn(&T) -> K,
) -> Option<Vec<T>> {
    let mut out: Vec<T> = base.cloned().unwrap_or_default();
    for item in user.into_iter().flatten() {
        match out.iter_mut().find(|o| key(o) == key(item)) {
            Some(slot) => *slot = item.clone(),
            None => out.push(item.clone()),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Fills missing requests and limits from the configured defaults (KServe does this for custom
/// containers, transformers and explainers, never for `model`).
pub fn default_resources(c: &mut ContainerSpec, config: &Config) {
    let r = c.resources.get_or_insert_with(Resources::default);
    for (name, value) in &config.default_resources {
        let q = ResourceQuantity::parse(value)
            .expect("configured default resources are valid quantities");
        r.requests.entry(name.clone()).or_insert_with(|| q.clone());
        r.limits.entry(name.clone()).or_insert(q);
    }
}

/// The values `{{.Name}}`, `{{.Namespace}}`, `{{.Labels.x}}` and `{{.Annotations.x}}` expand to:
/// the InferenceService's own metadata.
pub struct TemplateData<'a> {
    /// InferenceService name.
    pub name: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// InferenceService labels.
    pub labels: &'a BTreeMap<String, String>,
    /// InferenceService annotations.
    pub annotations: &'a BTreeMap<String, String>,
}

impl TemplateData<'_> {
    /// Expands every `{{...}}` in `s`; unknown keys render `<no value>` like Go templates.
    pub fn expand(&self, s: &str) -> Result<String, RenderError> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| RenderError::Template(s.to_string()))?;
            let expr = after[..end].trim();
            let value = match expr {
                ".Name" => Some(self.name.to_string()),
                ".Namespace" => Some(self.namespace.to_string()),
                _ => {
                    if let Some(k) = expr.strip_prefix(".Labels.") {
                        self.labels.get(k).cloned()
                    } else if let Some(k) = expr.strip_prefix(".Annotations.") {
                        self.annotations.get(k).cloned()
                    } else {
                        return Err(RenderError::Template(s.to_string()));
                    }
                }
            };
            out.push_str(value.as_deref().unwrap_or("<no value>"));
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Expands placeholders in every string of a container.
    pub fn expand_container(&self, c: &ContainerSpec) -> Result<ContainerSpec, RenderError> {
        let mut v = serde_json::to_value(c).expect("containers serialize");
        self.expand_value(&mut v)?;
        Ok(serde_json::from_value(v).expect("expanded containers deserialize"))
    }

    fn expand_value(&self, v: &mut Value) -> Result<(), RenderError> {
        match v {
            Value::String(s) if s.contains("{{") => *s = self.expand(s)?,
            Value::Array(a) => a.iter_mut().try_for_each(|x| self.expand_value(x))?,
            Value::Object(o) => o.values_mut().try_for_each(|x| self.expand_value(x))?,
            _ => {}
        }
        Ok(())
    }
}

/// Rewrites the image tag as KServe does: `runtimeVersion` replaces the tag; a GPU limit adds
/// `-gpu` for the servers that have GPU images; vLLM without a GPU uses the `-cpu` repository.
pub fn image_with_tag(
    image: &str,
    runtime_version: Option<&str>,
    server_type: &str,
    has_gpu: bool,
) -> String {
    if image.contains("@sha256:") {
        return image.to_string();
    }
    let (repo, tag) = split_image(image);
    if let Some(v) = runtime_version {
        return format!("{repo}:{v}");
    }
    if has_gpu
        && matches!(
            server_type,
            "tensorflow-serving" | "torchserve" | "huggingfaceserver"
        )
    {
        return match tag {
            Some(t) => format!("{repo}:{t}-gpu"),
            None => format!("{repo}:latest-gpu"),
        };
    }
    if !has_gpu && server_type == "vllmserver" {
        let repo = if repo.ends_with("-cpu") {
            repo.to_string()
        } else {
            format!("{repo}-cpu")
        };
        return match tag {
            Some(t) => format!("{repo}:{t}"),
            None => repo,
        };
    }
    image.to_string()
}

fn split_image(image: &str) -> (&str, Option<&str>) {
    // A colon after the last slash separates the tag (a registry port comes before a slash).
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

/// True when a container's limits ask for an NVIDIA GPU or MIG slice.
pub fn has_gpu(c: &ContainerSpec) -> bool {
    c.resources.as_ref().is_some_and(|r| {
        r.limits
            .keys()
            .any(|k| k == "nvidia.com/gpu" || k.starts_with("nvidia.com/mig"))
    })
}

/// Converts a merged container into the Kubernetes type, with the given name. Pass-through
/// fields (probes, lifecycle, ...) are checked here; an error gives the field path and why.
pub fn to_k8s(c: &ContainerSpec, name: &str) -> Result<Container, (String, String)> {
    let mut v = serde_json::to_value(c).expect("containers serialize");
    v["name"] = json!(name);
    serde_path_to_error::deserialize(v)
        .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
}

/// Sets `name=value` in a container's env unless present.
pub fn set_env(c: &mut Container, name: &str, value: &str) {
    let env = c.env.get_or_insert_with(Vec::new);
    if !env.iter().any(|e| e.name == name) {
        env.push(EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        });
    }
}

/// The storage initializer, as KServe's pod webhook adds it: an init container that downloads
/// `uri` into the `kserve-provision-location` emptyDir.
pub fn storage_initializer(uri: &str, config: &Config) -> Container {
    let s = &config.storage_initializer;
    serde_json::from_value(json!({
        "name": "storage-initializer",
        "image": s.image,
        "args": [uri, MODEL_MOUNT_PATH],
        "env": [
            {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"},
            {"name": "HF_XET_HIGH_PERFORMANCE", "value": "1"},
            {"name": "HF_XET_NUM_CONCURRENT_RANGE_GETS", "value": "8"},
        ],
        "resources": {
            "limits": {"cpu": s.cpu_limit, "memory": s.memory_limit},
            "requests": {"cpu": s.cpu_request, "memory": s.memory_request},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": PROVISION_VOLUME, "mountPath": MODEL_MOUNT_PATH}],
    }))
    .expect("the storage initializer is a valid Container")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_follow_kserve_rules() {
        let cases = [
            (
                "tfserving",
                Some("2.6.2"),
                "tensorflow-serving",
                false,
                "tfserving:2.6.2",
            ),
            (
                "localhost:8888/tfserving:1.2.3",
                Some("2.6.2"),
                "x",
                false,
                "localhost:8888/tfserving:2.6.2",
            ),
            (
                "huggingfaceserver:1.14.0",
                None,
                "huggingfaceserver",
                true,
                "huggingfaceserver:1.14.0-gpu",
            ),
            (
                "huggingfaceserver:1.14.0",
                None,
                "huggingfaceserver",
                false,
                "huggingfaceserver:1.14.0",
            ),
            (
                "vllm/vllm-openai:latest",
                None,
                "vllmserver",
                false,
                "vllm/vllm-openai-cpu:latest",
            ),
            (
                "vllm/vllm-openai:latest",
                None,
                "vllmserver",
                true,
                "vllm/vllm-openai:latest",
            ),
            ("img@sha256:abc", Some("9"), "x", true, "img@sha256:abc"),
        ];
        for (image, version, server, gpu, want) in cases {
            assert_eq!(
                image_with_tag(image, version, server, gpu),
                want,
                "{image} {version:?} {server} {gpu}"
            );
        }
    }

    #[test]
    fn templates_expand_like_go_templates() {
        let labels = BTreeMap::from([(
            "modelClass".to_string(),
            "mlserver_sklearn.SKLearnModel".to_string(),
        )]);
        let annotations = BTreeMap::new();
        let t = TemplateData {
            name: "iris",
            namespace: "ns",
            labels: &labels,
            annotations: &annotations,
        };
        assert_eq!(
            t.expand("--model_name={{.Name}}").unwrap(),
            "--model_name=iris"
        );
        assert_eq!(
            t.expand("{{ .Namespace }}/{{.Labels.modelClass}}").unwrap(),
            "ns/mlserver_sklearn.SKLearnModel"
        );
        assert_eq!(t.expand("{{.Annotations.missing}}").unwrap(), "<no value>");
        assert!(t.expand("{{.Name").is_err());
    }

    #[test]
    fn merge_appends_args_and_merges_env_and_resources_by_key() {
        let base: ContainerSpec = serde_json::from_value(json!({
            "args": ["--model_name={{.Name}}"], "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
        }))
        .unwrap();
        let user: ContainerSpec = serde_json::from_value(json!({
            "args": ["--model_name=x"], "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
            "resources": {"limits": {"cpu": "2", "memory": "4Gi"}}
        }))
        .unwrap();
        let m = serde_json::to_value(merge(&base, &user)).unwrap();
        assert_eq!(
            m["args"],
            json!(["--model_name={{.Name}}", "--model_name=x"])
        );
        assert_eq!(
            m["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        assert_eq!(
            m["resources"],
            json!({"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}})
        );
    }
}
