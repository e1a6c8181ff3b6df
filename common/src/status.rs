//! One way for every service to turn its error into a gRPC status: the code,
//! the message, and a stable machine-readable reason in the `darter-reason`
//! metadata, so clients tell errors apart without parsing messages.

use tonic::{Code, Status};

/// Metadata key carrying the reason.
pub const REASON_KEY: &str = "darter-reason";

/// A status with `reason` attached.
pub fn with_reason(code: Code, message: String, reason: &'static str) -> Status {
    let mut status = Status::new(code, message);
    if let Ok(v) = reason.parse() {
        status.metadata_mut().insert(REASON_KEY, v);
    }
    status
}

/// The reason a status carries, or `""`.
pub fn reason(status: &Status) -> &str {
    status.metadata().get(REASON_KEY).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        let s = with_reason(Code::NotFound, "gone".into(), "task_not_found");
        assert_eq!((s.code(), s.message(), reason(&s)), (Code::NotFound, "gone", "task_not_found"));
        assert_eq!(reason(&Status::internal("x")), "");
    }
}
