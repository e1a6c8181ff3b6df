//! What the fuzz targets share: how an input's bytes become a target's
//! arguments. Text targets split their input into lines; the scheduler
//! stream target reads a sequence of framed records ([`stream`]).

/// The input as text, split into at most `n` lines (the last keeps the rest,
/// newlines included). `None` when it is not UTF-8.
pub fn lines(data: &[u8], n: usize) -> Option<Vec<&str>> {
    Some(std::str::from_utf8(data).ok()?.splitn(n, '\n').collect())
}

/// The scheduler stream target's input: records of
/// `[kind: u8][length: u16 little-endian][payload: length bytes]`. The low
/// three bits of `kind` choose the step, the bits above them the announce
/// stream; a payload is a protobuf message (prost), except for `Close` (none)
/// and `Collect` (seconds, little-endian, up to 8 bytes). A cut-off record
/// ends the input.
pub mod stream {
    use darter_proto::scheduler::v1::{self as spb, AnnouncePeerRequest};
    use prost::Message as _;
    use scheduler::service::replay::Step;

    /// Most steps one input runs (longer inputs are cut).
    pub const MAX_STEPS: usize = 64;

    /// A record's step (the low three bits of its kind byte).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Op {
        /// An `AnnouncePeerRequest` on the record's stream.
        Message = 0,
        /// `AnnounceHost`.
        AnnounceHost = 1,
        /// `LeaveHost`.
        LeaveHost = 2,
        /// `LeavePeer`.
        LeavePeer = 3,
        /// `StatPeer`.
        StatPeer = 4,
        /// `StatTask`.
        StatTask = 5,
        /// The peer closes the record's stream.
        Close = 6,
        /// A garbage collection some seconds from now.
        Collect = 7,
    }

    /// Appends one record.
    pub fn push(out: &mut Vec<u8>, op: Op, stream: u8, payload: &[u8]) {
        let len = u16::try_from(payload.len()).expect("a record's payload fits 64 KiB");
        out.push(op as u8 | (stream << 3));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
    }

    /// The steps of an input. A unary call whose payload does not decode is
    /// left out (tonic refuses it before the service sees it); a stream
    /// message that does not decode is the error tonic reads it as.
    pub fn steps(mut data: &[u8]) -> Vec<Step> {
        let mut steps = Vec::new();
        while steps.len() < MAX_STEPS && data.len() >= 3 {
            let (kind, len) = (data[0], usize::from(u16::from_le_bytes([data[1], data[2]])));
            let Some(payload) = data.get(3..3 + len) else { break };
            data = &data[3 + len..];
            let stream = usize::from(kind >> 3);
            let step = match kind & 7 {
                0 => Some(Step::Message {
                    stream,
                    message: AnnouncePeerRequest::decode(payload)
                        .map_err(|e| tonic::Status::internal(format!("failed to decode message: {e}"))),
                }),
                1 => spb::AnnounceHostRequest::decode(payload).ok().map(Step::AnnounceHost),
                2 => spb::LeaveHostRequest::decode(payload).ok().map(Step::LeaveHost),
                3 => spb::LeavePeerRequest::decode(payload).ok().map(Step::LeavePeer),
                4 => spb::StatPeerRequest::decode(payload).ok().map(Step::StatPeer),
                5 => spb::StatTaskRequest::decode(payload).ok().map(Step::StatTask),
                6 => Some(Step::Close { stream }),
                _ => {
                    let mut secs = [0u8; 8];
                    let n = payload.len().min(8);
                    secs[..n].copy_from_slice(&payload[..n]);
                    Some(Step::Collect { after_secs: u64::from_le_bytes(secs) })
                }
            };
            steps.extend(step);
        }
        steps
    }
}
