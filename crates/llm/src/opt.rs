//! The OPT decoder (`OPTForCausalLM`) written directly on `candle-nn`.
//!
//! The module mirrors `transformers.models.opt.modeling_opt` layer by layer so
//! that logits agree with PyTorch to float32 rounding:
//!
//! * token embeddings (`word_embed_proj_dim` wide), optionally `project_in` to
//!   `hidden_size`, plus learned positional embeddings whose table has
//!   `max_position_embeddings + 2` rows (OPT's historical offset of 2);
//! * positions come from the attention mask, `cumsum(mask) * mask - 1 + 2`,
//!   so left-padded rows start at position 2 on their first real token and
//!   pad tokens all read row 1;
//! * decoder layers with either pre-LayerNorm (`do_layer_norm_before`, like
//!   opt-125m) or post-LayerNorm (like opt-350m), biases controlled by
//!   `enable_bias`, and an `fc1 -> activation -> fc2` MLP;
//! * a final LayerNorm only for pre-LN models that do not set
//!   `_remove_final_layer_norm`, `project_out` when the embedding width differs
//!   from `hidden_size`, and an LM head tied to `embed_tokens`.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use crate::error::{Error, Result};

/// OPT's positional-embedding table is offset by two rows (fairseq legacy).
const POSITION_OFFSET: usize = 2;
/// `torch.nn.LayerNorm`'s default epsilon, which OPT uses everywhere.
const LAYER_NORM_EPS: f64 = 1e-5;

/// The subset of a Hugging Face `config.json` (`model_type: "opt"`) that
/// inference needs. Missing fields take `transformers.OPTConfig`'s defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct OptConfig {
    /// Number of token ids.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Width of the MLP's hidden layer.
    pub ffn_dim: usize,
    /// Number of attention heads (must divide `hidden_size`).
    pub num_attention_heads: usize,
    /// Longest sequence (in real, non-pad tokens) the positional table covers.
    pub max_position_embeddings: usize,
    /// Pre-LayerNorm (`true`, opt-125m and most sizes) or post-LayerNorm (`false`, opt-350m).
    pub do_layer_norm_before: bool,
    /// Drops the decoder's final LayerNorm even in pre-LN models.
    #[serde(rename = "_remove_final_layer_norm")]
    pub remove_final_layer_norm: bool,
    /// Width of token embeddings; `None` means `hidden_size`.
    pub word_embed_proj_dim: Option<usize>,
    /// MLP activation, e.g. `"relu"`.
    pub activation_function: String,
    /// Whether attention and MLP projections have biases.
    pub enable_bias: bool,
    /// Whether LayerNorms have learnable weight and bias.
    pub layer_norm_elementwise_affine: bool,
    /// Whether the LM head shares the token-embedding matrix.
    pub tie_word_embeddings: bool,
    /// Padding token id.
    pub pad_token_id: Option<u32>,
    /// Beginning-of-sequence token id (OPT prepends `</s>`, id 2).
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id.
    pub eos_token_id: Option<u32>,
}

impl Default for OptConfig {
    fn default() -> Self {
        // transformers.OPTConfig defaults (opt-125m sizes).
        Self {
            vocab_size: 50272,
            hidden_size: 768,
            num_hidden_layers: 12,
            ffn_dim: 3072,
            num_attention_heads: 12,
            max_position_embeddings: 2048,
            do_layer_norm_before: true,
            remove_final_layer_norm: false,
            word_embed_proj_dim: None,
            activation_function: "relu".to_owned(),
            enable_bias: true,
            layer_norm_elementwise_affine: true,
            tie_word_embeddings: true,
            pad_token_id: Some(1),
            bos_token_id: Some(2),
            eos_token_id: Some(2),
        }
    }
}

impl OptConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_owned(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The token-embedding width (`word_embed_proj_dim`, defaulting to `hidden_size`).
    pub fn embed_dim(&self) -> usize {
        self.word_embed_proj_dim.unwrap_or(self.hidden_size)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Whether the decoder applies a LayerNorm after the last layer.
    pub fn has_final_layer_norm(&self) -> bool {
        self.do_layer_norm_before && !self.remove_final_layer_norm
    }

    /// Checks the config for values the model cannot be built from.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("ffn_dim", self.ffn_dim),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
            ("word_embed_proj_dim", self.embed_dim()),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be positive")));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::Config(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        Activation::parse(&self.activation_function)?;
        Ok(())
    }
}

