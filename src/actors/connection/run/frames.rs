//! The inbound half of a connection: frames in, through the sans-IO protocol and the ingest
//! pipeline, to the inbox writer (and the end of a connection, graceful or not).

use std::time::Duration;

use actix_http::ws::Item;
use awc::ws::{Frame, Message};
use bytes::Bytes;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::time::Instant;

use super::super::connect;
use super::super::protocol::Step;
use super::super::reports::DownReason;
use super::Conn;
use crate::actors::inbox::Inbound;
use crate::pipeline::ingest::{Prepared, prepare};
use crate::sources::reassembly::{Piece, ReassemblyError};
use crate::sources::status::Count;

/// Frames handled per turn of the loop when they are ready without waiting: a busy connection takes them
/// in runs (one `select!` per run, not per frame) without starving commands, ACKs and timers.
const FRAMES_PER_TURN: usize = 64;

impl Conn {
    /// Handles `first` and then the frames ready behind it (buffered, or readable from the socket
    /// without waiting), while reading.
    pub(super) async fn on_frames(
        &mut self,
        first: Option<Result<Frame, awc::error::WsProtocolError>>,
    ) -> Result<(), DownReason> {
        self.on_frame(first).await?;
        for _ in 1..FRAMES_PER_TURN {
            if !self.backlog.is_empty() {
                break;
            }
            match self.stream.next().now_or_never() {
                Some(frame) => self.on_frame(frame).await?,
                None => break,
            }
        }
        Ok(())
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<Frame, awc::error::WsProtocolError>>,
    ) -> Result<(), DownReason> {
        let frame = match frame {
            None => {
                return Err(DownReason::Transient(
                    "connection closed without a close frame".into(),
                ));
            }
            Some(Err(awc::error::WsProtocolError::Overflow)) => {
                self.ctx.counters.add(Count::Oversized, 1);
                return Err(DownReason::Transient(
                    "a frame exceeded max_message_bytes".into(),
                ));
            }
            Some(Err(err)) => return Err(DownReason::Transient(format!("protocol error: {err}"))),
            Some(Ok(frame)) => frame,
        };
        // The idle watchdog watches the feed, not the socket: data and the peer's own pings count,
        // the pongs to our pings do not (a server whose WebSocket layer still answers pings while
        // its feed has stopped is replaced).
        if !matches!(frame, Frame::Pong(_)) {
            self.last_frame = Instant::now();
        }
        match frame {
            Frame::Text(text) => self.on_data(true, text),
            Frame::Binary(bytes) => self.on_data(false, bytes),
            Frame::Continuation(item) => self.on_continuation(item),
            Frame::Ping(payload) => self.send(Message::Pong(payload)).await,
            Frame::Pong(_) => {
                self.pong_due = None;
                Ok(())
            }
            Frame::Close(reason) => {
                let code = reason.as_ref().map_or(1005, |r| u16::from(r.code));
                let text = reason
                    .as_ref()
                    .and_then(|r| r.description.clone())
                    .unwrap_or_default();
                self.peer_close = Some(reason);
                if self.stopping.is_some() {
                    return Err(DownReason::Stopped);
                }
                let terminal = &self.ctx.spec.settings.liveness().terminal_close_codes;
                Err(self.protocol.on_close(code, &text, terminal))
            }
        }
    }

    fn on_continuation(&mut self, item: Item) -> Result<(), DownReason> {
        let piece = match item {
            Item::FirstText(b) => Piece::First(true, b),
            Item::FirstBinary(b) => Piece::First(false, b),
            Item::Continue(b) => Piece::Continue(b),
            Item::Last(b) => Piece::Last(b),
        };
        match self.partial.push(piece) {
            Ok(Some((text, bytes))) => self.on_data(text, bytes),
            Ok(None) => Ok(()),
            Err(err) => {
                if err == ReassemblyError::TooLarge {
                    self.ctx.counters.add(Count::Oversized, 1);
                }
                Err(DownReason::Transient(err.to_string()))
            }
        }
    }

    fn on_data(&mut self, text: bool, bytes: Bytes) -> Result<(), DownReason> {
        self.ctx.counters.add(Count::Frames, 1);
        if let Some(stopping) = &mut self.stopping {
            stopping.last_data = Instant::now();
        }
        // The frame's first queued message carries the whole frame's size (a frame's messages
        // are at most that big together, whichever of them the pre-filter drops).
        self.frame_bytes = bytes.len();
        for step in self.protocol.on_data(text, &bytes) {
            self.on_step(step)?;
        }
        Ok(())
    }

