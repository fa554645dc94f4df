//! Load scikit-learn models from joblib and pickle files **without Python** and
//! predict exactly as scikit-learn does.
//!
//! ```no_run
//! let model = tidal_sklearn::Model::from_file(std::path::Path::new("model.joblib"))?;
//! let labels = model.predict(&[6.8, 2.8, 4.8, 1.4], 1)?;
//! # Ok::<(), tidal_sklearn::Error>(())
//! ```
//!
//! # Design
//!
//! **A custom pickle VM** ([`pickle`] module). Generic pickle crates cannot read
//! scikit-learn models: joblib interleaves raw array bytes with the pickle opcodes
//! (see below), `NEWOBJ` must keep the class (`SVC` vs `LogisticRegression`), and
//! `BUILD` must mutate the object in place so that memo references see the built
//! state. The VM implements the opcodes of protocols 0-5 that CPython and joblib
//! emit, never calls anything, and stores every heap object in an arena addressed
//! by index; objects are plain records of *class + args + state*. Every length is
//! checked against the remaining input before anything is allocated, nested
//! pickles are depth-limited, and any malformed input yields [`Error`], never a
//! panic.
//!
//! **How joblib stores arrays.** `joblib.dump` pickles each `ndarray` as a
//! `joblib.numpy_pickle.NumpyArrayWrapper` (`NEWOBJ` + `BUILD` with the state
//! `{subclass, shape, order, dtype, allow_mmap, numpy_array_alignment_bytes}`) and
//! writes the array's data **right after that `BUILD` opcode, inside the pickle
//! stream**: one byte giving the padding length, that many `0xFF` bytes (so the
//! data is 16-byte aligned), then `prod(shape) * itemsize` raw bytes in C or F
//! order. Object arrays (e.g. the `(n_estimators, K)` array of trees of a gradient
//! boosting model) are instead written as a complete nested pickle at that spot.
//! The VM consumes these bytes when it executes the wrapper's `BUILD`. Plain
//! pickles use numpy's own `_reconstruct` (+ `BUILD` state) or, with protocol 5,
//! `_frombuffer`. Compressed joblib files (zlib, gzip, xz, lzma, lz4) are detected
//! by their magic bytes and inflated first.
//!
//! **Estimators.** The object graph is then converted once into plain owned Rust
//! structs (so a [`Model`] is `Send + Sync` and cheap to share across threads)
//! that reproduce scikit-learn's prediction code: libsvm's one-vs-one voting and
//! Platt/pairwise-coupling probabilities, float32 tree traversal, gradient
//! boosting link functions, and so on. Unsupported classes are rejected at load
//! time with an error naming the class.
//!
//! Supported: SVC, NuSVC, SVR, NuSVR, LogisticRegression (+ other linear
//! classifiers without probabilities), LinearRegression, Ridge, Lasso, ElasticNet
//! and other linear regressors, DecisionTree{Classifier,Regressor},
//! RandomForest{Classifier,Regressor}, ExtraTrees{Classifier,Regressor},
//! GradientBoosting{Classifier,Regressor}, KNeighbors{Classifier,Regressor}, and
//! Pipelines of StandardScaler / MinMaxScaler / MaxAbsScaler / 'passthrough' steps
//! ending in one of those.

mod decompress;
mod error;
mod estimators;
mod numpy;
mod pickle;

use std::path::Path;

pub use error::Error;
use estimators::{Head, Loaded};

/// Class labels (or regression values) predicted by a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Integer labels (`int64`/`int32`... `classes_`).
    Int(Vec<i64>),
    /// Float labels, or regression outputs.
    Float(Vec<f64>),
    /// String labels (object or `<U` `classes_`).
    Str(Vec<String>),
    /// Boolean labels.
    Bool(Vec<bool>),
}

impl Labels {
    /// Number of labels.
    pub fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Float(v) => v.len(),
            Labels::Str(v) => v.len(),
            Labels::Bool(v) => v.len(),
        }
    }

    /// True if there are no labels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self, idx: &[usize]) -> Labels {
        match self {
            Labels::Int(v) => Labels::Int(idx.iter().map(|&i| v[i]).collect()),
            Labels::Float(v) => Labels::Float(idx.iter().map(|&i| v[i]).collect()),
            Labels::Str(v) => Labels::Str(idx.iter().map(|&i| v[i].clone()).collect()),
            Labels::Bool(v) => Labels::Bool(idx.iter().map(|&i| v[i]).collect()),
        }
    }
}

