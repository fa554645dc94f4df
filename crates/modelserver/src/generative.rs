//! The serving core for generative models: text in, text out, over the token-level
//! batching engine of `tidal-llm`. Protocol modules (OpenAI) are thin adapters over this.
//!
//! A [`TextGenerator`] owns what turns text into tokens and back (tokenizer, chat template)
//! and a handle to the engine. A [`TextStream`] turns the engine's token events into text
//! deltas: it decodes incrementally (holding back an incomplete UTF-8 sequence), applies
//! stop strings (holding back text that may be the start of one, and cancelling the engine
//! request when one appears), and reports the finish reason and token usage.

use std::sync::Arc;

use tidal_llm::{
    CausalLm, ChatMessage, ChatTemplate, Engine, EngineConfig, Event, FinishReason, SamplingParams,
    Tokenizer,
};

use crate::metrics::{LlmMetrics, LlmObserver};

use crate::model::{Model, ModelError, ModelMetadata, TensorMetadata};
use crate::tensor::Tensor;

/// Why a generation request was refused or failed; the protocol maps it to its body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// The request is invalid; `param` names the request field at fault (HTTP 400).
    #[error("{message}")]
    InvalidInput {
        /// What is wrong.
        message: String,
        /// The request field at fault, when one is.
        param: Option<String>,
    },
    /// The model failed (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl GenerateError {
    /// An input error naming `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        GenerateError::InvalidInput {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Text, tokenized with the model's special tokens (OPT's leading `</s>`).
    Text(String),
    /// Token ids, used as given.
    Tokens(Vec<u32>),
}

/// A generative model being served.
pub struct TextGenerator {
    name: String,
    engine: Engine,
    metrics: LlmMetrics,
    tokenizer: Arc<Tokenizer>,
    chat_template: Option<ChatTemplate>,
    /// Unix time the model was loaded (OpenAI's `created`).
    created: u64,
}

