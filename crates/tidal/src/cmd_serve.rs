//! `tidal serve`: one model server process, flag-compatible with KServe's model servers
//! (`--model_name`, `--model_dir`, `--http_port`; kebab-case works too). Every embedded replica
//! runs this.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tidal_modelserver::dataplane::DataPlane;
use tidal_modelserver::model::Model;
use tidal_modelserver::runtimes::huggingface;
use tidal_modelserver::runtimes::sklearn::SklearnModel;

/// Flags of `tidal serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The name clients use in URLs (`/v2/models/{name}/infer`).
    #[arg(long = "model_name", alias = "model-name", default_value = "model")]
    pub model_name: String,
    /// The folder holding the model (KServe mounts it at /mnt/models).
    #[arg(long = "model_dir", alias = "model-dir", default_value = "/mnt/models")]
    pub model_dir: PathBuf,
    /// Where to fetch the model from: a local path, file://, http(s)://, gs:// or s3://. It is
    /// downloaded into --model_dir (or a temporary folder) before serving.
    #[arg(long = "storage_uri", alias = "storage-uri")]
    pub storage_uri: Option<String>,
    /// HTTP port.
    #[arg(long = "http_port", alias = "http-port", default_value_t = 8080)]
    pub http_port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// `predict_proba` instead of `predict` (KServe's PREDICT_PROBA switch).
    #[arg(long = "predict_proba", alias = "predict-proba", env = "PREDICT_PROBA", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_parser = parse_bool)]
    pub predict_proba: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// A Hugging Face repo id (`facebook/opt-125m`), resolved from the local hub cache; wins
    /// over --model_dir, as in KServe's huggingfaceserver.
    #[arg(long = "model_id", alias = "model-id")]
    pub model_id: Option<String>,
    /// The revision of --model_id (a branch, tag or commit).
    #[arg(long = "model_revision", alias = "model-revision")]
    pub model_revision: Option<String>,
    /// Generative models: most requests decoded together in one batch (vLLM's flag).
    #[arg(long = "max_num_seqs", alias = "max-num-seqs", default_value_t = 16)]
    pub max_num_seqs: usize,
    /// Generative models: cap on prompt plus generated tokens (default: the model's).
    #[arg(long = "max_model_len", alias = "max-model-len", alias = "max_length")]
    pub max_model_len: Option<usize>,
    /// Generative models: KV cache memory in GiB (vLLM's VLLM_CPU_KVCACHE_SPACE).
    #[arg(
        long = "kv_cache_space",
        alias = "kv-cache-space",
        env = "VLLM_CPU_KVCACHE_SPACE",
        default_value_t = 1.0
    )]
    pub kv_cache_space: f64,
    /// Generative models: quantize a float checkpoint's weights at load (`q8_0`), as vLLM's
    /// `--quantization` does for an unquantized checkpoint.
    #[arg(long = "quantization")]
    pub quantization: Option<huggingface::Quantization>,
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err(format!("expected true or false, got {s:?}")),
    }
}

/// The flags `tidal serve` knows (in both spellings); KServe's servers ignore unknown flags, and
/// so does Tidal, with a warning, so runtime arguments meant for other servers do not break it.
const KNOWN: &[&str] = &[
    "model_name",
    "model-name",
    "model_dir",
    "model-dir",
    "storage_uri",
    "storage-uri",
    "http_port",
    "http-port",
    "host",
    "predict_proba",
    "predict-proba",
    "workers",
    "model_id",
    "model-id",
    "model_revision",
    "model-revision",
    "max_num_seqs",
    "max-num-seqs",
    "max_model_len",
    "max-model-len",
    "max_length",
    "kv_cache_space",
    "kv-cache-space",
    "quantization",
    "help",
    "h",
];

