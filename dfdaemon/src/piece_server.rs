//! The piece data server: verified piece bytes to other peers over plain
//! HTTP/1.1 (keep-alive, one piece per request, no gRPC framing on the bulk
//! path). The only route is `GET /v1/tasks/{task_id}/pieces/{number}`; the task
//! ID is validated before it touches storage and nothing else from the
//! request reaches the filesystem. The response carries the piece's digest in
//! `x-darter-piece-digest`. At most `slots` uploads run at once; more get 503.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use darter_common::task_id::TaskId;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::storage::Storage;

/// Header carrying the piece digest.
pub const PIECE_DIGEST_HEADER: &str = "x-darter-piece-digest";

/// Shared state of the piece server.
#[derive(Debug)]
pub struct PieceServer {
    storage: Arc<Storage>,
    slots: Semaphore,
    metrics: Arc<Metrics>,
}

fn plain(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(format!("{msg}\n"))))
        .expect("valid response")
}

impl PieceServer {
    /// A server over `storage` with `slots` concurrent uploads.
    pub fn new(storage: Arc<Storage>, slots: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { storage, slots: Semaphore::new(slots), metrics })
    }

    /// Accepts connections until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => { tracing::warn!(error = %e, "piece server accept failed"); continue; }
                },
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let resp = self.route(&req).await;
        let result = match resp.status() {
            StatusCode::OK => "success",
            StatusCode::SERVICE_UNAVAILABLE => "busy",
            _ => "refused",
        };
        self.metrics.uploads.with_label_values(&[result]).inc();
        resp
    }

    async fn route(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let Some(rest) = path.strip_prefix("/v1/tasks/") else {
            return plain(StatusCode::NOT_FOUND, "unknown path");
        };
        let mut parts = rest.split('/');
        let (Some(raw_id), Some("pieces"), Some(raw_number), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return plain(StatusCode::NOT_FOUND, "unknown path");
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET");
        }
        let Ok(id) = TaskId::parse(raw_id) else {
            return plain(StatusCode::BAD_REQUEST, "invalid task id");
        };
        let Ok(number) = raw_number.parse::<u32>() else {
            return plain(StatusCode::BAD_REQUEST, "invalid piece number");
        };
        let Some(task) = self.storage.get(&id) else {
            return plain(StatusCode::NOT_FOUND, "unknown task");
        };
        if !task.has_piece(number) {
            return plain(StatusCode::NOT_FOUND, "piece not available");
        }
        let Ok(_permit) = self.slots.try_acquire() else {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "upload slots full");
        };
        let lease = task.lease();
        let read = tokio::task::spawn_blocking(move || lease.read_piece(number)).await;
        match read {
            Ok(Ok((piece, bytes))) => {
                self.metrics.upload_bytes.inc_by(bytes.len() as u64);
                let body = if req.method() == Method::HEAD { Bytes::new() } else { bytes };
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/octet-stream")
                    .header(PIECE_DIGEST_HEADER, piece.digest.to_string())
                    .header("content-length", piece.length)
                    .body(Full::new(body))
                    .expect("valid response")
            }
            Ok(Err(e)) => {
                tracing::warn!(task_id = %id, number, error = %e, "cannot read piece");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read piece")
            }
            Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read piece"),
        }
    }
}
