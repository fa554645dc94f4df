//! The seed's first scenario end to end: `tidal up`, the seed's InferenceService (local model,
//! `averageUtilization: 50`, a short scale-down stabilization window in the YAML so the test is
//! quick), `hey` load through the gateway with `-host`: replicas rise above 1 while the load
//! lasts and return to 1 after, and every request succeeds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{free_port_pair, tidal_stdout as tidal};

const TIDAL: &str = env!("CARGO_BIN_EXE_tidal");

fn replicas(port: u16) -> (u32, u32) {
    let out = tidal(
        port,
        &[
            "get",
            "deploy",
            "sklearn-v2-iris-predictor",
            "-o",
            "jsonpath={.spec.replicas} {.status.readyReplicas}",
        ],
        None,
    );
    let mut it = out.split_whitespace().map(|x| x.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[test]
fn cpu_load_through_the_gateway_scales_out_and_back() {
    assert!(
        Command::new("hey")
            .arg("-h")
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok(),
        "this test drives load with `hey` (Debian package hey); .ci/run installs it"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = std::env::temp_dir().join(format!("tidal-autoscale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port_pair();
    let gateway = port + 1;
    let mut daemon = Command::new(TIDAL)
        .args([
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--gateway-listen",
            &format!("127.0.0.1:{gateway}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tidal up did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The seed's YAML: the model from this repository and a 10 s scale-down window.
    let seed = std::fs::read_to_string(root.join("examples/seed/sklearn-v2-iris.yaml")).unwrap();
    let model = root
        .join("examples/models/sklearn-iris")
        .canonicalize()
        .unwrap();
    let isvc = seed
        .replace("gs://kfserving-examples/models/sklearn/1.0/model", model.to_str().unwrap())
        .replace(
            "              averageUtilization: 50",
            "              averageUtilization: 50\n      behavior:\n        scaleDown:\n          stabilizationWindowSeconds: 10",
        );
    assert!(tidal(port, &["apply", "-f", "-"], Some(&isvc)).contains("created"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while replicas(port) != (1, 1) {
        assert!(
            Instant::now() < deadline,
            "the first replica did not become ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
    .trim()
    .trim_start_matches("http://")
    .to_string();

    // 64 rows per request, so the replica (not the gateway or hey) does most of the work.
    let rows = vec!["[6.8,2.8,4.8,1.4]"; 64].join(",");
    let body = format!(
        r#"{{"inputs":[{{"name":"input-0","shape":[64,4],"datatype":"FP32","data":[{rows}]}}]}}"#
    );
    let hey = Command::new("hey")
        .args([
            "-z",
            "20s",
            "-c",
            "16",
            "-m",
            "POST",
            "-T",
            "application/json",
            "-d",
            &body,
            "-host",
            &host,
        ])
        .arg(format!(
            "http://127.0.0.1:{gateway}/v2/models/sklearn-v2-iris/infer"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(19) {
        peak = peak.max(replicas(port).1);
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = hey.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(peak > 1, "replicas stayed at {peak} under load\n{report}");

    // Only 200s: no request failed while replicas started or drained.
    let codes: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("Status code distribution"))
        .skip(1)
        .filter(|l| l.trim().starts_with('['))
        .collect();
    assert!(!codes.is_empty(), "{report}");
    assert!(
        codes.iter().all(|l| l.trim().starts_with("[200]")),
        "{report}"
    );
    assert!(!report.contains("Error distribution"), "{report}");

    // Back to one replica once the load is gone and the window has passed.
    let deadline = Instant::now() + Duration::from_secs(90);
    while replicas(port) != (1, 1) {
        assert!(
            Instant::now() < deadline,
            "replicas did not return to 1: {:?}",
            replicas(port)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let describe = tidal(port, &["describe", "so", "sklearn-v2-iris-predictor"], None);
    assert!(
        describe.contains("reason: cpu resource utilization (percentage of request) above target"),
        "{describe}"
    );

    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&data);
}
