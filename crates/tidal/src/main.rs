//! `tidal`: KServe InferenceServices with KEDA-style autoscaling.

mod cmd_render;
mod cmd_serve;
mod kubectl;
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
    /// Serve one model over KServe's v1, the Open Inference Protocol v2 and, for generative
    /// models, the OpenAI API (what every replica runs).
    // A runtime's `--model_name={{.Name}}` comes before the user's own `--model_name`; the
    // last one wins, as with KServe's argparse.
    #[command(args_override_self = true)]
    Serve(cmd_serve::ServeArgs),
    /// Run the embedded control plane in the foreground: API, controller, replica supervisor.
    Up(UpArgs),
    /// Create or update objects from files (kubectl apply).
    Apply {
        /// Manifest file(s), or `-` for standard input.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        #[command(flatten)]
        conn: kubectl::Conn,
    },
    /// List objects, or show one (kubectl get). Kinds take kubectl's names: isvc, so, deploy, po, svc, hpa.
    Get {
        /// The kind.
        kind: String,
        /// An object name.
        name: Option<String>,
        /// yaml, json, wide, name or jsonpath=TEMPLATE.
        #[arg(short = 'o', long, default_value = "")]
        output: String,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[command(flatten)]
        conn: kubectl::Conn,
    },
    /// Show an object in detail with its events (kubectl describe).
    Describe {
        /// The kind.
        kind: String,
        /// The name.
        name: String,
        #[command(flatten)]
        conn: kubectl::Conn,
    },
    /// Delete objects by kind and name or from files; owned objects go with them.
    Delete {
        /// The kind.
        kind: Option<String>,
        /// The name.
        name: Option<String>,
        /// Manifest file(s).
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
        #[command(flatten)]
        conn: kubectl::Conn,
    },
    /// Print a replica's log (kubectl logs).
    Logs {
        /// The pod.
        pod: String,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        #[command(flatten)]
        conn: kubectl::Conn,
    },
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Where state, logs and downloaded models live.
    #[arg(long, env = "TIDAL_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// The API address.
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: std::net::SocketAddr,
    /// The gateway address: InferenceService traffic, routed by Host or `/serving/{ns}/{name}/`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway_listen: std::net::SocketAddr,
    /// Domain of InferenceService URLs (`http://{name}-{namespace}.{domain}`).
    #[arg(long, default_value = "example.com")]
    ingress_domain: String,
}

fn up(args: &UpArgs) -> anyhow::Result<std::process::ExitCode> {
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            let base = std::env::var_os("XDG_DATA_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| std::path::PathBuf::from(h).join(".local/share"))
                })
                .unwrap_or_else(std::env::temp_dir);
            base.join("tidal")
        }
    };
    let opts = tidal_control::daemon::Options {
        data_dir,
        listen: args.listen,
        gateway_listen: args.gateway_listen,
        ingress_domain: args.ingress_domain.clone(),
        tidal: std::env::current_exe()?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(tidal_control::daemon::run(
        opts,
        tidal_modelserver::shutdown_signal(),
    ))?;
    Ok(std::process::ExitCode::SUCCESS)
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
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
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
        Command::Up(args) => up(&args),
        Command::Apply { files, conn } => kubectl::apply(&conn, &files),
        Command::Get {
            kind,
            name,
            output,
            all_namespaces,
            selector,
            conn,
        } => {
            let output = if output.is_empty() {
                Ok(kubectl::Output::Table)
            } else {
                output
                    .parse::<kubectl::Output>()
                    .map_err(anyhow::Error::msg)
            };
            output.and_then(|o| {
                kubectl::get(
                    &conn,
                    &kind,
                    name.as_deref(),
                    &o,
                    all_namespaces,
                    selector.as_deref(),
                )
            })
        }
        Command::Describe { kind, name, conn } => kubectl::describe(&conn, &kind, &name),
        Command::Delete {
            kind,
            name,
            files,
            conn,
        } => kubectl::delete(&conn, kind.as_deref(), name.as_deref(), &files),
        Command::Logs { pod, tail, conn } => kubectl::logs(&conn, &pod, tail),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn a_repeated_serve_flag_takes_the_last_value_like_kserves_argparse() {
        // KServe's huggingfaceserver runtime passes --model_name={{.Name}} before the user's args.
        let cli = Cli::try_parse_from([
            "tidal",
            "serve",
            "--model_name=huggingface-fbopt",
            "--model_name=fbopt",
            "--model_id=facebook/opt-125m",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.model_name, "fbopt");
        assert_eq!(args.model_id.as_deref(), Some("facebook/opt-125m"));
    }
}