/// MLP activations OPT checkpoints use (names as in `transformers.activations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    Relu,
    /// Exact, erf-based GELU (`"gelu"`).
    Gelu,
    /// Tanh-approximated GELU (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    Silu,
}

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "relu" => Ok(Self::Relu),
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "silu" | "swish" => Ok(Self::Silu),
            other => Err(Error::Config(format!(
                "unsupported activation_function {other:?}"
            ))),
        }
    }

    fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Relu => xs.relu(),
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Silu => xs.silu(),
        }
    }
}

/// Key/value cache for a batch of sequences, plus the attention mask of
/// everything already cached.
///
/// A cache starts empty ([`Opt::new_cache`]), is filled by a prefill
/// [`Opt::forward`] over the prompt, and grows by one column per decode step.
/// Every row of the batch always has the same cached length; rows that are
/// shorter are left-padded and the padding is recorded in the mask, which is
/// why positions are derived from the mask rather than from column indices.
///
/// For continuous batching an engine keeps one single-sequence cache per
/// request and, at every step, [`Cache::stack`]s the caches of the requests it
/// wants to advance (left-padding the shorter ones), runs one decode forward,
/// and [`Cache::unstack`]s the result back into per-request caches (which
/// drops the padding columns again). Stacking copies the caches, so this is a
/// correct but not a zero-copy scheme; a paged cache can later replace it
/// behind the same forward contract.
#[derive(Debug, Clone)]
pub struct Cache {
    /// Per layer: keys and values, each `[batch, heads, cached_len, head_dim]`.
    kv: Vec<Option<(Tensor, Tensor)>>,
    /// Per batch row: 1 for a real token, 0 for padding; each `cached_len` long.
    mask: Vec<Vec<u8>>,
    /// Number of cached columns.
    len: usize,
}

