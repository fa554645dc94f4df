//! Kubernetes Events (`v1 Event`), which `tidal describe` lists under the object they concern.

use serde_json::{Value, json};
use tidal_store::Store;
use tidal_store::resource::EVENT;

/// Records one event about `involved` (a stored object). Failures are logged, never fatal:
/// events are informational.
pub fn record(
    store: &Store,
    involved: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let meta = &involved["metadata"];
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let now = tidal_store::time::now();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{}", tidal_store::random_suffix(10)), "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion").cloned().unwrap_or(Value::Null),
            "kind": involved.get("kind").cloned().unwrap_or(Value::Null),
            "name": name,
            "namespace": namespace,
            "uid": meta.get("uid").cloned().unwrap_or(Value::Null),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    if let Err(e) = store.create(EVENT, Some(namespace), event) {
        tracing::debug!(error = %e, "Cannot record event");
    }
}
