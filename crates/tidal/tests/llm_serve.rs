//! The seed's second model server as a user starts it: `tidal serve --model_name=fbopt
//! --model_id=facebook/opt-125m`, the repo id resolved from a local Hugging Face cache (here
//! holding a tiny random OPT checkpoint under that id), then the seed's `hey` load on
//! `/openai/v1/completions`. Every request must succeed, and `/metrics` must show the engine
//! really batching: `vllm:num_requests_running` above 2 under 5 concurrent clients, and with
//! `--max_num_seqs=2` the excess counted in `vllm:num_requests_waiting`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// `tidal` with `hf_home` as its only Hugging Face setting, then `env`.
fn tidal_with_cache(hf_home: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(TIDAL);
    cmd.env("HF_HOME", hf_home);
    for var in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Starts the seed's `tidal serve --model_name=fbopt --model_id=facebook/opt-125m` (not
/// waiting for it to be ready).
fn spawn_fbopt(hf_home: &Path, env: &[(&str, &str)], extra: &[&str]) -> Server {
    let port = free_port();
    let child = tidal_with_cache(hf_home, env)
        .args([
            "serve",
            "--model_name=fbopt",
            "--model_id=facebook/opt-125m",
        ])
        .arg(format!("--http_port={port}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Server { child, port }
}

fn serve(hf_home: &Path, extra: &[&str]) -> Server {
    ready(spawn_fbopt(hf_home, &[], extra))
}

/// Waits until the server answers its readiness probe.
fn ready(server: Server) -> Server {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get(server.port, "/v2/health/ready").is_some_and(|(status, _)| status == 200) {
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

/// `tidal serve --model_id` with an empty cache, as a user online starts it: runs `tidal serve`
/// with `env` and returns its exit status and stderr (it must fail).
fn serve_uncached(root: &Path, env: &[(&str, &str)]) -> String {
    let out = tidal_with_cache(root, env)
        .args([
            "serve",
            "--model_name=x",
            "--model_id=facebook/opt-13b",
            "--http_port=0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_uncached_model_id_that_cannot_be_downloaded_fails_with_a_clear_error() {
    let root = std::env::temp_dir().join(format!("tidal-llm-nocache-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    // Offline: nothing is fetched and the error says how to fetch it.
    let offline = serve_uncached(&root, &[("HF_HUB_OFFLINE", "1")]);
    assert!(
        offline.contains("facebook/opt-13b")
            && offline.contains("Hugging Face cache")
            && offline.contains("HF_HUB_OFFLINE")
            && offline.contains("huggingface-cli download"),
        "{offline}"
    );
    // Online, but the Hub does not answer: the error names the endpoint that failed.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let unreachable = serve_uncached(&root, &[("HF_ENDPOINT", &endpoint)]);
    assert!(
        unreachable.contains("facebook/opt-13b") && unreachable.contains(&endpoint),
        "{unreachable}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A stand-in for huggingface.co, which these machines cannot reach. It speaks the two parts
/// of the Hub's protocol a download uses: `GET /api/models/{repo}/revision/main` (the commit
/// and the file list) and `GET /{repo}/resolve/main/{file}` with a `Range` header (answered
/// with `x-repo-commit`, `etag` and `content-range`, then the bytes). It serves one folder as
/// one repository and counts the file bodies it sends.
struct FakeHub {
    port: u16,
    downloads: Arc<AtomicUsize>,
    /// Bodies of the slow file sent.
    slow_bodies: Arc<AtomicUsize>,
}

/// How the stand-in Hub serves one repository.
#[derive(Clone)]
struct HubRepo {
    name: &'static str,
    commit: &'static str,
    folder: PathBuf,
    /// A file whose body is sent only after this long (a large download in progress).
    slow: Option<(&'static str, Duration)>,
}

impl FakeHub {
    fn start(repo: &'static str, commit: &'static str, folder: PathBuf) -> FakeHub {
        Self::serve(HubRepo {
            name: repo,
            commit,
            folder,
            slow: None,
        })
    }

    fn serve(repo: HubRepo) -> FakeHub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let downloads = Arc::new(AtomicUsize::new(0));
        let slow_bodies = Arc::new(AtomicUsize::new(0));
        let counters = (downloads.clone(), slow_bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (repo, counters) = (repo.clone(), counters.clone());
                std::thread::spawn(move || hub_answer(stream, &repo, &counters.0, &counters.1));
            }
        });
        FakeHub {
            port,
            downloads,
            slow_bodies,
        }
    }
}

fn hub_answer(
    mut stream: std::net::TcpStream,
    hub: &HubRepo,
    downloads: &AtomicUsize,
    slow_bodies: &AtomicUsize,
) {
    let (repo, commit, folder) = (hub.name, hub.commit, hub.folder.as_path());
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (from, to) = r.trim().split_once('-').unwrap();
            range = Some((from.parse().unwrap(), to.parse().ok()));
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let mut files: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let (status, headers, body) = if path == format!("/api/models/{repo}/revision/main") {
        let siblings: Vec<_> = files
            .iter()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let info = serde_json::json!({"id": repo, "sha": commit, "siblings": siblings});
        ("200 OK", vec![], info.to_string().into_bytes())
    } else if let Some((file, Ok(bytes))) = path
        .strip_prefix(&format!("/{repo}/resolve/main/"))
        .map(|file| (file, std::fs::read(folder.join(file))))
    {
        let total = bytes.len();
        let last = total.saturating_sub(1);
        let (from, to) = range.unwrap_or((0, None));
        let (from, to) = (from.min(last), to.unwrap_or(last).min(last));
        if to + 1 - from > 1 {
            downloads.fetch_add(1, Ordering::Relaxed);
            if let Some((_, delay)) = hub.slow.filter(|(slow, _)| *slow == file) {
                slow_bodies.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(delay);
            }
        }
        let headers = vec![
            format!("x-repo-commit: {commit}"),
            format!("etag: \"{}-{total}\"", file.replace('.', "-")),
            format!("content-range: bytes {from}-{to}/{total}"),
        ];
        ("206 Partial Content", headers, bytes[from..=to].to_vec())
    } else {
        ("404 Not Found", vec![], b"Entry not found".to_vec())
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// The seed's `--model_id=facebook/opt-125m`, only partly in the cache (as an interrupted
/// download leaves it), is completed from the Hub (`HF_ENDPOINT`) in huggingface_hub's cache
/// layout, then served; the next start finds it there with downloads switched off. The repository is laid out as
/// facebook/opt-125m is on the Hub (`pytorch_model.bin`, `vocab.json` + `merges.txt`, no
/// `tokenizer.json`), holding the tiny fixture whose greedy text transformers recorded.
#[test]
fn the_seeds_model_id_is_downloaded_from_the_hub_then_served() {
    const COMMIT: &str = "5f2c1e0d9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2";
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../llm/tests/fixtures");
    let fixture = fixtures.join("opt-tiny-preln-hub");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("opt-tiny-preln/expected.json")).unwrap(),
    )
    .unwrap();
    let hub = FakeHub::start("facebook/opt-125m", COMMIT, fixture.clone());
    let root = std::env::temp_dir().join(format!("tidal-llm-download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let repo = root.join("hub").join("models--facebook--opt-125m");
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), COMMIT).unwrap();
    std::fs::copy(fixture.join("config.json"), snapshot.join("config.json")).unwrap();
    let start = |env: &[(&str, &str)]| ready(spawn_fbopt(&root, env, &[]));
    let completion = |port: u16| {
        let body = serde_json::json!({
            "model": "fbopt",
            "prompt": expected["prompt"],
            "max_tokens": expected["greedy_ids"].as_array().unwrap().len(),
            "temperature": 0,
        })
        .to_string();
        let (status, text) = post(port, "localhost", "/openai/v1/completions", &body).unwrap();
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["choices"][0]["text"].as_str().unwrap().to_owned()
    };

    let endpoint = format!("http://127.0.0.1:{}", hub.port);
    let server = start(&[("HF_ENDPOINT", &endpoint)]);
    assert_eq!(completion(server.port), expected["greedy_text"]);
    drop(server);
    // Every file of the repository serves a purpose here; config.json was already cached.
    let fetched = hub.downloads.load(Ordering::Relaxed);
    assert_eq!(fetched, std::fs::read_dir(&fixture).unwrap().count() - 1);
    let main = std::fs::read_to_string(repo.join("refs").join("main")).unwrap();
    assert_eq!(main.trim(), COMMIT);
    for file in ["config.json", "vocab.json", "pytorch_model.bin"] {
        let cached = std::fs::read(repo.join("snapshots").join(COMMIT).join(file)).unwrap();
        assert_eq!(cached, std::fs::read(fixture.join(file)).unwrap(), "{file}");
    }

    // Offline, from the cache alone: the same model, the same greedy text.
    let server = start(&[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(completion(server.port), expected["greedy_text"]);
    assert_eq!(hub.downloads.load(Ordering::Relaxed), fetched);
    drop(server);
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
    let daemon = tidal_with_cache(&hf_home, &[])
        .args(["up", "--data-dir"])
        .arg(root.join("data"))
        .arg(format!("--listen=127.0.0.1:{api}"))
        .arg(format!("--gateway-listen=127.0.0.1:{gateway}"))
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

/// Two replicas starting at once on an empty cache (minReplicas: 2) download the same files:
/// the second waits for the first's download of the weights instead of failing on hf-hub's
/// lock (which gives up after 5 s) or fetching them again, and both serve.
#[test]
fn two_servers_downloading_the_same_model_both_start() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../llm/tests/fixtures");
    let hub = FakeHub::serve(HubRepo {
        name: "facebook/opt-125m",
        commit: "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
        folder: fixtures.join("opt-tiny-preln-hub"),
        slow: Some(("pytorch_model.bin", Duration::from_secs(12))),
    });
    let root = std::env::temp_dir().join(format!("tidal-llm-download2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let endpoint = format!("http://127.0.0.1:{}", hub.port);
    let servers: Vec<Server> = (0..2)
        .map(|_| spawn_fbopt(&root, &[("HF_ENDPOINT", &endpoint)], &[]))
        .collect();
    for server in servers {
        let server = ready(server);
        let body = r#"{"model": "fbopt", "prompt": "Hello", "max_tokens": 3}"#;
        let (status, text) =
            post(server.port, "localhost", "/openai/v1/completions", body).unwrap();
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(
        hub.slow_bodies.load(Ordering::Relaxed),
        1,
        "weights fetched once"
    );
    let _ = std::fs::remove_dir_all(&root);
}
