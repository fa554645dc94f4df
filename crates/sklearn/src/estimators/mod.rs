//! Native Rust estimators built from the unpickled object graph.
//!
//! Every estimator is converted at load time into plain owned data (no `Rc`, no
//! references into the arena), so a loaded model is `Send + Sync`.

pub(crate) mod gb;
pub(crate) mod knn;
pub(crate) mod linear;
pub(crate) mod preprocessing;
pub(crate) mod svm;
pub(crate) mod tree;

use crate::Labels;
use crate::error::Error;
use crate::numpy::{self, Data, NdArray};
use crate::pickle::{Value, View};

/// A classifier: predicts class indices into its `classes_`.
pub(crate) trait Classifier: Send + Sync {
    /// Number of classes.
    fn n_classes(&self) -> usize;
    /// Number of input features (row length) the model indexes.
    fn n_features(&self) -> usize;
    /// One class index per row.
    fn predict(&self, x: &[f64], n_rows: usize, n_features: usize) -> Vec<usize>;
    /// Row-major `n_rows x n_classes` probabilities, `None` if the model has none.
    fn predict_proba(&self, x: &[f64], n_rows: usize, n_features: usize) -> Option<Vec<f64>>;
}

/// A regressor: `n_outputs` values per row.
pub(crate) trait Regressor: Send + Sync {
    fn n_outputs(&self) -> usize;
    fn n_features(&self) -> usize;
    fn predict(&self, x: &[f64], n_rows: usize, n_features: usize) -> Vec<f64>;
}

/// A transformer step of a pipeline.
pub(crate) trait Transformer: Send + Sync {
    /// Number of input (and output) features.
    fn n_features(&self) -> usize;
    /// Transforms `x` in place (same number of features).
    fn transform(&self, x: &mut [f64], n_features: usize);
}

/// The predicting part of a model.
pub(crate) enum Head {
    Classifier {
        model: Box<dyn Classifier>,
        classes: Labels,
    },
    Regressor(Box<dyn Regressor>),
}

/// A fully converted model.
pub(crate) struct Loaded {
    /// Display name, e.g. `Pipeline(StandardScaler, SVC)`.
    pub name: String,
    /// Class name of the first step (used in feature-count errors).
    pub first_class: String,
    /// Number of input features.
    pub n_features: usize,
    /// Whether NaN inputs are accepted (tree models).
    pub allow_nan: bool,
    /// Whether the estimator works on float32 inputs (trees, forests, boosting).
    pub float32: bool,
    /// Transformer steps applied before the head.
    pub transformers: Vec<Box<dyn Transformer>>,
    /// The final estimator.
    pub head: Head,
}

/// A pickled estimator object: its class and its `__dict__`.
pub(crate) struct Obj<'p> {
    pub v: View<'p>,
    pub module: &'p str,
    pub class: &'p str,
    pub state: Value,
}

impl<'p> Obj<'p> {
    pub fn new(v: View<'p>, value: Value) -> Result<Obj<'p>, Error> {
        let obj = v.object(value).ok_or_else(|| Error::InvalidModel {
            estimator: "model".into(),
            message: format!("expected an estimator object, found {}", describe(v, value)),
        })?;
        let (module, class) = v.global(obj.class).ok_or_else(|| Error::InvalidModel {
            estimator: "model".into(),
            message: "object class is not a global".into(),
        })?;
        let state = obj.state.unwrap_or(Value::None);
        Ok(Obj {
            v,
            module,
            class,
            state,
        })
    }

    pub fn full_name(&self) -> String {
        format!("{}.{}", self.module, self.class)
    }

    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::invalid(self.class, msg)
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        self.v.get(self.state, key)
    }

    pub fn req(&self, key: &str) -> Result<Value, Error> {
        self.get(key).ok_or_else(|| {
            self.err(format!(
                "missing attribute {key} (is the estimator fitted?)"
            ))
        })
    }

