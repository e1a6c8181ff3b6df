//! The scheduler's handling of what peers send: arbitrary bytes decoded as
//! `AnnouncePeerRequest`s (prost) on up to four announce streams,
//! interleaved with host announcements, leaves, stats and garbage
//! collections, all run in process against a fresh plaintext scheduler
//! (`scheduler::service::replay`); and the identity parsers a peer's
//! certificate goes through (`Facts::parse` on the bytes as DER,
//! `Identity::from_uri` on them as text).
//!
//! Input: records (`darter_fuzz::stream`).
//!
//! Properties: no panic; when every stream has ended, no host holds a
//! stream slot (`limits.max_peers_per_host` is never used up by streams that
//! are gone); an identity that parses reads back from its URI.

#![no_main]

use std::sync::{Arc, OnceLock};

use darter_common::tls::Identity;
use darter_common::tls::certificate::Facts;
use libfuzzer_sys::fuzz_target;
use scheduler::metrics::Metrics;
use scheduler::service::Context;
use scheduler::service::replay::replay;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"))
}

fn metrics() -> Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new).clone()
}

fn context() -> Arc<Context> {
    Arc::new(Context::new(scheduler::Config::default(), metrics(), CancellationToken::new(), TaskTracker::new()))
}

fuzz_target!(|data: &[u8]| {
    identities(data);
    let steps = darter_fuzz::stream::steps(data);
    if steps.is_empty() {
        return;
    }
    let ctx = context();
    runtime().block_on(replay(&ctx, steps));
    assert!(ctx.streams.is_empty(), "stream slots outlive their streams");
});

fn identities(data: &[u8]) {
    if let Ok(facts) = Facts::parse(data) {
        assert_eq!(Identity::from_uri(&facts.identity.to_uri()), Ok(facts.identity));
    }
    if let Ok(id) = Identity::from_uri(&String::from_utf8_lossy(data)) {
        assert_eq!(Identity::from_uri(&id.to_uri()).as_ref(), Ok(&id));
    }
}
