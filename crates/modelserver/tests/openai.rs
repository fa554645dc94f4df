//! The OpenAI-compatible endpoints through the real router, on the tiny OPT checkpoints
//! (the same ones whose greedy output transformers recorded in `expected.json`), and a
//! real Llama-family checkpoint folder (SmolLM2-135M-Instruct).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tidal_modelserver::app;
use tidal_modelserver::dataplane::DataPlane;
use tidal_modelserver::runtimes::huggingface::{self, LlmOptions, Quantization};
use tower::ServiceExt;

#[path = "../../llm/tests/support/smollm2.rs"]
mod smollm2;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../llm/tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap())
        .unwrap()
}

fn server_for(dir: &Path, name: &str) -> Router {
    let generator = huggingface::load(name, dir, &LlmOptions::default()).unwrap();
    app(Arc::new(DataPlane::with_generators(
        vec![],
        vec![Arc::new(generator)],
    )))
}

fn server(fixture_name: &str) -> Router {
    server_for(&fixture(fixture_name), "fbopt")
}

/// A copy of a fixture with a ChatML template in `tokenizer_config.json`.
fn with_chat_template(fixture_name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tidal-openai-chat-{}-{fixture_name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(fixture_name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'].strip() + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}";
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"chat_template": template, "bos_token": "</s>", "eos_token": "</s>"}).to_string(),
    )
    .unwrap();
    dir
}

