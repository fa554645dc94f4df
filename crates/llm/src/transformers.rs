//! transformers checkpoint folders: weights (safetensors, one file or an
//! index of shards, else PyTorch's `pytorch_model.bin`) and the `config.json`
//! of Llama-family models, mapped to what [`crate::llama::Llama`] reads from
//! GGUF files.
//!
//! The GGUF tensor names are the model's own vocabulary; a checkpoint's
//! names are translated by [`tensor_name`], so one loader serves both.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::llama::{Architecture, LlamaConfig, MAX_CONTEXT, RopeStyle};

/// Reads every tensor of a checkpoint folder into memory: `model.safetensors`
/// or the shards a `model.safetensors.index.json` lists, or else PyTorch's
/// `pytorch_model.bin` (or its index's shards), which older repositories
/// such as facebook/opt-* ship. Weights are read rather than memory-mapped
/// because the workspace keeps `unsafe` to its AVX512 kernels, and candle's
/// mmap loader requires it; PyTorch files go through candle's pickle reader, which only
/// decodes data and never runs code from the file.
pub(crate) fn read_weights(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut tensors = HashMap::new();
    let weights = |source| Error::Weights {
        path: dir.to_owned(),
        source,
    };
    match weight_files(dir)? {
        WeightFiles::Safetensors(files) => {
            for file in files {
                let loaded = candle_core::safetensors::load(&file, device).map_err(|source| {
                    Error::Weights {
                        path: file.clone(),
                        source,
                    }
                })?;
                tensors.extend(loaded);
            }
        }
        WeightFiles::PyTorch(files) => {
            for file in files {
                let loaded =
                    candle_core::pickle::read_all(&file).map_err(|source| Error::Weights {
                        path: file.clone(),
                        source,
                    })?;
                for (name, t) in loaded {
                    tensors.insert(name, t.to_device(device).map_err(weights)?);
                }
            }
        }
    }
    Ok(tensors)
}

/// A checkpoint's weight files, in the format found.
enum WeightFiles {
    Safetensors(Vec<PathBuf>),
    PyTorch(Vec<PathBuf>),
}

/// The weight files of a checkpoint folder, safetensors preferred.
fn weight_files(dir: &Path) -> Result<WeightFiles> {
    for (single, index, format) in [
        (
            "model.safetensors",
            "model.safetensors.index.json",
            WeightFiles::Safetensors as fn(Vec<PathBuf>) -> WeightFiles,
        ),
        (
            "pytorch_model.bin",
            "pytorch_model.bin.index.json",
            WeightFiles::PyTorch,
        ),
    ] {
        if dir.join(single).is_file() {
            return Ok(format(vec![dir.join(single)]));
        }
        if dir.join(index).is_file() {
            return Ok(format(shards(&dir.join(index))?));
        }
    }
    Err(Error::Io {
        path: dir.join("model.safetensors"),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no weights: none of model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json exists",
        ),
    })
}

/// The shard files a weight index (`*.index.json`) lists.
fn shards(index: &Path) -> Result<Vec<PathBuf>> {
    let dir = index.parent().unwrap_or(Path::new("."));
    #[derive(Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let parsed: Index = read_json(index)?;
    let mut seen = HashSet::new();
    let mut files: Vec<PathBuf> = parsed
        .weight_map
        .into_values()
        .filter(|f| seen.insert(f.clone()))
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    Ok(files)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    // The path to the field at fault, as KServe's webhook and OpenAI errors name it.
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text)).map_err(|e| {
        Error::Config(format!(
            "{}: field `{}`: {}",
            path.display(),
            e.path(),
            e.inner()
        ))
    })
}

/// The transformers name of a tensor known by its GGUF name
/// (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`).
/// Names with no counterpart come back unchanged.
pub fn tensor_name(gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        _ => {}
    }
    let Some((layer, rest)) = gguf.strip_prefix("blk.").and_then(|s| s.split_once('.')) else {
        return gguf.into();
    };
    let (role, kind) = rest.rsplit_once('.').unwrap_or((rest, ""));
    let module = match role {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return gguf.into(),
    };
    format!("model.layers.{layer}.{module}.{kind}")
}

