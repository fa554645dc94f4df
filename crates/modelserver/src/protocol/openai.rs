//! OpenAI-compatible text generation at KServe's paths (`/openai/v1/...`) and vLLM's
//! (`/v1/completions`, `/v1/chat/completions`): completions and chat completions, whole or
//! streamed as server-sent events, with usage counts and OpenAI's error bodies.
//!
//! A thin adapter: requests become token ids and [`SamplingParams`] for the
//! [`TextGenerator`], its [`TextEvent`]s become OpenAI JSON. vLLM's extensions that clients
//! rely on (`top_k`, `ignore_eos`, `stop_token_ids`, `min_tokens: 0`) are accepted; options
//! Tidal does not implement (`n > 1`, `logprobs`, penalties, tools) are refused by name
//! rather than silently ignored.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tidal_llm::{ChatMessage, SamplingParams};

use crate::dataplane::{DataPlane, DataPlaneError, new_request_id};
use crate::generative::{GenerateError, Prompt, TextEvent, TextGenerator, TextStream, Usage};
use crate::metrics::RequestTimer;

/// The OpenAI routes.
pub fn router(dp: Arc<DataPlane>) -> Router {
    let mut router = Router::new();
    for prefix in ["/openai/v1", "/v1"] {
        router = router
            .route(&format!("{prefix}/completions"), post(completions))
            .route(
                &format!("{prefix}/chat/completions"),
                post(chat_completions),
            );
    }
    router
        .route("/openai/v1/models", get(list_models))
        .route("/openai/v1/models/{name}", get(get_model))
        .with_state(dp)
}

/// An OpenAI error: `{"error": {"message", "type", "param", "code"}}` with its HTTP status.
#[derive(Debug)]
pub struct OpenAiError {
    status: StatusCode,
    message: String,
    param: Option<String>,
}

impl OpenAiError {
    fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }
}

impl From<GenerateError> for OpenAiError {
    fn from(e: GenerateError) -> Self {
        match e {
            GenerateError::InvalidInput { message, param } => OpenAiError {
                status: StatusCode::BAD_REQUEST,
                message,
                param,
            },
            GenerateError::Internal(message) => OpenAiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message,
                param: None,
            },
        }
    }
}

impl From<DataPlaneError> for OpenAiError {
    fn from(e: DataPlaneError) -> Self {
        let message = match &e {
            DataPlaneError::ModelNotFound(name) => format!("The model `{name}` does not exist."),
            other => other.to_string(),
        };
        OpenAiError {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message,
            param: matches!(e, DataPlaneError::ModelNotFound(_)).then(|| "model".to_owned()),
        }
    }
}

impl OpenAiError {
    fn body(&self) -> Value {
        let kind = match self.status.as_u16() {
            400 => "invalid_request_error",
            404 => "not_found_error",
            503 => "service_unavailable_error",
            _ => "internal_server_error",
        };
        json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": if self.status == StatusCode::NOT_FOUND { json!("model_not_found") } else { Value::Null },
        }})
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Decodes a JSON body, naming the field at fault when a value has the wrong type.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, OpenAiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            OpenAiError::invalid(None, format!("invalid JSON body: {inner}"))
        } else {
            OpenAiError::invalid(Some(&path), format!("{path}: {inner}"))
        }
    })
}

/// A string or a list of strings (`stop`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Every accepted shape of `prompt`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Sampling fields shared by both endpoints.
#[derive(Debug, Deserialize)]
struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    seed: Option<u64>,
    stop: Option<OneOrMany>,
    #[serde(default)]
    stop_token_ids: Vec<u32>,
    #[serde(default)]
    ignore_eos: bool,
    n: Option<u32>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

