//! Reading GGUF files: the header's model facts ([`GgufInfo`]) and the
//! tokenizer stored in its metadata.
//!
//! A GGUF file carries everything a server needs (weights, vocabulary,
//! merges, special tokens, chat template), so a single path is enough to
//! serve it. Only the header is parsed here; tensors are read by
//! [`crate::llama::Llama::load`].

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{Error, Result};
use crate::tokenizer::{Tokenizer, bos_template};

/// GGUF `tokenizer.ggml.token_type` value of the unknown token.
const TOKEN_TYPE_UNKNOWN: i64 = 2;
/// GGUF `tokenizer.ggml.token_type` value of control tokens (`<|im_start|>`, ...).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF `tokenizer.ggml.token_type` value of user-defined added tokens.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
/// GGUF `tokenizer.ggml.token_type` value of SentencePiece's `<0xNN>` byte tokens.
const TOKEN_TYPE_BYTE: i64 = 6;

/// Model facts from a GGUF header that a server needs besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufInfo {
    /// `general.architecture`, e.g. `llama` or `qwen2`.
    pub architecture: String,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// `{arch}.context_length`: the longest sequence the model was trained for.
    pub context_length: usize,
    /// Number of entries in `tokenizer.ggml.tokens`.
    pub vocab_size: usize,
    /// `tokenizer.ggml.bos_token_id`, if present.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`, if present.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`: whether prompts should start with BOS
    /// (false when absent, as for GPT-2 style vocabularies).
    pub add_bos_token: bool,
    /// `tokenizer.chat_template` (a Jinja template), if present.
    pub chat_template: Option<String>,
}

impl GgufInfo {
    /// Reads the header of a GGUF file.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_content(&read_content(path)?.0)
    }

    /// Extracts the facts from an already parsed header.
    pub fn from_content(content: &Content) -> Result<Self> {
        let md = &content.metadata;
        let architecture = meta_str(md, "general.architecture")?.to_owned();
        let context_length = meta_usize(md, &format!("{architecture}.context_length"))?;
        let vocab_size = meta_array(md, "tokenizer.ggml.tokens")?.len();
        Ok(Self {
            name: md
                .get("general.name")
                .and_then(|v| v.to_string().ok())
                .cloned(),
            context_length,
            vocab_size,
            bos_token_id: meta_opt_u32(md, "tokenizer.ggml.bos_token_id")?,
            eos_token_id: meta_opt_u32(md, "tokenizer.ggml.eos_token_id")?,
            add_bos_token: md
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.to_bool().ok())
                .unwrap_or(false),
            chat_template: md
                .get("tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .cloned(),
            architecture,
        })
    }
}

/// Opens a GGUF file and parses its header, keeping the reader for tensors.
///
/// A buffered reader rather than mmap: the workspace keeps `unsafe` to its
/// AVX512 kernels (`avx512.rs`).
pub(crate) fn read_content(path: &Path) -> Result<(Content, BufReader<File>)> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|source| Error::Weights {
        path: path.to_owned(),
        source,
    })?;
    Ok((content, reader))
}