/// Drops unknown `--flag[=value]` arguments after `serve`, returning what was dropped.
pub fn drop_unknown_flags(args: Vec<String>) -> (Vec<String>, Vec<String>) {
    let Some(serve_at) = args.iter().position(|a| a == "serve") else {
        return (args, vec![]);
    };
    let mut kept: Vec<String> = args[..=serve_at].to_vec();
    let mut dropped = Vec::new();
    let mut rest = args[serve_at + 1..].iter().peekable();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            kept.push(arg.clone());
            continue;
        };
        let name = flag.split('=').next().unwrap_or_default();
        if KNOWN.contains(&name) {
            kept.push(arg.clone());
            continue;
        }
        dropped.push(arg.clone());
        if !flag.contains('=') && rest.peek().is_some_and(|next| !next.starts_with('-')) {
            dropped.push(rest.next().expect("peeked").clone());
        }
    }
    (kept, dropped)
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = args.workers {
        runtime.worker_threads(n.max(1));
    }
    runtime.build()?.block_on(run(args))
}

async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let model_dir = match &args.storage_uri {
        Some(uri) => {
            let target = if args.model_dir.as_os_str() == "/mnt/models" {
                std::env::temp_dir().join(format!("tidal-model-{}", std::process::id()))
            } else {
                args.model_dir.clone()
            };
            tracing::info!(uri, target = %target.display(), "Fetching model");
            tidal_modelserver::storage::fetch(uri, &target, Default::default()).await?
        }
        None => args.model_dir.clone(),
    };
    let dp = if args.model_id.is_some() || huggingface::is_generative(&model_dir) {
        let path = match (&args.model_id, &args.storage_uri) {
            // A download is blocking I/O (hf-hub's sync client), kept off the async workers.
            (Some(id), None) => {
                let (id, revision) = (id.clone(), args.model_revision.clone());
                tokio::task::spawn_blocking(move || {
                    huggingface::resolve_model_id(&id, revision.as_deref())
                })
                .await??
            }
            _ => model_dir,
        };
        if args.max_model_len == Some(0) {
            anyhow::bail!("--max_model_len must be at least 1");
        }
        if !(args.kv_cache_space > 0.0 && args.kv_cache_space.is_finite()) {
            anyhow::bail!(
                "--kv_cache_space must be a positive number of GiB, got {}",
                args.kv_cache_space
            );
        }
        let options = huggingface::LlmOptions {
            max_num_seqs: args.max_num_seqs,
            kv_cache_bytes: (args.kv_cache_space * (1u64 << 30) as f64) as usize,
            max_model_len: args.max_model_len,
            quantization: args.quantization,
        };
        let name = args.model_name.clone();
        tracing::info!(path = %path.display(), "Loading generative model");
        let generator =
            tokio::task::spawn_blocking(move || huggingface::load(&name, &path, &options))
                .await?
                .with_context(|| format!("cannot load generative model {:?}", args.model_name))?;
        DataPlane::with_generators(vec![], vec![Arc::new(generator)])
    } else {
        let model: Arc<dyn Model> = Arc::new(
            SklearnModel::load(&args.model_name, &model_dir, args.predict_proba)
                .with_context(|| format!("no runtime could load model {:?}", args.model_name))?,
        );
        DataPlane::new(vec![model])
    };
    let dp = Arc::new(dp);
    let addr = format!("{}:{}", args.host, args.http_port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, model = args.model_name, "Serving (v1, v2, OpenAI, /metrics)");
    tidal_modelserver::serve(listener, dp, tidal_modelserver::shutdown_signal()).await?;
    tracing::info!("Stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_flags_are_dropped_known_ones_kept() {
        let args: Vec<String> = [
            "tidal",
            "serve",
            "--model_name=iris",
            "--nthread=1",
            "--enable_docs_url",
            "true",
            "--http-port",
            "9000",
            "--grpc_port",
            "8081",
        ]
        .map(String::from)
        .to_vec();
        let (kept, dropped) = drop_unknown_flags(args);
        assert_eq!(
            kept,
            ["tidal", "serve", "--model_name=iris", "--http-port", "9000"]
        );
        assert_eq!(
            dropped,
            [
                "--nthread=1",
                "--enable_docs_url",
                "true",
                "--grpc_port",
                "8081"
            ]
        );
    }
}
