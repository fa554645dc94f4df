//! `/metrics` in Prometheus text format, with the names KServe's and MLServer's users know:
//! `request_predict_seconds` (KServe's model server) and the `rest_server_*` family (MLServer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels `model_name`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// The model.
    pub model_name: String,
}

/// Labels `model_name`, `protocol`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The model ("" for server-level endpoints).
    pub model_name: String,
    /// `v1`, `v2` or `openai`.
    pub protocol: &'static str,
}

/// Labels `model_name`, `protocol`, `status_code`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The model.
    pub model_name: String,
    /// The protocol.
    pub protocol: &'static str,
    /// HTTP status code.
    pub status_code: u16,
}

/// Latency buckets from 100 µs to 10 s: model servers answer in microseconds to seconds.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
    .into_iter()
}

/// The server's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    predict: Family<ModelLabels, Histogram>,
    requests: Family<StatusLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    in_progress: Family<RouteLabels, Gauge>,
}

impl Metrics {
    /// Metrics for a server with the given models (their series start at zero).
    pub fn new(models: &[String]) -> Self {
        let mut registry = Registry::default();
        let predict = Family::<ModelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let requests = Family::<StatusLabels, Counter>::default();
        let in_progress = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "request_predict_seconds",
            "Time spent in the model's predict, by model",
            predict.clone(),
        );
        registry.register(
            "rest_server_requests",
            "Inference requests served, by model, protocol and HTTP status",
            requests.clone(),
        );
        registry.register(
            "rest_server_request_duration_seconds",
            "Inference request latency, by model and protocol",
            duration.clone(),
        );
        registry.register(
            "rest_server_requests_in_progress",
            "Inference requests being served now, by model and protocol",
            in_progress.clone(),
        );
        for m in models {
            let _ = predict.get_or_create(&ModelLabels {
                model_name: m.clone(),
            });
            for protocol in ["v1", "v2"] {
                let _ = in_progress.get_or_create(&RouteLabels {
                    model_name: m.clone(),
                    protocol,
                });
            }
        }
        Metrics {
            registry: Arc::new(registry),
            predict,
            requests,
            duration,
            in_progress,
        }
    }

    /// Records time spent in a model's predict.
    pub fn observe_predict(&self, model: &str, elapsed: Duration) {
        self.predict
            .get_or_create(&ModelLabels {
                model_name: model.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Starts tracking one request; call [`RequestTimer::finish`] with the status.
    pub fn start(&self, model: &str, protocol: &'static str) -> RequestTimer {
        let labels = RouteLabels {
            model_name: model.to_string(),
            protocol,
        };
        self.in_progress.get_or_create(&labels).inc();
        RequestTimer {
            metrics: self.clone(),
            labels,
            started: Instant::now(),
            finished: false,
        }
    }

    /// The text exposition without the closing `# EOF`, so more registries can follow.
    pub fn encode_registry(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// An in-flight request; counts and times it when finished (or dropped, as a 499).
pub struct RequestTimer {
    metrics: Metrics,
    labels: RouteLabels,
    started: Instant,
    finished: bool,
}

impl RequestTimer {
    /// Records the outcome.
    pub fn finish(mut self, status: u16) {
        self.record(status);
    }

    fn record(&mut self, status: u16) {
        if self.finished {
            return;
        }
        self.finished = true;
        let m = &self.metrics;
        m.in_progress.get_or_create(&self.labels).dec();
        m.duration
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
        m.requests
            .get_or_create(&StatusLabels {
                model_name: self.labels.model_name.clone(),
                protocol: self.labels.protocol,
                status_code: status,
            })
            .inc();
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        // The client went away before an answer: nginx's "client closed request".
        self.record(499);
    }
}

/// Labels `model_name`, `finished_reason` (vLLM's `request_success_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    /// The model.
    pub model_name: String,
    /// `stop`, `length`, `abort` or `error`.
    pub finished_reason: &'static str,
}

/// vLLM's metric names for generative models, so dashboards and KEDA queries written for
/// vLLM (`vllm:num_requests_running`, `vllm:num_requests_waiting`, ...) work unchanged.
/// Gauges are read from the engine at scrape time; the rest is fed by the engine as an
/// [`tidal_llm::EngineObserver`].
pub struct LlmMetrics {
    registry: Registry,
    labels: ModelLabels,
    engine: tidal_llm::Engine,
    running: Family<ModelLabels, Gauge>,
    waiting: Family<ModelLabels, Gauge>,
    kv_usage: Family<ModelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    observer: Arc<LlmObserver>,
}

/// The engine-fed half of [`LlmMetrics`].
pub struct LlmObserver {
    labels: ModelLabels,
    ttft: Family<ModelLabels, Histogram>,
    inter_token: Family<ModelLabels, Histogram>,
    e2e: Family<ModelLabels, Histogram>,
    prompt_tokens: Family<ModelLabels, Counter>,
    generation_tokens: Family<ModelLabels, Counter>,
    success: Family<FinishedLabels, Counter>,
}

fn ttft_histogram() -> Histogram {
    Histogram::new(TTFT_BUCKETS.iter().copied())
}

fn inter_token_histogram() -> Histogram {
    Histogram::new(INTER_TOKEN_BUCKETS.iter().copied())
}

fn e2e_histogram() -> Histogram {
    Histogram::new(E2E_BUCKETS.iter().copied())
}

/// vLLM's bucket boundaries, so histogram_quantile over Tidal and vLLM agree.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const INTER_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

impl LlmMetrics {
    /// Metrics for `model_name` served by `engine`; pass [`LlmMetrics::observer`] to the engine.
    pub fn new(model_name: &str, engine: tidal_llm::Engine, observer: Arc<LlmObserver>) -> Self {
        let mut registry = Registry::default();
        let labels = ModelLabels {
            model_name: model_name.to_string(),
        };
        let running = Family::<ModelLabels, Gauge>::default();
        let waiting = Family::<ModelLabels, Gauge>::default();
        let kv_usage = Family::<ModelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "vllm:num_requests_running",
            "Number of requests in model execution batches",
            running.clone(),
        );
        registry.register(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed",
            waiting.clone(),
        );
        registry.register(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage",
            kv_usage.clone(),
        );
        let o = &observer;
        registry.register(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds",
            o.ttft.clone(),
        );
        registry.register(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds",
            o.inter_token.clone(),
        );
        registry.register(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds",
            o.e2e.clone(),
        );
        registry.register(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed",
            o.prompt_tokens.clone(),
        );
        registry.register(
            "vllm:generation_tokens",
            "Number of generation tokens processed",
            o.generation_tokens.clone(),
        );
        registry.register(
            "vllm:request_success",
            "Count of successfully processed requests",
            o.success.clone(),
        );
        // Every series exists from the start, so `rate()` and KEDA see zeros, not nothing.
        for reason in ["stop", "length", "abort"] {
            let _ = o.success.get_or_create(&FinishedLabels {
                model_name: model_name.to_string(),
                finished_reason: reason,
            });
        }
        let _ = o.ttft.get_or_create(&labels);
        let _ = o.inter_token.get_or_create(&labels);
        let _ = o.e2e.get_or_create(&labels);
        let _ = o.prompt_tokens.get_or_create(&labels);
        let _ = o.generation_tokens.get_or_create(&labels);
        LlmMetrics {
            registry,
            labels,
            engine,
            running,
            waiting,
            kv_usage,
            observer,
        }
    }

    /// The engine-fed part, to hand to the engine.
    pub fn observer(&self) -> Arc<LlmObserver> {
        self.observer.clone()
    }

    /// The text exposition, with gauges read from the engine now.
    pub fn encode(&self) -> String {
        let stats = self.engine.stats();
        self.running
            .get_or_create(&self.labels)
            .set(stats.running as i64);
        self.waiting
            .get_or_create(&self.labels)
            .set(stats.waiting as i64);
        self.kv_usage
            .get_or_create(&self.labels)
            .set(stats.kv_cache_usage);
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl LlmObserver {
    /// An observer for `model_name`.
    pub fn new(model_name: &str) -> Self {
        LlmObserver {
            labels: ModelLabels {
                model_name: model_name.to_string(),
            },
            ttft: Family::new_with_constructor(ttft_histogram),
            inter_token: Family::new_with_constructor(inter_token_histogram),
            e2e: Family::new_with_constructor(e2e_histogram),
            prompt_tokens: Family::default(),
            generation_tokens: Family::default(),
            success: Family::default(),
        }
    }
}

impl tidal_llm::EngineObserver for LlmObserver {
    fn prompt_tokens(&self, count: usize) {
        self.prompt_tokens
            .get_or_create(&self.labels)
            .inc_by(count as u64);
    }

    fn token(&self, first: bool, since_previous: Duration) {
        self.generation_tokens.get_or_create(&self.labels).inc();
        let histogram = if first { &self.ttft } else { &self.inter_token };
        histogram
            .get_or_create(&self.labels)
            .observe(since_previous.as_secs_f64());
    }

    fn finished(&self, reason: &'static str, elapsed: Duration) {
        if reason == "error" {
            return;
        }
        self.success
            .get_or_create(&FinishedLabels {
                model_name: self.labels.model_name.clone(),
                finished_reason: reason,
            })
            .inc();
        self.e2e
            .get_or_create(&self.labels)
            .observe(elapsed.as_secs_f64());
    }
}
