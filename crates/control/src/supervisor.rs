//! The replica supervisor: makes the running processes match each Deployment's `replicas`, the
//! embedded stand-in for the Deployment controller and the kubelet.
//!
//! A replica is a process. A container whose image is one of KServe's built-in model servers
//! (`kserve/sklearnserver`, `kserve/huggingfaceserver`) runs as `tidal serve` with the
//! container's arguments; the storage initializer's source URI becomes `--storage_uri` (a local
//! path is served in place). Any other container runs its `command` and `args` with its `env`,
//! plus `PORT` (the embedded stand-in for a container image). Each replica gets its own port and a
//! Pod object named as Kubernetes names them, with phase, readiness (from the runtime's ready
//! endpoint, or a TCP connect), restart count and a log file. Crashed replicas restart with
//! back-off; removal sends SIGTERM and, after the grace period, SIGKILL.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidal_store::resource::{DEPLOYMENT, POD};
use tidal_store::{LabelSelector, Store, StoreError, UpdateScope};
use tokio::process::{Child, Command};

/// Annotation carrying a replica's port (where the gateway and the autoscaler reach it).
pub const PORT_ANNOTATION: &str = "tidal.dev/port";
/// Annotation carrying a replica's process id.
pub const PID_ANNOTATION: &str = "tidal.dev/pid";
/// Images that run as `tidal serve`.
pub const NATIVE_IMAGES: &[&str] = &["kserve/sklearnserver", "kserve/huggingfaceserver"];

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How to start one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// How readiness is checked.
    pub probe: Probe,
}

/// Readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// HTTP GET returns 200.
    Http(String),
    /// A TCP connect succeeds.
    Tcp,
}

/// Whole cores of a container's CPU limit (or, without one, its request), rounded up.
fn cpu_threads(container: &Value) -> Option<u64> {
    let cpu = container
        .pointer("/resources/limits/cpu")
        .or_else(|| container.pointer("/resources/requests/cpu"))
        .and_then(Value::as_str)?
        .parse::<tidal_api::quantity::Quantity>()
        .ok()?;
    let millis = u64::try_from(cpu.millis()).ok()?;
    Some(millis.div_ceil(1000).max(1))
}

