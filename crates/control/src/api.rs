//! The embedded API server: Kubernetes REST conventions over the store.
//!
//! `/api/v1/namespaces/{ns}/{plural}[/{name}[/status|/scale|/log]]` for core kinds and
//! `/apis/{group}/{version}/...` for the rest; create, get, list (with `labelSelector`), watch
//! (`?watch=true`, newline-delimited JSON events, resumable by `resourceVersion`), update, merge
//! patch and delete (cascading to owned objects). Errors are `kind: Status` bodies.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tidal_store::resource::{self, DEPLOYMENT, POD};
use tidal_store::{EventType, LabelSelector, Resource, Store, StoreError, UpdateScope};

use crate::admission;
use crate::status::ApiError;

/// Shared state of the API server.
pub struct ApiState {
    /// The objects.
    pub store: Arc<Store>,
    /// Where replica logs are written (`pods/{name}/log`).
    pub log_dir: PathBuf,
    /// The gateway, whose counters `/metrics` exposes.
    pub gateway: Option<Arc<tidal_gateway::Gateway>>,
}

/// The API routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api", get(|| async { axum::Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})) }))
        .route("/apis", get(api_groups))
        .route("/api/v1", get(|| async { resource_list("", "v1") }))
        .route("/apis/{group}/{version}", get(|Path((g, v)): Path<(String, String)>| async move { resource_list(&g, &v) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(|State(st): S| async move {
            let text = st.gateway.as_ref().map(|g| g.metrics_text()).unwrap_or_default();
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
        }))
        .route("/api/v1/{*rest}", any(core_path))
        .route("/apis/{group}/{version}/{*rest}", any(group_path))
        .with_state(state)
}

fn api_groups() -> impl std::future::Future<Output = axum::Json<Value>> {
    let mut groups: Vec<(&str, &str)> = resource::ALL
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| (r.group, r.version))
        .collect();
    groups.sort();
    groups.dedup();
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    async move { axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})) }
}

fn resource_list(group: &str, version: &str) -> Response {
    let resources: Vec<Value> = resource::ALL
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| {
            let verbs = json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
            let mut out = vec![json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                "verbs": verbs, "shortNames": r.short_names,
            })];
            if r.has_status {
                out.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
            }
            if *r == DEPLOYMENT {
                out.push(json!({"name": "deployments/scale", "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
            }
            if *r == POD {
                out.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
            }
            out
        })
        .collect();
    if resources.is_empty() {
        return ApiError::no_such_resource(&format!("{group}/{version}")).into_response();
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})).into_response()
}

/// Query parameters Tidal reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    label_selector: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    allow_watch_bookmarks: Option<bool>,
    #[serde(rename = "dryRun")]
    dry_run: Option<String>,
    tail_lines: Option<usize>,
}

