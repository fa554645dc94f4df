//! Llama-family decoders (Llama, SmolLM, Mistral, Qwen2) that batch ragged
//! steps, from a GGUF file (quantized) or a transformers checkpoint folder
//! (safetensors or `pytorch_model.bin`, computed in f32; see
//! [`crate::transformers`]).
//!
//! # Why not `candle-transformers`' `llama` and `quantized_llama`
//!
//! Those models keep one KV cache inside the model, so every row of a batch
//! must sit at the same position. A continuous-batching engine mixes a fresh
//! prompt with sequences that are hundreds of tokens in, so here the cache
//! belongs to the sequence ([`LlamaCache`]) and [`Llama`] is stateless and
//! shared. Both file formats load into the same model: a checkpoint's
//! tensors are read under their GGUF names, and RoPE follows the file's
//! pair layout ([`RopeStyle`]).
//!
//! # How a step runs
//!
//! [`CausalLm::forward_batch`] concatenates the new tokens of all sequences
//! into one `[total_new_tokens, d]` matrix. Everything that is per token
//! (embedding, norms, the Q/K/V/O and MLP projections) runs once on that
//! matrix: a quantized matmul streams all weights whether it has one row or
//! eight, which is where batching gains throughput. Q/K/V and gate/up
//! weights with the same quantization are fused at load time, so the
//! activations are quantized once and the thread pool is entered once.
//!
//! RoPE and attention run on a host copy of the Q/K/V rows in plain Rust:
//! each sequence attends from its new queries to its cache plus its new
//! keys, causal among the new tokens, with the query heads that share a KV
//! head reading its keys together (no repeated keys), one unit of work per
//! sequence and KV head on candle's thread pool. The LM head runs only on
//! each sequence's last new token.
//!
//! # Why attention is not made of candle ops
//!
//! Activations are quantized to 8 bits before every quantized matmul, so a
//! difference in the last bit of an attention output can flip a rounding
//! and grow into logit differences near 1.0 a few layers later. candle's
//! `matmul` picks kernels by shape, so a prompt's last token came out
//! differently in a one-shot prefill than in token-by-token decoding. Here
//! every score and output is accumulated in the same order whatever the
//! number of new tokens, so a sequence's logits do not depend on how its
//! prompt was chunked or what it was batched with (seeded sampling stays
//! reproducible under any scheduling). It also replaces a dozen small
//! tensor ops per sequence and layer by one pass, which matters when a
//! decode step carries many sequences.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use half::f16;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use crate::avx512::Avx512;
use crate::error::{Error, Result};
use crate::gguf::{self, GgufInfo, meta_opt_f32, meta_opt_usize, meta_str, meta_usize};
use crate::lm::{CausalLm, SeqStep};
use crate::packed::PackedQ8;
use crate::transformers;

/// KV caches grow in multiples of this many positions.
const CACHE_CHUNK: usize = 64;
/// Positions per transposed key block (see [`LlamaCache`]): one AVX512
/// register of scores.
const KEY_BLOCK: usize = 16;

/// The longest context accepted (4M positions); RoPE tables are built for the
/// whole context at load, so an absurd value is refused rather than allocated.
pub const MAX_CONTEXT: usize = 1 << 22;

/// Supported architectures (`general.architecture` in GGUF, `model_type`
/// in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 1/2/3, SmolLM, Mistral-style dense models.
    Llama,
    /// Qwen2: Llama's layout plus Q/K/V biases.
    Qwen2,
}

/// Which dimensions of a head RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i + 1)`: Llama GGUF files, whose converter
    /// permuted the Q/K rows so that llama.cpp rotates this way.
    Interleaved,
    /// Pairs `(i, i + head_dim / 2)`, transformers' `rotate_half`:
    /// transformers checkpoints and Qwen2 GGUF files.
    Halves,
}

/// Hyper-parameters read from the GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// The architecture.
    pub architecture: Architecture,
    /// How the Q/K rows pair up for RoPE.
    pub rope_style: RopeStyle,
    /// Number of decoder blocks.
    pub n_layer: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_kv_head: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// MLP inner size.
    pub n_ff: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// Positions are divided by this before RoPE (linear RoPE scaling; 1 = none).
    pub rope_linear_scale: f32,
    /// Longest sequence accepted.
    pub context_length: usize,
    /// Rows of the logits.
    pub vocab_size: usize,
}

/// One sequence's rotated keys and values, as f16 (bits): llama.cpp's default
/// cache type, half of f32's memory and of the traffic attention reads each
/// step (attention computes in f32). Per layer, keys are stored in
/// blocks of [`KEY_BLOCK`] positions, each block transposed: `[n_kv_head,
/// capacity / KEY_BLOCK, head_dim, KEY_BLOCK]`; values are `[n_kv_head,
/// capacity, head_dim]`. Attention thus reads one contiguous stream per
/// head (see `attend_group`); buffers grow in chunks by at least half
/// (amortized, no per-token concatenation), capacity a multiple of
/// [`KEY_BLOCK`].
#[derive(Debug, Default, Clone)]
pub struct LlamaCache {
    /// Positions filled; anything past it (left by a failed step) is ignored.
    len: usize,
    /// Positions allocated per head.
    capacity: usize,
    /// Per layer keys; empty until the first step.
    k: Vec<Vec<u16>>,
    /// Per layer values.
    v: Vec<Vec<u16>>,
}

impl LlamaCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the buffers hold before they grow again.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// How weight matrices are prepared at load time: the trade between
/// matching the file's arithmetic and using the fastest CPU kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightPrep {
    /// [`WeightPrep::Faithful`], plus Q4_0 matrices become Q8_0 too, and Q8_0
    /// matrices run on the fastest integer kernel the CPU has. With
    /// AVX512-VNNI that is Tidal's own (`packed.rs`): activations quantized
    /// per 32 values as in the file's arithmetic, rows of any multiple of 32,
    /// eight sequences per pass over the weights. With only AVX-VNNI it is
    /// candle's repacked kernel, which needs rows zero-padded to a multiple
    /// of 256 and quantizes activations per 256 values: a little accuracy
    /// (SmolLM2-135M Q4_1: perplexity +1.7% over the file's own arithmetic,
    /// against +0.6% for `Faithful`) for speed.
    #[default]
    Fast,
    /// Re-encode only what candle has no SIMD kernel for: Q4_1/Q5_0/Q5_1
    /// become Q8_0, which holds their values almost exactly (8-bit steps
    /// inside each 4/5-bit step) at 1.7x the memory; activations stay
    /// quantized per 32 values as in the file's arithmetic.
    Faithful,
    /// Keep every matrix as stored: the file's own arithmetic, but Q4_1 and
    /// Q5_x run on candle's scalar code (SmolLM2 Q4_1 decodes 1.6x slower
    /// than `Fast` for one sequence, 3.5x for eight).
    AsStored,
    /// Dequantize every matrix to f32 (activations are not quantized
    /// either): what a transformers checkpoint of the same weights computes.
    /// A reference for tests; several times slower and 4-8x the memory.
    Dequantized,
    /// [`WeightPrep::Fast`], and float matrices (a transformers checkpoint's)
    /// quantized to Q8_0 at load, as vLLM's `--quantization fp8` quantizes an
    /// unquantized checkpoint on the fly: a quarter to a third of f32's
    /// memory traffic per token (rows may be padded for the VNNI kernels),
    /// with 8-bit weights and activations.
    QuantizeQ8,
}

/// What a [`WeightPrep`] means on this CPU.
#[derive(Debug, Clone, Copy)]
struct Prep {
    prep: WeightPrep,
    /// candle's repacked x86 kernels (Q8_0 with 256-multiple rows) apply.
    vnni: bool,
    /// Tidal's AVX512-VNNI kernel applies (Q8_0, any multiple of 32 inputs).
    packed: bool,
}

