//! Drops the "not found" errors matrix-sdk expects.
//!
//! Why this exists: matrix-sdk's HTTP client logs every failed request at ERROR inside its
//! `send` span, whose `status` field it records once the answer is in. At every first start
//! that is half a dozen 404s it expects (secret storage, cross-signing keys and the key
//! backup do not exist yet) — errors an operator cannot act on, which hide the ones they
//! can. `EnvFilter` cannot turn off events a broader directive enables, so this per-layer
//! filter remembers each `send` span's status and drops the ERROR events inside a 404.
//! A filter that names `matrix_sdk` itself keeps everything (the operator asked for it).

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

/// matrix-sdk's HTTP client (its `send` span and its failure events).
const SDK_HTTP_TARGET: &str = "matrix_sdk::http_client";
/// The span around one request.
const SEND_SPAN: &str = "send";
/// The span field holding the answer's HTTP status.
const STATUS_FIELD: &str = "status";
/// The status that is expected.
const NOT_FOUND: u64 = 404;

/// The filter (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct ExpectedNotFound {
    active: bool,
}

impl ExpectedNotFound {
    /// Active unless the log filter `text` names `matrix_sdk`.
    pub fn unless_named_in(text: &str) -> Self {
        Self {
            active: !text.contains("matrix_sdk"),
        }
    }
}

/// Marks a `send` span whose request ended in a 404.
struct NotFound;

/// Finds `status = 404` among recorded fields.
#[derive(Default)]
struct StatusVisitor {
    not_found: bool,
}

impl Visit for StatusVisitor {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == STATUS_FIELD {
            self.not_found = value == NOT_FOUND;
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == STATUS_FIELD {
            self.not_found = value == 404;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == STATUS_FIELD {
            self.not_found = format!("{value:?}").starts_with("404");
        }
    }
}

impl ExpectedNotFound {
    fn is_send_span(&self, metadata: &Metadata<'_>) -> bool {
        self.active && metadata.target() == SDK_HTTP_TARGET && metadata.name() == SEND_SPAN
    }

    fn mark<S: Subscriber + for<'a> LookupSpan<'a>>(
        &self,
        id: &Id,
        not_found: bool,
        ctx: &Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if not_found {
                extensions.replace(NotFound);
            } else {
                extensions.remove::<NotFound>();
            }
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for ExpectedNotFound {
    fn enabled(&self, _metadata: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if !self.active || metadata.target() != SDK_HTTP_TARGET || *metadata.level() != Level::ERROR
        {
            return true;
        }
        let Some(scope) = cx.event_scope(event) else {
            return true;
        };
        !scope
            .into_iter()
            .any(|span| span.extensions().get::<NotFound>().is_some())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.is_send_span(attrs.metadata()) {
            let mut visitor = StatusVisitor::default();
            attrs.record(&mut visitor);
            self.mark(id, visitor.not_found, &ctx);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        if self.is_send_span(span.metadata()) {
            let mut visitor = StatusVisitor::default();
            values.record(&mut visitor);
            drop(span);
            if visitor.not_found {
                self.mark(id, true, &ctx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer};

    use super::ExpectedNotFound;

    /// Counts the events that pass its filter.
    struct Count(Arc<Mutex<usize>>);

    impl<S: tracing::Subscriber> Layer<S> for Count {
        fn on_event(
            &self,
            _event: &tracing::Event<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            *self.0.lock().unwrap() += 1;
        }
    }

    /// An ERROR from matrix-sdk's HTTP client inside its `send` span, whose `status` is
    /// recorded after the span starts (as matrix-sdk does).
    fn sdk_error(status: u16) {
        let span = tracing::error_span!(target: "matrix_sdk::http_client", "send",
            status = tracing::field::Empty);
        span.record("status", status);
        let _entered = span.enter();
        tracing::error!(target: "matrix_sdk::http_client", "Error while sending request");
    }

    #[test]
    fn expected_not_found_errors_of_matrix_sdk_are_quiet() {
        // (filter, status, sdk error logged)
        let table = [
            ("info", 404, false),
            ("info", 500, true),
            ("info", 429, true),
            ("info,matrix_sdk=debug", 404, true),
        ];
        for (text, status, logged) in table {
            let count = Arc::new(Mutex::new(0));
            let filter = tracing_subscriber::filter::FilterExt::and(
                EnvFilter::new(text),
                ExpectedNotFound::unless_named_in(text),
            );
            let subscriber =
                tracing_subscriber::registry().with(Count(count.clone()).with_filter(filter));
            tracing::subscriber::with_default(subscriber, || {
                sdk_error(status);
                tracing::error!(target: "surfaces::matrix", "our own error");
            });
            let expected = if logged { 2 } else { 1 };
            assert_eq!(*count.lock().unwrap(), expected, "{text} {status}");
        }
    }
}
