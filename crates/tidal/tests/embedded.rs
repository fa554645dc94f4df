//! `tidal up` end to end, as a user runs it: the seed's first InferenceService (storageUri
//! pointed at a local model) becomes a Ready replica that predicts; `get` shows the seed's
//! ScaledObject row; bad input changes nothing; a killed replica comes back; a restarted daemon
//! brings everything back; delete removes every object and process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{free_port_pair, tidal};

const TIDAL: &str = env!("CARGO_BIN_EXE_tidal");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Daemon {
    child: Child,
}

/// The gateway port of a daemon whose API listens on `port`.
fn gateway_port(port: u16) -> u16 {
    port + 1
}

impl Daemon {
    fn start(data: &Path, port: u16) -> Self {
        let child = Command::new(TIDAL)
            .args([
                "up",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--gateway-listen",
                &format!("127.0.0.1:{}", gateway_port(port)),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut d = Daemon { child };
        wait_for(Duration::from_secs(20), || {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!(
                    "tidal up exited at start with {status} (ports {port} and {})",
                    gateway_port(port)
                );
            }
            std::net::TcpStream::connect(("127.0.0.1", port))
                .is_ok()
                .then_some(())
        });
        d
    }

    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tidal up did not stop on SIGTERM");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The ready replica's (name, port, pid), once exactly one is ready.
fn ready_replica(port: u16) -> (String, u16, u32) {
    wait_for(Duration::from_secs(60), || {
        let out = tidal(port, &["get", "pods", "-o", "json"], None);
        let list: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        let ready: Vec<&serde_json::Value> = list["items"]
            .as_array()?
            .iter()
            .filter(|p| {
                p.pointer("/status/conditions/0/status")
                    .and_then(|s| s.as_str())
                    == Some("True")
            })
            .collect();
        if ready.len() != 1 {
            return None;
        }
        let p = ready[0];
        let ann = &p["metadata"]["annotations"];
        Some((
            p["metadata"]["name"].as_str()?.to_string(),
            ann["tidal.dev/port"].as_str()?.parse().ok()?,
            ann["tidal.dev/pid"].as_str()?.parse().ok()?,
        ))
    })
}

fn predict(port: u16) -> String {
    predict_via(port, "x")
}

fn predict_via(port: u16, host: &str) -> String {
    let body = r#"{"inputs":[{"name":"input-0","shape":[2,4],"datatype":"FP32","data":[[6.8,2.8,4.8,1.4],[6.0,3.4,4.5,1.6]]}]}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    write!(s, "POST /v2/models/sklearn-v2-iris/infer HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn replica_processes(data: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(" serve ")
                && cmd.contains("sklearn-v2-iris")
                && cmd.contains(&format!(
                    "--model_dir={}",
                    root()
                        .join("crates/sklearn/tests/fixtures/iris-svc")
                        .display()
                ))
            {
                n += 1;
            }
        }
    }
    let _ = data;
    n
}

