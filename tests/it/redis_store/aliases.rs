//! `hosts`: a Service reached by several names (`api`, `api.ns`,
//! `api.ns.svc.cluster.local`) keys and forwards them as one, so replicas
//! reached by different names share entries.

use super::*;

#[tokio::test]
async fn replicas_reached_by_different_aliases_share_one_entry() {
    trace_init();
    let stack = Stack::start("redis").await;
    let yaml = format!(
        "{}hosts: {{ canonical: api, aliases: [api.ns, api.ns.svc.cluster.local] }}\n",
        stack.yaml
    );
    let (a, b) = (TestProxy::start(&yaml).await, TestProxy::start(&yaml).await);
    let first = get(&a.url("/docs/shared"), &[("host", "api.ns")]).await;
    assert_eq!(first.x_cache(), "MISS");
    for (replica, host) in [
        (&b, "api.ns.svc.cluster.local"),
        (&a, "api:8080"),
        (&b, "api"),
    ] {
        let r = get(&replica.url("/docs/shared"), &[("host", host)]).await;
        assert_eq!(
            (r.x_cache().as_str(), r.text().as_str()),
            ("HIT", "/docs/shared v1"),
            "{host}"
        );
    }
    assert_eq!(stack.app.count("/docs/shared"), 1);

    // A name that is not an alias keeps an entry of its own.
    let other = get(&b.url("/docs/shared"), &[("host", "10.1.2.3:8080")]).await;
    assert_eq!(other.x_cache(), "MISS");
    assert_eq!(stack.app.count("/docs/shared"), 2);
}
