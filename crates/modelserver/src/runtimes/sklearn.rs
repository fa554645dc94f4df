//! The scikit-learn runtime, as KServe's `sklearnserver`: one `.joblib`, `.pkl` or `.pickle`
//! file in the model directory, `predict` (or `predict_proba` with `PREDICT_PROBA=true`) on the
//! first input, one output named `output-0`.

use std::path::{Path, PathBuf};

use serde_json::Map;
use tidal_sklearn::{Error as SkError, Labels};

use crate::model::{InferRequest, Model, ModelError, ModelMetadata, TensorMetadata};
use crate::tensor::{Tensor, TensorData};

/// The file extensions KServe's sklearn server loads.
pub const EXTENSIONS: &[&str] = &["joblib", "pkl", "pickle"];

/// Why a scikit-learn model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No model file in the directory.
    #[error(
        "Missing model file in model_dir {0}: expected one file ending in .joblib, .pkl or .pickle"
    )]
    Missing(PathBuf),
    /// More than one.
    #[error("More than one model file is detected, Only one is allowed within model_dir: {0:?}")]
    Ambiguous(Vec<PathBuf>),
    /// The directory cannot be read.
    #[error("cannot read model_dir {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a model Tidal can run.
    #[error("cannot load {path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SkError,
    },
}

/// Finds the one model file in `dir` (or `dir` itself when it is such a file).
pub fn find_model_file(dir: &Path) -> Result<PathBuf, LoadError> {
    let has_ext = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
    };
    if dir.is_file() {
        return if has_ext(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(LoadError::Missing(dir.to_path_buf()))
        };
    }
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io {
        path: dir.into(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && has_ext(p))
        .collect();
    found.sort();
    match found.len() {
        0 => Err(LoadError::Missing(dir.to_path_buf())),
        1 => Ok(found.remove(0)),
        _ => Err(LoadError::Ambiguous(found)),
    }
}

/// A loaded scikit-learn estimator.
pub struct SklearnModel {
    name: String,
    model: tidal_sklearn::Model,
    predict_proba: bool,
}

impl SklearnModel {
    /// Loads the model file in `dir`. With `predict_proba` the output is class probabilities
    /// (KServe's `PREDICT_PROBA=true`).
    pub fn load(name: &str, dir: &Path, predict_proba: bool) -> Result<Self, LoadError> {
        let path = find_model_file(dir)?;
        let model = tidal_sklearn::Model::from_file(&path).map_err(|source| LoadError::Model {
            path: path.clone(),
            source,
        })?;
        if predict_proba && !model.has_proba() {
            return Err(LoadError::Model {
                path,
                source: SkError::NoProba(model.estimator().to_string()),
            });
        }
        tracing::info!(model = name, estimator = model.estimator(), file = %path.display(), "Loaded scikit-learn model");
        Ok(SklearnModel {
            name: name.into(),
            model,
            predict_proba,
        })
    }

    /// The estimator's name (`SVC`, `Pipeline(StandardScaler, LogisticRegression)`, ...).
    pub fn estimator(&self) -> &str {
        self.model.estimator()
    }
}

fn input_error(e: SkError) -> ModelError {
    match e {
        SkError::FeatureCount { .. }
        | SkError::InputShape { .. }
        | SkError::NonFinite { .. }
        | SkError::NoProba(_) => ModelError::InvalidInput(e.to_string()),
        other => ModelError::Internal(other.to_string()),
    }
}

impl Model for SklearnModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn metadata(&self) -> ModelMetadata {
        let features = self.model.n_features().map_or(-1, |n| n as i64);
        ModelMetadata {
            platform: "sklearn".into(),
            versions: vec![],
            inputs: vec![TensorMetadata {
                name: "input-0".into(),
                datatype: "FP64".into(),
                shape: vec![-1, features],
            }],
            outputs: vec![],
        }
    }

    fn infer(&self, request: &InferRequest) -> Result<Vec<Tensor>, ModelError> {
        let input = &request.inputs[0];
        let (rows, features) = match input.shape.as_slice() {
            [rows, features] => (*rows as usize, *features as usize),
            other => {
                return Err(ModelError::InvalidInput(format!(
                    "Expected 2D array, got an input of shape {other:?}: send [rows, features]"
                )));
            }
        };
        let x = input.data.to_f64().ok_or_else(|| {
            ModelError::InvalidInput(format!(
                "input '{}' is {}; a scikit-learn model needs numbers",
                input.name,
                input.data.datatype()
            ))
        })?;
        debug_assert_eq!(x.len(), rows * features);
        let per_request_proba = request
            .parameters
            .get("predict_proba")
            .and_then(|v| v.as_bool());
        let (shape, data) = if per_request_proba.unwrap_or(self.predict_proba) {
            let p = self.model.predict_proba(&x, rows).map_err(input_error)?;
            let classes = p.len().checked_div(rows).unwrap_or(0);
            (vec![rows as i64, classes as i64], TensorData::F64(p))
        } else {
            let labels = self.model.predict(&x, rows).map_err(input_error)?;
            let outputs = self.model.n_outputs();
            let shape = if outputs > 1 {
                vec![rows as i64, outputs as i64]
            } else {
                vec![rows as i64]
            };
            let data = match labels {
                Labels::Int(v) => TensorData::I64(v),
                Labels::Float(v) => TensorData::F64(v),
                Labels::Str(v) => {
                    TensorData::Bytes(v.into_iter().map(String::into_bytes).collect())
                }
                Labels::Bool(v) => TensorData::Bool(v),
            };
            (shape, data)
        };
        Ok(vec![Tensor {
            name: "output-0".into(),
            shape,
            data,
            parameters: Map::new(),
        }])
    }
}
