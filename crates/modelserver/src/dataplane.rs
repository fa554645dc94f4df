//! The protocol-independent core (KServe's `DataPlane`): which models exist, whether they are
//! ready, and running a request. Protocol modules are thin adapters over this.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::generative::TextGenerator;
use crate::metrics::Metrics;
use crate::model::{InferRequest, Model, ModelError};
use crate::tensor::Tensor;

/// Why the data plane refused or failed a request; each protocol maps these to its own body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataPlaneError {
    /// No model by that name (404).
    #[error("Model with name {0} does not exist.")]
    ModelNotFound(String),
    /// The model exists but cannot serve yet (503).
    #[error("Model with name {0} is not ready.")]
    ModelNotReady(String),
    /// The request is malformed or does not fit the model (400).
    #[error("{0}")]
    InvalidInput(String),
    /// The model failed (500).
    #[error("{0}")]
    Internal(String),
}

impl DataPlaneError {
    /// The HTTP status every REST protocol answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            DataPlaneError::ModelNotFound(_) => 404,
            DataPlaneError::ModelNotReady(_) => 503,
            DataPlaneError::InvalidInput(_) => 400,
            DataPlaneError::Internal(_) => 500,
        }
    }
}

impl From<ModelError> for DataPlaneError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::InvalidInput(m) => DataPlaneError::InvalidInput(m),
            ModelError::Internal(m) => DataPlaneError::Internal(m),
        }
    }
}

/// A finished inference.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    /// The model that answered.
    pub model_name: String,
    /// The request id (generated when the client sent none).
    pub id: String,
    /// The outputs, filtered to what was requested.
    pub outputs: Vec<Tensor>,
}

/// The models a server serves, and its identity.
pub struct DataPlane {
    /// Server name for `/v2`.
    pub server_name: String,
    /// Server version for `/v2`.
    pub server_version: String,
    models: BTreeMap<String, Arc<dyn Model>>,
    generators: BTreeMap<String, Arc<TextGenerator>>,
    /// Request metrics.
    pub metrics: Metrics,
}

impl DataPlane {
    /// A data plane serving `models`.
    pub fn new(models: Vec<Arc<dyn Model>>) -> Self {
        Self::with_generators(models, vec![])
    }

    /// A data plane serving predictive `models` and generative models; the generative ones
    /// also answer health and metadata like any model.
    pub fn with_generators(
        mut models: Vec<Arc<dyn Model>>,
        generators: Vec<Arc<TextGenerator>>,
    ) -> Self {
        models.extend(generators.iter().map(|g| g.clone() as Arc<dyn Model>));
        let names: Vec<String> = models.iter().map(|m| m.name().to_string()).collect();
        DataPlane {
            server_name: "tidal".into(),
            server_version: env!("CARGO_PKG_VERSION").into(),
            models: models
                .into_iter()
                .map(|m| (m.name().to_string(), m))
                .collect(),
            generators: generators
                .into_iter()
                .map(|g| (g.name().to_string(), g))
                .collect(),
            metrics: Metrics::new(&names),
        }
    }

    /// The generative model named `name`.
    pub fn generator(&self, name: &str) -> Result<&Arc<TextGenerator>, DataPlaneError> {
        self.generators
            .get(name)
            .ok_or_else(|| DataPlaneError::ModelNotFound(name.into()))
    }

    /// All generative models.
    pub fn generators(&self) -> impl Iterator<Item = &Arc<TextGenerator>> {
        self.generators.values()
    }

    /// The whole `/metrics` text: request metrics, then each generative model's `vllm:*`.
    pub fn metrics_text(&self) -> String {
        let mut out = self.metrics.encode_registry();
        for g in self.generators.values() {
            out.push_str(&g.metrics().encode());
        }
        out.push_str("# EOF\n");
        out
    }

    /// The model named `name`.
    pub fn model(&self, name: &str) -> Result<&Arc<dyn Model>, DataPlaneError> {
        self.models
            .get(name)
            .ok_or_else(|| DataPlaneError::ModelNotFound(name.into()))
    }

    /// Names of all models.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// True when every model is ready.
    pub fn is_ready(&self) -> bool {
        self.models.values().all(|m| m.is_ready())
    }

    /// Runs a request on `name`, keeping only the requested outputs.
    pub fn infer(
        &self,
        name: &str,
        request: InferRequest,
    ) -> Result<InferResponse, DataPlaneError> {
        let model = self.model(name)?;
        if !model.is_ready() {
            return Err(DataPlaneError::ModelNotReady(name.into()));
        }
        if request.inputs.is_empty() {
            return Err(DataPlaneError::InvalidInput(
                "the request has no inputs".into(),
            ));
        }
        let started = std::time::Instant::now();
        let mut outputs = model.infer(&request)?;
        self.metrics.observe_predict(name, started.elapsed());
        if !request.outputs.is_empty() {
            for wanted in &request.outputs {
                if !outputs.iter().any(|o| o.name == wanted.name) {
                    let available: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
                    return Err(DataPlaneError::InvalidInput(format!(
                        "unexpected inference output '{}' for model '{name}'; it produces {available:?}",
                        wanted.name
                    )));
                }
            }
            outputs.retain(|o| request.outputs.iter().any(|w| w.name == o.name));
            for o in &mut outputs {
                if let Some(w) = request.outputs.iter().find(|w| w.name == o.name) {
                    for (k, v) in &w.parameters {
                        o.parameters.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        Ok(InferResponse {
            model_name: name.into(),
            id: request.id.unwrap_or_else(new_request_id),
            outputs,
        })
    }
}

/// A random version-4 UUID, as KServe assigns to requests without an id.
pub fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // SplitMix64 over time and a counter: unique per process, no extra dependency.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ COUNTER
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .rotate_left(17)
        ^ (std::process::id() as u64) << 32;
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let a = mix(seed);
    let b = mix(a ^ 0xD1B5_4A32_D192_ED03);
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000; // version 4
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000; // variant 10
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// JSON `null` when absent, for fields KServe always prints.
pub fn or_null<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}