impl Prep {
    fn new(prep: WeightPrep) -> Self {
        #[cfg(target_arch = "x86_64")]
        let vnni = (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"))
            || (is_x86_feature_detected!("avxvnni") && is_x86_feature_detected!("avx2"));
        #[cfg(not(target_arch = "x86_64"))]
        let vnni = false;
        Self {
            prep,
            vnni,
            packed: Avx512::detect().is_some() && std::env::var_os("TIDAL_NO_PACK").is_none(),
        }
    }

    /// Whether Q8_0 matrices go to Tidal's kernel.
    fn packs(&self) -> bool {
        self.packed && matches!(self.prep, WeightPrep::Fast | WeightPrep::QuantizeQ8)
    }

    /// Re-encodes one `[out, in]` matrix as the [`WeightPrep`] says.
    fn matrix(&self, t: QTensor, device: &Device) -> Result<QTensor> {
        use candle_core::quantized::GgmlDType as G;
        let (n, k) = t.shape().dims2()?;
        let dtype = t.dtype();
        let scalar_only = matches!(dtype, G::Q4_1 | G::Q5_0 | G::Q5_1);
        let (to_q8, pad) = match self.prep {
            WeightPrep::Dequantized if dtype != G::F32 => {
                return Ok(QTensor::quantize(&t.dequantize(device)?, G::F32)?);
            }
            WeightPrep::AsStored | WeightPrep::Dequantized => (false, false),
            WeightPrep::Faithful => (scalar_only, false),
            WeightPrep::Fast | WeightPrep::QuantizeQ8 => {
                let tiles = n % 16 == 0;
                let vnni =
                    (self.vnni || self.packed) && tiles && matches!(dtype, G::Q4_0 | G::Q8_0);
                // Q8_0 blocks hold 32 values of a row.
                let float = matches!(dtype, G::F32 | G::F16 | G::BF16) && k % 32 == 0;
                let quantize = self.prep == WeightPrep::QuantizeQ8 && float;
                // Tidal's kernel needs no padding; candle's needs 256-multiples.
                let pad = self.vnni && !self.packed && tiles;
                (scalar_only || vnni || quantize, pad)
            }
        };
        let k_pad = if pad { k.next_multiple_of(256) } else { k };
        if !to_q8 || (dtype == G::Q8_0 && k_pad == k) {
            return Ok(t);
        }
        let w = t.dequantize(device)?.pad_with_zeros(1, 0, k_pad - k)?;
        Ok(QTensor::quantize(&w, G::Q8_0)?)
    }
}

/// A weight matrix `[out, in]`: candle's, or a Q8_0 matrix repacked for
/// Tidal's AVX512-VNNI kernel (see [`crate::packed`]).
#[derive(Debug, Clone)]
enum Matrix {
    Candle(QMatMul),
    Packed(Arc<PackedQ8>),
}

impl Matrix {
    /// Repacks `t` when `pack` is set and the kernel applies to it.
    fn new(t: QTensor, pack: bool) -> Result<Self> {
        if pack && let Some(p) = PackedQ8::new(&t)? {
            return Ok(Self::Packed(Arc::new(p)));
        }
        Ok(Self::Candle(QMatMul::from_qtensor(t)?))
    }

    /// `x [m, k] -> y [m, out]`, row-major; `k` is the matrix's input size.
    /// `y` is resized, and reused without being cleared when it already has
    /// the size (a layer's outputs have the previous layer's).
    fn forward_into(&self, x: &[f32], m: usize, device: &Device, y: &mut Vec<f32>) -> Result<()> {
        match self {
            Self::Candle(w) => {
                let x = Tensor::from_slice(x, (m, x.len() / m.max(1)), device)?;
                let out = w.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
                y.clear();
                y.extend_from_slice(&out);
            }
            Self::Packed(w) => {
                y.resize(m * w.rows(), 0.0);
                w.matmul_into(x, m, y);
            }
        }
        Ok(())
    }

    /// The first `width` columns of rows `ids`, `[ids, width]` row-major.
    fn embedding(&self, ids: &[u32], width: usize, device: &Device) -> Result<Vec<f32>> {
        match self {
            Self::Candle(w) => {
                let ids = Tensor::from_slice(ids, ids.len(), device)?;
                let mut rows = w.embedding(&ids)?;
                if rows.dim(1)? != width {
                    rows = rows.narrow(1, 0, width)?;
                }
                Ok(rows.flatten_all()?.to_vec1::<f32>()?)
            }
            Self::Packed(w) => {
                let mut row = vec![0f32; w.cols()];
                let mut rows = Vec::with_capacity(ids.len() * width);
                for &id in ids {
                    w.row(id as usize, &mut row);
                    rows.extend_from_slice(&row[..width]);
                }
                Ok(rows)
            }
        }
    }

    /// Bytes held in memory.
    fn size_in_bytes(&self) -> usize {
        match self {
            Self::Candle(QMatMul::QTensor(t)) => t.storage_size_in_bytes(),
            Self::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => {
                t.elem_count() * t.dtype().size_in_bytes()
            }
            Self::Packed(w) => w.size_in_bytes(),
        }
    }
}

/// A (possibly quantized) matrix, several fused along the output dimension,
/// and its bias. Its input may be zero-padded to `k_in` columns (see [`WeightPrep`]).
#[derive(Debug)]
struct Linear {
    w: Matrix,
    b: Option<Vec<f32>>,
    k_in: usize,
}

impl Linear {
    /// `x [m, k] -> [m, out]` for `k <= k_in` (zero-padded up to `k_in`).
    fn forward(&self, x: &[f32], m: usize, device: &Device) -> Result<Vec<f32>> {
        let mut y = Vec::new();
        self.forward_into(x, m, device, &mut y)?;
        Ok(y)
    }

    /// [`Self::forward`] into `y`, reused as [`Matrix::forward_into`] does.
    fn forward_into(&self, x: &[f32], m: usize, device: &Device, y: &mut Vec<f32>) -> Result<()> {
        let k = x.len() / m.max(1);
        match k < self.k_in {
            true => {
                let mut padded = vec![0f32; m * self.k_in];
                for (to, from) in padded.chunks_exact_mut(self.k_in).zip(x.chunks_exact(k)) {
                    to[..k].copy_from_slice(from);
                }
                self.w.forward_into(&padded, m, device, y)?;
            }
            false => self.w.forward_into(x, m, device, y)?,
        }
        if let Some(b) = &self.b {
            for row in y.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
        Ok(())
    }
}

/// Q, K and V projections, fused when their quantization matches.
#[derive(Debug)]
enum Qkv {
    Fused(Linear),
    Split(Linear, Linear, Linear),
}

/// Gate and up projections, fused when their quantization matches.
#[derive(Debug)]
enum GateUp {
    Fused(Linear),
    Split(Linear, Linear),
}

#[derive(Debug)]
struct Block {
    attn_norm: Vec<f32>,
    qkv: Qkv,
    wo: Linear,
    ffn_norm: Vec<f32>,
    gate_up: GateUp,
    down: Linear,
}

/// A Llama-family model, shared by all sequences; see the module docs.
#[derive(Debug)]
pub struct Llama {
    config: LlamaConfig,
    /// The GGUF header, when loaded from one.
    info: Option<GgufInfo>,
    /// Token embeddings; a tied LM head shares this matrix (one copy, whatever its type).
    embed: Matrix,
    /// The LM head is `embed`.
    tied: bool,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    lm_head: Linear,
    /// `[context_length, head_dim / 2]` RoPE tables.
    cos: Vec<f32>,
    sin: Vec<f32>,
    device: Device,
    /// AVX512 attention kernels, when the CPU has them.
    simd: Option<Avx512>,
}

/// Where tensors come from.
enum Source<'a> {
    Gguf {
        content: &'a Content,
        reader: BufReader<File>,
    },
    /// A checkpoint's tensors under their transformers names.
    Transformers(HashMap<String, Tensor>),
}

/// Reads tensors by their GGUF names, naming the file and the tensor (as the
/// file names it) in errors.
struct TensorReader<'a> {
    path: &'a Path,
    source: Source<'a>,
    device: Device,
}

