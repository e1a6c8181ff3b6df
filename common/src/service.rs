//! The tail of every service binary's `main`: install the crypto provider,
//! start a multi-threaded runtime and telemetry, bind the listeners, cancel
//! on SIGINT/SIGTERM and run the service; returns the process exit code
//! (1 when telemetry, binding or the service fails, with the error on stderr).

use std::fmt::Display;
use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::telemetry::{LogConfig, TracingConfig};

/// Runs a service; see the module doc.
pub fn run<L, B, R, E>(
    name: &'static str,
    log: &LogConfig,
    tracing_config: &TracingConfig,
    bind: impl FnOnce() -> B,
    serve: impl FnOnce(L, CancellationToken) -> R,
) -> i32
where
    B: Future<Output = std::io::Result<L>>,
    R: Future<Output = Result<(), E>>,
    E: Display,
{
    crate::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let _telemetry = match crate::telemetry::init(name, log, tracing_config) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{name}: cannot start telemetry: {e}");
                return 1;
            }
        };
        let listeners = match bind().await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}: {e}");
                return 1;
            }
        };
        let shutdown = CancellationToken::new();
        crate::shutdown::cancel_on_signal(shutdown.clone());
        match serve(listeners, shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{name}: {e:#}");
                1
            }
        }
    })
}
