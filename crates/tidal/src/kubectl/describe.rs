//! `tidal describe`: kubectl's generic describer (the one it uses for custom resources): every
//! field as `Title Case:  value`, nested blocks indented, then the object's Events.

use serde_json::Value;

/// `maxReplicaCount` → `Max Replica Count`; map keys such as `value` → `Value`.
pub fn title(key: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = key.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
            continue;
        }
        let prev = chars[i - 1];
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        if c.is_uppercase() && (prev.is_lowercase() || (prev.is_uppercase() && next_lower)) {
            out.push(' ');
        }
        out.push(*c);
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

/// Writes `value` under `indent`.
fn block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            // Keys sorted, as the API server serializes objects and kubectl prints them.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let width = entries
                .iter()
                .filter(|(_, v)| is_scalar(v))
                .map(|(k, _)| title(k).len() + 1)
                .max()
                .unwrap_or(0);
            for (k, v) in entries {
                let key = format!("{}:", title(k));
                if is_scalar(v) {
                    out.push_str(&format!("{pad}{key:<w$}  {}\n", scalar(v), w = width));
                } else if v.as_array().is_some_and(Vec::is_empty)
                    || v.as_object().is_some_and(|o| o.is_empty())
                {
                    out.push_str(&format!("{pad}{key}\n"));
                } else {
                    out.push_str(&format!("{pad}{key}\n"));
                    block(out, v, indent + 2);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_scalar(item) {
                    out.push_str(&format!("{pad}{}\n", scalar(item)));
                } else {
                    block(out, item, indent);
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// The description of one object, and its events (`Event` objects whose involvedObject it is).
pub fn describe(obj: &Value, events: &[Value]) -> String {
    let meta = &obj["metadata"];
    let mut out = String::new();
    let kv = |m: &Value| -> Vec<String> {
        m.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={}", scalar(v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let list = |label: &str, items: Vec<String>, out: &mut String| {
        if items.is_empty() {
            out.push_str(&format!("{:<14}<none>\n", format!("{label}:")));
        } else {
            for (i, item) in items.iter().enumerate() {
                let head = if i == 0 {
                    format!("{label}:")
                } else {
                    String::new()
                };
                out.push_str(&format!("{head:<14}{item}\n"));
            }
        }
    };
    out.push_str(&format!("{:<14}{}\n", "Name:", scalar(&meta["name"])));
    if let Some(ns) = meta.get("namespace") {
        out.push_str(&format!("{:<14}{}\n", "Namespace:", scalar(ns)));
    }
    list("Labels", kv(&meta["labels"]), &mut out);
    list(
        "Annotations",
        kv(&meta["annotations"])
            .into_iter()
            .map(|a| a.replacen('=', ": ", 1))
            .collect(),
        &mut out,
    );
    out.push_str(&format!(
        "{:<14}{}\n",
        "API Version:",
        scalar(&obj["apiVersion"])
    ));
    out.push_str(&format!("{:<14}{}\n", "Kind:", scalar(&obj["kind"])));
    let mut rest = obj.clone();
    if let Some(o) = rest.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["name", "namespace", "labels", "annotations"] {
                m.remove(k);
            }
        }
    }
    block(&mut out, &rest, 0);
    if events.is_empty() {
        out.push_str("Events:       <none>\n");
    } else {
        out.push_str(
            "Events:\n  Type    Reason  Age  From  Message\n  ----    ------  ---  ----  -------\n",
        );
        let now = std::time::SystemTime::now();
        for e in events {
            let age = e
                .get("lastTimestamp")
                .or_else(|| e.get("firstTimestamp"))
                .and_then(Value::as_str)
                .and_then(tidal_store::time::parse_rfc3339)
                .map(|t| tidal_store::time::age(t, now))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {}  {}  {}  {}  {}\n",
                scalar(&e["type"]),
                scalar(&e["reason"]),
                age,
                e.pointer("/source/component")
                    .map(scalar)
                    .unwrap_or_default(),
                scalar(&e["message"])
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_match_kubectl() {
        assert_eq!(title("maxReplicaCount"), "Max Replica Count");
        assert_eq!(title("scaleTargetRef"), "Scale Target Ref");
        assert_eq!(title("value"), "Value");
        assert_eq!(title("apiVersion"), "Api Version");
        assert_eq!(title("podIP"), "Pod IP");
    }
}
