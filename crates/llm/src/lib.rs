//! LLM inference for Tidal: OPT (`facebook/opt-*`) on [candle], matching
//! Hugging Face transformers numerically, and Llama-family models
//! ([`llama`]: Llama, SmolLM, Mistral, Qwen2) that batch sequences at
//! different positions, from a single GGUF file (tokenizer and chat template
//! from its metadata via [`gguf`]) or a transformers checkpoint folder
//! ([`transformers`]).
//!
//! # Why a hand-written OPT
//!
//! `candle-transformers` ships no OPT module, and the architecture is small:
//! embeddings, N decoder layers, a tied LM head. Writing it directly on
//! `candle-nn` ([`opt`]) keeps every detail that matters for bit-for-bit-ish
//! agreement with `transformers.OPTForCausalLM` visible in one file:
//! pre- vs post-LayerNorm layers (`do_layer_norm_before`), `project_in` /
//! `project_out` when `word_embed_proj_dim != hidden_size` (opt-350m), the
//! optional final LayerNorm (`_remove_final_layer_norm`), `enable_bias`, the
//! activation, query scaling by `head_dim^-0.5` after the bias, and the
//! tied LM head. Tests compare against logits computed by transformers to
//! within 1e-4.
//!
//! # Positions and padding
//!
//! OPT's positional embeddings are learned and offset by two rows. Positions
//! are not column indices: like transformers, they are computed from the
//! attention mask as `cumsum(mask) * mask - 1 + 2`. A left-padded row's first
//! real token therefore gets position 2 regardless of how much padding
//! precedes it, and pad tokens read row 1. Attention combines a causal mask
//! with the padding mask; masked scores are replaced by `f32::MIN` (not
//! `-inf`) so query rows that see nothing (pad positions) stay finite.
//!
//! # Cache and the intended engine loop
//!
//! [`Opt::forward`] takes only the *new* tokens and their mask, plus a
//! [`Cache`] that holds the keys/values *and the mask* of everything before,
//! so positions and padding stay correct across calls:
//!
//! 1. prefill: `forward(prompt_ids, prompt_mask, &mut cache)` with a fresh cache;
//! 2. decode: `forward(next_ids [b, 1], ones [b, 1], &mut cache)` per step.
//!
//! A continuous-batching engine keeps one cache per request, prefills new
//! requests (alone or as a left-padded batch, then [`Cache::unstack`]), and for
//! each decode step [`Cache::stack`]s the running requests' caches, runs one
//! forward and unstacks again; requests can join or leave between steps. A
//! [`Sampler`] per request picks tokens. This costs a copy of the caches per
//! step; a paged cache can replace it later behind the same contract.
//!
//! Activations run in float32 (quantized to 8 bits inside the integer
//! matrix kernels); weights are read into memory rather than mapped (the
//! workspace denies `unsafe`, which candle's mmap loader requires; its one
//! exception is entering the AVX512 kernels in `avx512.rs`).
//!
//! [candle]: https://github.com/huggingface/candle

mod avx512;
pub mod chat;
pub mod engine;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod llama;
pub mod lm;
pub mod opt;
mod packed;
pub mod tokenizer;
pub mod transformers;

pub use chat::{ChatMessage, ChatTemplate};
pub use engine::{
    Engine, EngineConfig, EngineObserver, EngineStats, Event, Finished, GenerateRequest,
    TokenStream,
};
pub use error::{Error, Result};
pub use generate::{FinishReason, Generation, Sampler, SamplingParams, generate};
pub use gguf::GgufInfo;
pub use llama::{Architecture, Llama, LlamaCache, LlamaConfig, RopeStyle, WeightPrep};
pub use lm::{CausalLm, SeqStep};
pub use opt::{Cache, Opt, OptConfig};
pub use tokenizer::Tokenizer;

/// Re-exported so callers can build tensors and pick devices without
/// depending on candle directly.
pub use candle_core::{DType, Device, Tensor};
