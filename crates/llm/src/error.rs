//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
///
/// Bad user input (wrong shapes, out-of-vocabulary ids, over-long prompts,
/// invalid sampling parameters) is reported as [`Error::InvalidInput`]; the
/// crate never panics on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("failed to read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config, safetensors index) could not be parsed.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The offending file.
        path: PathBuf,
        /// The underlying parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The model configuration is inconsistent or uses an unsupported feature.
    #[error("unsupported or invalid model config: {0}")]
    Config(String),
    /// The weights could not be loaded (missing tensor, wrong shape, corrupt file).
    #[error("failed to load weights from {path}: {source}")]
    Weights {
        /// The checkpoint file or directory.
        path: PathBuf,
        /// The underlying candle error (names the tensor).
        #[source]
        source: candle_core::Error,
    },
    /// The tokenizer could not be loaded or failed to encode/decode.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The caller passed something the model cannot process.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for `Result<T, tidal_llm::Error>`.
pub type Result<T> = std::result::Result<T, Error>;
