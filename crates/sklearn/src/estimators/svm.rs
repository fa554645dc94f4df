//! libsvm models (SVC, NuSVC, SVR, NuSVR), computed exactly as scikit-learn's libsvm fork.
//!
//! scikit-learn keeps libsvm's own arrays in the private attributes `_dual_coef_`,
//! `_intercept_` (= -rho), `_n_support`, `_probA`, `_probB`; the public
//! `dual_coef_`/`intercept_` are sign-flipped for binary problems, so the private
//! ones are used whenever present.

use super::{Classifier, Obj, Regressor, argmax};
use crate::error::Error;

#[derive(Clone, Copy)]
enum Kernel {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

struct KernelModel {
    kernel: Kernel,
    gamma: f64,
    coef0: f64,
    degree: i32,
    /// Support vectors, row-major (n_sv x n_features).
    sv: Vec<f64>,
    n_features: usize,
}

/// libsvm's `powi`.
fn powi(base: f64, times: i32) -> f64 {
    let mut tmp = base;
    let mut ret = 1.0;
    let mut t = times;
    while t > 0 {
        if t % 2 == 1 {
            ret *= tmp;
        }
        tmp *= tmp;
        t /= 2;
    }
    ret
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

impl KernelModel {
    fn load(o: &Obj<'_>) -> Result<KernelModel, Error> {
        let kernel = match o.opt_str("kernel") {
            Some("linear") => Kernel::Linear,
            Some("poly") => Kernel::Poly,
            Some("rbf") => Kernel::Rbf,
            Some("sigmoid") => Kernel::Sigmoid,
            Some(k) => return Err(Error::unsupported(o.class, format!("kernel {k:?}"))),
            None => return Err(Error::unsupported(o.class, "callable kernels")),
        };
        if o.bool("_sparse") == Some(true) {
            return Err(Error::unsupported(o.class, "models fitted on sparse input"));
        }
        let gamma = o.f64("_gamma")?;
        let coef0 = o.get("coef0").and_then(|v| o.v.float(v)).unwrap_or(0.0);
        let degree = o
            .get("degree")
            .and_then(|v| o.v.int(v))
            .and_then(|d| i32::try_from(d).ok())
            .unwrap_or(3);
        let (sv, shape) = o.f64s("support_vectors_")?;
        let n_features = match shape.as_slice() {
            [_, c] => *c,
            _ => return Err(o.err("support_vectors_ must be 2-D")),
        };
        Ok(KernelModel {
            kernel,
            gamma,
            coef0,
            degree,
            sv,
            n_features,
        })
    }

    fn n_sv(&self) -> usize {
        self.sv.len().checked_div(self.n_features).unwrap_or(0)
    }

    /// `K(x, sv_i)` for every support vector, libsvm's dense `k_function`.
    fn kvalues(&self, x: &[f64], out: &mut [f64]) {
        let nf = self.n_features;
        for (i, k) in out.iter_mut().enumerate() {
            let s = &self.sv[i * nf..(i + 1) * nf];
            *k = match self.kernel {
                Kernel::Linear => dot(x, s),
                Kernel::Poly => powi(self.gamma * dot(x, s) + self.coef0, self.degree),
                Kernel::Rbf => {
                    let mut sum = 0.0;
                    for (a, b) in x.iter().zip(s) {
                        let d = a - b;
                        sum += d * d;
                    }
                    (-self.gamma * sum).exp()
                }
                Kernel::Sigmoid => (self.gamma * dot(x, s) + self.coef0).tanh(),
            };
        }
    }
}

/// SVC / NuSVC.
pub(crate) struct Svc {
    k: KernelModel,
    n_classes: usize,
    /// Start of each class's support vectors.
    start: Vec<usize>,
    n_support: Vec<usize>,
    /// libsvm sv_coef: (n_classes - 1) x n_sv.
    coef: Vec<f64>,
    /// -rho, one per pair (i < j).
    intercept: Vec<f64>,
    prob_a: Vec<f64>,
    prob_b: Vec<f64>,
    probability: bool,
    break_ties_ovr: bool,
}

impl Svc {
    pub fn load(o: &Obj<'_>) -> Result<Svc, Error> {
        let k = KernelModel::load(o)?;
        let n_classes = o.array("classes_")?.len();
        if n_classes < 2 {
            return Err(o.err("needs at least two classes"));
        }
        let n_sv = k.n_sv();
        let n_support: Vec<usize> = o
            .i64s(if o.get("_n_support").is_some() {
                "_n_support"
            } else {
                "n_support_"
            })?
            .into_iter()
            .map(|n| usize::try_from(n).map_err(|_| o.err("negative n_support")))
            .collect::<Result<_, _>>()?;
        if n_support.len() != n_classes || n_support.iter().sum::<usize>() != n_sv {
            return Err(o.err("n_support does not match the support vectors"));
        }
        let mut start = vec![0; n_classes];
        for i in 1..n_classes {
            start[i] = start[i - 1] + n_support[i - 1];
        }
        let binary = n_classes == 2;
        let (coef, intercept) = if o.get("_dual_coef_").is_some() {
            (o.f64s("_dual_coef_")?.0, o.f64s("_intercept_")?.0)
        } else {
            // Public attributes are negated for binary problems.
            let (mut c, _) = o.f64s("dual_coef_")?;
            let (mut i, _) = o.f64s("intercept_")?;
            if binary {
                c.iter_mut().for_each(|x| *x = -*x);
                i.iter_mut().for_each(|x| *x = -*x);
            }
            (c, i)
        };
        let n_pairs = n_classes * (n_classes - 1) / 2;
        if coef.len() != (n_classes - 1) * n_sv || intercept.len() != n_pairs {
            return Err(o.err("dual_coef_/intercept_ have the wrong size"));
        }
        let probability = o.bool("probability") == Some(true);
        let (prob_a, prob_b) = if probability {
            let a = if o.get("_probA").is_some() {
                o.f64s("_probA")?.0
            } else {
                o.f64s("probA_")?.0
            };
            let b = if o.get("_probB").is_some() {
                o.f64s("_probB")?.0
            } else {
                o.f64s("probB_")?.0
            };
            (a, b)
        } else {
            (Vec::new(), Vec::new())
        };
        let probability = probability && prob_a.len() == n_pairs && prob_b.len() == n_pairs;
        let break_ties_ovr = o.bool("break_ties") == Some(true)
            && o.opt_str("decision_function_shape") != Some("ovo")
            && n_classes > 2;
        if let Some(nf) = o.n_features_in()
            && nf != k.n_features
        {
            return Err(o.err("support_vectors_ does not match n_features_in_"));
        }
        Ok(Svc {
            k,
            n_classes,
            start,
            n_support,
            coef,
            intercept,
            prob_a,
            prob_b,
            probability,
            break_ties_ovr,
        })
    }

    /// libsvm `svm_predict_values`: one-vs-one decision values; returns the vote winner.
    fn decision(&self, kvalue: &[f64], dec: &mut [f64], votes: &mut [u32]) -> usize {
        let n_sv = kvalue.len();
        let nc = self.n_classes;
        votes.iter_mut().for_each(|v| *v = 0);
        let mut p = 0;
        for i in 0..nc {
            for j in i + 1..nc {
                let si = self.start[i];
                let sj = self.start[j];
                let ci = self.n_support[i];
                let cj = self.n_support[j];
                let coef1 = &self.coef[(j - 1) * n_sv..j * n_sv];
                let coef2 = &self.coef[i * n_sv..(i + 1) * n_sv];
                let mut sum = 0.0;
                for k in 0..ci {
                    sum += coef1[si + k] * kvalue[si + k];
                }
                for k in 0..cj {
                    sum += coef2[sj + k] * kvalue[sj + k];
                }
                // libsvm: sum -= rho, with rho = -intercept
                sum -= -self.intercept[p];
                dec[p] = sum;
                if sum > 0.0 {
                    votes[i] += 1;
                } else {
                    votes[j] += 1;
                }
                p += 1;
            }
        }
        let mut best = 0;
        for i in 1..nc {
            if votes[i] > votes[best] {
                best = i;
            }
        }
        best
    }

    /// sklearn's `_ovr_decision_function(dec < 0, -dec, n_classes)`.
    fn ovr_decision(&self, dec: &[f64], out: &mut [f64]) {
        let nc = self.n_classes;
        let mut votes = vec![0.0; nc];
        let mut conf = vec![0.0; nc];
        let mut k = 0;
        for i in 0..nc {
            for j in i + 1..nc {
                let c = -dec[k];
                conf[i] -= c;
                conf[j] += c;
                if dec[k] < 0.0 {
                    votes[j] += 1.0;
                } else {
                    votes[i] += 1.0;
                }
                k += 1;
            }
        }
        for i in 0..nc {
            out[i] = votes[i] + conf[i] / (3.0 * (conf[i].abs() + 1.0));
        }
    }
}

/// libsvm `sigmoid_predict`.
fn sigmoid_predict(decision_value: f64, a: f64, b: f64) -> f64 {
    let f_apb = decision_value * a + b;
    if f_apb >= 0.0 {
        (-f_apb).exp() / (1.0 + (-f_apb).exp())
    } else {
        1.0 / (1.0 + f_apb.exp())
    }
}

/// libsvm `multiclass_probability` (Wu, Lin and Weng pairwise coupling).
///
/// Written index-for-index like libsvm so the floating-point operations match.
#[allow(clippy::needless_range_loop)]
fn multiclass_probability(k: usize, r: &[f64], p: &mut [f64]) {
    let max_iter = 100.max(k);
    let mut q = vec![0.0; k * k];
    let mut qp = vec![0.0; k];
    let eps = 0.005 / k as f64;
    for t in 0..k {
        p[t] = 1.0 / k as f64;
        q[t * k + t] = 0.0;
        for j in 0..t {
            q[t * k + t] += r[j * k + t] * r[j * k + t];
            q[t * k + j] = q[j * k + t];
        }
        for j in t + 1..k {
            q[t * k + t] += r[j * k + t] * r[j * k + t];
            q[t * k + j] = -r[j * k + t] * r[t * k + j];
        }
    }
    for _ in 0..max_iter {
        let mut pqp = 0.0;
        for t in 0..k {
            qp[t] = 0.0;
            for j in 0..k {
                qp[t] += q[t * k + j] * p[j];
            }
            pqp += p[t] * qp[t];
        }
        let mut max_error: f64 = 0.0;
        for t in 0..k {
            let error = (qp[t] - pqp).abs();
            if error > max_error {
                max_error = error;
            }
        }
        if max_error < eps {
            break;
        }
        for t in 0..k {
            let diff = (-qp[t] + pqp) / q[t * k + t];
            p[t] += diff;
            pqp = (pqp + diff * (diff * q[t * k + t] + 2.0 * qp[t])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[t * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
}

impl Classifier for Svc {
    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn n_features(&self) -> usize {
        self.k.n_features
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<usize> {
        let mut kv = vec![0.0; self.k.n_sv()];
        let mut dec = vec![0.0; self.intercept.len()];
        let mut votes = vec![0u32; self.n_classes];
        let mut ovr = vec![0.0; self.n_classes];
        (0..n_rows)
            .map(|r| {
                self.k.kvalues(&x[r * nf..(r + 1) * nf], &mut kv);
                let winner = self.decision(&kv, &mut dec, &mut votes);
                if self.break_ties_ovr {
                    self.ovr_decision(&dec, &mut ovr);
                    argmax(&ovr)
                } else {
                    winner
                }
            })
            .collect()
    }

    fn predict_proba(&self, x: &[f64], n_rows: usize, nf: usize) -> Option<Vec<f64>> {
        if !self.probability {
            return None;
        }
        let nc = self.n_classes;
        let mut kv = vec![0.0; self.k.n_sv()];
        let mut dec = vec![0.0; self.intercept.len()];
        let mut votes = vec![0u32; nc];
        let mut pairwise = vec![0.0; nc * nc];
        let mut out = vec![0.0; n_rows * nc];
        let min_prob = 1e-7;
        for r in 0..n_rows {
            self.k.kvalues(&x[r * nf..(r + 1) * nf], &mut kv);
            self.decision(&kv, &mut dec, &mut votes);
            let mut k = 0;
            for i in 0..nc {
                for j in i + 1..nc {
                    let p = sigmoid_predict(dec[k], self.prob_a[k], self.prob_b[k])
                        .max(min_prob)
                        .min(1.0 - min_prob);
                    pairwise[i * nc + j] = p;
                    pairwise[j * nc + i] = 1.0 - p;
                    k += 1;
                }
            }
            let row = &mut out[r * nc..(r + 1) * nc];
            // scikit-learn's libsvm fork couples pairwise probabilities even for
            // two classes (no `nr_class == 2` shortcut).
            multiclass_probability(nc, &pairwise, row);
        }
        Some(out)
    }
}

/// SVR / NuSVR.
pub(crate) struct Svr {
    k: KernelModel,
    coef: Vec<f64>,
    intercept: f64,
}

impl Svr {
    pub fn load(o: &Obj<'_>) -> Result<Svr, Error> {
        let k = KernelModel::load(o)?;
        let coef = if o.get("_dual_coef_").is_some() {
            o.f64s("_dual_coef_")?.0
        } else {
            o.f64s("dual_coef_")?.0
        };
        let intercept = if o.get("_intercept_").is_some() {
            o.f64s("_intercept_")?.0
        } else {
            o.f64s("intercept_")?.0
        };
        if coef.len() != k.n_sv() || intercept.len() != 1 {
            return Err(o.err("dual_coef_/intercept_ have the wrong size"));
        }
        Ok(Svr {
            k,
            coef,
            intercept: intercept[0],
        })
    }
}

impl Regressor for Svr {
    fn n_outputs(&self) -> usize {
        1
    }

    fn n_features(&self) -> usize {
        self.k.n_features
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<f64> {
        let mut kv = vec![0.0; self.k.n_sv()];
        (0..n_rows)
            .map(|r| {
                self.k.kvalues(&x[r * nf..(r + 1) * nf], &mut kv);
                let mut sum = 0.0;
                for (c, k) in self.coef.iter().zip(&kv) {
                    sum += c * k;
                }
                sum - (-self.intercept)
            })
            .collect()
    }
}
