//! KNeighborsClassifier / KNeighborsRegressor (brute-force search).
//!
//! Neighbours are ordered by (distance, training index), i.e. ties are broken by
//! the lower training index like a stable argsort. scikit-learn's KD/ball trees
//! can order exactly-equidistant points differently; that only matters when a tie
//! straddles the k-th neighbour.

use super::{Classifier, Obj, Regressor};
use crate::error::Error;

#[derive(Clone, Copy)]
enum Metric {
    Euclidean,
    Manhattan,
    Chebyshev,
    Minkowski(f64),
}

struct Neighbors {
    fit_x: Vec<f64>,
    n_samples: usize,
    n_features: usize,
    k: usize,
    distance_weights: bool,
    metric: Metric,
}

impl Neighbors {
    fn load(o: &Obj<'_>) -> Result<Neighbors, Error> {
        let (fit_x, shape) = o.f64s("_fit_X")?;
        let (n_samples, n_features) = match shape.as_slice() {
            [n, f] => (*n, *f),
            _ => return Err(o.err("_fit_X must be 2-D")),
        };
        let k = o.usize("n_neighbors")?;
        if k == 0 || k > n_samples {
            return Err(o.err(format!(
                "n_neighbors = {k} but only {n_samples} training samples"
            )));
        }
        let distance_weights = match o.get("weights") {
            None | Some(crate::pickle::Value::None) => false,
            Some(w) => match o.v.str(w) {
                Some("uniform") => false,
                Some("distance") => true,
                _ => return Err(Error::unsupported(o.class, "callable weights")),
            },
        };
        let metric_name = o
            .opt_str("effective_metric_")
            .or_else(|| o.opt_str("metric"))
            .unwrap_or("minkowski");
        let p = o
            .get("effective_metric_params_")
            .and_then(|d| o.v.get(d, "p"))
            .or_else(|| o.get("p"))
            .and_then(|p| o.v.float(p))
            .unwrap_or(2.0);
        let metric = match metric_name {
            "euclidean" | "l2" => Metric::Euclidean,
            "manhattan" | "cityblock" | "l1" => Metric::Manhattan,
            "chebyshev" | "infinity" => Metric::Chebyshev,
            "minkowski" | "p" => {
                if p == 2.0 {
                    Metric::Euclidean
                } else if p == 1.0 {
                    Metric::Manhattan
                } else if p.is_infinite() {
                    Metric::Chebyshev
                } else if p > 0.0 {
                    Metric::Minkowski(p)
                } else {
                    return Err(o.err("bad minkowski p"));
                }
            }
            other => return Err(Error::unsupported(o.class, format!("metric {other:?}"))),
        };
        Ok(Neighbors {
            fit_x,
            n_samples,
            n_features,
            k,
            distance_weights,
            metric,
        })
    }

    fn dist(&self, x: &[f64], i: usize) -> f64 {
        let y = &self.fit_x[i * self.n_features..(i + 1) * self.n_features];
        match self.metric {
            Metric::Euclidean => {
                let mut s = 0.0;
                for (a, b) in x.iter().zip(y) {
                    let d = a - b;
                    s += d * d;
                }
                s.sqrt()
            }
            Metric::Manhattan => {
                let mut s = 0.0;
                for (a, b) in x.iter().zip(y) {
                    s += (a - b).abs();
                }
                s
            }
            Metric::Chebyshev => {
                let mut s: f64 = 0.0;
                for (a, b) in x.iter().zip(y) {
                    s = s.max((a - b).abs());
                }
                s
            }
            Metric::Minkowski(p) => {
                let mut s = 0.0;
                for (a, b) in x.iter().zip(y) {
                    s += (a - b).abs().powf(p);
                }
                s.powf(1.0 / p)
            }
        }
    }

    /// Fills `nn` with the k nearest (distance, index), sorted.
    fn kneighbors(&self, x: &[f64], all: &mut Vec<(f64, usize)>) {
        all.clear();
        all.extend((0..self.n_samples).map(|i| (self.dist(x, i), i)));
        let cmp = |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if self.k < all.len() {
            all.select_nth_unstable_by(self.k - 1, cmp);
            all.truncate(self.k);
        }
        all.sort_unstable_by(cmp);
    }

    /// `_get_weights`: 1/d, or (d == 0) when a neighbour is at distance zero.
    fn weights(&self, nn: &[(f64, usize)], w: &mut [f64]) {
        if !self.distance_weights {
            w.iter_mut().for_each(|x| *x = 1.0);
            return;
        }
        let any_zero = nn.iter().any(|(d, _)| *d == 0.0);
        for (wi, (d, _)) in w.iter_mut().zip(nn) {
            *wi = if any_zero {
                f64::from(u8::from(*d == 0.0))
            } else {
                1.0 / d
            };
        }
    }
}

