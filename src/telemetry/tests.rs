use std::sync::Mutex;
use std::time::SystemTime;

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

use super::*;

/// Counts the spans handed on.
#[derive(Debug, Default)]
struct Taken(Mutex<usize>);

impl SpanProcessor for Taken {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, _: SpanData) {
        *self.0.lock().unwrap() += 1;
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn span() -> SpanData {
    SpanData {
        span_context: SpanContext::empty_context(),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: "request".into(),
        start_time: SystemTime::now(),
        end_time: SystemTime::now(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    }
}

/// A full queue drops and counts; exported spans make room again.
#[test]
fn spans_past_the_queue_bound_are_dropped_and_counted() {
    let queued = Arc::new(AtomicUsize::new(0));
    let dropped = prometheus::IntCounter::new("dropped", "test").unwrap();
    let bounded = Bounded {
        inner: Taken::default(),
        queued: queued.clone(),
        max: 2,
        dropped: dropped.clone(),
    };
    for _ in 0..5 {
        bounded.on_end(span());
    }
    assert_eq!(*bounded.inner.0.lock().unwrap(), 2);
    assert_eq!(dropped.get(), 3);
    // An export of both lets two more through.
    queued.fetch_sub(2, Ordering::AcqRel);
    bounded.on_end(span());
    assert_eq!(*bounded.inner.0.lock().unwrap(), 3);
    assert_eq!(dropped.get(), 3);
}
