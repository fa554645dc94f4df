//! The `huggingface` runtime for generative models: finds the weights (a model folder, a
//! GGUF file, or a Hugging Face repo id in the local hub cache), picks the architecture
//! (OPT or a Llama-family checkpoint by `config.json`'s `model_type`, a Llama-family GGUF
//! by its header), and starts a batching engine behind a [`TextGenerator`].

use std::path::{Path, PathBuf};

use serde_json::Value;
use tidal_llm::{ChatTemplate, EngineConfig, Opt, Tokenizer};

use crate::generative::TextGenerator;

/// Why a generative model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--model_id` is not in the local Hugging Face cache and downloads are off.
    #[error(
        "model_id {model_id:?} is not in the Hugging Face cache (looked in {looked}) and HF_HUB_OFFLINE forbids downloading it; fetch it with `huggingface-cli download {model_id}`, or pass --model_dir or a storageUri"
    )]
    NotCached {
        /// The repo id asked for.
        model_id: String,
        /// The cache folders searched.
        looked: String,
    },
    /// `--model_id` is not cached and could not be downloaded from the Hub.
    #[error(
        "model_id {model_id:?} is not in the Hugging Face cache (looked in {looked}) and downloading it from {endpoint} failed: {message}"
    )]
    Download {
        /// The repo id asked for.
        model_id: String,
        /// The cache folders searched.
        looked: String,
        /// The Hub's address (`HF_ENDPOINT`, default https://huggingface.co).
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The folder holds nothing Tidal can serve as a generative model.
    #[error("{0}")]
    Unsupported(String),
    /// Reading or parsing a model file failed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The model failed to load or start.
    #[error(transparent)]
    Llm(#[from] tidal_llm::Error),
    /// The engine could not start.
    #[error("{0}")]
    Engine(String),
}

/// Engine sizing from the server's flags.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    /// Most requests batched together.
    pub max_num_seqs: usize,
    /// KV cache budget in bytes.
    pub kv_cache_bytes: usize,
    /// Caps the model's context window (`--max_model_len`).
    pub max_model_len: Option<usize>,
    /// Quantize a float checkpoint's weights at load (`--quantization`).
    pub quantization: Option<Quantization>,
}

impl Default for LlmOptions {
    fn default() -> Self {
        let engine = EngineConfig::default();
        LlmOptions {
            max_num_seqs: engine.max_num_seqs,
            kv_cache_bytes: engine.kv_cache_bytes,
            max_model_len: None,
            quantization: None,
        }
    }
}

/// On-the-fly quantization of a float checkpoint (vLLM's `--quantization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// 8-bit weights in blocks of 32 with a scale each (GGML's Q8_0).
    Q8_0,
}

impl std::str::FromStr for Quantization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Quantization::Q8_0),
            other => Err(format!(
                "--quantization {other:?} is not supported (q8_0; GGUF files keep their own)"
            )),
        }
    }
}

/// Whether `dir` looks like a generative model (a GGUF file, or a transformers folder whose
/// config names a causal LM).
pub fn is_generative(dir: &Path) -> bool {
    if gguf_file(dir).is_some() {
        return true;
    }
    read_json(&dir.join("config.json")).is_ok_and(|config| {
        config["architectures"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().is_some_and(|s| s.ends_with("ForCausalLM")))
        }) || config["model_type"].is_string() && !dir.join("model.joblib").exists()
    })
}

/// The Hugging Face hub cache folders, in the order `huggingface_hub` consults them.
fn hub_cache_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("HF_HUB_CACHE") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("HUGGINGFACE_HUB_CACHE") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("HF_HOME") {
        dirs.push(PathBuf::from(d).join("hub"));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        dirs.push(PathBuf::from(d).join("huggingface").join("hub"));
    }
    if let Some(d) = std::env::var_os("HOME") {
        dirs.push(
            PathBuf::from(d)
                .join(".cache")
                .join("huggingface")
                .join("hub"),
        );
    }
    dirs
}