impl Sampling {
    /// The engine's parameters; `max_tokens` is filled in by the caller.
    fn params(&self, max_tokens: usize) -> Result<(SamplingParams, Vec<String>), OpenAiError> {
        if max_tokens == 0 {
            return Err(OpenAiError::invalid(
                Some("max_tokens"),
                "max_tokens must be at least 1, got 0",
            ));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(OpenAiError::invalid(
                Some("n"),
                "only n = 1 is supported: send one request per completion",
            ));
        }
        for (name, value) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if value.is_some_and(|v| v != 0.0) {
                return Err(OpenAiError::invalid(
                    Some(name),
                    format!("{name} is not supported; omit it or send 0"),
                ));
            }
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !temperature.is_finite() || !(0.0..=2.0).contains(&temperature) {
            return Err(OpenAiError::invalid(
                Some("temperature"),
                format!("temperature must be between 0 and 2, got {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(OpenAiError::invalid(
                Some("top_p"),
                format!("top_p must be in (0, 1], got {top_p}"),
            ));
        }
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => None,
            Some(k) if k > 0 => Some(k as usize),
            Some(k) => {
                return Err(OpenAiError::invalid(
                    Some("top_k"),
                    format!("top_k must be -1 (disabled) or at least 1, got {k}"),
                ));
            }
        };
        let stop = self.stop.as_ref().map_or_else(Vec::new, |s| match s {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        });
        // Every generated token is checked against every stop string; keep that bounded.
        if stop.len() > MAX_STOP_STRINGS || stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
            return Err(OpenAiError::invalid(
                Some("stop"),
                format!(
                    "at most {MAX_STOP_STRINGS} stop strings of at most {MAX_STOP_BYTES} bytes each"
                ),
            ));
        }
        let params = SamplingParams {
            temperature,
            top_k,
            top_p,
            seed: self.seed.unwrap_or_else(random_seed),
            max_tokens,
            stop_token_ids: self.stop_token_ids.clone(),
            ignore_eos: self.ignore_eos,
        };
        Ok((params, stop))
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// Bounds on `stop` (OpenAI allows 4 strings; vLLM any number).
const MAX_STOP_STRINGS: usize = 16;
const MAX_STOP_BYTES: usize = 256;

fn random_seed() -> u64 {
    let id = new_request_id().replace('-', "");
    u64::from_str_radix(&id[..16], 16).unwrap_or(0)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", new_request_id().replace('-', ""))
}

fn usage_json(usages: &[Usage]) -> Value {
    let prompt: usize = usages.iter().map(|u| u.prompt_tokens).sum();
    let completion: usize = usages.iter().map(|u| u.completion_tokens).sum();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Finds the model a request names, refusing requests without one.
fn generator_for<'a>(
    dp: &'a DataPlane,
    model: Option<&str>,
) -> Result<&'a Arc<TextGenerator>, OpenAiError> {
    let model = model.ok_or_else(|| OpenAiError::invalid(Some("model"), "model is required"))?;
    Ok(dp.generator(model)?)
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Option<PromptInput>,
    max_tokens: Option<usize>,
    #[serde(default)]
    echo: bool,
    logprobs: Option<Value>,
    suffix: Option<String>,
    #[serde(flatten)]
    sampling: Sampling,
}

async fn completions(State(dp): State<Arc<DataPlane>>, body: Bytes) -> Response {
    counted(&dp, &body, completions_inner(&dp, &body)).await
}

/// Runs an endpoint, counting the request in the server's request metrics and turning its
/// error into OpenAI's body. The request ends when its body has been sent, so a streamed
/// generation counts as in progress, and is timed, until its last event; a client that hangs
/// up first is counted as 499.
async fn counted(
    dp: &DataPlane,
    body: &Bytes,
    endpoint: impl std::future::Future<Output = Result<Response, OpenAiError>>,
) -> Response {
    let timer = dp.metrics.start(&peek_model(body), "openai");
    let response = endpoint.await.unwrap_or_else(IntoResponse::into_response);
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        axum::body::Body::new(TimedBody {
            inner: body,
            timer: std::cell::Cell::new(Some((timer, status))),
        }),
    )
}

/// A response body that finishes its request's timer after the last frame (hyper stops
/// polling a body that says it has ended, so that counts as the end too).
struct TimedBody {
    inner: axum::body::Body,
    timer: std::cell::Cell<Option<(RequestTimer, u16)>>,
}

