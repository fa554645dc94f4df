//! Tidal's API: the objects users write (InferenceService, ServingRuntime, KEDA's
//! TriggerAuthentication) and the ones Tidal renders (ScaledObject, plus Kubernetes' own
//! Deployment, Service and HPA from `k8s-openapi`), with KServe's defaulting and validation.
//!
//! Pure: no I/O, no clocks. Everything else in Tidal builds on these types.

pub mod annotations;
pub mod decode;
pub mod defaults;
pub mod field_error;
pub mod inference_service;
pub mod keda;
pub mod quantity;
pub mod serving_runtime;
pub mod status;
pub mod validation;

pub use decode::{DecodeError, RawDocument, SyntaxError, from_document, split_documents};
pub use defaults::apply_defaults;
pub use field_error::{FieldError, FieldErrorKind, FieldPath};
pub use inference_service::InferenceService;
pub use keda::{ScaledObject, TriggerAuthentication};
pub use serving_runtime::ServingRuntime;
pub use validation::{Report, validate, validate_update};

/// Re-exported so dependants use the same Kubernetes types.
pub use k8s_openapi;
