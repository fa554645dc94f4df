//! Token selection and a simple single-sequence generation loop.
//!
//! [`Sampler`] turns one row of logits into a token id and is meant to be
//! reused by a batching engine (one sampler per request, so each request's
//! seed gives a reproducible stream). [`generate`] is the reference loop:
//! prefill the prompt once, then one cached decode step per new token.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::llama::{exp_approx, lanewise};
use crate::opt::Opt;

/// How to pick tokens and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens (`None` or 0 disables).
    pub top_k: Option<usize>,
    /// Nucleus sampling: keep the smallest set of tokens whose probability
    /// mass reaches `top_p` (1.0 disables). Must be in (0, 1].
    pub top_p: f64,
    /// Seed of the per-request random stream (ignored when greedy).
    pub seed: u64,
    /// Maximum number of new tokens.
    pub max_tokens: usize,
    /// Extra token ids that end generation (the model's EOS always does
    /// unless `ignore_eos`).
    pub stop_token_ids: Vec<u32>,
    /// Keep generating past the model's EOS token.
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            seed: 0,
            max_tokens: 16,
            stop_token_ids: Vec::new(),
            ignore_eos: false,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            ..Self::default()
        }
    }

    /// Rejects NaN or out-of-range values.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::InvalidInput(format!(
                "temperature must be a finite number >= 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::InvalidInput(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// Picks the next token from a row of logits.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler for `params` (validated), seeded with `params.seed`.
    pub fn new(params: &SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params: params.clone(),
            rng: SplitMix64(params.seed),
        })
    }

    /// Picks a token from `[vocab]` (or `[1, vocab]`) logits.
    pub fn sample_tensor(&mut self, logits: &Tensor) -> Result<u32> {
        let row = logits
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        self.sample(&row)
    }

    /// Picks a token from one row of logits. Greedy picks the first maximum,
    /// like `torch.argmax`.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(Error::InvalidInput(
                "cannot sample from empty logits".to_owned(),
            ));
        }
        // A fold rather than `any` so it vectorizes (no early exit).
        if logits.iter().fold(false, |nan, x| nan | x.is_nan()) {
            return Err(Error::InvalidInput("logits contain NaN".to_owned()));
        }
        // Below vLLM's sampling epsilon, 1/t overflows; such temperatures mean greedy.
        if self.params.temperature < 1e-5 {
            return Ok(argmax(logits));
        }
        // Temperature, then top-k, then top-p (transformers' warper order).
        // Weights are relative to the most likely token's 1.
        let inv_t = (1.0 / self.params.temperature) as f32;
        let best = argmax(logits);
        let max = logits[best as usize];
        // An infinite maximum leaves no distribution to draw from: +inf is
        // certain, as greedy says; all -inf is nothing, answered as greedy is.
        if !max.is_finite() {
            return Ok(best);
        }
        // A -inf logit (a masked token) weighs exactly 0.
        let weight = |l: f32| match l == f32::NEG_INFINITY {
            true => 0.0,
            false => exp_approx((l - max) * inv_t),
        };
        let n = logits.len();
        let top_k = self.params.top_k.filter(|&k| k > 0 && k < n);
        let top_p = self.params.top_p;
        if top_k.is_none() && top_p >= 1.0 {
            // Every token is a candidate: no order is needed, so no sort
            // (a 50-150k vocabulary sorted per token cost milliseconds).
            let weights: Vec<f32> = logits.iter().map(|&l| weight(l)).collect();
            let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
            return Ok(self.pick(&weights, total, |i| i as u32));
        }
        // The candidates most likely first (ties by id), found by selection
        // rather than a sort of the whole vocabulary: the top k, or for
        // top_p alone a top slice grown until it holds the nucleus.
        let order_of = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let top = |m: usize| {
            let mut ids: Vec<u32> = (0..n as u32).collect();
            if m < n {
                ids.select_nth_unstable_by(m - 1, order_of);
                ids.truncate(m);
            }
            ids.sort_unstable_by(order_of);
            ids
        };
        let (mut ids, total) = match top_k {
            Some(k) => {
                let ids = top(k);
                let total: f64 = ids
                    .iter()
                    .map(|&i| f64::from(weight(logits[i as usize])))
                    .sum();
                (ids, total)
            }
            None => {
                let total: f64 = logits.iter().map(|&l| f64::from(weight(l))).sum();
                (top(n.min(64)), total)
            }
        };
        loop {
            let weights: Vec<f32> = ids.iter().map(|&i| weight(logits[i as usize])).collect();
            // The nucleus: the fewest candidates whose mass reaches top_p.
            let mut mass = 0.0;
            let mut keep = None;
            for (i, &w) in weights.iter().enumerate() {
                mass += f64::from(w) / total;
                if mass >= top_p {
                    keep = Some(i + 1);
                    break;
                }
            }
            // All candidates, when rounding leaves their mass a hair short.
            let keep = match keep {
                Some(keep) => keep,
                None if ids.len() == n || top_k.is_some() => weights.len(),
                None => {
                    ids = top(n.min(ids.len() * 8));
                    continue;
                }
            };
            let kept_total: f64 = weights[..keep].iter().map(|&w| f64::from(w)).sum();
            return Ok(self.pick(&weights[..keep], kept_total, |i| ids[i]));
        }
    }

    /// Draws index `i` with probability `weights[i] / total`; returns `id(i)`.
    fn pick(&mut self, weights: &[f32], total: f64, id: impl Fn(usize) -> u32) -> u32 {
        let mut target = self.rng.next_f64() * total;
        for (i, &w) in weights.iter().enumerate() {
            let w = f64::from(w);
            if target < w {
                return id(i);
            }
            target -= w;
        }
        id(weights.len() - 1)
    }
}

