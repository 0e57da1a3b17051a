//! The socket of an outbound connection, plain or TLS, already connected (and its handshake
//! done) by [`super::dial`], and the awc connector that hands it to one awc client: awc then only
//! speaks HTTP/1.1 and WebSocket over it and never resolves, connects or follows redirects on its
//! own.

use std::cell::Cell;
use std::fmt;
use std::future::{Ready, ready};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use actix_rt::net::ActixStream;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, Ready as IoReady};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The first TLS error seen after the handshake (TLS 1.3 servers refuse a client certificate
/// only then), kept for classifying the failure awc reports.
pub type TlsErrorSlot = Arc<OnceLock<rustls::Error>>;

/// A connected socket.
pub enum Outbound {
    /// `ws://` and `http://`.
    Plain(TcpStream),
    /// `wss://` and `https://`, handshake done.
    Tls(Box<TlsStream<TcpStream>>, TlsErrorSlot),
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = self.tcp().peer_addr().ok();
        match self {
            Self::Plain(_) => f.debug_tuple("Plain").field(&peer).finish(),
            Self::Tls(..) => f.debug_tuple("Tls").field(&peer).finish(),
        }
    }
}

impl Outbound {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls, _) => tls.get_ref().0,
        }
    }

    /// Keeps the first rustls error of `result` in the slot.
    fn note<T>(slot: &TlsErrorSlot, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(err)) = &result
            && let Some(tls) = crate::tls::tls_error(err)
        {
            let _ = slot.set(tls.clone());
        }
        result
    }
}

impl AsyncRead for Outbound {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls, slot) => Self::note(slot, Pin::new(tls.as_mut()).poll_read(cx, buf)),
        }
    }
}

impl AsyncWrite for Outbound {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls, slot) => Self::note(slot, Pin::new(tls.as_mut()).poll_write(cx, buf)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls, slot) => Self::note(slot, Pin::new(tls.as_mut()).poll_flush(cx)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls, _) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

impl ActixStream for Outbound {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<IoReady>> {
        TcpStream::poll_read_ready(self.tcp(), cx).map_ok(|()| IoReady::READABLE)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<IoReady>> {
        TcpStream::poll_write_ready(self.tcp(), cx).map_ok(|()| IoReady::WRITABLE)
    }
}

/// An awc connector service that hands out one already connected socket, once. A second
/// connection (which awc would only want for a redirect, and redirects are off) is refused.
#[derive(Clone)]
pub struct Preconnected(Rc<Cell<Option<Outbound>>>);

impl Preconnected {
    /// Wraps `socket` for one awc client.
    pub fn new(socket: Outbound) -> Preconnected {
        Preconnected(Rc::new(Cell::new(Some(socket))))
    }
}

impl actix_service::Service<ConnectInfo<Uri>> for Preconnected {
    type Response = Connection<Uri, Outbound>;
    type Error = ConnectError;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, info: ConnectInfo<Uri>) -> Self::Future {
        ready(match self.0.take() {
            Some(socket) => Ok(Connection::new(info.request().clone(), socket)),
            None => Err(ConnectError::Io(io::Error::other(
                "a second connection is never made (redirects are not followed)",
            ))),
        })
    }
}
