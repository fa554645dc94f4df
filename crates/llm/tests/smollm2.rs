//! SmolLM2-135M-Instruct (Q4_1 GGUF) through [`Llama`]: tokenizer
//! from GGUF metadata, a greedy chat answer, and the batching contract
//! (a sequence's logits do not depend on what else is in its step).
//!
//! Needs the model file: run `bash scripts/fetch-models`, or point
//! `TIDAL_SMOLLM2_GGUF` at it.

use std::sync::OnceLock;

use tidal_llm::{
    CausalLm, DType, Error, GgufInfo, Llama, LlamaCache, RopeStyle, SeqStep, Tokenizer, WeightPrep,
};

#[path = "support/smollm2.rs"]
mod smollm2;
use smollm2::gguf_path;

/// Batched and chunked runs of the same model are in fact bit-identical
/// (matmuls work row by row, attention sums in a fixed order); the tolerance
/// leaves room for kernels that reorder sums.
const TOL: f32 = 1e-3;

/// A checkpoint against its GGUF: the checkpoint's Q/K rows are in another
/// order (rotate-half RoPE), so its keys can differ from the GGUF's in the
/// last f32 bits, and the f16 KV cache now and then rounds such a
/// difference to a whole f16 step (about 5e-4 relative), which thirty layers
/// carry to a few 1e-3 in the logits (4e-3 measured; 4.5e-5 with an f32
/// cache). A wrong tensor mapping or layout moves logits by whole units.
const CHECKPOINT_TOL: f32 = 2e-2;

const CHAT_PROMPT: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

fn model() -> &'static Llama {
    static MODEL: OnceLock<Llama> = OnceLock::new();
    MODEL.get_or_init(|| Llama::load(&gguf_path()).expect("load the GGUF model"))
}

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| Tokenizer::from_gguf(&gguf_path()).expect("build the tokenizer"))
}

fn encode(text: &str) -> Vec<u32> {
    tokenizer().encode(text, false).expect("encode")
}

/// Runs one sequence alone: returns its last logits.
fn step(cache: &mut LlamaCache, tokens: &[u32]) -> Vec<f32> {
    let mut out = model()
        .forward_batch(&mut [SeqStep { tokens, cache }])
        .expect("forward");
    assert_eq!(out.len(), 1);
    out.pop().expect("one row")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn header_facts() {
    let info = GgufInfo::from_file(&gguf_path()).expect("read header");
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.context_length, 8192);
    assert_eq!(info.vocab_size, 49152);
    assert_eq!(info.bos_token_id, Some(1));
    assert_eq!(info.eos_token_id, Some(2));
    assert!(!info.add_bos_token);
    let template = info.chat_template.expect("chat template");
    assert!(template.contains("<|im_start|>"), "{template}");

    let m = model();
    let c = m.config();
    assert_eq!(
        (c.n_layer, c.n_embd, c.n_head, c.n_kv_head),
        (30, 576, 9, 3)
    );
    assert_eq!(m.vocab_size(), 49152);
    assert_eq!(m.max_context(), 8192);
    // f16 keys and values: 30 layers x (K, V) x 3 KV heads x 64 x 2 bytes.
    assert_eq!(m.kv_bytes_per_token(), 30 * 2 * 3 * 64 * 2);
    assert_eq!(m.info().expect("GGUF header").eos_token_id, Some(2));
}

#[test]
fn tokenizer_keeps_control_tokens_whole() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
    let ids = encode(CHAT_PROMPT);
    let im_start = tok
        .token_to_id("<|im_start|>")
        .expect("<|im_start|> in vocab");
    let im_end = tok.token_to_id("<|im_end|>").expect("<|im_end|> in vocab");
    assert_eq!((im_start, im_end), (1, 2));
    assert_eq!(ids[0], im_start, "{ids:?}");
    assert_eq!(ids.iter().filter(|&&t| t == im_start).count(), 2, "{ids:?}");
    assert_eq!(ids.iter().filter(|&&t| t == im_end).count(), 1, "{ids:?}");
    // Byte-level BPE round-trips text exactly, spaces and newlines included.
    assert_eq!(tok.decode(&ids, false).expect("decode"), CHAT_PROMPT);
    // Digits are split one by one (SmolLM's pre-tokenizer).
    let digits = encode("2024");
    assert_eq!(digits.len(), 4, "{digits:?}");
}

