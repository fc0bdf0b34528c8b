//! The `momentum` binary: argument parsing and exit codes (0 ok, 2 bad usage or config,
//! 1 runtime failure). The only place that exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use momentum::app::App;
use momentum::config::Config;
use momentum::pipeline::clock::SystemClock;
use momentum::report;

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
    /// Run the processor with a built-in synthetic fleet sending to it over OTLP: two days
    /// of history replayed (releases, CI runs, a canary, a bad release, its incident and
    /// rollback), then live traffic. Prints the dashboard URL.
    Demo {
        /// Config file (YAML); without it the embedded default config, with the archive in
        /// a fresh temporary directory (the replay needs an archive without older state).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a config file: prints `config ok`, or every problem with its key path (exit 2).
    Validate {
        /// Config file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Offline analysis of a Parquet archive: per service, environment and UTC day,
    /// requests, errors, availability, p99, the momentum index and its components,
    /// deployments and change failure, incidents and time to restore.
    Report {
        /// The archive directory (`archive.dir` of the config).
        #[arg(long)]
        archive: PathBuf,
        /// First instant included: a date (2026-11-01, UTC midnight), an RFC 3339 time, or
        /// a duration before now (7d).
        #[arg(long)]
        from: Option<String>,
        /// First instant excluded: an RFC 3339 time, a duration before now, or a date (that
        /// whole day included).
        #[arg(long)]
        to: Option<String>,
        /// Only this service (exact name, `namespace/name` when namespaced).
        #[arg(long)]
        service: Option<String>,
        /// Output format; html is one self-contained page with charts.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Write the report to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Send synthetic OTLP traces of a fleet of services to any OTLP endpoint: a progress
    /// line a second on stderr, the summary (spans the endpoint accepted) on stdout.
    Loadgen {
        /// The OTLP receiver: http://host:4317 for gRPC, http://host:4318 for OTLP/HTTP
        /// (https:// verifies against the system roots).
        #[arg(long)]
        endpoint: String,
        /// Spans a second; without it, as fast as the endpoint answers.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// How long to send (10s, 2m, …).
        #[arg(long, default_value = "10s")]
        duration: String,
        /// Services in the fleet.
        #[arg(long, default_value_t = 4)]
        services: usize,
        /// Wire protocol.
        #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
        protocol: Protocol,
        /// Spans a request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Protocol {
    Grpc,
    Http,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Csv,
    Html,
}

/// Heap in use is counted for `pipeline.memory_limit_mib` (see `momentum::alloc`).
#[global_allocator]
static ALLOCATOR: momentum::alloc::Counting = momentum::alloc::Counting;

fn main() -> ExitCode {
    momentum::alloc::counting_installed();
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
            Ok(c) => {
                // What `run` would refuse beyond the config's own rules: files, clients.
                let problems = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(async { momentum::app::check(&c) }),
                    Err(e) => {
                        eprintln!("cannot start a runtime: {e}");
                        return ExitCode::from(1);
                    }
                };
                if problems.is_empty() {
                    println!("config ok");
                    ExitCode::SUCCESS
                } else {
                    for e in &problems {
                        eprintln!("{}: {e}", config.display());
                    }
                    ExitCode::from(2)
                }
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{}: {e}", config.display());
                }
                ExitCode::from(2)
            }
        },
        Command::Report {
            archive,
            from,
            to,
            service,
            format,
            out,
        } => run_report(archive, from, to, service, format, out),
        Command::Loadgen {
            endpoint,
            rate,
            duration,
            services,
            protocol,
            batch,
            concurrency,
        } => {
            let duration = match duration.parse::<momentum::config::Duration>() {
                Ok(d) => std::time::Duration::from_nanos(d.as_nanos()),
                Err(e) => {
                    eprintln!("momentum: --duration {duration:?}: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = momentum::loadgen::Options {
                endpoint,
                protocol: match protocol {
                    Protocol::Grpc => momentum::config::OtlpProtocol::Grpc,
                    Protocol::Http => momentum::config::OtlpProtocol::Http,
                },
                rate,
                duration,
                services,
                batch,
                concurrency,
            };
            run_loadgen(&opts)
        }
        Command::Run { config } => match load(config) {
            Ok(cfg) => run(cfg, false),
            Err(code) => code,
        },
        Command::Demo { config } => {
            let fresh = config.is_none();
            match load(config) {
                Ok(mut cfg) => {
                    if fresh {
                        cfg.archive.dir = std::env::temp_dir()
                            .join(format!("momentum-demo-{}", std::process::id()));
                    }
                    run(cfg, true)
                }
                Err(code) => code,
            }
        }
    }
}

/// The config file, or the embedded default without one; exit 2 listing every problem.
fn load(config: Option<PathBuf>) -> Result<Config, ExitCode> {
    match config {
        Some(path) => Config::load(&path).map_err(|errors| {
            for e in &errors {
                eprintln!("{}: {e}", path.display());
            }
            ExitCode::from(2)
        }),
        None => Ok(Config::embedded_default()),
    }
}

fn run_report(
    archive: PathBuf,
    from: Option<String>,
    to: Option<String>,
    service: Option<String>,
    format: ReportFormat,
    out: Option<PathBuf>,
) -> ExitCode {
    let fail = |e: report::ReportError| {
        eprintln!("momentum report: {e}");
        ExitCode::from(if e.is_usage() { 2 } else { 1 })
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let parse = |flag, v: &Option<String>, end| {
        v.as_deref()
            .map(|s| report::parse_time(flag, s, end, now_ms))
            .transpose()
    };
    let (from_ms, to_ms) = match (parse("--from", &from, false), parse("--to", &to, true)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let format = match format {
        ReportFormat::Table => report::Format::Table,
        ReportFormat::Json => report::Format::Json,
        ReportFormat::Csv => report::Format::Csv,
        ReportFormat::Html => report::Format::Html,
    };
    let opts = report::Options {
        archive,
        from_ms,
        to_ms,
        service,
    };
    let text = match report::run(&opts, format) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let written = match &out {
        Some(path) => std::fs::write(path, text).map_err(|e| (path.display().to_string(), e)),
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| ("stdout".to_string(), e))
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err((what, e)) => {
            eprintln!("momentum report: cannot write {what}: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cfg: Config, demo: bool) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOMENTUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let archive_dir = cfg.archive.dir.clone();
    rt.block_on(async move {
        // Signal handlers first: a SIGTERM sent right after the ready line must reach the
        // graceful shutdown, not the default action.
        let signals = Signals::install();
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
        let fleet = demo.then(|| {
            let story = momentum::demo::Story::new(momentum::loadgen::now_ns());
            println!(
                "momentum demo: dashboard http://{}/ (services {}; archive {})",
                app.admin_addr,
                story.services().collect::<Vec<_>>().join(", "),
                archive_dir.display(),
            );
            let endpoint: http::Uri = format!("http://{}", app.grpc_addr)
                .parse()
                .expect("a socket address is a URI authority");
            tokio::spawn(async move {
                let counts = momentum::loadgen::Counts::default();
                if let Err(e) = momentum::demo::run(&endpoint, story, &counts).await {
                    tracing::error!("demo fleet: {e}");
                }
            })
        });
        signals.wait(&app).await;
        if let Some(f) = fleet {
            f.abort();
        }
        tracing::info!("shutting down");
        app.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// The multi-threaded tokio runtime, or the exit code of a failure to start it.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("momentum: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

fn run_loadgen(opts: &momentum::loadgen::Options) -> ExitCode {
    use std::sync::atomic::Ordering;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let progress = |c: &momentum::loadgen::Counts, t: std::time::Duration| {
        let sent = c.sent.load(Ordering::Relaxed);
        eprintln!(
            "loadgen: {:>5.1} s  sent {sent} spans ({:.0}/s)  refused {}  retried {}  failed {}",
            t.as_secs_f64(),
            sent as f64 / t.as_secs_f64().max(1e-9),
            c.refused.load(Ordering::Relaxed),
            c.retried.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
        );
    };
    match rt.block_on(momentum::loadgen::run(opts, progress)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("momentum: {e}");
            ExitCode::from(2)
        }
    }
}

/// SIGTERM and SIGINT (shutdown) and SIGHUP (re-read certificates and token files),
/// registered before the process says it is ready.
struct Signals(Option<[tokio::signal::unix::Signal; 3]>);

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Signals(Some([term, int, hup])),
            _ => Signals(None),
        }
    }

    /// Waits for SIGTERM or SIGINT, reloading on every SIGHUP meanwhile.
    async fn wait(self, app: &App) {
        let Some([mut term, mut int, mut hup]) = self.0 else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading certificates and tokens");
                    app.reload();
                }
            }
        }
    }
}
