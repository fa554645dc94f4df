//! kubectl-like commands against the embedded daemon: `apply`, `get`, `describe`, `delete`,
//! `logs`, and `up` itself.

pub mod describe;
pub mod jsonpath;
pub mod table;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tidal_store::Resource;
use tidal_store::resource;

/// Where the daemon listens by default (kubectl proxy's port: plain HTTP on loopback).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8001";

/// Connection flags shared by the client commands.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// The daemon's API address.
    #[arg(long, env = "TIDAL_SERVER", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// Namespace (default `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

/// A small blocking client for the daemon's API.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for `server`.
    pub fn new(server: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            base: server.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> anyhow::Result<(u16, Value, Vec<String>)> {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("content-type", content_type)
                .send(b.to_string()),
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("content-type", content_type)
                .send(b.to_string()),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&url)
                .header("content-type", content_type)
                .send(b.to_string()),
            _ => bail!("unsupported request {method} {path}"),
        };
        let mut resp = result.map_err(|e| {
            anyhow!(
                "cannot reach the Tidal API at {}: {e} (is `tidal up` running?)",
                self.base
            )
        })?;
        let status = resp.status().as_u16();
        let warnings = resp
            .headers()
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value, warnings))
    }

    /// GET returning the body as text (logs).
    pub fn get_text(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| anyhow!("cannot reach the Tidal API at {}: {e}", self.base))?;
        Ok((
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap_or_default(),
        ))
    }
}

fn status_message(v: &Value) -> String {
    v.get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

fn object_path(r: Resource, ns: &str, name: &str) -> String {
    format!("{}/{name}", r.collection_path(Some(ns)))
}

/// `tidal apply -f`: create what is missing, update what differs, as kubectl reports it.
pub fn apply(conn: &Conn, files: &[String]) -> anyhow::Result<ExitCode> {
    let client = Client::new(&conn.server);
    let mut ok = true;
    for (source, doc) in read_documents(files)? {
        let doc = match doc {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {source}: {e}");
                ok = false;
                continue;
            }
        };
        let (api_version, kind) = (doc.api_version().to_string(), doc.kind().to_string());
        let Some(r) = resource::by_kind(&api_version, &kind) else {
            eprintln!(
                "error: {source}: resource mapping not found for name: {:?}: no matches for kind {kind:?} in version {api_version:?}",
                doc.name()
            );
            ok = false;
            continue;
        };
        let ns = doc
            .value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(conn.namespace.clone())
            .unwrap_or_else(|| "default".into());
        let name = doc.name().to_string();
        let (status, existing, _) = client.send("GET", &object_path(r, &ns, &name), None, "")?;
        let (verb, result) = if status == 404 {
            (
                "created",
                client.send(
                    "POST",
                    &r.collection_path(Some(&ns)),
                    Some(&doc.value),
                    "application/json",
                )?,
            )
        } else if status == 200 {
            let mut next = existing.clone();
            for key in ["spec", "data"] {
                if let Some(v) = doc.value.get(key) {
                    next[key] = v.clone();
                }
            }
            for key in ["labels", "annotations"] {
                if let Some(v) = doc.value.pointer(&format!("/metadata/{key}")) {
                    next["metadata"][key] = v.clone();
                }
            }
            let res = client.send(
                "PUT",
                &object_path(r, &ns, &name),
                Some(&next),
                "application/json",
            )?;
            let unchanged = res.0 == 200
                && res.1.pointer("/metadata/resourceVersion")
                    == existing.pointer("/metadata/resourceVersion");
            (if unchanged { "unchanged" } else { "configured" }, res)
        } else {
            eprintln!("error: {}", status_message(&existing));
            ok = false;
            continue;
        };
        for w in &result.2 {
            eprintln!(
                "Warning: {}",
                w.trim_start_matches("299 - ").trim_matches('"')
            );
        }
        if (200..300).contains(&result.0) {
            println!("{}/{name} {verb}", r.qualified_singular());
        } else {
            eprintln!(
                "Error from server ({}): error when applying {source}: {}",
                result
                    .1
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown"),
                status_message(&result.1)
            );
            ok = false;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_documents(
    files: &[String],
) -> anyhow::Result<Vec<(String, Result<tidal_api::RawDocument, String>)>> {
    let mut out = Vec::new();
    for f in files {
        let (source, text) = if f == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            ("STDIN".to_string(), s)
        } else {
            (
                f.clone(),
                std::fs::read_to_string(f)
                    .with_context(|| format!("the path {f:?} cannot be read"))?,
            )
        };
        for d in tidal_api::split_documents(&text) {
            out.push((source.clone(), d.map_err(|e| e.to_string())));
        }
    }
    Ok(out)
}

fn lookup(kind: &str) -> anyhow::Result<Resource> {
    resource::lookup(kind)
        .ok_or_else(|| anyhow!("the server doesn't have a resource type {kind:?}"))
}

/// Output formats of `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A table.
    Table,
    /// A table with extra columns.
    Wide,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// `kind/name`.
    Name,
    /// A JSONPath template.
    JsonPath(String),
}

impl std::str::FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "wide" => Output::Wide,
            "yaml" => Output::Yaml,
            "json" => Output::Json,
            "name" => Output::Name,
            other => match other.strip_prefix("jsonpath=") {
                Some(t) => Output::JsonPath(t.to_string()),
                None => {
                    return Err(format!(
                        "unable to match a printer suitable for the output format {other:?}, allowed formats are: json,jsonpath,name,wide,yaml"
                    ));
                }
            },
        })
    }
}

