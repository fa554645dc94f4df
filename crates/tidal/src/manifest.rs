//! Reading manifests: files or stdin, many documents each, every document decoded, defaulted and
//! validated, every problem kept with where it came from.

use std::fmt;
use std::io::Read;

use tidal_api::keda::TriggerAuthentication;
use tidal_api::{InferenceService, RawDocument, Report, ServingRuntime};

/// One object read from a manifest.
#[derive(Debug, Clone)]
pub enum Object {
    /// A defaulted InferenceService and what validation said about it.
    InferenceService(Box<InferenceService>, Report),
    /// A ServingRuntime or ClusterServingRuntime (extends the built-in set).
    ServingRuntime(Box<ServingRuntime>),
    /// A KEDA TriggerAuthentication (passed through).
    TriggerAuthentication(Box<TriggerAuthentication>),
}

/// A document that could not be read, and where it was.
#[derive(Debug, Clone)]
pub struct DocumentError {
    /// File name, or `STDIN`.
    pub source: String,
    /// 1-based document number in the file.
    pub document: usize,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error: {} (document {}): {}",
            self.source, self.document, self.message
        )
    }
}

/// Everything read from the given files.
#[derive(Debug, Default)]
pub struct Manifests {
    /// Objects, in the order read.
    pub objects: Vec<Object>,
    /// Documents that could not be read.
    pub errors: Vec<DocumentError>,
}

impl Manifests {
    /// The user's runtimes.
    pub fn runtimes(&self) -> impl Iterator<Item = &ServingRuntime> {
        self.objects.iter().filter_map(|o| match o {
            Object::ServingRuntime(r) => Some(r.as_ref()),
            _ => None,
        })
    }
}

/// Reads `-f` arguments: paths, or `-` for stdin.
pub fn read(files: &[String], namespace: Option<&str>) -> anyhow::Result<Manifests> {
    let mut out = Manifests::default();
    for file in files {
        let (source, text) = if file == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            ("STDIN".to_string(), s)
        } else {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("the path {file:?} cannot be read: {e}"))?;
            (file.clone(), text)
        };
        parse(&source, &text, namespace, &mut out);
    }
    Ok(out)
}

/// Parses one file's text into `out`.
pub fn parse(source: &str, text: &str, namespace: Option<&str>, out: &mut Manifests) {
    for doc in tidal_api::split_documents(text) {
        match doc {
            Err(e) => out.errors.push(DocumentError {
                source: source.into(),
                document: 1,
                message: e.to_string(),
            }),
            Ok(mut doc) => {
                if let (Some(ns), Some(meta)) = (namespace, doc.value.get_mut("metadata"))
                    && meta.get("namespace").is_none()
                {
                    meta["namespace"] = ns.into();
                }
                match decode(&doc) {
                    Ok(o) => out.objects.push(o),
                    Err(message) => out.errors.push(DocumentError {
                        source: source.into(),
                        document: doc.index + 1,
                        message,
                    }),
                }
            }
        }
    }
}

fn decode(doc: &RawDocument) -> Result<Object, String> {
    let err = |e: tidal_api::DecodeError| e.to_string();
    match (doc.api_version(), doc.kind()) {
        (tidal_api::inference_service::API_VERSION, "InferenceService") => {
            let mut isvc: InferenceService = tidal_api::from_document(doc).map_err(err)?;
            tidal_api::apply_defaults(&mut isvc);
            let report = tidal_api::validate(&isvc);
            Ok(Object::InferenceService(Box::new(isvc), report))
        }
        (tidal_api::serving_runtime::API_VERSION, "ServingRuntime" | "ClusterServingRuntime") => {
            let mut rt: ServingRuntime = tidal_api::from_document(doc).map_err(err)?;
            if !rt.is_cluster_scoped() && rt.metadata.namespace.is_none() {
                rt.metadata.namespace = Some(tidal_api::defaults::DEFAULT_NAMESPACE.into());
            }
            Ok(Object::ServingRuntime(Box::new(rt)))
        }
        (tidal_api::keda::API_VERSION, "TriggerAuthentication") => Ok(
            Object::TriggerAuthentication(Box::new(tidal_api::from_document(doc).map_err(err)?)),
        ),
        ("", _) | (_, "") => Err(tidal_api::from_document::<InferenceService>(doc)
            .err()
            .map(err)
            .unwrap_or_default()),
        (version, kind) => Err(format!(
            "resource mapping not found for name: {:?}: no matches for kind {kind:?} in version {version:?} \
             (Tidal reads InferenceService, ServingRuntime, ClusterServingRuntime and TriggerAuthentication)",
            doc.name()
        )),
    }
}

/// Formats a validation failure as the API server words it.
pub fn invalid_message(kind: &str, name: &str, report: &Report) -> String {
    let mut s = format!("The {kind} {name:?} is invalid:");
    if report.errors.len() == 1 {
        s.push(' ');
        s.push_str(&report.errors[0].to_string());
    } else {
        for e in &report.errors {
            s.push_str("\n* ");
            s.push_str(&e.to_string());
        }
    }
    s
}