#[test]
fn seed_inference_service_on_the_embedded_daemon() {
    let data = std::env::temp_dir().join(format!("tidal-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port_pair();
    let daemon = Daemon::start(&data, port);

    // The seed's YAML with only storageUri pointed at a local model.
    let seed = std::fs::read_to_string(root().join("examples/seed/sklearn-v2-iris.yaml")).unwrap();
    let model = root()
        .join("crates/sklearn/tests/fixtures/iris-svc")
        .canonicalize()
        .unwrap();
    let isvc = seed.replace(
        "gs://kfserving-examples/models/sklearn/1.0/model",
        model.to_str().unwrap(),
    );
    let out = tidal(port, &["apply", "-f", "-"], Some(&isvc));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            0,
            "inferenceservice.serving.kserve.io/sklearn-v2-iris created\n"
        ),
        "{}",
        out.stderr
    );

    let (pod, replica_port, pid) = ready_replica(port);
    assert!(pod.starts_with("sklearn-v2-iris-predictor-"), "{pod}");
    let answer = predict(replica_port);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""data":[1,1]"#), "{answer}");
    // Through the gateway, by the status.url host, as `hey -host ${SERVICE_HOSTNAME}` sends it.
    let host = tidal(
        port,
        &[
            "get",
            "isvc",
            "sklearn-v2-iris",
            "-o",
            "jsonpath={.status.url}",
        ],
        None,
    )
    .stdout;
    let host = host.trim().trim_start_matches("http://").to_string();
    assert_eq!(host, "sklearn-v2-iris-default.example.com");
    let answer = wait_for(Duration::from_secs(10), || {
        let a = predict_via(gateway_port(port), &host);
        a.starts_with("HTTP/1.1 200").then_some(a)
    });
    assert!(answer.contains(r#""data":[1,1]"#), "{answer}");

    let so = tidal(
        port,
        &["get", "scaledobjects", "sklearn-v2-iris-predictor"],
        None,
    )
    .stdout;
    let row: Vec<&str> = so.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..10],
        [
            "sklearn-v2-iris-predictor",
            "apps/v1.Deployment",
            "sklearn-v2-iris-predictor",
            "1",
            "5",
            "cpu",
            "True",
            "True",
            "Unknown",
            "Unknown"
        ],
        "{so}"
    );
    let ready = tidal(
        port,
        &[
            "get",
            "isvc",
            "sklearn-v2-iris",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        ],
        None,
    );
    assert_eq!(ready.stdout.trim(), "True");
    let describe = tidal(port, &["describe", "so", "sklearn-v2-iris-predictor"], None).stdout;
    for line in [
        "Max Replica Count:  5",
        "Min Replica Count:  1",
        "Value:  50",
        "Metric Type:  Utilization",
        "Type:         cpu",
        "KEDAScalersStarted",
    ] {
        assert!(describe.contains(line), "{line:?} missing from\n{describe}");
    }
    let logs = tidal(port, &["logs", &pod], None);
    assert!(
        logs.stdout.contains("Loaded scikit-learn model"),
        "{}",
        logs.stdout
    );

    // Bad input: clear errors, nothing changes.
    let out = tidal(
        port,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: x\n   bad: indent\n",
        ),
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("line 5, column"), "{}", out.stderr);
    let invalid = isvc.replace("averageUtilization: 50", "averageUtilization: 500");
    let out = tidal(port, &["apply", "-f", "-"], Some(&invalid));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("spec.predictor.autoScaling.metrics[0].resource.target.averageUtilization: Invalid value: 500"),
        "{}",
        out.stderr
    );
    let so_after = tidal(
        port,
        &[
            "get",
            "so",
            "sklearn-v2-iris-predictor",
            "-o",
            "jsonpath={.spec.triggers[0].metadata.value}",
        ],
        None,
    );
    assert_eq!(so_after.stdout.trim(), "50");

    // Two clients updating from the same version: one wins, the other gets a conflict.
    let current = tidal(
        port,
        &["get", "isvc", "sklearn-v2-iris", "-o", "json"],
        None,
    )
    .stdout;
    let v: serde_json::Value = serde_json::from_str(&current).unwrap();
    let mut codes = Vec::new();
    for max in [4, 3] {
        let mut next = v.clone();
        next["spec"]["predictor"]["maxReplicas"] = max.into();
        let url = format!(
            "http://127.0.0.1:{port}/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/sklearn-v2-iris"
        );
        let status = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "PUT",
                "-H",
                "content-type: application/json",
                "-d",
                &next.to_string(),
                &url,
            ])
            .output()
            .unwrap();
        codes.push(String::from_utf8_lossy(&status.stdout).to_string());
    }
    assert_eq!(codes, ["200", "409"]);

    // A killed replica is replaced without user action.
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let (_, port2, pid2) = wait_for(Duration::from_secs(60), || {
        let r = ready_replica(port);
        (r.2 != pid).then_some(r)
    });
    assert_ne!(pid2, pid);
    assert!(predict(port2).starts_with("HTTP/1.1 200"));

    // A restarted daemon finds the same objects and brings a replica back.
    let uid = tidal(
        port,
        &[
            "get",
            "isvc",
            "sklearn-v2-iris",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    )
    .stdout;
    daemon.stop();
    wait_for(Duration::from_secs(20), || {
        (replica_processes(&data) == 0).then_some(())
    });
    let daemon = Daemon::start(&data, port);
    assert_eq!(
        tidal(
            port,
            &[
                "get",
                "isvc",
                "sklearn-v2-iris",
                "-o",
                "jsonpath={.metadata.uid}"
            ],
            None
        )
        .stdout,
        uid
    );
    let (_, port3, _) = ready_replica(port);
    assert!(predict(port3).contains(r#""data":[1,1]"#));

    // Delete: every owned object and process goes.
    let out = tidal(port, &["delete", "-f", "-"], Some(&isvc));
    assert_eq!(
        out.stdout, "inferenceservice.serving.kserve.io \"sklearn-v2-iris\" deleted\n",
        "{}",
        out.stderr
    );
    for kind in ["deployments", "services", "scaledobjects", "pods"] {
        wait_for(Duration::from_secs(30), || {
            let out = tidal(port, &["get", kind, "-o", "name"], None);
            out.stdout.trim().is_empty().then_some(())
        });
    }
    wait_for(Duration::from_secs(30), || {
        (replica_processes(&data) == 0).then_some(())
    });
    daemon.stop();
    let _ = std::fs::remove_dir_all(&data);
}
