//! What every Darter binary needs, and nothing a single service owns.
//!
//! - [`config`]: read YAML -> apply env overrides (`MANAGER__*`, `SCHEDULER__*`,
//!   `DFDAEMON__*`: each binary its own prefix) -> apply flags -> fill defaults ->
//!   validate, with one error message naming the bad field; old spellings of
//!   renamed fields still read;
//! - [`cli`]: the flags every service binary shares (`--config`, `--log-level`,
//!   `--log-format`, `--print-config`, `--ready-file`) and the one path from
//!   flags to a loaded (or printed) config;
//! - [`units`]: human units in config (`64MiB`, `30s`);
//! - [`telemetry`]: `tracing` logs (text or JSON), OTLP trace export, the
//!   Prometheus `/metrics` + `/healthz` endpoint;
//! - [`service`]: the shared tail of a service binary's `main`;
//! - [`shutdown`]: SIGINT/SIGTERM into a root `CancellationToken`;
//! - [`status`]: errors as gRPC statuses with a stable `darter-reason`;
//! - [`digest`]: `sha256:<hex>` digests, parsed once and validated;
//! - [`task_id`]: task IDs and URL normalisation (ARCHITECTURE.md section 3);
//! - [`piece`]: piece length from content length, piece ranges;
//! - [`host`]: the host name and IP a member advertises;
//! - [`secret`]: what is secret in a URL or a header, and its redacted form
//!   (the one place every binary asks);
//! - [`limits`]: URL and header size limits of download requests;
//! - [`sync`]: std locks that a panic does not poison for later users;
//! - [`sockopt`]: TCP receive low-water mark and send buffer (fewer wake-ups
//!   on the piece path and in the benchmark's calibration);
//! - [`tls`]: mutual TLS between members: identities in certificates,
//!   certificates from files or enrollment, the handshake checks, authorization
//!   by role;
//! - [`manager_client`]: the manager's client for schedulers and dfdaemons
//!   (`ListSchedulers`, and the register + keepalive membership loop).

pub mod cli;
pub mod config;
pub mod digest;
pub mod host;
pub mod limits;
pub mod manager_client;
pub mod piece;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod sockopt;
pub mod status;
pub mod sync;
pub mod task_id;
pub mod telemetry;
pub mod tls;
pub mod units;

/// Installs the process-wide rustls crypto provider (ring). Call once at start in
/// every binary before building any TLS client or server; idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
