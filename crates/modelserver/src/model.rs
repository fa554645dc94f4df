//! The one thing a runtime implements: a loaded model that answers tensor requests.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::tensor::Tensor;

/// Metadata for one input or output (`/v2/models/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorMetadata {
    /// Name.
    pub name: String,
    /// v2 datatype name.
    pub datatype: String,
    /// Shape; -1 for a variable dimension.
    pub shape: Vec<i64>,
}

/// What `/v2/models/{name}` reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelMetadata {
    /// The platform, e.g. `sklearn`.
    pub platform: String,
    /// Versions served.
    pub versions: Vec<String>,
    /// Expected inputs.
    pub inputs: Vec<TensorMetadata>,
    /// Produced outputs.
    pub outputs: Vec<TensorMetadata>,
}

/// A decoded inference request (protocol-independent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InferRequest {
    /// Request id, echoed in the response.
    pub id: Option<String>,
    /// Request parameters.
    pub parameters: Map<String, Value>,
    /// Input tensors.
    pub inputs: Vec<Tensor>,
    /// Requested outputs (empty means all).
    pub outputs: Vec<RequestedOutput>,
}

/// An output the client asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// Output parameters (`binary_data`, ...).
    pub parameters: Map<String, Value>,
}

/// Why a model could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The request does not fit the model (wrong shape, datatype, feature count...): HTTP 400.
    #[error("{0}")]
    InvalidInput(String),
    /// The model failed: HTTP 500.
    #[error("{0}")]
    Internal(String),
}

/// A loaded model. Implementations are shared across request threads.
pub trait Model: Send + Sync + 'static {
    /// The name clients address it by.
    fn name(&self) -> &str;
    /// Whether it can take requests.
    fn is_ready(&self) -> bool {
        true
    }
    /// Inputs, outputs and platform.
    fn metadata(&self) -> ModelMetadata;
    /// Runs one request.
    fn infer(&self, request: &InferRequest) -> Result<Vec<Tensor>, ModelError>;
}
