//! Fragmented client messages (a first frame, continuations, a last one) put back together under
//! the message size limit; what exceeds it is dropped as it arrives, not buffered.

use super::{MAX_MESSAGE_BYTES, Refusal};

/// The message being reassembled on one connection.
#[derive(Debug, Default)]
pub struct Reassembly {
    current: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    text: bool,
    bytes: Vec<u8>,
    oversized: bool,
}

impl Partial {
    fn push(&mut self, piece: &[u8]) {
        if self.oversized || self.bytes.len() + piece.len() > MAX_MESSAGE_BYTES {
            self.oversized = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(piece);
        }
    }
}

impl Reassembly {
    /// A first frame: a text (`text`) or binary message begins (a message left unfinished is
    /// dropped).
    pub fn start(&mut self, text: bool, piece: &[u8]) {
        let mut partial = Partial {
            text,
            bytes: Vec::new(),
            oversized: false,
        };
        partial.push(piece);
        self.current = Some(partial);
    }

    /// A continuation frame (ignored when no message was begun).
    pub fn push(&mut self, piece: &[u8]) {
        if let Some(partial) = &mut self.current {
            partial.push(piece);
        }
    }

    /// The last frame: the whole text message, or why it is refused; `None` when no message was
    /// begun.
    pub fn finish(&mut self, piece: &[u8]) -> Option<Result<String, Refusal>> {
        let mut partial = self.current.take()?;
        partial.push(piece);
        let refused = |detail: String| Some(Err(Refusal::new(detail, None)));
        if partial.oversized {
            return refused(format!("message is larger than {MAX_MESSAGE_BYTES} bytes"));
        }
        if !partial.text {
            return refused("binary frames are not supported; send JSON text".to_owned());
        }
        match String::from_utf8(partial.bytes) {
            Ok(text) => Some(Ok(text)),
            Err(_) => refused("a text message must be valid UTF-8".to_owned()),
        }
    }
}
