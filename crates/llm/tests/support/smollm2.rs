//! Test support for SmolLM2-135M-Instruct, the real model a PyPI package
//! ships: where its GGUF file is, and [`export_transformers`], which writes a
//! Llama GGUF file out as the transformers checkpoint folder it was converted from (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json`), so the checkpoint loader can
//! be tested on real weights without downloading another model.
//!
//! Matrices are dequantized, renamed (`blk.0.attn_q.weight` →
//! `model.layers.0.self_attn.q_proj.weight`) and, for Q and K, un-permuted:
//! llama.cpp's converter reorders each head's rows from transformers'
//! `[2, head_dim / 2]` (rotate-half pairs) to `[head_dim / 2, 2]` (adjacent
//! pairs); this undoes it.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use tidal_llm::{GgufInfo, Llama, Tokenizer, WeightPrep};

/// The SmolLM2 GGUF file: `TIDAL_SMOLLM2_GGUF`, or where `scripts/fetch-models` puts it.
pub fn gguf_path() -> PathBuf {
    let path = std::env::var_os("TIDAL_SMOLLM2_GGUF").map_or_else(
        || PathBuf::from("/var/tmp/tidal-models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/fetch-models` (or set TIDAL_SMOLLM2_GGUF)",
        path.display()
    );
    path
}

/// Writes `gguf` as a transformers checkpoint into `dir` with weights of `dtype`.
pub fn export_transformers(gguf: &Path, dir: &Path, dtype: DType) {
    std::fs::create_dir_all(dir).unwrap();
    let config = Llama::load_with(gguf, WeightPrep::AsStored)
        .unwrap()
        .config()
        .clone();
    let info = GgufInfo::from_file(gguf).unwrap();
    let mut reader = BufReader::new(std::fs::File::open(gguf).unwrap());
    let content = Content::read(&mut reader).unwrap();
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let w = content
            .tensor(&mut reader, name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let heads = match name.rsplit('.').nth(1) {
            Some("attn_q") => Some(config.n_head),
            Some("attn_k") => Some(config.n_kv_head),
            _ => None,
        };
        let w = match heads {
            Some(n) => {
                let (rows, cols) = w.dims2().unwrap();
                w.reshape((n, config.head_dim / 2, 2, cols))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .reshape((rows, cols))
                    .unwrap()
            }
            None => w,
        };
        let w: Tensor = w.to_dtype(dtype).unwrap().contiguous().unwrap();
        tensors.insert(tidal_llm::transformers::tensor_name(name), w);
    }
    let tied = !tensors.contains_key("lm_head.weight");
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();

    let tokenizer = Tokenizer::from_gguf(gguf).unwrap();
    tokenizer
        .inner()
        .save(dir.join("tokenizer.json"), false)
        .unwrap();
    let token = |id: Option<u32>| {
        id.and_then(|id| tokenizer.inner().id_to_token(id))
            .unwrap_or_default()
    };
    let tokenizer_config = serde_json::json!({
        "bos_token": token(info.bos_token_id),
        "eos_token": token(info.eos_token_id),
        "chat_template": info.chat_template,
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
    let config_json = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.n_embd,
        "intermediate_size": config.n_ff,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_kv_head,
        "rms_norm_eps": config.rms_eps,
        "rope_theta": config.rope_theta,
        "max_position_embeddings": config.context_length,
        "vocab_size": config.vocab_size,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "eos_token_id": info.eos_token_id,
        "torch_dtype": format!("{dtype:?}").to_lowercase(),
    });
    std::fs::write(dir.join("config.json"), config_json.to_string()).unwrap();
}
