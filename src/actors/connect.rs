//! Opening an outbound WebSocket: resolve the host, apply the network policy to every resolved
//! address (at every connect, after DNS), then upgrade over awc to the checked address.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::http::StatusCode;
use awc::ws::Codec;
use awc::{BoxedSocket, Client, Connector};
use futures_util::{SinkExt as _, StreamExt as _, stream::SplitSink, stream::SplitStream};

use super::messages::DownReason;
use super::runtime::SourceRuntime;
use crate::sources::generic::ConnectRequest;

/// An open connection: awc's socket and WebSocket codec under a framing layer with small buffers.
pub type WsFramed = tokio_util::codec::Framed<BoxedSocket, Codec>;
/// The write half of a connection.
pub type WsSink = SplitSink<WsFramed, awc::ws::Message>;
/// The read half of a connection.
pub type WsStream = SplitStream<WsFramed>;

/// Read and write buffers of a connection (each grows for a larger frame). awc's own framing
/// keeps 8 KiB for reading and 8 KiB for writing per connection whether it is busy or idle; at
/// 4 KiB one read still takes ~20 typical messages. tokio-util tops up any buffer it is given
/// to 8 KiB of free room unless at least 4 KiB are free, so exactly 4 KiB are kept as they are.
const BUFFER: usize = 4 * 1024;

/// How long an upgrade may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves, checks and connects; failures are classified for the restart policy.
pub async fn open(
    rt: &SourceRuntime,
    request: &ConnectRequest,
    max_frame: usize,
) -> Result<(WsSink, WsStream), DownReason> {
    let url = url::Url::parse(&request.url)
        .map_err(|e| DownReason::Terminal(format!("invalid URL: {e}")))?;
    let addr = resolve(rt, &url).await?;
    let mut ws = client(rt)
        .ws(request.url.as_str())
        .address(addr)
        .max_frame_size(max_frame)
        .protocols(
            request
                .subprotocols
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
    for (name, value) in &request.headers {
        ws = ws.set_header(name.as_str(), value.as_str());
    }
    match ws.connect().await {
        Ok((_response, framed)) => Ok(lean(framed).split()),
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            Err(classify_status(status))
        }
        Err(err) => Err(DownReason::Transient(format!("connect failed: {err}"))),
    }
}

/// Moves an upgraded connection from awc's framing to one with [`BUFFER`]-sized read and write
/// buffers, keeping whatever the peer sent right after its upgrade response (and anything not
/// yet written).
fn lean(framed: actix_codec::Framed<BoxedSocket, Codec>) -> WsFramed {
    let old = framed.into_parts();
    let mut parts = tokio_util::codec::FramedParts::new::<awc::ws::Message>(old.io, old.codec);
    parts.read_buf = bytes::BytesMut::with_capacity(BUFFER.max(old.read_buf.len()));
    parts.read_buf.extend_from_slice(&old.read_buf);
    parts.write_buf = bytes::BytesMut::with_capacity(BUFFER.max(old.write_buf.len()));
    parts.write_buf.extend_from_slice(&old.write_buf);
    tokio_util::codec::Framed::from_parts(parts)
}

/// An HTTP/1.1 client with the shared TLS configuration and no connection pooling (every source
/// connection is its own socket).
pub fn client(rt: &SourceRuntime) -> Client {
    Client::builder()
        .connector(
            Connector::new()
                .limit(0)
                .timeout(CONNECT_TIMEOUT)
                .max_http_version(awc::http::Version::HTTP_11)
                .rustls_0_23(rt.tls.clone()),
        )
        .timeout(CONNECT_TIMEOUT)
        .finish()
}

fn classify_status(status: StatusCode) -> DownReason {
    match status.as_u16() {
        401 | 403 => DownReason::Terminal(format!(
            "upgrade refused with HTTP {status}: check the credentials"
        )),
        429 => DownReason::RateLimited {
            detail: "upgrade refused with HTTP 429".to_owned(),
            retry_after: Duration::from_secs(30),
        },
        _ => DownReason::Transient(format!("upgrade refused with HTTP {status}")),
    }
}

async fn resolve(rt: &SourceRuntime, url: &url::Url) -> Result<SocketAddr, DownReason> {
    let host = url
        .host_str()
        .ok_or_else(|| DownReason::Terminal("URL has no host".to_owned()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| DownReason::Transient(format!("cannot resolve {host}: {e}")))?
        .collect();
    rt.policy
        .check_resolved(url, &addrs)
        .map_err(|e| DownReason::Terminal(format!("destination refused: {e}")))?;
    addrs
        .first()
        .copied()
        .ok_or_else(|| DownReason::Transient(format!("{host} resolved to no address")))
}

/// Sends a close frame and waits (bounded) for the peer's close.
pub async fn close(sink: &mut WsSink, stream: &mut WsStream, timeout: Duration) {
    let reason = awc::ws::CloseReason {
        code: awc::ws::CloseCode::Normal,
        description: None,
    };
    let _ = tokio::time::timeout(timeout, async {
        if sink
            .send(awc::ws::Message::Close(Some(reason)))
            .await
            .is_ok()
        {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, awc::ws::Frame::Close(_)) {
                    break;
                }
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(timeout, sink.close()).await;
}