    pub fn opt_str(&self, key: &str) -> Option<&'p str> {
        self.get(key).and_then(|v| self.v.str(v))
    }

    pub fn f64(&self, key: &str) -> Result<f64, Error> {
        let v = self.req(key)?;
        self.v
            .float(v)
            .ok_or_else(|| self.err(format!("{key} is not a number")))
    }

    pub fn usize(&self, key: &str) -> Result<usize, Error> {
        let v = self.req(key)?;
        self.v
            .int(v)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| self.err(format!("{key} is not a non-negative integer")))
    }

    pub fn opt_usize(&self, key: &str) -> Option<usize> {
        self.get(key)
            .and_then(|v| self.v.int(v))
            .and_then(|i| usize::try_from(i).ok())
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(b),
            Value::Int(i) => Some(i != 0),
            other => self.v.int(other).map(|i| i != 0),
        }
    }

    pub fn array(&self, key: &str) -> Result<NdArray, Error> {
        let v = self.req(key)?;
        numpy::array(self.v, v).map_err(|m| self.err(format!("{key}: {m}")))
    }

    /// A float array (or a scalar, returned with shape `[]`).
    pub fn f64s(&self, key: &str) -> Result<(Vec<f64>, Vec<usize>), Error> {
        let v = self.req(key)?;
        if let Some(f) = self.v.float(v) {
            return Ok((vec![f], vec![]));
        }
        let a = numpy::array(self.v, v).map_err(|m| self.err(format!("{key}: {m}")))?;
        let data = a
            .to_f64()
            .ok_or_else(|| self.err(format!("{key} is not numeric")))?;
        Ok((data, a.shape))
    }

    pub fn i64s(&self, key: &str) -> Result<Vec<i64>, Error> {
        let a = self.array(key)?;
        a.to_i64()
            .ok_or_else(|| self.err(format!("{key} is not an integer array")))
    }

    pub fn n_features_in(&self) -> Option<usize> {
        self.opt_usize("n_features_in_")
    }

    pub fn classes(&self) -> Result<Labels, Error> {
        let a = self.array("classes_")?;
        labels_of(self.v, &a).map_err(|m| self.err(format!("classes_: {m}")))
    }
}

