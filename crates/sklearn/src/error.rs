//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model or predicting with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model file could not be read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A joblib-compressed file could not be decompressed.
    #[error("cannot decompress {format} data: {message}")]
    Decompress {
        /// The compressor detected from the magic bytes (zlib, gzip, xz, lzma, lz4...).
        format: &'static str,
        /// What went wrong.
        message: String,
    },

    /// The pickle stream contains an opcode this reader does not implement.
    #[error("unsupported pickle opcode 0x{opcode:02x} ({}) at byte {offset}", printable(*opcode))]
    UnsupportedOpcode {
        /// The opcode byte.
        opcode: u8,
        /// Byte offset of the opcode in the (decompressed) stream.
        offset: usize,
    },

    /// The pickle stream is malformed (truncated, bad stack state, bad argument...).
    #[error("malformed pickle at byte {offset} (opcode {opcode}): {message}")]
    Pickle {
        /// Byte offset of the opcode at fault in the (decompressed) stream.
        offset: usize,
        /// Name of the opcode at fault (e.g. `BINUNICODE`).
        opcode: &'static str,
        /// What went wrong.
        message: String,
    },

    /// The file unpickled fine but holds an estimator class this crate cannot run.
    #[error("unsupported estimator {0}")]
    UnsupportedEstimator(String),

    /// The estimator is supported but one of its settings is not (e.g. a callable kernel).
    #[error("unsupported {estimator} configuration: {message}")]
    Unsupported {
        /// Estimator class name.
        estimator: String,
        /// What is not supported.
        message: String,
    },

    /// The object graph does not have the shape scikit-learn gives a fitted estimator.
    #[error("invalid {estimator} model: {message}")]
    InvalidModel {
        /// Estimator class name (or a path inside a pipeline).
        estimator: String,
        /// What is missing or inconsistent.
        message: String,
    },

    /// `x.len()` is not `n_rows * n_features`.
    #[error("input has {len} values, which is not {n_rows} rows of equal length")]
    InputShape {
        /// Length of the flat input.
        len: usize,
        /// Requested number of rows.
        n_rows: usize,
    },

    /// Wrong number of features (scikit-learn's own wording).
    #[error("X has {got} features, but {estimator} is expecting {expected} features as input.")]
    FeatureCount {
        /// Number of features given.
        got: usize,
        /// Number of features the model was fitted with.
        expected: usize,
        /// Estimator class name.
        estimator: String,
    },

    /// The input contains NaN or infinity where the estimator does not accept it.
    #[error("Input X contains {what}.")]
    NonFinite {
        /// `NaN` or `infinity or a value too large for dtype('float64')` (scikit-learn's wording).
        what: &'static str,
    },

    /// `predict_proba` was called on an estimator that has none.
    #[error("{0} has no predict_proba (not a probabilistic classifier)")]
    NoProba(String),
}

fn printable(op: u8) -> String {
    if op.is_ascii_graphic() || op == b' ' {
        format!("'{}'", op as char)
    } else {
        "non-ASCII".to_owned()
    }
}

impl Error {
    pub(crate) fn invalid(estimator: &str, message: impl Into<String>) -> Self {
        Error::InvalidModel {
            estimator: estimator.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(estimator: &str, message: impl Into<String>) -> Self {
        Error::Unsupported {
            estimator: estimator.to_owned(),
            message: message.into(),
        }
    }
}
