//! Logging: tracing-subscriber with an env filter, pretty or JSON (config `log`).
//!
//! `RUST_LOG`, when set, overrides `log.filter`. Secrets never reach the log: config
//! secrets redact themselves, and no code logs tokens.
//!
//! Quiet by default: matrix-sdk logs every failed request at ERROR, including the 404s it
//! expects (an account-data key or a key backup that does not exist yet, as at every first
//! start); [`quiet`] drops those unless the filter names `matrix_sdk` itself. A 404 that
//! matters reaches our code as an error, which logs it with its context.
//!
//! [`trends`]: the last hour of the metrics, minute by minute, for the charts of `/status`.

pub mod quiet;
pub mod trends;

use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber (once; later calls are no-ops).
pub fn init(log: &LogConfig) {
    let text = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_else(|_| log.filter.clone());
    let filter = EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new("info"));
    let quiet = quiet::ExpectedNotFound::unless_named_in(&text);
    let layer = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter.and(quiet)))
        .try_init();
}