/// Greedy continuation of `prompt`, stopping at EOS (`<|im_end|>`).
fn greedy(m: &Llama, prompt: &[u32], max_tokens: usize) -> String {
    // SmolLM2's EOS, `<|im_end|>` (see `header_facts`).
    let eos = 2;
    let mut cache = m.new_cache();
    let mut logits = m
        .forward_batch(&mut [SeqStep {
            tokens: prompt,
            cache: &mut cache,
        }])
        .expect("prefill")
        .remove(0);
    let mut out = Vec::new();
    for _ in 0..max_tokens {
        let next = argmax(&logits);
        if next == eos {
            break;
        }
        out.push(next);
        logits = m
            .forward_batch(&mut [SeqStep {
                tokens: &[next],
                cache: &mut cache,
            }])
            .expect("decode")
            .remove(0);
    }
    tokenizer().decode(&out, true).expect("decode")
}

#[test]
fn greedy_chat_answer_mentions_paris() {
    let text = greedy(model(), &encode(CHAT_PROMPT), 20);
    assert!(text.contains("Paris"), "answer: {text:?}");
}

/// The other weight preparations load and answer too (the default test
/// model uses [`WeightPrep::Fast`]).
#[test]
fn faithful_and_as_stored_weights_answer_paris() {
    for prep in [WeightPrep::Faithful, WeightPrep::AsStored] {
        let m = Llama::load_with(&gguf_path(), prep).expect("load");
        let text = greedy(&m, &encode(CHAT_PROMPT), 12);
        assert!(text.contains("Paris"), "{prep:?} answer: {text:?}");
    }
}