/// A resolved request target.
struct Target {
    r: Resource,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn resolve(group: &str, version: &str, plural: &str) -> Result<Resource, ApiError> {
    resource::by_path(group, version, plural).ok_or_else(|| {
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        ApiError::no_such_resource(&format!("{gv}, {plural}"))
    })
}

type S = State<Arc<ApiState>>;

async fn core_path(
    s: S,
    Path(rest): Path<String>,
    q: Query<ListParams>,
    m: Method,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    dispatch(s, "", "v1", &rest, q, m, h, b).await
}

async fn group_path(
    s: S,
    Path((group, version, rest)): Path<(String, String, String)>,
    q: Query<ListParams>,
    m: Method,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    dispatch(s, &group, &version, &rest, q, m, h, b).await
}

/// Parses what follows `/api/v1/` or `/apis/{group}/{version}/`:
/// `{plural}[/{name}]` (all namespaces, or cluster-scoped) or
/// `namespaces/{ns}/{plural}[/{name}[/{sub}]]`.
fn parse_target(group: &str, version: &str, rest: &str) -> Result<Target, ApiError> {
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let (ns, tail) = match parts.as_slice() {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        tail => (None, tail),
    };
    let (plural, name, sub) = match tail {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] if ns.is_some() => {
            (*plural, Some(name.to_string()), Some(sub.to_string()))
        }
        _ => return Err(ApiError::no_such_resource(rest)),
    };
    let r = resolve(group, version, plural)?;
    if !r.namespaced && ns.is_some() {
        return Err(ApiError::no_such_resource(&format!(
            "{} is cluster-scoped",
            r.plural
        )));
    }
    Ok(Target {
        r,
        namespace: if r.namespaced { ns } else { None },
        name,
        sub,
    })
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    State(st): S,
    group: &str,
    version: &str,
    rest: &str,
    Query(q): Query<ListParams>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = match parse_target(group, version, rest) {
        Ok(t) => handle(&st, t, &q, &method, &headers, &body).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.contains("yaml") {
        let docs = tidal_api::split_documents(
            std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?,
        );
        return match docs.into_iter().next() {
            Some(Ok(d)) => Ok(d.value),
            Some(Err(e)) => Err(ApiError::bad_request(e.to_string())),
            None => Err(ApiError::bad_request("empty body")),
        };
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

enum ModifyError {
    Store(StoreError),
    Api(ApiError),
}

impl From<StoreError> for ModifyError {
    fn from(e: StoreError) -> Self {
        ModifyError::Store(e)
    }
}

fn modify_error(r: Resource, e: ModifyError) -> ApiError {
    match e {
        ModifyError::Store(s) => ApiError::from_store(r, s),
        ModifyError::Api(a) => a,
    }
}

fn with_warnings(mut resp: Response, warnings: Vec<String>) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {:?}", w)) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

async fn handle(
    st: &ApiState,
    t: Target,
    q: &ListParams,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let r = t.r;
    let ns = t.namespace.as_deref();
    let store_err = |e| ApiError::from_store(r, e);
    let dry_run = q.dry_run.as_deref() == Some("All");
    match (method.clone(), t.name.as_deref(), t.sub.as_deref()) {
        (Method::GET, None, None) => {
            let selector = LabelSelector::parse(q.label_selector.as_deref().unwrap_or_default())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if matches!(q.watch.as_deref(), Some("true" | "1")) {
                return watch(st, r, t.namespace.clone(), selector, q).await;
            }
            let (items, rv) = st.store.list(r, ns, &selector).map_err(store_err)?;
            Ok(axum::Json(json!({
                "apiVersion": r.api_version(),
                "kind": format!("{}List", r.kind),
                "metadata": {"resourceVersion": rv.to_string()},
                "items": items,
            }))
            .into_response())
        }
        (Method::POST, None, None) => {
            let mut obj = parse_body(headers, body)?;
            if let (Some(ns), Some(meta)) = (ns, obj.get_mut("metadata"))
                && let Some(given) = meta.get("namespace").and_then(Value::as_str)
                && given != ns
            {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({given}) does not match the namespace sent on the request ({ns})"
                )));
            }
            obj = admission::admit(r, obj, None)?;
            let warnings = admission::warnings(r, &obj);
            if dry_run {
                return Ok(with_warnings(
                    (StatusCode::CREATED, axum::Json(obj)).into_response(),
                    warnings,
                ));
            }
            let created = st.store.create(r, ns, obj).map_err(store_err)?;
            Ok(with_warnings(
                (StatusCode::CREATED, axum::Json(created)).into_response(),
                warnings,
            ))
        }
        (Method::GET, Some(name), None) => {
            Ok(axum::Json(st.store.get(r, ns, name).map_err(store_err)?).into_response())
        }
        (Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            let obj = parse_body(headers, body)?;
            if obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_some_and(|n| n != name)
            {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            let scope = if sub == Some("status") {
                UpdateScope::Status
            } else {
                UpdateScope::Main
            };
            let expected = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            let updated = st
                .store
                .modify(r, ns, name, expected.as_deref(), scope, |current| {
                    let mut obj = obj.clone();
                    obj["metadata"]["name"] = json!(name);
                    if scope == UpdateScope::Main {
                        admission::admit(r, obj, Some(current)).map_err(ModifyError::Api)
                    } else {
                        Ok(obj)
                    }
                })
                .map_err(|e| modify_error(r, e))?;
            Ok(axum::Json(updated).into_response())
        }
        (Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let patch = parse_body(headers, body)?;
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let scope = if sub == Some("status") {
                UpdateScope::Status
            } else {
                UpdateScope::Main
            };
            let expected = patch
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            let updated = st
                .store
                .modify(r, ns, name, expected.as_deref(), scope, |current| {
                    let mut next = current.clone();
                    if ct.contains("json-patch") {
                        json_patch(&mut next, &patch)
                            .map_err(|e| ModifyError::Api(ApiError::bad_request(e)))?;
                    } else {
                        merge_patch(&mut next, &patch);
                    }
                    if scope == UpdateScope::Main {
                        admission::admit(r, next, Some(current)).map_err(ModifyError::Api)
                    } else {
                        Ok(next)
                    }
                })
                .map_err(|e| modify_error(r, e))?;
            Ok(axum::Json(updated).into_response())
        }
        (Method::DELETE, Some(name), None) => {
            let gone = st.store.delete(r, ns, name).map_err(store_err)?;
            Ok(axum::Json(gone).into_response())
        }
        (Method::GET, Some(name), Some("status")) => {
            Ok(axum::Json(st.store.get(r, ns, name).map_err(store_err)?).into_response())
        }
        (m, Some(name), Some("scale")) if r == DEPLOYMENT => scale(st, ns, name, &m, headers, body),
        (Method::GET, Some(name), Some("log")) if r == POD => {
            st.store.get(r, ns, name).map_err(store_err)?;
            let path = st
                .log_dir
                .join(format!("{}_{name}.log", ns.unwrap_or("default")));
            let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
            let text = match q.tail_lines {
                Some(n) => {
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
                }
                None => text,
            };
            Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
        }
        (m, _, Some(sub)) => Err(ApiError::no_such_resource(&format!(
            "{m} {}/{sub}",
            r.plural
        ))),
        (m, _, None) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on this path"
        ))),
    }
}