    fn on_step(&mut self, step: Step) -> Result<(), DownReason> {
        match step {
            Step::Ingest {
                raw,
                value,
                meta,
                ack,
                limits,
            } => self.ingest(raw, &value, meta, ack, limits),
            Step::Reject { ack, reason } => {
                tracing::warn!(source_id = %self.ctx.spec.id, reason = %reason, "message rejected");
                self.ctx.counters.rejected(&reason);
                if ack.is_some() {
                    self.push(Inbound {
                        event: None,
                        meta: serde_json::Value::Null,
                        ack,
                        received: std::time::Instant::now(),
                        bytes: 0,
                    });
                }
            }
            Step::Ready {
                num_connections,
                refresh_after,
            } => self.mark_ready(num_connections, refresh_after),
            Step::Refresh { reason } => {
                tracing::info!(source_id = %self.ctx.spec.id, reason = %reason, "the peer asked for a refresh (make-before-break)");
                self.peer_refresh = true;
                self.rotate();
            }
            Step::Down(reason) => return Err(reason),
            Step::Count(counter) => self.ctx.counters.add(counter, 1),
        }
        Ok(())
    }

    fn ingest(
        &mut self,
        raw: serde_json::Value,
        value: &crate::pipeline::expr::Value,
        meta: serde_json::Value,
        ack: Option<String>,
        limits: crate::pipeline::expr::Limits,
    ) {
        let event = match prepare(&self.ctx.spec.exprs, raw, value, limits) {
            Prepared::Filtered => {
                self.ctx.counters.add(Count::Filtered, 1);
                None
            }
            Prepared::Event(event) => {
                if event.event_key.is_none() {
                    self.ctx.counters.add(Count::NoKey, 1);
                }
                Some(event)
            }
        };
        if event.is_some() || ack.is_some() {
            let bytes = std::mem::take(&mut self.frame_bytes);
            self.push(Inbound {
                event,
                meta,
                ack,
                received: std::time::Instant::now(),
                bytes,
            });
        }
    }

    fn push(&mut self, item: Inbound) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(item);
            return;
        }
        if let Some(inbox) = &self.inbox
            && let Err(item) = inbox.try_send(item)
        {
            self.backlog.push_back(item);
        }
    }

    /// The end. Graceful (a stop, or the peer closed): hand over the backlog, let the writer
    /// commit everything and send its ACKs, then close (echoing the peer's close frame, RFC 6455
    /// §5.5.1, when it sent one), all bounded. Otherwise the writer finishes on its own (what it
    /// commits is safe; its ACKs are lost with the socket and the sender redelivers) and the
    /// close is attempted briefly.
    pub(super) async fn finish(&mut self, graceful: bool) {
        let close_timeout =
            Duration::from_millis(self.ctx.spec.settings.liveness().close_timeout_ms.into());
        if !graceful {
            if let Some(inbox) = self.inbox.take() {
                let backlog: Vec<Inbound> = self.backlog.drain(..).collect();
                actix::spawn(async move {
                    for item in backlog {
                        if inbox.send(item).await.is_err() {
                            break;
                        }
                    }
                });
            }
            connect::close(&mut self.sink, &mut self.stream, close_timeout).await;
            return;
        }
        let deadline = Instant::now() + close_timeout.max(Duration::from_secs(5));
        if let Some(inbox) = self.inbox.take() {
            while let Some(item) = self.backlog.pop_front() {
                if tokio::time::timeout_at(deadline, inbox.send(item))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        while let Ok(Some(frames)) = tokio::time::timeout_at(deadline, self.acks.recv()).await {
            if self.send_acks(frames).await.is_err() {
                break;
            }
        }
        match self.peer_close.take() {
            Some(reason) => {
                let echo = async {
                    let _ = self.sink.send(Message::Close(reason)).await;
                    let _ = self.sink.close().await;
                };
                let _ = tokio::time::timeout(close_timeout, echo).await;
            }
            None => connect::close(&mut self.sink, &mut self.stream, close_timeout).await,
        }
    }
}