impl Cache {
    /// An empty cache for a model with `num_layers` decoder layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            kv: vec![None; num_layers],
            mask: Vec::new(),
            len: 0,
        }
    }

    /// Number of cached columns (including padding columns).
    pub fn seq_len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of sequences in the cache (0 while empty).
    pub fn batch_size(&self) -> usize {
        self.mask.len()
    }

    /// Number of decoder layers the cache was created for.
    pub fn num_layers(&self) -> usize {
        self.kv.len()
    }

    /// The cached attention mask, one row per sequence.
    pub fn mask(&self) -> &[Vec<u8>] {
        &self.mask
    }

    /// Number of real (non-pad) tokens cached for each sequence.
    pub fn real_lens(&self) -> Vec<usize> {
        self.mask
            .iter()
            .map(|row| row.iter().filter(|&&m| m != 0).count())
            .collect()
    }

    /// Concatenates caches along the batch dimension, left-padding the
    /// shorter ones (padding is masked out, so results are unchanged).
    /// All caches must be non-empty and belong to the same model.
    pub fn stack(caches: &[Cache]) -> Result<Cache> {
        let first = caches
            .first()
            .ok_or_else(|| Error::InvalidInput("cannot stack zero caches".to_owned()))?;
        let num_layers = first.num_layers();
        if let Some(bad) = caches
            .iter()
            .find(|c| c.num_layers() != num_layers || c.is_empty())
        {
            return Err(Error::InvalidInput(format!(
                "cannot stack caches: expected non-empty caches with {num_layers} layers, got one with {} layers and length {}",
                bad.num_layers(),
                bad.seq_len()
            )));
        }
        let len = caches.iter().map(Cache::seq_len).max().unwrap_or(0);
        let mut kv = Vec::with_capacity(num_layers);
        for layer in 0..num_layers {
            let mut keys = Vec::with_capacity(caches.len());
            let mut values = Vec::with_capacity(caches.len());
            for cache in caches {
                let (k, v) = cache.kv[layer].as_ref().ok_or_else(|| {
                    Error::InvalidInput(format!("cache is missing layer {layer}"))
                })?;
                keys.push(left_pad(k, len - cache.len)?);
                values.push(left_pad(v, len - cache.len)?);
            }
            kv.push(Some((Tensor::cat(&keys, 0)?, Tensor::cat(&values, 0)?)));
        }
        let mask = caches
            .iter()
            .flat_map(|cache| {
                cache.mask.iter().map(move |row| {
                    let mut padded = vec![0u8; len - cache.len];
                    padded.extend_from_slice(row);
                    padded
                })
            })
            .collect();
        Ok(Cache { kv, mask, len })
    }

    /// Splits a batched cache into one cache per sequence, dropping each
    /// sequence's leading padding columns. The inverse of [`Cache::stack`].
    pub fn unstack(&self) -> Result<Vec<Cache>> {
        let mut out = Vec::with_capacity(self.batch_size());
        for (row, row_mask) in self.mask.iter().enumerate() {
            let skip = row_mask
                .iter()
                .position(|&m| m != 0)
                .unwrap_or(0)
                .min(self.len.saturating_sub(1));
            let len = self.len - skip;
            let kv = self
                .kv
                .iter()
                .map(|entry| {
                    entry
                        .as_ref()
                        .map(|(k, v)| -> Result<(Tensor, Tensor)> {
                            Ok((
                                k.narrow(0, row, 1)?.narrow(2, skip, len)?.contiguous()?,
                                v.narrow(0, row, 1)?.narrow(2, skip, len)?.contiguous()?,
                            ))
                        })
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(Cache {
                kv,
                mask: vec![row_mask[skip..].to_vec()],
                len,
            });
        }
        Ok(out)
    }
}

/// Prepends `pad` zero columns along dim 2 of a `[b, h, t, d]` tensor.
fn left_pad(t: &Tensor, pad: usize) -> candle_core::Result<Tensor> {
    if pad == 0 {
        return Ok(t.clone());
    }
    let (b, h, _, d) = t.dims4()?;
    let zeros = Tensor::zeros((b, h, pad, d), t.dtype(), t.device())?;
    Tensor::cat(&[&zeros, t], 2)
}

fn linear(
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    vb: VarBuilder,
) -> candle_core::Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

fn layer_norm(size: usize, affine: bool, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    if affine {
        Ok(LayerNorm::new(
            vb.get(size, "weight")?,
            vb.get(size, "bias")?,
            LAYER_NORM_EPS,
        ))
    } else {
        Ok(LayerNorm::new(
            Tensor::ones(size, vb.dtype(), vb.device())?,
            Tensor::zeros(size, vb.dtype(), vb.device())?,
            LAYER_NORM_EPS,
        ))
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
    scaling: f64,
}

impl Attention {
    fn load(cfg: &OptConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let head_dim = cfg.head_dim();
        Ok(Self {
            q_proj: linear(h, h, cfg.enable_bias, vb.pp("q_proj"))?,
            k_proj: linear(h, h, cfg.enable_bias, vb.pp("k_proj"))?,
            v_proj: linear(h, h, cfg.enable_bias, vb.pp("v_proj"))?,
            out_proj: linear(h, h, cfg.enable_bias, vb.pp("out_proj"))?,
            num_heads: cfg.num_attention_heads,
            head_dim,
            scaling: (head_dim as f64).powf(-0.5),
        })
    }

    /// `xs`: `[b, s, hidden]`; `bias`: additive-style mask `[b, 1, s, past + s]`
    /// (0 where allowed, f32::MIN where not). Returns the output and the new
    /// full key/value tensors (past concatenated with the new ones).
    fn forward(
        &self,
        xs: &Tensor,
        bias: &Tensor,
        past: Option<&(Tensor, Tensor)>,
    ) -> candle_core::Result<(Tensor, (Tensor, Tensor))> {
        let (b, s, hidden) = xs.dims3()?;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, s, self.num_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        // Like transformers: scale the projected (biased) query, then no further scaling.
        let q = split((self.q_proj.forward(xs)? * self.scaling)?)?;
        let k = split(self.k_proj.forward(xs)?)?;
        let v = split(self.v_proj.forward(xs)?)?;
        let (k, v) = match past {
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
            None => (k, v),
        };
        let scores = q.matmul(&k.t()?.contiguous()?)?;
        // Masked entries are *replaced* by f32::MIN (not -inf) so that rows
        // with no visible key (queries at pad positions) give a finite uniform
        // distribution instead of NaN, which would otherwise leak through
        // 0 * NaN into the real rows of later layers.
        let allowed = bias.broadcast_as(scores.shape())?;
        let min = Tensor::new(f32::MIN, scores.device())?
            .to_dtype(scores.dtype())?
            .broadcast_as(scores.shape())?;
        let scores = allowed.where_cond(&scores, &min)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, hidden))?;
        Ok((self.out_proj.forward(&out)?, (k, v)))
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    final_layer_norm: LayerNorm,
    activation: Activation,
    pre_norm: bool,
}

impl DecoderLayer {
    fn load(cfg: &OptConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let affine = cfg.layer_norm_elementwise_affine;
        Ok(Self {
            self_attn: Attention::load(cfg, vb.pp("self_attn"))?,
            self_attn_layer_norm: layer_norm(h, affine, vb.pp("self_attn_layer_norm"))?,
            fc1: linear(h, cfg.ffn_dim, cfg.enable_bias, vb.pp("fc1"))?,
            fc2: linear(cfg.ffn_dim, h, cfg.enable_bias, vb.pp("fc2"))?,
            final_layer_norm: layer_norm(h, affine, vb.pp("final_layer_norm"))?,
            activation: Activation::parse(&cfg.activation_function)?,
            pre_norm: cfg.do_layer_norm_before,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        bias: &Tensor,
        past: Option<&(Tensor, Tensor)>,
    ) -> candle_core::Result<(Tensor, (Tensor, Tensor))> {
        let residual = xs;
        let h = if self.pre_norm {
            self.self_attn_layer_norm.forward(xs)?
        } else {
            xs.clone()
        };
        let (h, kv) = self.self_attn.forward(&h, bias, past)?;
        let mut xs = (residual + h)?;
        if !self.pre_norm {
            xs = self.self_attn_layer_norm.forward(&xs)?;
        }
        let residual = &xs;
        let h = if self.pre_norm {
            self.final_layer_norm.forward(&xs)?
        } else {
            xs.clone()
        };
        let h = self
            .fc2
            .forward(&self.activation.apply(&self.fc1.forward(&h)?)?)?;
        let mut xs = (residual + h)?;
        if !self.pre_norm {
            xs = self.final_layer_norm.forward(&xs)?;
        }
        Ok((xs, kv))
    }
}

/// An OPT causal language model (`OPTForCausalLM`), float32.
#[derive(Debug, Clone)]
pub struct Opt {
    config: OptConfig,
    embed_tokens: Embedding,
    embed_positions: Tensor,
    project_in: Option<Linear>,
    project_out: Option<Linear>,
    layers: Vec<DecoderLayer>,
    final_layer_norm: Option<LayerNorm>,
    lm_head: Linear,
    device: Device,
    /// `max_position_embeddings`, or less under `--max_model_len`.
    max_context: usize,
}

impl Opt {
    /// Loads a Hugging Face OPT checkpoint directory: `config.json` plus either
    /// `model.safetensors` or a sharded `model.safetensors.index.json`.
    ///
    /// Weights are read into memory rather than memory-mapped because the
    /// workspace keeps `unsafe` to its AVX512 kernels (candle's mmap
    /// constructor is `unsafe`: a file changed under the mapping is UB).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = OptConfig::from_file(&dir.join("config.json"))?;
        let tensors = crate::transformers::read_weights(dir, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(config, vb).map_err(|err| match err {
            Error::Candle(source) => Error::Weights {
                path: dir.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Builds the model from a config and a `VarBuilder` rooted at the
    /// checkpoint's top level. Accepts both `model.decoder.*` names (current
    /// transformers) and bare `decoder.*` names (original facebook/opt-* files).
    pub fn new(config: OptConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let device = vb.device().clone();
        let root = vb.clone();
        let decoder = if vb.contains_tensor("model.decoder.embed_tokens.weight") {
            vb.pp("model").pp("decoder")
        } else {
            vb.pp("decoder")
        };
        let embed_dim = config.embed_dim();
        let h = config.hidden_size;
        let token_weight = decoder.get((config.vocab_size, embed_dim), "embed_tokens.weight")?;
        let embed_tokens = Embedding::new(token_weight.clone(), embed_dim);
        let embed_positions = decoder.get(
            (config.max_position_embeddings + POSITION_OFFSET, h),
            "embed_positions.weight",
        )?;
        let (project_in, project_out) = if embed_dim != h {
            (
                Some(linear(embed_dim, h, false, decoder.pp("project_in"))?),
                Some(linear(h, embed_dim, false, decoder.pp("project_out"))?),
            )
        } else {
            (None, None)
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::load(&config, decoder.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm = if config.has_final_layer_norm() {
            Some(layer_norm(
                h,
                config.layer_norm_elementwise_affine,
                decoder.pp("final_layer_norm"),
            )?)
        } else {
            None
        };
        let lm_weight = if !config.tie_word_embeddings && root.contains_tensor("lm_head.weight") {
            root.get((config.vocab_size, embed_dim), "lm_head.weight")?
        } else {
            token_weight
        };
        Ok(Self {
            lm_head: Linear::new(lm_weight, None),
            max_context: config.max_position_embeddings,
            config,
            embed_tokens,
            embed_positions,
            project_in,
            project_out,
            layers,
            final_layer_norm,
            device,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &OptConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache sized for this model.
    pub fn new_cache(&self) -> Cache {
        Cache::new(self.layers.len())
    }

    /// Runs the decoder over new tokens and returns logits `[batch, seq, vocab]`
    /// for every new position, appending their keys/values to `cache`.
    ///
    /// * `ids`: `[batch, seq]` token ids (u8/u32/i64), `seq >= 1`.
    /// * `mask`: `[batch, seq]` attention mask of the *new* tokens only (1 real,
    ///   0 pad; any integer or float dtype). The mask of cached tokens is kept
    ///   in `cache`. Left padding is the supported layout.
    /// * `cache`: empty for a prefill, or the cache returned by earlier calls
    ///   for the same batch. It is only modified when the call succeeds.
    ///
    /// Prefill is `forward(prompt_ids, prompt_mask, &mut empty_cache)`;
    /// a decode step is `forward([batch, 1] ids, ones, &mut cache)`. Both give
    /// the same logits as a single full-sequence forward.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, cache: &mut Cache) -> Result<Tensor> {
        let (batch, seq) = ids.dims2().map_err(|_| {
            Error::InvalidInput(format!(
                "ids must be [batch, seq], got shape {:?}",
                ids.dims()
            ))
        })?;
        if batch == 0 || seq == 0 {
            return Err(Error::InvalidInput(format!(
                "ids must be non-empty, got shape [{batch}, {seq}]"
            )));
        }
        if mask.dims() != ids.dims() {
            return Err(Error::InvalidInput(format!(
                "mask shape {:?} does not match ids shape {:?}",
                mask.dims(),
                ids.dims()
            )));
        }
        if cache.num_layers() != self.layers.len() {
            return Err(Error::InvalidInput(format!(
                "cache has {} layers, model has {}",
                cache.num_layers(),
                self.layers.len()
            )));
        }
        if !cache.is_empty() && cache.batch_size() != batch {
            return Err(Error::InvalidInput(format!(
                "cache holds {} sequences but ids have batch size {batch}",
                cache.batch_size()
            )));
        }
        let ids = ids.to_dtype(DType::U32)?;
        let host_ids = ids.to_vec2::<u32>()?;
        let vocab = self.config.vocab_size;
        if let Some(&bad) = host_ids.iter().flatten().find(|&&id| id as usize >= vocab) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is out of range for vocab size {vocab}"
            )));
        }
        let new_mask = mask_rows(mask)?;

        let past = cache.len;
        let total = past + seq;
        let mut full_mask = Vec::with_capacity(batch);
        let mut positions = Vec::with_capacity(batch * seq);
        let mut allowed = Vec::with_capacity(batch * seq * total);
        for (row, new_row) in new_mask.iter().enumerate() {
            let mut full: Vec<u8> = cache.mask.get(row).cloned().unwrap_or_default();
            full.extend_from_slice(new_row);
            let mut count = 0usize;
            for (j, &m) in full.iter().enumerate() {
                count += usize::from(m);
                if j >= past {
                    // cumsum(mask) * mask - 1, plus OPT's offset of 2.
                    let pos = if m != 0 {
                        count - 1 + POSITION_OFFSET
                    } else {
                        POSITION_OFFSET - 1
                    };
                    positions.push(pos as u32);
                }
            }
            if count > self.config.max_position_embeddings {
                return Err(Error::InvalidInput(format!(
                    "sequence {row} has {count} tokens, more than max_position_embeddings {}",
                    self.config.max_position_embeddings
                )));
            }
            for q in 0..seq {
                allowed.extend(
                    full.iter()
                        .enumerate()
                        .map(|(j, &m)| u8::from(m != 0 && j <= past + q)),
                );
            }
            full_mask.push(full);
        }
        let positions = Tensor::from_vec(positions, batch * seq, &self.device)?;
        let allowed = Tensor::from_vec(allowed, (batch, 1, seq, total), &self.device)?;

        let mut xs = self.embed_tokens.forward(&ids)?;
        if let Some(project_in) = &self.project_in {
            xs = project_in.forward(&xs)?;
        }
        let pos = self.embed_positions.index_select(&positions, 0)?.reshape((
            batch,
            seq,
            self.config.hidden_size,
        ))?;
        xs = (xs + pos)?;

        let mut new_kv = Vec::with_capacity(self.layers.len());
        for (layer, past_kv) in self.layers.iter().zip(&cache.kv) {
            let (out, kv) = layer.forward(&xs, &allowed, past_kv.as_ref())?;
            xs = out;
            new_kv.push(Some(kv));
        }
        if let Some(norm) = &self.final_layer_norm {
            xs = norm.forward(&xs)?;
        }
        if let Some(project_out) = &self.project_out {
            xs = project_out.forward(&xs)?;
        }
        let logits = self.lm_head.forward(&xs)?;

        cache.kv = new_kv;
        cache.mask = full_mask;
        cache.len = total;
        Ok(logits)
    }

    /// Like [`Opt::forward`] but returns only the last position's logits,
    /// `[batch, vocab]` — what a decode step or a left-padded prefill needs.
    pub fn forward_last(&self, ids: &Tensor, mask: &Tensor, cache: &mut Cache) -> Result<Tensor> {
        let logits = self.forward(ids, mask, cache)?;
        let seq = logits.dim(1)?;
        Ok(logits.narrow(1, seq - 1, 1)?.squeeze(1)?)
    }

    /// Convenience: logits `[batch, vocab]` for the last position of a batch of
    /// left-padded rows given as host vectors, using and filling `cache`.
    pub fn forward_rows(
        &self,
        ids: &[Vec<u32>],
        mask: &[Vec<u32>],
        cache: &mut Cache,
    ) -> Result<Tensor> {
        let ids = rows_to_tensor(ids, &self.device, "ids")?;
        let mask = rows_to_tensor(mask, &self.device, "mask")?;
        self.forward_last(&ids, &mask, cache)
    }
}

/// Builds a `[rows, cols]` u32 tensor from equally long rows.
fn rows_to_tensor(rows: &[Vec<u32>], device: &Device, what: &str) -> Result<Tensor> {
    let cols = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || cols == 0 || rows.iter().any(|r| r.len() != cols) {
        return Err(Error::InvalidInput(format!(
            "{what} must be a non-empty rectangle of rows"
        )));
    }
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), cols), device)?)
}

/// Reads a `[b, s]` mask of any dtype into 0/1 rows, rejecting other values.
fn mask_rows(mask: &Tensor) -> Result<Vec<Vec<u8>>> {
    let rows = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|m| match m {
                    0.0 => Ok(0u8),
                    1.0 => Ok(1u8),
                    other => Err(Error::InvalidInput(format!(
                        "attention mask values must be 0 or 1, got {other}"
                    ))),
                })
                .collect()
        })
        .collect()
}

