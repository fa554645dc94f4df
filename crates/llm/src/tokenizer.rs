//! A thin wrapper around Hugging Face `tokenizers`, loaded from a
//! `tokenizer.json` file or built from GGUF metadata ([`crate::gguf`]).

use std::path::Path;

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

    /// Loads `tokenizer.json` from a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join("tokenizer.json"))
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
