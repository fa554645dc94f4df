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