/// Converts a `classes_` array to labels.
pub(crate) fn labels_of(v: View<'_>, a: &NdArray) -> Result<Labels, String> {
    if a.shape.len() > 1 {
        return Err("multi-output classifiers are not supported".into());
    }
    Ok(match &a.data {
        Data::I64(x) => Labels::Int(x.clone()),
        Data::F64(x) => Labels::Float(x.clone()),
        Data::Bool(x) => Labels::Bool(x.clone()),
        Data::Str(x) => Labels::Str(x.clone()),
        Data::Object(items) => {
            if items.iter().all(|i| numpy::is_str(v, *i)) {
                Labels::Str(
                    items
                        .iter()
                        .map(|i| v.str(*i).unwrap_or_default().to_owned())
                        .collect(),
                )
            } else if items.iter().all(|i| matches!(i, Value::Bool(_))) {
                Labels::Bool(items.iter().map(|i| *i == Value::Bool(true)).collect())
            } else if let Some(ints) = items
                .iter()
                .map(|i| match i {
                    Value::Int(x) => Some(*x),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
            {
                Labels::Int(ints)
            } else if let Some(fs) = items
                .iter()
                .map(|i| v.float(*i))
                .collect::<Option<Vec<_>>>()
            {
                Labels::Float(fs)
            } else {
                return Err("mixed or unsupported label types".into());
            }
        }
        Data::Records(..) => return Err("structured labels are not supported".into()),
    })
}

pub(crate) fn describe(v: View<'_>, value: Value) -> String {
    match value {
        Value::Ref(_) => match v.node(value) {
            Some(crate::pickle::Node::Str(s)) => format!("the string {s:?}"),
            Some(crate::pickle::Node::Global { module, name }) => {
                format!("the global {module}.{name}")
            }
            Some(crate::pickle::Node::Object(o)) => match v.global(o.class) {
                Some((m, n)) => format!("an instance of {m}.{n}"),
                None => "an object".into(),
            },
            Some(crate::pickle::Node::List(_)) => "a list".into(),
            Some(crate::pickle::Node::Tuple(_)) => "a tuple".into(),
            Some(crate::pickle::Node::Dict(_)) => "a dict".into(),
            Some(crate::pickle::Node::Set(_)) => "a set".into(),
            Some(crate::pickle::Node::Bytes(_)) => "bytes".into(),
            None => "nothing".into(),
        },
        other => format!("{other:?}"),
    }
}

/// Largest pipeline nesting accepted.
const MAX_DEPTH: usize = 8;

/// Converts the root object of a pickle into a model.
pub(crate) fn load(v: View<'_>, root: Value) -> Result<Loaded, Error> {
    load_depth(v, root, 0)
}

fn load_depth(v: View<'_>, value: Value, depth: usize) -> Result<Loaded, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid("Pipeline", "pipelines nested too deeply"));
    }
    let o = Obj::new(v, value)?;
    if !o.module.starts_with("sklearn.") {
        return Err(Error::UnsupportedEstimator(o.full_name()));
    }
    let name = o.class.to_owned();
    let simple = |head: Head, allow_nan: bool| -> Result<Loaded, Error> {
        let n_features = match &head {
            Head::Classifier { model, .. } => model.n_features(),
            Head::Regressor(model) => model.n_features(),
        };
        if let Some(nf) = o.n_features_in()
            && nf != n_features
        {
            return Err(o.err(format!(
                "n_features_in_ is {nf} but the fitted arrays have {n_features} features"
            )));
        }
        Ok(Loaded {
            name: name.clone(),
            first_class: name.clone(),
            n_features,
            allow_nan,
            float32: name.contains("Tree") || name.contains("Forest") || name.contains("Boosting"),
            transformers: Vec::new(),
            head,
        })
    };
    let classifier = |model: Box<dyn Classifier>, classes: Labels| -> Result<Head, Error> {
        if model.n_classes() != classes.len() {
            return Err(o.err("classes_ does not match the model's class count"));
        }
        Ok(Head::Classifier { model, classes })
    };
    match o.class {
        "Pipeline" => pipeline(&o, depth),
        "SVC" | "NuSVC" => {
            let m = svm::Svc::load(&o)?;
            simple(classifier(Box::new(m), o.classes()?)?, false)
        }
        "SVR" | "NuSVR" => simple(Head::Regressor(Box::new(svm::Svr::load(&o)?)), false),
        "LogisticRegression"
        | "LogisticRegressionCV"
        | "RidgeClassifier"
        | "RidgeClassifierCV"
        | "SGDClassifier"
        | "LinearSVC"
        | "Perceptron"
        | "PassiveAggressiveClassifier" => {
            let m = linear::LinearClassifier::load(&o)?;
            simple(classifier(Box::new(m), o.classes()?)?, false)
        }
        "LinearRegression"
        | "Ridge"
        | "RidgeCV"
        | "Lasso"
        | "LassoCV"
        | "ElasticNet"
        | "ElasticNetCV"
        | "Lars"
        | "LassoLars"
        | "BayesianRidge"
        | "ARDRegression"
        | "SGDRegressor"
        | "HuberRegressor"
        | "LinearSVR"
        | "TheilSenRegressor"
        | "PassiveAggressiveRegressor"
        | "OrthogonalMatchingPursuit" => simple(
            Head::Regressor(Box::new(linear::LinearRegressor::load(&o)?)),
            false,
        ),
        "DecisionTreeClassifier" | "ExtraTreeClassifier" => {
            let m = tree::ForestClassifier::single(&o)?;
            simple(classifier(Box::new(m), o.classes()?)?, true)
        }
        "DecisionTreeRegressor" | "ExtraTreeRegressor" => simple(
            Head::Regressor(Box::new(tree::ForestRegressor::single(&o)?)),
            true,
        ),
        "RandomForestClassifier" | "ExtraTreesClassifier" => {
            let m = tree::ForestClassifier::forest(&o)?;
            simple(classifier(Box::new(m), o.classes()?)?, true)
        }
        "RandomForestRegressor" | "ExtraTreesRegressor" => simple(
            Head::Regressor(Box::new(tree::ForestRegressor::forest(&o)?)),
            true,
        ),
        "GradientBoostingClassifier" => {
            // Unlike single trees and forests, gradient boosting rejects NaN.
            let m = gb::GbClassifier::load(&o)?;
            simple(classifier(Box::new(m), o.classes()?)?, false)
        }
        "GradientBoostingRegressor" => {
            simple(Head::Regressor(Box::new(gb::GbRegressor::load(&o)?)), false)
        }
        "KNeighborsClassifier" => {
            let m = knn::KnnClassifier::load(&o)?;
            simple(classifier(Box::new(m), o.classes()?)?, false)
        }
        "KNeighborsRegressor" => simple(
            Head::Regressor(Box::new(knn::KnnRegressor::load(&o)?)),
            false,
        ),
        "StandardScaler" | "MinMaxScaler" | "MaxAbsScaler" => Err(Error::unsupported(
            o.class,
            "a transformer on its own has no predict; wrap it in a Pipeline with an estimator",
        )),
        _ => Err(Error::UnsupportedEstimator(o.full_name())),
    }
}

fn pipeline(o: &Obj<'_>, depth: usize) -> Result<Loaded, Error> {
    let steps = o.req("steps")?;
    let steps = o.v.seq(steps).ok_or_else(|| o.err("steps is not a list"))?;
    if steps.is_empty() {
        return Err(o.err("empty pipeline"));
    }
    let mut names = Vec::new();
    let mut transformers: Vec<Box<dyn Transformer>> = Vec::new();
    let mut first_class: Option<String> = None;
    let last = steps.len() - 1;
    for (i, step) in steps.iter().enumerate() {
        let pair =
            o.v.seq(*step)
                .filter(|p| p.len() >= 2)
                .ok_or_else(|| o.err("a step is not a (name, estimator) pair"))?;
        let est = pair[1];
        if est == Value::None || o.v.str(est) == Some("passthrough") {
            if i == last {
                return Err(Error::unsupported(
                    "Pipeline",
                    "a pipeline ending in 'passthrough' has no predict",
                ));
            }
            names.push("passthrough".to_owned());
            continue;
        }
        if i == last {
            let inner = load_depth(o.v, est, depth + 1)?;
            names.push(inner.name);
            let first_class = first_class.unwrap_or(inner.first_class);
            transformers.extend(inner.transformers);
            for t in &transformers {
                if t.n_features() != inner.n_features {
                    return Err(o.err(format!(
                        "a step expects {} features but the final estimator expects {}",
                        t.n_features(),
                        inner.n_features
                    )));
                }
            }
            return Ok(Loaded {
                name: format!("Pipeline({})", names.join(", ")),
                first_class,
                n_features: inner.n_features,
                allow_nan: inner.allow_nan,
                float32: inner.float32,
                transformers,
                head: inner.head,
            });
        }
        let so = Obj::new(o.v, est)?;
        if !so.module.starts_with("sklearn.") {
            return Err(Error::UnsupportedEstimator(so.full_name()));
        }
        if so.class == "Pipeline" {
            return Err(Error::unsupported(
                "Pipeline",
                "a nested Pipeline before the last step",
            ));
        }
        let t = preprocessing::load(&so)?;
        first_class.get_or_insert_with(|| so.class.to_owned());
        names.push(so.class.to_owned());
        transformers.push(t);
    }
    Err(o.err("pipeline has no final estimator"))
}

// ---- shared math (scikit-learn / scipy formulas, same operation order)

/// scipy.special.expit.
pub(crate) fn expit(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// sklearn.utils.extmath.softmax on one row, in place.
pub(crate) fn softmax(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for v in row.iter_mut() {
        *v = (*v - max).exp();
    }
    let sum: f64 = np_sum(row);
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// `np.sum` of a short contiguous row (numpy's pairwise summation unrolls by 8).
pub(crate) fn np_sum(v: &[f64]) -> f64 {
    if v.len() < 8 {
        let mut s = 0.0;
        for &x in v {
            s += x;
        }
        return s;
    }
    pairwise_sum(v)
}

fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// Index of the first maximum (`np.argmax`), NaN-aware like numpy (first NaN wins).
pub(crate) fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            return i;
        }
        if v > row[best] {
            best = i;
        }
    }
    best
}