impl TensorReader<'_> {
    /// The name `name` has in the file.
    fn file_name(&self, name: &str) -> String {
        match self.source {
            Source::Gguf { .. } => name.to_owned(),
            Source::Transformers(_) => transformers::tensor_name(name),
        }
    }

    fn has(&self, name: &str) -> bool {
        match &self.source {
            Source::Gguf { content, .. } => content.tensor_infos.contains_key(name),
            Source::Transformers(t) => t.contains_key(&transformers::tensor_name(name)),
        }
    }

    /// Checkpoint tensors (any float dtype) become f32 "quantized" tensors,
    /// which candle multiplies with its dense kernels.
    fn q(&mut self, name: &str) -> Result<QTensor> {
        match &mut self.source {
            Source::Gguf { content, reader } => {
                content
                    .tensor(reader, name, &self.device)
                    .map_err(|source| Error::Weights {
                        path: self.path.to_owned(),
                        source,
                    })
            }
            Source::Transformers(tensors) => {
                let file_name = transformers::tensor_name(name);
                let t = tensors.remove(&file_name).ok_or_else(|| {
                    Error::Config(format!(
                        "tensor {file_name} is missing from {}",
                        self.path.display()
                    ))
                })?;
                Ok(QTensor::quantize(&t.to_dtype(DType::F32)?, GgmlDType::F32)?)
            }
        }
    }

    /// A tensor with a known shape (`[out, in]` for matrices).
    fn q_shaped(&mut self, name: &str, dims: &[usize]) -> Result<QTensor> {
        let t = self.q(name)?;
        if t.shape().dims() != dims {
            return Err(Error::Config(format!(
                "tensor {} has shape {:?}, expected {dims:?}",
                self.file_name(name),
                t.shape().dims()
            )));
        }
        Ok(t)
    }

    fn dense(&mut self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let t = self.q_shaped(name, dims)?;
        Ok(t.dequantize(&self.device)?.to_dtype(DType::F32)?)
    }

    fn opt_bias(&mut self, name: &str, n: usize) -> Result<Option<Tensor>> {
        match self.has(name) {
            true => self.dense(name, &[n]).map(Some),
            false => Ok(None),
        }
    }
}

/// Stacks quantized matrices along their output dimension by concatenating
/// their blocks (rows are whole blocks, so this is exact). `None` if the
/// quantization or input size differ.
fn fuse_rows(parts: &[&QTensor], device: &Device) -> Result<Option<QTensor>> {
    let dtype = parts[0].dtype();
    let k = parts[0].shape().dims2()?.1;
    let mut n = 0;
    for p in parts {
        let (pn, pk) = p.shape().dims2()?;
        if p.dtype() != dtype || pk != k {
            return Ok(None);
        }
        n += pn;
    }
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.storage_size_in_bytes()).sum());
    for p in parts {
        bytes.extend_from_slice(&p.data()?);
    }
    let storage = QStorage::from_data(Cow::Owned(bytes), device, dtype)?;
    Ok(Some(QTensor::new(storage, (n, k))?))
}

fn linear(w: QTensor, b: Option<Tensor>, pack: bool) -> Result<Linear> {
    let k_in = w.shape().dims2()?.1;
    Ok(Linear {
        w: Matrix::new(w, pack)?,
        b: b.map(|b| b.to_vec1::<f32>()).transpose()?,
        k_in,
    })
}

fn cat_bias(
    parts: Vec<Option<Tensor>>,
    sizes: &[usize],
    device: &Device,
) -> Result<Option<Tensor>> {
    if parts.iter().all(Option::is_none) {
        return Ok(None);
    }
    let parts = parts
        .into_iter()
        .zip(sizes)
        .map(|(b, &n)| b.map_or_else(|| Tensor::zeros(n, DType::F32, device), Ok))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Some(Tensor::cat(&parts, 0)?))
}

