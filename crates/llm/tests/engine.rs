//! The continuous-batching engine over the OPT fixtures: what it generates equals the
//! reference loop (and transformers), batching and queueing change nothing about each
//! request's tokens, limits hold, and cancelled requests leave the batch.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tidal_llm::{
    Engine, EngineConfig, EngineObserver, Event, FinishReason, GenerateRequest, Opt,
    SamplingParams, Tokenizer,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Records batch sizes and finish reasons.
#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<usize>>,
    waiting: Mutex<Vec<usize>>,
    finished: Mutex<Vec<&'static str>>,
}

impl EngineObserver for Recorder {
    fn step(&self, running: usize, waiting: usize, _tokens: usize) {
        self.batches.lock().unwrap().push(running);
        self.waiting.lock().unwrap().push(waiting);
    }
    fn finished(&self, reason: &'static str, _elapsed: Duration) {
        self.finished.lock().unwrap().push(reason);
    }
}

fn start(name: &str, config: EngineConfig) -> (Engine, Arc<Recorder>) {
    let model = Opt::load(&fixture(name), &tidal_llm::Device::Cpu).unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = Engine::start(model, config, recorder.clone()).unwrap();
    (engine, recorder)
}

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt,
        params: SamplingParams::greedy(max_tokens),
    }
}

/// Drains a stream: the tokens and how it finished.
fn run(stream: &mut tidal_llm::TokenStream) -> (Vec<u32>, tidal_llm::Finished) {
    let mut tokens = Vec::new();
    loop {
        match stream.blocking_next().expect("engine stopped") {
            Event::Token(t) => tokens.push(t),
            Event::Finished(f) => return (tokens, f),
            Event::Failed(e) => panic!("generation failed: {e}"),
        }
    }
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn greedy_generation_through_the_engine_matches_transformers() {
    for name in ["opt-tiny-preln", "opt-tiny-postln-proj"] {
        let exp = expected(name);
        let want = ids(&exp["greedy_ids"]);
        let (engine, _) = start(name, EngineConfig::default());
        let mut stream = engine
            .submit(greedy(ids(&exp["input_ids"]), want.len()))
            .unwrap();
        let (got, finished) = run(&mut stream);
        assert_eq!(got, want, "{name}");
        assert_eq!(finished.reason, FinishReason::Length);
        assert_eq!(finished.completion_tokens, want.len());
        assert_eq!(
            finished.prompt_tokens,
            exp["input_ids"].as_array().unwrap().len()
        );
        let tokenizer = Tokenizer::from_dir(&fixture(name)).unwrap();
        assert_eq!(
            tokenizer.decode(&got, true).unwrap(),
            exp["greedy_text"].as_str().unwrap()
        );
    }
}

#[test]
fn requests_batched_together_get_what_they_get_alone() {
    let name = "opt-tiny-preln";
    let tokenizer = Tokenizer::from_dir(&fixture(name)).unwrap();
    let prompts: Vec<Vec<u32>> = [
        "Write a poem about colors",
        "Hi",
        "The sky is",
        "One two three four five",
    ]
    .iter()
    .map(|p| tokenizer.encode(p, true).unwrap())
    .collect();
    // Alone: one request at a time.
    let (engine, _) = start(name, EngineConfig::default());
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| run(&mut engine.submit(greedy(p.clone(), 20)).unwrap()).0)
        .collect();
    // Together, with staggered lengths so requests join and leave a running batch.
    let (engine, recorder) = start(name, EngineConfig::default());
    let mut streams: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| engine.submit(greedy(p.clone(), 20 - i)).unwrap())
        .collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let (got, _) = run(stream);
        assert_eq!(got, alone[i][..20 - i], "prompt {i}");
    }
    let biggest = recorder
        .batches
        .lock()
        .unwrap()
        .iter()
        .copied()
        .max()
        .unwrap();
    assert!(
        biggest >= 3,
        "requests were not batched: largest batch {biggest}"
    );
}

#[test]
fn max_num_seqs_bounds_the_batch_and_the_rest_wait() {
    let config = EngineConfig {
        max_num_seqs: 2,
        ..EngineConfig::default()
    };
    let (engine, recorder) = start("opt-tiny-preln", config);
    let mut streams: Vec<_> = (0..5)
        .map(|i| engine.submit(greedy(vec![2, 285 + i], 30)).unwrap())
        .collect();
    for stream in &mut streams {
        let (tokens, _) = run(stream);
        assert_eq!(tokens.len(), 30);
    }
    let batches = recorder.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().copied().max(), Some(2), "{batches:?}");
    // While the first two ran, the other three queued.
    let waiting = recorder.waiting.lock().unwrap().clone();
    assert_eq!(waiting.iter().copied().max(), Some(3), "{waiting:?}");
    wait_until_idle(&engine);
}