/// The snapshot folder of `model_id` in the local hub cache (`models--org--name/snapshots/
/// <commit>`, the commit read from `refs/<revision>`), or the folder itself when `model_id`
/// is a path. A repo that is not cached is downloaded from the Hub into the first cache
/// folder, as `huggingface-cli download` would, unless `HF_HUB_OFFLINE` is set.
pub fn resolve_model_id(model_id: &str, revision: Option<&str>) -> Result<PathBuf, LoadError> {
    let dirs = hub_cache_dirs();
    let local = Path::new(model_id).exists();
    let looks_like_path = model_id.starts_with('/') || model_id.starts_with('.');
    let offline = hub_offline() || looks_like_path || local;
    let cached = resolve_in(model_id, revision, &dirs);
    // A snapshot that lacks its weights (an interrupted download, or a
    // `huggingface-cli download repo config.json`) is completed when online.
    match cached {
        Ok(dir) if offline || dir.is_file() || snapshot_complete(&dir) => Ok(dir),
        Err(LoadError::NotCached { model_id, looked }) if looks_like_path => {
            Err(LoadError::Unsupported(format!(
                "--model_id {model_id:?} looks like a path but no such folder or .gguf file exists (and it was not looked up in {looked})"
            )))
        }
        Err(e @ LoadError::NotCached { .. }) if offline => Err(e),
        _ => {
            let looked = dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let endpoint =
                non_empty_env("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".to_owned());
            let cache = dirs.first().cloned().unwrap_or_else(|| PathBuf::from("."));
            download(model_id, revision, &cache, &endpoint).map_err(|message| LoadError::Download {
                model_id: model_id.to_owned(),
                looked,
                endpoint,
                message,
            })
        }
    }
}

/// `HF_HUB_OFFLINE` as huggingface_hub reads it.
fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// An environment variable, with empty meaning unset (as huggingface_hub reads them).
fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The Hub token as huggingface_hub finds it: `HF_TOKEN`, then the legacy
/// `HUGGING_FACE_HUB_TOKEN`, then the file `huggingface-cli login` writes (`HF_TOKEN_PATH`,
/// or `token` beside the hub cache folder).
fn hub_token(cache: &Path) -> Option<String> {
    non_empty_env("HF_TOKEN")
        .or_else(|| non_empty_env("HUGGING_FACE_HUB_TOKEN"))
        .or_else(|| {
            let file = non_empty_env("HF_TOKEN_PATH").map_or_else(
                || cache.parent().unwrap_or(Path::new(".")).join("token"),
                PathBuf::from,
            );
            std::fs::read_to_string(file)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        })
}

/// Whether a snapshot folder holds a complete model: a GGUF file, or a `config.json` with
/// weights (every shard an index names).
fn snapshot_complete(dir: &Path) -> bool {
    if gguf_file(dir).is_some() {
        return true;
    }
    if !dir.join("config.json").is_file() {
        return false;
    }
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .any(|f| dir.join(f).is_file())
        || [
            "model.safetensors.index.json",
            "pytorch_model.bin.index.json",
        ]
        .iter()
        .any(|index| {
            index_shards(&dir.join(index))
                .is_some_and(|shards| shards.iter().all(|s| dir.join(s).is_file()))
        })
}

/// The shard files a weight index (`*.index.json`) names, or `None` if it cannot be read.
fn index_shards(index: &Path) -> Option<Vec<String>> {
    let map = read_json(index).ok()?;
    let mut shards: Vec<String> = map["weight_map"]
        .as_object()?
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    shards.sort();
    shards.dedup();
    Some(shards)
}