/// The fields of a Llama, Mistral or Qwen2 `config.json` that change the
/// arithmetic; defaults are transformers' own.
#[derive(Debug, Deserialize)]
struct ConfigJson {
    model_type: String,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f32>,
    rope_theta: Option<f32>,
    max_position_embeddings: Option<usize>,
    vocab_size: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    rope_scaling: Value,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    hidden_act: Option<String>,
    #[serde(default)]
    mlp_bias: bool,
}

/// A Llama-family checkpoint's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LlamaCheckpoint {
    /// The model's shape and RoPE.
    pub config: LlamaConfig,
    /// Per-frequency RoPE divisors (Llama 3.1's `rope_scaling`).
    pub freq_factors: Option<Vec<f32>>,
    /// The LM head is the embedding matrix.
    pub tie_word_embeddings: bool,
}

/// The `model_type`s [`read_llama_config`] accepts.
pub const LLAMA_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2"];

/// Reads `dir/config.json` of a Llama, Mistral or Qwen2 checkpoint,
/// refusing by name what the model would compute differently.
pub(crate) fn read_llama_config(dir: &Path) -> Result<LlamaCheckpoint> {
    let path = dir.join("config.json");
    let c: ConfigJson = read_json(&path)?;
    // Absent and null differ for Mistral's window (absent means 4096).
    let raw: Value = read_json(&path)?;
    let bad = |msg: String| Err(Error::Config(format!("{}: {msg}", path.display())));
    // transformers' defaults for fields a config leaves out.
    let (architecture, default_context, default_kv_heads, default_window) =
        match c.model_type.as_str() {
            "llama" => (Architecture::Llama, 2048, None, None),
            "mistral" => (Architecture::Llama, 4096 * 32, Some(8), Some(4096)),
            "qwen2" => (Architecture::Qwen2, 32768, Some(32), None),
            other => {
                return bad(format!(
                    "model_type {other:?} is not a supported Llama-family model ({})",
                    LLAMA_MODEL_TYPES.join(", ")
                ));
            }
        };
    if let Some(act) = c.hidden_act.as_deref().filter(|a| *a != "silu") {
        return bad(format!("hidden_act {act:?} is not supported (silu)"));
    }
    if c.mlp_bias {
        return bad("mlp_bias = true is not supported".into());
    }
    let n_head = c.num_attention_heads;
    let n_kv_head = c.num_key_value_heads.or(default_kv_heads).unwrap_or(n_head);
    if n_head == 0
        || n_kv_head == 0
        || !c.hidden_size.is_multiple_of(n_head)
        || !n_head.is_multiple_of(n_kv_head)
    {
        return bad(format!(
            "num_attention_heads {n_head} / num_key_value_heads {n_kv_head} do not fit hidden_size {}",
            c.hidden_size
        ));
    }
    let head_dim = c.hidden_size / n_head;
    if let Some(hd) = c.head_dim.filter(|&hd| hd != head_dim) {
        return bad(format!(
            "head_dim {hd} differs from hidden_size / num_attention_heads = {head_dim} (not supported)"
        ));
    }
    if !head_dim.is_multiple_of(2) {
        return bad(format!("odd head size {head_dim}"));
    }
    let mut context_length = c.max_position_embeddings.unwrap_or(default_context);
    if context_length > MAX_CONTEXT {
        return bad(format!(
            "max_position_embeddings {context_length} exceeds the {MAX_CONTEXT} positions Tidal supports"
        ));
    }
    // Without masking beyond the window, a sliding-window model is exact
    // only while a sequence fits in the window, so that bounds the context.
    let windowed = match architecture {
        Architecture::Qwen2 => c.use_sliding_window == Some(true),
        Architecture::Llama => true,
    };
    let window = match raw.get("sliding_window") {
        None => default_window,
        Some(_) => c.sliding_window,
    };
    if let Some(window) = window.filter(|_| windowed) {
        context_length = context_length.min(window);
    }
    let rope_theta = c.rope_theta.unwrap_or(10_000.0);
    let (rope_linear_scale, freq_factors) =
        match rope_scaling(&c.rope_scaling, rope_theta, head_dim) {
            Ok(scaling) => scaling,
            Err(msg) => return bad(msg),
        };
    Ok(LlamaCheckpoint {
        config: LlamaConfig {
            architecture,
            rope_style: RopeStyle::Halves,
            n_layer: c.num_hidden_layers,
            n_embd: c.hidden_size,
            n_head,
            n_kv_head,
            head_dim,
            n_ff: c.intermediate_size,
            rms_eps: c.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_linear_scale,
            context_length,
            vocab_size: c.vocab_size,
        },
        freq_factors,
        tie_word_embeddings: c.tie_word_embeddings,
    })
}

