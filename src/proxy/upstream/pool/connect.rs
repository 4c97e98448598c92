//! New connections to the app: TCP, then TLS for an `https://` upstream
//! (rustls, with the name checked and ALPN offered as
//! `upstream.http_version` says), then the HTTP/1.1 or HTTP/2 handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Failure;
use crate::config::{HttpVersion, UpstreamConfig};
use crate::proxy::upstream::UpstreamBody;

/// The most an upstream connection's read buffer grows to. hyper's
/// default (about 400 KiB) grows with each large body and is kept for the
/// connection's life: with hundreds of pooled connections that is more
/// memory than the cache. A body larger than this is read in more pieces.
const UPSTREAM_READ_BUFFER: usize = 32 << 10;

/// A connection to the app, plain or TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    /// Boxed: the TLS state is a few hundred bytes.
    Tls(Box<TlsStream<TcpStream>>),
}

/// A new connection's request end.
pub(super) enum Sender {
    Http1(http1::SendRequest<UpstreamBody>),
    Http2(http2::SendRequest<UpstreamBody>),
}

/// Connects to `target` and shakes hands, within `timeout` for TCP and TLS
/// together; the connection's driver runs in a task of its own. With
/// `upgrade`, HTTP/1.1 whatever the version (an `Upgrade` handshake), and
/// the connection may be taken over after a `101`.
pub(super) async fn connect(
    target: &UpstreamConfig,
    timeout: Duration,
    upgrade: bool,
) -> Result<Sender, Failure> {
    let (stream, h2) = tokio::time::timeout(timeout, dial(target, upgrade))
        .await
        .map_err(|_| {
            Failure::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            ))
        })??;
    let io = TokioIo::new(stream);
    if h2 {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(Failure::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(cause = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        return Ok(Sender::Http2(sender));
    }
    let (sender, connection) = http1::Builder::new()
        .max_buf_size(UPSTREAM_READ_BUFFER)
        .handshake(io)
        .await
        .map_err(Failure::Exchange)?;
    tokio::spawn(async move {
        let ended = if upgrade {
            connection.with_upgrades().await
        } else {
            connection.await
        };
        if let Err(e) = ended {
            tracing::debug!(cause = %e, "upstream connection ended with an error");
        }
    });
    Ok(Sender::Http1(sender))
}

/// A TCP connection to `target`, through TLS for `https://`; and whether
/// it speaks HTTP/2.
async fn dial(target: &UpstreamConfig, upgrade: bool) -> Result<(Stream, bool), Failure> {
    let tls = target.tls.as_ref();
    let stream = tcp_connect(&target.authority, if tls.is_some() { 443 } else { 80 })
        .await
        .map_err(Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    let prior_knowledge = target.http_version == HttpVersion::Http2 && !upgrade;
    let Some(tls) = tls else {
        return Ok((Stream::Plain(stream), prior_knowledge));
    };
    let config = if upgrade { &tls.http1 } else { &tls.config };
    let connector = TlsConnector::from(config.clone());
    let stream = connector
        .connect(tls.server_name.clone(), stream)
        .await
        .map_err(|e| {
            let name = tls.server_name.to_str();
            let why = format!("TLS handshake with {name} failed: {e}");
            Failure::Connect(io::Error::new(e.kind(), why))
        })?;
    let h2 = prior_knowledge || stream.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok((Stream::Tls(Box::new(stream)), h2 && !upgrade))
}

/// Connects to the first address of `authority` that accepts (`port`
/// when it names none).
async fn tcp_connect(authority: &Authority, port: u16) -> io::Result<TcpStream> {
    let port = authority.port_u16().unwrap_or(port);
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    }))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