/// Downloads what serving `model_id` needs into the hub cache folder `cache` with huggingface's
/// own Rust client (blobs, `snapshots/<commit>` links and `refs/<revision>`, the layout
/// `huggingface_hub` writes, so either tool reuses the other's files; files already there are
/// not fetched again), showing a progress bar per file on a terminal. Returns the snapshot
/// folder.
fn download(
    model_id: &str,
    revision: Option<&str>,
    cache: &Path,
    endpoint: &str,
) -> Result<PathBuf, String> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Cache, Repo, RepoType};
    // Built from an explicit cache: hf-hub's own defaults look up a home folder and panic
    // without one (containers often have none).
    let api = ApiBuilder::from_cache(Cache::new(cache.to_path_buf()))
        .with_endpoint(endpoint.to_owned())
        .with_token(hub_token(cache))
        .with_progress(true)
        .with_retries(3)
        .build()
        .map_err(|e| e.to_string())?;
    let revision = revision.unwrap_or("main").to_owned();
    let repo = api.repo(Repo::with_revision(
        model_id.to_owned(),
        RepoType::Model,
        revision.clone(),
    ));
    let info = repo.info().map_err(|e| e.to_string())?;
    let names: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let plan = files_to_download(&names)?;
    let cached = Cache::new(cache.to_path_buf()).repo(Repo::with_revision(
        model_id.to_owned(),
        RepoType::Model,
        revision.clone(),
    ));
    let get = |file: &str| {
        tracing::info!(model_id, file, "downloading from the Hugging Face Hub");
        let started = std::time::Instant::now();
        loop {
            match repo.get(file) {
                // Another process (a second replica) is downloading the same blob and holds
                // its lock; hf-hub gives up after 5 s. Wait for the file to appear in the
                // cache, asking again now and then in case that process died.
                Err(hf_hub::api::sync::ApiError::LockAcquisition(_))
                    if started.elapsed() < DOWNLOAD_LOCK_PATIENCE =>
                {
                    tracing::info!(model_id, file, "another process is downloading it; waiting");
                    for _ in 0..30 {
                        if let Some(path) = cached.get(file) {
                            return Ok(path);
                        }
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
                other => return other.map_err(|e| format!("{file}: {e}")),
            }
        }
    };
    let mut snapshot = None;
    for file in &plan.files {
        snapshot = get(file)?.parent().map(Path::to_path_buf);
    }
    if let Some(index) = plan.index {
        let path = get(index)?;
        let shards = index_shards(&path).ok_or_else(|| format!("{index}: no weight_map"))?;
        for shard in &shards {
            get(shard)?;
        }
        snapshot = path.parent().map(Path::to_path_buf);
    }
    snapshot.ok_or_else(|| "the repository lists no files".to_owned())
}

/// How long a download waits for another process fetching the same file.
const DOWNLOAD_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What to fetch from a Hub repository.
#[derive(Debug, PartialEq)]
struct DownloadPlan<'a> {
    /// Files fetched as they are.
    files: Vec<&'a str>,
    /// A weight index, fetched then followed: exactly the shards its `weight_map` names.
    index: Option<&'a str>,
}

/// Files of a Hub repository worth fetching to serve it: the configs, tokenizer (fast, or a
/// slow one's vocabulary and merges) and chat template, and one copy of the weights:
/// safetensors (`model.safetensors`, or the shards `model.safetensors.index.json` names),
/// else the repository's only GGUF file, else PyTorch's `pytorch_model.bin` or its index
/// (older repositories such as facebook/opt-* have nothing else). Other copies (Mistral's
/// `consolidated.safetensors`, TF and Flax weights, subfolders) are left on the Hub.
fn files_to_download<'a>(names: &[&'a str]) -> Result<DownloadPlan<'a>, String> {
    const METADATA: &[&str] = &[
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "vocab.json",
        "merges.txt",
    ];
    let has = |n: &str| names.contains(&n);
    let mut files: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| METADATA.contains(n))
        .collect();
    let ggufs: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !n.contains('/') && n.ends_with(".gguf"))
        .collect();
    let mut index = None;
    if has("model.safetensors") {
        files.push("model.safetensors");
    } else if has("model.safetensors.index.json") {
        index = Some("model.safetensors.index.json");
    } else {
        match ggufs.as_slice() {
            [one] => files.push(one),
            [] if has("pytorch_model.bin") => files.push("pytorch_model.bin"),
            [] if has("pytorch_model.bin.index.json") => {
                index = Some("pytorch_model.bin.index.json");
            }
            [] => {
                return Err(format!(
                    "the repository has no model.safetensors, GGUF or pytorch_model.bin weights (files: {}); Tidal reads those formats",
                    names.join(", ")
                ));
            }
            several => {
                return Err(format!(
                    "the repository holds several GGUF files ({}); download the one you want with `huggingface-cli download` and pass its path as --model_dir",
                    several.join(", ")
                ));
            }
        }
    }
    Ok(DownloadPlan { files, index })
}

