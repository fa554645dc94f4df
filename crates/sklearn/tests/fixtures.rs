//! Every directory under `tests/fixtures/` holds a model saved by scikit-learn and
//! `expected.json` with scikit-learn's own predictions; all must match.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tidal_sklearn::{Labels, Model};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn check_fixture(dir: &Path) -> Result<(), String> {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let file = expected["file"].as_str().ok_or("expected.file")?;
    let model = Model::from_file(&dir.join(file)).map_err(|e| format!("load: {e}"))?;

    let est = expected["estimator"].as_str().ok_or("expected.estimator")?;
    let name = model.estimator();
    if name != est && !name.starts_with(&format!("{est}(")) {
        return Err(format!("estimator {name} != {est}"));
    }
    let inputs = expected["inputs"].as_array().ok_or("expected.inputs")?;
    let n_rows = inputs.len();
    let x: Vec<f64> = inputs
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_f64().expect("f64"))
        })
        .collect();
    if let Some(nf) = model.n_features() {
        assert_eq!(nf * n_rows, x.len(), "{}: n_features", dir.display());
    }

    let pred = model
        .predict(&x, n_rows)
        .map_err(|e| format!("predict: {e}"))?;
    let want = expected["predict"].as_array().ok_or("expected.predict")?;
    let want_flat: Vec<&Value> = want
        .iter()
        .flat_map(|v| match v.as_array() {
            Some(a) => a.iter().collect::<Vec<_>>(),
            None => vec![v],
        })
        .collect();
    match &pred {
        Labels::Int(p) => {
            let w: Vec<i64> = want_flat
                .iter()
                .map(|v| v.as_i64().expect("int label"))
                .collect();
            if *p != w {
                return Err(format!("predict {p:?} != {w:?}"));
            }
        }
        Labels::Str(p) => {
            let w: Vec<&str> = want_flat
                .iter()
                .map(|v| v.as_str().expect("str label"))
                .collect();
            if *p != w {
                return Err(format!("predict {p:?} != {w:?}"));
            }
        }
        Labels::Bool(p) => {
            let w: Vec<bool> = want_flat
                .iter()
                .map(|v| v.as_bool().expect("bool label"))
                .collect();
            if *p != w {
                return Err(format!("predict {p:?} != {w:?}"));
            }
        }
        Labels::Float(p) => {
            let w: Vec<f64> = want_flat
                .iter()
                .map(|v| v.as_f64().expect("float"))
                .collect();
            if p.len() != w.len() || p.iter().zip(&w).any(|(a, b)| !close(*a, *b)) {
                return Err(format!("predict {p:?} != {w:?}"));
            }
            if model.classes().is_none() {
                assert_eq!(p.len(), n_rows * model.n_outputs());
            }
        }
    }

    match expected.get("predict_proba").and_then(|v| v.as_array()) {
        Some(rows) => {
            let got = model
                .predict_proba(&x, n_rows)
                .map_err(|e| format!("predict_proba: {e}"))?;
            let w: Vec<f64> = rows
                .iter()
                .flat_map(|r| {
                    r.as_array()
                        .expect("row")
                        .iter()
                        .map(|v| v.as_f64().expect("f64"))
                })
                .collect();
            if got.len() != w.len() || got.iter().zip(&w).any(|(a, b)| !close(*a, *b)) {
                return Err(format!("predict_proba {got:?} != {w:?}"));
            }
        }
        None => {
            if model.classes().is_none() {
                assert!(model.predict_proba(&x, n_rows).is_err());
            }
        }
    }
    Ok(())
}

#[test]
fn all_fixtures_match_sklearn() {
    let dirs = fixture_dirs();
    assert!(dirs.len() >= 12, "fixtures missing");
    let mut failures = Vec::new();
    for dir in &dirs {
        if let Err(e) = check_fixture(dir) {
            failures.push(format!(
                "{}: {e}",
                dir.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