impl TimedBody {
    fn end(&self) {
        if let Some((timer, status)) = self.timer.take() {
            timer.finish(status);
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.end();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.inner.is_end_stream();
        if ended {
            self.end();
        }
        ended
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn completions_inner(dp: &DataPlane, body: &Bytes) -> Result<Response, OpenAiError> {
    let req: CompletionRequest = parse_body(body)?;
    let generator = generator_for(dp, req.model.as_deref())?.clone();
    if req.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(OpenAiError::invalid(
            Some("logprobs"),
            "logprobs are not supported",
        ));
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(OpenAiError::invalid(
            Some("suffix"),
            "suffix is not supported",
        ));
    }
    let prompts: Vec<Prompt> = match req.prompt {
        None => return Err(OpenAiError::invalid(Some("prompt"), "prompt is required")),
        Some(PromptInput::Text(t)) => vec![Prompt::Text(t)],
        Some(PromptInput::Texts(v)) => v.into_iter().map(Prompt::Text).collect(),
        Some(PromptInput::Tokens(v)) => vec![Prompt::Tokens(v)],
        Some(PromptInput::TokenLists(v)) => v.into_iter().map(Prompt::Tokens).collect(),
    };
    if prompts.is_empty() {
        return Err(OpenAiError::invalid(
            Some("prompt"),
            "prompt must not be empty",
        ));
    }
    let (params, stop) = req.sampling.params(req.max_tokens.unwrap_or(16))?;
    let mut streams = Vec::with_capacity(prompts.len());
    let mut echoes = Vec::with_capacity(prompts.len());
    for (i, prompt) in prompts.iter().enumerate() {
        let param = if prompts.len() == 1 {
            "prompt".to_owned()
        } else {
            format!("prompt[{i}]")
        };
        let ids = generator.encode(prompt, &param)?;
        echoes.push(match (req.echo, prompt) {
            (true, Prompt::Text(t)) => t.clone(),
            _ => String::new(),
        });
        streams.push(generator.generate(ids, params.clone(), stop.clone())?);
    }
    let id = new_id("cmpl");
    let created = now_secs();
    let model = generator.name().to_owned();
    if !req.sampling.stream {
        let mut choices = Vec::with_capacity(streams.len());
        let mut usages = Vec::with_capacity(streams.len());
        for (index, (stream, echo)) in streams.into_iter().zip(echoes).enumerate() {
            let (text, usage) = stream.collect().await?;
            choices.push(json!({
                "index": index,
                "text": echo + &text,
                "logprobs": null,
                "finish_reason": usage.finish_reason,
            }));
            usages.push(usage);
        }
        return Ok(axum::Json(json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage_json(&usages),
        }))
        .into_response());
    }
    let chunk = move |choices: Value, usage: Option<Value>| {
        let mut v = json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    };
    let events = sse_events(
        streams,
        echoes,
        req.sampling.include_usage(),
        move |index, piece| match piece {
            Piece::Text(text) => chunk(
                json!([{"index": index, "text": text, "logprobs": null, "finish_reason": null}]),
                None,
            ),
            Piece::End(reason) => chunk(
                json!([{"index": index, "text": "", "logprobs": null, "finish_reason": reason}]),
                None,
            ),
            Piece::Usage(usage) => chunk(json!([]), Some(usage)),
            Piece::Start => Value::Null,
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A message's `content`: text, or a list of parts of which only text is supported.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    logprobs: Option<bool>,
    tools: Option<Vec<Value>>,
    #[serde(flatten)]
    sampling: Sampling,
}

async fn chat_completions(State(dp): State<Arc<DataPlane>>, body: Bytes) -> Response {
    counted(&dp, &body, chat_inner(&dp, &body)).await
}

async fn chat_inner(dp: &DataPlane, body: &Bytes) -> Result<Response, OpenAiError> {
    let req: ChatRequest = parse_body(body)?;
    let generator = generator_for(dp, req.model.as_deref())?.clone();
    if req.logprobs == Some(true) {
        return Err(OpenAiError::invalid(
            Some("logprobs"),
            "logprobs are not supported",
        ));
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(OpenAiError::invalid(
            Some("tools"),
            "tool calling is not supported",
        ));
    }
    let raw = req
        .messages
        .ok_or_else(|| OpenAiError::invalid(Some("messages"), "messages is required"))?;
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.into_iter().enumerate() {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return Err(OpenAiError::invalid(
                                Some(&format!("messages[{i}].content[{j}]")),
                                format!(
                                    "content parts of type {kind:?} are not supported; send text"
                                ),
                            ));
                        }
                    }
                }
                text
            }
        };
        messages.push(ChatMessage {
            role: m.role,
            content,
        });
    }
    let ids = generator.encode_chat(&messages)?;
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or_else(|| generator.token_budget().saturating_sub(ids.len()));
    let (params, stop) = req.sampling.params(max_tokens)?;
    let stream = generator.generate(ids, params, stop)?;
    let id = new_id("chatcmpl");
    let created = now_secs();
    let model = generator.name().to_owned();
    if !req.sampling.stream {
        let (text, usage) = stream.collect().await?;
        return Ok(axum::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": usage.finish_reason,
            }],
            "usage": usage_json(&[usage]),
        }))
        .into_response());
    }
    let chunk = move |choices: Value, usage: Option<Value>| {
        let mut v = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    };
    let events = sse_events(
        vec![stream],
        vec![String::new()],
        req.sampling.include_usage(),
        move |index, piece| match piece {
            Piece::Start => chunk(
                json!([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
                None,
            ),
            Piece::Text(text) => chunk(
                json!([{"index": index, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]),
                None,
            ),
            Piece::End(reason) => chunk(
                json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": reason}]),
                None,
            ),
            Piece::Usage(usage) => chunk(json!([]), Some(usage)),
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// What one SSE chunk carries; the endpoint turns it into its JSON.
enum Piece {
    /// Before any text (chat sends the assistant role here).
    Start,
    Text(String),
    End(&'static str),
    Usage(Value),
}

/// The SSE body for several generations: their chunks interleaved as they come, then the
/// usage chunk if asked for, then `[DONE]`. A generation error ends the stream with an
/// error chunk, as vLLM does. Dropping the body (client gone) cancels the generations.
fn sse_events(
    streams: Vec<TextStream>,
    prefixes: Vec<String>,
    include_usage: bool,
    render: impl Fn(usize, Piece) -> Value + Send + Sync + 'static,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    enum Item {
        Piece(usize, Piece),
        Failed(GenerateError),
        Usage(Usage),
    }
    let count = streams.len();
    let per_stream =
        streams
            .into_iter()
            .zip(prefixes)
            .enumerate()
            .map(|(index, (stream, prefix))| {
                let start = futures::stream::iter([
                    Item::Piece(index, Piece::Start),
                    Item::Piece(index, Piece::Text(prefix)),
                ]);
                let body = futures::stream::unfold(Some(stream), move |state| async move {
                    let mut stream = state?;
                    match stream.next().await? {
                        Ok(TextEvent::Delta(d)) => {
                            Some((vec![Item::Piece(index, Piece::Text(d))], Some(stream)))
                        }
                        Ok(TextEvent::Done(usage)) => Some((
                            vec![
                                Item::Piece(index, Piece::End(usage.finish_reason)),
                                Item::Usage(usage),
                            ],
                            None,
                        )),
                        Err(e) => Some((vec![Item::Failed(e)], None)),
                    }
                })
                .flat_map(futures::stream::iter);
                start.chain(body).boxed()
            });
    let merged = futures::stream::select_all(per_stream);
    let render = Arc::new(render);
    let mut usages: Vec<Usage> = Vec::with_capacity(count);
    // `scan` ends the stream after an error chunk, which drops (and so cancels) the other
    // prompts' generations; `None` items inside are pieces with nothing to send.
    let body = merged
        .scan(false, move |failed, item| {
            if *failed {
                return futures::future::ready(None);
            }
            let out = match item {
                Item::Piece(_, Piece::Text(t)) if t.is_empty() => None,
                Item::Piece(index, piece) => {
                    let v = render(index, piece);
                    (!v.is_null()).then(|| SseEvent::default().data(v.to_string()))
                }
                Item::Failed(e) => {
                    *failed = true;
                    Some(SseEvent::default().data(OpenAiError::from(e).body().to_string()))
                }
                Item::Usage(u) => {
                    usages.push(u);
                    (include_usage && usages.len() == count).then(|| {
                        SseEvent::default()
                            .data(render(0, Piece::Usage(usage_json(&usages))).to_string())
                    })
                }
            };
            futures::future::ready(Some(out))
        })
        .filter_map(|out| futures::future::ready(out.map(Ok)));
    body.chain(futures::stream::once(futures::future::ready(Ok(
        SseEvent::default().data("[DONE]"),
    ))))
}

/// The `model` field, for metrics labels, without failing on a bad body.
fn peek_model(body: &Bytes) -> String {
    #[derive(Deserialize)]
    struct Peek {
        model: Option<String>,
    }
    serde_json::from_slice::<Peek>(body)
        .ok()
        .and_then(|p| p.model)
        .unwrap_or_default()
}

fn model_card(g: &TextGenerator) -> Value {
    json!({
        "id": g.name(),
        "object": "model",
        "created": g.created(),
        "owned_by": "tidal",
        "max_model_len": g.max_context(),
    })
}

/// The OpenAI model list body; also merged into KServe's `/v1/models` answer.
pub fn model_list(dp: &DataPlane) -> Value {
    let data: Vec<Value> = dp.generators().map(|g| model_card(g)).collect();
    json!({"object": "list", "data": data})
}

async fn list_models(State(dp): State<Arc<DataPlane>>) -> impl IntoResponse {
    axum::Json(model_list(&dp))
}

async fn get_model(State(dp): State<Arc<DataPlane>>, Path(name): Path<String>) -> Response {
    match dp.generator(&name) {
        Ok(g) => axum::Json(model_card(g)).into_response(),
        Err(e) => OpenAiError::from(e).into_response(),
    }
}
