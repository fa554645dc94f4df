//! The contract between a model and the batching engine.
//!
//! The engine advances many requests at once. At every step it hands the
//! model a *ragged batch*: for each sequence, the tokens to append (a whole
//! prompt for a prefill, one token for a decode) and that sequence's own KV
//! cache. A model may run the batch any way it likes (flatten all new tokens
//! into one matrix for the linear layers and attend per sequence, or pad and
//! stack), as long as each sequence's logits equal what it would get alone.

use crate::Result;

/// One sequence's share of a batched step.
pub struct SeqStep<'a, C> {
    /// Tokens to append after what `cache` already holds (at least one).
    pub tokens: &'a [u32],
    /// The sequence's cache; on success it holds `tokens` too.
    pub cache: &'a mut C,
}

/// A causal language model that the engine can batch.
pub trait CausalLm: Send + 'static {
    /// Keys and values of one sequence.
    type Cache: Send + 'static;

    /// An empty cache for a new sequence.
    fn new_cache(&self) -> Self::Cache;

    /// Number of tokens `cache` holds.
    fn cached_tokens(&self, cache: &Self::Cache) -> usize;

    /// Appends each step's tokens to its cache and returns, per step in the
    /// same order, the logits of its last new position (`vocab_size` floats).
    /// On error no cache may be left half-updated in a way that later calls
    /// misread; callers drop the sequences of a failed step.
    fn forward_batch(&self, steps: &mut [SeqStep<'_, Self::Cache>]) -> Result<Vec<Vec<f32>>>;

    /// Bytes of KV cache one token occupies (all layers, keys and values).
    fn kv_bytes_per_token(&self) -> usize;

    /// The longest sequence (prompt plus generated tokens) the model accepts.
    fn max_context(&self) -> usize;

    /// Lowers [`CausalLm::max_context`] to `max` (`--max_model_len`),
    /// releasing what only longer sequences would need; a `max` at or above
    /// the model's own window changes nothing.
    fn cap_context(&mut self, max: usize);

    /// Size of the logits vectors.
    fn vocab_size(&self) -> usize;
}
