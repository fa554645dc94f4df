//! Continuous batching: many requests share every forward pass of one model.
//!
//! The engine owns the model on one thread. Requests wait in a FIFO queue;
//! at each step the engine admits waiting requests while the running batch
//! is below `max_num_seqs` and their KV cache fits the memory budget, then
//! runs ONE [`CausalLm::forward_batch`] holding the prompts of newly admitted
//! requests (prefill) and the last token of every running request (decode).
//! Requests join and leave between steps, so a long generation never holds a
//! short one back and a new request waits at most one step to start.
//!
//! A request's KV cache is reserved up front for `prompt + max_tokens`
//! tokens, so a running request can never run out of cache mid-generation
//! and nothing ever needs preempting. Requests whose client went away (the
//! [`TokenStream`] was dropped) are cancelled at the next step.
//!
//! The engine speaks token ids only: text, stop strings and protocols are
//! the server's business.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tokio_mpsc;

use crate::error::{Error, Result};
use crate::generate::{FinishReason, Sampler, SamplingParams};
use crate::lm::{CausalLm, SeqStep};

/// Sizes and limits of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most requests in the running batch (vLLM's `--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Memory for KV caches, in bytes; bounds how many tokens can be cached
    /// across all running requests.
    pub kv_cache_bytes: usize,
    /// Most prompt tokens prefilled in one step (at least one prompt is
    /// always admitted), so a burst of long prompts cannot stall decoding
    /// of running requests for long.
    pub max_prefill_tokens: usize,
    /// Tokens that end a generation unless the request says `ignore_eos`.
    pub eos_token_ids: Vec<u32>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 16,
            kv_cache_bytes: 1 << 30,
            max_prefill_tokens: 2048,
            eos_token_ids: Vec::new(),
        }
    }
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The prompt's token ids (special tokens already added).
    pub prompt: Vec<u32>,
    /// Sampling and stopping.
    pub params: SamplingParams,
}

/// What a request's stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new token, in order.
    Token(u32),
    /// The generation ended; no event follows.
    Finished(Finished),
    /// The model failed on this request's step; no event follows.
    Failed(String),
}

/// How a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Why it ended.
    pub reason: FinishReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the stop token excluded).
    pub completion_tokens: usize,
}

/// The tokens of one request as they are generated. Dropping it cancels the
/// request.
#[derive(Debug)]
pub struct TokenStream {
    rx: tokio_mpsc::UnboundedReceiver<Event>,
    stopped: Arc<AtomicBool>,
}

impl TokenStream {
    /// Ends the request because the caller found what it was waiting for (a stop string):
    /// the engine drops it like a cancellation but counts it as finished with `stop`.
    pub fn finish_as_stopped(self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// The next event; `None` only if the engine stopped.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Blocking variant of [`TokenStream::next`] for non-async callers.
    pub fn blocking_next(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }
}

/// Receives the engine's measurements (Prometheus metrics, logs). Every
/// method has an empty default.
pub trait EngineObserver: Send + Sync + 'static {
    /// A forward pass is about to run over `running` requests and `tokens` new tokens, while
    /// `waiting` requests queue.
    fn step(&self, _running: usize, _waiting: usize, _tokens: usize) {}
    /// A request's prompt was prefilled.
    fn prompt_tokens(&self, _count: usize) {}
    /// A request produced a token; `since_previous` is the time since its
    /// previous token, or since it arrived for the first token.
    fn token(&self, _first: bool, _since_previous: Duration) {}
    /// A request ended (`"stop"`, `"length"`, `"abort"` or `"error"`),
    /// `elapsed` after it arrived.
    fn finished(&self, _reason: &'static str, _elapsed: Duration) {}
}

/// An observer that records nothing.
#[derive(Debug, Default)]
pub struct NoObserver;
impl EngineObserver for NoObserver {}

/// Live gauges of an engine.
#[derive(Debug, Default)]
struct Gauges {
    running: AtomicUsize,
    waiting: AtomicUsize,
    cached_tokens: AtomicUsize,
}

/// A snapshot of the engine's gauges (vLLM's scheduler stats).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineStats {
    /// Requests in the running batch.
    pub running: usize,
    /// Requests queued for admission.
    pub waiting: usize,
    /// Fraction (0 to 1) of the KV cache budget holding tokens.
    pub kv_cache_usage: f64,
}