/// A loaded scikit-learn estimator, ready to predict.
pub struct Model {
    inner: Loaded,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("estimator", &self.inner.name)
            .field("n_features", &self.inner.n_features)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads a joblib or pickle file (compressed or not).
    pub fn from_file(path: &Path) -> Result<Model, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Model::from_bytes(&bytes)
    }

    /// Loads a model from the bytes of a joblib or pickle file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, Error> {
        let data = decompress::maybe_decompress(bytes)?;
        let p = pickle::parse(&data)?;
        // Arrays may be decoded a few times each, but not without bound.
        let budget = std::cell::Cell::new(
            (data.len() as u64)
                .saturating_mul(8)
                .saturating_add(1 << 24),
        );
        let view = pickle::View {
            nodes: &p.nodes,
            budget: &budget,
        };
        let inner = estimators::load(view, p.root)?;
        Ok(Model { inner })
    }

    /// The estimator, e.g. `SVC` or `Pipeline(StandardScaler, LogisticRegression)`.
    pub fn estimator(&self) -> &str {
        &self.inner.name
    }

    /// The number of input features (`n_features_in_`).
    pub fn n_features(&self) -> Option<usize> {
        Some(self.inner.n_features)
    }

    /// The classes (`classes_`) of a classifier; `None` for regressors.
    pub fn classes(&self) -> Option<&Labels> {
        match &self.inner.head {
            Head::Classifier { classes, .. } => Some(classes),
            Head::Regressor(_) => None,
        }
    }

    /// Number of values `predict` returns per row (1 for classifiers).
    pub fn n_outputs(&self) -> usize {
        match &self.inner.head {
            Head::Classifier { .. } => 1,
            Head::Regressor(r) => r.n_outputs(),
        }
    }

    /// True if [`Model::predict_proba`] is available.
    pub fn has_proba(&self) -> bool {
        match &self.inner.head {
            Head::Classifier { model, .. } => model.predict_proba(&[], 0, 0).is_some(),
            Head::Regressor(_) => false,
        }
    }

    /// Predicts `n_rows` rows of `x` (row-major, `n_rows x n_features`).
    ///
    /// Classifiers return one label per row; regressors return
    /// [`Labels::Float`] with `n_rows x n_outputs` values (row-major).
    pub fn predict(&self, x: &[f64], n_rows: usize) -> Result<Labels, Error> {
        let x = self.prepare(x, n_rows)?;
        let nf = self.inner.n_features;
        Ok(match &self.inner.head {
            Head::Classifier { model, classes } => classes.take(&model.predict(&x, n_rows, nf)),
            Head::Regressor(model) => Labels::Float(model.predict(&x, n_rows, nf)),
        })
    }

    /// Class probabilities, row-major `n_rows x n_classes`, columns in `classes()` order.
    ///
    /// Returns [`Error::NoProba`] for regressors and for classifiers without
    /// probabilities (e.g. an SVC fitted without `probability=True`).
    pub fn predict_proba(&self, x: &[f64], n_rows: usize) -> Result<Vec<f64>, Error> {
        let Head::Classifier { model, .. } = &self.inner.head else {
            return Err(Error::NoProba(self.inner.name.clone()));
        };
        if model.predict_proba(&[], 0, 0).is_none() {
            return Err(Error::NoProba(self.inner.name.clone()));
        }
        let x = self.prepare(x, n_rows)?;
        model
            .predict_proba(&x, n_rows, self.inner.n_features)
            .ok_or_else(|| Error::NoProba(self.inner.name.clone()))
    }

    /// Validates the input and applies the transformer steps.
    fn prepare<'x>(
        &self,
        x: &'x [f64],
        n_rows: usize,
    ) -> Result<std::borrow::Cow<'x, [f64]>, Error> {
        let nf = self.inner.n_features;
        if n_rows == 0 {
            if x.is_empty() {
                return Ok(std::borrow::Cow::Borrowed(x));
            }
            return Err(Error::InputShape {
                len: x.len(),
                n_rows,
            });
        }
        if !x.len().is_multiple_of(n_rows) {
            return Err(Error::InputShape {
                len: x.len(),
                n_rows,
            });
        }
        let got = x.len() / n_rows;
        if got != nf {
            return Err(Error::FeatureCount {
                got,
                expected: nf,
                estimator: self.inner.first_class.clone(),
            });
        }
        for &v in x {
            if v.is_nan() {
                if !self.inner.allow_nan {
                    return Err(Error::NonFinite { what: "NaN" });
                }
            } else if v.is_infinite() {
                return Err(Error::NonFinite {
                    what: "infinity or a value too large for dtype('float64')",
                });
            } else if self.inner.float32 && (v as f32).is_infinite() {
                return Err(Error::NonFinite {
                    what: "infinity or a value too large for dtype('float32')",
                });
            }
        }
        if self.inner.transformers.is_empty() {
            return Ok(std::borrow::Cow::Borrowed(x));
        }
        let mut owned = x.to_vec();
        for t in &self.inner.transformers {
            t.transform(&mut owned, nf);
        }
        Ok(std::borrow::Cow::Owned(owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Model>();
    }
}
