//! A piece being received: the body chunks as they arrived, without copying
//! them into one buffer (hashing and writing walk the chunks).

use bytes::Bytes;

/// Chunks of one piece.
#[derive(Debug, Default)]
pub struct PieceBuf {
    chunks: Vec<Bytes>,
    len: usize,
}

impl PieceBuf {
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves up to `room` bytes from the front of `chunk` into the piece.
    pub fn fill_from(&mut self, chunk: &mut Bytes, room: usize) {
        let take = chunk.len().min(room);
        if take > 0 {
            self.chunks.push(chunk.split_to(take));
            self.len += take;
        }
    }

    /// The chunks, leaving the buffer empty.
    pub fn take(&mut self) -> Vec<Bytes> {
        self.len = 0;
        std::mem::take(&mut self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_to_the_room_left() {
        let mut p = PieceBuf::default();
        let mut c = Bytes::from_static(b"abcdef");
        p.fill_from(&mut c, 4);
        assert_eq!((p.len(), &c[..]), (4, &b"ef"[..]));
        p.fill_from(&mut c, 0);
        assert_eq!(p.len(), 4);
        let chunks = p.take();
        assert_eq!(chunks, vec![Bytes::from_static(b"abcd")]);
        assert!(p.is_empty());
    }
}
