//! Telemetry for every binary: `tracing` logs (text or JSON) filtered by
//! level, OpenTelemetry traces exported over OTLP/gRPC when an endpoint is
//! configured, and the Prometheus `/metrics` + `/healthz` HTTP endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::FieldError;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `log:` section of every config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level or `tracing` filter directive (default `info`; e.g. `dfdaemon=debug,info`).
    pub level: String,
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// `tracing:` section: OpenTelemetry export.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// OTLP/gRPC collector endpoint (e.g. `http://127.0.0.1:4317`); none (default) disables export.
    pub otlp_endpoint: Option<String>,
}

impl LogConfig {
    /// Checks that the level parses as a filter.
    pub fn validate(&self, field: &str) -> Result<(), FieldError> {
        EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| FieldError::new(format!("{field}.level"), e.to_string()))
    }
}

impl TracingConfig {
    /// Checks that the endpoint is an http(s) URL.
    pub fn validate(&self, field: &str) -> Result<(), FieldError> {
        if let Some(ep) = &self.otlp_endpoint {
            let ok = url::Url::parse(ep).map(|u| matches!(u.scheme(), "http" | "https")).unwrap_or(false);
            if !ok {
                return Err(FieldError::new(format!("{field}.otlp_endpoint"), format!("{ep:?} is not an http(s) URL")));
            }
        }
        Ok(())
    }
}

/// Keeps the trace exporter alive; flushes spans on drop.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: logs to stderr, plus OTLP export when configured.
pub fn init(
    service: &'static str,
    log: &LogConfig,
    tracing_cfg: &TracingConfig,
) -> anyhow_like::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&log.level)?;
    let (fmt_text, fmt_json) = match log.format {
        LogFormat::Text => {
            // Colours only for a terminal: a file or `kubectl logs` gets plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(true).with_ansi(ansi);
            (Some(layer), None)
        }
        LogFormat::Json => (None, Some(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))),
    };
    let mut guard = TelemetryGuard::default();
    let otel = match &tracing_cfg.otlp_endpoint {
        Some(endpoint) => {
            let exporter =
                opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint.clone()).build()?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let tracer = provider.tracer(service);
            opentelemetry::global::set_tracer_provider(provider.clone());
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            guard.provider = Some(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        None => None,
    };
    tracing_subscriber::registry().with(filter).with(fmt_text).with(fmt_json).with(otel).try_init()?;
    Ok(guard)
}

/// A tiny boxed-error result for [`init`], so this crate needs no `anyhow`.
pub mod anyhow_like {
    /// Boxed error.
    pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
    /// Result with a boxed error.
    pub type Result<T> = std::result::Result<T, Error>;
}

/// Health flag shared between a service and its `/healthz` endpoint.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    /// Marks the service ready (`/healthz` answers 200).
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
    /// Whether the service is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct MetricsState {
    registry: prometheus::Registry,
    health: Health,
}

/// Router with `GET /metrics` (Prometheus text format) and `GET /healthz`.
pub fn metrics_router(registry: prometheus::Registry, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(serve_health))
        .with_state(MetricsState { registry, health })
}

async fn serve_metrics(State(s): State<MetricsState>) -> impl IntoResponse {
    let mut buf = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&s.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn serve_health(State(s): State<MetricsState>) -> impl IntoResponse {
    if s.health.is_ready() { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting\n") }
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

/// The `/metrics` + `/healthz` server of a service, stopped last so that
/// probes see 503 while the service drains.
#[derive(Debug)]
pub struct MetricsServer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    /// Serves `registry` and `health` on `listener` until [`Self::stop`].
    pub fn spawn(listener: tokio::net::TcpListener, registry: prometheus::Registry, health: Health) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_http(listener, metrics_router(registry, health), stop.clone()));
        Self { stop, task }
    }

    /// Stops serving and waits for the server to end.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Binds a TCP listener, with the address in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
