//! Fragmented WebSocket messages from a source put back together under the source's
//! `max_message_bytes` (sans-IO: the connection hands in the pieces it read). A message that would
//! exceed the cap is refused as soon as the piece that crosses it arrives, never buffered whole.

use bytes::{Bytes, BytesMut};

/// One piece of a fragmented message, as the WebSocket codec delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The first frame of a text (`true`) or binary message.
    First(bool, Bytes),
    /// A continuation frame.
    Continue(Bytes),
    /// The final continuation frame.
    Last(Bytes),
}

/// Why a fragmented message could not be put back together (the connection should end: the
/// stream of frames no longer makes sense, or the peer sends more than it may).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// A continuation frame with no first frame before it.
    #[error("continuation frame without a first frame")]
    Orphan,
    /// The message grew past the cap.
    #[error("a message exceeded max_message_bytes")]
    TooLarge,
}

/// The message being reassembled on one connection.
#[derive(Debug)]
pub struct Reassembler {
    max: usize,
    partial: Option<(bool, BytesMut)>,
}

impl Reassembler {
    /// A reassembler refusing messages over `max` bytes.
    pub fn new(max: usize) -> Reassembler {
        Reassembler { max, partial: None }
    }

    /// Takes one piece; gives the whole message (text or binary, and its bytes) once its last
    /// piece is in. A first frame while a message is unfinished starts over (the unfinished one is
    /// dropped, as RFC 6455 forbids interleaving and the codec would have refused it).
    pub fn push(&mut self, piece: Piece) -> Result<Option<(bool, Bytes)>, ReassemblyError> {
        let (chunk, last) = match piece {
            Piece::First(text, chunk) => {
                self.partial = Some((text, BytesMut::new()));
                (chunk, false)
            }
            Piece::Continue(chunk) => (chunk, false),
            Piece::Last(chunk) => (chunk, true),
        };
        let Some((_, buffer)) = self.partial.as_mut() else {
            return Err(ReassemblyError::Orphan);
        };
        if buffer.len() + chunk.len() > self.max {
            self.partial = None;
            return Err(ReassemblyError::TooLarge);
        }
        buffer.extend_from_slice(&chunk);
        if !last {
            return Ok(None);
        }
        Ok(self
            .partial
            .take()
            .map(|(text, buffer)| (text, buffer.freeze())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn joins_pieces_and_refuses_orphans_and_oversized_messages() {
        let mut r = Reassembler::new(10);
        assert_eq!(r.push(Piece::First(true, b("ab"))), Ok(None));
        assert_eq!(r.push(Piece::Continue(b("cd"))), Ok(None));
        assert_eq!(r.push(Piece::Last(b("e"))), Ok(Some((true, b("abcde")))));
        assert_eq!(r.push(Piece::Last(b("x"))), Err(ReassemblyError::Orphan));
        assert_eq!(r.push(Piece::First(false, b("123456"))), Ok(None));
        assert_eq!(
            r.push(Piece::Continue(b("78901"))),
            Err(ReassemblyError::TooLarge)
        );
        assert_eq!(
            r.push(Piece::Continue(b("1"))),
            Err(ReassemblyError::Orphan)
        );
        assert_eq!(r.push(Piece::First(false, b(""))), Ok(None));
        assert_eq!(r.push(Piece::Last(b(""))), Ok(Some((false, b("")))));
    }
}
