//! The `surfaces` binary: parse arguments, load config, init tracing, wire the messengers,
//! the runtime, the ops endpoint and the shutdown signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use surfaces::config::Config;
use surfaces::matrix::connector::MatrixConnector;
use surfaces::ops::cli;
use surfaces::surface::EXIT_INVALID_CREDENTIALS;
use surfaces::telegram::TelegramConnector;

#[global_allocator]
static ALLOC: surfaces::allocator::Allocator = surfaces::allocator::ALLOCATOR;

/// Talk to the AI agents of the Lambda platform from Matrix and Telegram.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Config file (TOML). Default: config/surfaces.toml when it exists.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What to do; without a command, `run`.
#[derive(Subcommand)]
enum Command {
    /// Run the bot (the default).
    Run,
    /// Print the running bot's status as tables (asks its ops endpoint at `ops.bind`).
    Status {
        /// The ops endpoint's base URL (e.g. http://127.0.0.1:9797) instead of `ops.bind`.
        #[arg(long)]
        url: Option<String>,
        /// Print one room's story instead (binding, actor, restarts, recent messages).
        #[arg(long)]
        room: Option<String>,
    },
    /// Exit 0 when the running bot is ready (its `/readyz` answers 200), 1 otherwise.
    HealthCheck {
        /// The ops endpoint's base URL (e.g. http://127.0.0.1:9797) instead of `ops.bind`.
        #[arg(long)]
        url: Option<String>,
    },
}

/// Exit code of a configuration error.
const EXIT_CONFIG: u8 = 2;
/// Exit code of any other failure before the runtime runs.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(Command::Status { url, room: None }) => {
            return cli::status_command(args.config.as_deref(), url.as_deref())
        }
        Some(Command::Status {
            url,
            room: Some(room),
        }) => {
            return surfaces::ops::room_cli::room_status_command(
                args.config.as_deref(),
                url.as_deref(),
                &room,
            )
        }
        Some(Command::HealthCheck { url }) => {
            return cli::health_check_command(args.config.as_deref(), url.as_deref())
        }
        Some(Command::Run) | None => {}
    }
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("surfaces: configuration error:\n{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    surfaces::telemetry::init(&config.log);
    if let Err(error) = surfaces::allocator::settle() {
        tracing::warn!(%error, "cannot turn transparent huge pages off; memory use may be higher");
    }
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let system = match runtime() {
        Ok(_) => actix::System::with_tokio_rt(|| match runtime() {
            Ok(rt) => rt,
            Err(error) => {
                eprintln!("surfaces: cannot start the tokio runtime: {error}");
                std::process::exit(EXIT_FAILURE.into());
            }
        }),
        Err(error) => {
            eprintln!("surfaces: cannot start the tokio runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    system.block_on(run(config))
}

/// Connects to the configured messengers, starts the runtime and the ops endpoint, runs
/// until a signal.
async fn run(config: Config) -> ExitCode {
    let mut connectors: Vec<Box<dyn surfaces::surface::Connector>> = Vec::new();
    if config.matrix_enabled() {
        match MatrixConnector::connect(&config).await {
            Ok(matrix) => connectors.push(Box::new(matrix)),
            Err(error) => {
                let rejected = error.is_invalid_token();
                return cannot_connect("the homeserver", error, rejected);
            }
        }
    }
    if let Some(telegram) = &config.telegram {
        match TelegramConnector::connect(telegram, &config.data_dir).await {
            Ok(connector) => connectors.push(Box::new(connector)),
            Err(error) => {
                let rejected = error.is_unauthorized();
                return cannot_connect("Telegram", error, rejected);
            }
        }
    }
    let running = match surfaces::runtime::start(config.clone(), connectors).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!("fatal: {error:#}");
            eprintln!("surfaces: {error:#}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if let Err(error) =
        surfaces::ops::spawn(&config.ops, running.view(), running.supervisor()).await
    {
        tracing::error!("fatal: starting the ops endpoint: {error}");
        eprintln!("surfaces: starting the ops endpoint: {error}");
        return running.run_until(std::future::ready(())).await;
    }
    running.run_until(shutdown_signal()).await
}

/// A messenger could not be reached at start-up: said to the log and stderr; exit code 3 when
/// it rejected the bot's credentials (restarting cannot help), else 1.
fn cannot_connect(messenger: &str, error: impl std::fmt::Display, rejected: bool) -> ExitCode {
    tracing::error!("fatal: connecting to {messenger}: {error}");
    eprintln!("surfaces: connecting to {messenger}: {error}");
    ExitCode::from(if rejected {
        EXIT_INVALID_CREDENTIALS
    } else {
        EXIT_FAILURE
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the bot");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
