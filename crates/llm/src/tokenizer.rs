//! A thin wrapper around Hugging Face `tokenizers`, loaded from a
//! `tokenizer.json` file, built from a GPT-2-style `vocab.json` and
//! `merges.txt`, or built from GGUF metadata ([`crate::gguf`]).

use std::path::Path;

use serde_json::Value;
use tokenizers::AddedToken;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;

use crate::error::{Error, Result};

/// A fast (Rust) Hugging Face tokenizer loaded from `tokenizer.json`.
///
/// For OPT the file's post-processor prepends the BOS token `</s>` (id 2)
/// when `add_special_tokens` is true, exactly like `AutoTokenizer` does in
/// Python; the Python `transformers` fast tokenizer is this same Rust code.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

/// A post-processor that puts the BOS token `bos` (id `id`) before a prompt encoded with
/// special tokens.
pub(crate) fn bos_template(bos: String, id: u32) -> Result<TemplateProcessing> {
    TemplateProcessing::builder()
        .try_single(format!("{bos} $A"))
        .and_then(|b| b.try_pair(format!("{bos} $A $B:1")))
        .map_err(|e| Error::Tokenizer(format!("BOS template: {e}")))?
        .special_tokens(vec![(bos, id)])
        .build()
        .map_err(|e| Error::Tokenizer(format!("BOS template: {e}")))
}

impl Tokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Io {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("cannot load {}: {e}", path.display())))?;
        Ok(Self { inner })
    }

    /// Wraps an already built `tokenizers::Tokenizer` (e.g. one assembled
    /// from GGUF metadata).
    pub fn from_tokenizers(inner: tokenizers::Tokenizer) -> Self {
        Self { inner }
    }

    /// Loads a model folder's tokenizer: `tokenizer.json`, or else the
    /// byte-level BPE files of a GPT-2-style "slow" tokenizer (`vocab.json`
    /// and `merges.txt`, options from `tokenizer_config.json`), which older
    /// repositories such as facebook/opt-* ship instead.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if !json.is_file() && dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
            return Self::from_bpe_files(dir);
        }
        Self::from_file(&json)
    }

    /// Builds what transformers' `GPT2TokenizerFast` converts the slow files
    /// to: byte-level BPE, the special tokens of `tokenizer_config.json` (or
    /// `special_tokens_map.json`) kept whole, and the BOS token prepended when
    /// the config says `add_bos_token` (OPT's `</s>`).
    fn from_bpe_files(dir: &Path) -> Result<Self> {
        let path_text = |name: &str| {
            let path = dir.join(name);
            path.to_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::Tokenizer(format!("{} is not a UTF-8 path", path.display())))
        };
        let bpe = BPE::from_file(&path_text("vocab.json")?, &path_text("merges.txt")?)
            .build()
            .map_err(|e| {
                Error::Tokenizer(format!(
                    "cannot build BPE from {}/vocab.json and merges.txt: {e}",
                    dir.display()
                ))
            })?;
        let read = |name: &str| -> Result<Value> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    serde_json::from_str(&text).map_err(|source| Error::Json { path, source })
                }
                Err(_) => Ok(Value::Null),
            }
        };
        let config = read("tokenizer_config.json")?;
        let map = read("special_tokens_map.json")?;
        // A token is a string or `{"content": ...}`, in the config or the map.
        let token = |key: &str| {
            [&config[key], &map[key]].into_iter().find_map(|v| {
                v.as_str()
                    .or_else(|| v["content"].as_str())
                    .map(str::to_owned)
            })
        };

        let mut inner = tokenizers::Tokenizer::new(bpe);
        let add_prefix_space = config["add_prefix_space"].as_bool().unwrap_or(false);
        inner.with_pre_tokenizer(Some(
            ByteLevel::default().add_prefix_space(add_prefix_space),
        ));
        inner.with_decoder(Some(ByteLevel::default()));
        let mut specials: Vec<String> = ["bos_token", "eos_token", "unk_token", "pad_token"]
            .into_iter()
            .filter_map(token)
            .collect();
        if let Some(added) = config["added_tokens_decoder"].as_object() {
            specials.extend(added.values().filter_map(|t| {
                let special = t["special"].as_bool().unwrap_or(false);
                t["content"].as_str().filter(|_| special).map(str::to_owned)
            }));
        }
        inner
            .add_special_tokens(specials.iter().map(|t| AddedToken::from(t.clone(), true)))
            .map_err(|e| Error::Tokenizer(format!("cannot add special tokens: {e}")))?;
        let bos = token("bos_token").filter(|_| config["add_bos_token"] == Value::Bool(true));
        match bos {
            Some(bos) => {
                let id = inner.token_to_id(&bos).ok_or_else(|| {
                    Error::Tokenizer(format!("bos_token {bos:?} is not in vocab.json"))
                })?;
                inner.with_post_processor(Some(bos_template(bos, id)?));
            }
            None => {
                inner.with_post_processor(Some(ByteLevel::default().trim_offsets(false)));
            }
        }
        Ok(Self { inner })
    }

    /// Encodes text to token ids; `add_special_tokens` adds OPT's leading `</s>`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("cannot encode text: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes token ids to text. Incomplete UTF-8 byte sequences decode to
    /// U+FFFD, as in Python.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("cannot decode ids: {e}")))
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers::Tokenizer`, for anything not wrapped here.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