impl Llama {
    /// Loads a `.gguf` file (architecture `llama` or `qwen2`) with
    /// [`WeightPrep::Fast`].
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, WeightPrep::Fast)
    }

    /// Loads a `.gguf` file, preparing weight matrices as `prep` says.
    pub fn load_with(path: &Path, prep: WeightPrep) -> Result<Self> {
        let (content, reader) = gguf::read_content(path)?;
        let info = GgufInfo::from_content(&content)?;
        let config = config_from_gguf(&content, &info)?;
        let mut r = TensorReader {
            path,
            source: Source::Gguf {
                content: &content,
                reader,
            },
            device: Device::Cpu,
        };
        // Llama 3.1+ stores per-frequency RoPE divisors in `rope_freqs.weight`.
        let freq_factors = match r.has("rope_freqs.weight") {
            true => Some(
                r.dense("rope_freqs.weight", &[config.head_dim / 2])?
                    .to_vec1::<f32>()?,
            ),
            false => None,
        };
        Self::build(config, Some(info), &mut r, Prep::new(prep), freq_factors)
    }

    /// Loads a transformers checkpoint folder of a Llama, Mistral or Qwen2
    /// model (`config.json`; safetensors or `pytorch_model.bin`, any float
    /// dtype), computed in f32 as transformers does on CPU. A tensor the
    /// model would not use is an error, not something to ignore: it means
    /// the checkpoint computes something this model does not.
    pub fn load_transformers(dir: &Path) -> Result<Self> {
        Self::load_transformers_with(dir, WeightPrep::AsStored)
    }

    /// [`Llama::load_transformers`], preparing weight matrices as `prep`
    /// says ([`WeightPrep::QuantizeQ8`] to run on 8-bit weights).
    pub fn load_transformers_with(dir: &Path, prep: WeightPrep) -> Result<Self> {
        let checkpoint = transformers::read_llama_config(dir)?;
        let device = Device::Cpu;
        let mut tensors = transformers::read_weights(dir, &device)?;
        if checkpoint.tie_word_embeddings {
            tensors.remove("lm_head.weight");
        } else if !tensors.contains_key("lm_head.weight") {
            return Err(Error::Config(format!(
                "{}: tie_word_embeddings is false but lm_head.weight is missing",
                dir.display()
            )));
        }
        // Precomputed RoPE frequencies some exporters keep; RoPE is computed from the config.
        tensors.retain(|name, _| !name.ends_with("rotary_emb.inv_freq"));
        let mut r = TensorReader {
            path: dir,
            source: Source::Transformers(tensors),
            device,
        };
        let model = Self::build(
            checkpoint.config,
            None,
            &mut r,
            Prep::new(prep),
            checkpoint.freq_factors,
        )?;
        if let Source::Transformers(unused) = &r.source
            && !unused.is_empty()
        {
            let mut names: Vec<&str> = unused.keys().map(String::as_str).collect();
            names.sort_unstable();
            let more = names.len().saturating_sub(5);
            names.truncate(5);
            return Err(Error::Config(format!(
                "{}: tensors this {:?} model does not use: {}{}",
                dir.display(),
                model.config.architecture,
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )));
        }
        Ok(model)
    }

    fn build(
        config: LlamaConfig,
        info: Option<GgufInfo>,
        r: &mut TensorReader<'_>,
        prep: Prep,
        freq_factors: Option<Vec<f32>>,
    ) -> Result<Self> {
        let device = r.device.clone();
        let c = &config;
        let (d, hd) = (c.n_embd, c.head_dim);
        let (nq, nkv) = (c.n_head * hd, c.n_kv_head * hd);

        // A tied LM head shares the (possibly padded) embedding matrix.
        let embed_matrix = prep.matrix(
            r.q_shaped("token_embd.weight", &[c.vocab_size, d])?,
            &device,
        )?;
        let embed_width = embed_matrix.shape().dims2()?.1;
        let pack = prep.packs();
        let embed = Matrix::new(embed_matrix, pack)?;
        let tied = !r.has("output.weight");
        let lm_head = match tied {
            false => linear(
                prep.matrix(r.q_shaped("output.weight", &[c.vocab_size, d])?, &device)?,
                None,
                pack,
            )?,
            true => Linear {
                w: embed.clone(),
                b: None,
                k_in: embed_width,
            },
        };
        let norm = r.dense("output_norm.weight", &[d])?.to_vec1::<f32>()?;

        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let mut m = |name: &str, dims: &[usize]| -> Result<QTensor> {
                prep.matrix(r.q_shaped(&p(name), dims)?, &device)
            };
            let q = m("attn_q.weight", &[nq, d])?;
            let k = m("attn_k.weight", &[nkv, d])?;
            let v = m("attn_v.weight", &[nkv, d])?;
            let gate = m("ffn_gate.weight", &[c.n_ff, d])?;
            let up = m("ffn_up.weight", &[c.n_ff, d])?;
            let wo = m("attn_output.weight", &[d, nq])?;
            let down = m("ffn_down.weight", &[d, c.n_ff])?;
            let qb = r.opt_bias(&p("attn_q.bias"), nq)?;
            let kb = r.opt_bias(&p("attn_k.bias"), nkv)?;
            let vb = r.opt_bias(&p("attn_v.bias"), nkv)?;
            let qkv = match fuse_rows(&[&q, &k, &v], &device)? {
                Some(w) => Qkv::Fused(linear(
                    w,
                    cat_bias(vec![qb, kb, vb], &[nq, nkv, nkv], &device)?,
                    pack,
                )?),
                None => Qkv::Split(
                    linear(q, qb, pack)?,
                    linear(k, kb, pack)?,
                    linear(v, vb, pack)?,
                ),
            };
            let gate_up = match fuse_rows(&[&gate, &up], &device)? {
                Some(w) => GateUp::Fused(linear(w, None, pack)?),
                None => GateUp::Split(linear(gate, None, pack)?, linear(up, None, pack)?),
            };
            blocks.push(Block {
                attn_norm: r.dense(&p("attn_norm.weight"), &[d])?.to_vec1::<f32>()?,
                qkv,
                wo: linear(wo, r.opt_bias(&p("attn_output.bias"), d)?, pack)?,
                ffn_norm: r.dense(&p("ffn_norm.weight"), &[d])?.to_vec1::<f32>()?,
                gate_up,
                down: linear(down, None, pack)?,
            });
        }

        let (cos, sin) = rope_tables(c, freq_factors.as_deref());
        Ok(Self {
            config,
            info,
            embed,
            tied,
            blocks,
            norm,
            lm_head,
            cos,
            sin,
            device,
            simd: Avx512::detect(),
        })
    }

    /// Bytes of weight matrices (embedding included) as held in memory.
    pub fn weight_bytes(&self) -> usize {
        let linear = |l: &Linear| l.w.size_in_bytes();
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                let qkv = match &b.qkv {
                    Qkv::Fused(w) => linear(w),
                    Qkv::Split(q, k, v) => linear(q) + linear(k) + linear(v),
                };
                let gate_up = match &b.gate_up {
                    GateUp::Fused(w) => linear(w),
                    GateUp::Split(g, u) => linear(g) + linear(u),
                };
                qkv + gate_up + linear(&b.wo) + linear(&b.down)
            })
            .sum();
        let head = if self.tied { 0 } else { linear(&self.lm_head) };
        self.embed.size_in_bytes() + head + blocks
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Facts from the GGUF header (BOS/EOS, chat template, ...), when the
    /// model came from a GGUF file.
    pub fn info(&self) -> Option<&GgufInfo> {
        self.info.as_ref()
    }

    /// The forward pass of a validated step. Writes the new keys and values
    /// past each cache's `len` but leaves `len` to the caller, so a failed
    /// step leaves the caches as they were.
    fn run(&self, steps: &mut [SeqStep<'_, LlamaCache>]) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let total: usize = steps.iter().map(|s| s.tokens.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut last_rows = Vec::with_capacity(steps.len());
        for s in steps.iter_mut() {
            self.reserve(s.cache, s.cache.len + s.tokens.len());
            ids.extend_from_slice(s.tokens);
            last_rows.push((ids.len() - 1) as u32);
        }
        // Activations stay in plain row-major vectors: at decode sizes
        // (a few rows of a few hundred values) a tensor op's allocation and
        // dispatch would cost more than its arithmetic.
        let (d, dev) = (c.n_embd, &self.device);
        let mut x = self.embed.embedding(&ids, d, dev)?;
        let mut h = vec![0f32; x.len()];
        let mut buffers = LayerBuffers::default();
        for (layer, block) in self.blocks.iter().enumerate() {
            rms_norm(&x, &block.attn_norm, c.rms_eps, &mut h);
            block.qkv(&h, total, dev, &mut buffers)?;
            let attn = self.attention(layer, &mut buffers.qkv, block.wo.k_in, steps);
            block.wo.forward_into(&attn, total, dev, &mut buffers.out)?;
            add_to(&mut x, &buffers.out);
            rms_norm(&x, &block.ffn_norm, c.rms_eps, &mut h);
            block.mlp(&h, total, c.n_ff, dev, &mut buffers)?;
            add_to(&mut x, &buffers.out);
        }
        let last: Vec<f32> = match total == steps.len() {
            true => x,
            false => last_rows
                .iter()
                .flat_map(|&r| &x[r as usize * d..][..d])
                .copied()
                .collect(),
        };
        let mut h = vec![0f32; last.len()];
        rms_norm(&last, &self.norm, c.rms_eps, &mut h);
        let logits = self.lm_head.forward(&h, steps.len(), dev)?;
        Ok(logits
            .chunks_exact(c.vocab_size)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Rejects a step before any cache is touched.
    fn validate(&self, steps: &[SeqStep<'_, LlamaCache>]) -> Result<()> {
        let c = &self.config;
        let row = c.n_kv_head * c.head_dim;
        for (i, s) in steps.iter().enumerate() {
            if s.tokens.is_empty() {
                return Err(Error::InvalidInput(format!("sequence {i}: no tokens")));
            }
            if let Some(&bad) = s.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(Error::InvalidInput(format!(
                    "sequence {i}: token id {bad} is out of range for vocabulary size {}",
                    c.vocab_size
                )));
            }
            let end = s.cache.len + s.tokens.len();
            if end > c.context_length {
                return Err(Error::InvalidInput(format!(
                    "sequence {i}: {} cached + {} new tokens exceed the context length {}",
                    s.cache.len,
                    s.tokens.len(),
                    c.context_length
                )));
            }
            let size = row * s.cache.capacity;
            let fits = |bufs: &Vec<Vec<u16>>| {
                s.cache.len <= s.cache.capacity
                    && ((bufs.is_empty() && s.cache.capacity == 0)
                        || (bufs.len() == c.n_layer && bufs.iter().all(|b| b.len() == size)))
            };
            if !fits(&s.cache.k) || !fits(&s.cache.v) {
                return Err(Error::InvalidInput(format!(
                    "sequence {i}: the cache belongs to a different model"
                )));
            }
        }
        Ok(())
    }

    /// Makes room for `needed` positions: at least half again the current
    /// capacity (amortized O(1) copies per token), in whole chunks, never past
    /// the context length.
    fn reserve(&self, cache: &mut LlamaCache, needed: usize) {
        if needed <= cache.capacity {
            return;
        }
        let c = &self.config;
        let (nkv, hd) = (c.n_kv_head, c.head_dim);
        let capacity = (cache.capacity + cache.capacity / 2)
            .max(needed)
            .div_ceil(CACHE_CHUNK)
            .saturating_mul(CACHE_CHUNK)
            .min(c.context_length.next_multiple_of(KEY_BLOCK))
            .max(needed.next_multiple_of(KEY_BLOCK));
        // Both are `n_kv_head` runs of `capacity * head_dim` floats whose
        // first `used * head_dim` are in use; keys by whole blocks.
        let grow = |old: Option<&Vec<u16>>, used: usize| {
            let mut buf = vec![0u16; nkv * capacity * hd];
            if let Some(old) = old {
                let (from, to) = (cache.capacity * hd, capacity * hd);
                for (src, dst) in old.chunks_exact(from).zip(buf.chunks_exact_mut(to)) {
                    dst[..used * hd].copy_from_slice(&src[..used * hd]);
                }
            }
            buf
        };
        let key_positions = cache.len.next_multiple_of(KEY_BLOCK).min(cache.capacity);
        let k = (0..c.n_layer)
            .map(|l| grow(cache.k.get(l), key_positions))
            .collect();
        let v = (0..c.n_layer)
            .map(|l| grow(cache.v.get(l), cache.len))
            .collect();
        cache.k = k;
        cache.v = v;
        cache.capacity = capacity;
    }

    /// RoPE and attention for one layer. `qkv` holds the projections of all
    /// new tokens, `[total, (n_head + 2 * n_kv_head) * head_dim]` row-major;
    /// rows are grouped by sequence in `steps` order. Appends each
    /// sequence's new keys and values to its cache (past its `len`) and
    /// returns the attention outputs `[total, out_width]` (`n_head *
    /// head_dim` values, then zeros up to the O projection's padded input).
    ///
    /// The work is cut into one unit per (sequence, KV head): it rotates
    /// and stores that head's new keys and values, rotates the query heads
    /// that share it, then computes their attention. A unit's data are
    /// disjoint from every other's, so the units run on candle's thread
    /// pool when there is enough work to pay for waking it. Each unit sums
    /// in the same order wherever it runs, so results do not depend on the
    /// threads.
    fn attention(
        &self,
        layer: usize,
        qkv: &mut [f32],
        out_width: usize,
        steps: &mut [SeqStep<'_, LlamaCache>],
    ) -> Vec<f32> {
        let c = &self.config;
        let (nh, nkv, hd) = (c.n_head, c.n_kv_head, c.head_dim);
        let (qw, kw) = (nh * hd, nkv * hd);
        let width = qw + 2 * kw;
        let total = qkv.len() / width;
        let group = nh / nkv * hd;
        let mut out = vec![0f32; total * out_width];
        let mut out_rows = out.chunks_exact_mut(out_width);
        let mut rows = qkv.chunks_exact_mut(width);
        let mut units = Vec::with_capacity(steps.len() * nkv);
        let mut work = 0usize;
        for s in steps.iter_mut() {
            let (len, cap, n) = (s.cache.len, s.cache.capacity, s.tokens.len());
            let keys = s.cache.k[layer].chunks_exact_mut(cap * hd);
            let values = s.cache.v[layer].chunks_exact_mut(cap * hd);
            let mut per_group: Vec<AttentionUnit<'_>> = keys
                .zip(values)
                .map(|(keys, values)| AttentionUnit {
                    queries: Vec::with_capacity(n),
                    new_keys: Vec::with_capacity(n),
                    new_values: Vec::with_capacity(n),
                    outs: Vec::with_capacity(n),
                    keys,
                    values,
                    len,
                })
                .collect();
            for (row, o) in rows.by_ref().zip(out_rows.by_ref()).take(n) {
                let (q, kv) = row.split_at_mut(qw);
                let (k, v) = kv.split_at_mut(kw);
                let heads = q
                    .chunks_exact_mut(group)
                    .zip(k.chunks_exact_mut(hd))
                    .zip(v.chunks_exact(hd))
                    .zip(o.chunks_exact_mut(group));
                for (unit, (((q, k), v), o)) in per_group.iter_mut().zip(heads) {
                    unit.queries.push(q);
                    unit.new_keys.push(k);
                    unit.new_values.push(v);
                    unit.outs.push(o);
                }
            }
            work += n * (len + n) * qw;
            units.extend(per_group.into_iter().map(std::sync::Mutex::new));
        }
        let run = |unit: &std::sync::Mutex<AttentionUnit<'_>>, scores: &mut Vec<f32>| {
            let mut unit = unit.lock().unwrap_or_else(|e| e.into_inner());
            self.attend_unit(&mut unit, scores);
        };
        if work < PARALLEL_ATTENTION_WORK {
            let mut scores = Vec::new();
            units.iter().for_each(|u| run(u, &mut scores));
        } else {
            candle_core::utils::barrier_pool().execute_chunked(units.len(), |range| {
                let mut scores = Vec::new();
                units[range].iter().for_each(|u| run(u, &mut scores));
            });
        }
        drop(units);
        out
    }

    /// One unit of [`Self::attention`]. New token `i` sits at position
    /// `len + i` and sees positions `0..=len + i`; the query heads sharing
    /// the KV head are adjacent, so the keys are read once for all of them.
    fn attend_unit(&self, unit: &mut AttentionUnit<'_>, scores: &mut Vec<f32>) {
        let hd = self.config.head_dim;
        let scale = 1.0 / (hd as f32).sqrt();
        let AttentionUnit {
            queries,
            new_keys,
            new_values,
            outs,
            keys,
            values,
            len,
        } = unit;
        let len = *len;
        for (i, (k, v)) in new_keys.iter_mut().zip(new_values.iter()).enumerate() {
            let pos = len + i;
            self.rotate(k, pos);
            // A key goes down a column of its head's block.
            let block = (pos / KEY_BLOCK) * hd * KEY_BLOCK + pos % KEY_BLOCK;
            let column = keys[block..].iter_mut().step_by(KEY_BLOCK);
            for (slot, &x) in column.zip(k.iter()) {
                *slot = f16::from_f32(x).to_bits();
            }
            for (slot, &x) in values[pos * hd..(pos + 1) * hd].iter_mut().zip(v.iter()) {
                *slot = f16::from_f32(x).to_bits();
            }
        }
        for (i, (q, o)) in queries.iter_mut().zip(outs.iter_mut()).enumerate() {
            let pos = len + i;
            for head in q.chunks_exact_mut(hd) {
                self.rotate(head, pos);
            }
            q.iter_mut().for_each(|x| *x *= scale);
            let at = Visible {
                rows: pos + 1,
                head_dim: hd,
            };
            attend_group(self.simd, q, keys, &values[..at.rows * hd], at, scores, o);
        }
    }

    /// Rotates one head at `pos` in the file's pair layout.
    fn rotate(&self, x: &mut [f32], pos: usize) {
        let half = x.len() / 2;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        match self.config.rope_style {
            RopeStyle::Interleaved => {
                for ((p, &c), &s) in x.chunks_exact_mut(2).zip(cos).zip(sin) {
                    let (a, b) = (p[0], p[1]);
                    p[0] = a * c - b * s;
                    p[1] = a * s + b * c;
                }
            }
            RopeStyle::Halves => {
                let (lo, hi) = x.split_at_mut(half);
                for (((a, b), &c), &s) in lo.iter_mut().zip(hi.iter_mut()).zip(cos).zip(sin) {
                    let (x0, x1) = (*a, *b);
                    *a = x0 * c - x1 * s;
                    *b = x0 * s + x1 * c;
                }
            }
        }
    }
}

/// Multiply-adds (`new tokens x visible positions x query width`) below
/// which one layer's attention runs on the calling thread: waking the pool
/// costs microseconds, a decode step of one short sequence less than that.
const PARALLEL_ATTENTION_WORK: usize = 1 << 18;

/// One sequence's new tokens for one KV head: their projections (rotated in
/// place), where their outputs go, and the head's cache.
struct AttentionUnit<'a> {
    /// Per new token, the query heads of this group.
    queries: Vec<&'a mut [f32]>,
    /// Per new token, this head's key.
    new_keys: Vec<&'a mut [f32]>,
    /// Per new token, this head's value.
    new_values: Vec<&'a [f32]>,
    /// Per new token, this group's slice of the output row.
    outs: Vec<&'a mut [f32]>,
    /// The head's blocked keys, `[capacity / KEY_BLOCK, head_dim, KEY_BLOCK]`.
    keys: &'a mut [u16],
    /// The head's values, `[capacity, head_dim]`.
    values: &'a mut [u16],
    /// Positions cached before this step.
    len: usize,
}

/// Which cached positions one attention call reads.
#[derive(Debug, Clone, Copy)]
struct Visible {
    /// Positions `0..rows` are visible to the query.
    rows: usize,
    head_dim: usize,
}

/// Softmax attention of the (pre-scaled) query heads `q` that share one KV
/// head, over the first `at.rows` positions of that head's blocked keys
/// (`[capacity / KEY_BLOCK, head_dim, KEY_BLOCK]`) and `values` (`[rows,
/// head_dim]`); writes the heads' outputs to `out` (`q.len()` floats).
///
/// A key block's scores are summed in registers as vertical multiply-adds
/// (no horizontal sums) while the keys stream through in order, and each
/// score's summation order is fixed by `head_dim` alone: a query gets
/// bit-identical results however many positions or queries a step has.
fn attend_group(
    simd: Option<Avx512>,
    q: &[f32],
    keys: &[u16],
    values: &[u16],
    at: Visible,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let (rows, hd) = (at.rows, at.head_dim);
    let padded = rows.next_multiple_of(KEY_BLOCK);
    scores.clear();
    scores.resize(q.len() / hd * padded, 0.0);
    let blocks = padded / KEY_BLOCK;
    for (b, block) in keys.chunks_exact(hd * KEY_BLOCK).take(blocks).enumerate() {
        let ahead = match b + 2 < blocks {
            true => &keys[(b + 2) * hd * KEY_BLOCK..(b + 3) * hd * KEY_BLOCK],
            false => &[],
        };
        let mut put = |h: usize, s: [f32; KEY_BLOCK]| {
            scores[h * padded + b * KEY_BLOCK..][..KEY_BLOCK].copy_from_slice(&s);
        };
        let Some(simd) = simd else {
            for (h, qh) in q.chunks_exact(hd).enumerate() {
                put(h, block_scores(qh, block));
            }
            continue;
        };
        // Up to four heads per pass share the widened keys.
        for (g, qg) in q.chunks(4 * hd).enumerate() {
            macro_rules! heads {
                ($($n:literal)*) => {
                    match qg.len() / hd {
                        $($n => {
                            let s = simd.block_scores::<$n>(qg, hd, block, ahead);
                            s.into_iter().enumerate().for_each(|(h, s)| put(4 * g + h, s));
                        })*
                        _ => unreachable!("one to four heads"),
                    }
                };
            }
            heads!(1 2 3 4);
        }
    }
    for head in scores.chunks_exact_mut(padded) {
        let head = &mut head[..rows];
        let max = lanewise(head, f32::NEG_INFINITY, |m, x| if x > m { x } else { m });
        head.iter_mut().for_each(|s| *s = exp_approx(*s - max));
        let inv = 1.0 / lanewise(head, 0.0, |a, x| a + x);
        head.iter_mut().for_each(|s| *s *= inv);
    }
    let heads: Vec<&[f32]> = scores.chunks_exact(padded).map(|s| &s[..rows]).collect();
    if hd % KEY_BLOCK != 0 {
        out.fill(0.0);
        for (j, v) in values.chunks_exact(hd).take(rows).enumerate() {
            for (w, o) in heads.iter().zip(out.chunks_exact_mut(hd)) {
                for (o, &x) in o.iter_mut().zip(v) {
                    *o = w[j].mul_add(widen(x), *o);
                }
            }
        }
        return;
    }
    // The heads' sums for a slice of the dimensions stay in registers
    // while the values stream past: 64 dimensions at a time for up to four
    // heads (a 256-byte value row read whole, once), else 16.
    let mut outs: Vec<&mut [f32]> = out.chunks_exact_mut(hd).collect();
    for (weights, outs) in heads.chunks(8).zip(outs.chunks_mut(8)) {
        macro_rules! weigh {
            ($(($g:literal, $w:literal, $v:literal)),*) => {
                match (weights.len(), hd % 64 == 0 && weights.len() <= 4) {
                    $(($g, wide) if wide == ($w == 64) => {
                        let w: [&[f32]; $g] = std::array::from_fn(|r| weights[r]);
                        for c in (0..hd).step_by($w) {
                            let sums = match simd {
                                Some(simd) => simd
                                    .weighted_values::<$g, $v>(&w, values, hd, c)
                                    .map(|s| *s.as_flattened().first_chunk::<$w>().expect("W")),
                                None => weighted_values::<$g, $w>(&w, values, hd, c),
                            };
                            for (o, sum) in outs.iter_mut().zip(sums) {
                                o[c..c + $w].copy_from_slice(&sum);
                            }
                        }
                    })*
                    _ => unreachable!("heads come in chunks of at most 8"),
                }
            };
        }
        weigh!(
            (1, 64, 4),
            (2, 64, 4),
            (3, 64, 4),
            (4, 64, 4),
            (1, 16, 1),
            (2, 16, 1),
            (3, 16, 1),
            (4, 16, 1),
            (5, 16, 1),
            (6, 16, 1),
            (7, 16, 1),
            (8, 16, 1)
        );
    }
}

/// `sum_j w[r][j] * values[j][c..c + W]` for `G` heads, summed in `j` order.
fn weighted_values<const G: usize, const W: usize>(
    w: &[&[f32]; G],
    values: &[u16],
    hd: usize,
    c: usize,
) -> [[f32; W]; G] {
    let mut acc = [[0f32; W]; G];
    let rows = w[0].len();
    for (j, v) in values.chunks_exact(hd).take(rows).enumerate() {
        let v: [f32; W] = std::array::from_fn(|i| widen(v[c + i]));
        for (acc, w) in acc.iter_mut().zip(w) {
            let w = w[j];
            for (a, &x) in acc.iter_mut().zip(&v) {
                *a = w.mul_add(x, *a);
            }
        }
    }
    acc
}

/// A cached f16 value (bits) as f32, exactly.
fn widen(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// `e^x` within 2 ulp of `f32::exp`, in plain arithmetic so a loop of it
/// vectorizes (`expf` is a library call per value). Inputs are clamped to
/// [-87.3, 88.3], where the result stays a normal float: below, `e^x` is
/// under 1e-38 (nothing next to a softmax maximum's 1, or to silu's 1).
pub(crate) fn exp_approx(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa
    // bits (float-to-int casts saturate and would not vectorize).
    const SHIFT: f32 = 12_582_912.0;
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.3 { 88.3 } else { x };
    let shifted = x.mul_add(LOG2_E, SHIFT);
    let n = shifted - SHIFT;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    // e^r on [-ln2/2, ln2/2]: Cephes' expf polynomial.
    let p = 1.987_569_1e-4f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 0.166_666_66)
        .mul_add(r, 0.5);
    let er = p.mul_add(r * r, r) + 1.0;
    // 2^n through the exponent bits; -126 <= n <= 127 here.
    let n = (shifted.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    f32::from_bits(((n + 127) as u32) << 23) * er
}

/// One query head's scores against one transposed key block (`[head_dim,
/// KEY_BLOCK]`), four partial sums deep so the multiply-adds overlap.
fn block_scores(q: &[f32], block: &[u16]) -> [f32; KEY_BLOCK] {
    let mut acc = [[0f32; KEY_BLOCK]; 4];
    let quads = block.chunks_exact(4 * KEY_BLOCK);
    let rest = quads.remainder();
    for (qd, keys) in q.chunks_exact(4).zip(quads) {
        for (j, acc) in acc.iter_mut().enumerate() {
            let k: [f32; KEY_BLOCK] = std::array::from_fn(|l| widen(keys[j * KEY_BLOCK + l]));
            for (a, &k) in acc.iter_mut().zip(&k) {
                *a = qd[j].mul_add(k, *a);
            }
        }
    }
    let tail = &q[q.len() - rest.len() / KEY_BLOCK..];
    for (&qd, k) in tail.iter().zip(rest.chunks_exact(KEY_BLOCK)) {
        for (a, &k) in acc[0].iter_mut().zip(k) {
            *a = qd.mul_add(widen(k), *a);
        }
    }
    std::array::from_fn(|l| (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]))
}

impl Block {
    /// Q, K and V of each of `m` rows of `x` into `buffers.qkv`, `[m, (n_head + 2 *
    /// n_kv_head) * head_dim]`.
    fn qkv(&self, x: &[f32], m: usize, dev: &Device, buffers: &mut LayerBuffers) -> Result<()> {
        match &self.qkv {
            Qkv::Fused(w) => w.forward_into(x, m, dev, &mut buffers.qkv),
            Qkv::Split(q, k, v) => {
                let parts = [
                    q.forward(x, m, dev)?,
                    k.forward(x, m, dev)?,
                    v.forward(x, m, dev)?,
                ];
                let widths = parts.each_ref().map(|p| p.len() / m.max(1));
                let out = &mut buffers.qkv;
                out.clear();
                for row in 0..m {
                    for (p, &w) in parts.iter().zip(&widths) {
                        out.extend_from_slice(&p[row * w..][..w]);
                    }
                }
                Ok(())
            }
        }
    }

    /// The gated MLP of `x` into `buffers.out`.
    fn mlp(
        &self,
        x: &[f32],
        m: usize,
        n_ff: usize,
        dev: &Device,
        buffers: &mut LayerBuffers,
    ) -> Result<()> {
        let LayerBuffers {
            gate_up,
            gated,
            out,
            ..
        } = buffers;
        gated.resize(m * n_ff, 0.0);
        let gate_times_up = |h: &mut [f32], gate: &[f32], up: &[f32]| {
            for ((h, &g), &u) in h.iter_mut().zip(gate).zip(up) {
                *h = silu(g) * u;
            }
        };
        match &self.gate_up {
            GateUp::Fused(w) => {
                w.forward_into(x, m, dev, gate_up)?;
                for (h, row) in gated
                    .chunks_exact_mut(n_ff)
                    .zip(gate_up.chunks_exact(2 * n_ff))
                {
                    let (gate, up) = row.split_at(n_ff);
                    gate_times_up(h, gate, up);
                }
            }
            GateUp::Split(g, u) => {
                gate_times_up(gated, &g.forward(x, m, dev)?, &u.forward(x, m, dev)?);
            }
        }
        self.down.forward_into(gated, m, dev, out)
    }
}

/// A step's intermediate activations, kept from layer to layer so that
/// their memory is allocated (and zeroed) once per step, not per layer.
#[derive(Default)]
struct LayerBuffers {
    qkv: Vec<f32>,
    gate_up: Vec<f32>,
    gated: Vec<f32>,
    /// The attention block's output projection, then the MLP's.
    out: Vec<f32>,
}

/// `out = x / rms(x) * weight` per row (rows as long as `weight`).
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (x, out) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        // Sixteen partial sums, so the loop vectorizes.
        let mut lanes = [0f32; 16];
        let chunks = x.chunks_exact(16);
        let rest: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        for chunk in chunks {
            for (l, &v) in lanes.iter_mut().zip(chunk) {
                *l = v.mul_add(v, *l);
            }
        }
        let mean_square = (lanes.iter().sum::<f32>() + rest) / d as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// Folds `x` with `f` in sixteen lanes, then the lanes together (so `f`
/// must combine partial results too, as max and sum do): a reduction the
/// compiler vectorizes, where a float fold over the slice is
/// one dependent chain (a max or a sum over a head's scores, per head and
/// layer and sequence, added up to a few percent of a decode step).
pub(crate) fn lanewise(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l = f(*l, v);
        }
    }
    lanes.into_iter().chain(rest.iter().copied()).fold(init, &f)
}

