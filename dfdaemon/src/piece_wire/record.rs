//! The TLS 1.3 record layer of an encrypted piece connection, once rustls
//! has finished the handshake and handed over the traffic secrets
//! ([`super::handshake`]).
//!
//! Doing the record layer here, rather than through rustls's buffered
//! connection, lets a parent read a piece from the page cache straight into
//! the records it sends and seal them where they lie, and lets a child open
//! records where they arrived: rustls copies every byte into a record of its
//! own and the plaintext out of it again (measured: about 12% of an
//! encrypting parent's CPU, see `docs/benchmarks.md`). The wire format is
//! standard TLS 1.3 (RFC 8446 section 5): a rustls peer on the other end
//! reads and writes the same bytes (tested below).
//!
//! What it does not do, because neither Darter end ever asks for it:
//! post-handshake messages (session tickets are turned off, key updates are
//! never sent), so a handshake record after the handshake is an error. A
//! connection ends before its sending key has sealed [`RECORD_LIMIT`]
//! records, far below AES-GCM's confidentiality limit, instead of updating
//! its keys.

use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rustls::ConnectionTrafficSecrets;

/// Bytes of a record header: type, legacy version, length.
pub const HEADER: usize = 5;
/// Bytes of an AEAD tag (all three TLS 1.3 suites).
pub const TAG: usize = 16;
/// Bytes a record adds to its plaintext: header, inner content type, tag.
pub const OVERHEAD: usize = HEADER + 1 + TAG;
/// Most plaintext bytes in one record.
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// Most bytes of one record on the wire (RFC 8446 allows 256 bytes of
/// expansion past the plaintext limit, for padding).
pub const MAX_RECORD: usize = HEADER + MAX_PLAINTEXT + 256;
/// Records one key seals before its connection must end (2^23; AES-GCM is
/// good for 2^24.5 in TLS 1.3). At 16 KiB a record that is 128 GiB.
pub const RECORD_LIMIT: u64 = 1 << 23;

/// Empty application-data records accepted in a row (as rustls): each
/// costs the receiver a decryption and carries nothing.
const MAX_EMPTY_IN_A_ROW: usize = 32;

/// The outer type of every TLS 1.3 encrypted record.
const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
/// `legacy_record_version`.
const LEGACY_VERSION: [u8; 2] = [3, 3];
/// The alert a peer sends before it closes: warning (1), close_notify (0).
pub const CLOSE_NOTIFY: [u8; 2] = [1, CLOSE_NOTIFY_DESCRIPTION];
const CLOSE_NOTIFY_DESCRIPTION: u8 = 0;

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Not a TLS 1.3 encrypted record, or too long or short.
    Malformed(&'static str),
    /// The tag did not match: the record was altered, replayed or reordered.
    Forged,
    /// The peer sent an alert other than close_notify.
    Alert(u8),
    /// A record type this layer does not handle after the handshake.
    Unexpected(u8),
    /// The key sealed [`RECORD_LIMIT`] records.
    Exhausted,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Malformed(why) => write!(f, "malformed TLS record: {why}"),
            RecordError::Forged => write!(f, "a TLS record failed authentication"),
            RecordError::Alert(d) => write!(f, "the peer sent TLS alert {d}"),
            RecordError::Unexpected(t) => write!(f, "unexpected TLS record of type {t} after the handshake"),
            RecordError::Exhausted => write!(f, "the connection's key sealed its {RECORD_LIMIT} records"),
        }
    }
}

impl std::error::Error for RecordError {}

impl From<RecordError> for std::io::Error {
    fn from(e: RecordError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// One direction's key, IV and sequence number.
pub struct Direction {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// Records without content opened one after the other.
    empty_in_a_row: usize,
}

impl std::fmt::Debug for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direction").field("seq", &self.seq).finish_non_exhaustive()
    }
}

