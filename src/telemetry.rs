//! OpenTelemetry traces (docs/observability.md): the proxy's spans are
//! `tracing` spans of target `cachecar::otel` (`proxy/span.rs`); here they
//! become OpenTelemetry spans (`tracing-opentelemetry`) exported over
//! OTLP/HTTP by the SDK's batch processor on the tokio runtime.
//!
//! Export never holds up a request: ending a span is a queue push, and a
//! full queue drops the span (counted in `trace_spans_dropped_total`)
//! rather than wait. Each export request is counted by result.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter as OtlpExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use crate::config::TracesConfig;

/// The target of every span that is exported.
pub const TARGET: &str = "cachecar::otel";

/// The running export pipeline; [`Traces::shutdown`] flushes it.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start trace export: {0}")]
pub struct TracesError(String);

/// The pipeline for `config` and the `tracing` layer that feeds it, to
/// be part of the subscriber from the start (the span extensions that set
/// a span's parent find the layer through it), filtered by [`only_ours`].
/// Must run inside the tokio runtime.
///
/// # Errors
///
/// When the exporter cannot be built.
pub fn start<S>(
    config: &TracesConfig,
) -> Result<(Traces, impl Layer<S> + Send + Sync + 'static), TracesError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let exporter = OtlpExporter::builder()
        .with_http()
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.timeout)
        .build()
        .map_err(|e| TracesError(e.to_string()))?;
    let counters = crate::metrics::trace_counters();
    let queued = Arc::new(AtomicUsize::new(0));
    let exporter = Counted {
        inner: exporter,
        queued: queued.clone(),
        ok: counters.exports.with_label_values(&["ok"]),
        failed: counters.exports.with_label_values(&["failed"]),
    };
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(config.max_queue)
        .with_scheduled_delay(Duration::from_secs(1))
        .build();
    let processor = Bounded {
        inner: BatchSpanProcessor::builder(exporter, Tokio)
            .with_batch_config(batch)
            .build(),
        queued,
        max: config.max_queue,
        dropped: counters.dropped.clone(),
    };
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("cachecar");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok((Traces { provider }, layer))
}

/// The filter of the layer [`start`] makes: spans of [`TARGET`] only.
pub fn only_ours<S>() -> impl tracing_subscriber::layer::Filter<S> + Send + Sync + 'static {
    filter_fn(|meta| meta.target() == TARGET)
}

impl Traces {
    /// Exports what is queued (within a few seconds) and stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(cause = %e, "trace export did not finish");
        }
    }
}

/// The batch processor behind a bound of its own, so that a span that
/// would not fit is counted as it is dropped. `queued` counts spans handed
/// on and not yet exported, which is never less than what waits in the
/// batch processor's queue of the same size: a span let through always
/// finds room.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    queued: Arc<AtomicUsize>,
    max: usize,
    dropped: prometheus::IntCounter,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let max = self.max;
        let room = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match room {
            Ok(_) => self.inner.on_end(span),
            Err(_) => self.dropped.inc(),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, counting each export by result and letting its spans go
/// from [`Bounded`]'s count.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
    ok: prometheus::IntCounter,
    failed: prometheus::IntCounter,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.queued.fetch_sub(spans, Ordering::AcqRel);
        match &result {
            Ok(()) => self.ok.inc(),
            Err(e) => {
                self.failed.inc();
                tracing::debug!(cause = %e, spans, "trace export failed");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests;
