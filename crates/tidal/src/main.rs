//! `tidal`: KServe InferenceServices with KEDA-style autoscaling.

mod cmd_render;
mod cmd_serve;
mod manifest;

use clap::{Parser, Subcommand, ValueEnum};

/// KServe InferenceServices with KEDA-style autoscaling, on one machine or on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "tidal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the objects KServe would create for InferenceServices (Deployment, Service, and a
    /// KEDA ScaledObject or an HPA per component).
    Render(RenderArgs),
    /// Check InferenceServices as KServe's webhook and the CRD schema would; exit non-zero with
    /// every error otherwise.
    Validate(ManifestArgs),
    /// Serve one model over KServe's v1 and the Open Inference Protocol v2 (what every replica
    /// runs).
    Serve(cmd_serve::ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ManifestArgs {
    /// Manifest file(s), or `-` for standard input; each may hold several YAML documents.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Namespace for objects that name none.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

#[derive(Debug, clap::Args)]
struct RenderArgs {
    #[command(flatten)]
    manifests: ManifestArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Yaml)]
    output: Format,
    /// Domain of the InferenceService URLs (`http://{name}-{namespace}.{domain}`).
    #[arg(long, default_value = "example.com")]
    ingress_domain: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let (args, dropped) = cmd_serve::drop_unknown_flags(std::env::args().collect());
    if !dropped.is_empty() {
        tracing::warn!(?dropped, "Ignoring flags tidal serve does not know");
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Render(args) => cmd_render::render(&args),
        Command::Validate(args) => cmd_render::validate(&args),
        Command::Serve(args) => cmd_serve::serve(&args).map(|()| std::process::ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