impl Tokenizer {
    /// Builds the tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(path: &Path) -> Result<Self> {
        Self::from_gguf_content(&read_content(path)?.0)
    }

    /// Builds the tokenizer from a parsed GGUF header.
    ///
    /// Byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`: SmolLM,
    /// Llama 3, Qwen2) and SentencePiece ones (`llama`: Llama 2, Mistral,
    /// TinyLlama) are supported. Control tokens (`token_type == 3`) become
    /// special added tokens, so `<|im_start|>` in a chat prompt is one token
    /// instead of being split by the BPE; `tokenizer.ggml.add_bos_token`
    /// (by default on for SentencePiece, off for BPE, as in llama.cpp) puts
    /// BOS before prompts encoded with special tokens.
    pub fn from_gguf_content(content: &Content) -> Result<Self> {
        let md = &content.metadata;
        let model = meta_str(md, "tokenizer.ggml.model")?;
        let tokens = meta_array(md, "tokenizer.ggml.tokens")?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<candle_core::Result<Vec<String>>>()
            .map_err(|e| Error::Tokenizer(format!("tokenizer.ggml.tokens: {e}")))?;
        let types = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| Error::Tokenizer(format!("tokenizer.ggml.token_type: {e}")))?
                .iter()
                .map(value_i64)
                .collect::<Result<Vec<i64>>>()?,
            None => Vec::new(),
        };
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let mut inner = match model {
            "gpt2" => byte_level_bpe(md, vocab)?,
            "llama" => sentencepiece_bpe(md, vocab, &tokens, &types)?,
            other => {
                return Err(Error::Config(format!(
                    "GGUF tokenizer model `{other}` is not supported (gpt2: byte-level BPE; llama: SentencePiece)"
                )));
            }
        };
        // llama.cpp's defaults: SentencePiece vocabularies and Llama 3's BPE start prompts
        // with BOS, other BPE ones not.
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map_or("default", |s| s.as_str());
        let bos_by_default =
            model == "llama" || matches!(pre, "llama3" | "llama-v3" | "llama-bpe" | "falcon3");
        let add_bos = meta_opt_bool(md, "tokenizer.ggml.add_bos_token")?.unwrap_or(bos_by_default);
        let bos = meta_opt_u32(md, "tokenizer.ggml.bos_token_id")?
            .and_then(|id| tokens.get(id as usize).map(|t| (t.clone(), id)));
        if let (true, Some((bos, id))) = (add_bos, bos) {
            inner.with_post_processor(Some(bos_template(bos, id)?));
        }

        let (special, added): (Vec<_>, Vec<_>) = types
            .iter()
            .zip(&tokens)
            .filter(|(t, _)| matches!(**t, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .partition(|(t, _)| **t == TOKEN_TYPE_CONTROL);
        inner
            .add_special_tokens(
                special
                    .into_iter()
                    .map(|(_, tok)| AddedToken::from(tok.clone(), true)),
            )
            .map_err(|e| Error::Tokenizer(format!("cannot add special tokens: {e}")))?;
        inner
            .add_tokens(
                added
                    .into_iter()
                    // Matched as written, not after normalization (a SentencePiece
                    // normalizer would otherwise look for `▁<token>`).
                    .map(|(_, tok)| AddedToken::from(tok.clone(), false).normalized(false)),
            )
            .map_err(|e| Error::Tokenizer(format!("cannot add user-defined tokens: {e}")))?;
        Ok(Self::from_tokenizers(inner))
    }
}