impl TextGenerator {
    /// Starts a batching engine for `model` and serves it as `name`, with vLLM's metrics.
    pub fn start<M: CausalLm>(
        name: &str,
        model: M,
        config: EngineConfig,
        tokenizer: Tokenizer,
        chat_template: Option<ChatTemplate>,
    ) -> Result<Self, GenerateError> {
        let observer = Arc::new(LlmObserver::new(name));
        let engine = Engine::start(model, config, observer.clone())
            .map_err(|e| GenerateError::Internal(e.to_string()))?;
        Ok(TextGenerator {
            name: name.to_string(),
            metrics: LlmMetrics::new(name, engine.clone(), observer),
            engine,
            tokenizer: Arc::new(tokenizer),
            chat_template,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    /// Its `vllm:*` metrics.
    pub fn metrics(&self) -> &LlmMetrics {
        &self.metrics
    }

    /// The name clients address it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Unix time the model was loaded.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The engine (for its gauges).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The context window in tokens.
    pub fn max_context(&self) -> usize {
        self.engine.max_context()
    }

    /// The most tokens one request can hold (prompt plus output): the context window, or the
    /// whole KV cache if that is smaller. What "as many as fit" means for a chat request
    /// without `max_tokens`.
    pub fn token_budget(&self) -> usize {
        self.engine.max_context().min(self.engine.capacity_tokens())
    }

    /// Token ids of a prompt; `param` names the request field for errors.
    pub fn encode(&self, prompt: &Prompt, param: &str) -> Result<Vec<u32>, GenerateError> {
        let ids = match prompt {
            Prompt::Text(text) => self
                .tokenizer
                .encode(text, true)
                .map_err(|e| GenerateError::invalid(param, e.to_string()))?,
            Prompt::Tokens(ids) => {
                let vocab = self.tokenizer.vocab_size();
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(GenerateError::invalid(
                        param,
                        format!(
                            "token id {bad} is out of range: the vocabulary has {vocab} tokens"
                        ),
                    ));
                }
                ids.clone()
            }
        };
        if ids.is_empty() {
            return Err(GenerateError::invalid(param, "the prompt is empty"));
        }
        Ok(ids)
    }

    /// Token ids of a conversation, rendered with the model's chat template and an opened
    /// assistant turn.
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, GenerateError> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            GenerateError::invalid(
                "messages",
                format!(
                    "model {} has no chat template (its tokenizer config names none); use /openai/v1/completions",
                    self.name
                ),
            )
        })?;
        if messages.is_empty() {
            return Err(GenerateError::invalid(
                "messages",
                "messages must not be empty",
            ));
        }
        let text = template
            .render(messages, true)
            .map_err(|e| GenerateError::invalid("messages", e.to_string()))?;
        // The template already wrote the special tokens it wants.
        let ids = self
            .tokenizer
            .encode(&text, false)
            .map_err(|e| GenerateError::invalid("messages", e.to_string()))?;
        if ids.is_empty() {
            return Err(GenerateError::invalid(
                "messages",
                "the rendered conversation is empty",
            ));
        }
        Ok(ids)
    }

    /// Starts generating after `prompt`. `max_tokens` is in `params`; `stop` strings end the
    /// generation and are not part of the output.
    pub fn generate(
        &self,
        prompt: Vec<u32>,
        params: SamplingParams,
        stop: Vec<String>,
    ) -> Result<TextStream, GenerateError> {
        let context = self.engine.max_context();
        if prompt.len().saturating_add(params.max_tokens) > context {
            return Err(GenerateError::invalid(
                "max_tokens",
                format!(
                    "this model's maximum context length is {context} tokens; the prompt has {} tokens and max_tokens asks for {} more",
                    prompt.len(),
                    params.max_tokens
                ),
            ));
        }
        let prompt_tokens = prompt.len();
        // Like vLLM, the first tokens are decoded against the end of the prompt, so that a
        // SentencePiece token's leading `▁` reads as the space it is instead of being
        // stripped as the start of a text.
        let mut seed = prompt[prompt.len().saturating_sub(DETOKENIZE_CONTEXT)..].to_vec();
        // A prompt ending inside a character would misalign the first delta.
        if self
            .tokenizer
            .decode(&seed, true)
            .map_or(true, |t| t.ends_with('\u{FFFD}'))
        {
            seed.clear();
        }
        let tokens = self
            .engine
            .submit(tidal_llm::GenerateRequest { prompt, params })
            .map_err(|e| match e {
                tidal_llm::Error::InvalidInput(m) => GenerateError::InvalidInput {
                    message: m,
                    param: None,
                },
                other => GenerateError::Internal(other.to_string()),
            })?;
        Ok(TextStream {
            tokens: Some(tokens),
            tokenizer: self.tokenizer.clone(),
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            seeded: seed.len(),
            read_offset: seed.len(),
            prefix_offset: 0,
            ids: seed,
            text: String::new(),
            sent: 0,
            prompt_tokens,
            pending_done: None,
            finished: false,
        })
    }
}

/// Generative models answer v1/v2 health and metadata like any model; their inference
/// goes through the OpenAI routes.
impl Model for TextGenerator {
    fn name(&self) -> &str {
        &self.name
    }

    fn metadata(&self) -> ModelMetadata {
        let text = |name: &str| TensorMetadata {
            name: name.into(),
            datatype: "BYTES".into(),
            shape: vec![-1],
        };
        ModelMetadata {
            platform: "tidal-llm".into(),
            versions: vec![],
            inputs: vec![text("text_input")],
            outputs: vec![text("text_output")],
        }
    }

    fn infer(&self, _request: &crate::model::InferRequest) -> Result<Vec<Tensor>, ModelError> {
        Err(ModelError::InvalidInput(format!(
            "model {} generates text: use POST /openai/v1/completions or /openai/v1/chat/completions",
            self.name
        )))
    }
}

/// One piece of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextEvent {
    /// New text.
    Delta(String),
    /// The end; nothing follows.
    Done(Usage),
}

/// How a generation ended and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `stop` (EOS, a stop token or a stop string) or `length`.
    pub finish_reason: &'static str,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
}

/// Prompt tokens the detokenizer starts from (vLLM uses five).
const DETOKENIZE_CONTEXT: usize = 5;

