//! `tidal get` tables: the columns kubectl prints for each kind (KEDA's and KServe's printer
//! columns for their kinds).

use std::time::SystemTime;

use serde_json::Value;
use tidal_store::Resource;

use super::jsonpath;

fn s(v: &Value, path: &str) -> String {
    jsonpath::eval(path, v)
        .unwrap_or_default()
        .iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn age(v: &Value, now: SystemTime) -> String {
    v.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(tidal_store::time::parse_rfc3339)
        .map(|t| tidal_store::time::age(t, now))
        .unwrap_or_else(|| "<unknown>".into())
}

fn condition(v: &Value, type_: &str) -> String {
    let c = s(
        v,
        &format!(".status.conditions[?(@.type=='{type_}')].status"),
    );
    if c.is_empty() { "Unknown".into() } else { c }
}

/// Column headers and one row per object.
pub fn rows(
    r: Resource,
    items: &[Value],
    wide: bool,
    now: SystemTime,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut headers: Vec<&'static str> = match r.kind {
        "InferenceService" => vec![
            "NAME",
            "URL",
            "READY",
            "PREV",
            "LATEST",
            "PREVROLLEDOUTREVISION",
            "LATESTREADYREVISION",
            "AGE",
        ],
        "ScaledObject" => vec![
            "NAME",
            "SCALETARGETKIND",
            "SCALETARGETNAME",
            "MIN",
            "MAX",
            "TRIGGERS",
            "AUTHENTICATION",
            "READY",
            "ACTIVE",
            "FALLBACK",
            "PAUSED",
            "AGE",
        ],
        "Deployment" => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "Service" => vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        "HorizontalPodAutoscaler" => vec![
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE",
        ],
        "Event" => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "ServingRuntime" | "ClusterServingRuntime" => {
            vec!["NAME", "DISABLED", "MODELTYPE", "CONTAINERS", "AGE"]
        }
        _ => vec!["NAME", "AGE"],
    };
    if wide {
        match r.kind {
            "Pod" => headers.extend(["IP", "PORT", "NODE"]),
            "Deployment" => headers.extend(["CONTAINERS", "IMAGES", "SELECTOR"]),
            "Service" => headers.push("SELECTOR"),
            _ => {}
        }
    }
    let rows = items
        .iter()
        .map(|v| {
            let name = s(v, ".metadata.name");
            let mut row = match r.kind {
                "InferenceService" => vec![
                    name,
                    s(v, ".status.url"),
                    condition(v, "Ready"),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    age(v, now),
                ],
                "ScaledObject" => vec![
                    name,
                    s(v, ".status.scaleTargetKind"),
                    s(v, ".spec.scaleTargetRef.name"),
                    s(v, ".spec.minReplicaCount"),
                    s(v, ".spec.maxReplicaCount"),
                    s(v, ".spec.triggers[*].type"),
                    s(v, ".spec.triggers[*].authenticationRef.name"),
                    condition(v, "Ready"),
                    condition(v, "Active"),
                    condition(v, "Fallback"),
                    condition(v, "Paused"),
                    age(v, now),
                ],
                "Deployment" => {
                    let ready = v
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let want = v
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    vec![
                        name,
                        format!("{ready}/{want}"),
                        v.pointer("/status/updatedReplicas")
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                            .to_string(),
                        v.pointer("/status/availableReplicas")
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                            .to_string(),
                        age(v, now),
                    ]
                }
                "Pod" => {
                    let ready = s(v, ".status.containerStatuses[*].ready") == "true";
                    let waiting = s(v, ".status.containerStatuses[0].state.waiting.reason");
                    let terminating =
                        !s(v, ".status.containerStatuses[0].state.terminated.reason").is_empty();
                    let status = if terminating {
                        "Terminating".into()
                    } else if !waiting.is_empty() {
                        waiting
                    } else {
                        s(v, ".status.phase")
                    };
                    vec![
                        name,
                        format!("{}/1", ready as u8),
                        status,
                        v.pointer("/status/containerStatuses/0/restartCount")
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                            .to_string(),
                        age(v, now),
                    ]
                }
                "Service" => {
                    let ports = v
                        .pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .map(|ps| {
                            ps.iter()
                                .map(|p| {
                                    format!(
                                        "{}/{}",
                                        s(p, ".port"),
                                        p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    vec![
                        name,
                        "ClusterIP".into(),
                        "127.0.0.1".into(),
                        "<none>".into(),
                        ports,
                        age(v, now),
                    ]
                }
                "HorizontalPodAutoscaler" => {
                    let targets = v
                        .pointer("/spec/metrics")
                        .and_then(Value::as_array)
                        .map(|ms| {
                            ms.iter()
                                .map(|m| {
                                    let name = s(m, ".resource.name");
                                    let t = s(m, ".resource.target.averageUtilization");
                                    if t.is_empty() {
                                        format!(
                                            "{name}: <unknown>/{}",
                                            s(m, ".resource.target.averageValue")
                                        )
                                    } else {
                                        format!("{name}: <unknown>/{t}%")
                                    }
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    vec![
                        name,
                        format!(
                            "{}/{}",
                            s(v, ".spec.scaleTargetRef.kind"),
                            s(v, ".spec.scaleTargetRef.name")
                        ),
                        targets,
                        s(v, ".spec.minReplicas"),
                        s(v, ".spec.maxReplicas"),
                        v.pointer("/status/currentReplicas")
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                            .to_string(),
                        age(v, now),
                    ]
                }
                "Event" => vec![
                    v.get("lastTimestamp")
                        .and_then(Value::as_str)
                        .and_then(tidal_store::time::parse_rfc3339)
                        .map(|t| tidal_store::time::age(t, now))
                        .unwrap_or_default(),
                    s(v, ".type"),
                    s(v, ".reason"),
                    format!(
                        "{}/{}",
                        s(v, ".involvedObject.kind").to_lowercase(),
                        s(v, ".involvedObject.name")
                    ),
                    s(v, ".message"),
                ],
                "ServingRuntime" | "ClusterServingRuntime" => vec![
                    name,
                    s(v, ".spec.disabled"),
                    s(v, ".spec.supportedModelFormats[0].name"),
                    s(v, ".spec.containers[*].name"),
                    age(v, now),
                ],
                _ => vec![name, age(v, now)],
            };
            if wide {
                match r.kind {
                    "Pod" => row.extend([
                        s(v, ".status.podIP"),
                        v.pointer("/metadata/annotations/tidal.dev~1port")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        "localhost".into(),
                    ]),
                    "Deployment" => row.extend([
                        s(v, ".spec.template.spec.containers[*].name"),
                        s(v, ".spec.template.spec.containers[*].image"),
                        s(v, ".spec.selector.matchLabels.app")
                            .chars()
                            .next()
                            .map_or(String::new(), |_| {
                                format!("app={}", s(v, ".spec.selector.matchLabels.app"))
                            }),
                    ]),
                    "Service" => row.push(format!("app={}", s(v, ".spec.selector.app"))),
                    _ => {}
                }
            }
            row
        })
        .collect();
    (headers, rows)
}

/// Aligns columns as kubectl's tabwriter does (three spaces between columns).
pub fn format(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}
