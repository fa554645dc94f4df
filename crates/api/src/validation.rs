//! Validation, rule for rule as KServe's admission webhook and the CRD's schema check an
//! InferenceService, plus the few checks that keep KEDA from rejecting what KServe accepts.
//!
//! Every error names its field; all errors are reported at once. Findings that KServe accepts
//! but that do not do what the user probably meant are warnings.

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

use crate::annotations::{self, AutoscalerClass, DeploymentMode};
use crate::field_error::{FieldError, FieldPath};
use crate::inference_service::{
    ComponentKind, ComponentSpec, InferenceService, MetricTarget, MetricsSpec,
};
use crate::quantity::Quantity;

/// What validation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Each makes the object invalid.
    pub errors: Vec<FieldError>,
    /// Accepted, but probably not what was meant (printed as `Warning:` like kubectl).
    pub warnings: Vec<String>,
}

impl Report {
    /// True when there are no errors.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The protocols KServe knows.
pub const PROTOCOLS: &[&str] = &["v1", "v2", "grpc-v1", "grpc-v2"];

/// The storage URI prefixes KServe's storage initializer understands.
pub const STORAGE_PREFIXES: &[&str] = &[
    "gs://",
    "s3://",
    "pvc://",
    "file://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "oci://",
    "oci+native://",
    "oci+fetch://",
    "hf://",
];

const MAX_NAME_LEN: usize = 63;

/// Validates a defaulted InferenceService (see [`crate::defaults::apply_defaults`]).
pub fn validate(isvc: &InferenceService) -> Report {
    let mut v = Validator::default();
    v.object(isvc);
    v.report
}

/// Validates an update: everything [`validate`] checks, plus the fields that may not change.
pub fn validate_update(old: &InferenceService, new: &InferenceService) -> Report {
    let mut report = validate(new);
    let old_mode = old
        .status
        .as_ref()
        .and_then(|s| s.deployment_mode.as_deref());
    let new_mode = new
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::DEPLOYMENT_MODE));
    if let (Some(old_mode), Some(new_mode)) = (old_mode, new_mode)
        && DeploymentMode::parse(old_mode) != DeploymentMode::parse(new_mode)
    {
        report.errors.push(FieldError::invalid(
            FieldPath::root("metadata").child("annotations").key(annotations::DEPLOYMENT_MODE),
            new_mode,
            format!("update rejected: deploymentMode cannot be changed from {old_mode:?} to {new_mode:?}"),
        ));
    }
    report
}

#[derive(Default)]
struct Validator {
    report: Report,
}

impl Validator {
    fn error(&mut self, e: FieldError) {
        self.report.errors.push(e);
    }

    fn warn(&mut self, w: impl Into<String>) {
        self.report.warnings.push(w.into());
    }

    fn object(&mut self, isvc: &InferenceService) {
        if isvc.api_version != crate::inference_service::API_VERSION {
            self.error(FieldError::not_supported(
                "apiVersion",
                &isvc.api_version,
                &[crate::inference_service::API_VERSION],
            ));
        }
        if isvc.kind != crate::inference_service::KIND {
            self.error(FieldError::not_supported(
                "kind",
                &isvc.kind,
                &[crate::inference_service::KIND],
            ));
        }
        self.metadata(isvc);

        let annotations = isvc.metadata.annotations.clone().unwrap_or_default();
        let class_path = FieldPath::root("metadata")
            .child("annotations")
            .key(annotations::AUTOSCALER_CLASS);
        let class = match annotations.get(annotations::AUTOSCALER_CLASS) {
            None => None,
            Some(v) => match AutoscalerClass::parse(v) {
                Some(c) => Some(c),
                None => {
                    self.error(FieldError::invalid(
                        class_path.clone(),
                        v,
                        format!("[{v}] is not a supported autoscaler class type"),
                    ));
                    None
                }
            },
        };
        let class_known =
            !annotations.contains_key(annotations::AUTOSCALER_CLASS) || class.is_some();

        let spec = FieldPath::root("spec");
        for (kind, component) in isvc.spec.components() {
            let path = spec.child(kind.as_str());
            self.implementation(kind, component, &path);
            self.kubernetes_shapes(component, &path);
            self.replicas(component, &path);
            self.metric_schema(component, &path);
            if class_known {
                self.autoscaling(class, component, &path);
            }
            if component.worker_spec.is_some() && class != Some(AutoscalerClass::None) {
                self.error(FieldError::invalid(
                    class_path.clone(),
                    class.map_or("hpa", |c| c.as_str()),
                    "the autoscaler class must be none when workerSpec is set",
                ));
            }
        }
        if isvc.spec.canary.is_some() {
            self.warn("spec.canary: canary predictors are not supported by Tidal and are ignored");
        }
    }