/// The first position of the largest value (NaN-free input): a maximum over
/// 16 lanes, then a search for it, both of which vectorize (a
/// compare-and-remember loop does not, and a vocabulary is ~50-150k values
/// per sequence per step).
pub fn argmax(logits: &[f32]) -> u32 {
    let max = lanewise(logits, f32::NEG_INFINITY, |m, x| if x > m { x } else { m });
    logits.iter().position(|&x| x == max).unwrap_or(0) as u32
}

/// A small deterministic PRNG (SplitMix64), so seeds are reproducible
/// across platforms and dependency upgrades.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token (EOS or one of `stop_token_ids`) was produced; it is not
    /// included in [`Generation::token_ids`].
    Stop(u32),
    /// `max_tokens` were produced, or the context window is full.
    Length,
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new tokens (not including the prompt or the stop token).
    pub token_ids: Vec<u32>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
}

/// Generates a continuation of `prompt` (token ids, BOS included) using the
/// KV cache: one prefill forward, then one single-token forward per new token.
pub fn generate(model: &Opt, prompt: &[u32], params: &SamplingParams) -> Result<Generation> {
    let mut sampler = Sampler::new(params)?;
    if prompt.is_empty() {
        return Err(Error::InvalidInput(
            "prompt must contain at least one token".to_owned(),
        ));
    }
    let max_len = model.config().max_position_embeddings;
    if prompt.len() > max_len {
        return Err(Error::InvalidInput(format!(
            "prompt has {} tokens, more than max_position_embeddings {max_len}",
            prompt.len()
        )));
    }
    let mut stops = params.stop_token_ids.clone();
    if !params.ignore_eos {
        stops.extend(model.config().eos_token_id);
    }
    let mut token_ids = Vec::new();
    if params.max_tokens == 0 {
        return Ok(Generation {
            token_ids,
            finish_reason: FinishReason::Length,
        });
    }
    let mut cache = model.new_cache();
    let mut logits =
        model.forward_rows(&[prompt.to_vec()], &[vec![1; prompt.len()]], &mut cache)?;
    loop {
        let next = sampler.sample_tensor(&logits)?;
        if stops.contains(&next) {
            return Ok(Generation {
                token_ids,
                finish_reason: FinishReason::Stop(next),
            });
        }
        token_ids.push(next);
        // Feeding the new token back needs one more position.
        if token_ids.len() >= params.max_tokens || prompt.len() + token_ids.len() > max_len {
            return Ok(Generation {
                token_ids,
                finish_reason: FinishReason::Length,
            });
        }
        logits = model.forward_rows(&[vec![next]], &[vec![1]], &mut cache)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(params: SamplingParams, logits: &[f32], n: usize) -> Vec<usize> {
        let mut sampler = Sampler::new(&params).unwrap();
        let mut counts = vec![0; logits.len()];
        for _ in 0..n {
            counts[sampler.sample(logits).unwrap() as usize] += 1;
        }
        counts
    }

    #[test]
    fn sampling_follows_the_softmax_over_the_whole_vocabulary() {
        // Probabilities 1/15, 2/15, 4/15, 8/15 at temperature 1, and at
        // temperature 2 (weights 1, sqrt 2, 2, 2 sqrt 2) out of order.
        let logits = [4f32.ln(), 1f32.ln(), 8f32.ln(), 2f32.ln()];
        let n = 30_000;
        for (temperature, seed, w) in [
            (1.0, 3, [4.0, 1.0, 8.0, 2.0]),
            (2.0, 4, [2.0, 1.0, 8f64.sqrt(), 2f64.sqrt()]),
        ] {
            let params = SamplingParams {
                temperature,
                seed,
                ..SamplingParams::default()
            };
            let counts = draws(params, &logits, n);
            let total: f64 = w.iter().sum();
            for (count, w) in counts.iter().zip(w) {
                let want = n as f64 * w / total;
                assert!((*count as f64 - want).abs() < 0.05 * want, "{counts:?}");
            }
        }
    }

    #[test]
    fn infinite_logits_sample_as_greedy_picks() {
        let params = SamplingParams {
            temperature: 1.0,
            seed: 8,
            ..SamplingParams::default()
        };
        let inf = f32::INFINITY;
        assert_eq!(draws(params.clone(), &[0.0, 1.0, 2.0, inf, 0.5], 50)[3], 50);
        assert_eq!(draws(params.clone(), &[-inf; 6], 50)[0], 50);
        let masked = draws(params, &[0.0, -inf, 0.0, -inf], 2000);
        assert_eq!(masked[1] + masked[3], 0, "{masked:?}");
        assert!(masked[0] > 900 && masked[2] > 900, "{masked:?}");
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus_even_when_it_is_large() {
        // 300 equally likely tokens: top_p = 0.5 keeps the first 150 (ties
        // go by id), more than the first slice the sampler looks at.
        let logits = vec![0.25f32; 300];
        let counts = draws(
            SamplingParams {
                temperature: 1.0,
                top_p: 0.5,
                seed: 5,
                ..SamplingParams::default()
            },
            &logits,
            6000,
        );
        assert_eq!(counts[150..].iter().sum::<usize>(), 0);
        assert!(
            counts[..150].iter().all(|&c| c > 10),
            "{:?}",
            &counts[..150]
        );
        // A peaked row: the top token alone holds 0.9 of the mass.
        let mut logits = vec![0f32; 200];
        logits[123] = (0.9f32 * 199.0 / 0.1).ln();
        let counts = draws(
            SamplingParams {
                temperature: 1.0,
                top_p: 0.85,
                seed: 6,
                ..SamplingParams::default()
            },
            &logits,
            1000,
        );
        assert_eq!(counts[123], 1000);
        // top_k with top_p: the nucleus is taken within the top k.
        let logits = [3.0f32, 0.0, 2.0, 1.0, 2.5];
        let counts = draws(
            SamplingParams {
                temperature: 1.0,
                top_k: Some(3),
                top_p: 0.7,
                seed: 7,
                ..SamplingParams::default()
            },
            &logits,
            5000,
        );
        // The top 3 are ids 0, 4, 2 (weights e^3, e^2.5, e^2: 0.51, 0.31,
        // 0.19 of their mass); 0.7 is reached with the first two.
        assert_eq!(counts[1] + counts[3] + counts[2], 0, "{counts:?}");
        assert!(counts[0] > 2700 && counts[4] > 1500, "{counts:?}");
    }

    #[test]
    fn argmax_picks_the_first_maximum_anywhere_in_the_row() {
        for len in [1, 15, 16, 17, 100, 49_152] {
            for at in [0, len / 2, len - 1] {
                let mut row: Vec<f32> = (0..len).map(|i| -((i % 7) as f32)).collect();
                row[at] = 3.0;
                assert_eq!(argmax(&row), at as u32, "len {len}, max at {at}");
                // A later tie keeps the first, as torch.argmax does.
                row[len - 1] = 3.0;
                assert_eq!(argmax(&row), at as u32, "len {len}, tie after {at}");
            }
        }
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }

    #[test]
    fn nan_logits_are_refused_wherever_they_are() {
        let mut sampler = Sampler::new(&SamplingParams::greedy(1)).unwrap();
        for at in [0, 16, 99] {
            let mut row = vec![0.5f32; 100];
            row[at] = f32::NAN;
            assert!(sampler.sample(&row).is_err());
        }
        assert_eq!(sampler.sample(&[0.0, f32::INFINITY, 1.0]).unwrap(), 1);
    }
}