async fn call(app: &Router, method: &str, uri: &str, body: Value) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    let request = if method == "GET" {
        request.body(Body::empty())
    } else {
        request.body(Body::from(body.to_string()))
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn post(app: &Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let (status, text) = call(app, "POST", uri, body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn greedy_completion_matches_transformers_on_both_fixtures() {
    for name in ["opt-tiny-preln", "opt-tiny-postln-proj"] {
        let exp = expected(name);
        let n = exp["greedy_ids"].as_array().unwrap().len();
        let app = server(name);
        for path in ["/openai/v1/completions", "/v1/completions"] {
            let (status, body) = post(
                &app,
                path,
                json!({"model": "fbopt", "prompt": exp["prompt"], "max_tokens": n, "temperature": 0}),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["object"], "text_completion");
            assert_eq!(body["model"], "fbopt");
            assert_eq!(
                body["choices"][0]["text"], exp["greedy_text"],
                "{name} {path}"
            );
            assert_eq!(body["choices"][0]["finish_reason"], "length");
            let prompt_tokens = exp["input_ids"].as_array().unwrap().len();
            assert_eq!(
                body["usage"],
                json!({"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n})
            );
            assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
        }
    }
}

#[tokio::test]
async fn streamed_completion_carries_the_same_text_then_usage_then_done() {
    let exp = expected("opt-tiny-preln");
    let n = exp["greedy_ids"].as_array().unwrap().len();
    let app = server("opt-tiny-preln");
    let (status, body) = call(
        &app,
        "POST",
        "/openai/v1/completions",
        json!({"model": "fbopt", "prompt": exp["prompt"], "max_tokens": n, "temperature": 0,
               "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() > 3, "expected several chunks, got {chunks:?}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, exp["greedy_text"].as_str().unwrap());
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], n);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
}

#[tokio::test]
async fn several_prompts_give_one_choice_each() {
    let app = server("opt-tiny-preln");
    let (status, body) = post(
        &app,
        "/openai/v1/completions",
        json!({"model": "fbopt", "prompt": ["Hi", "The sky"], "max_tokens": 4, "temperature": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(body["usage"]["completion_tokens"], 8);
    // Token-id prompts work too.
    let (status, body) = post(
        &app,
        "/openai/v1/completions",
        json!({"model": "fbopt", "prompt": [2, 285, 268], "max_tokens": 3, "temperature": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn stop_strings_end_the_text_before_them() {
    let exp = expected("opt-tiny-preln");
    let full = exp["greedy_text"].as_str().unwrap();
    // The greedy text is "� Pa Pa Pa� Pa..."; stopping at " Pa" leaves what precedes it.
    let app = server("opt-tiny-preln");
    let (status, body) = post(
        &app,
        "/openai/v1/completions",
        json!({"model": "fbopt", "prompt": exp["prompt"], "max_tokens": 12, "temperature": 0, "stop": [" Pa"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at = full.find(" Pa").unwrap();
    assert_eq!(body["choices"][0]["text"], &full[..at]);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // The engine learns of the stop string when the stream is dropped; it counts a stop, not
    // an abort.
    let counted = "vllm:request_success_total{model_name=\"fbopt\",finished_reason=\"stop\"} 1";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, metrics) = call(&app, "GET", "/metrics", Value::Null).await;
        if metrics.contains(counted) {
            assert!(metrics.contains(
                "vllm:request_success_total{model_name=\"fbopt\",finished_reason=\"abort\"} 0"
            ));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn chat_completions_apply_the_models_template() {
    let dir = with_chat_template("opt-tiny-preln");
    let app = server_for(&dir, "fbopt");
    let (status, body) = post(
        &app,
        "/openai/v1/chat/completions",
        json!({"model": "fbopt", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    // "user: Hi\nassistant:" rendered and tokenized without an extra BOS.
    let tokenizer = tidal_llm::Tokenizer::from_dir(&dir).unwrap();
    let prompt_tokens = tokenizer
        .encode("user: Hi\nassistant:", false)
        .unwrap()
        .len();
    assert_eq!(body["usage"]["prompt_tokens"], prompt_tokens);
    // Streaming: a role chunk, content chunks, a finish chunk, [DONE].
    let (status, text) = call(
        &app,
        "POST",
        "/v1/chat/completions",
        json!({"model": "fbopt", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
               "max_tokens": 5, "temperature": 0, "stream": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let data = sse_data(&text);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        streamed,
        body["choices"][0]["message"]["content"].as_str().unwrap()
    );
    // Without max_tokens a chat may fill what one request can hold: the context window
    // (64), or the KV cache when that is smaller, instead of being refused.
    let per_token = 2 * 2 * 32 * 4; // layers x (K, V) x hidden x f32 of the fixture
    let small = huggingface::load(
        "fbopt",
        &dir,
        &LlmOptions {
            kv_cache_bytes: 40 * per_token,
            ..LlmOptions::default()
        },
    )
    .unwrap();
    let small = tidal_modelserver::app(Arc::new(DataPlane::with_generators(
        vec![],
        vec![Arc::new(small)],
    )));
    let (status, body) = post(
        &small,
        "/openai/v1/chat/completions",
        json!({"model": "fbopt", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "ignore_eos": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["usage"]["total_tokens"], 40);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn bad_requests_get_openai_errors_naming_the_field() {
    let app = server("opt-tiny-preln");
    let cases = [
        (
            json!({"model": "nope", "prompt": "x"}),
            StatusCode::NOT_FOUND,
            Some("model"),
            "does not exist",
        ),
        (
            json!({"prompt": "x"}),
            StatusCode::BAD_REQUEST,
            Some("model"),
            "required",
        ),
        (
            json!({"model": "fbopt"}),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
            "required",
        ),
        (
            json!({"model": "fbopt", "prompt": "x", "max_tokens": "ten"}),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
            "max_tokens",
        ),
        (
            json!({"model": "fbopt", "prompt": "x", "temperature": 3}),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
            "between 0 and 2",
        ),
        (
            json!({"model": "fbopt", "prompt": "x", "n": 2}),
            StatusCode::BAD_REQUEST,
            Some("n"),
            "n = 1",
        ),
        (
            json!({"model": "fbopt", "prompt": "x", "max_tokens": 500}),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
            "maximum context length is 64",
        ),
        (
            json!({"model": "fbopt", "prompt": "x", "max_tokens": u64::MAX}),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
            "maximum context length is 64",
        ),
        (
            json!({"model": "fbopt", "prompt": "x", "max_tokens": 0}),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
            "at least 1",
        ),
        (
            json!({"model": "fbopt", "prompt": "x", "stop": vec!["a"; 17]}),
            StatusCode::BAD_REQUEST,
            Some("stop"),
            "at most 16 stop strings",
        ),
        (
            json!({"model": "fbopt", "prompt": [2, 9999]}),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
            "out of range",
        ),
        (
            json!({"model": "fbopt", "prompt": "x", "logprobs": 2}),
            StatusCode::BAD_REQUEST,
            Some("logprobs"),
            "not supported",
        ),
    ];
    for (body, status, param, message) in cases {
        let (got, err) = post(&app, "/openai/v1/completions", body.clone()).await;
        assert_eq!(got, status, "{body} -> {err}");
        assert_eq!(err["error"]["param"], json!(param), "{body} -> {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(message),
            "{body} -> {err}"
        );
    }
    // Not JSON at all.
    let (got, text) = call(&app, "POST", "/openai/v1/completions", json!("{")).await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{text}");
    // No chat template: refused by name, not guessed.
    let (got, err) = post(
        &app,
        "/openai/v1/chat/completions",
        json!({"model": "fbopt", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["param"], "messages");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no chat template")
    );
    // The server still answers after all that.
    let (got, _) = post(
        &app,
        "/openai/v1/completions",
        json!({"model": "fbopt", "prompt": "x", "max_tokens": 2}),
    )
    .await;
    assert_eq!(got, StatusCode::OK);
}

#[tokio::test]
async fn models_health_and_vllm_metrics() {
    let app = server("opt-tiny-preln");
    let (status, text) = call(&app, "GET", "/openai/v1/models", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "fbopt");
    assert_eq!(list["data"][0]["max_model_len"], 64);
    // KServe's v1 list and OpenAI's list share /v1/models.
    let (_, text) = call(&app, "GET", "/v1/models", Value::Null).await;
    let both: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(both["models"], json!(["fbopt"]));
    assert_eq!(both["data"][0]["id"], "fbopt");
    let (status, _) = call(&app, "GET", "/v2/health/ready", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, "GET", "/v2/models/fbopt/ready", Value::Null).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = post(&app, "/openai/v1/completions", json!({"model": "fbopt", "prompt": "Hi", "max_tokens": 4, "temperature": 0, "ignore_eos": true})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = call(&app, "GET", "/metrics", Value::Null).await;
    for line in [
        "vllm:num_requests_running{model_name=\"fbopt\"} 0",
        "vllm:num_requests_waiting{model_name=\"fbopt\"} 0",
        "vllm:kv_cache_usage_perc{model_name=\"fbopt\"} 0",
        "vllm:generation_tokens_total{model_name=\"fbopt\"} 4",
        "vllm:request_success_total{model_name=\"fbopt\",finished_reason=\"length\"} 1",
        "vllm:time_to_first_token_seconds_count{model_name=\"fbopt\"} 1",
        "vllm:inter_token_latency_seconds_count{model_name=\"fbopt\"} 3",
        "vllm:e2e_request_latency_seconds_count{model_name=\"fbopt\"} 1",
        "rest_server_requests_total{model_name=\"fbopt\",protocol=\"openai\",status_code=\"200\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    let prompt_tokens = tidal_llm::Tokenizer::from_dir(&fixture("opt-tiny-preln"))
        .unwrap()
        .encode("Hi", true)
        .unwrap()
        .len();
    assert!(metrics.contains(&format!(
        "vllm:prompt_tokens_total{{model_name=\"fbopt\"}} {prompt_tokens}"
    )));
}

/// A Llama-family transformers checkpoint folder (SmolLM2-135M-Instruct, written out from its
/// GGUF as bf16 safetensors) is served with the tokenizer of `tokenizer.json`, the chat
/// template of `tokenizer_config.json` and the EOS of `config.json`.
#[tokio::test]
async fn a_llama_checkpoint_folder_answers_chat_with_its_own_template() {
    let gguf = smollm2::gguf_path();
    let dir = std::env::temp_dir().join(format!("tidal-openai-llama-{}", std::process::id()));
    smollm2::export_transformers(&gguf, &dir, candle_core::DType::BF16);
    // As stored (computed in f32), and quantized at load (`--quantization q8_0`).
    for quantization in [None, Some(Quantization::Q8_0)] {
        let options = LlmOptions {
            quantization,
            ..LlmOptions::default()
        };
        let generator = huggingface::load("smollm2", &dir, &options).unwrap();
        let app = app(Arc::new(DataPlane::with_generators(
            vec![],
            vec![Arc::new(generator)],
        )));
        let (status, body) = post(
            &app,
            "/openai/v1/chat/completions",
            json!({
                "model": "smollm2",
                // A system message keeps this small model's answer clear of
                // rounding (see tests/clients/test_openai.py).
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."},
                    {"role": "user", "content": "What is the capital of France?"},
                ],
                "temperature": 0,
                "max_tokens": 30,
            }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{quantization:?}: {body}");
        let answer = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(answer.contains("Paris"), "{quantization:?}: {body}");
        // `<|im_end|>` (config.json's eos_token_id) ended the turn before max_tokens.
        assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
        assert!(
            body["usage"]["completion_tokens"].as_u64().unwrap() < 30,
            "{body}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // OPT has no quantized path; asking for one is an error, not silently ignored.
    let opt = LlmOptions {
        quantization: Some(Quantization::Q8_0),
        ..LlmOptions::default()
    };
    let err = huggingface::load("fbopt", &fixture("opt-tiny-preln"), &opt)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--quantization"), "{err}");
}

/// A streamed generation counts as in progress (and is timed) until its last event, not
/// until its headers; a client that hangs up first is counted as 499.
#[tokio::test]
async fn a_streamed_request_is_in_progress_until_its_last_event() {
    let app = server("opt-tiny-preln");
    let streamed = || {
        Request::builder()
            .method("POST")
            .uri("/openai/v1/completions")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"model": "fbopt", "prompt": "Hi", "max_tokens": 8, "temperature": 0,
                       "ignore_eos": true, "stream": true})
                .to_string(),
            ))
            .unwrap()
    };
    // The sample `name` in the exposition `metrics` has the value `want`.
    let expect = |metrics: &str, name: &str, want: &str| {
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned());
        assert_eq!(value.as_deref(), Some(want), "{metrics}");
    };
    const IN_PROGRESS: &str =
        "rest_server_requests_in_progress{model_name=\"fbopt\",protocol=\"openai\"} ";

    let response = app.clone().oneshot(streamed()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, metrics) = call(&app, "GET", "/metrics", Value::Null).await;
    expect(&metrics, IN_PROGRESS, "1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("data: [DONE]"));
    let (_, metrics) = call(&app, "GET", "/metrics", Value::Null).await;
    expect(&metrics, IN_PROGRESS, "0");
    let ok =
        "rest_server_requests_total{model_name=\"fbopt\",protocol=\"openai\",status_code=\"200\"} ";
    expect(&metrics, ok, "1");

    let response = app.clone().oneshot(streamed()).await.unwrap();
    drop(response);
    let (_, metrics) = call(&app, "GET", "/metrics", Value::Null).await;
    expect(&metrics, IN_PROGRESS, "0");
    let gone =
        "rest_server_requests_total{model_name=\"fbopt\",protocol=\"openai\",status_code=\"499\"} ";
    expect(&metrics, gone, "1");
    expect(&metrics, ok, "1");
}
