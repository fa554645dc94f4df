//! Decode throughput of [`Llama`]: one stream versus a batch of
//! streams advanced together, as the batching engine does.
//!
//! ```text
//! cargo run --release -p tidal-llm --example decode_speed -- \
//!     [--tokens 64] [--batch 8] [--rounds 1] [--prep fast|faithful|as-stored|q8] \
//!     [path.gguf|checkpoint-folder]
//! ```
//!
//! With `--rounds N` the single stream and the batch alternate N times and
//! the median ratio is printed: on a shared machine whose speed drifts, a
//! ratio of two runs minutes apart measures the drift as much as batching.
//!
//! `--prep` picks the [`WeightPrep`] (default `fast`).
//!
//! The model defaults to `TIDAL_SMOLLM2_GGUF` or the file that
//! `scripts/fetch-models` downloads. Thread counts follow candle's
//! `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS`.

use std::path::PathBuf;
use std::time::Instant;

use tidal_llm::generate::argmax;
use tidal_llm::{CausalLm, Llama, LlamaCache, SeqStep, Tokenizer, WeightPrep};

/// Runs `n` greedy decode steps over all `caches` at once; returns seconds.
fn decode(
    model: &Llama,
    caches: &mut [LlamaCache],
    mut next: Vec<u32>,
    n: usize,
) -> tidal_llm::Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        let tokens: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
        let mut steps: Vec<SeqStep<'_, LlamaCache>> = tokens
            .iter()
            .zip(caches.iter_mut())
            .map(|(t, cache)| SeqStep { tokens: t, cache })
            .collect();
        next = model
            .forward_batch(&mut steps)?
            .iter()
            .map(|l| argmax(l))
            .collect();
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Prefills one prompt per cache in a single step; returns the first tokens
/// and the seconds taken.
fn prefill(
    model: &Llama,
    caches: &mut [LlamaCache],
    prompts: &[Vec<u32>],
) -> tidal_llm::Result<(Vec<u32>, f64)> {
    let start = Instant::now();
    let mut steps: Vec<SeqStep<'_, LlamaCache>> = prompts
        .iter()
        .zip(caches.iter_mut())
        .map(|(p, cache)| SeqStep { tokens: p, cache })
        .collect();
    let next = model
        .forward_batch(&mut steps)?
        .iter()
        .map(|l| argmax(l))
        .collect();
    Ok((next, start.elapsed().as_secs_f64()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut tokens = 64;
    let mut batch = 8;
    let mut rounds = 1usize;
    let mut prep = WeightPrep::Fast;
    let mut path = std::env::var_os("TIDAL_SMOLLM2_GGUF").map_or_else(
        || PathBuf::from("/var/tmp/tidal-models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        PathBuf::from,
    );
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tokens" => tokens = args.next().ok_or("--tokens needs a value")?.parse()?,
            "--batch" => batch = args.next().ok_or("--batch needs a value")?.parse()?,
            "--rounds" => rounds = args.next().ok_or("--rounds needs a value")?.parse()?,
            "--prep" => {
                prep = match args.next().as_deref() {
                    Some("fast") => WeightPrep::Fast,
                    Some("faithful") => WeightPrep::Faithful,
                    Some("as-stored") => WeightPrep::AsStored,
                    Some("q8") => WeightPrep::QuantizeQ8,
                    _ => return Err("--prep needs fast, faithful, as-stored or q8".into()),
                }
            }
            other => path = PathBuf::from(other),
        }
    }
    if !path.exists() {
        return Err(format!(
            "{} is missing: run `bash scripts/fetch-models`",
            path.display()
        )
        .into());
    }

    let t0 = Instant::now();
    // A folder is a transformers checkpoint (f32, or `--prep q8` to quantize it at load).
    let (model, tokenizer) = match path.is_dir() {
        true => (
            Llama::load_transformers_with(&path, prep)?,
            Tokenizer::from_dir(&path)?,
        ),
        false => (Llama::load_with(&path, prep)?, Tokenizer::from_gguf(&path)?),
    };
    println!(
        "loaded {} ({prep:?}) in {:.2}s",
        path.display(),
        t0.elapsed().as_secs_f64()
    );

    let prompts: Vec<Vec<u32>> = (0..batch.max(1))
        .map(|i| {
            let text = format!(
                "<|im_start|>user\nWrite a long story about a robot number {i} who learns to paint.<|im_end|>\n<|im_start|>assistant\n"
            );
            tokenizer.encode(&text, false)
        })
        .collect::<Result<_, _>>()?;

    // Warm-up: thread pools, lazily initialized kernels, page faults.
    let mut warm = vec![model.new_cache()];
    let (next, _) = prefill(&model, &mut warm, &prompts[..1])?;
    decode(&model, &mut warm, next, 4)?;

    let mut ratios = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let mut single = vec![model.new_cache()];
        let (next, p1) = prefill(&model, &mut single, &prompts[..1])?;
        let d1 = decode(&model, &mut single, next, tokens)?;
        let single_tps = tokens as f64 / d1;
        println!(
            "single stream: prefill {} tokens in {:.1} ms ({:.0} tok/s); decode {tokens} tokens: {:.1} tok/s ({:.2} ms/token)",
            prompts[0].len(),
            p1 * 1e3,
            prompts[0].len() as f64 / p1,
            single_tps,
            d1 * 1e3 / tokens as f64
        );

        let mut caches: Vec<LlamaCache> = prompts.iter().map(|_| model.new_cache()).collect();
        let (next, pb) = prefill(&model, &mut caches, &prompts)?;
        let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
        let db = decode(&model, &mut caches, next, tokens)?;
        let batch_tps = (tokens * prompts.len()) as f64 / db;
        println!(
            "batch of {}: prefill {prompt_tokens} tokens in {:.1} ms ({:.0} tok/s); decode {tokens} steps: {:.1} tok/s aggregate ({:.2} ms/step), {:.2}x single",
            prompts.len(),
            pb * 1e3,
            prompt_tokens as f64 / pb,
            batch_tps,
            db * 1e3 / tokens as f64,
            batch_tps / single_tps
        );
        ratios.push(batch_tps / single_tps);
    }
    if ratios.len() > 1 {
        ratios.sort_by(f64::total_cmp);
        println!(
            "median batch / single over {} rounds: {:.2}x (min {:.2}x, max {:.2}x)",
            ratios.len(),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    Ok(())
}