/// `deployments/{name}/scale`: an autoscaling/v1 Scale over `spec.replicas`.
fn scale(
    st: &ApiState,
    ns: Option<&str>,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let to_scale = |d: &Value| {
        let selector = d
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": d["metadata"]["name"], "namespace": d["metadata"]["namespace"], "resourceVersion": d["metadata"]["resourceVersion"], "uid": d["metadata"]["uid"]},
            "spec": {"replicas": d.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
            "status": {"replicas": d.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
        })
    };
    if method == Method::GET {
        let d = st
            .store
            .get(DEPLOYMENT, ns, name)
            .map_err(|e| ApiError::from_store(DEPLOYMENT, e))?;
        return Ok(axum::Json(to_scale(&d)).into_response());
    }
    let patch = parse_body(headers, body)?;
    let replicas = patch
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("spec.replicas: Required value"))?;
    if replicas < 0 {
        return Err(ApiError::bad_request(format!(
            "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
        )));
    }
    let expected = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let d = st
        .store
        .modify(
            DEPLOYMENT,
            ns,
            name,
            expected.as_deref().filter(|_| method == Method::PUT),
            UpdateScope::Main,
            |cur| {
                let mut next = cur.clone();
                next["spec"]["replicas"] = json!(replicas);
                Ok::<_, StoreError>(next)
            },
        )
        .map_err(|e| ApiError::from_store(DEPLOYMENT, e))?;
    Ok(axum::Json(to_scale(&d)).into_response())
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// RFC 6902 JSON patch (add, remove, replace, test).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for (i, op) in ops.iter().enumerate() {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or(format!("operation {i} has no op"))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or(format!("operation {i} has no path"))?;
        let (parent_path, last) = path
            .rsplit_once('/')
            .ok_or(format!("operation {i}: invalid path {path:?}"))?;
        let last = last.replace("~1", "/").replace("~0", "~");
        match kind {
            "test" => {
                if target.pointer(path) != op.get("value") {
                    return Err(format!("operation {i}: test failed at {path}"));
                }
            }
            "remove" | "add" | "replace" => {
                let parent = target
                    .pointer_mut(parent_path)
                    .ok_or(format!("operation {i}: no such path {parent_path:?}"))?;
                match parent {
                    Value::Object(o) => {
                        if kind == "remove" {
                            o.remove(&last)
                                .ok_or(format!("operation {i}: nothing at {path}"))?;
                        } else {
                            o.insert(last, op.get("value").cloned().unwrap_or(Value::Null));
                        }
                    }
                    Value::Array(a) => {
                        let idx = if last == "-" {
                            a.len()
                        } else {
                            last.parse()
                                .map_err(|_| format!("operation {i}: bad index {last:?}"))?
                        };
                        match kind {
                            "remove" if idx < a.len() => {
                                a.remove(idx);
                            }
                            "replace" if idx < a.len() => {
                                a[idx] = op.get("value").cloned().unwrap_or(Value::Null)
                            }
                            "add" if idx <= a.len() => {
                                a.insert(idx, op.get("value").cloned().unwrap_or(Value::Null))
                            }
                            _ => return Err(format!("operation {i}: index {idx} out of range")),
                        }
                    }
                    _ => return Err(format!("operation {i}: {parent_path:?} is not a container")),
                }
            }
            other => return Err(format!("operation {i}: unsupported op {other:?}")),
        }
    }
    Ok(())
}