/// KNeighborsClassifier.
pub(crate) struct KnnClassifier {
    n: Neighbors,
    y: Vec<usize>,
    n_classes: usize,
}

impl KnnClassifier {
    pub fn load(o: &Obj<'_>) -> Result<Self, Error> {
        if o.bool("outputs_2d_") == Some(true) {
            return Err(Error::unsupported(o.class, "multi-output classification"));
        }
        let n = Neighbors::load(o)?;
        let n_classes = o.array("classes_")?.len();
        let y = o
            .i64s("_y")?
            .into_iter()
            .map(|c| {
                usize::try_from(c)
                    .ok()
                    .filter(|c| *c < n_classes)
                    .ok_or_else(|| o.err("_y holds an invalid class index"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if y.len() != n.n_samples {
            return Err(o.err("_y does not match _fit_X"));
        }
        Ok(KnnClassifier { n, y, n_classes })
    }

    fn scores(&self, x: &[f64], all: &mut Vec<(f64, usize)>, w: &mut [f64], out: &mut [f64]) {
        self.n.kneighbors(x, all);
        self.n.weights(all, w);
        out.iter_mut().for_each(|o| *o = 0.0);
        for ((_, i), wi) in all.iter().zip(w.iter()) {
            out[self.y[*i]] += wi;
        }
    }
}

impl Classifier for KnnClassifier {
    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn n_features(&self) -> usize {
        self.n.n_features
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<usize> {
        let mut all = Vec::with_capacity(self.n.n_samples);
        let mut w = vec![0.0; self.n.k];
        let mut s = vec![0.0; self.n_classes];
        (0..n_rows)
            .map(|r| {
                self.scores(&x[r * nf..(r + 1) * nf], &mut all, &mut w, &mut s);
                // mode / weighted_mode: the smallest class wins ties
                let mut best = 0;
                for c in 1..s.len() {
                    if s[c] > s[best] {
                        best = c;
                    }
                }
                best
            })
            .collect()
    }

    fn predict_proba(&self, x: &[f64], n_rows: usize, nf: usize) -> Option<Vec<f64>> {
        let nc = self.n_classes;
        let mut all = Vec::with_capacity(self.n.n_samples);
        let mut w = vec![0.0; self.n.k];
        let mut out = vec![0.0; n_rows * nc];
        for r in 0..n_rows {
            let row = &mut out[r * nc..(r + 1) * nc];
            self.scores(&x[r * nf..(r + 1) * nf], &mut all, &mut w, row);
            let norm = super::np_sum(row);
            for v in row.iter_mut() {
                *v /= norm;
            }
        }
        Some(out)
    }
}

/// KNeighborsRegressor.
pub(crate) struct KnnRegressor {
    n: Neighbors,
    /// n_samples x n_outputs.
    y: Vec<f64>,
    n_outputs: usize,
}

impl KnnRegressor {
    pub fn load(o: &Obj<'_>) -> Result<Self, Error> {
        let n = Neighbors::load(o)?;
        let (y, shape) = o.f64s("_y")?;
        let n_outputs = match shape.as_slice() {
            [s] if *s == n.n_samples => 1,
            [s, k] if *s == n.n_samples && *k > 0 => *k,
            _ => return Err(o.err("_y does not match _fit_X")),
        };
        Ok(KnnRegressor { n, y, n_outputs })
    }
}

impl Regressor for KnnRegressor {
    fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    fn n_features(&self) -> usize {
        self.n.n_features
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<f64> {
        let k = self.n_outputs;
        let mut all = Vec::with_capacity(self.n.n_samples);
        let mut w = vec![0.0; self.n.k];
        let mut out = vec![0.0; n_rows * k];
        for r in 0..n_rows {
            self.n.kneighbors(&x[r * nf..(r + 1) * nf], &mut all);
            let row = &mut out[r * k..(r + 1) * k];
            if self.n.distance_weights {
                self.n.weights(&all, &mut w);
                let denom = super::np_sum(&w);
                for (j, o) in row.iter_mut().enumerate() {
                    let mut num = 0.0;
                    for ((_, i), wi) in all.iter().zip(&w) {
                        num += self.y[i * k + j] * wi;
                    }
                    *o = num / denom;
                }
            } else {
                for (j, o) in row.iter_mut().enumerate() {
                    let mut s = 0.0;
                    for (_, i) in all.iter() {
                        s += self.y[i * k + j];
                    }
                    *o = s / self.n.k as f64;
                }
            }
        }
        out
    }
}