/// A handle to a running engine; cheap to clone. The engine thread stops
/// when every handle is dropped.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Submission>,
    gauges: Arc<Gauges>,
    capacity_tokens: usize,
    max_context: usize,
    max_num_seqs: usize,
    vocab_size: usize,
}

struct Submission {
    request: GenerateRequest,
    tx: tokio_mpsc::UnboundedSender<Event>,
    stopped: Arc<AtomicBool>,
    arrived: Instant,
}

impl Engine {
    /// Starts the engine thread that owns `model`.
    pub fn start<M: CausalLm>(
        model: M,
        config: EngineConfig,
        observer: Arc<dyn EngineObserver>,
    ) -> Result<Self> {
        if config.max_num_seqs == 0 {
            return Err(Error::Config("max_num_seqs must be at least 1".to_owned()));
        }
        let capacity_tokens = config.kv_cache_bytes / model.kv_bytes_per_token().max(1);
        if capacity_tokens == 0 {
            return Err(Error::Config(format!(
                "a KV cache of {} bytes holds no token of this model ({} bytes per token)",
                config.kv_cache_bytes,
                model.kv_bytes_per_token()
            )));
        }
        let (tx, rx) = mpsc::channel();
        let gauges = Arc::new(Gauges::default());
        let handle = Self {
            tx,
            gauges: gauges.clone(),
            capacity_tokens,
            max_context: model.max_context(),
            max_num_seqs: config.max_num_seqs,
            vocab_size: model.vocab_size(),
        };
        let scheduler = Scheduler {
            model,
            config,
            observer,
            gauges,
            capacity_tokens,
            waiting: VecDeque::new(),
            running: Vec::new(),
            reserved_tokens: 0,
        };
        std::thread::Builder::new()
            .name("tidal-llm-engine".to_owned())
            .spawn(move || scheduler.run(rx))
            .map_err(|e| Error::Config(format!("cannot start the engine thread: {e}")))?;
        Ok(handle)
    }

    /// Queues a request. Requests that can never run (empty prompt, longer
    /// than the context window, bigger than the whole KV cache, invalid
    /// sampling) are rejected here, before they take a place in the queue.
    pub fn submit(&self, request: GenerateRequest) -> Result<TokenStream> {
        request.params.validate()?;
        if request.prompt.is_empty() {
            return Err(Error::InvalidInput(
                "the prompt must contain at least one token".to_owned(),
            ));
        }
        if let Some(bad) = request
            .prompt
            .iter()
            .find(|&&t| t as usize >= self.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is out of range: the vocabulary has {} tokens",
                self.vocab_size
            )));
        }
        let prompt = request.prompt.len();
        if prompt >= self.max_context {
            return Err(Error::InvalidInput(format!(
                "the prompt has {prompt} tokens; this model's context window holds {} (prompt plus at least one generated token)",
                self.max_context
            )));
        }
        let needed = reservation(&request, self.max_context);
        if needed > self.capacity_tokens {
            return Err(Error::InvalidInput(format!(
                "the request needs {needed} tokens of KV cache (prompt {prompt} + max_tokens {}), more than the cache holds ({} tokens); lower max_tokens",
                request.params.max_tokens, self.capacity_tokens
            )));
        }
        let (tx, rx) = tokio_mpsc::unbounded_channel();
        self.gauges.waiting.fetch_add(1, Ordering::Relaxed);
        let stopped = Arc::new(AtomicBool::new(false));
        let submission = Submission {
            request,
            tx,
            stopped: stopped.clone(),
            arrived: Instant::now(),
        };
        if self.tx.send(submission).is_err() {
            self.gauges.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::Config("the engine has stopped".to_owned()));
        }
        Ok(TokenStream { rx, stopped })
    }

    /// Current running/waiting counts and KV cache usage.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            running: self.gauges.running.load(Ordering::Relaxed),
            waiting: self.gauges.waiting.load(Ordering::Relaxed),
            kv_cache_usage: self.gauges.cached_tokens.load(Ordering::Relaxed) as f64
                / self.capacity_tokens as f64,
        }
    }

    /// The model's context window in tokens.
    pub fn max_context(&self) -> usize {
        self.max_context
    }

    /// The running batch's size limit.
    pub fn max_num_seqs(&self) -> usize {
        self.max_num_seqs
    }

    /// How many tokens the KV cache budget holds.
    pub fn capacity_tokens(&self) -> usize {
        self.capacity_tokens
    }
}

