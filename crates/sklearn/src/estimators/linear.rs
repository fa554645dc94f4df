//! Linear models: `X @ coef_.T + intercept_`.

use super::{Classifier, Obj, Regressor, argmax, expit, softmax};
use crate::error::Error;

/// Dense `coef_` (n_outputs x n_features, row-major) and `intercept_`.
struct Affine {
    coef: Vec<f64>,
    intercept: Vec<f64>,
    n_out: usize,
    n_features: usize,
}

impl Affine {
    fn load(o: &Obj<'_>) -> Result<Affine, Error> {
        let (coef, shape) = o.f64s("coef_")?;
        let (n_out, n_features) = match shape.as_slice() {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            _ => return Err(o.err("coef_ must be 1-D or 2-D")),
        };
        let intercept = match o.get("intercept_") {
            None => vec![0.0; n_out],
            Some(_) => {
                let (i, _) = o.f64s("intercept_")?;
                match i.len() {
                    n if n == n_out => i,
                    1 => vec![i[0]; n_out],
                    _ => return Err(o.err("intercept_ does not match coef_")),
                }
            }
        };
        if n_out == 0 {
            return Err(o.err("coef_ is empty"));
        }
        if let Some(nf) = o.n_features_in()
            && nf != n_features
        {
            return Err(o.err("coef_ does not match n_features_in_"));
        }
        Ok(Affine {
            coef,
            intercept,
            n_out,
            n_features,
        })
    }

    /// Writes the `n_out` scores of one row into `out`.
    #[inline]
    fn scores(&self, x: &[f64], out: &mut [f64]) {
        for (k, o) in out.iter_mut().enumerate() {
            let w = &self.coef[k * self.n_features..(k + 1) * self.n_features];
            let mut s = 0.0;
            for (a, b) in x.iter().zip(w) {
                s += a * b;
            }
            *o = s + self.intercept[k];
        }
    }
}

/// LinearRegression, Ridge, Lasso, ... (single or multi-output).
pub(crate) struct LinearRegressor {
    a: Affine,
}

impl LinearRegressor {
    pub fn load(o: &Obj<'_>) -> Result<Self, Error> {
        Ok(LinearRegressor {
            a: Affine::load(o)?,
        })
    }
}

impl Regressor for LinearRegressor {
    fn n_outputs(&self) -> usize {
        self.a.n_out
    }

    fn n_features(&self) -> usize {
        self.a.n_features
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<f64> {
        let k = self.a.n_out;
        let mut out = vec![0.0; n_rows * k];
        for r in 0..n_rows {
            self.a
                .scores(&x[r * nf..(r + 1) * nf], &mut out[r * k..(r + 1) * k]);
        }
        out
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ProbaKind {
    None,
    /// Binary: expit; multiclass: softmax.
    Multinomial,
    /// One-vs-rest: expit then normalize.
    Ovr,
}

/// LogisticRegression and the other `LinearClassifierMixin` estimators.
pub(crate) struct LinearClassifier {
    a: Affine,
    n_classes: usize,
    proba: ProbaKind,
}

impl LinearClassifier {
    pub fn load(o: &Obj<'_>) -> Result<Self, Error> {
        let a = Affine::load(o)?;
        let n_classes = o.array("classes_")?.len();
        if n_classes < 2 {
            return Err(o.err("needs at least two classes"));
        }
        let expected_rows = if n_classes == 2 { 1 } else { n_classes };
        if a.n_out != expected_rows {
            return Err(o.err(format!(
                "coef_ has {} rows for {n_classes} classes",
                a.n_out
            )));
        }
        let proba = match o.class {
            "LogisticRegression" | "LogisticRegressionCV" => {
                let multi = o.opt_str("multi_class").unwrap_or("deprecated");
                let solver = o.opt_str("solver").unwrap_or("lbfgs");
                match multi {
                    "ovr" => ProbaKind::Ovr,
                    "auto" if solver == "liblinear" => ProbaKind::Ovr,
                    _ => ProbaKind::Multinomial,
                }
            }
            "SGDClassifier" => match o.opt_str("loss") {
                Some("log_loss" | "log") => ProbaKind::Ovr,
                _ => ProbaKind::None,
            },
            _ => ProbaKind::None,
        };
        Ok(LinearClassifier {
            a,
            n_classes,
            proba,
        })
    }
}

impl Classifier for LinearClassifier {
    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn n_features(&self) -> usize {
        self.a.n_features
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<usize> {
        let mut scores = vec![0.0; self.a.n_out];
        (0..n_rows)
            .map(|r| {
                self.a.scores(&x[r * nf..(r + 1) * nf], &mut scores);
                if self.a.n_out == 1 {
                    usize::from(scores[0] > 0.0)
                } else {
                    argmax(&scores)
                }
            })
            .collect()
    }

    fn predict_proba(&self, x: &[f64], n_rows: usize, nf: usize) -> Option<Vec<f64>> {
        if self.proba == ProbaKind::None {
            return None;
        }
        let k = self.n_classes;
        let mut out = vec![0.0; n_rows * k];
        let mut scores = vec![0.0; self.a.n_out];
        for r in 0..n_rows {
            self.a.scores(&x[r * nf..(r + 1) * nf], &mut scores);
            let row = &mut out[r * k..(r + 1) * k];
            if self.a.n_out == 1 {
                let p = expit(scores[0]);
                row[0] = 1.0 - p;
                row[1] = p;
            } else if self.proba == ProbaKind::Multinomial {
                row.copy_from_slice(&scores);
                softmax(row);
            } else {
                for (o, s) in row.iter_mut().zip(&scores) {
                    *o = expit(*s);
                }
                let sum: f64 = super::np_sum(row);
                for o in row.iter_mut() {
                    *o /= sum;
                }
            }
        }
        Some(out)
    }
}