/// [`resolve_model_id`] over the given cache folders.
fn resolve_in(
    model_id: &str,
    revision: Option<&str>,
    dirs: &[PathBuf],
) -> Result<PathBuf, LoadError> {
    let as_path = Path::new(model_id);
    if as_path.is_dir() || gguf_file(as_path).is_some() {
        return Ok(as_path.to_path_buf());
    }
    let folder = format!("models--{}", model_id.replace('/', "--"));
    let explicit_revision = revision.is_some();
    let revision = revision.unwrap_or("main");
    for cache in dirs {
        let repo = cache.join(&folder);
        let snapshots = repo.join("snapshots");
        if !snapshots.is_dir() {
            continue;
        }
        let commit = std::fs::read_to_string(repo.join("refs").join(revision))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| revision.to_owned());
        let snapshot = snapshots.join(&commit);
        if snapshot.is_dir() {
            return Ok(snapshot);
        }
        // No ref: a cache holding exactly one snapshot is unambiguous, unless the user asked
        // for a revision that is not it.
        if explicit_revision {
            continue;
        }
        let entries: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        if let [only] = entries.as_slice() {
            return Ok(only.clone());
        }
    }
    Err(LoadError::NotCached {
        model_id: model_id.to_owned(),
        looked: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn read_json(path: &Path) -> Result<Value, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::File {
        path: path.to_owned(),
        message: format!("invalid JSON: {e}"),
    })
}

