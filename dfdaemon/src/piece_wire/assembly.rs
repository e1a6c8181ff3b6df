//! A piece body assembled in its own buffer from the records that carry it
//! (the child's bulk path, [`super::Sealed::read_body`]), apart from the
//! socket so that its arithmetic can be tested and fuzzed on its own
//! (`fuzz/fuzz_targets/piece_records.rs`).
//!
//! Records are read into the buffer after the plaintext opened so far, and
//! each is decrypted down to where that plaintext ends, in the same pass
//! ([`Direction::open`]). Between them the buffer holds
//! `body[..plain]` opened plaintext, `body[plain..raw]` bytes already
//! consumed (the overhead of opened records) and `body[raw..]` received
//! bytes not yet opened.

use super::record::{Direction, MAX_RECORD, Opened, RecordError};

/// Room a body buffer needs past the body: records' overhead read ahead of
/// their decryption, and what was received with the head.
pub const BODY_SLACK: usize = 3 * MAX_RECORD;

/// Why a body could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The records carry more than the announced length.
    TooLong,
    /// The peer sent close_notify after this many bytes.
    Closed(usize),
    /// A record was refused.
    Record(RecordError),
}

impl From<RecordError> for BodyError {
    fn from(e: RecordError) -> Self {
        BodyError::Record(e)
    }
}

/// The state of one body being assembled.
#[derive(Debug)]
pub struct Assembly {
    plain: usize,
    raw: usize,
    length: usize,
}

impl Assembly {
    /// A body of `length` bytes, of which `body` holds `opened` bytes of
    /// plaintext followed by received bytes not yet opened. Makes room for
    /// [`BODY_SLACK`] past the body.
    pub fn new(body: &mut Vec<u8>, opened: usize, length: usize) -> Result<Self, BodyError> {
        if opened > length {
            return Err(BodyError::TooLong);
        }
        if body.capacity() < length + BODY_SLACK {
            body.reserve_exact(length + BODY_SLACK - body.len());
        }
        Ok(Assembly { plain: opened, raw: opened, length })
    }

    /// Opens every whole record received; true once the body is whole.
    pub fn open(&mut self, rx: &mut Direction, body: &mut [u8]) -> Result<bool, BodyError> {
        while self.plain < self.length {
            match rx.open(body, self.plain, self.raw)? {
                Some((wire, Opened::Data(n))) => {
                    if self.plain + n > self.length {
                        return Err(BodyError::TooLong);
                    }
                    self.plain += n;
                    self.raw += wire;
                }
                Some((_, Opened::CloseNotify)) => return Err(BodyError::Closed(self.plain)),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Bytes opened so far.
    pub fn opened(&self) -> usize {
        self.plain
    }

    /// Makes room for a whole record after what was received: moves the
    /// record cut by the last read down to the plaintext's end (a record's
    /// worth of bytes at most, about once per 700 records).
    pub fn make_room(&mut self, body: &mut Vec<u8>) {
        if body.capacity() - body.len() < MAX_RECORD {
            let pending = body.len() - self.raw;
            body.copy_within(self.raw.., self.plain);
            body.truncate(self.plain + pending);
            self.raw = self.plain;
        }
    }

    /// Bytes that must still arrive before the body can be whole: every
    /// byte carries at most one byte of plaintext.
    pub fn to_come(&self, body: &[u8]) -> usize {
        (self.length - self.plain).saturating_sub(body.len() - self.raw)
    }

    /// The whole body: `body` cut to its length; returns the bytes received
    /// past its records (the start of later records), for the stream.
    pub fn finish(self, body: &mut Vec<u8>) -> Vec<u8> {
        debug_assert_eq!(self.plain, self.length);
        let rest = body[self.raw..].to_vec();
        body.truncate(self.length);
        rest
    }
}