impl Direction {
    /// The direction rustls handed over: its sequence number and secrets.
    pub fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Result<Self, String> {
        let (algorithm, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&CHACHA20_POLY1305, key, iv),
            _ => return Err("the negotiated cipher suite has no record layer here".into()),
        };
        let key = UnboundKey::new(algorithm, key.as_ref()).map_err(|_| "the traffic key has the wrong length")?;
        let iv = iv.as_ref().try_into().map_err(|_| "the traffic IV has the wrong length")?;
        Ok(Direction { key: LessSafeKey::new(key), iv, seq, empty_in_a_row: 0 })
    }

    /// Records this key can still seal.
    pub fn remaining(&self) -> u64 {
        RECORD_LIMIT.saturating_sub(self.seq)
    }

    /// The per-record nonce: the IV XOR the sequence number (RFC 8446 5.3).
    fn nonce(&self) -> Nonce {
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        Nonce::assume_unique_for_key(nonce)
    }

    /// Seals the record in `record`: its plaintext is in
    /// `record[HEADER..HEADER + len]`, and `record` has room for
    /// [`OVERHEAD`] more bytes. Writes the header, the inner content type
    /// and the tag; returns the record's length on the wire.
    fn seal(&mut self, record: &mut [u8], len: usize, content_type: u8) -> Result<usize, RecordError> {
        debug_assert!(record.len() >= len + OVERHEAD);
        if self.seq >= RECORD_LIMIT {
            return Err(RecordError::Exhausted);
        }
        let wire = len + OVERHEAD;
        let header = header((wire - HEADER) as u16);
        record[..HEADER].copy_from_slice(&header);
        record[HEADER + len] = content_type;
        let nonce = self.nonce();
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut record[HEADER..HEADER + len + 1])
            .map_err(|_| RecordError::Exhausted)?;
        record[HEADER + len + 1..wire].copy_from_slice(tag.as_ref());
        self.seq += 1;
        Ok(wire)
    }

    /// Seals application data in place (see [`Direction::seal`]).
    pub fn seal_data(&mut self, record: &mut [u8], len: usize) -> Result<usize, RecordError> {
        self.seal(record, len, APPLICATION_DATA)
    }

    /// Seals a record of any content type, as a peer could (tests only).
    #[cfg(test)]
    pub fn seal_for_tests(&mut self, record: &mut [u8], len: usize, content_type: u8) -> Result<usize, RecordError> {
        self.seal(record, len, content_type)
    }

    /// Writes a sealed close_notify alert at the start of `out` (room for
    /// `2 + OVERHEAD` bytes); returns its length.
    pub fn seal_close_notify(&mut self, out: &mut [u8]) -> Result<usize, RecordError> {
        out[HEADER..HEADER + 2].copy_from_slice(&CLOSE_NOTIFY);
        self.seal(out, 2, ALERT)
    }

    /// Opens the record that starts at `buf[at]`, if all of it is there,
    /// and writes its plaintext to `buf[to..]` in the same pass as it is
    /// decrypted (`to <= at + HEADER`: `at + HEADER` opens it in place; less
    /// moves it down over bytes already consumed). Returns `None` while
    /// the record is incomplete, else its length on the wire and what it held.
    pub fn open(&mut self, buf: &mut [u8], to: usize, at: usize) -> Result<Option<(usize, Opened)>, RecordError> {
        debug_assert!(to <= at + HEADER);
        let Some(head) = buf.get(at..at + HEADER) else {
            return Ok(None);
        };
        let header: [u8; HEADER] = head.try_into().expect("HEADER bytes");
        if header[0] != APPLICATION_DATA {
            return Err(RecordError::Unexpected(header[0]));
        }
        if header[1..3] != LEGACY_VERSION {
            return Err(RecordError::Malformed("not a TLS 1.2-compatible record header"));
        }
        let body = u16::from_be_bytes([header[3], header[4]]) as usize;
        if body > MAX_RECORD - HEADER {
            return Err(RecordError::Malformed("record longer than TLS allows"));
        }
        if body < TAG + 1 {
            return Err(RecordError::Malformed("record shorter than its tag"));
        }
        let wire = HEADER + body;
        if buf.len() < at + wire {
            return Ok(None);
        }
        let nonce = self.nonce();
        let plain = self
            .key
            .open_within(nonce, Aad::from(header), &mut buf[to..at + wire], at + HEADER - to..)
            .map_err(|_| RecordError::Forged)?;
        self.seq += 1;
        // The inner plaintext: content, the real type, then zero padding.
        let Some(end) = plain.iter().rposition(|&b| b != 0) else {
            return Err(RecordError::Malformed("record without a content type"));
        };
        if end > MAX_PLAINTEXT {
            return Err(RecordError::Malformed("record_overflow: more plaintext than TLS allows"));
        }
        let opened = match (plain[end], &plain[..end]) {
            (APPLICATION_DATA, _) if end == 0 && self.empty_in_a_row >= MAX_EMPTY_IN_A_ROW => {
                return Err(RecordError::Malformed("too many empty records in a row"));
            }
            (APPLICATION_DATA, _) => {
                self.empty_in_a_row = if end == 0 { self.empty_in_a_row + 1 } else { 0 };
                Opened::Data(end)
            }
            // The level of an alert is ignored in TLS 1.3 (RFC 8446 6).
            (ALERT, [_, CLOSE_NOTIFY_DESCRIPTION]) => Opened::CloseNotify,
            (ALERT, [_, description]) => return Err(RecordError::Alert(*description)),
            (ALERT, _) => return Err(RecordError::Malformed("an alert that is not two bytes")),
            (other, _) => return Err(RecordError::Unexpected(other)),
        };
        Ok(Some((wire, opened)))
    }
}

/// What an opened record held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// This many bytes of application data, now at `buf[to..]` (see
    /// [`Direction::open`]).
    Data(usize),
    /// The peer will send nothing more.
    CloseNotify,
}

/// The header of an encrypted record of `len` bytes after the header.
fn header(len: u16) -> [u8; HEADER] {
    let [hi, lo] = len.to_be_bytes();
    [APPLICATION_DATA, LEGACY_VERSION[0], LEGACY_VERSION[1], hi, lo]
}