    fn metadata(&mut self, isvc: &InferenceService) {
        let meta = FieldPath::root("metadata");
        match isvc.metadata.name.as_deref() {
            None | Some("") => self.error(FieldError::required(
                meta.child("name"),
                "name or generateName is required",
            )),
            Some(name) => {
                if !is_dns1035_label(name) {
                    self.error(FieldError::invalid(
                        meta.child("name"),
                        name,
                        "a InferenceService name must consist of lower case alphanumeric characters or '-', \
                         and must start with alphabetical character. (e.g. \"my-name\" or \"abc-123\", regex \
                         used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                    ));
                }
                for (kind, component) in isvc.spec.components() {
                    let child = component_object_name(name, kind, component);
                    if child.len() > MAX_NAME_LEN {
                        self.error(FieldError::invalid(
                            meta.child("name"),
                            name,
                            format!(
                                "the {} Service name {child:?} would be {} characters; Kubernetes allows at most {MAX_NAME_LEN}",
                                kind.as_str(),
                                child.len()
                            ),
                        ));
                        break;
                    }
                }
            }
        }
        if let Some(ns) = isvc.metadata.namespace.as_deref()
            && !is_dns1123_label(ns)
        {
            self.error(FieldError::invalid(
                meta.child("namespace"),
                ns,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must \
                 start and end with an alphanumeric character",
            ));
        }
        let annotations = isvc.metadata.annotations.clone().unwrap_or_default();
        for (key, field) in annotations::KEDA_KNOBS {
            if let Some(v) = annotations.get(*key) {
                let min = if *field == "pollingInterval" || field.starts_with("fallback.failure") {
                    1
                } else {
                    0
                };
                if !v.trim().parse::<i32>().is_ok_and(|n| n >= min) {
                    self.error(FieldError::invalid(
                        meta.child("annotations").key(key),
                        v,
                        format!(
                            "sets the ScaledObject's {field}: must be an integer of at least {min}"
                        ),
                    ));
                }
            }
        }
        let has = |k: &str| annotations.contains_key(k);
        if has("tidal.dev/keda-fallback-failure-threshold")
            != has("tidal.dev/keda-fallback-replicas")
        {
            self.error(FieldError::required(
                meta.child("annotations")
                    .key(if has("tidal.dev/keda-fallback-replicas") {
                        "tidal.dev/keda-fallback-failure-threshold"
                    } else {
                        "tidal.dev/keda-fallback-replicas"
                    }),
                "a KEDA fallback needs both failureThreshold and replicas",
            ));
        }
        if let Some(mode) = annotations.get(annotations::DEPLOYMENT_MODE) {
            let path = meta.child("annotations").key(annotations::DEPLOYMENT_MODE);
            match DeploymentMode::parse(mode) {
                Some(DeploymentMode::Standard) => {}
                Some(other) => self.error(FieldError::invalid(
                    path,
                    mode,
                    format!(
                        "Tidal runs InferenceServices in Standard mode (also called RawDeployment): \
                         Deployment, Service and HPA or KEDA ScaledObject; the {} mode is not supported",
                        other.as_str()
                    ),
                )),
                None => self.error(FieldError::not_supported(path, mode, &["Standard", "RawDeployment"])),
            }
        }
    }

    fn implementation(&mut self, kind: ComponentKind, c: &ComponentSpec, path: &FieldPath) {
        let legacy = c.legacy.names();
        let allowed = match kind {
            ComponentKind::Predictor => "model, containers",
            _ => "containers",
        };
        // Containers beside a model are extra containers (sidecars), not an implementation.
        let mut implementations: Vec<&str> = legacy.clone();
        if c.model.is_some() {
            implementations.push("model");
        }
        if implementations.is_empty() && !c.containers.is_empty() {
            implementations.push("containers");
        }
        if kind != ComponentKind::Predictor && (c.model.is_some() || !legacy.is_empty()) {
            self.error(FieldError::forbidden(
                path.child(if c.model.is_some() {
                    "model"
                } else {
                    legacy[0]
                }),
                format!(
                    "a {} runs custom containers; only the predictor serves a model",
                    kind.as_str()
                ),
            ));
        } else if implementations.len() != 1 {
            let e = format!(
                "exactly one of [{allowed}] must be specified in the {}",
                kind.as_str()
            );
            if implementations.is_empty() {
                self.error(FieldError::required(path.clone(), e));
            } else {
                self.error(FieldError::invalid(
                    path.clone(),
                    implementations.join(", "),
                    e,
                ));
            }
        }

        if let Some(model) = &c.model {
            let mpath = path.child("model");
            match &model.model_format {
                None => self.error(FieldError::required(
                    mpath.child("modelFormat"),
                    "the model format is required",
                )),
                Some(f) if f.name.is_empty() => self.error(FieldError::required(
                    mpath.child("modelFormat").child("name"),
                    "",
                )),
                Some(_) => {}
            }
            if let Some(p) = &model.protocol_version
                && !PROTOCOLS.contains(&p.as_str())
            {
                self.error(FieldError::not_supported(
                    mpath.child("protocolVersion"),
                    p,
                    PROTOCOLS,
                ));
            }
            if let Some(uri) = &model.storage_uri {
                self.storage_uri(uri, &mpath.child("storageUri"));
            }
            self.container_resources(&model.container(), &mpath);
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, container) in c.containers.iter().enumerate() {
            let cpath = path.child("containers").index(i);
            match &container.name {
                None => self.error(FieldError::required(cpath.child("name"), "")),
                Some(name) if !names.insert(name.clone()) => self.error(FieldError::invalid(
                    cpath.child("name"),
                    name,
                    "Duplicate value",
                )),
                Some(_) => {}
            }
            if container.image.is_none() && container.command.is_none() {
                self.error(FieldError::required(
                    cpath.child("image"),
                    "a container needs an image (or, in embedded mode, a command to run)",
                ));
            }
            self.container_resources(container, &cpath);
        }
    }

    /// Pod and container fields Tidal passes through untyped must still be what Kubernetes
    /// expects, or the Deployment could not be built; check them here so the error names the
    /// field as the user wrote it.
    fn kubernetes_shapes(&mut self, c: &ComponentSpec, path: &FieldPath) {
        use k8s_openapi::api::apps::v1::DeploymentStrategy;
        use k8s_openapi::api::core::v1::{Container, PodSpec};

        let mut check =
            |value: serde_json::Value,
             at: FieldPath,
             shape: fn(serde_json::Value) -> Option<(String, String)>| {
                if let Some((sub, why)) = shape(value) {
                    let field = if sub.is_empty() || sub == "." {
                        at.to_string()
                    } else {
                        format!("{at}.{sub}")
                    };
                    self.report
                        .errors
                        .push(FieldError::invalid(field, Unquoted(why), ""));
                }
            };
        fn as_container(mut v: serde_json::Value) -> Option<(String, String)> {
            v["name"] = "c".into();
            shape_error::<Container>(v)
        }
        fn as_pod(mut v: serde_json::Value) -> Option<(String, String)> {
            v["containers"] = serde_json::json!([]);
            shape_error::<PodSpec>(v)
        }
        if let Some(model) = &c.model {
            check(
                serde_json::to_value(model.container()).unwrap_or_default(),
                path.child("model"),
                as_container,
            );
        }
        for (i, container) in c.containers.iter().enumerate() {
            check(
                serde_json::to_value(container).unwrap_or_default(),
                path.child("containers").index(i),
                as_container,
            );
        }
        check(
            serde_json::to_value(&c.pod).unwrap_or_default(),
            path.clone(),
            as_pod,
        );
        if let Some(strategy) = &c.deployment_strategy {
            check(
                strategy.clone(),
                path.child("deploymentStrategy"),
                shape_error::<DeploymentStrategy>,
            );
        }
    }

    fn storage_uri(&mut self, uri: &str, path: &FieldPath) {
        let has_scheme = uri.contains("://");
        let azure = uri.starts_with("https://") && uri.contains(".blob.core.windows.net");
        if has_scheme && !azure && !STORAGE_PREFIXES.iter().any(|p| uri.starts_with(p)) {
            self.error(FieldError::invalid(
                path.clone(),
                uri,
                format!(
                    "StorageURI not supported: must be one of {STORAGE_PREFIXES:?} or a local path"
                ),
            ));
        }
    }

    fn container_resources(
        &mut self,
        c: &crate::inference_service::ContainerSpec,
        path: &FieldPath,
    ) {
        let Some(res) = &c.resources else { return };
        for (name, request) in &res.requests {
            if let Some(limit) = res.limits.get(name)
                && request.quantity() > limit.quantity()
            {
                self.error(FieldError::invalid(
                    path.child("resources").child("requests").key(name),
                    request.original(),
                    format!(
                        "must be less than or equal to {name} limit of {}",
                        limit.original()
                    ),
                ));
            }
        }
        for (kind, map) in [("limits", &res.limits), ("requests", &res.requests)] {
            for (name, q) in map {
                if q.quantity() < Quantity::from_units(0) {
                    self.error(FieldError::invalid(
                        path.child("resources").child(kind).key(name),
                        q.original(),
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
    }

    fn replicas(&mut self, c: &ComponentSpec, path: &FieldPath) {
        let min = c.min_replicas.unwrap_or(1);
        let max = c.max_replicas.unwrap_or(0);
        if min < 0 {
            self.error(FieldError::invalid(
                path.child("minReplicas"),
                min,
                "'MinReplicas' cannot be less than 0",
            ));
        }
        if max < 0 {
            self.error(FieldError::invalid(
                path.child("maxReplicas"),
                max,
                "'MaxReplicas' cannot be less than 0",
            ));
        }
        if max != 0 && min > max {
            self.error(FieldError::invalid(
                path.child("minReplicas"),
                min,
                "'MinReplicas' cannot be greater than MaxReplicas",
            ));
        }
    }

    /// The enums and required fields the CRD's schema enforces, whatever the class.
    fn metric_schema(&mut self, c: &ComponentSpec, path: &FieldPath) {
        if let Some(m) = &c.scale_metric
            && !["cpu", "memory", "concurrency", "rps"].contains(&m.as_str())
        {
            self.error(FieldError::not_supported(
                path.child("scaleMetric"),
                m,
                &["cpu", "memory", "concurrency", "rps"],
            ));
        }
        if let Some(t) = &c.scale_metric_type
            && !TARGET_TYPES.contains(&t.as_str())
        {
            self.error(FieldError::not_supported(
                path.child("scaleMetricType"),
                t,
                TARGET_TYPES,
            ));
        }
        let Some(auto) = &c.auto_scaling else { return };
        let apath = path.child("autoScaling");
        for (i, m) in auto.metrics.iter().enumerate() {
            let mpath = apath.child("metrics").index(i);
            if !["Resource", "External", "PodMetric"].contains(&m.type_.as_str()) {
                // KServe's own words for an unknown type, after the CRD's enum.
                self.error(FieldError::not_supported(
                    mpath.child("type"),
                    &m.type_,
                    &["Resource", "External", "PodMetric"],
                ));
            }
            if let Some(r) = &m.resource {
                if !["cpu", "memory"].contains(&r.name.as_str()) {
                    let mut e = FieldError::not_supported(
                        mpath.child("resource").child("name"),
                        &r.name,
                        &["cpu", "memory"],
                    );
                    e.detail = format!("resource type {} is not supported", r.name);
                    self.error(e);
                }
                self.target_type(&r.target, &mpath.child("resource").child("target"));
            }
            if let Some(e) = &m.external {
                if !["prometheus", "graphite"].contains(&e.metric.backend.as_str()) {
                    self.error(FieldError::not_supported(
                        mpath.child("external").child("metric").child("backend"),
                        &e.metric.backend,
                        &["prometheus", "graphite"],
                    ));
                }
                self.target_type(&e.target, &mpath.child("external").child("target"));
            }
            if let Some(p) = &m.podmetric {
                if p.metric.backend != "opentelemetry" {
                    self.error(FieldError::not_supported(
                        mpath.child("podmetric").child("metric").child("backend"),
                        &p.metric.backend,
                        &["opentelemetry"],
                    ));
                }
                self.target_type(&p.target, &mpath.child("podmetric").child("target"));
            }
        }
        if let Some(b) = &auto.behavior {
            self.behavior(b, &apath.child("behavior"));
        }
    }

    fn target_type(&mut self, t: &MetricTarget, path: &FieldPath) {
        if !t.type_.is_empty() && !TARGET_TYPES.contains(&t.type_.as_str()) {
            self.error(FieldError::not_supported(
                path.child("type"),
                &t.type_,
                TARGET_TYPES,
            ));
        }
    }

    /// The HPA API's own checks on `behavior`.
    fn behavior(&mut self, b: &HorizontalPodAutoscalerBehavior, path: &FieldPath) {
        for (side, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
            let Some(rules) = rules else { continue };
            self.scaling_rules(rules, &path.child(side));
        }
    }

    fn scaling_rules(&mut self, r: &HPAScalingRules, path: &FieldPath) {
        if let Some(w) = r.stabilization_window_seconds
            && !(0..=3600).contains(&w)
        {
            self.error(FieldError::invalid(
                path.child("stabilizationWindowSeconds"),
                w,
                "must be greater than or equal to 0 and less than or equal to 3600",
            ));
        }
        if let Some(s) = &r.select_policy
            && !["Max", "Min", "Disabled"].contains(&s.as_str())
        {
            self.error(FieldError::not_supported(
                path.child("selectPolicy"),
                s,
                &["Disabled", "Max", "Min"],
            ));
        }
        for (i, p) in r.policies.iter().flatten().enumerate() {
            let ppath = path.child("policies").index(i);
            if !["Pods", "Percent"].contains(&p.type_.as_str()) {
                self.error(FieldError::not_supported(
                    ppath.child("type"),
                    &p.type_,
                    &["Percent", "Pods"],
                ));
            }
            if p.value <= 0 {
                self.error(FieldError::invalid(
                    ppath.child("value"),
                    p.value,
                    "must be greater than zero",
                ));
            }
            if !(1..=1800).contains(&p.period_seconds) {
                self.error(FieldError::invalid(
                    ppath.child("periodSeconds"),
                    p.period_seconds,
                    "must be greater than zero and less than or equal to 1800",
                ));
            }
        }
    }

    fn autoscaling(&mut self, class: Option<AutoscalerClass>, c: &ComponentSpec, path: &FieldPath) {
        match class {
            Some(AutoscalerClass::Keda) => self.keda(c, path),
            Some(AutoscalerClass::Hpa) => {
                let errors = hpa_errors(c, path);
                self.report.errors.extend(errors);
                if c.min_replicas == Some(0) {
                    self.warn(format!(
                        "{}: an HPA cannot scale to zero; minReplicas 0 runs 1 replica (use autoscalerClass keda with an External metric to scale to zero)",
                        path.child("minReplicas")
                    ));
                }
            }
            // KServe checks nothing for an absent class, and then renders an HPA: say what the HPA
            // rules would have rejected, without refusing the object.
            None => {
                for e in hpa_errors(c, path) {
                    self.warn(format!("{e} (autoscalerClass defaults to hpa; set serving.kserve.io/autoscalerClass: keda to scale on External metrics)"));
                }
            }
            Some(AutoscalerClass::External) | Some(AutoscalerClass::None) => {
                if c.auto_scaling
                    .as_ref()
                    .is_some_and(|a| !a.metrics.is_empty())
                {
                    self.warn(format!(
                        "{}: ignored with autoscalerClass {}",
                        path.child("autoScaling").child("metrics"),
                        class.map_or("", |c| c.as_str())
                    ));
                }
            }
        }
    }

    fn keda(&mut self, c: &ComponentSpec, path: &FieldPath) {
        if c.scale_metric.is_some() {
            self.error(FieldError::invalid(
                path.child("scaleMetric"),
                c.scale_metric.as_deref().unwrap_or_default(),
                "ScaleMetric is not supported for KEDA",
            ));
        }
        if c.scale_target.is_some() || c.scale_metric_type.is_some() {
            self.warn(format!(
                "{}: scaleTarget and scaleMetricType are ignored with autoscalerClass keda; set the target in autoScaling.metrics",
                path
            ));
        }
        let metrics: &[MetricsSpec] = c.auto_scaling.as_ref().map_or(&[], |a| &a.metrics);
        let mpath = path.child("autoScaling").child("metrics");
        for (i, m) in metrics.iter().enumerate() {
            self.keda_metric(m, &mpath.index(i));
        }
        let wakes_from_zero = metrics
            .iter()
            .any(|m| m.type_ == "External" || m.type_ == "PodMetric");
        if c.min_replicas == Some(0) && !wakes_from_zero {
            self.error(FieldError::invalid(
                path.child("minReplicas"),
                0,
                "scaling to zero needs at least one External or PodMetric metric: cpu and memory cannot be \
                 measured on zero replicas, and KEDA rejects such a ScaledObject",
            ));
        }
        if metrics.is_empty() {
            self.warn(format!(
                "{}: no metrics given; Tidal scales on cpu Utilization 80 (KServe's default CPU target), \
                 where KServe would emit a ScaledObject without triggers that KEDA rejects",
                path.child("autoScaling").child("metrics")
            ));
        }
    }

    fn keda_metric(&mut self, m: &MetricsSpec, path: &FieldPath) {
        match m.type_.as_str() {
            "Resource" => {
                let Some(r) = &m.resource else {
                    self.error(FieldError::required(
                        path.child("resource"),
                        "metricSpec.Resource is not set for resource metric source type",
                    ));
                    return;
                };
                let tpath = path.child("resource").child("target");
                if !TARGET_TYPES.contains(&r.target.type_.as_str()) && !r.target.type_.is_empty() {
                    return; // Reported by the schema check with the allowed values.
                }
                match r.name.as_str() {
                    "cpu" => {
                        if r.target.type_ != "Utilization" {
                            self.error(FieldError::invalid(
                                tpath.child("type"),
                                &r.target.type_,
                                "the cpu target value type should be Utilization",
                            ));
                            return;
                        }
                    }
                    "memory" => {
                        if r.target.type_ != "AverageValue" && r.target.type_ != "Utilization" {
                            self.error(FieldError::invalid(
                                tpath.child("type"),
                                &r.target.type_,
                                "the memory target value type should be AverageValue or Utilization",
                            ));
                            return;
                        }
                        if r.target.type_ == "AverageValue" {
                            let one_mib: Quantity = "1Mi".parse().expect("valid quantity");
                            let v = r.target.average_value.as_ref();
                            if v.is_none_or(|v| v.quantity() < one_mib) {
                                self.error(FieldError::invalid(
                                    tpath.child("averageValue"),
                                    v.map_or("0", |v| v.original()),
                                    "the memory target value should be greater than 1 MiB",
                                ));
                                return;
                            }
                        }
                    }
                    // Reported by the schema check.
                    _ => return,
                }
                self.scale_target(&r.target, &tpath);
            }
            "External" => {
                let Some(e) = &m.external else {
                    self.error(FieldError::required(
                        path.child("external"),
                        "metricSpec.External is not set for external metric source type",
                    ));
                    return;
                };
                let epath = path.child("external");
                if e.metric.query.is_empty() {
                    self.error(FieldError::required(
                        epath.child("metric").child("query"),
                        "the query should not be empty",
                    ));
                    return;
                }
                let Some(value) = &e.target.value else {
                    self.error(FieldError::required(
                        epath.child("target").child("value"),
                        "the target threshold value should not be empty",
                    ));
                    return;
                };
                if value.original().parse::<f64>().is_err() {
                    self.error(FieldError::invalid(
                        epath.child("target").child("value"),
                        value.original(),
                        format!(
                            "KEDA's {} scaler reads the threshold as a plain number; write it without a unit suffix",
                            e.metric.backend
                        ),
                    ));
                }
                self.scale_target(&e.target, &epath.child("target"));
            }
            "PodMetric" => {
                let Some(p) = &m.podmetric else {
                    self.error(FieldError::required(
                        path.child("podmetric"),
                        "metricSpec.PodMetric is not set for pod metric source type",
                    ));
                    return;
                };
                let ppath = path.child("podmetric");
                if p.metric.query.is_empty() {
                    self.error(FieldError::required(
                        ppath.child("metric").child("query"),
                        "the query should not be empty",
                    ));
                    return;
                }
                if p.target.value.is_none() {
                    self.error(FieldError::required(
                        ppath.child("target").child("value"),
                        "the target threshold value should not be empty",
                    ));
                    return;
                }
                self.scale_target(&p.target, &ppath.child("target"));
            }
            // Reported by the schema check with the allowed values.
            _ => {}
        }
    }

    /// KServe's `validateScaleTarget`.
    fn scale_target(&mut self, t: &MetricTarget, path: &FieldPath) {
        match t.type_.as_str() {
            "Utilization" => match t.average_utilization {
                None => self.error(FieldError::required(
                    path.child("averageUtilization"),
                    "the AverageUtilization type should be set",
                )),
                Some(u) if !(1..=100).contains(&u) => self.error(FieldError::invalid(
                    path.child("averageUtilization"),
                    u,
                    "the target utilization percentage should be a [1-100] integer",
                )),
                Some(_) => {}
            },
            "AverageValue" if t.average_value.is_none() => self.error(FieldError::required(
                path.child("averageValue"),
                "the AverageValue type should be set",
            )),
            "Value" if t.value.is_none() => self.error(FieldError::required(
                path.child("value"),
                "the Value type should be set",
            )),
            _ => {}
        }
    }
}

const TARGET_TYPES: &[&str] = &["Utilization", "Value", "AverageValue"];

/// KServe's HPA rules (`validateScalingHPACompExtension`).
fn hpa_errors(c: &ComponentSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let metric = c.scale_metric.as_deref().unwrap_or("cpu");
    if metric != "cpu" && metric != "memory" {
        errors.push(FieldError::invalid(
            path.child("scaleMetric"),
            metric,
            format!("[{metric}] is not a supported metric"),
        ));
    }
    if let Some(target) = c.scale_target {
        if (metric == "cpu" && target < 1) || target > 100 {
            errors.push(FieldError::invalid(
                path.child("scaleTarget"),
                target,
                "the target utilization percentage should be a [1-100] integer",
            ));
        } else if metric == "memory" && target < 1 {
            errors.push(FieldError::invalid(
                path.child("scaleTarget"),
                target,
                "the target memory should be greater than 1 MiB",
            ));
        }
    }
    if let Some(auto) = &c.auto_scaling {
        for (i, m) in auto.metrics.iter().enumerate() {
            if m.type_ != "Resource" || m.resource.is_none() {
                errors.push(FieldError::invalid(
                    path.child("autoScaling").child("metrics").index(i).child("type"),
                    &m.type_,
                    format!(
                        "invalid HPA metric source type with value [{}],valid metric source types are Resource",
                        m.type_
                    ),
                ));
            }
        }
    }
    errors
}

/// The name KServe gives a component's Deployment, Service and autoscaler.
pub fn component_object_name(isvc: &str, kind: ComponentKind, c: &ComponentSpec) -> String {
    match (&c.name, kind) {
        (Some(n), ComponentKind::Predictor) if !n.is_empty() => format!("{isvc}-{n}-predictor"),
        _ => format!("{isvc}-{}", kind.as_str()),
    }
}

fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The path and message of the first way `v` fails to be a `T`, if it does.
fn shape_error<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Option<(String, String)> {
    serde_path_to_error::deserialize::<_, T>(v)
        .err()
        .map(|e| (e.path().to_string(), e.into_inner().to_string()))
}

/// A message printed without quotes inside `FieldError::invalid`.
struct Unquoted(String);

impl std::fmt::Debug for Unquoted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