/// `rope_scaling` as a linear position divisor and per-frequency divisors.
fn rope_scaling(
    v: &Value,
    theta: f32,
    head_dim: usize,
) -> std::result::Result<(f32, Option<Vec<f32>>), String> {
    if v.is_null() {
        return Ok((1.0, None));
    }
    let kind = v["rope_type"].as_str().or(v["type"].as_str()).unwrap_or("");
    let num = |key: &str| {
        v[key]
            .as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| format!("rope_scaling.{key} is missing or not a number"))
    };
    match kind {
        "default" => Ok((1.0, None)),
        "linear" => Ok((num("factor")?, None)),
        "llama3" => {
            let factor = num("factor")?;
            let low = num("low_freq_factor")?;
            let high = num("high_freq_factor")?;
            let old_context = num("original_max_position_embeddings")?;
            if high <= low {
                return Err(format!(
                    "rope_scaling.high_freq_factor {high} must exceed low_freq_factor {low}"
                ));
            }
            Ok((
                1.0,
                Some(llama3_freq_factors(
                    theta,
                    head_dim,
                    factor,
                    (low, high),
                    old_context,
                )),
            ))
        }
        other => Err(format!(
            "rope_scaling type {other:?} is not supported (default, linear, llama3)"
        )),
    }
}

