//! OPT against logits and generations computed by Hugging Face transformers.
//!
//! The fixtures (copied from the shared fixture set) cover both OPT layouts:
//! `opt-tiny-preln` (pre-LayerNorm with a final LayerNorm, like opt-125m) and
//! `opt-tiny-postln-proj` (post-LayerNorm with `project_in`/`project_out`,
//! like opt-350m).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tidal_llm::{
    Cache, Device, Error, FinishReason, Opt, Sampler, SamplingParams, Tensor, Tokenizer, generate,
};

const FIXTURES: [&str; 2] = ["opt-tiny-preln", "opt-tiny-postln-proj"];
const TOL: f32 = 1e-4;

#[derive(Debug, Deserialize)]
struct Expected {
    prompt: String,
    input_ids: Vec<u32>,
    /// Logits of the prompt's last three positions.
    logits_last3: Vec<Vec<f32>>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
    batch: Batch,
}

#[derive(Debug, Deserialize)]
struct Batch {
    input_ids: Vec<Vec<u32>>,
    attention_mask: Vec<Vec<u32>>,
    last_logits: Vec<Vec<f32>>,
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(fixture_dir(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn model(name: &str) -> Opt {
    Opt::load(&fixture_dir(name), &Device::Cpu).unwrap()
}

fn ones(n: usize) -> Vec<u32> {
    vec![1; n]
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row count");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "row length");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Full forward over one unpadded sequence: logits `[seq, vocab]`.
fn full_logits(model: &Opt, ids: &[u32]) -> Vec<Vec<f32>> {
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let m = Tensor::new(ones(ids.len()).as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward(&t, &m, &mut model.new_cache()).unwrap();
    rows(&logits.squeeze(0).unwrap())
}

#[test]
fn tokenizer_matches_transformers() {
    for name in FIXTURES {
        let exp = expected(name);
        let tok = Tokenizer::from_dir(&fixture_dir(name)).unwrap();
        assert_eq!(
            tok.encode(&exp.prompt, true).unwrap(),
            exp.input_ids,
            "{name}"
        );
        assert_eq!(
            tok.encode(&exp.prompt, false).unwrap(),
            exp.input_ids[1..],
            "{name}"
        );
        assert_eq!(exp.input_ids[0], 2, "OPT prepends </s>");
        assert_eq!(
            tok.decode(&exp.greedy_ids, false).unwrap(),
            exp.greedy_text,
            "{name}"
        );
    }
}

/// `opt-tiny-preln-hub` is `opt-tiny-preln` as the facebook/opt-* repositories on the Hub
/// hold it (`scripts/make-opt-hub-fixture.py`): `pytorch_model.bin` with bare `decoder.*`
/// names and a tied head, and a slow tokenizer's `vocab.json`, `merges.txt` and
/// `tokenizer_config.json` instead of `tokenizer.json`. It must tokenize and compute exactly
/// like the original.
#[test]
fn the_hubs_opt_layout_loads_like_the_original() {
    let exp = expected("opt-tiny-preln");
    let hub = fixture_dir("opt-tiny-preln-hub");
    assert!(!hub.join("tokenizer.json").exists() && !hub.join("model.safetensors").exists());
    let (slow, fast) = (
        Tokenizer::from_dir(&hub).unwrap(),
        Tokenizer::from_dir(&fixture_dir("opt-tiny-preln")).unwrap(),
    );
    assert_eq!(slow.encode(&exp.prompt, true).unwrap(), exp.input_ids);
    for text in [
        exp.prompt.as_str(),
        "</s>Hello <pad> world</s>",
        "  leading spaces, tabs\t and\nnewlines ",
        "unicode: héllo wörld ✓",
        "",
    ] {
        for special in [true, false] {
            let ids = fast.encode(text, special).unwrap();
            assert_eq!(slow.encode(text, special).unwrap(), ids, "{text:?}");
            assert_eq!(
                slow.decode(&ids, false).unwrap(),
                fast.decode(&ids, false).unwrap(),
                "{text:?}"
            );
        }
    }
    assert_eq!(
        slow.decode(&exp.greedy_ids, false).unwrap(),
        exp.greedy_text
    );

    let original = full_logits(&model("opt-tiny-preln"), &exp.input_ids);
    let from_bin = full_logits(&model("opt-tiny-preln-hub"), &exp.input_ids);
    assert_eq!(from_bin, original);
}

#[test]
fn prompt_logits_match_transformers() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = model(name);
        let logits = full_logits(&model, &exp.input_ids);
        let last3 = &logits[logits.len() - 3..];
        let diff = max_abs_diff(last3, &exp.logits_last3);
        println!("{name}: prompt logits max abs diff {diff:e}");
        assert!(
            diff < TOL,
            "{name}: prompt logits max abs diff {diff:e} >= {TOL:e}"
        );
    }
}

#[test]
fn greedy_generation_with_cache_matches_transformers() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = model(name);
        let n = exp.greedy_ids.len();

        let out = generate(&model, &exp.input_ids, &SamplingParams::greedy(n)).unwrap();
        assert_eq!(out.token_ids, exp.greedy_ids, "{name}: greedy ids");
        assert_eq!(out.finish_reason, FinishReason::Length, "{name}");
        let tok = Tokenizer::from_dir(&fixture_dir(name)).unwrap();
        assert_eq!(
            tok.decode(&out.token_ids, false).unwrap(),
            exp.greedy_text,
            "{name}"
        );

        // Manual prefill + decode steps; compare each step to a full forward.
        let mut cache = model.new_cache();
        let mut step_logits = vec![
            rows(
                &model
                    .forward_rows(
                        std::slice::from_ref(&exp.input_ids),
                        &[ones(exp.input_ids.len())],
                        &mut cache,
                    )
                    .unwrap(),
            )
            .remove(0),
        ];
        for &id in &exp.greedy_ids[..n - 1] {
            let logits = model
                .forward_rows(&[vec![id]], &[vec![1]], &mut cache)
                .unwrap();
            step_logits.push(rows(&logits).remove(0));
        }
        assert_eq!(cache.seq_len(), exp.input_ids.len() + n - 1);
        let picked: Vec<u32> = step_logits.iter().map(|r| argmax(r)).collect();
        assert_eq!(picked, exp.greedy_ids, "{name}: manual cached greedy");

        let mut all = exp.input_ids.clone();
        all.extend_from_slice(&exp.greedy_ids[..n - 1]);
        let full = full_logits(&model, &all);
        let full_tail = &full[exp.input_ids.len() - 1..];
        let diff = max_abs_diff(&step_logits, full_tail);
        println!("{name}: cached vs full forward max abs diff {diff:e}");
        assert!(diff < 1e-5, "{name}: cached vs full max abs diff {diff:e}");
    }
}

#[test]
fn left_padded_batch_matches_transformers() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = model(name);
        let mut cache = model.new_cache();
        let logits = model
            .forward_rows(&exp.batch.input_ids, &exp.batch.attention_mask, &mut cache)
            .unwrap();
        let diff = max_abs_diff(&rows(&logits), &exp.batch.last_logits);
        println!("{name}: padded batch last logits max abs diff {diff:e}");
        assert!(
            diff < TOL,
            "{name}: padded batch max abs diff {diff:e} >= {TOL:e}"
        );