/// Works out how to run a pod template as a local process on `port`.
pub fn launch_for(
    template: &Value,
    port: u16,
    tidal: &Path,
    model_cache: &Path,
) -> Result<Launch, String> {
    let spec = template.get("spec").ok_or("the pod template has no spec")?;
    let container = spec
        .pointer("/containers/0")
        .ok_or("the pod template has no containers")?;
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut env: Vec<(String, String)> = container
        .get("env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((
                        e.get("name")?.as_str()?.to_string(),
                        e.get("value")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let repository = image
        .split('@')
        .next()
        .unwrap_or_default()
        .rsplit_once(':')
        .map_or(image, |(r, _)| r);
    let source_uri = spec
        .get("initContainers")
        .and_then(Value::as_array)
        .and_then(|inits| {
            inits
                .iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some("storage-initializer"))
        })
        .and_then(|c| c.pointer("/args/0"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if NATIVE_IMAGES
        .iter()
        .any(|n| repository == *n || repository.ends_with(&format!("/{n}")))
    {
        let mut args = vec!["serve".to_string()];
        for a in strings(container.get("args")) {
            if a.starts_with("--http_port") || a.starts_with("--http-port") {
                continue;
            }
            if (a.starts_with("--model_dir") || a.starts_with("--model-dir"))
                && source_uri.is_some()
            {
                continue;
            }
            args.push(a);
        }
        if let Some(uri) = source_uri {
            let local = uri.strip_prefix("file://").unwrap_or(&uri);
            if uri.contains("://") && !uri.starts_with("file://") {
                args.push(format!("--storage_uri={uri}"));
                args.push(format!("--model_dir={}", model_cache.display()));
            } else {
                args.push(format!("--model_dir={local}"));
            }
        }
        args.push(format!("--http_port={port}"));
        args.push("--host=127.0.0.1".into());
        // In a pod, the CPU limit caps the threads that can run; a process here sees every
        // core. Size the model's compute pool (candle reads RAYON_NUM_THREADS) to the limit,
        // so replicas sharing a machine do not spin-wait on each other's cores.
        if let Some(threads) = cpu_threads(container)
            && !env.iter().any(|(k, _)| k == "RAYON_NUM_THREADS")
        {
            env.push(("RAYON_NUM_THREADS".into(), threads.to_string()));
        }
        return Ok(Launch {
            program: tidal.to_path_buf(),
            args,
            env,
            probe: Probe::Http("/v2/health/ready".into()),
        });
    }
    let command = strings(container.get("command"));
    if let Some((program, rest)) = command.split_first() {
        let mut args = rest.to_vec();
        args.extend(strings(container.get("args")));
        env.push(("PORT".into(), port.to_string()));
        return Ok(Launch {
            program: PathBuf::from(program),
            args,
            env,
            probe: Probe::Tcp,
        });
    }
    Err(format!(
        "image {image:?} cannot run in embedded mode: Tidal runs {} natively, and custom containers need a command",
        NATIVE_IMAGES.join(" and ")
    ))
}

/// A stable short hash of a pod template (Kubernetes' pod-template-hash).
pub fn template_hash(template: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut h);
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = h.finish();
    (0..10)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

struct Replica {
    namespace: String,
    name: String,
    deployment: String,
    hash: String,
    port: u16,
    launch: Result<Launch, String>,
    child: Option<Child>,
    restarts: u32,
    ready: bool,
    next_start: Instant,
    backoff: Duration,
    terminating: Option<Instant>,
    grace: Duration,
    log: PathBuf,
    last_status: Value,
}

/// The supervisor.
pub struct Supervisor {
    store: Arc<Store>,
    tidal: PathBuf,
    data_dir: PathBuf,
    log_dir: PathBuf,
    replicas: Vec<Replica>,
}

impl Supervisor {
    /// A supervisor running `tidal` (this executable) for native runtimes.
    pub fn new(store: Arc<Store>, tidal: PathBuf, data_dir: PathBuf) -> Self {
        let log_dir = data_dir.join("logs");
        let _ = std::fs::create_dir_all(&log_dir);
        Supervisor {
            store,
            tidal,
            data_dir,
            log_dir,
            replicas: Vec::new(),
        }
    }

    /// Where replica logs go.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Removes Pod objects left by a previous run (their processes ended with it) and stops any
    /// process that survived a crash of the daemon.
    pub fn clean_stale_pods(&self) {
        let Ok((pods, _)) = self.store.list(POD, None, &LabelSelector::default()) else {
            return;
        };
        for p in pods {
            if let Some(pid) = p
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    PID_ANNOTATION.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i32>().ok())
            {
                let cmdline =
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if cmdline.contains("serve") || cmdline.contains(&self.tidal.display().to_string())
                {
                    signal(pid, "KILL");
                }
            }
            let (ns, name) = tidal_store::namespace_and_name(&p);
            let _ = self.store.delete(POD, Some(ns), name);
        }
    }

    /// Runs until `stop`, then stops every replica gracefully.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        self.clean_stale_pods();
        let mut events = self.store.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
                e = events.recv() => {
                    if !matches!(e, Ok(ref e) if e.resource == DEPLOYMENT) { continue; }
                }
            }
            self.sync().await;
        }
        for r in &mut self.replicas {
            if r.terminating.is_none() {
                r.terminating = Some(Instant::now());
                if let Some(pid) = r.child.as_ref().and_then(Child::id) {
                    signal(pid as i32, "TERM");
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for r in &mut self.replicas {
            if let Some(child) = r.child.as_mut() {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
            }
            let _ = self.store.delete(POD, Some(&r.namespace), &r.name);
        }
    }

    /// One pass: reap, probe, scale, and write statuses.
    pub async fn sync(&mut self) {
        let Ok((deployments, _)) = self.store.list(DEPLOYMENT, None, &LabelSelector::default())
        else {
            return;
        };
        let mut wanted: BTreeMap<(String, String), (i64, String, Value, Value)> = BTreeMap::new();
        for d in &deployments {
            let (ns, name) = tidal_store::namespace_and_name(d);
            let (ns, name) = (ns.to_string(), name.to_string());
            let replicas = d
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let template = d.pointer("/spec/template").cloned().unwrap_or(Value::Null);
            wanted.insert(
                (ns, name),
                (replicas, template_hash(&template), template, d.clone()),
            );
        }
        self.reap_and_probe().await;

        // Scale each Deployment.
        for ((ns, dname), (replicas, hash, template, deployment)) in &wanted {
            let current: Vec<usize> = (0..self.replicas.len())
                .filter(|&i| {
                    let r = &self.replicas[i];
                    r.namespace == *ns && r.deployment == *dname && r.terminating.is_none()
                })
                .collect();
            let fresh: Vec<usize> = current
                .iter()
                .copied()
                .filter(|&i| self.replicas[i].hash == *hash)
                .collect();
            let stale: Vec<usize> = current
                .iter()
                .copied()
                .filter(|&i| self.replicas[i].hash != *hash)
                .collect();
            let want = (*replicas).max(0) as usize;
            if fresh.len() < want {
                for _ in fresh.len()..want {
                    self.start(ns, dname, hash, template, deployment);
                }
            } else if fresh.len() > want {
                // Not-ready replicas go first, then the newest.
                let mut victims = fresh.clone();
                victims.sort_by_key(|&i| (self.replicas[i].ready, std::cmp::Reverse(i)));
                for &i in victims.iter().take(fresh.len() - want) {
                    self.terminate(i);
                }
            }
            // A rollout: old replicas go once enough new ones are ready.
            let fresh_ready = fresh.iter().filter(|&&i| self.replicas[i].ready).count();
            if !stale.is_empty() && (fresh_ready >= want || want == 0) {
                for &i in &stale {
                    self.terminate(i);
                }
            }
        }
        // Replicas of Deployments that are gone.
        for i in 0..self.replicas.len() {
            let r = &self.replicas[i];
            if r.terminating.is_none()
                && !wanted.contains_key(&(r.namespace.clone(), r.deployment.clone()))
            {
                self.terminate(i);
            }
        }
        self.finish_terminations().await;
        self.write_statuses(&wanted);
    }

    fn start(&mut self, ns: &str, deployment: &str, hash: &str, template: &Value, owner: &Value) {
        let port = free_port();
        let name = format!("{deployment}-{hash}-{}", tidal_store::random_suffix(5));
        let cache = self.data_dir.join("models").join(ns).join(deployment);
        let launch = launch_for(template, port, &self.tidal, &cache);
        let log = self.log_dir.join(format!("{ns}_{name}.log"));
        let mut labels = template
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        labels["pod-template-hash"] = json!(hash);
        let mut annotations = template
            .pointer("/metadata/annotations")
            .cloned()
            .unwrap_or(json!({}));
        annotations[PORT_ANNOTATION] = json!(port.to_string());
        let grace = template
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30);
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": ns, "labels": labels, "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                                     "uid": owner.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                                     "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
            "status": {"phase": "Pending"},
        });
        let pod = match self.store.create(POD, Some(ns), pod) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pod = name, error = %e, "Cannot record pod");
                return;
            }
        };
        crate::events::record(
            &self.store,
            &pod,
            "Normal",
            "Scheduled",
            &format!("Successfully assigned {ns}/{name} to localhost"),
            "default-scheduler",
        );
        tracing::info!(pod = name, port, "Starting replica");
        self.replicas.push(Replica {
            namespace: ns.into(),
            name,
            deployment: deployment.into(),
            hash: hash.into(),
            port,
            launch,
            child: None,
            restarts: 0,
            ready: false,
            next_start: Instant::now(),
            backoff: Duration::from_secs(1),
            terminating: None,
            grace: Duration::from_secs(grace),
            log,
            last_status: Value::Null,
        });
    }

    fn terminate(&mut self, i: usize) {
        let r = &mut self.replicas[i];
        if r.terminating.is_some() {
            return;
        }
        tracing::info!(pod = r.name, "Stopping replica");
        if let Ok(pod) = self.store.get(POD, Some(&r.namespace), &r.name) {
            crate::events::record(
                &self.store,
                &pod,
                "Normal",
                "Killing",
                "Stopping container kserve-container",
                "kubelet",
            );
        }
        r.terminating = Some(Instant::now());
        r.ready = false;
        // Leave load balancing first: the Pod goes not-ready before the process is signalled.
        let _ = self.store.modify(
            POD,
            Some(&r.namespace),
            &r.name,
            None,
            UpdateScope::Status,
            |cur| {
                let mut next = cur.clone();
                next["status"]["conditions"] =
                    json!([{"type": "Ready", "status": "False", "reason": "Terminating"}]);
                Ok::<_, StoreError>(next)
            },
        );
        if let Some(pid) = r.child.as_ref().and_then(Child::id) {
            signal(pid as i32, "TERM");
        }
    }

    async fn finish_terminations(&mut self) {
        let mut done = Vec::new();
        for (i, r) in self.replicas.iter_mut().enumerate() {
            let Some(since) = r.terminating else { continue };
            let exited = match r.child.as_mut() {
                None => true,
                Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            };
            if exited {
                done.push(i);
            } else if since.elapsed() > r.grace
                && let Some(c) = r.child.as_mut()
            {
                let _ = c.start_kill();
            }
        }
        for i in done.into_iter().rev() {
            let r = self.replicas.remove(i);
            let _ = self.store.delete(POD, Some(&r.namespace), &r.name);
        }
    }

    async fn reap_and_probe(&mut self) {
        let now = Instant::now();
        for r in self.replicas.iter_mut().filter(|r| r.terminating.is_none()) {
            // Exited? Count a restart and back off.
            if let Some(c) = r.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                tracing::warn!(pod = r.name, %status, restarts = r.restarts + 1, "Replica exited; restarting");
                if let Ok(pod) = self.store.get(POD, Some(&r.namespace), &r.name) {
                    crate::events::record(
                        &self.store,
                        &pod,
                        "Warning",
                        "BackOff",
                        "Back-off restarting failed container kserve-container",
                        "kubelet",
                    );
                }
                r.child = None;
                r.ready = false;
                r.restarts += 1;
                r.next_start = now + r.backoff;
                r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
            }
            if r.child.is_none()
                && now >= r.next_start
                && let Ok(launch) = &r.launch
            {
                match spawn(launch, &r.log) {
                    Ok(child) => {
                        r.child = Some(child);
                        if let Ok(pod) = self.store.get(POD, Some(&r.namespace), &r.name) {
                            crate::events::record(
                                &self.store,
                                &pod,
                                "Normal",
                                "Started",
                                "Started container kserve-container",
                                "kubelet",
                            );
                        }
                    }
                    Err(e) => {
                        r.launch = Err(format!("cannot start {}: {e}", launch.program.display()))
                    }
                }
            }
            if let (Some(_), Ok(launch)) = (&r.child, &r.launch) {
                let was = r.ready;
                r.ready = probe(&launch.probe, r.port).await;
                if r.ready && !was {
                    tracing::info!(pod = r.name, port = r.port, "Replica ready");
                    r.backoff = Duration::from_secs(1);
                }
            }
        }
    }

    fn write_statuses(&mut self, wanted: &BTreeMap<(String, String), (i64, String, Value, Value)>) {
        for r in self.replicas.iter_mut() {
            let state = match (&r.launch, &r.child, r.terminating) {
                (Err(reason), _, _) => {
                    json!({"waiting": {"reason": "CreateContainerConfigError", "message": reason}})
                }
                (_, _, Some(_)) => json!({"terminated": {"reason": "Terminating"}}),
                (_, Some(_), None) => json!({"running": {}}),
                (_, None, None) => json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            };
            let phase = match (&r.launch, &r.child) {
                (Err(_), _) => "Failed",
                (_, Some(_)) => "Running",
                _ => "Pending",
            };
            let pid = r.child.as_ref().and_then(Child::id);
            let status = json!({
                "phase": phase,
                "podIP": "127.0.0.1",
                "hostIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": if r.ready { "True" } else { "False" }}],
                "containerStatuses": [{"name": "kserve-container", "ready": r.ready, "restartCount": r.restarts, "state": state}],
            });
            if status == r.last_status {
                continue;
            }
            r.last_status = status.clone();
            let _ = self.store.modify(
                POD,
                Some(&r.namespace),
                &r.name,
                None,
                UpdateScope::Main,
                |cur| {
                    let mut next = cur.clone();
                    if let Some(pid) = pid {
                        next["metadata"]["annotations"][PID_ANNOTATION] = json!(pid.to_string());
                    }
                    Ok::<_, StoreError>(next)
                },
            );
            let _ = self.store.modify(
                POD,
                Some(&r.namespace),
                &r.name,
                None,
                UpdateScope::Status,
                |cur| {
                    let mut next = cur.clone();
                    next["status"] = status;
                    Ok::<_, StoreError>(next)
                },
            );
        }
        for ((ns, name), (replicas, hash, _, d)) in wanted {
            let mine: Vec<&Replica> = self
                .replicas
                .iter()
                .filter(|r| r.namespace == *ns && r.deployment == *name)
                .collect();
            let ready = mine
                .iter()
                .filter(|r| r.ready && r.terminating.is_none())
                .count() as i64;
            let updated = mine
                .iter()
                .filter(|r| r.hash == *hash && r.terminating.is_none())
                .count() as i64;
            let total = mine.iter().filter(|r| r.terminating.is_none()).count() as i64;
            let available = if ready >= 1 || *replicas == 0 {
                "True"
            } else {
                "False"
            };
            let status = json!({
                "observedGeneration": d.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
                "replicas": total,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "updatedReplicas": updated,
                "conditions": [
                    {"type": "Available", "status": available,
                     "reason": if available == "True" { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }},
                    {"type": "Progressing", "status": "True",
                     "reason": if updated == *replicas && ready == *replicas { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }},
                ],
            });
            if d.get("status") != Some(&status) {
                let _ = self.store.modify(
                    DEPLOYMENT,
                    Some(ns),
                    name,
                    None,
                    UpdateScope::Status,
                    |cur| {
                        let mut next = cur.clone();
                        next["status"] = status;
                        Ok::<_, StoreError>(next)
                    },
                );
            }
        }
    }
}

