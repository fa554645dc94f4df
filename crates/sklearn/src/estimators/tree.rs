//! Decision trees and forests (`sklearn.tree._tree.Tree`).
//!
//! scikit-learn predicts trees on `float32` inputs: `X.astype(np.float32)` and
//! then `X[i, f] <= threshold` with the float64 threshold. The same cast is done
//! here so that splits at thresholds between float32 values agree exactly.

use super::{Classifier, Obj, Regressor, argmax};
use crate::error::Error;
use crate::numpy::{self, Data};
use crate::pickle::Value;

const LEAF: i64 = -1;

#[derive(Clone, Copy)]
struct TreeNode {
    left: u32,
    right: u32,
    feature: u32,
    missing_left: bool,
    leaf: bool,
    threshold: f64,
}

/// A fitted `Tree`: nodes and leaf values.
pub(crate) struct Tree {
    nodes: Vec<TreeNode>,
    /// node_count x n_outputs x max_n_classes.
    values: Vec<f64>,
    pub n_outputs: usize,
    pub max_n_classes: usize,
    /// Row length the tree was fitted on.
    pub n_features: usize,
}

impl Tree {
    /// Reads the `tree_` attribute of a DecisionTree* estimator.
    pub fn from_estimator(o: &Obj<'_>) -> Result<Tree, Error> {
        let t = o.req("tree_")?;
        Tree::from_value(o, t)
    }

    fn from_value(o: &Obj<'_>, t: Value) -> Result<Tree, Error> {
        let v = o.v;
        let obj = v.object(t).ok_or_else(|| o.err("tree_ is not a Tree"))?;
        match v.global(obj.class) {
            Some((_, "Tree")) => {}
            _ => return Err(o.err("tree_ is not a sklearn.tree._tree.Tree")),
        }
        let n_features = obj
            .args
            .first()
            .and_then(|a| v.int(*a))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| o.err("Tree without n_features"))?;
        let state = obj.state.ok_or_else(|| o.err("Tree without state"))?;
        let nodes_v = v
            .get(state, "nodes")
            .ok_or_else(|| o.err("Tree without nodes"))?;
        let values_v = v
            .get(state, "values")
            .ok_or_else(|| o.err("Tree without values"))?;
        let nodes = numpy::array(v, nodes_v).map_err(|m| o.err(format!("tree nodes: {m}")))?;
        let values = numpy::array(v, values_v).map_err(|m| o.err(format!("tree values: {m}")))?;
        let Data::Records(dtype, bytes) = &nodes.data else {
            return Err(o.err("tree nodes are not a structured array"));
        };
        let field = |name: &str| {
            dtype
                .fields
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, d, off)| (d.clone(), *off))
        };
        let need = |name: &str| field(name).ok_or_else(|| o.err(format!("tree nodes lack {name}")));
        let (ld, lo) = need("left_child")?;
        let (rd, ro) = need("right_child")?;
        let (fd, fo) = need("feature")?;
        let (td, to) = need("threshold")?;
        let missing = field("missing_go_to_left");
        let size = dtype.itemsize;
        let count = nodes.len();
        if count == 0 {
            return Err(o.err("empty tree"));
        }
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let rec = &bytes[i * size..(i + 1) * size];
            let bad = || o.err("corrupt tree node");
            let left = ld.read_i64(&rec[lo..]).ok_or_else(bad)?;
            let right = rd.read_i64(&rec[ro..]).ok_or_else(bad)?;
            let feature = fd.read_i64(&rec[fo..]).ok_or_else(bad)?;
            let threshold = td.read_f64(&rec[to..]).ok_or_else(bad)?;
            let missing_left = match &missing {
                Some((d, off)) => d.read_i64(&rec[*off..]).ok_or_else(bad)? != 0,
                None => false,
            };
            let leaf = left == LEAF;
            let (left, right, feature) = if leaf {
                (0, 0, 0)
            } else {
                // Children are always created after their parent: this also
                // guarantees that traversal terminates.
                let ok = |c: i64| c > i as i64 && (c as usize) < count;
                if !ok(left) || !ok(right) {
                    return Err(o.err("tree child index out of range"));
                }
                if feature < 0 || feature as usize >= n_features {
                    return Err(o.err("tree feature index out of range"));
                }
                (left as u32, right as u32, feature as u32)
            };
            out.push(TreeNode {
                left,
                right,
                feature,
                missing_left,
                leaf,
                threshold,
            });
        }
        let (n_outputs, max_n_classes) = match values.shape.as_slice() {
            [n, a, b] if *n == count => (*a, *b),
            _ => return Err(o.err("tree values have the wrong shape")),
        };
        let values = values
            .to_f64()
            .ok_or_else(|| o.err("tree values are not numeric"))?;
        if n_outputs == 0 || max_n_classes == 0 {
            return Err(o.err("tree values are empty"));
        }
        Ok(Tree {
            n_features,
            nodes: out,
            values,
            n_outputs,
            max_n_classes,
        })
    }

    /// Leaf reached by one row (features already cast to float32 precision).
    #[inline]
    fn apply(&self, x: &[f64]) -> usize {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.leaf {
                return i;
            }
            let v = x[n.feature as usize];
            let go_left = if v.is_nan() {
                n.missing_left
            } else {
                v <= n.threshold
            };
            i = if go_left { n.left } else { n.right } as usize;
        }
    }

    /// The values of one leaf: n_outputs x max_n_classes.
    #[inline]
    fn leaf_values(&self, leaf: usize) -> &[f64] {
        let w = self.n_outputs * self.max_n_classes;
        &self.values[leaf * w..(leaf + 1) * w]
    }

    /// `tree_.predict(X)[:, :, 0]` for a regression tree: writes n_outputs values.
    #[inline]
    pub fn regress(&self, x: &[f64], out: &mut [f64]) {
        let vals = self.leaf_values(self.apply(x));
        for (k, o) in out.iter_mut().enumerate() {
            *o = vals[k * self.max_n_classes];
        }
    }

    /// The first output's leaf value (gradient boosting).
    #[inline]
    pub fn value0(&self, x: &[f64]) -> f64 {
        self.leaf_values(self.apply(x))[0]
    }
}