        // The padded row must also agree with running that prompt alone.
        let (ids, mask) = (&exp.batch.input_ids[1], &exp.batch.attention_mask[1]);
        let real: Vec<u32> = ids
            .iter()
            .zip(mask)
            .filter(|(_, m)| **m == 1)
            .map(|(i, _)| *i)
            .collect();
        let alone = full_logits(&model, &real);
        let diff = max_abs_diff(&rows(&logits)[1..], &alone[alone.len() - 1..]);
        assert!(diff < 1e-5, "{name}: padded vs alone max abs diff {diff:e}");
    }
}

/// The continuous-batching pattern: per-request caches, stacked for a joint
/// decode step and unstacked afterwards, agree with decoding each request alone
/// and with decoding a left-padded batch prefill.
#[test]
fn stacked_decode_matches_individual_decode() {
    for name in FIXTURES {
        let exp = expected(name);
        let model = model(name);
        let prompts: Vec<Vec<u32>> = exp
            .batch
            .input_ids
            .iter()
            .zip(&exp.batch.attention_mask)
            .map(|(ids, m)| {
                ids.iter()
                    .zip(m)
                    .filter(|(_, m)| **m == 1)
                    .map(|(i, _)| *i)
                    .collect()
            })
            .collect();
        let steps = 5;

        // Reference: each prompt decoded alone.
        let mut reference = Vec::new();
        for p in &prompts {
            let mut cache = model.new_cache();
            let mut logits = rows(
                &model
                    .forward_rows(std::slice::from_ref(p), &[ones(p.len())], &mut cache)
                    .unwrap(),
            )
            .remove(0);
            let mut seq = Vec::new();
            for _ in 0..steps {
                let next = argmax(&logits);
                seq.push((next, logits.clone()));
                logits = rows(
                    &model
                        .forward_rows(&[vec![next]], &[vec![1]], &mut cache)
                        .unwrap(),
                )
                .remove(0);
            }
            reference.push(seq);
        }

        // Per-request prefill, then stacked decode steps.
        let mut caches: Vec<Cache> = Vec::new();
        let mut last: Vec<Vec<f32>> = Vec::new();
        for p in &prompts {
            let mut cache = model.new_cache();
            last.push(
                rows(
                    &model
                        .forward_rows(std::slice::from_ref(p), &[ones(p.len())], &mut cache)
                        .unwrap(),
                )
                .remove(0),
            );
            caches.push(cache);
        }
        // Also: a left-padded batch prefill, unstacked into per-request caches.
        let mut batch_cache = model.new_cache();
        let batch_last = rows(
            &model
                .forward_rows(
                    &exp.batch.input_ids,
                    &exp.batch.attention_mask,
                    &mut batch_cache,
                )
                .unwrap(),
        );
        let mut batch_caches = batch_cache.unstack().unwrap();
        assert_eq!(
            batch_caches[1].seq_len(),
            prompts[1].len(),
            "unstack drops leading padding"
        );
        assert!(max_abs_diff(&batch_last, &last) < 1e-5);
        let mut batch_last = batch_last;

        for step in 0..steps {
            for (i, seq) in reference.iter().enumerate() {
                let (want_id, want_logits) = &seq[step];
                for (what, got) in [("stacked", &last[i]), ("batch-prefill", &batch_last[i])] {
                    let diff =
                        max_abs_diff(std::slice::from_ref(got), std::slice::from_ref(want_logits));
                    assert!(
                        diff < 1e-5,
                        "{name} {what} step {step} row {i}: diff {diff:e}"
                    );
                    assert_eq!(argmax(got), *want_id);
                }
            }
            let next: Vec<Vec<u32>> = last.iter().map(|r| vec![argmax(r)]).collect();
            let mut stacked = Cache::stack(&caches).unwrap();
            last = rows(
                &model
                    .forward_rows(&next, &[vec![1], vec![1]], &mut stacked)
                    .unwrap(),
            );
            caches = stacked.unstack().unwrap();

            let mut stacked = Cache::stack(&batch_caches).unwrap();
            batch_last = rows(
                &model
                    .forward_rows(&next, &[vec![1], vec![1]], &mut stacked)
                    .unwrap(),
            );
            batch_caches = stacked.unstack().unwrap();
        }
        assert_eq!(caches[0].real_lens(), vec![prompts[0].len() + steps]);
        assert_eq!(caches[1].real_lens(), vec![prompts[1].len() + steps]);
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let name = FIXTURES[0];
    let model = model(name);
    let dev = Device::Cpu;
    let fresh = || model.new_cache();

    let err = Opt::load(Path::new("/nonexistent/tidal-llm"), &dev).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");

    // Out-of-vocab id.
    let err = model
        .forward_rows(&[vec![2, 9999]], &[vec![1, 1]], &mut fresh())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    // Ragged rows, empty input.
    assert!(
        model
            .forward_rows(&[vec![2, 3], vec![2]], &[vec![1, 1], vec![1]], &mut fresh())
            .is_err()
    );
    assert!(model.forward_rows(&[], &[], &mut fresh()).is_err());
    // Mask shape mismatch, bad mask value, wrong rank.
    let ids = Tensor::new(&[[2u32, 5, 6]], &dev).unwrap();
    let short = Tensor::new(&[[1u32, 1]], &dev).unwrap();
    assert!(matches!(
        model.forward(&ids, &short, &mut fresh()),
        Err(Error::InvalidInput(_))
    ));
    let bad = Tensor::new(&[[1u32, 2, 1]], &dev).unwrap();
    assert!(matches!(
        model.forward(&ids, &bad, &mut fresh()),
        Err(Error::InvalidInput(_))
    ));
    let flat = Tensor::new(&[2u32, 5, 6], &dev).unwrap();
    assert!(matches!(
        model.forward(&flat, &flat, &mut fresh()),
        Err(Error::InvalidInput(_))
    ));
    // Too long for the positional table (max_position_embeddings = 64).
    let long = vec![5u32; 65];
    let err = model
        .forward_rows(std::slice::from_ref(&long), &[ones(65)], &mut fresh())
        .unwrap_err();
    assert!(err.to_string().contains("max_position_embeddings"), "{err}");
    assert!(generate(&model, &long, &SamplingParams::greedy(3)).is_err());
    assert!(generate(&model, &[], &SamplingParams::greedy(3)).is_err());
    // Generation stops at the context window instead of failing.
    let out = generate(
        &model,
        &vec![5u32; 60],
        &SamplingParams {
            ignore_eos: true,
            ..SamplingParams::greedy(100)
        },
    )
    .unwrap();
    assert_eq!(out.token_ids.len(), 5);
    assert_eq!(out.finish_reason, FinishReason::Length);
    // Cache batch mismatch; a failed call leaves the cache untouched.
    let mut cache = fresh();
    model
        .forward_rows(&[vec![2, 5]], &[vec![1, 1]], &mut cache)
        .unwrap();
    assert!(
        model
            .forward_rows(&[vec![5], vec![6]], &[vec![1], vec![1]], &mut cache)
            .is_err()
    );
    assert!(
        model
            .forward_rows(&[vec![99999]], &[vec![1]], &mut cache)
            .is_err()
    );
    assert_eq!(cache.seq_len(), 2);
    // Cache from a different model shape.
    let mut wrong = Cache::new(7);
    assert!(
        model
            .forward_rows(&[vec![2]], &[vec![1]], &mut wrong)
            .is_err()
    );
    assert!(Cache::stack(&[]).is_err());
    assert!(Cache::stack(&[fresh()]).is_err());

    // Broken checkpoints.
    let tmp = std::env::temp_dir().join(format!("tidal-llm-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let src = fixture_dir(name);
    std::fs::copy(src.join("model.safetensors"), tmp.join("model.safetensors")).unwrap();
    let config = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(
        tmp.join("config.json"),
        config.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
    )
    .unwrap();
    let err = Opt::load(&tmp, &dev).unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err}");
    assert!(format!("{err}").contains("layers.2"), "{err}");
    std::fs::write(
        tmp.join("config.json"),
        config.replace("\"hidden_size\": 32", "\"hidden_size\": 48"),
    )
    .unwrap();
    assert!(matches!(Opt::load(&tmp, &dev), Err(Error::Weights { .. })));
    std::fs::write(
        tmp.join("config.json"),
        config.replace("\"relu\"", "\"mish\""),
    )
    .unwrap();
    assert!(matches!(Opt::load(&tmp, &dev), Err(Error::Config(_))));
    std::fs::write(tmp.join("config.json"), "{not json").unwrap();
    assert!(matches!(Opt::load(&tmp, &dev), Err(Error::Json { .. })));
    std::fs::write(tmp.join("config.json"), &config).unwrap();
    std::fs::write(tmp.join("model.safetensors"), b"garbage").unwrap();
    assert!(matches!(Opt::load(&tmp, &dev), Err(Error::Weights { .. })));
    std::fs::remove_file(tmp.join("model.safetensors")).unwrap();
    assert!(matches!(Opt::load(&tmp, &dev), Err(Error::Io { .. })));
    std::fs::write(tmp.join("tokenizer.json"), b"{}").unwrap();
    assert!(matches!(
        Tokenizer::from_dir(&tmp),
        Err(Error::Tokenizer(_))
    ));
    std::fs::remove_dir_all(&tmp).unwrap();
    assert!(matches!(Tokenizer::from_dir(&tmp), Err(Error::Io { .. })));
}

#[test]
fn sampling() {
    let name = FIXTURES[0];
    let exp = expected(name);
    let model = model(name);
    let sampled = |params: SamplingParams| generate(&model, &exp.input_ids, &params).unwrap();
    let base = SamplingParams {
        temperature: 1.0,
        seed: 7,
        max_tokens: 12,
        ignore_eos: true,
        ..SamplingParams::default()
    };
    // Same seed, same stream; top_k = 1 is greedy.
    assert_eq!(sampled(base.clone()), sampled(base.clone()));
    let top1 = sampled(SamplingParams {
        top_k: Some(1),
        ..base.clone()
    });
    assert_eq!(top1.token_ids, exp.greedy_ids);
    let tiny_p = sampled(SamplingParams {
        top_p: 1e-9,
        ..base.clone()
    });
    assert_eq!(tiny_p.token_ids, exp.greedy_ids);

    // Distribution sanity on hand-made logits: top_k = 2 never leaves the top 2.
    let logits = [0.0f32, 3.0, 2.9, -1.0, 2.8];
    let mut s = Sampler::new(&SamplingParams {
        temperature: 1.0,
        top_k: Some(2),
        seed: 1,
        ..SamplingParams::default()
    })
    .unwrap();
    let mut counts = [0usize; 5];
    for _ in 0..2000 {
        counts[s.sample(&logits).unwrap() as usize] += 1;
    }
    assert_eq!(counts[0] + counts[3] + counts[4], 0, "{counts:?}");
    assert!(counts[1] > 900 && counts[2] > 800, "{counts:?}");

    for bad in [
        SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            temperature: f64::NAN,
            ..SamplingParams::default()
        },
        SamplingParams {
            top_p: 0.0,
            ..SamplingParams::default()
        },
        SamplingParams {
            top_p: 1.5,
            ..SamplingParams::default()
        },
    ] {
        assert!(
            matches!(Sampler::new(&bad), Err(Error::InvalidInput(_))),
            "{bad:?}"
        );
    }
    let mut greedy = Sampler::new(&SamplingParams::default()).unwrap();
    assert!(greedy.sample(&[]).is_err());
    assert!(greedy.sample(&[1.0, f32::NAN]).is_err());
    assert_eq!(
        greedy.sample(&[1.0, 3.0, 3.0]).unwrap(),
        1,
        "first maximum, like torch.argmax"
    );
}

#[test]
fn model_and_cache_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Opt>();
    check::<Cache>();
    check::<Tokenizer>();
}
