//! The `surfaces` binary: parse arguments, load config, init tracing, start the runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use surfaces::config::Config;
use surfaces::ops::cli;

/// Talk to the AI agents of the Lambda platform from Matrix.
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
    },
    /// Exit 0 when the running bot is ready (its `/readyz` answers 200), 1 otherwise.
    HealthCheck {
        /// The ops endpoint's base URL (e.g. http://127.0.0.1:9797) instead of `ops.bind`.
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(Command::Status { url }) => {
            return cli::status_command(args.config.as_deref(), url.as_deref())
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
            return ExitCode::from(2);
        }
    };
    surfaces::telemetry::init(&config.log);
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
                std::process::exit(1);
            }
        }),
        Err(error) => {
            eprintln!("surfaces: cannot start the tokio runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match system.block_on(surfaces::runtime::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("fatal: {error:#}");
            eprintln!("surfaces: {error:#}");
            ExitCode::FAILURE
        }
    }
}
