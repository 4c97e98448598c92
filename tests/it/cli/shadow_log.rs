//! Shadow mode's mismatch warning, as the real binary logs it: the route,
//! the path, what differed, and the writes since the entry was filled.

use http::Method;

use super::access_log::{events_of, run_with_json_logs, terminate_with_output};
use super::*;
use crate::shadow::{IGNORE_GENERATED_AT, Items, shadow_config};
use crate::support::send;

#[tokio::test]
async fn a_mismatch_names_the_writes_since_the_fill() {
    trace_init();
    let app = Items::default();
    let upstream = app.serve().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = shadow_config(&upstream.uri(), IGNORE_GENERATED_AT, "")
        .replace(
            "admin: { listen: 127.0.0.1:0",
            &format!("admin: {{ listen: 127.0.0.1:{admin}"),
        )
        .replacen(
            "listen: 127.0.0.1:0\n",
            &format!("listen: 127.0.0.1:{port}\n"),
            1,
        );
    let path = write_config("shadow", &yaml);
    let child = run_with_json_logs(&path, port).await;
    let url = format!("http://127.0.0.1:{port}/items/1/summary");
    get(&url, &[]).await;
    let put = format!("http://127.0.0.1:{port}/items/1");
    assert_eq!(send(Method::PUT, &put, &[], "{}").await.status, 204);
    get(&url, &[]).await;
    let output = terminate_with_output(child).await;
    let warnings = events_of(&output.stderr, "cachecar::proxy::shadow");
    assert_eq!(
        warnings.len(),
        1,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fields = &warnings[0];
    assert_eq!(fields["route"], "summary");
    assert_eq!(fields["path"], "/items/1/summary");
    assert_eq!(fields["differs"], "body");
    assert_eq!(fields["writes_since_fill"], "PUT /items/1");
}
