//! The `surfaces` binary: parse arguments, load config, init tracing, start the runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use surfaces::config::Config;

/// Talk to the AI agents of the Lambda platform from Matrix.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Config file (TOML). Default: config/surfaces.toml when it exists.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
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