/// Decode steps (one new token on a non-empty cache) run as one stacked
/// batch; prompts run one by one, since stacking a prefill with decodes would
/// pad every decode row to the prompt's length.
impl crate::lm::CausalLm for Opt {
    type Cache = Cache;

    fn new_cache(&self) -> Cache {
        Opt::new_cache(self)
    }

    fn cached_tokens(&self, cache: &Cache) -> usize {
        cache.seq_len()
    }

    fn forward_batch(&self, steps: &mut [crate::lm::SeqStep<'_, Cache>]) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Option<Vec<f32>>> = vec![None; steps.len()];
        let mut decodes = Vec::new();
        for (i, step) in steps.iter_mut().enumerate() {
            if step.tokens.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "sequence {i} has no new tokens"
                )));
            }
            if step.tokens.len() == 1 && !step.cache.is_empty() {
                decodes.push(i);
                continue;
            }
            let logits = self.forward_rows(
                &[step.tokens.to_vec()],
                &[vec![1; step.tokens.len()]],
                step.cache,
            )?;
            out[i] = Some(logits.squeeze(0)?.to_vec1::<f32>()?);
        }
        if !decodes.is_empty() {
            let caches: Vec<Cache> = decodes.iter().map(|&i| steps[i].cache.clone()).collect();
            let mut stacked = Cache::stack(&caches)?;
            let ids: Vec<Vec<u32>> = decodes.iter().map(|&i| steps[i].tokens.to_vec()).collect();
            let ones = vec![vec![1u32]; decodes.len()];
            let logits = self
                .forward_rows(&ids, &ones, &mut stacked)?
                .to_vec2::<f32>()?;
            for ((&i, cache), row) in decodes.iter().zip(stacked.unstack()?).zip(logits) {
                *steps[i].cache = cache;
                out[i] = Some(row);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn kv_bytes_per_token(&self) -> usize {
        // Keys and values of every layer, float32.
        2 * self.layers.len() * self.config.hidden_size * 4
    }

    fn max_context(&self) -> usize {
        self.max_context
    }

    fn cap_context(&mut self, max: usize) {
        self.max_context = self.max_context.min(max);
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
}
