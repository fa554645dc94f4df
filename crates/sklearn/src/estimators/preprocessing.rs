//! Scalers used as pipeline steps.

use super::{Obj, Transformer};
use crate::error::Error;

/// StandardScaler: `(x - mean_) / scale_`.
struct StandardScaler {
    mean: Option<Vec<f64>>,
    scale: Option<Vec<f64>>,
    n_features: usize,
}

/// MinMaxScaler: `x * scale_ + min_`, optionally clipped.
struct MinMaxScaler {
    scale: Vec<f64>,
    min: Vec<f64>,
    clip: Option<(f64, f64)>,
}

/// MaxAbsScaler: `x / scale_`.
struct MaxAbsScaler {
    scale: Vec<f64>,
}

impl Transformer for StandardScaler {
    fn n_features(&self) -> usize {
        self.n_features
    }

    fn transform(&self, x: &mut [f64], nf: usize) {
        for row in x.chunks_exact_mut(nf) {
            if let Some(m) = &self.mean {
                for (v, m) in row.iter_mut().zip(m) {
                    *v -= m;
                }
            }
            if let Some(s) = &self.scale {
                for (v, s) in row.iter_mut().zip(s) {
                    *v /= s;
                }
            }
        }
    }
}

impl Transformer for MinMaxScaler {
    fn n_features(&self) -> usize {
        self.scale.len()
    }

    fn transform(&self, x: &mut [f64], nf: usize) {
        for row in x.chunks_exact_mut(nf) {
            for ((v, s), m) in row.iter_mut().zip(&self.scale).zip(&self.min) {
                *v *= s;
                *v += m;
                if let Some((lo, hi)) = self.clip {
                    // np.clip propagates NaN
                    if *v < lo {
                        *v = lo;
                    } else if *v > hi {
                        *v = hi;
                    }
                }
            }
        }
    }
}

impl Transformer for MaxAbsScaler {
    fn n_features(&self) -> usize {
        self.scale.len()
    }

    fn transform(&self, x: &mut [f64], nf: usize) {
        for row in x.chunks_exact_mut(nf) {
            for (v, s) in row.iter_mut().zip(&self.scale) {
                *v /= s;
            }
        }
    }
}

fn vector(o: &Obj<'_>, key: &str) -> Result<Option<Vec<f64>>, Error> {
    match o.get(key) {
        None | Some(crate::pickle::Value::None) => Ok(None),
        Some(_) => Ok(Some(o.f64s(key)?.0)),
    }
}

/// Converts a transformer step.
pub(crate) fn load(o: &Obj<'_>) -> Result<Box<dyn Transformer>, Error> {
    let t: Box<dyn Transformer> = match o.class {
        "StandardScaler" => {
            let mean = if o.bool("with_mean") == Some(false) {
                None
            } else {
                vector(o, "mean_")?
            };
            let scale = if o.bool("with_std") == Some(false) {
                None
            } else {
                vector(o, "scale_")?
            };
            let n_features = match (&mean, &scale, o.n_features_in()) {
                (_, _, Some(n)) => n,
                (Some(m), _, None) => m.len(),
                (None, Some(s), None) => s.len(),
                (None, None, None) => return Err(o.err("cannot tell the number of features")),
            };
            if mean.as_ref().is_some_and(|m| m.len() != n_features)
                || scale.as_ref().is_some_and(|s| s.len() != n_features)
            {
                return Err(o.err("mean_/scale_ do not match n_features_in_"));
            }
            Box::new(StandardScaler {
                mean,
                scale,
                n_features,
            })
        }
        "MinMaxScaler" => {
            let scale = o.f64s("scale_")?.0;
            let min = o.f64s("min_")?.0;
            if scale.len() != min.len() {
                return Err(o.err("scale_ and min_ differ in length"));
            }
            let clip = if o.bool("clip") == Some(true) {
                let fr = o
                    .get("feature_range")
                    .and_then(|f| o.v.seq(f))
                    .filter(|f| f.len() == 2)
                    .ok_or_else(|| o.err("bad feature_range"))?;
                let lo = o.v.float(fr[0]).ok_or_else(|| o.err("bad feature_range"))?;
                let hi = o.v.float(fr[1]).ok_or_else(|| o.err("bad feature_range"))?;
                Some((lo, hi))
            } else {
                None
            };
            Box::new(MinMaxScaler { scale, min, clip })
        }
        "MaxAbsScaler" => Box::new(MaxAbsScaler {
            scale: o.f64s("scale_")?.0,
        }),
        _ => {
            return Err(Error::unsupported(
                "Pipeline",
                format!(
                    "step {}.{} (supported transformers: StandardScaler, MinMaxScaler, MaxAbsScaler)",
                    o.module, o.class
                ),
            ));
        }
    };
    if let Some(n) = o.n_features_in()
        && n != t.n_features()
    {
        return Err(o.err("fitted arrays do not match n_features_in_"));
    }
    Ok(t)
}
