//! Fuzz target: arbitrary bytes must never panic the loader or a prediction.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = tidal_sklearn::Model::from_bytes(data) {
        let nf = model.n_features().unwrap_or(1).min(256);
        let x: Vec<f64> = (0..nf * 2).map(|i| i as f64 * 0.25 - 1.0).collect();
        let _ = model.predict(&x, 2);
        let _ = model.predict_proba(&x, 2);
    }
});