/// Cache tokens a request may fill: its prompt plus everything it may
/// generate, capped by the context window.
fn reservation(request: &GenerateRequest, max_context: usize) -> usize {
    request
        .prompt
        .len()
        .saturating_add(request.params.max_tokens)
        .min(max_context)
}

/// How a request whose client dropped its stream ended.
fn cancel_reason(stopped: &AtomicBool) -> &'static str {
    if stopped.load(Ordering::Relaxed) {
        "stop"
    } else {
        "abort"
    }
}

/// A request in the running batch.
struct Running<C> {
    tx: tokio_mpsc::UnboundedSender<Event>,
    /// Set when the client ended the request on a stop string of its own.
    stopped: Arc<AtomicBool>,
    cache: C,
    sampler: Sampler,
    params: SamplingParams,
    /// Tokens to feed at the next step: the prompt, then the last sample.
    pending: Vec<u32>,
    prompt_tokens: usize,
    generated: usize,
    reserved: usize,
    arrived: Instant,
    last_token_at: Option<Instant>,
}

struct Scheduler<M: CausalLm> {
    model: M,
    config: EngineConfig,
    observer: Arc<dyn EngineObserver>,
    gauges: Arc<Gauges>,
    capacity_tokens: usize,
    waiting: VecDeque<Submission>,
    running: Vec<Running<M::Cache>>,
    reserved_tokens: usize,
}

impl<M: CausalLm> Scheduler<M> {
    fn run(mut self, rx: mpsc::Receiver<Submission>) {
        loop {
            // Block only when there is nothing to do.
            if self.running.is_empty() && self.waiting.is_empty() {
                match rx.recv() {
                    Ok(s) => self.waiting.push_back(s),
                    Err(_) => return,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(s) => self.waiting.push_back(s),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        if self.running.is_empty() && self.waiting.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            self.drop_cancelled();
            self.admit();
            self.publish_gauges();
            if !self.running.is_empty() {
                self.step();
            }
        }
    }

    /// Forgets requests whose client dropped its stream.
    fn drop_cancelled(&mut self) {
        let observer = &self.observer;
        self.waiting.retain(|s| {
            if s.tx.is_closed() {
                observer.finished(cancel_reason(&s.stopped), s.arrived.elapsed());
            }
            !s.tx.is_closed()
        });
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].tx.is_closed() {
                let seq = self.running.swap_remove(i);
                self.reserved_tokens -= seq.reserved;
                self.observer
                    .finished(cancel_reason(&seq.stopped), seq.arrived.elapsed());
            } else {
                i += 1;
            }
        }
    }