/// The GGUF file `path`, or the GGUF files in the folder `path`.
fn gguf_files(path: &Path) -> Vec<PathBuf> {
    let is_gguf = |p: &Path| p.extension().is_some_and(|e| e == "gguf");
    if path.is_file() {
        return if is_gguf(path) {
            vec![path.to_path_buf()]
        } else {
            vec![]
        };
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| is_gguf(p))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Whether `path` is or holds a GGUF file.
fn gguf_file(path: &Path) -> Option<PathBuf> {
    gguf_files(path).into_iter().next()
}

/// A token's text in `tokenizer_config.json` (a string or `{"content": ...}`).
fn token_text(v: &Value) -> String {
    v.as_str()
        .or_else(|| v["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The chat template a transformers folder ships: `chat_template.jinja`, or the
/// `chat_template` of `tokenizer_config.json` (a string, or named templates of which
/// `default` is used).
fn folder_chat_template(dir: &Path) -> Result<Option<ChatTemplate>, LoadError> {
    let config = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
    let bos = token_text(&config["bos_token"]);
    let eos = token_text(&config["eos_token"]);
    template_source(dir)
        .map(|s| ChatTemplate::new(&s, &bos, &eos))
        .transpose()
        .map_err(LoadError::from)
}

/// The text of a transformers folder's chat template (see [`folder_chat_template`]).
fn template_source(dir: &Path) -> Option<String> {
    if let Ok(s) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Some(s);
    }
    let config = read_json(&dir.join("tokenizer_config.json")).ok()?;
    match &config["chat_template"] {
        Value::String(s) => Some(s.clone()),
        Value::Array(named) => named
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(str::to_owned),
        _ => None,
    }
}

/// The end-of-sequence ids a transformers folder declares (config and generation config).
fn folder_eos_ids(dir: &Path, config: &Value) -> Vec<u32> {
    let mut ids = Vec::new();
    let generation = read_json(&dir.join("generation_config.json")).unwrap_or(Value::Null);
    for v in [&config["eos_token_id"], &generation["eos_token_id"]] {
        match v {
            Value::Number(n) => ids.extend(n.as_u64().map(|n| n as u32)),
            Value::Array(a) => ids.extend(a.iter().filter_map(Value::as_u64).map(|n| n as u32)),
            _ => {}
        }
    }
    ids
}

/// Loads the generative model in `path` (a folder or a `.gguf` file) and starts serving it
/// as `name`.
pub fn load(name: &str, path: &Path, options: &LlmOptions) -> Result<TextGenerator, LoadError> {
    match gguf_files(path).as_slice() {
        [] => {}
        [gguf] => return load_gguf(name, gguf, options),
        several => {
            let names: Vec<String> = several.iter().map(|p| p.display().to_string()).collect();
            return Err(LoadError::Unsupported(format!(
                "{} holds several GGUF files ({}); split GGUF models are not supported, so point --model_dir at one file",
                path.display(),
                names.join(", ")
            )));
        }
    }
    let config = read_json(&path.join("config.json"))?;
    let model_type = config["model_type"].as_str().unwrap_or_default();
    match model_type {
        "opt" => {
            if options.quantization.is_some() {
                return Err(LoadError::Unsupported(
                    "--quantization applies to Llama-family checkpoints; OPT runs in f32".into(),
                ));
            }
            let model = Opt::load(path, &tidal_llm::Device::Cpu)?;
            let tokenizer = Tokenizer::from_dir(path)?;
            let template = folder_chat_template(path)?;
            let eos = folder_eos_ids(path, &config);
            start(name, model, options, eos, tokenizer, template)
        }
        t if tidal_llm::transformers::LLAMA_MODEL_TYPES.contains(&t) => {
            let model = load_llama(options, tidal_llm::WeightPrep::AsStored, |prep| {
                tidal_llm::Llama::load_transformers_with(path, prep)
            })?;
            tracing::info!(
                weights_mib = model.weight_bytes() >> 20,
                quantization = ?options.quantization,
                "Loaded a Llama-family checkpoint"
            );
            let tokenizer = Tokenizer::from_dir(path)?;
            let template = folder_chat_template(path)?;
            let mut eos = folder_eos_ids(path, &config);
            eos.extend(end_of_turn_ids(
                &tokenizer,
                template_source(path).as_deref(),
            ));
            start(name, model, options, eos, tokenizer, template)
        }
        other => Err(LoadError::Unsupported(format!(
            "{}: model_type {other:?} is not supported; Tidal serves opt, {} checkpoints and Llama-family GGUF files",
            path.join("config.json").display(),
            tidal_llm::transformers::LLAMA_MODEL_TYPES.join(", ")
        ))),
    }
}

/// Chat models end a turn with their template's end-of-turn token, which model configs do
/// not always name as EOS.
fn end_of_turn_ids(tokenizer: &Tokenizer, template: Option<&str>) -> Vec<u32> {
    ["<|im_end|>", "<|eot_id|>", "<|end|>"]
        .into_iter()
        .filter(|t| template.is_some_and(|s| s.contains(t)))
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect()
}

/// Loads a Llama with `load`, preparing its weights as `--quantization` asks (else `as_is`).
fn load_llama(
    options: &LlmOptions,
    as_is: tidal_llm::WeightPrep,
    load: impl FnOnce(tidal_llm::WeightPrep) -> tidal_llm::Result<tidal_llm::Llama>,
) -> Result<tidal_llm::Llama, LoadError> {
    let prep = match options.quantization {
        Some(Quantization::Q8_0) => tidal_llm::WeightPrep::QuantizeQ8,
        None => as_is,
    };
    Ok(load(prep)?)
}

fn load_gguf(name: &str, path: &Path, options: &LlmOptions) -> Result<TextGenerator, LoadError> {
    // Float tensors of a GGUF file (F16/BF16/F32) are quantized too when asked; quantized
    // ones keep their own format.
    let model = load_llama(options, tidal_llm::WeightPrep::Fast, |prep| {
        tidal_llm::Llama::load_with(path, prep)
    })?;
    let info = model
        .info()
        .cloned()
        .ok_or_else(|| LoadError::Unsupported(format!("{}: no GGUF header", path.display())))?;
    let tokenizer = Tokenizer::from_gguf(path)?;
    let token_text = |id: Option<u32>| {
        id.and_then(|id| tokenizer.inner().id_to_token(id))
            .unwrap_or_default()
    };
    let template = info
        .chat_template
        .as_deref()
        .map(|t| {
            ChatTemplate::new(
                t,
                &token_text(info.bos_token_id),
                &token_text(info.eos_token_id),
            )
        })
        .transpose()?;
    let mut eos: Vec<u32> = info.eos_token_id.into_iter().collect();
    eos.extend(end_of_turn_ids(&tokenizer, info.chat_template.as_deref()));
    start(name, model, options, eos, tokenizer, template)
}

/// Starts the engine for a loaded model, its context capped by `--max_model_len`.
fn start<M: tidal_llm::CausalLm>(
    name: &str,
    mut model: M,
    options: &LlmOptions,
    mut eos_token_ids: Vec<u32>,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
) -> Result<TextGenerator, LoadError> {
    eos_token_ids.sort_unstable();
    eos_token_ids.dedup();
    let config = EngineConfig {
        max_num_seqs: options.max_num_seqs,
        kv_cache_bytes: options.kv_cache_bytes,
        eos_token_ids,
        ..EngineConfig::default()
    };
    if let Some(max) = options.max_model_len {
        model.cap_context(max);
    }
    TextGenerator::start(name, model, config, tokenizer, template)
        .map_err(|e| LoadError::Engine(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_take_configs_tokenizer_and_one_copy_of_the_weights() {
        // Mistral-7B-v0.3: shards with an index, plus a consolidated copy for mistral-inference.
        let mistral = [
            ".gitattributes",
            "README.md",
            "config.json",
            "consolidated.safetensors",
            "generation_config.json",
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors",
            "model.safetensors.index.json",
            "params.json",
            "tokenizer.json",
            "tokenizer.model",
            "tokenizer_config.json",
        ];
        assert_eq!(
            files_to_download(&mistral).unwrap(),
            DownloadPlan {
                files: vec![
                    "config.json",
                    "generation_config.json",
                    "tokenizer.json",
                    "tokenizer_config.json"
                ],
                index: Some("model.safetensors.index.json"),
            }
        );
        let single = [
            "config.json",
            "model.safetensors",
            "onnx/model.onnx",
            "tokenizer.json",
        ];
        assert_eq!(
            files_to_download(&single).unwrap().files,
            ["config.json", "tokenizer.json", "model.safetensors"]
        );
        assert_eq!(
            files_to_download(&["README.md", "smol.Q4_1.gguf"])
                .unwrap()
                .files,
            ["smol.Q4_1.gguf"]
        );
        let several = files_to_download(&["a.Q4_0.gguf", "a.Q8_0.gguf"]).unwrap_err();
        assert!(several.contains("a.Q4_0.gguf, a.Q8_0.gguf"), "{several}");
        // facebook/opt-125m: a slow tokenizer and PyTorch weights, beside TF and Flax ones.
        let opt = [
            "config.json",
            "flax_model.msgpack",
            "generation_config.json",
            "merges.txt",
            "pytorch_model.bin",
            "special_tokens_map.json",
            "tf_model.h5",
            "tokenizer_config.json",
            "vocab.json",
        ];
        assert_eq!(
            files_to_download(&opt).unwrap().files,
            [
                "config.json",
                "generation_config.json",
                "merges.txt",
                "special_tokens_map.json",
                "tokenizer_config.json",
                "vocab.json",
                "pytorch_model.bin",
            ]
        );
        let none = files_to_download(&["config.json", "tf_model.h5"]).unwrap_err();
        assert!(none.contains("tf_model.h5"), "{none}");
    }

    #[test]
    fn a_snapshot_without_its_weights_is_incomplete() {
        let dir = std::env::temp_dir().join(format!("tidal-hf-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        assert!(!snapshot_complete(&dir));
        let index = r#"{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}"#;
        std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
        std::fs::write(dir.join("model-1.safetensors"), "").unwrap();
        assert!(!snapshot_complete(&dir), "one shard of two");
        std::fs::write(dir.join("model-2.safetensors"), "").unwrap();
        assert!(snapshot_complete(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn model_ids_resolve_through_refs_to_snapshots() {
        let home = std::env::temp_dir().join(format!("tidal-hf-{}", std::process::id()));
        let repo = home.join("hub").join("models--facebook--opt-125m");
        std::fs::create_dir_all(repo.join("snapshots").join("abc123")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots").join("old999")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123\n").unwrap();
        let dirs = [home.join("nowhere"), home.join("hub")];
        let found = resolve_in("facebook/opt-125m", None, &dirs);
        assert_eq!(found.unwrap(), repo.join("snapshots").join("abc123"));
        // An explicit revision that is not there is an error, not another snapshot.
        assert!(resolve_in("facebook/opt-125m", Some("v9"), &dirs).is_err());
        let missing = resolve_in("facebook/opt-350m", None, &dirs)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("facebook/opt-350m") && missing.contains("huggingface-cli download"),
            "{missing}"
        );
        std::fs::remove_dir_all(&home).unwrap();
    }
}
