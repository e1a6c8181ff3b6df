//! Serving a proxied `GET` through the swarm: the request joins (or starts)
//! the task's download and the response streams the content in order as
//! verified pieces land, without waiting for the whole task.
//!
//! - The task of a registry blob is keyed by its digest (the same layer from
//!   two registries is one task) and the whole content is verified against it;
//!   the last chunk of the content is held back until that check passed, so a
//!   client never receives a complete body whose digest is wrong.
//! - `Range` (one range) is answered with 206; an unsatisfiable one with 416.
//! - Until the first byte is sent, any failure hands the request back to the
//!   caller ([`Fallback`]) to pass it through to the upstream; after that, a
//!   failure ends the body with an error, which cuts the connection short of
//!   its `Content-Length` so the client retries (containerd resumes with Range).

use std::sync::Arc;

use bytes::Bytes;
use darter_common::digest::Digest;
use darter_common::task_id::TaskId;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt as _, StreamBody};
use tokio::sync::{mpsc, watch};

use super::range::{self, RangeAsk};
use super::{BoxError, ProxyBody, full};
use crate::backend::Backend;
use crate::download::{DownloadSpec, Downloads, Status, Subscription};
use crate::error::Error;
use crate::storage::{Lease, TaskEntry};

/// Largest read from the content file per body chunk.
const CHUNK: u64 = 1 << 20;

/// A request the proxy wants served through the swarm.
#[derive(Debug, Clone)]
pub struct P2pRequest {
    /// The upstream URL (where back-to-source fetches from).
    pub url: url::Url,
    /// The content digest, when the URL names one (registry blobs).
    pub digest: Option<Digest>,
    /// Headers for the upstream (the client's `Authorization`), never logged.
    pub headers: Vec<(String, String)>,
    /// The client's `Range` header.
    pub range: Option<String>,
}

/// P2P could not start; the request should go to the upstream directly.
#[derive(Debug)]
pub struct Fallback(pub Error);

/// Serves `req` from the swarm, or says why it cannot before any byte is sent.
/// A download this starts fetches from the origin through `origin` (the
/// proxy's guarded back-to-source).
pub async fn serve(
    tasks: &Arc<Downloads>,
    req: P2pRequest,
    origin: Arc<dyn Backend>,
) -> Result<Response<ProxyBody>, Fallback> {
    let task_id = match &req.digest {
        Some(d) => TaskId::from_digest(d),
        None => TaskId::for_download(req.url.as_str(), None, "", "")
            .map_err(|e| Fallback(Error::InvalidArgument(e.to_string())))?,
    };
    let spec = DownloadSpec {
        url: req.url.clone(),
        digest: req.digest,
        tag: String::new(),
        application: String::new(),
        headers: req.headers.clone(),
        output: None,
        timeout: None,
        disable_back_to_source: false,
        piece_length: None,
        task_id: task_id.clone(),
    };
    let mut sub = tasks.download_through(spec, Some(origin)).map_err(Fallback)?;
    // Sized, finished, or failed: whichever comes first.
    let sized = sub
        .status
        .wait_for(|s| s.started.is_some() || s.outcome.is_some())
        .await
        .map(|s| s.clone())
        .map_err(|_| Fallback(Error::ShuttingDown))?;
    if let Some(Err(e)) = &sized.outcome {
        return Err(Fallback(e.clone()));
    }
    let entry = tasks.storage().lease(&task_id).ok_or_else(|| Fallback(Error::TaskNotFound(task_id.to_string())))?;
    let length = match (&sized.outcome, &sized.started) {
        (Some(Ok(done)), _) => Some(done.content_length),
        (_, Some(started)) => started.content_length,
        _ => None,
    };
    let Some(length) = length else {
        // An origin without a length: stream it whole, unsized.
        let body = stream(sub, entry, 0, None);
        return Ok(ok_response(StatusCode::OK, None, &req, body));
    };
    let (status, start, end) = match range::parse(req.range.as_deref(), length) {
        RangeAsk::Full => (StatusCode::OK, 0, length),
        RangeAsk::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeAsk::Unsatisfiable => {
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            resp.headers_mut().insert(header::CONTENT_RANGE, header_value(&format!("bytes */{length}")));
            return Ok(resp);
        }
    };
    let body = stream(sub, entry, start, Some((end, length)));
    let mut resp = ok_response(status, Some(end - start), &req, body);
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{length}", end - 1);
        resp.headers_mut().insert(header::CONTENT_RANGE, header_value(&value));
    }
    Ok(resp)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn ok_response(status: StatusCode, length: Option<u64>, req: &P2pRequest, body: ProxyBody) -> Response<ProxyBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(len) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(d) = &req.digest {
        h.insert("docker-content-digest", header_value(&d.to_string()));
    }
    h.insert("x-darter-served-by", HeaderValue::from_static("p2p"));
    resp
}