fn spawn(launch: &Launch, log: &Path) -> std::io::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    cmd.spawn()
}

/// One readiness check with short timeouts (a raw HTTP/1.1 GET keeps this crate client-free).
async fn probe(p: &Probe, port: u16) -> bool {
    let connect = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    );
    let Ok(Ok(mut stream)) = connect.await else {
        return false;
    };
    match p {
        Probe::Tcp => true,
        Probe::Http(path) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let req =
                format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
            if stream.write_all(req.as_bytes()).await.is_err() {
                return false;
            }
            let mut buf = [0u8; 16];
            matches!(
                tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await,
                Ok(Ok(n)) if n >= 12 && &buf[9..12] == b"200"
            )
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Sends a signal with kill(1) (no libc binding needed in this crate).
fn signal(pid: i32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_threads_follow_the_cpu_limit() {
        let with = |resources: Value, env: Value| {
            let template = json!({"spec": {"containers": [{
                "image": "kserve/huggingfaceserver:latest",
                "args": ["--model_name=fbopt", "--model_id=facebook/opt-125m"],
                "resources": resources, "env": env}]}});
            launch_for(&template, 1, Path::new("t"), Path::new("/c"))
                .unwrap()
                .env
                .into_iter()
                .find(|(k, _)| k == "RAYON_NUM_THREADS")
                .map(|(_, v)| v)
        };
        // The seed's huggingface container: limits.cpu "1".
        assert_eq!(
            with(
                json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}),
                json!([])
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            with(json!({"limits": {"cpu": "1500m"}}), json!([])).as_deref(),
            Some("2")
        );
        assert_eq!(
            with(json!({"requests": {"cpu": "250m"}}), json!([])).as_deref(),
            Some("1")
        );
        assert_eq!(with(json!({}), json!([])), None);
        // The user's own setting wins.
        assert_eq!(
            with(
                json!({"limits": {"cpu": "4"}}),
                json!([{"name": "RAYON_NUM_THREADS", "value": "2"}])
            )
            .as_deref(),
            Some("2")
        );
    }

    #[test]
    fn native_runtimes_run_as_tidal_serve() {
        let template = json!({"spec": {
            "initContainers": [{"name": "storage-initializer", "args": ["/models/iris", "/mnt/models"]}],
            "containers": [{"name": "kserve-container", "image": "kserve/sklearnserver:latest",
                            "args": ["--model_name=iris", "--model_dir=/mnt/models", "--http_port=8080"],
                            "env": [{"name": "INFERENCE_SERVICE_NAME", "value": "iris"}]}]}});
        let l = launch_for(
            &template,
            41000,
            Path::new("/bin/tidal"),
            Path::new("/cache"),
        )
        .unwrap();
        assert_eq!(l.program, PathBuf::from("/bin/tidal"));
        assert_eq!(
            l.args,
            [
                "serve",
                "--model_name=iris",
                "--model_dir=/models/iris",
                "--http_port=41000",
                "--host=127.0.0.1"
            ]
        );
        assert_eq!(
            l.env,
            [("INFERENCE_SERVICE_NAME".to_string(), "iris".to_string())]
        );
        assert_eq!(l.probe, Probe::Http("/v2/health/ready".into()));

        let remote = json!({"spec": {
            "initContainers": [{"name": "storage-initializer", "args": ["gs://bucket/m", "/mnt/models"]}],
            "containers": [{"image": "docker.io/kserve/sklearnserver:v0.20.0", "args": ["--model_dir=/mnt/models"]}]}});
        let l = launch_for(&remote, 1, Path::new("t"), Path::new("/cache")).unwrap();
        assert_eq!(
            l.args,
            [
                "serve",
                "--storage_uri=gs://bucket/m",
                "--model_dir=/cache",
                "--http_port=1",
                "--host=127.0.0.1"
            ]
        );
    }

    #[test]
    fn custom_containers_run_their_command_and_others_are_refused() {
        let t = json!({"spec": {"containers": [{"image": "x", "command": ["python3", "-m", "http.server"], "args": ["--bind", "127.0.0.1"]}]}});
        let l = launch_for(&t, 5000, Path::new("t"), Path::new("c")).unwrap();
        assert_eq!((l.program.to_str().unwrap(), l.args.len()), ("python3", 4));
        assert!(l.env.contains(&("PORT".into(), "5000".into())));
        assert_eq!(l.probe, Probe::Tcp);
        let t = json!({"spec": {"containers": [{"image": "tensorflow/serving:2.6.2"}]}});
        assert!(
            launch_for(&t, 1, Path::new("t"), Path::new("c"))
                .unwrap_err()
                .contains("cannot run in embedded mode")
        );
    }

    #[test]
    fn template_hashes_are_stable_and_distinct() {
        let a = json!({"spec": {"containers": [{"image": "a"}]}});
        let b = json!({"spec": {"containers": [{"image": "b"}]}});
        assert_eq!(template_hash(&a), template_hash(&a));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
    }
}
