//! `tidal`: KServe InferenceServices with KEDA-style autoscaling.

mod cmd_render;
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render(args) => cmd_render::render(&args),
        Command::Validate(args) => cmd_render::validate(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
