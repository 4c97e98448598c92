use http::header;

use super::*;

/// A proxy with one route, `GET /cached/{id}`, in front of nothing.
fn proxy() -> Proxy {
    let metrics = Arc::new(Metrics::new(&prometheus::Registry::new()).unwrap());
    let config = crate::config::load_str(
        "upstream: { url: \"http://127.0.0.1:1\" }\nroutes: [{ name: cached, match: \"GET /cached/{id}\", ttl: 1m }]\n",
        &|_| None,
    )
    .unwrap();
    let store = crate::cache::memory::MemoryStore::new(1 << 20, None);
    let cache = Cache::new(Arc::new(store), metrics.clone());
    let upstream = Upstream::new(&config.upstream);
    let config = Arc::new(ConfigHandle::new(config));
    Proxy::new(config, cache, upstream, metrics, Clock::system())
}

fn get(path: &str) -> Request<http_body_util::Empty<Bytes>> {
    let request = Request::get(path).header(header::HOST, "app.test");
    request.body(Default::default()).unwrap()
}

/// Every request's future is copied whole when it is boxed, and each
/// path has its own, so that a pass-through does not carry the cache
/// path's state. Bounds, not timings: they fail only when a change makes
/// a path's future large again.
#[test]
fn request_futures_stay_small() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let proxy = proxy();
    let peer = Peer::new(SocketAddr::from(([127, 0, 0, 1], 1)));
    let size = |request| std::mem::size_of_val(&*proxy.clone().handle(request, peer.clone()));
    // Each request takes the path its size is bounded for.
    let snapshot = proxy.core.config.load();
    assert!(matches!(
        proxy.admit(&snapshot, false, get("/pass")),
        Path::Pass(_)
    ));
    assert!(matches!(
        proxy.admit(&snapshot, false, get("/cached/1")),
        Path::Cache(_)
    ));
    let answered = proxy.admit(&snapshot, false, get("/cached/a%2Fb"));
    assert!(matches!(answered, Path::Answered(..)));
    let pass = size(get("/pass"));
    assert!(pass <= 1024, "a pass-through's future is {pass} bytes");
    let cached = size(get("/cached/1"));
    assert!(
        cached <= 3072,
        "a cacheable request's future is {cached} bytes"
    );
    let refused = size(get("/cached/a%2Fb"));
    assert!(
        refused <= 512,
        "an answered request's future is {refused} bytes"
    );
}
