use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(10);

fn paced() -> (Pin<Box<Paced<DuplexStream>>>, DuplexStream, Arc<Phase>) {
    let (server, client) = tokio::io::duplex(1 << 16);
    let phase = Arc::new(Phase::default());
    (
        Box::pin(Paced::new(server, phase.clone(), TIMEOUT)),
        client,
        phase,
    )
}

/// Sends `bytes` and reads them on the paced side.
async fn trickle(
    paced: &mut Pin<Box<Paced<DuplexStream>>>,
    client: &mut DuplexStream,
    bytes: &[u8],
) -> io::Result<usize> {
    client.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 64];
    paced.read(&mut buf).await
}

#[tokio::test(start_paused = true)]
async fn a_head_that_trickles_past_the_timeout_is_cut_off() {
    let (mut paced, mut client, _) = paced();
    assert_eq!(trickle(&mut paced, &mut client, b"G").await.unwrap(), 1);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(trickle(&mut paced, &mut client, b"E").await.unwrap(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    let err = trickle(&mut paced, &mut client, b"T").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn body_bytes_and_idle_time_are_not_counted() {
    let (mut paced, mut client, phase) = paced();
    // Idle for long before the first byte: the timer starts with it.
    tokio::time::advance(Duration::from_secs(60)).await;
    trickle(&mut paced, &mut client, b"POST / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    // The head reaches the service; what follows is its body, for as long
    // as the service has the request.
    phase.started.fetch_add(1, Ordering::AcqRel);
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(9)).await;
        trickle(&mut paced, &mut client, b"body").await.unwrap();
    }
    // Answered: the next bytes are a new head, with a new deadline.
    phase.answered.fetch_add(1, Ordering::AcqRel);
    tokio::time::advance(Duration::from_secs(30)).await;
    trickle(&mut paced, &mut client, b"GET").await.unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    trickle(&mut paced, &mut client, b" / HTTP/1.1")
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    let err = trickle(&mut paced, &mut client, b"\r\n").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn http2_connections_are_left_alone() {
    let (mut paced, mut client, _) = paced();
    trickle(&mut paced, &mut client, b"PRI * HT").await.unwrap();
    trickle(&mut paced, &mut client, b"TP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(30)).await;
        trickle(&mut paced, &mut client, b"ping").await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_head_starting_like_the_preface_is_still_timed() {
    let (mut paced, mut client, _) = paced();
    trickle(&mut paced, &mut client, b"P").await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    let err = trickle(&mut paced, &mut client, b"OST").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

struct Echo;

impl hyper::service::Service<Request<u32>> for Echo {
    type Response = Response<u32>;
    type Error = ();
    type Future = std::future::Ready<Result<Response<u32>, ()>>;
    fn call(&self, request: Request<u32>) -> Self::Future {
        std::future::ready(Ok(Response::new(request.into_body())))
    }
}

fn phased(closing: bool) -> (Phased<Echo>, Arc<Phase>) {
    let phase = Arc::new(Phase::new(Arc::new(AtomicBool::new(closing))));
    let service = Phased {
        inner: Echo,
        phase: phase.clone(),
    };
    (service, phase)
}

#[tokio::test]
async fn a_service_future_marks_its_request_answered_when_ready_or_dropped() {
    use hyper::service::Service;
    let (service, phase) = phased(false);
    assert!(!phase.has_started());
    let answer = service.call(Request::new(1));
    assert!(phase.busy() && phase.has_started());
    let response = answer.await.unwrap();
    assert_eq!(*response.body(), 1);
    assert!(!response.headers().contains_key("connection"));
    assert!(!phase.busy());
    drop(service.call(Request::new(2)));
    assert!(!phase.busy());
}

#[tokio::test]
async fn once_closing_http1_answers_close_their_connection() {
    use hyper::service::Service;
    let (service, _) = phased(true);
    let response = service.call(Request::new(1)).await.unwrap();
    assert_eq!(response.headers()["connection"], "close");
    let mut h2 = Request::new(2);
    *h2.version_mut() = Version::HTTP_2;
    let response = service.call(h2).await.unwrap();
    assert!(!response.headers().contains_key("connection"));
}