/// Byte-level BPE (`tokenizer.ggml.model = gpt2`) with the pre-tokenizer
/// `tokenizer.ggml.pre` names.
fn byte_level_bpe(md: &HashMap<String, Value>, vocab: Vocab) -> Result<tokenizers::Tokenizer> {
    let merges = meta_array(md, "tokenizer.ggml.merges")?
        .iter()
        .map(|v| {
            let merge = v
                .to_string()
                .map_err(|e| Error::Tokenizer(format!("tokenizer.ggml.merges: {e}")))?;
            merge
                .split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| Error::Tokenizer(format!("malformed merge `{merge}`")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::Tokenizer(format!("cannot build BPE from GGUF: {e}")))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map_or("default", |s| s.as_str());
    inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    inner.with_decoder(Some(ByteLevel::default()));
    inner.with_post_processor(Some(ByteLevel::default().trim_offsets(true)));
    Ok(inner)
}

/// SentencePiece BPE (`tokenizer.ggml.model = llama`: Llama 2, Mistral,
/// TinyLlama) as transformers' `LlamaConverter` rebuilds it: a piece that
/// is the concatenation of two pieces is their merge, ranked by its score
/// (SentencePiece merges the best-scoring pair first); characters outside
/// the vocabulary fall back to `<0xNN>` byte tokens; spaces become `▁`, with
/// one prepended to the text.
fn sentencepiece_bpe(
    md: &HashMap<String, Value>,
    vocab: Vocab,
    tokens: &[String],
    types: &[i64],
) -> Result<tokenizers::Tokenizer> {
    let scores: Vec<f32> = meta_array(md, "tokenizer.ggml.scores")?
        .iter()
        .map(|v| v.to_f32())
        .collect::<candle_core::Result<_>>()
        .map_err(|e| Error::Tokenizer(format!("tokenizer.ggml.scores: {e}")))?;
    if scores.len() != tokens.len() {
        return Err(Error::Tokenizer(format!(
            "tokenizer.ggml.scores has {} entries for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let mergeable = |id: usize| {
        !matches!(
            types.get(id),
            Some(&(TOKEN_TYPE_UNKNOWN | TOKEN_TYPE_CONTROL | TOKEN_TYPE_BYTE))
        )
    };
    let mut merges: Vec<(f32, u32, u32, &str, &str)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate().filter(|(id, _)| mergeable(*id)) {
        for (at, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(at);
            if let (Some(&l), Some(&r)) = (vocab.get(left), vocab.get(right)) {
                merges.push((scores[id], l, r, left, right));
            }
        }
    }
    // Best score first; ties by the ids of the two halves, as the converter does.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges = merges
        .into_iter()
        .map(|(_, _, _, l, r)| (l.to_owned(), r.to_owned()))
        .collect();
    let unk = types
        .iter()
        .position(|&t| t == TOKEN_TYPE_UNKNOWN)
        .and_then(|id| tokens.get(id).cloned());
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let bpe = builder
        .build()
        .map_err(|e| Error::Tokenizer(format!("cannot build SentencePiece BPE from GGUF: {e}")))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(|e| Error::Tokenizer(format!("normalizer: {e}")))
    };
    // SentencePiece's dummy prefix: a `▁` before the text, stripped again when decoding.
    let space_prefix = meta_opt_bool(md, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let mut normalizers = vec![replace(" ", "\u{2581}")?.into()];
    let mut decoders = vec![
        replace("\u{2581}", " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if space_prefix {
        normalizers.insert(0, Prepend::new("\u{2581}".into()).into());
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    inner
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(|e| Error::Tokenizer(format!("normalizer: {e}")))?;
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(inner)
}

/// The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre`, so that text
/// splits into the same words (and hence tokens) as in the original model.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    // GPT-2's split, built into ByteLevel.
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let regex_then_bytes = |regex: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex for `{pre}`: {e}")))?;
        Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::default()
                .add_prefix_space(false)
                .use_regex(false)
                .into(),
        ])
        .into())
    };
    match pre {
        // SmolLM: single digits, then GPT-2's split.
        "smollm" => Ok(Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()),
        "qwen2" => regex_then_bytes(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        "llama-bpe" | "llama3" => regex_then_bytes(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        "default" | "gpt2" | "gpt-2" => Ok(byte_level.into()),
        other => Err(Error::Config(format!(
            "GGUF pre-tokenizer `{other}` is not supported (smollm, qwen2, llama-bpe, gpt2)"
        ))),
    }
}

fn meta<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value> {
    md.get(key)
        .ok_or_else(|| Error::Config(format!("GGUF metadata `{key}` is missing")))
}

pub(crate) fn meta_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a str> {
    meta(md, key)?
        .to_string()
        .map(String::as_str)
        .map_err(|e| Error::Config(format!("GGUF metadata `{key}`: {e}")))
}

fn meta_array<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Vec<Value>> {
    meta(md, key)?
        .to_vec()
        .map_err(|e| Error::Config(format!("GGUF metadata `{key}`: {e}")))
}

/// Any integer type: writers disagree on u32 vs u64 for counts.
fn value_i64(v: &Value) -> Result<i64> {
    Ok(match v {
        Value::U8(x) => i64::from(*x),
        Value::I8(x) => i64::from(*x),
        Value::U16(x) => i64::from(*x),
        Value::I16(x) => i64::from(*x),
        Value::U32(x) => i64::from(*x),
        Value::I32(x) => i64::from(*x),
        Value::U64(x) => i64::try_from(*x)
            .map_err(|_| Error::Config(format!("GGUF integer {x} is out of range")))?,
        Value::I64(x) => *x,
        other => return Err(Error::Config(format!("expected an integer, got {other:?}"))),
    })
}

pub(crate) fn meta_usize(md: &HashMap<String, Value>, key: &str) -> Result<usize> {
    let v = value_i64(meta(md, key)?)
        .map_err(|e| Error::Config(format!("GGUF metadata `{key}`: {e}")))?;
    usize::try_from(v)
        .map_err(|_| Error::Config(format!("GGUF metadata `{key}` = {v} is negative")))
}

pub(crate) fn meta_opt_usize(md: &HashMap<String, Value>, key: &str) -> Result<Option<usize>> {
    match md.contains_key(key) {
        true => meta_usize(md, key).map(Some),
        false => Ok(None),
    }
}

fn meta_opt_u32(md: &HashMap<String, Value>, key: &str) -> Result<Option<u32>> {
    meta_opt_usize(md, key)?
        .map(|v| {
            u32::try_from(v).map_err(|_| Error::Config(format!("GGUF metadata `{key}` = {v}")))
        })
        .transpose()
}

fn meta_opt_bool(md: &HashMap<String, Value>, key: &str) -> Result<Option<bool>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(Error::Config(format!(
            "GGUF metadata `{key}`: expected a bool, got {other:?}"
        ))),
    }
}

pub(crate) fn meta_opt_f32(md: &HashMap<String, Value>, key: &str) -> Result<Option<f32>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::F32(x)) => Ok(Some(*x)),
        Some(Value::F64(x)) => Ok(Some(*x as f32)),
        Some(other) => Err(Error::Config(format!(
            "GGUF metadata `{key}`: expected a float, got {other:?}"
        ))),
    }
}