/// Casts one row to float32 precision (scikit-learn's tree input dtype).
#[inline]
pub(crate) fn to_f32_row(x: &[f64], out: &mut [f64]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = f64::from(*v as f32);
    }
}

fn max_features(trees: &[Tree]) -> usize {
    trees.iter().map(|t| t.n_features).max().unwrap_or(0)
}

fn trees_of(o: &Obj<'_>) -> Result<Vec<Tree>, Error> {
    let list = o.req("estimators_")?;
    let items =
        o.v.seq(list)
            .ok_or_else(|| o.err("estimators_ is not a list"))?;
    if items.is_empty() {
        return Err(o.err("no estimators"));
    }
    items
        .iter()
        .map(|e| {
            let eo = Obj::new(o.v, *e)?;
            Tree::from_estimator(&eo)
        })
        .collect()
}

/// DecisionTreeClassifier (one tree) and RandomForestClassifier / ExtraTreesClassifier.
pub(crate) struct ForestClassifier {
    trees: Vec<Tree>,
    n_classes: usize,
    /// A single tree predicts `argmax(value)` without normalising.
    single: bool,
}

impl ForestClassifier {
    pub fn single(o: &Obj<'_>) -> Result<Self, Error> {
        let t = Tree::from_estimator(o)?;
        Self::new(o, vec![t], true)
    }

    pub fn forest(o: &Obj<'_>) -> Result<Self, Error> {
        Self::new(o, trees_of(o)?, false)
    }

