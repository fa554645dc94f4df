//! Public API behaviour: errors, metadata and thread-safety.

use std::path::{Path, PathBuf};

use tidal_sklearn::{Error, Labels, Model};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Model {
    let dir = fixture(name);
    let file = if dir.join("model.pkl").exists() {
        dir.join("model.pkl")
    } else {
        dir.join("model.joblib")
    };
    Model::from_file(&file).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn wrong_feature_count_uses_sklearn_wording() {
    let m = load("iris-svc");
    let e = m.predict(&[1.0, 2.0, 3.0], 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "X has 3 features, but SVC is expecting 4 features as input."
    );
    let m = load("iris-pipeline");
    let e = m.predict(&[1.0; 5], 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "X has 5 features, but StandardScaler is expecting 4 features as input."
    );
    assert!(matches!(
        m.predict(&[1.0; 7], 2),
        Err(Error::InputShape { len: 7, n_rows: 2 })
    ));
}

#[test]
fn metadata() {
    let m = load("iris-pipeline");
    assert_eq!(
        m.estimator(),
        "Pipeline(StandardScaler, LogisticRegression)"
    );
    assert_eq!(m.n_features(), Some(4));
    assert_eq!(m.classes(), Some(&Labels::Int(vec![0, 1, 2])));
    assert!(m.has_proba());

    let m = load("diabetes-ridge");
    assert_eq!(m.estimator(), "Ridge");
    assert_eq!(m.n_features(), Some(10));
    assert_eq!(m.classes(), None);
    assert_eq!(m.n_outputs(), 1);

    let m = load("gen-ridge-multioutput");
    assert_eq!(m.n_outputs(), 3);
    let Labels::Float(v) = m
        .predict(&[5.0, 100.0, 50.0, 10.0, 150.0, 60.0], 2)
        .unwrap()
    else {
        panic!("regressor gives floats")
    };
    assert_eq!(v.len(), 6);

    let m = load("gen-rf-string-labels");
    assert_eq!(
        m.classes(),
        Some(&Labels::Str(vec![
            "setosa".into(),
            "versicolor".into(),
            "virginica".into()
        ]))
    );
    let m = load("gen-pipeline-minmax-passthrough-svc");
    assert_eq!(m.estimator(), "Pipeline(MinMaxScaler, passthrough, SVC)");
}

#[test]
fn no_proba_is_an_error() {
    let m = load("iris-svc");
    assert!(!m.has_proba());
    let e = m.predict_proba(&[5.0, 3.0, 1.5, 0.2], 1).unwrap_err();
    assert!(matches!(&e, Error::NoProba(n) if n == "SVC"), "{e}");
    let m = load("diabetes-linreg");
    assert!(matches!(
        m.predict_proba(&[0.0; 10], 1),
        Err(Error::NoProba(_))
    ));
}

#[test]
fn non_finite_inputs() {
    let m = load("iris-svc");
    let e = m.predict(&[f64::NAN, 3.0, 1.5, 0.2], 1).unwrap_err();
    assert_eq!(e.to_string(), "Input X contains NaN.");
    let e = m.predict(&[f64::INFINITY, 3.0, 1.5, 0.2], 1).unwrap_err();
    assert!(e.to_string().contains("infinity"));
    // Trees accept NaN (scikit-learn routes it with missing_go_to_left).
    let m = load("iris-dtree");
    assert!(m.predict(&[f64::NAN, 3.0, 1.5, 0.2], 1).is_ok());
}

#[test]
fn nan_follows_missing_go_to_left_like_sklearn() {
    // Expected values from scikit-learn 1.9.1 on the same models.
    let x = [f64::NAN, 3.0, 1.5, 0.2, 6.0, f64::NAN, f64::NAN, 1.0];
    assert_eq!(
        load("iris-dtree").predict(&x, 2).unwrap(),
        Labels::Int(vec![0, 1])
    );
    let rf = load("iris-rf");
    assert_eq!(rf.predict(&x, 2).unwrap(), Labels::Int(vec![0, 1]));
    let p = rf.predict_proba(&x, 2).unwrap();
    let want = [0.85, 0.15, 0.0, 0.0, 0.7, 0.3];
    assert!(
        p.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
        "{p:?}"
    );
    let et = load("gen-extratrees");
    assert_eq!(et.predict(&x, 2).unwrap(), Labels::Int(vec![0, 0]));
    let p = et.predict_proba(&x, 2).unwrap();
    let want = [
        0.8,
        0.2,
        0.0,
        0.5583333333333333,
        0.2982142857142857,
        0.14345238095238094,
    ];
    assert!(
        p.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
        "{p:?}"
    );
    // Gradient boosting does not accept NaN in scikit-learn.
    assert!(matches!(
        load("iris-gbc").predict(&x, 2),
        Err(Error::NonFinite { .. })
    ));
}

#[test]
fn empty_input_gives_empty_output() {
    let m = load("iris-rf");
    assert_eq!(m.predict(&[], 0).unwrap(), Labels::Int(vec![]));
    assert_eq!(m.predict_proba(&[], 0).unwrap(), Vec::<f64>::new());
}

#[test]
fn unsupported_estimator_is_named() {
    let path = fixture("unsupported/hist_gradient_boosting.joblib");
    let e = Model::from_file(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported estimator sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier"
    );
}

#[test]
fn not_a_model() {
    // pickle of the dict {'a': 1}
    let e =
        Model::from_bytes(b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.")
            .unwrap_err();
    assert!(
        e.to_string().contains("expected an estimator object"),
        "{e}"
    );
    let e = Model::from_file(Path::new("/nonexistent/model.joblib")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    let e = Model::from_bytes(b"\x80\x04c").unwrap_err();
    assert!(e.to_string().contains("at byte 2 (opcode GLOBAL)"), "{e}");
}

#[test]
fn shared_across_threads() {
    let m = std::sync::Arc::new(load("iris-gbc"));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                m.predict(&[5.0 + i as f64 * 0.5, 3.0, 1.5 + i as f64, 0.2], 1)
                    .unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().len(), 1);
    }
}

#[test]
fn single_row_is_fast() {
    // Not a timing assertion (CI machines vary): just run many predictions so a
    // pathological per-row cost would show up as a slow test.
    let m = load("iris-svc");
    let x = [6.1, 2.8, 4.7, 1.2];
    for _ in 0..2000 {
        let _ = m.predict(&x, 1).unwrap();
    }
}