/// `tidal get KIND [NAME]`.
pub fn get(
    conn: &Conn,
    kind: &str,
    name: Option<&str>,
    output: &Output,
    all_namespaces: bool,
    selector: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(&conn.server);
    let r = lookup(kind)?;
    let ns = conn.namespace.clone().unwrap_or_else(|| "default".into());
    let (status, body, _) = match name {
        Some(n) => client.send("GET", &object_path(r, &ns, n), None, "")?,
        None => {
            let mut path = r.collection_path(if all_namespaces { None } else { Some(&ns) });
            if let Some(sel) = selector {
                path.push_str(&format!("?labelSelector={}", urlencode(sel)));
            }
            client.send("GET", &path, None, "")?
        }
    };
    if status != 200 {
        eprintln!(
            "Error from server ({}): {}",
            body.get("reason")
                .and_then(Value::as_str)
                .unwrap_or("Unknown"),
            status_message(&body)
        );
        return Ok(ExitCode::FAILURE);
    }
    let items: Vec<Value> = match name {
        Some(_) => vec![body.clone()],
        None => body
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    };
    let mut out = std::io::stdout().lock();
    match output {
        Output::Yaml => write!(
            out,
            "{}",
            serde_norway::to_string(&if name.is_some() { body } else { list(r, items) })?
        )?,
        Output::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&if name.is_some() { body } else { list(r, items) })?
        )?,
        Output::Name => {
            for i in &items {
                writeln!(
                    out,
                    "{}/{}",
                    r.qualified_singular(),
                    i.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                )?;
            }
        }
        Output::JsonPath(t) => {
            let root = if name.is_some() { body } else { list(r, items) };
            writeln!(
                out,
                "{}",
                jsonpath::render(t, &root)
                    .map_err(|e| anyhow!("error executing jsonpath {t:?}: {e}"))?
            )?;
        }
        Output::Table | Output::Wide => {
            if items.is_empty() {
                eprintln!("No resources found in {ns} namespace.");
                return Ok(ExitCode::SUCCESS);
            }
            let (mut headers, mut rows) = table::rows(
                r,
                &items,
                *output == Output::Wide,
                std::time::SystemTime::now(),
            );
            if all_namespaces && r.namespaced {
                headers.insert(0, "NAMESPACE");
                for (row, item) in rows.iter_mut().zip(&items) {
                    row.insert(
                        0,
                        item.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
            write!(out, "{}", table::format(&headers, &rows))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(r: Resource, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items, "_kind": r.kind})
        .as_object()
        .map(|o| {
            let mut o = o.clone();
            o.remove("_kind");
            Value::Object(o)
        })
        .unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `tidal describe KIND NAME`.
pub fn describe(conn: &Conn, kind: &str, name: &str) -> anyhow::Result<ExitCode> {
    let client = Client::new(&conn.server);
    let r = lookup(kind)?;
    let ns = conn.namespace.clone().unwrap_or_else(|| "default".into());
    let (status, body, _) = client.send("GET", &object_path(r, &ns, name), None, "")?;
    if status != 200 {
        eprintln!(
            "Error from server ({}): {}",
            body.get("reason")
                .and_then(Value::as_str)
                .unwrap_or("Unknown"),
            status_message(&body)
        );
        return Ok(ExitCode::FAILURE);
    }
    let (_, events, _) =
        client.send("GET", &resource::EVENT.collection_path(Some(&ns)), None, "")?;
    let uid = body.pointer("/metadata/uid").cloned();
    let mine: Vec<Value> = events
        .get("items")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|e| {
                    e.pointer("/involvedObject/uid").cloned() == uid
                        || (e.pointer("/involvedObject/name").and_then(Value::as_str) == Some(name)
                            && e.pointer("/involvedObject/kind").and_then(Value::as_str)
                                == Some(r.kind))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut mine = mine;
    mine.sort_by_key(|e| {
        (
            e.get("lastTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            e.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        )
    });
    print!("{}", describe::describe(&body, &mine));
    Ok(ExitCode::SUCCESS)
}

/// `tidal delete KIND NAME` or `tidal delete -f FILE`.
pub fn delete(
    conn: &Conn,
    kind: Option<&str>,
    name: Option<&str>,
    files: &[String],
) -> anyhow::Result<ExitCode> {
    let client = Client::new(&conn.server);
    let mut targets: Vec<(Resource, String, String)> = Vec::new();
    let default_ns = conn.namespace.clone().unwrap_or_else(|| "default".into());
    if !files.is_empty() {
        for (source, doc) in read_documents(files)? {
            let doc = doc.map_err(|e| anyhow!("{source}: {e}"))?;
            let r = resource::by_kind(doc.api_version(), doc.kind())
                .ok_or_else(|| anyhow!("{source}: no matches for kind {:?}", doc.kind()))?;
            let ns = doc
                .value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map_or(default_ns.clone(), str::to_string);
            targets.push((r, ns, doc.name().to_string()));
        }
    } else {
        let (Some(kind), Some(name)) = (kind, name) else {
            bail!("give KIND NAME or -f FILE")
        };
        targets.push((lookup(kind)?, default_ns, name.to_string()));
    }
    let mut ok = true;
    for (r, ns, name) in targets {
        let (status, body, _) = client.send("DELETE", &object_path(r, &ns, &name), None, "")?;
        if status == 200 {
            println!("{} {name:?} deleted", r.qualified_singular());
        } else {
            eprintln!(
                "Error from server ({}): {}",
                body.get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown"),
                status_message(&body)
            );
            ok = false;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `tidal logs POD`.
pub fn logs(conn: &Conn, pod: &str, tail: Option<usize>) -> anyhow::Result<ExitCode> {
    let client = Client::new(&conn.server);
    let ns = conn.namespace.clone().unwrap_or_else(|| "default".into());
    let pod = pod
        .strip_prefix("pod/")
        .or_else(|| pod.strip_prefix("pods/"))
        .unwrap_or(pod);
    let mut path = format!("{}/{pod}/log", resource::POD.collection_path(Some(&ns)));
    if let Some(n) = tail {
        path.push_str(&format!("?tailLines={n}"));
    }
    let (status, text) = client.get_text(&path)?;
    if status != 200 {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        eprintln!(
            "Error from server ({}): {}",
            v.get("reason").and_then(Value::as_str).unwrap_or("Unknown"),
            status_message(&v)
        );
        return Ok(ExitCode::FAILURE);
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
