//! GradientBoostingClassifier / GradientBoostingRegressor.
//!
//! `raw = init raw prediction (from init_) ; raw[k] += learning_rate * tree[i][k](x)`,
//! then the loss's inverse link (expit or softmax) for probabilities.

use super::tree::{Tree, to_f32_row};
use super::{Classifier, Obj, Regressor, argmax, expit, softmax};
use crate::error::Error;
use crate::numpy::{self, Data};

struct Stages {
    /// n_stages x k trees, row-major.
    trees: Vec<Tree>,
    k: usize,
    learning_rate: f64,
    /// Raw prediction before the first stage (constant: Dummy* or 'zero' init).
    init: Vec<f64>,
    n_features: usize,
}

impl Stages {
    fn load(o: &Obj<'_>, k: usize) -> Result<Stages, Error> {
        let learning_rate = o.f64("learning_rate")?;
        let est = o.array("estimators_")?;
        let Data::Object(items) = &est.data else {
            return Err(o.err("estimators_ is not an object array"));
        };
        let cols = match est.shape.as_slice() {
            [_, c] => *c,
            _ => return Err(o.err("estimators_ must be 2-D")),
        };
        if cols != k || items.is_empty() {
            return Err(o.err(format!("estimators_ has {cols} columns, expected {k}")));
        }
        // Early stopping leaves the array at full size; only n_estimators_ stages count.
        let n_stages = o
            .opt_usize("n_estimators_")
            .unwrap_or(items.len() / k)
            .min(items.len() / k);
        let trees = items[..n_stages * k]
            .iter()
            .map(|e| Tree::from_estimator(&Obj::new(o.v, *e)?))
            .collect::<Result<Vec<_>, _>>()?;
        if trees
            .iter()
            .any(|t| t.n_outputs != 1 || t.max_n_classes != 1)
        {
            return Err(o.err("boosting stages must be single-output regression trees"));
        }
        let n_features = trees.iter().map(|t| t.n_features).max().unwrap_or(0);
        Ok(Stages {
            n_features,
            trees,
            k,
            learning_rate,
            init: vec![0.0; k],
        })
    }

    /// Raw predictions of one row (already float32-cast).
    #[inline]
    fn raw(&self, xf: &[f64], out: &mut [f64]) {
        out.copy_from_slice(&self.init);
        for stage in self.trees.chunks_exact(self.k) {
            for (o, t) in out.iter_mut().zip(stage) {
                *o += self.learning_rate * t.value0(xf);
            }
        }
    }
}

/// Is `init_` the string 'zero'?
fn init_is_zero(o: &Obj<'_>) -> bool {
    o.opt_str("init_") == Some("zero")
}

/// GradientBoostingClassifier.
pub(crate) struct GbClassifier {
    s: Stages,
    n_classes: usize,
    /// exponential loss: probabilities use expit(2 * raw).
    exponential: bool,
}

impl GbClassifier {
    pub fn load(o: &Obj<'_>) -> Result<Self, Error> {
        let n_classes = o.array("classes_")?.len();
        if n_classes < 2 {
            return Err(o.err("needs at least two classes"));
        }
        let k = if n_classes == 2 { 1 } else { n_classes };
        let loss = o.opt_str("loss").unwrap_or("log_loss");
        let exponential = match loss {
            "log_loss" | "deviance" => false,
            "exponential" => true,
            other => return Err(Error::unsupported(o.class, format!("loss {other:?}"))),
        };
        let mut s = Stages::load(o, k)?;
        if !init_is_zero(o) {
            let init = Obj::new(o.v, o.req("init_")?)?;
            if init.class != "DummyClassifier" {
                return Err(Error::unsupported(
                    o.class,
                    format!("init estimator {}", init.full_name()),
                ));
            }
            let strategy = init.opt_str("strategy").unwrap_or("prior");
            let (prior, _) = init.f64s("class_prior_")?;
            if prior.len() != n_classes {
                return Err(o.err("init_ class_prior_ does not match classes_"));
            }
            let proba: Vec<f64> = match strategy {
                "prior" => prior,
                "most_frequent" => {
                    let best = argmax(&prior);
                    (0..n_classes)
                        .map(|i| f64::from(u8::from(i == best)))
                        .collect()
                }
                other => {
                    return Err(Error::unsupported(
                        o.class,
                        format!("DummyClassifier init with strategy {other:?}"),
                    ));
                }
            };
            let eps = f64::EPSILON;
            let clip = |p: f64| p.clamp(eps, 1.0 - eps);
            s.init = if k == 1 {
                let p = clip(proba[1]);
                let logit = (p / (1.0 - p)).ln();
                vec![if exponential { 0.5 * logit } else { logit }]
            } else {
                let p: Vec<f64> = proba.iter().map(|&p| clip(p)).collect();
                // scipy.stats.gmean: exp(mean(log(p)))
                let logs: Vec<f64> = p.iter().map(|x| x.ln()).collect();
                let mean = super::np_sum(&logs) / p.len() as f64;
                let gm = mean.exp();
                p.iter().map(|x| (x / gm).ln()).collect()
            };
        }
        Ok(GbClassifier {
            s,
            n_classes,
            exponential,
        })
    }
}

