//! The kinds the embedded API serves, with the names Kubernetes gives them.

/// A kind the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resource {
    /// API group ("" for the core group).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind name.
    pub kind: &'static str,
    /// Plural resource name (the URL segment).
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// kubectl short names.
    pub short_names: &'static [&'static str],
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether `/status` is a separate subresource (spec and status updated apart).
    pub has_status: bool,
}

impl Resource {
    /// `apiVersion` of objects of this kind.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or just `plural` in the core group), as kubectl prints resources.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `singular.group`, as kubectl prints `inferenceservice.serving.kserve.io/x created`.
    pub fn qualified_singular(&self) -> String {
        if self.group.is_empty() {
            self.singular.to_string()
        } else {
            format!("{}.{}", self.singular, self.group)
        }
    }

    /// The URL path of the collection in `namespace`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }
}

macro_rules! resource {
    ($name:ident, $group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, [$($short:expr),*], $namespaced:expr, $status:expr) => {
        #[doc = concat!("`", $kind, "`")]
        pub const $name: Resource = Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            namespaced: $namespaced,
            has_status: $status,
        };
    };
}

resource!(
    INFERENCE_SERVICE,
    "serving.kserve.io",
    "v1beta1",
    "InferenceService",
    "inferenceservices",
    "inferenceservice",
    ["isvc"],
    true,
    true
);
resource!(
    SERVING_RUNTIME,
    "serving.kserve.io",
    "v1alpha1",
    "ServingRuntime",
    "servingruntimes",
    "servingruntime",
    [],
    true,
    true
);
resource!(
    CLUSTER_SERVING_RUNTIME,
    "serving.kserve.io",
    "v1alpha1",
    "ClusterServingRuntime",
    "clusterservingruntimes",
    "clusterservingruntime",
    [],
    false,
    true
);
resource!(
    SCALED_OBJECT,
    "keda.sh",
    "v1alpha1",
    "ScaledObject",
    "scaledobjects",
    "scaledobject",
    ["so"],
    true,
    true
);
resource!(
    TRIGGER_AUTHENTICATION,
    "keda.sh",
    "v1alpha1",
    "TriggerAuthentication",
    "triggerauthentications",
    "triggerauthentication",
    ["ta", "triggerauth"],
    true,
    false
);
resource!(
    DEPLOYMENT,
    "apps",
    "v1",
    "Deployment",
    "deployments",
    "deployment",
    ["deploy"],
    true,
    true
);
resource!(
    HPA,
    "autoscaling",
    "v2",
    "HorizontalPodAutoscaler",
    "horizontalpodautoscalers",
    "horizontalpodautoscaler",
    ["hpa"],
    true,
    true
);
resource!(
    SERVICE,
    "",
    "v1",
    "Service",
    "services",
    "service",
    ["svc"],
    true,
    true
);
resource!(POD, "", "v1", "Pod", "pods", "pod", ["po"], true, true);
resource!(
    EVENT,
    "",
    "v1",
    "Event",
    "events",
    "event",
    ["ev"],
    true,
    false
);

/// Every kind served.
pub const ALL: &[Resource] = &[
    INFERENCE_SERVICE,
    SERVING_RUNTIME,
    CLUSTER_SERVING_RUNTIME,
    SCALED_OBJECT,
    TRIGGER_AUTHENTICATION,
    DEPLOYMENT,
    HPA,
    SERVICE,
    POD,
    EVENT,
];

/// Finds a kind by plural, singular, short name or kind name (case-insensitive), optionally
/// qualified by group (`scaledobjects.keda.sh`).
pub fn lookup(name: &str) -> Option<Resource> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = lower
        .split_once('.')
        .map_or((lower.as_str(), None), |(b, g)| (b, Some(g)));
    ALL.iter().copied().find(|r| {
        (r.plural == base
            || r.singular == base
            || r.kind.eq_ignore_ascii_case(base)
            || r.short_names.contains(&base))
            && group.is_none_or(|g| g == r.group)
    })
}

/// Finds a kind by `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<Resource> {
    ALL.iter()
        .copied()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Finds a kind by URL group, version and plural.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<Resource> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}