    /// Moves waiting requests into the batch, first come first served, while
    /// the batch has room, their cache reservation fits and this step's
    /// prefill budget lasts.
    fn admit(&mut self) {
        let mut prefill_tokens: usize = self
            .running
            .iter()
            .filter(|s| s.pending.len() > 1)
            .map(|s| s.pending.len())
            .sum();
        while self.running.len() < self.config.max_num_seqs {
            let Some(next) = self.waiting.front() else {
                break;
            };
            let reserve = reservation(&next.request, self.model.max_context());
            if self.reserved_tokens + reserve > self.capacity_tokens {
                break;
            }
            let prompt = next.request.prompt.len();
            if prefill_tokens > 0 && prefill_tokens + prompt > self.config.max_prefill_tokens {
                break;
            }
            let Some(submission) = self.waiting.pop_front() else {
                break;
            };
            let Submission {
                request,
                tx,
                stopped,
                arrived,
            } = submission;
            let sampler = match Sampler::new(&request.params) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Event::Failed(e.to_string()));
                    continue;
                }
            };
            if request.params.max_tokens == 0 {
                let _ = tx.send(Event::Finished(Finished {
                    reason: FinishReason::Length,
                    prompt_tokens: prompt,
                    completion_tokens: 0,
                }));
                self.observer.finished("length", arrived.elapsed());
                continue;
            }
            prefill_tokens += prompt;
            self.reserved_tokens += reserve;
            self.running.push(Running {
                tx,
                stopped,
                cache: self.model.new_cache(),
                sampler,
                params: request.params,
                pending: request.prompt,
                prompt_tokens: prompt,
                generated: 0,
                reserved: reserve,
                arrived,
                last_token_at: None,
            });
        }
    }

    /// One forward pass over the whole batch, then one sampled token per
    /// request.
    fn step(&mut self) {
        let tokens = self.running.iter().map(|s| s.pending.len()).sum();
        self.observer
            .step(self.running.len(), self.waiting.len(), tokens);
        let outcome = {
            let model = &self.model;
            let mut steps: Vec<SeqStep<'_, M::Cache>> = self
                .running
                .iter_mut()
                .map(|s| SeqStep {
                    tokens: &s.pending,
                    cache: &mut s.cache,
                })
                .collect();
            std::panic::catch_unwind(AssertUnwindSafe(|| model.forward_batch(&mut steps)))
        };
        let logits = match outcome {
            Ok(Ok(logits)) if logits.len() == self.running.len() => logits,
            Ok(Ok(logits)) => {
                let n = logits.len();
                self.fail_all(&format!(
                    "the model returned {n} rows of logits for {} sequences",
                    self.running.len()
                ));
                return;
            }
            Ok(Err(e)) => {
                self.fail_all(&e.to_string());
                return;
            }
            Err(_) => {
                self.fail_all("the model panicked during a forward pass");
                return;
            }
        };
        let now = Instant::now();
        let mut finished = Vec::new();
        for (i, (seq, row)) in self.running.iter_mut().zip(logits).enumerate() {
            if seq.generated == 0 {
                self.observer.prompt_tokens(seq.prompt_tokens);
            }
            let token = match seq.sampler.sample(&row) {
                Ok(t) => t,
                Err(e) => {
                    finished.push((i, "error", Some(Event::Failed(e.to_string()))));
                    continue;
                }
            };
            let is_stop = seq.params.stop_token_ids.contains(&token)
                || (!seq.params.ignore_eos && self.config.eos_token_ids.contains(&token));
            if is_stop {
                let event = Event::Finished(Finished {
                    reason: FinishReason::Stop(token),
                    prompt_tokens: seq.prompt_tokens,
                    completion_tokens: seq.generated,
                });
                finished.push((i, "stop", Some(event)));
                continue;
            }
            let since = now.duration_since(seq.last_token_at.unwrap_or(seq.arrived));
            self.observer.token(seq.last_token_at.is_none(), since);
            seq.last_token_at = Some(now);
            seq.generated += 1;
            if seq.tx.send(Event::Token(token)).is_err() {
                finished.push((i, cancel_reason(&seq.stopped), None));
                continue;
            }
            let cached = seq.prompt_tokens + seq.generated - 1;
            if seq.generated >= seq.params.max_tokens || cached + 1 >= self.model.max_context() {
                let event = Event::Finished(Finished {
                    reason: FinishReason::Length,
                    prompt_tokens: seq.prompt_tokens,
                    completion_tokens: seq.generated,
                });
                finished.push((i, "length", Some(event)));
                continue;
            }
            seq.pending.clear();
            seq.pending.push(token);
        }
        // Remove from the back so indices stay valid; publish the smaller batch before the
        // last events go out, so a client that has its answer never sees itself counted.
        let mut last_events = Vec::with_capacity(finished.len());
        for (i, reason, event) in finished.into_iter().rev() {
            let seq = self.running.swap_remove(i);
            self.reserved_tokens -= seq.reserved;
            self.observer.finished(reason, seq.arrived.elapsed());
            last_events.extend(event.map(|e| (seq.tx, e)));
        }
        self.publish_gauges();
        for (tx, event) in last_events {
            let _ = tx.send(event);
        }
    }

    fn fail_all(&mut self, message: &str) {
        tracing::error!(error = message, "forward pass failed; failing the batch");
        let failed: Vec<_> = self.running.drain(..).collect();
        self.reserved_tokens = 0;
        self.publish_gauges();
        for seq in failed {
            let _ = seq.tx.send(Event::Failed(message.to_owned()));
            self.observer.finished("error", seq.arrived.elapsed());
        }
    }

    fn publish_gauges(&self) {
        self.gauges
            .running
            .store(self.running.len(), Ordering::Relaxed);
        self.gauges
            .waiting
            .store(self.waiting.len(), Ordering::Relaxed);
        let cached: usize = self
            .running
            .iter()
            .map(|s| self.model.cached_tokens(&s.cache))
            .sum();
        self.gauges.cached_tokens.store(cached, Ordering::Relaxed);
    }
}