impl Classifier for GbClassifier {
    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn n_features(&self) -> usize {
        self.s.n_features
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<usize> {
        let mut xf = vec![0.0; nf];
        let mut raw = vec![0.0; self.s.k];
        (0..n_rows)
            .map(|r| {
                to_f32_row(&x[r * nf..(r + 1) * nf], &mut xf);
                self.s.raw(&xf, &mut raw);
                if self.s.k == 1 {
                    usize::from(raw[0] >= 0.0)
                } else {
                    argmax(&raw)
                }
            })
            .collect()
    }

    fn predict_proba(&self, x: &[f64], n_rows: usize, nf: usize) -> Option<Vec<f64>> {
        let nc = self.n_classes;
        let mut xf = vec![0.0; nf];
        let mut raw = vec![0.0; self.s.k];
        let mut out = vec![0.0; n_rows * nc];
        for r in 0..n_rows {
            to_f32_row(&x[r * nf..(r + 1) * nf], &mut xf);
            self.s.raw(&xf, &mut raw);
            let row = &mut out[r * nc..(r + 1) * nc];
            if self.s.k == 1 {
                let z = if self.exponential {
                    2.0 * raw[0]
                } else {
                    raw[0]
                };
                let p = expit(z);
                row[1] = p;
                row[0] = 1.0 - p;
            } else {
                row.copy_from_slice(&raw);
                softmax(row);
            }
        }
        Some(out)
    }
}

/// GradientBoostingRegressor.
pub(crate) struct GbRegressor {
    s: Stages,
}

impl GbRegressor {
    pub fn load(o: &Obj<'_>) -> Result<Self, Error> {
        let mut s = Stages::load(o, 1)?;
        if !init_is_zero(o) {
            let init = Obj::new(o.v, o.req("init_")?)?;
            if init.class != "DummyRegressor" {
                return Err(Error::unsupported(
                    o.class,
                    format!("init estimator {}", init.full_name()),
                ));
            }
            let c = init.req("constant_")?;
            let value = match o.v.float(c) {
                Some(f) => f,
                None => {
                    let a = numpy::array(o.v, c).map_err(|m| o.err(format!("constant_: {m}")))?;
                    *a.to_f64()
                        .and_then(|v| v.first().copied().map(|f| vec![f]))
                        .ok_or_else(|| o.err("constant_ is empty"))?
                        .first()
                        .unwrap_or(&0.0)
                }
            };
            s.init = vec![value];
        }
        Ok(GbRegressor { s })
    }
}

impl Regressor for GbRegressor {
    fn n_outputs(&self) -> usize {
        1
    }

    fn n_features(&self) -> usize {
        self.s.n_features
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<f64> {
        let mut xf = vec![0.0; nf];
        let mut raw = [0.0];
        (0..n_rows)
            .map(|r| {
                to_f32_row(&x[r * nf..(r + 1) * nf], &mut xf);
                self.s.raw(&xf, &mut raw);
                raw[0]
            })
            .collect()
    }
}
