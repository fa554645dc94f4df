//! `tidal render` and `tidal validate`: the pure core, from the command line.

use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;
use tidal_api::ServingRuntime;

use crate::manifest::{self, Manifests, Object};
use crate::{Format, ManifestArgs, RenderArgs};

/// Prints warnings and errors of every document; true when all were valid.
fn report(m: &Manifests) -> bool {
    for e in &m.errors {
        eprintln!("{e}");
    }
    let mut ok = m.errors.is_empty();
    for o in &m.objects {
        if let Object::InferenceService(isvc, report) = o {
            let name = isvc.metadata.name.as_deref().unwrap_or_default();
            for w in &report.warnings {
                eprintln!("Warning: inferenceservice.serving.kserve.io/{name}: {w}");
            }
            if !report.is_valid() {
                eprintln!(
                    "error: {}",
                    manifest::invalid_message("InferenceService", name, report)
                );
                ok = false;
            }
        }
    }
    ok
}

pub fn validate(args: &ManifestArgs) -> anyhow::Result<ExitCode> {
    let m = manifest::read(&args.files, args.namespace.as_deref())?;
    let ok = report(&m);
    let mut out = std::io::stdout().lock();
    for o in &m.objects {
        let (resource, name, valid) = match o {
            Object::InferenceService(i, r) => (
                "inferenceservice.serving.kserve.io",
                i.metadata.name.clone(),
                r.is_valid(),
            ),
            Object::ServingRuntime(r) => (
                if r.is_cluster_scoped() {
                    "clusterservingruntime.serving.kserve.io"
                } else {
                    "servingruntime.serving.kserve.io"
                },
                r.metadata.name.clone(),
                true,
            ),
            Object::TriggerAuthentication(t) => (
                "triggerauthentication.keda.sh",
                t.metadata.name.clone(),
                true,
            ),
        };
        if valid {
            writeln!(out, "{resource}/{} valid", name.unwrap_or_default())?;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let m = manifest::read(&args.manifests.files, args.manifests.namespace.as_deref())?;
    let mut ok = report(&m);
    let config = tidal_render::Config {
        ingress_domain: args.ingress_domain.clone(),
        ..Default::default()
    };
    let mut runtimes: Vec<ServingRuntime> = m.runtimes().cloned().collect();
    runtimes.extend(tidal_render::builtin_runtimes().iter().cloned());

    let mut objects: Vec<Value> = Vec::new();
    for o in &m.objects {
        match o {
            Object::InferenceService(isvc, report) if report.is_valid() => {
                match tidal_render::render(isvc, &runtimes, &config) {
                    Ok(desired) => objects.extend(desired.objects()),
                    Err(e) => {
                        let name = isvc.metadata.name.as_deref().unwrap_or_default();
                        eprintln!(
                            "error: inferenceservice.serving.kserve.io/{name}: {}: {e}",
                            e.reason()
                        );
                        ok = false;
                    }
                }
            }
            Object::TriggerAuthentication(t) => objects.push(serde_json::to_value(t)?),
            _ => {}
        }
    }
    print_objects(&objects, args.output)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// YAML documents separated by `---`, or one JSON `List` as kubectl prints several objects.
pub fn print_objects(objects: &[Value], format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Yaml => {
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write!(out, "{}", serde_norway::to_string(o)?)?;
            }
        }
        Format::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {}});
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
    }
    Ok(())
}
