//! The seed's second model server as a user starts it: `tidal serve --model_name=fbopt
//! --model_id=facebook/opt-125m`, the repo id resolved from a local Hugging Face cache (here
//! holding a tiny random OPT checkpoint under that id), then the seed's `hey` load on
//! `/openai/v1/completions`. Every request must succeed, and `/metrics` must show the engine
//! really batching: `vllm:num_requests_running` above 2 under 5 concurrent clients, and with
//! `--max_num_seqs=2` the excess counted in `vllm:num_requests_waiting`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::free_port;

const TIDAL: &str = env!("CARGO_BIN_EXE_tidal");

/// A Hugging Face hub cache holding `facebook/opt-125m` at commit `0123abc`, as
/// `huggingface-cli download` lays it out.
fn hub_cache(root: &Path) -> PathBuf {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../llm/tests/fixtures/opt-tiny-preln");
    let repo = root.join("hub").join("models--facebook--opt-125m");
    let snapshot = repo.join("snapshots").join("0123abc");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abc").unwrap();
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), snapshot.join(entry.file_name())).unwrap();
    }
    root.to_path_buf()
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(hf_home: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new(TIDAL)
        .args([
            "serve",
            "--model_name=fbopt",
            "--model_id=facebook/opt-125m",
        ])
        .arg(format!("--http_port={port}"))
        .args(extra)
        .env("HF_HOME", hf_home)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get(port, "/v2/health/ready").is_some_and(|(status, _)| status == 200) {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "tidal serve did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.0 GET, so the test needs no HTTP client crate.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn gauge(metrics: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{model_name=\"fbopt\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// Runs the seed's hey command for `seconds` while sampling the engine's gauges; returns hey's
/// report and the highest running and waiting counts seen.
fn hey_while_sampling(port: u16, seconds: u32) -> (String, f64, f64) {
    let hey = Command::new("hey")
        .args(["-z", &format!("{seconds}s"), "-c", "5", "-m", "POST", "-T", "application/json"])
        .args([
            "-d",
            r#"{"model": "fbopt", "prompt": "Write a poem about colors", "stream": false, "max_tokens": 40}"#,
        ])
        .arg(format!("http://127.0.0.1:{port}/openai/v1/completions"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("this test drives load with `hey` (Debian package hey); .ci/run installs it");
    let (mut running, mut waiting) = (0f64, 0f64);
    let until = Instant::now() + Duration::from_secs(u64::from(seconds));
    while Instant::now() < until {
        if let Some((200, metrics)) = get(port, "/metrics") {
            running = running.max(gauge(&metrics, "vllm:num_requests_running"));
            waiting = waiting.max(gauge(&metrics, "vllm:num_requests_waiting"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = hey.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        running,
        waiting,
    )
}

/// hey's status code distribution, e.g. `[(200, 1234)]`.
fn status_codes(report: &str) -> Vec<(u16, u64)> {
    let Some(section) = report.split("Status code distribution:").nth(1) else {
        return vec![];
    };
    section
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let code = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let count = l.split_whitespace().nth(1)?.parse().ok()?;
            Some((code, count))
        })
        .collect()
}

#[test]
fn the_seeds_opt_server_batches_hey_load_and_reports_it_in_vllm_metrics() {
    let root = std::env::temp_dir().join(format!("tidal-llm-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let hf_home = hub_cache(&root);

    // The seed's arguments, the seed's load: 5 concurrent clients for 30 s.
    let server = serve(&hf_home, &["--max_num_seqs=8"]);
    let (report, running, _) = hey_while_sampling(server.port, 30);
    let codes = status_codes(&report);
    assert!(
        codes.len() == 1 && codes[0].0 == 200 && codes[0].1 > 50,
        "expected only 200s from hey, got {codes:?}:\n{report}"
    );
    assert!(!report.contains("Error distribution"), "{report}");
    assert!(
        running > 2.0,
        "vllm:num_requests_running peaked at {running} under 5 clients"
    );
    assert!(
        running <= 5.0,
        "more requests running ({running}) than clients"
    );
    let (_, metrics) = get(server.port, "/metrics").unwrap();
    assert_eq!(gauge(&metrics, "vllm:num_requests_running"), 0.0);
    let served = codes[0].1 as f64;
    let success: f64 = ["stop", "length"]
        .iter()
        .map(|reason| {
            let prefix = format!(
                "vllm:request_success_total{{model_name=\"fbopt\",finished_reason=\"{reason}\"}} "
            );
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap()
                .parse::<f64>()
                .unwrap()
        })
        .sum();
    assert!(
        success >= served,
        "{success} successes for {served} answered requests"
    );
    drop(server);

    // A batch of 2 under 5 clients: 3 wait.
    let server = serve(&hf_home, &["--max_num_seqs=2"]);
    let (report, running, waiting) = hey_while_sampling(server.port, 10);
    let codes = status_codes(&report);
    assert!(
        codes.len() == 1 && codes[0].0 == 200,
        "{codes:?}:\n{report}"
    );
    assert_eq!(
        running, 2.0,
        "the batch must fill to --max_num_seqs and no further"
    );
    // 3 wait while the batch is full; for a moment after a request finishes, before the
    // engine admits the next, a client's new request makes it 4.
    assert!(
        (3.0..=4.0).contains(&waiting),
        "the requests beyond the batch must be counted as waiting; peak was {waiting}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_uncached_model_id_fails_fast_with_a_clear_error() {
    let root = std::env::temp_dir().join(format!("tidal-llm-nocache-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let started = Instant::now();
    let out = Command::new(TIDAL)
        .args([
            "serve",
            "--model_name=x",
            "--model_id=facebook/opt-13b",
            "--http_port=0",
        ])
        .env("HF_HOME", &root)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("facebook/opt-13b") && stderr.contains("Hugging Face cache"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&root);
}

/// An HTTP/1.0 POST of JSON with a Host header, as `hey -host` sends it.
fn post(port: u16, host: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_owned()))
}

/// The seed's second InferenceService, unchanged, in `tidal up`: the huggingfaceserver runtime
/// passes `--model_name={{.Name}}` before the user's `--model_name=fbopt` (the last wins, as in
/// KServe), `--model_id` resolves from the Hugging Face cache, and the completion request of the
/// seed reaches the replica through the gateway by Host.
#[test]
fn the_seeds_huggingface_inferenceservice_serves_completions_in_tidal_up() {
    let root = std::env::temp_dir().join(format!("tidal-llm-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let hf_home = hub_cache(&root.join("hf"));
    let (api, gateway) = (free_port(), free_port());
    let daemon = Command::new(TIDAL)
        .args(["up", "--data-dir"])
        .arg(root.join("data"))
        .arg(format!("--listen=127.0.0.1:{api}"))
        .arg(format!("--gateway-listen=127.0.0.1:{gateway}"))
        .env("HF_HOME", &hf_home)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Up(daemon);
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed/huggingface-fbopt.yaml");
    let tidal = |args: &[&str]| {
        let out = Command::new(TIDAL)
            .args(args)
            .env("TIDAL_SERVER", format!("http://127.0.0.1:{api}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tidal(&["apply", "-f", seed.to_str().unwrap()]).contains("created") {
        assert!(
            Instant::now() < deadline,
            "tidal up did not accept the seed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    // The READY column of `tidal get isvc`.
    while tidal(&["get", "isvc", "huggingface-fbopt"])
        .lines()
        .nth(1)
        .and_then(|row| row.split_whitespace().nth(2))
        != Some("True")
    {
        assert!(
            Instant::now() < deadline,
            "the InferenceService never became Ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = tidal(&[
        "get",
        "isvc",
        "huggingface-fbopt",
        "-o",
        "jsonpath={.status.url}",
    ]);
    let host = url.trim().trim_start_matches("http://");
    let (status, body) = post(
        gateway,
        host,
        "/openai/v1/completions",
        r#"{"model": "fbopt", "prompt": "Write a poem about colors", "stream": false, "max_tokens": 12, "temperature": 0}"#,
    )
    .unwrap();
    drop(daemon);
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../llm/tests/fixtures/opt-tiny-preln/expected.json");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    assert_eq!(answer["model"], "fbopt");
    assert_eq!(answer["choices"][0]["text"], expected["greedy_text"]);
}

/// `tidal up`, stopped with SIGTERM (which stops its replicas too) when dropped, even when an
/// assertion fails first.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while matches!(self.0.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