    fn new(o: &Obj<'_>, trees: Vec<Tree>, single: bool) -> Result<Self, Error> {
        let n_classes = o.array("classes_")?.len();
        for t in &trees {
            if t.n_outputs != 1 {
                return Err(Error::unsupported(o.class, "multi-output classification"));
            }
            if t.max_n_classes < n_classes {
                return Err(o.err("tree values have fewer classes than classes_"));
            }
        }
        Ok(ForestClassifier {
            trees,
            n_classes,
            single,
        })
    }

    fn proba_row(&self, xf: &[f64], acc: &mut [f64]) {
        acc.iter_mut().for_each(|a| *a = 0.0);
        let nc = self.n_classes;
        for t in &self.trees {
            let vals = &t.leaf_values(t.apply(xf))[..nc];
            let mut norm = 0.0;
            for v in vals {
                norm += v;
            }
            if norm == 0.0 {
                norm = 1.0;
            }
            for (a, v) in acc.iter_mut().zip(vals) {
                *a += v / norm;
            }
        }
        if !self.single {
            let n = self.trees.len() as f64;
            for a in acc.iter_mut() {
                *a /= n;
            }
        }
    }
}

impl Classifier for ForestClassifier {
    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn n_features(&self) -> usize {
        max_features(&self.trees)
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<usize> {
        let mut xf = vec![0.0; nf];
        let mut acc = vec![0.0; self.n_classes];
        (0..n_rows)
            .map(|r| {
                to_f32_row(&x[r * nf..(r + 1) * nf], &mut xf);
                if self.single {
                    let t = &self.trees[0];
                    argmax(&t.leaf_values(t.apply(&xf))[..self.n_classes])
                } else {
                    self.proba_row(&xf, &mut acc);
                    argmax(&acc)
                }
            })
            .collect()
    }

    fn predict_proba(&self, x: &[f64], n_rows: usize, nf: usize) -> Option<Vec<f64>> {
        let nc = self.n_classes;
        let mut xf = vec![0.0; nf];
        let mut out = vec![0.0; n_rows * nc];
        for r in 0..n_rows {
            to_f32_row(&x[r * nf..(r + 1) * nf], &mut xf);
            self.proba_row(&xf, &mut out[r * nc..(r + 1) * nc]);
        }
        Some(out)
    }
}

/// DecisionTreeRegressor and RandomForestRegressor / ExtraTreesRegressor.
pub(crate) struct ForestRegressor {
    trees: Vec<Tree>,
    n_outputs: usize,
    single: bool,
}

impl ForestRegressor {
    pub fn single(o: &Obj<'_>) -> Result<Self, Error> {
        let t = Tree::from_estimator(o)?;
        Self::new(vec![t], true)
    }

    pub fn forest(o: &Obj<'_>) -> Result<Self, Error> {
        Self::new(trees_of(o)?, false)
    }

    fn new(trees: Vec<Tree>, single: bool) -> Result<Self, Error> {
        let n_outputs = trees[0].n_outputs;
        if trees.iter().any(|t| t.n_outputs != n_outputs) {
            return Err(Error::invalid("forest", "trees disagree on n_outputs"));
        }
        Ok(ForestRegressor {
            trees,
            n_outputs,
            single,
        })
    }
}

impl Regressor for ForestRegressor {
    fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    fn n_features(&self) -> usize {
        max_features(&self.trees)
    }

    fn predict(&self, x: &[f64], n_rows: usize, nf: usize) -> Vec<f64> {
        let k = self.n_outputs;
        let mut xf = vec![0.0; nf];
        let mut tmp = vec![0.0; k];
        let mut out = vec![0.0; n_rows * k];
        for r in 0..n_rows {
            to_f32_row(&x[r * nf..(r + 1) * nf], &mut xf);
            let row = &mut out[r * k..(r + 1) * k];
            for t in &self.trees {
                t.regress(&xf, &mut tmp);
                for (o, v) in row.iter_mut().zip(&tmp) {
                    *o += v;
                }
            }
            if !self.single {
                let n = self.trees.len() as f64;
                for o in row.iter_mut() {
                    *o /= n;
                }
            }
        }
        out
    }
}