/// Text deltas of one generation. Dropping it cancels the generation.
pub struct TextStream {
    tokens: Option<tidal_llm::TokenStream>,
    tokenizer: Arc<Tokenizer>,
    stop: Vec<String>,
    /// The last prompt tokens (`seeded` of them), then the generated ones.
    ids: Vec<u32>,
    /// Prompt tokens at the start of `ids`.
    seeded: usize,
    /// Incremental decoding window (see [`TextStream::decode_new`]): `ids[prefix_offset..
    /// read_offset]` were decoded into the end of `text` last time.
    prefix_offset: usize,
    /// Tokens up to here are in `text`.
    read_offset: usize,
    /// Everything decoded so far.
    text: String,
    /// Bytes of `text` already handed out.
    sent: usize,
    prompt_tokens: usize,
    /// The end, after the last delta was handed out.
    pending_done: Option<Usage>,
    finished: bool,
}

impl TextStream {
    /// The next delta or the end; `None` after the end.
    pub async fn next(&mut self) -> Option<Result<TextEvent, GenerateError>> {
        loop {
            if let Some(usage) = self.pending_done.take() {
                self.finished = true;
                return Some(Ok(TextEvent::Done(usage)));
            }
            if self.finished {
                return None;
            }
            let event = match self.tokens.as_mut() {
                Some(tokens) => tokens.next().await,
                None => None,
            };
            match event {
                Some(Event::Token(id)) => {
                    if let Some(out) = self.push_token(id) {
                        return Some(out);
                    }
                }
                Some(Event::Finished(f)) => {
                    // Text held back for an incomplete character is final now.
                    if let Err(e) = self.decode_new(true) {
                        self.finished = true;
                        return Some(Err(e));
                    }
                    // The last tokens may complete a stop string only now.
                    if let Some(at) = self.first_stop() {
                        self.text.truncate(at);
                        return Some(Ok(self.finish("stop")));
                    }
                    let finish_reason = match f.reason {
                        FinishReason::Stop(_) => "stop",
                        FinishReason::Length => "length",
                    };
                    return Some(Ok(self.finish(finish_reason)));
                }
                Some(Event::Failed(message)) => {
                    self.finished = true;
                    return Some(Err(GenerateError::Internal(message)));
                }
                None => {
                    self.finished = true;
                    return Some(Err(GenerateError::Internal(
                        "the engine stopped before the generation finished".into(),
                    )));
                }
            }
        }
    }

    /// Collects the whole generation: the text and how it ended.
    pub async fn collect(mut self) -> Result<(String, Usage), GenerateError> {
        let mut text = String::new();
        while let Some(event) = self.next().await {
            match event? {
                TextEvent::Delta(d) => text.push_str(&d),
                TextEvent::Done(usage) => return Ok((text, usage)),
            }
        }
        Err(GenerateError::Internal(
            "the generation ended without a result".into(),
        ))
    }