/// The same weights as a transformers checkpoint (f32 safetensors, Q/K rows
/// in rotate-half order, `config.json`, `tokenizer.json`) compute what the
/// GGUF file computes once dequantized: tensor names, config fields, the
/// tied LM head and the RoPE layout all line up.
#[test]
fn a_transformers_checkpoint_computes_what_its_gguf_computes() {
    let dir = std::env::temp_dir().join(format!("tidal-smollm2-hf-{}", std::process::id()));
    smollm2::export_transformers(&gguf_path(), &dir, DType::F32);
    let hf = Llama::load_transformers(&dir).expect("load the checkpoint");
    assert_eq!(hf.config().rope_style, RopeStyle::Halves);
    assert!(hf.info().is_none());
    let reference = Llama::load_with(&gguf_path(), WeightPrep::Dequantized).expect("load");
    assert_eq!(reference.config().rope_style, RopeStyle::Interleaved);

    let folder_tokenizer = Tokenizer::from_dir(&dir).expect("tokenizer.json");
    let prompt = folder_tokenizer.encode(CHAT_PROMPT, false).expect("encode");
    assert_eq!(prompt, encode(CHAT_PROMPT));
    let (mut a, mut b) = (hf.new_cache(), reference.new_cache());
    let mut tokens = prompt.clone();
    for _ in 0..4 {
        let x = hf
            .forward_batch(&mut [SeqStep {
                tokens: &tokens,
                cache: &mut a,
            }])
            .expect("checkpoint forward")
            .remove(0);
        let y = reference
            .forward_batch(&mut [SeqStep {
                tokens: &tokens,
                cache: &mut b,
            }])
            .expect("GGUF forward")
            .remove(0);
        let d = max_abs_diff(&x, &y);
        assert!(d < CHECKPOINT_TOL, "max abs diff {d}");
        tokens = vec![argmax(&x)];
    }
    let text = greedy(&hf, &prompt, 12);
    assert!(text.contains("Paris"), "answer: {text:?}");

    // Quantized at load (`--quantization q8_0`): 8-bit weights, the same answer.
    let q8 = Llama::load_transformers_with(&dir, WeightPrep::QuantizeQ8).expect("load as Q8_0");
    let (f32_bytes, q8_bytes) = (hf.weight_bytes(), q8.weight_bytes());
    // Q8_0 is 34 bytes per 32 weights against 128 (rows padded from 576 to 768 on VNNI CPUs).
    assert!(q8_bytes * 2 < f32_bytes, "{q8_bytes} vs {f32_bytes} bytes");
    let text = greedy(&q8, &prompt, 12);
    assert!(text.contains("Paris"), "Q8_0 answer: {text:?}");

    // A config that does not match the weights is an error naming the tensors at fault:
    // missing ones, unused ones (never silently ignored), an untied head without weights.
    let config_path = dir.join("config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let load_with = |field: &str, value: serde_json::Value| {
        let mut config: serde_json::Value = serde_json::from_str(&original).unwrap();
        config[field] = value;
        std::fs::write(&config_path, config.to_string()).unwrap();
        Llama::load_transformers(&dir).unwrap_err().to_string()
    };
    let err = load_with("num_hidden_layers", 31.into());
    assert!(
        err.contains("model.layers.30.self_attn.q_proj.weight is missing"),
        "{err}"
    );
    let err = load_with("num_hidden_layers", 29.into());
    assert!(
        err.contains("does not use: model.layers.29.") && err.contains("and 4 more"),
        "{err}"
    );
    let err = load_with("tie_word_embeddings", false.into());
    assert!(err.contains("lm_head.weight is missing"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--max_model_len` caps the context (and the RoPE tables): a step past it
/// is an error naming the limit, and the positions below it compute as before.
#[test]
fn a_capped_context_refuses_positions_past_it() {
    let mut m = Llama::load(&gguf_path()).expect("load");
    m.cap_context(12);
    assert_eq!(m.max_context(), 12);
    let ids = encode(CHAT_PROMPT);
    assert!(ids.len() > 12);
    let err = m
        .forward_batch(&mut [SeqStep {
            tokens: &ids,
            cache: &mut m.new_cache(),
        }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("context length 12"), "{err}");
    let short = &ids[..12];
    let capped = m
        .forward_batch(&mut [SeqStep {
            tokens: short,
            cache: &mut m.new_cache(),
        }])
        .expect("12 tokens fit")
        .remove(0);
    let d = max_abs_diff(&capped, &step(&mut model().new_cache(), short));
    assert!(d < TOL, "max abs diff {d}");
}

#[test]
fn batched_prefill_matches_single_runs() {
    let m = model();
    let prompts = [
        encode("The quick brown fox"),
        encode("<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n"),
        encode("1, 2, 3, 4,"),
    ];
    let alone: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| step(&mut m.new_cache(), p))
        .collect();

    let mut caches: Vec<LlamaCache> = prompts.iter().map(|_| m.new_cache()).collect();
    let mut steps: Vec<SeqStep<'_, LlamaCache>> = prompts
        .iter()
        .zip(caches.iter_mut())
        .map(|(p, cache)| SeqStep { tokens: p, cache })
        .collect();
    let batched = m.forward_batch(&mut steps).expect("batched forward");
    assert_eq!(batched.len(), 3);
    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        let d = max_abs_diff(a, b);
        assert!(d < TOL, "prompt {i}: max abs diff {d}");
    }
    for (p, c) in prompts.iter().zip(&caches) {
        assert_eq!(m.cached_tokens(c), p.len());
    }
}

#[test]
fn mixed_prefill_and_decode_step_matches_single_runs() {
    let m = model();
    let a = encode("Once upon a time");
    let b = encode("The capital of Germany is");
    let c = encode("def fibonacci(n):");

    // Reference: each sequence on its own.
    let mut ref_a = m.new_cache();
    let next_a = argmax(&step(&mut ref_a, &a));
    let want_a = step(&mut ref_a, &[next_a]);
    let mut ref_b = m.new_cache();
    let next_b = argmax(&step(&mut ref_b, &b));
    let want_b = step(&mut ref_b, &[next_b]);
    let want_c = step(&mut m.new_cache(), &c);

    // Prefill a and b together, then one step: c's prefill plus two decodes.
    let (mut ca, mut cb, mut cc) = (m.new_cache(), m.new_cache(), m.new_cache());
    m.forward_batch(&mut [
        SeqStep {
            tokens: &a,
            cache: &mut ca,
        },
        SeqStep {
            tokens: &b,
            cache: &mut cb,
        },
    ])
    .expect("prefill");
    let got = m
        .forward_batch(&mut [
            SeqStep {
                tokens: &[next_a],
                cache: &mut ca,
            },
            SeqStep {
                tokens: &c,
                cache: &mut cc,
            },
            SeqStep {
                tokens: &[next_b],
                cache: &mut cb,
            },
        ])
        .expect("mixed step");
    for (name, want, got) in [
        ("a", &want_a, &got[0]),
        ("c", &want_c, &got[1]),
        ("b", &want_b, &got[2]),
    ] {
        let d = max_abs_diff(want, got);
        assert!(d < TOL, "sequence {name}: max abs diff {d}");
    }
    assert_eq!(
        (
            m.cached_tokens(&ca),
            m.cached_tokens(&cb),
            m.cached_tokens(&cc)
        ),
        (a.len() + 1, b.len() + 1, c.len())
    );
}

#[test]
fn token_by_token_decode_matches_prefill() {
    let m = model();
    // Long enough that the one-shot prefill runs its attention on the thread
    // pool while single-token steps run it inline: both must agree.
    let ids = encode(
        "<|im_start|>user\nHello! How are you today? I would like to hear about the tides: \
         why the sea rises and falls twice a day, what the moon and the sun have to do with it, \
         and why some harbours see ten metres between low and high water while others barely \
         notice a change.<|im_end|>\n",
    );
    assert!(ids.len() > 48, "{} tokens", ids.len());
    let want = step(&mut m.new_cache(), &ids);

    let mut cache = m.new_cache();
    let mut got = Vec::new();
    for &t in &ids {
        got = step(&mut cache, &[t]);
    }
    let d = max_abs_diff(&want, &got);
    assert!(d < TOL, "max abs diff {d}");

    // Uneven chunks (a chunked prefill) agree too.
    let mut cache = m.new_cache();
    step(&mut cache, &ids[..3]);
    step(&mut cache, &ids[3..10]);
    let got = step(&mut cache, &ids[10..]);
    let d = max_abs_diff(&want, &got);
    assert!(d < TOL, "chunked prefill: max abs diff {d}");
}

#[test]
fn bad_input_is_an_error_and_leaves_caches_usable() {
    let m = model();
    let mut cache = m.new_cache();
    let ok = step(&mut cache, &[1, 2, 3]);

    let vocab = m.vocab_size() as u32;
    let mut other = m.new_cache();
    let cases: [(&str, Vec<u32>); 3] = [
        ("out of range", vec![5, vocab]),
        ("empty", vec![]),
        ("too long", vec![7; m.max_context()]),
    ];
    for (name, tokens) in &cases {
        let err = m
            .forward_batch(&mut [
                SeqStep {
                    tokens: &[4],
                    cache: &mut other,
                },
                SeqStep {
                    tokens,
                    cache: &mut cache,
                },
            ])
            .expect_err(name);
        assert!(matches!(err, Error::InvalidInput(_)), "{name}: {err}");
    }
    // Nothing was appended to either cache.
    assert_eq!((m.cached_tokens(&cache), m.cached_tokens(&other)), (3, 0));
    assert!(m.forward_batch(&mut []).expect("empty batch").is_empty());

    let mut fresh = m.new_cache();
    step(&mut fresh, &[1, 2, 3]);
    let again = step(&mut fresh, &[4]);
    let cont = step(&mut cache, &[4]);
    assert!(max_abs_diff(&again, &cont) < TOL);
    assert_eq!(ok.len(), m.vocab_size());
}

#[test]
fn unsupported_architecture_is_a_config_error() {
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};

    let path = std::env::temp_dir().join(format!("tidal-llm-arch-{}.gguf", std::process::id()));
    let weight = QTensor::quantize(
        &candle_core::Tensor::zeros((4, 32), candle_core::DType::F32, &candle_core::Device::Cpu)
            .expect("zeros"),
        GgmlDType::F32,
    )
    .expect("tensor");
    let arch = Value::String("mamba".into());
    let ctx = Value::U32(16);
    let tokens = Value::Array(vec![Value::String("a".into())]);
    let mut file = std::fs::File::create(&path).expect("create");
    gguf_file::write(
        &mut file,
        &[
            ("general.architecture", &arch),
            ("mamba.context_length", &ctx),
            ("tokenizer.ggml.tokens", &tokens),
        ],
        &[("token_embd.weight", &weight)],
    )
    .expect("write gguf");
    drop(file);
    let err = Llama::load(&path).expect_err("mamba is not supported");
    std::fs::remove_file(&path).ok();
    match err {
        Error::Config(msg) => assert!(msg.contains("mamba"), "{msg}"),
        other => panic!("expected a config error, got {other}"),
    }
}