/// `x += y`, elementwise.
fn add_to(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

/// `x * sigmoid(x)`, vectorizable (see [`exp_approx`]).
fn silu(x: f32) -> f32 {
    // Below -88, e^-x is past f32's range and x * sigmoid(x) is 0 to
    // within 1e-36; dividing by the clamped e^88.3 would not be, for huge x.
    let y = x / (1.0 + exp_approx(-x));
    if x < -88.0 { -0.0 } else { y }
}

impl CausalLm for Llama {
    type Cache = LlamaCache;

    fn new_cache(&self) -> LlamaCache {
        LlamaCache::default()
    }

    fn cached_tokens(&self, cache: &LlamaCache) -> usize {
        cache.len
    }

    fn forward_batch(&self, steps: &mut [SeqStep<'_, LlamaCache>]) -> Result<Vec<Vec<f32>>> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        self.validate(steps)?;
        let logits = self.run(steps)?;
        for s in steps.iter_mut() {
            s.cache.len += s.tokens.len();
        }
        Ok(logits)
    }

    fn kv_bytes_per_token(&self) -> usize {
        let c = &self.config;
        c.n_layer * 2 * c.n_kv_head * c.head_dim * DType::F16.size_in_bytes()
    }

    fn max_context(&self) -> usize {
        self.config.context_length
    }

    /// Also drops the RoPE table rows beyond `max` (long-context models
    /// carry tables for up to a million positions).
    fn cap_context(&mut self, max: usize) {
        if max >= self.config.context_length {
            return;
        }
        self.config.context_length = max;
        let rows = max * (self.config.head_dim / 2);
        for table in [&mut self.cos, &mut self.sin] {
            table.truncate(rows);
            table.shrink_to_fit();
        }
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
}

fn config_from_gguf(content: &Content, info: &GgufInfo) -> Result<LlamaConfig> {
    let md = &content.metadata;
    let arch = info.architecture.as_str();
    // llama.cpp's converter permutes Llama's Q/K rows, not Qwen2's.
    let (architecture, rope_style) = match arch {
        "llama" => (Architecture::Llama, RopeStyle::Interleaved),
        "qwen2" => (Architecture::Qwen2, RopeStyle::Halves),
        other => {
            return Err(Error::Config(format!(
                "GGUF architecture `{other}` is not supported (llama, qwen2)"
            )));
        }
    };
    let key = |k: &str| format!("{arch}.{k}");
    let n_embd = meta_usize(md, &key("embedding_length"))?;
    let n_head = meta_usize(md, &key("attention.head_count"))?;
    let n_kv_head = meta_opt_usize(md, &key("attention.head_count_kv"))?.unwrap_or(n_head);
    if n_head == 0 || n_kv_head == 0 || n_embd % n_head != 0 || n_head % n_kv_head != 0 {
        return Err(Error::Config(format!(
            "{n_head} heads / {n_kv_head} KV heads do not fit hidden size {n_embd}"
        )));
    }
    let head_dim = n_embd / n_head;
    for k in [
        "attention.key_length",
        "attention.value_length",
        "rope.dimension_count",
    ] {
        if let Some(v) = meta_opt_usize(md, &key(k))?
            && v != head_dim
        {
            return Err(Error::Config(format!(
                "{arch}.{k} = {v} differs from the head size {head_dim} (not supported)"
            )));
        }
    }
    if head_dim % 2 != 0 {
        return Err(Error::Config(format!("odd head size {head_dim}")));
    }
    let rope_linear_scale = match md.get(&key("rope.scaling.type")) {
        None => 1.0,
        Some(_) => match meta_str(md, &key("rope.scaling.type"))? {
            "none" => 1.0,
            "linear" => meta_opt_f32(md, &key("rope.scaling.factor"))?.unwrap_or(1.0),
            other => {
                return Err(Error::Config(format!(
                    "RoPE scaling `{other}` is not supported (none, linear)"
                )));
            }
        },
    };
    let context_length = info.context_length;
    if context_length > MAX_CONTEXT {
        return Err(Error::Config(format!(
            "{arch}.context_length {context_length} exceeds the {MAX_CONTEXT} positions Tidal supports"
        )));
    }
    let vocab_size = match content.tensor_infos.get("token_embd.weight") {
        Some(t) => t
            .shape
            .dims2()
            .map(|(v, _)| v)
            .map_err(|e| Error::Config(format!("token_embd.weight is not a matrix: {e}")))?,
        None => return Err(Error::Config("tensor token_embd.weight is missing".into())),
    };
    Ok(LlamaConfig {
        architecture,
        rope_style,
        n_layer: meta_usize(md, &key("block_count"))?,
        n_embd,
        n_head,
        n_kv_head,
        head_dim,
        n_ff: meta_usize(md, &key("feed_forward_length"))?,
        rms_eps: meta_opt_f32(md, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        rope_theta: meta_opt_f32(md, &key("rope.freq_base"))?.unwrap_or(10_000.0),
        rope_linear_scale,
        context_length,
        vocab_size,
    })
}

/// `cos`/`sin` of `position * theta^(-2i/head_dim) / factor_i` for every
/// position the model accepts, `[context_length, head_dim / 2]`.
fn rope_tables(c: &LlamaConfig, freq_factors: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
    let half = c.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let f = 1.0 / c.rope_theta.powf(2.0 * i as f32 / c.head_dim as f32);
            f / freq_factors.map_or(1.0, |ff| ff[i]) / c.rope_linear_scale
        })
        .collect();
    let mut cos = Vec::with_capacity(c.context_length * half);
    let mut sin = Vec::with_capacity(c.context_length * half);
    for pos in 0..c.context_length {
        for &f in &inv_freq {
            let angle = pos as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_approx_is_within_two_ulp_of_expf() {
        let mut x = 88.0f32;
        while x > -87.0 {
            let (got, want) = (exp_approx(x), x.exp());
            let ulp = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulp <= 2, "e^{x}: {got} vs {want} ({ulp} ulp)");
            x -= 0.0137;
        }
        assert_eq!(exp_approx(0.0), 1.0);
        assert!(exp_approx(-1000.0) < 1e-37);
        assert!(exp_approx(1000.0).is_finite());
        assert_eq!(silu(-1000.0), 0.0);
        assert_eq!(silu(-1e35), 0.0);
        assert_eq!(silu(1000.0), 1000.0);
    }

    /// Softmax attention written out plainly, in f64.
    fn naive(q: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>], hd: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for qh in q.chunks_exact(hd) {
            let scores: Vec<f64> = keys
                .iter()
                .map(|k| qh.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum())
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..hd {
                let v: f64 = weights
                    .iter()
                    .zip(values)
                    .map(|(w, v)| w * v[d] as f64)
                    .sum();
                out.push((v / total) as f32);
            }
        }
        out
    }

    #[test]
    fn blocked_attention_matches_the_formula() {
        let value = |i: usize| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 2.0;
        // Head sizes on and off the 16-value fast path; 1 to 9 query heads per
        // KV head (more than eight takes two passes); contexts on and off
        // block boundaries.
        for (hd, heads, rows) in [
            (64usize, 3usize, 1usize),
            (64, 3, 37),
            (32, 9, 48),
            (20, 2, 17),
            (18, 2, 21),
            (64, 7, 33),
            (128, 1, 100),
        ] {
            let capacity = rows.next_multiple_of(KEY_BLOCK) + KEY_BLOCK;
            // The cache holds f16: the formula gets the same (rounded) numbers.
            let cached = |x: f32| f16::from_f32(x).to_f32();
            let keys: Vec<Vec<f32>> = (0..rows)
                .map(|p| (0..hd).map(|d| cached(value(p * hd + d))).collect())
                .collect();
            let values: Vec<Vec<f32>> = (0..rows)
                .map(|p| {
                    (0..hd)
                        .map(|d| cached(value(5 + 3 * (p * hd + d))))
                        .collect()
                })
                .collect();
            // Stale data past `rows` must not leak in.
            let stale = f16::from_f32(9.0).to_bits();
            let mut blocked = vec![stale; capacity * hd];
            for (p, k) in keys.iter().enumerate() {
                for (d, &x) in k.iter().enumerate() {
                    blocked[(p / KEY_BLOCK) * hd * KEY_BLOCK + d * KEY_BLOCK + p % KEY_BLOCK] =
                        f16::from_f32(x).to_bits();
                }
            }
            let mut flat_values: Vec<u16> = values
                .concat()
                .iter()
                .map(|&x| f16::from_f32(x).to_bits())
                .collect();
            flat_values.extend(std::iter::repeat_n(stale, KEY_BLOCK * hd));
            let q: Vec<f32> = (0..heads * hd).map(|i| value(11 + i) * 0.3).collect();
            let mut out = vec![0f32; heads * hd];
            let at = Visible { rows, head_dim: hd };
            let want = naive(&q, &keys, &values, hd);
            // The AVX512 kernels sum in the portable loops' order: the same bits.
            let mut portable = vec![0f32; heads * hd];
            let mut scores = Vec::new();
            attend_group(
                None,
                &q,
                &blocked,
                &flat_values,
                at,
                &mut scores,
                &mut portable,
            );
            if let Some(simd) = Avx512::detect() {
                attend_group(
                    Some(simd),
                    &q,
                    &blocked,
                    &flat_values,
                    at,
                    &mut scores,
                    &mut out,
                );
                assert_eq!(out, portable, "hd {hd}, {heads} heads, {rows} rows");
            }
            for simd in [None, Avx512::detect()] {
                attend_group(
                    simd,
                    &q,
                    &blocked,
                    &flat_values,
                    at,
                    &mut Vec::new(),
                    &mut out,
                );
                for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() < 1e-5,
                        "{simd:?}: hd {hd}, {heads} heads, {rows} rows, [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }
}