/// Llama 3.1's RoPE scaling as divisors of each inverse frequency: long
/// wavelengths are divided by `factor`, short ones kept, and the band
/// between blended smoothly (transformers' `_compute_llama3_parameters`).
fn llama3_freq_factors(
    theta: f32,
    head_dim: usize,
    factor: f32,
    (low_freq_factor, high_freq_factor): (f32, f32),
    old_context: f32,
) -> Vec<f32> {
    let low_freq_wavelen = old_context / low_freq_factor;
    let high_freq_wavelen = old_context / high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let inv_freq = 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / inv_freq;
            if wavelen < high_freq_wavelen {
                1.0
            } else if wavelen > low_freq_wavelen {
                factor
            } else {
                let smooth = (old_context / wavelen - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_translate_to_transformers_names() {
        for (gguf, hf) in [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output.weight", "lm_head.weight"),
            ("output_norm.weight", "model.norm.weight"),
            (
                "blk.0.attn_q.weight",
                "model.layers.0.self_attn.q_proj.weight",
            ),
            (
                "blk.12.attn_k.bias",
                "model.layers.12.self_attn.k_proj.bias",
            ),
            (
                "blk.3.attn_output.weight",
                "model.layers.3.self_attn.o_proj.weight",
            ),
            (
                "blk.3.ffn_gate.weight",
                "model.layers.3.mlp.gate_proj.weight",
            ),
            (
                "blk.3.ffn_down.weight",
                "model.layers.3.mlp.down_proj.weight",
            ),
            (
                "blk.3.attn_norm.weight",
                "model.layers.3.input_layernorm.weight",
            ),
            (
                "blk.3.ffn_norm.weight",
                "model.layers.3.post_attention_layernorm.weight",
            ),
            ("rope_freqs.weight", "rope_freqs.weight"),
        ] {
            assert_eq!(tensor_name(gguf), hf, "{gguf}");
        }
    }

    fn write_config(config: Value) -> (PathBuf, Result<LlamaCheckpoint>) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tidal-hfcfg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let read = read_llama_config(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        (dir, read)
    }

    fn smollm2_config() -> Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "rms_norm_eps": 1e-5,
            "rope_theta": 100000.0,
            "max_position_embeddings": 8192,
            "vocab_size": 49152,
            "tie_word_embeddings": true,
            "rope_scaling": null,
            "hidden_act": "silu"
        })
    }

    #[test]
    fn a_llama_config_maps_field_by_field() {
        let (_, read) = write_config(smollm2_config());
        let ck = read.unwrap();
        let c = &ck.config;
        assert_eq!(c.architecture, Architecture::Llama);
        assert_eq!(c.rope_style, RopeStyle::Halves);
        assert_eq!((c.n_layer, c.n_embd, c.n_ff), (30, 576, 1536));
        assert_eq!((c.n_head, c.n_kv_head, c.head_dim), (9, 3, 64));
        assert_eq!((c.rms_eps, c.rope_theta), (1e-5, 100000.0));
        assert_eq!((c.context_length, c.vocab_size), (8192, 49152));
        assert!(ck.tie_word_embeddings);
        assert_eq!(ck.freq_factors, None);
    }

    #[test]
    fn unsupported_configs_are_refused_naming_the_field() {
        let cases = [
            (
                "model_type",
                serde_json::json!("gemma"),
                "model_type \"gemma\"",
            ),
            (
                "hidden_act",
                serde_json::json!("gelu"),
                "hidden_act \"gelu\"",
            ),
            ("mlp_bias", serde_json::json!(true), "mlp_bias"),
            ("head_dim", serde_json::json!(128), "head_dim 128"),
            (
                "num_key_value_heads",
                serde_json::json!(2),
                "num_key_value_heads 2",
            ),
            (
                "rope_scaling",
                serde_json::json!({"rope_type": "yarn", "factor": 4.0}),
                "rope_scaling type \"yarn\"",
            ),
            (
                "rope_scaling",
                serde_json::json!({"rope_type": "llama3", "factor": 8.0}),
                "rope_scaling.low_freq_factor",
            ),
            ("hidden_size", serde_json::json!("wide"), "hidden_size"),
            (
                "max_position_embeddings",
                serde_json::json!(1u64 << 40),
                "max_position_embeddings 1099511627776",
            ),
        ];
        for (field, value, expected) in cases {
            let mut config = smollm2_config();
            config[field] = value;
            let (dir, read) = write_config(config);
            let err = read.unwrap_err().to_string();
            assert!(err.contains(expected), "{field}: {err}");
            assert!(err.contains(&dir.display().to_string()), "{field}: {err}");
        }
    }

    #[test]
    fn sliding_windows_bound_the_context() {
        let mut mistral = smollm2_config();
        mistral["model_type"] = "mistral".into();
        mistral["sliding_window"] = 2048.into();
        assert_eq!(
            write_config(mistral.clone())
                .1
                .unwrap()
                .config
                .context_length,
            2048
        );
        // Absent means MistralConfig's default window of 4096; null means none.
        mistral.as_object_mut().unwrap().remove("sliding_window");
        assert_eq!(
            write_config(mistral.clone())
                .1
                .unwrap()
                .config
                .context_length,
            4096
        );
        mistral["sliding_window"] = Value::Null;
        assert_eq!(write_config(mistral).1.unwrap().config.context_length, 8192);
        // Qwen2 declares a window it does not use unless asked to.
        let mut qwen = smollm2_config();
        qwen["model_type"] = "qwen2".into();
        qwen["sliding_window"] = 4096.into();
        let ck = write_config(qwen.clone()).1.unwrap();
        assert_eq!(ck.config.architecture, Architecture::Qwen2);
        assert_eq!(ck.config.context_length, 8192);
        qwen["use_sliding_window"] = true.into();
        assert_eq!(write_config(qwen).1.unwrap().config.context_length, 4096);
    }

    #[test]
    fn llama3_rope_scaling_matches_transformers() {
        // Llama 3.1 8B: theta 500000, head_dim 128, factor 8, low 1, high 4,
        // original context 8192. transformers gives inv_freq[0] unchanged,
        // inv_freq[63] divided by 8 and a blend in between.
        let mut config = smollm2_config();
        config["rope_theta"] = 500000.0.into();
        config["hidden_size"] = 4096.into();
        config["num_attention_heads"] = 32.into();
        config["num_key_value_heads"] = 8.into();
        config["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192
        });
        let ff = write_config(config).1.unwrap().freq_factors.unwrap();
        assert_eq!(ff.len(), 64);
        // Values from transformers' formula for Llama 3.1 8B: short
        // wavelengths kept, long ones divided by 8, the band between blended.
        for (i, want) in [
            (0, 1.0),
            (28, 1.0),
            (29, 1.207_484),
            (32, 2.694_53),
            (34, 5.257_327),
            (35, 8.0),
            (63, 8.0),
        ] {
            assert!((ff[i] - want).abs() < 1e-4, "ff[{i}] = {} != {want}", ff[i]);
        }
    }
}
