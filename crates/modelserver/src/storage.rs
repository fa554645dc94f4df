//! Where a model comes from: a local path, `file://`, `http(s)://`, `gs://` or `s3://`, as
//! KServe's storage initializer understands them. Remote models are downloaded into a local
//! folder with a progress bar; credentials come from the usual environment (AWS_*, S3_ENDPOINT,
//! GOOGLE_APPLICATION_CREDENTIALS) and access is anonymous without them. Every network step has a
//! timeout, so unreachable storage is an error, not a hang.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt};

/// Why a model could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URI names a scheme Tidal cannot read.
    #[error(
        "storage URI {uri:?} is not supported: use a local path, file://, http://, https://, gs:// or s3://"
    )]
    Unsupported {
        /// The URI.
        uri: String,
    },
    /// A local path does not exist.
    #[error("model path {0} does not exist")]
    NotFound(PathBuf),
    /// The store could not be reached or refused.
    #[error("cannot download {uri}: {source}")]
    Remote {
        /// The URI.
        uri: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// Nothing under the prefix.
    #[error("no objects found under {0}")]
    Empty(String),
    /// Writing the download failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Network timeouts for storage access.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting to the store.
    pub connect: Duration,
    /// One request (listing, or reading a chunk).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(300),
        }
    }
}

/// Resolves `uri` to a local path, downloading into `download_dir` when it is remote.
pub async fn fetch(
    uri: &str,
    download_dir: &Path,
    timeouts: Timeouts,
) -> Result<PathBuf, StorageError> {
    if let Some(path) = uri.strip_prefix("file://") {
        return local(Path::new(path));
    }
    if !uri.contains("://") {
        return local(Path::new(uri));
    }
    let options = ClientOptions::new()
        .with_connect_timeout(timeouts.connect)
        .with_timeout(timeouts.request);
    let remote = |source| StorageError::Remote {
        uri: uri.to_string(),
        source,
    };
    let (store, prefix): (Arc<dyn ObjectStore>, String) = if let Some(rest) =
        uri.strip_prefix("s3://")
    {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(options);
        // KServe's variable for S3-compatible stores (MinIO and friends).
        if let Ok(endpoint) =
            std::env::var("S3_ENDPOINT").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        {
            let endpoint = if endpoint.contains("://") {
                endpoint
            } else {
                let scheme = if std::env::var("S3_USE_HTTPS").as_deref() == Ok("0") {
                    "http"
                } else {
                    "https"
                };
                format!("{scheme}://{endpoint}")
            };
            if endpoint.starts_with("http://") {
                b = b.with_allow_http(true);
            }
            b = b
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
            b = b.with_skip_signature(true);
        }
        if std::env::var("AWS_DEFAULT_REGION").is_err() && std::env::var("AWS_REGION").is_err() {
            b = b.with_region("us-east-1");
        }
        (Arc::new(b.build().map_err(remote)?), prefix.to_string())
    } else if let Some(rest) = uri.strip_prefix("gs://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(options);
        if std::env::var("GOOGLE_APPLICATION_CREDENTIALS").is_err()
            && std::env::var("GOOGLE_SERVICE_ACCOUNT").is_err()
        {
            b = b.with_skip_signature(true);
        }
        (Arc::new(b.build().map_err(remote)?), prefix.to_string())
    } else if uri.starts_with("http://") || uri.starts_with("https://") {
        // One file: the store is the URL's directory, the object its last segment.
        let (base, file) = uri.rsplit_once('/').unwrap_or((uri, ""));
        let store = object_store::http::HttpBuilder::new()
            .with_url(base)
            .with_client_options(options.with_allow_http(true))
            .build()
            .map_err(remote)?;
        std::fs::create_dir_all(download_dir).map_err(|source| StorageError::Io {
            path: download_dir.into(),
            source,
        })?;
        let target = download_dir.join(file);
        download(&store, &ObjectPath::from(file), &target, uri).await?;
        return Ok(download_dir.to_path_buf());
    } else {
        return Err(StorageError::Unsupported {
            uri: uri.to_string(),
        });
    };

    let prefix = prefix.trim_end_matches('/').to_string();
    let prefix_path = ObjectPath::from(prefix.as_str());
    let mut listing = store.list(Some(&prefix_path));
    let mut objects = Vec::new();
    while let Some(meta) = listing.next().await {
        objects.push(meta.map_err(remote)?);
    }
    if objects.is_empty() {
        // The URI may name a single object rather than a prefix.
        let meta = store
            .head(&prefix_path)
            .await
            .map_err(|_| StorageError::Empty(uri.to_string()))?;
        objects.push(meta);
    }
    for meta in objects {
        let relative = meta
            .location
            .as_ref()
            .strip_prefix(prefix.as_str())
            .unwrap_or(meta.location.as_ref());
        let relative = relative.trim_start_matches('/');
        let target = if relative.is_empty() {
            download_dir.join(meta.location.filename().unwrap_or("model"))
        } else {
            download_dir.join(relative)
        };
        download(store.as_ref(), &meta.location, &target, uri).await?;
    }
    Ok(download_dir.to_path_buf())
}

fn local(path: &Path) -> Result<PathBuf, StorageError> {
    if path.exists() {
        Ok(path.to_path_buf())
    } else {
        Err(StorageError::NotFound(path.to_path_buf()))
    }
}

async fn download(
    store: &dyn ObjectStore,
    location: &ObjectPath,
    target: &Path,
    uri: &str,
) -> Result<(), StorageError> {
    let io = |source| StorageError::Io {
        path: target.to_path_buf(),
        source,
    };
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let result = store
        .get(location)
        .await
        .map_err(|source| StorageError::Remote {
            uri: uri.to_string(),
            source,
        })?;
    let size = result.meta.size;
    let bar = progress_bar(size, location.as_ref());
    let partial = target.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
    let mut stream = result.into_stream();
    use tokio::io::AsyncWriteExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| StorageError::Remote {
            uri: uri.to_string(),
            source,
        })?;
        file.write_all(&chunk).await.map_err(io)?;
        bar.inc(chunk.len() as u64);
    }
    file.flush().await.map_err(io)?;
    tokio::fs::rename(&partial, target).await.map_err(io)?;
    bar.finish_and_clear();
    tracing::info!(object = %location, bytes = size, "Downloaded");
    Ok(())
}

/// A byte progress bar on a terminal; hidden otherwise (logs say when each file is done).
fn progress_bar(size: u64, name: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(name.to_string());
    bar
}