/// The gauges are published just after streams see their last event; give them a moment.
fn wait_until_idle(engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stats().running != 0 || engine.stats().waiting != 0 {
        assert!(
            Instant::now() < deadline,
            "engine still busy: {:?}",
            engine.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_kv_budget_limits_admission_and_rejects_what_can_never_fit() {
    let model = Opt::load(&fixture("opt-tiny-preln"), &tidal_llm::Device::Cpu).unwrap();
    let per_token = tidal_llm::CausalLm::kv_bytes_per_token(&model);
    // Room for 40 tokens: one request of 2 + 30 at a time.
    let config = EngineConfig {
        kv_cache_bytes: 40 * per_token,
        ..EngineConfig::default()
    };
    let recorder = Arc::new(Recorder::default());
    let engine = Engine::start(model, config, recorder.clone()).unwrap();
    assert_eq!(engine.capacity_tokens(), 40);
    let mut streams: Vec<_> = (0..3)
        .map(|i| engine.submit(greedy(vec![2, 290 + i], 30)).unwrap())
        .collect();
    for stream in &mut streams {
        assert_eq!(run(stream).0.len(), 30);
    }
    assert_eq!(
        recorder.batches.lock().unwrap().iter().copied().max(),
        Some(1)
    );
    let err = engine
        .submit(greedy(vec![2, 3], 50))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("KV cache") && err.contains("max_tokens"),
        "{err}"
    );
}

#[test]
fn a_dropped_stream_cancels_its_request() {
    let (engine, recorder) = start("opt-tiny-preln", EngineConfig::default());
    let mut stream = engine.submit(greedy(vec![2, 285], 60)).unwrap();
    assert!(matches!(stream.blocking_next(), Some(Event::Token(_))));
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !recorder.finished.lock().unwrap().contains(&"abort") {
        assert!(Instant::now() < deadline, "the request was not cancelled");
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_until_idle(&engine);
}

#[test]
fn impossible_requests_are_refused_at_submit() {
    let (engine, _) = start("opt-tiny-preln", EngineConfig::default());
    let empty = engine.submit(greedy(vec![], 5)).unwrap_err().to_string();
    assert!(empty.contains("at least one token"), "{empty}");
    // The fixture's context window is 64 tokens.
    let long = engine
        .submit(greedy(vec![2; 64], 5))
        .unwrap_err()
        .to_string();
    assert!(long.contains("context window"), "{long}");
    let mut bad = greedy(vec![2], 5);
    bad.params.top_p = 0.0;
    assert!(engine.submit(bad).is_err());
    let oov = engine
        .submit(greedy(vec![2, 100_000], 5))
        .unwrap_err()
        .to_string();
    assert!(oov.contains("token id 100000 is out of range"), "{oov}");
    let (ok, _) = run(&mut engine.submit(greedy(vec![2, 285], 5)).unwrap());
    assert_eq!(ok.len(), 5);
}

#[test]
fn seeded_sampling_is_reproducible_across_batches() {
    let (engine, _) = start("opt-tiny-preln", EngineConfig::default());
    let sampled = |seed| {
        let params = SamplingParams {
            temperature: 0.8,
            top_p: 0.9,
            top_k: Some(50),
            seed,
            max_tokens: 15,
            ..SamplingParams::default()
        };
        GenerateRequest {
            prompt: vec![2, 285, 268],
            params,
        }
    };
    let first = run(&mut engine.submit(sampled(7)).unwrap()).0;
    // A temperature too small to divide by is greedy (vLLM's epsilon), not garbage.
    let mut tiny = sampled(7);
    tiny.params.temperature = 1e-300;
    let greedy_ids = run(&mut engine.submit(greedy(vec![2, 285, 268], 15)).unwrap()).0;
    assert_eq!(run(&mut engine.submit(tiny).unwrap()).0, greedy_ids);
    let mut a = engine.submit(sampled(7)).unwrap();
    let mut b = engine.submit(sampled(8)).unwrap();
    assert_eq!(run(&mut a).0, first);
    let other = run(&mut b).0;
    assert_eq!(other.len(), 15);
}