    /// Decodes after a new token; returns a delta when there is text to hand out, or the
    /// end when a stop string appeared.
    fn push_token(&mut self, id: u32) -> Option<Result<TextEvent, GenerateError>> {
        self.ids.push(id);
        match self.decode_new(false) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                self.finished = true;
                return Some(Err(e));
            }
        }
        if let Some(at) = self.first_stop() {
            self.text.truncate(at);
            if let Some(tokens) = self.tokens.take() {
                tokens.finish_as_stopped();
            }
            return Some(Ok(self.finish("stop")));
        }
        let hold = self.stop_prefix_len();
        self.take(self.text.len() - hold)
            .map(|d| Ok(TextEvent::Delta(d)))
    }

    /// Appends the text of the tokens after `read_offset`, the way vLLM and TGI detokenize:
    /// decode a window that starts a little earlier (`prefix_offset`) with and without the new
    /// tokens and keep the difference. Each token costs a few tokens' decoding, not the whole
    /// output's, and the window's context keeps tokenizers that treat a leading space or a
    /// byte fallback specially in agreement with decoding everything at once. An incomplete
    /// UTF-8 sequence (U+FFFD at the end) waits for the next token unless `flush`. Returns
    /// whether text was added.
    fn decode_new(&mut self, flush: bool) -> Result<bool, GenerateError> {
        let decode = |ids: &[u32]| {
            self.tokenizer
                .decode(ids, true)
                .map_err(|e| GenerateError::Internal(e.to_string()))
        };
        let prefix = decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let window = decode(&self.ids[self.prefix_offset..])?;
        let complete = flush || !window.ends_with('\u{FFFD}');
        match window.get(prefix.len()..) {
            Some(new) if complete && !new.is_empty() => {
                self.text.push_str(new);
                self.prefix_offset = self.read_offset;
                self.read_offset = self.ids.len();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Ends the stream: hands out any held-back text first, then the usage.
    fn finish(&mut self, finish_reason: &'static str) -> TextEvent {
        let usage = Usage {
            finish_reason,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.ids.len() - self.seeded,
        };
        match self.take(self.text.len()) {
            Some(delta) => {
                self.pending_done = Some(usage);
                TextEvent::Delta(delta)
            }
            None => {
                self.finished = true;
                TextEvent::Done(usage)
            }
        }
    }

    /// The text from what was handed out up to byte `end`, if any.
    fn take(&mut self, end: usize) -> Option<String> {
        if end <= self.sent || !self.text.is_char_boundary(end) {
            return None;
        }
        let delta = self.text.get(self.sent..end)?.to_owned();
        self.sent = end;
        Some(delta)
    }

    /// Where the earliest stop string starts in the text not yet handed out.
    fn first_stop(&self) -> Option<usize> {
        // A stop string may straddle what was handed out and what is new, but never lies
        // wholly in handed-out text (it would have matched then).
        let longest = self.stop.iter().map(String::len).max()?;
        let mut from = self.sent.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        self.stop
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|at| from + at))
            .min()
    }

    /// Length of the longest end of the text that could begin a stop string, so it is
    /// held back until the next token settles it.
    fn stop_prefix_len(&self) -> usize {
        let mut hold = 0;
        for stop in &self.stop {
            for (end, _) in stop.char_indices().skip(1) {
                if end > hold && self.text.ends_with(&stop[..end]) {
                    hold = end;
                }
            }
        }
        hold.min(self.text.len() - self.sent.min(self.text.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt_tokenizer() -> Arc<Tokenizer> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../llm/tests/fixtures/opt-tiny-preln");
        Arc::new(Tokenizer::from_dir(&dir).unwrap())
    }

    fn stream(tokenizer: Arc<Tokenizer>) -> TextStream {
        TextStream {
            tokens: None,
            tokenizer,
            stop: vec![],
            ids: vec![],
            seeded: 0,
            prefix_offset: 0,
            read_offset: 0,
            text: String::new(),
            sent: 0,
            prompt_tokens: 0,
            pending_done: None,
            finished: false,
        }
    }

    /// Token by token, the deltas add up to the text, and a character whose UTF-8 bytes are
    /// split over several byte-level tokens is handed out whole, never as U+FFFD.
    #[test]
    fn incremental_decoding_gives_whole_characters_and_the_whole_text() {
        let tokenizer = opt_tokenizer();
        let text = "Tides: the sea rises \u{1F30A} and falls \u{2014} caf\u{e9}, na\u{ef}ve, \u{65e5}\u{672c}.";
        let ids = tokenizer.encode(text, false).unwrap();
        let partial = |id: &u32| {
            tokenizer
                .decode(&[*id], false)
                .unwrap()
                .contains('\u{FFFD}')
        };
        assert!(
            ids.iter().any(partial),
            "some token holds part of a character"
        );
        let mut s = stream(tokenizer);
        let mut deltas = Vec::new();
        for id in ids {
            if let Some(Ok(TextEvent::Delta(d))) = s.push_token(id) {
                assert!(!d.contains('\u{FFFD}'), "{d:?}");
                deltas.push(d);
            }
        }
        if let TextEvent::Delta(d) = s.finish("length") {
            deltas.push(d);
        }
        assert_eq!(deltas.concat(), text);
        assert!(deltas.len() > 10, "{deltas:?}");
    }

    /// A generation cut inside a character still hands out what it has when it ends.
    #[test]
    fn an_incomplete_character_at_the_end_is_flushed() {
        let tokenizer = opt_tokenizer();
        let ids = tokenizer.encode("ok \u{1F30A}", false).unwrap();
        let mut s = stream(tokenizer);
        for &id in &ids[..ids.len() - 1] {
            s.push_token(id);
        }
        s.decode_new(true).unwrap();
        assert!(s.text.starts_with("ok "), "{:?}", s.text);
        assert!(s.text.ends_with('\u{FFFD}'), "{:?}", s.text);
    }
}
