//! The `momentum` binary: argument parsing and exit codes (0 ok, 2 bad usage or config,
//! 1 runtime failure). The only place that exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use momentum::app::App;
use momentum::config::Config;
use momentum::pipeline::clock::SystemClock;

/// Streaming telemetry processor: OTLP in, per-service SLIs, SLOs and delivery signals out.
#[derive(Parser)]
#[command(name = "momentum", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the processor (the default command).
    Run {
        /// Config file (YAML); without it the embedded default config is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a config file: prints `config ok`, or every problem with its key path (exit 2).
    Validate {
        /// Config file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command.unwrap_or(Command::Run { config: None }) {
        Command::Validate { config } => match Config::load(&config) {
            Ok(_) => {
                println!("config ok");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{}: {e}", config.display());
                }
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let cfg = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(errors) => {
                        for e in &errors {
                            eprintln!("{}: {e}", path.display());
                        }
                        return ExitCode::from(2);
                    }
                },
                None => Config::embedded_default(),
            };
            run(cfg)
        }
    }
}

fn run(cfg: Config) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOMENTUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("momentum: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let app = match App::start(cfg, Arc::new(SystemClock)).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("momentum: {e}");
                return ExitCode::from(1);
            }
        };
        println!(
            "momentum ready grpc={} http={} admin={}",
            app.grpc_addr, app.http_addr, app.admin_addr
        );
        tracing::info!(grpc = %app.grpc_addr, http = %app.http_addr, admin = %app.admin_addr, "listening");
        wait_for_signal().await;
        tracing::info!("shutting down");
        app.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