/// A watch: newline-delimited `{"type": ..., "object": ...}` events.
async fn watch(
    st: &ApiState,
    r: Resource,
    namespace: Option<String>,
    selector: LabelSelector,
    q: &ListParams,
) -> Result<Response, ApiError> {
    // Subscribe first so nothing between the snapshot and the stream is lost.
    let rx = st.store.subscribe();
    let since: u64 = q
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut initial: Vec<Value> = Vec::new();
    let start_rv;
    if since == 0 {
        let (items, rv) = st
            .store
            .list(r, namespace.as_deref(), &selector)
            .map_err(|e| ApiError::from_store(r, e))?;
        initial.extend(
            items
                .into_iter()
                .map(|o| json!({"type": "ADDED", "object": o})),
        );
        start_rv = rv;
    } else {
        let events = st
            .store
            .events_since(since)
            .map_err(|e| ApiError::from_store(r, e))?;
        start_rv = events.last().map_or(since, |e| e.resource_version);
        for e in events {
            if e.resource == r
                && namespace
                    .as_deref()
                    .is_none_or(|ns| e.namespace() == Some(ns))
                && selector.matches(&e.object)
            {
                initial.push(json!({"type": e.type_.as_str(), "object": *e.object}));
            }
        }
    }
    if q.allow_watch_bookmarks == Some(true) {
        initial.push(json!({"type": "BOOKMARK", "object": {"kind": r.kind, "apiVersion": r.api_version(), "metadata": {"resourceVersion": start_rv.to_string()}}}));
    }
    let live = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |e| {
        let namespace = namespace.clone();
        let selector = selector.clone();
        async move {
            let e = e.ok()?;
            let wanted = e.resource == r
                && e.resource_version > start_rv
                && namespace
                    .as_deref()
                    .is_none_or(|ns| e.namespace() == Some(ns))
                && (selector.matches(&e.object)
                    || e.type_ == EventType::Deleted && selector.matches(&e.object));
            wanted.then(|| json!({"type": e.type_.as_str(), "object": *e.object}))
        }
    });
    let stream = futures::stream::iter(initial)
        .chain(live)
        .map(|v| Ok::<_, std::convert::Infallible>(Bytes::from(format!("{v}\n"))));
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}