/// The body: bytes `start..end` of the task, in order, as pieces land.
/// `bounds` is `(end, content length)`, `None` when the length is unknown.
fn stream(sub: Subscription, entry: Lease, start: u64, bounds: Option<(u64, u64)>) -> ProxyBody {
    let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(4);
    tokio::spawn(async move {
        if let Err(e) = pump(sub, &entry, start, bounds, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    let frames = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |chunk| {
        chunk.map(hyper::body::Frame::data)
    });
    StreamBody::new(frames).boxed()
}

async fn pump(
    mut sub: Subscription,
    entry: &Lease,
    mut pos: u64,
    bounds: Option<(u64, u64)>,
    tx: &mpsc::Sender<Result<Bytes, BoxError>>,
) -> Result<(), BoxError> {
    let mut changes = entry.subscribe();
    let piece_length = entry.piece_length();
    loop {
        // The length may only be known now (unsized origins).
        let (end, total) = match bounds {
            Some(b) => b,
            None => match entry.content_length() {
                Some(len) if entry.is_complete() => (len, len),
                _ => (u64::MAX, u64::MAX),
            },
        };
        if pos >= end {
            return Ok(());
        }
        let piece = u32::try_from(pos / piece_length).map_err(|_| "offset past the piece range")?;
        if !entry.has_piece(piece) {
            wait_for_piece(&mut sub.status, &mut changes, entry, piece).await?;
            continue;
        }
        let piece_end = (u64::from(piece) + 1) * piece_length;
        let upto = end.min(piece_end).min(pos + CHUNK).min(entry.content_length().unwrap_or(u64::MAX));
        if upto <= pos {
            return Err("content ended before the requested range".into());
        }
        if upto == total {
            // The last bytes of the content: only once the whole is verified.
            finished_ok(&mut sub.status).await?;
        }
        let bytes = read(entry, pos, upto - pos).await?;
        pos = upto;
        if tx.send(Ok(bytes)).await.is_err() {
            return Ok(()); // the client left
        }
    }
}

/// Waits until `piece` is stored, or fails if the download ended without it.
async fn wait_for_piece(
    status: &mut watch::Receiver<Status>,
    changes: &mut watch::Receiver<u64>,
    entry: &TaskEntry,
    piece: u32,
) -> Result<(), BoxError> {
    loop {
        if entry.has_piece(piece) {
            return Ok(());
        }
        match &status.borrow_and_update().outcome {
            Some(Err(e)) => return Err(format!("download failed: {e}").into()),
            Some(Ok(_)) if !entry.has_piece(piece) => return Err("download ended without the piece".into()),
            _ => {}
        }
        tokio::select! {
            r = status.changed() => if r.is_err() { return Err("download gone".into()) },
            r = changes.changed() => if r.is_err() { return Err("task removed".into()) },
        }
    }
}

/// Waits for the download's outcome; an error if it failed (digest mismatch...).
async fn finished_ok(status: &mut watch::Receiver<Status>) -> Result<(), BoxError> {
    let done = status.wait_for(|s| s.outcome.is_some()).await.map_err(|_| "download gone")?;
    match &done.outcome {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(format!("download failed: {e}").into()),
        None => Err("download gone".into()),
    }
}

async fn read(entry: &Lease, offset: u64, len: u64) -> Result<Bytes, BoxError> {
    let entry = entry.clone();
    let len = usize::try_from(len)?;
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len];
        entry.read_at(&mut buf, offset).map(|()| Bytes::from(buf)).map_err(|e| BoxError::from(e.to_string()))
    })
    .await?
}
