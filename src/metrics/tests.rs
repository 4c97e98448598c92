use super::*;

#[test]
fn metrics_register_with_the_contract_names() {
    let registry = Registry::new();
    let m = Metrics::new(&registry).unwrap();
    m.requests_total
        .with_label_values(&["r", "GET", "hit"])
        .inc();
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    assert!(
        names.contains(&"cachecar_requests_total".to_string()),
        "{names:?}"
    );
    assert!(
        Metrics::new(&registry).is_err(),
        "double registration is refused"
    );
}

/// Every `cachecar_*` metric the shipped Grafana dashboard queries is
/// one this process exports (histograms by their `_bucket`, `_sum` or
/// `_count` series).
#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dashboard = include_str!("../../config/grafana/dashboards/cachecar.json");
    let exported = Metrics::new(&Registry::new()).unwrap().family_names();
    let mut queried = Vec::new();
    let mut rest = dashboard;
    while let Some(at) = rest.find("cachecar_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        queried.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    assert!(
        queried.len() > 10,
        "the dashboard queries metrics: {queried:?}"
    );
    for name in &queried {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|base| exported.iter().any(|e| e == base))
            .unwrap_or(name);
        assert!(
            exported.iter().any(|e| e == family),
            "the dashboard asks for {name}, which cachecar does not export"
        );
    }
}

#[test]
fn dropped_log_lines_are_read_from_the_writer_at_each_scrape() {
    let m = Metrics::new(&Registry::new()).unwrap();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let source = dropped.clone();
    count_log_drops(move || source.load(std::sync::atomic::Ordering::Relaxed));
    m.sync_process_counters();
    let before = m.log_lines_dropped_total.get();
    dropped.store(7, std::sync::atomic::Ordering::Relaxed);
    m.sync_process_counters();
    m.sync_process_counters();
    assert_eq!(m.log_lines_dropped_total.get() - before, 7 - before.min(7));
    assert_eq!(m.log_lines_dropped_total.get(), 7);
}
