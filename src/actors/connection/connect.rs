//! Opening an outbound WebSocket: [`super::dial`] resolves the host, applies the network policy
//! to every resolved address (at every connect, after DNS), connects to a checked address and
//! makes the TLS handshake; awc then upgrades over that socket.

use std::time::Duration;

use actix_web::http::StatusCode;
use awc::BoxedSocket;
use awc::ws::Codec;
use futures_util::{SinkExt as _, StreamExt as _, stream::SplitSink, stream::SplitStream};

use super::dial::{self, TlsTarget};
use super::reports::DownReason;
use crate::actors::runtime::SourceRuntime;
use crate::sources::generic::ConnectRequest;
use crate::tls::SourceTls;

/// An open connection: awc's socket and WebSocket codec under a framing layer with small buffers.
pub type WsFramed = tokio_util::codec::Framed<BoxedSocket, Codec>;
/// The write half of a connection.
pub type WsSink = SplitSink<WsFramed, awc::ws::Message>;
/// The read half of a connection.
pub type WsStream = SplitStream<WsFramed>;

/// The read buffer a connection starts with (it grows for a larger frame, and keeps what it
/// grew to). awc's own framing keeps 8 KiB for reading and 8 KiB for writing per connection
/// whether it is busy or idle; an idle connection reads only pings and pongs, and at 1 KiB one
/// read of a busy feed still takes several typical messages.
const READ_BUFFER: usize = 1024;

/// How long an upgrade may take (after the connect and the TLS handshake).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves, checks, connects and upgrades; failures are classified for the restart policy.
/// `tls` is the source's own TLS material (`config.tls`), if any.
pub async fn open(
    rt: &SourceRuntime,
    request: &ConnectRequest,
    max_frame: usize,
    tls: Option<&SourceTls>,
) -> Result<(WsSink, WsStream), DownReason> {
    let url = url::Url::parse(&request.url)
        .map_err(|e| DownReason::Terminal(format!("invalid URL: {e}")))?;
    let target = tls_target(rt, tls)?;
    let dialed = dial::dial(&rt.policy, &url, Some(target)).await?;
    let (uri, host) = dial::awc_target(&url);
    let (name, slot) = (dialed.name.clone(), dialed.tls_errors.clone());
    let mut ws = dial::awc_client(dialed.socket, UPGRADE_TIMEOUT)
        .ws(uri.as_str())
        .address(dialed.addr)
        .max_frame_size(max_frame)
        .set_header("Host", host.as_str());
    // RFC 6455 §4.1: the header only when there is something to offer (an empty one makes strict
    // servers refuse the upgrade).
    if !request.subprotocols.is_empty() {
        ws = ws.protocols(
            request
                .subprotocols
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
    }
    for (name, value) in &request.headers {
        ws = ws.set_header(name.as_str(), value.as_str());
    }
    match ws.connect().await {
        Ok((response, framed)) => {
            let chosen = response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            check_subprotocol(&request.subprotocols, chosen.as_deref())?;
            Ok(lean(framed).split())
        }
        Err(err) => Err(
            dial::Dialed::tls_failure(slot.as_ref(), &name).unwrap_or_else(|| match err {
                awc::error::WsClientError::InvalidResponseStatus(status) => classify_status(status),
                err => DownReason::Transient(format!("connect failed: {err}")),
            }),
        ),
    }
}

/// The TLS configuration of a connection: the source's own when it has `config.tls`, else the
/// shared one.
fn tls_target(rt: &SourceRuntime, tls: Option<&SourceTls>) -> Result<TlsTarget, DownReason> {
    let Some(tls) = tls else {
        return Ok(TlsTarget {
            config: rt.tls.shared(),
            server_name: None,
        });
    };
    let config = tls
        .client_config(&rt.tls)
        .map_err(|e| DownReason::Terminal(format!("config.tls cannot be used: {e}")))?;
    Ok(TlsTarget {
        config,
        server_name: tls.server_name().cloned(),
    })
}

/// Moves an upgraded connection from awc's framing to tokio-util's, with a [`READ_BUFFER`]-sized
/// read buffer and a write buffer that is allocated by the first write and sized by what is
/// written, keeping whatever the peer sent right after its upgrade response (and anything not
/// yet written). tokio-util tops up any buffer it is given to at least 4 KiB, so the buffers are
/// replaced once it has them.
fn lean(framed: actix_codec::Framed<BoxedSocket, Codec>) -> WsFramed {
    let old = framed.into_parts();
    let mut parts = tokio_util::codec::FramedParts::new::<awc::ws::Message>(old.io, old.codec);
    parts.read_buf = bytes::BytesMut::from(&old.read_buf[..]);
    parts.write_buf = bytes::BytesMut::from(&old.write_buf[..]);
    let mut framed = tokio_util::codec::Framed::from_parts(parts);
    resize(framed.read_buffer_mut(), READ_BUFFER);
    resize(framed.write_buffer_mut(), 0);
    framed
}

/// Replaces `buf` by a buffer of `capacity` (or of its length, when longer) with the same bytes.
fn resize(buf: &mut bytes::BytesMut, capacity: usize) {
    let mut resized = bytes::BytesMut::with_capacity(capacity.max(buf.len()));
    resized.extend_from_slice(buf);
    *buf = resized;
}

/// RFC 6455 §4.1: a `Sec-WebSocket-Protocol` in the server's answer must be one of those offered
/// (and there must be none when none was offered); anything else fails the connection for good (a
/// configuration the server will not accept). A server that answers without one has chosen no
/// subprotocol, which the RFC allows: many feeds ignore the header, and the connection proceeds.
fn check_subprotocol(offered: &[String], chosen: Option<&str>) -> Result<(), DownReason> {
    let offered_list = || offered.join(", ");
    match (chosen.map(str::trim), offered.is_empty()) {
        (None, _) => Ok(()),
        (Some(chosen), false) if offered.iter().any(|o| o == chosen) => Ok(()),
        (Some(chosen), true) => Err(DownReason::Terminal(format!(
            "the server chose subprotocol `{chosen}`, but none was offered"
        ))),
        (Some(chosen), false) => Err(DownReason::Terminal(format!(
            "the server chose subprotocol `{chosen}`, which was not offered ({})",
            offered_list()
        ))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chosen_subprotocol_must_be_one_offered() {
        let offered = vec!["v2.feed".to_owned(), "v1.feed".to_owned()];
        assert!(check_subprotocol(&[], None).is_ok());
        assert!(check_subprotocol(&offered, Some("v1.feed")).is_ok());
        let terminal = |r: Result<(), DownReason>| match r {
            Err(DownReason::Terminal(detail)) => detail,
            other => panic!("not terminal: {other:?}"),
        };
        // No answer: the server chose none, which RFC 6455 allows.
        assert!(check_subprotocol(&offered, None).is_ok());
        let other = terminal(check_subprotocol(&offered, Some("v3.feed")));
        assert!(
            other.contains("`v3.feed`") && other.contains("v2.feed, v1.feed"),
            "{other}"
        );
        let unasked = terminal(check_subprotocol(&[], Some("x")));
        assert!(unasked.contains("none was offered"), "{unasked}");
    }
}
