//! Fetching a task from its origin.
//!
//! A one-byte probe (`Range: bytes=0-0`) learns the length and whether the
//! origin honours ranges. If it does, missing pieces are fetched as
//! piece-sized range requests, several at once, each retried with resume from
//! the byte where it broke. If it does not (200 instead of 206, or no known
//! length), the body is streamed and cut into pieces as it arrives. Every
//! piece is hashed before it is written and marked present.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use darter_common::digest::Digest;
use darter_common::piece::{piece_length_for, piece_range};
use futures::{StreamExt as _, TryStreamExt as _};

use super::progress::Progress;
use super::spec::DownloadSpec;
use crate::backend::redacted;
use crate::backend::{Backend, GetRequest, GetResponse, Range};
use crate::config::BackToSourceConfig;
use crate::error::{Error, Result};
use crate::storage::{Storage, TaskEntry};

/// What back-to-source needs.
#[derive(Clone)]
pub struct BackToSource {
    /// The origin backend for this URL.
    pub backend: Arc<dyn Backend>,
    /// Storage.
    pub storage: Arc<Storage>,
    /// Limits.
    pub config: BackToSourceConfig,
}

/// How the origin is to be read.
enum Plan {
    /// Known length, ranges work.
    Ranged(u64),
    /// Stream a full response (this one, when the probe already got it).
    Stream(Option<GetResponse>),
}

impl BackToSource {
    /// Fetches every missing piece of `spec` into storage; returns the task.
    pub async fn fetch(&self, spec: &DownloadSpec, progress: &Progress) -> Result<Arc<TaskEntry>> {
        let resumable = self
            .storage
            .get(&spec.task_id)
            .filter(|t| t.content_length().is_some() && !t.is_complete());
        let plan = match resumable {
            Some(t) => Plan::Ranged(t.content_length().expect("filtered on a known length")),
            None => self.probe(spec).await?,
        };
        match plan {
            Plan::Ranged(len) => self.fetch_ranged(spec, len, progress).await,
            Plan::Stream(first) => self.fetch_streamed(spec, first, progress).await,
        }
    }

    fn request(&self, spec: &DownloadSpec, range: Option<Range>) -> GetRequest {
        GetRequest {
            url: spec.url.clone(),
            headers: spec.headers.clone(),
            range,
        }
    }

    async fn probe(&self, spec: &DownloadSpec) -> Result<Plan> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut resp = self
                    .backend
                    .get(self.request(
                        spec,
                        Some(Range {
                            start: 0,
                            end: Some(0),
                        }),
                    ))
                    .await?;
                match (resp.status, resp.content_range) {
                    (206, Some((0, 0, Some(total)))) => {
                        while resp.body.try_next().await?.is_some() {}
                        Ok(Plan::Ranged(total))
                    }
                    (206, _) => Ok(Plan::Stream(None)),
                    (200, _) => Ok(Plan::Stream(Some(resp))),
                    (416, _) if resp.unsatisfied_total.unwrap_or(0) == 0 => Ok(Plan::Ranged(0)),
                    (status, _) => Err(Error::OriginStatus {
                        status,
                        url: redacted(&spec.url),
                    }),
                }
            }
            .await;
            match result {
                Err(e) if e.is_transient() && attempt < self.config.max_attempts => {
                    backoff(attempt, &e, spec).await
                }
                other => return other,
            }
        }
    }

    async fn fetch_ranged(
        &self,
        spec: &DownloadSpec,
        len: u64,
        progress: &Progress,
    ) -> Result<Arc<TaskEntry>> {
        let piece_length = spec
            .piece_length
            .unwrap_or_else(|| piece_length_for(Some(len)));
        let entry = self.open(spec, Some(len), piece_length).await?;
        progress.started(&entry);
        let missing = entry.missing_pieces();
        futures::stream::iter(missing)
            .map(|number| {
                let entry = entry.clone();
                async move {
                    let (offset, length) = piece_range(number, len, piece_length);
                    let bytes = self.fetch_range(spec, offset, length).await?;
                    store(entry, number, offset, bytes).await
                }
            })
            .buffer_unordered(self.config.concurrency)
            .try_for_each(|piece| async move {
                progress.piece_from_origin(piece);
                Ok(())
            })
            .await?;
        Ok(entry)
    }

    /// Fetches `length` bytes at `offset`, resuming where a broken body stopped.
    async fn fetch_range(&self, spec: &DownloadSpec, offset: u64, length: u64) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(length as usize);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let start = offset + buf.len() as u64;
            let end = offset + length - 1;
            let result = async {
                let mut resp = self
                    .backend
                    .get(self.request(
                        spec,
                        Some(Range {
                            start,
                            end: Some(end),
                        }),
                    ))
                    .await?;
                match (resp.status, resp.content_range) {
                    (206, Some((a, b, _))) if a == start && b == end => {}
                    (206, other) => {
                        return Err(Error::OriginProtocol(format!(
                            "asked for bytes {start}-{end}, got content-range {other:?}"
                        )));
                    }
                    (200, _) => {
                        return Err(Error::OriginProtocol(
                            "origin stopped honouring range requests".into(),
                        ));
                    }
                    (status, _) => {
                        return Err(Error::OriginStatus {
                            status,
                            url: redacted(&spec.url),
                        });
                    }
                }
                while let Some(chunk) = resp.body.try_next().await? {
                    if buf.len() + chunk.len() > length as usize {
                        return Err(Error::OriginProtocol(format!(
                            "origin sent more than the {length} bytes asked for"
                        )));
                    }
                    buf.extend_from_slice(&chunk);
                }
                if buf.len() as u64 != length {
                    return Err(Error::OriginUnavailable(format!(
                        "body ended after {} of {length} bytes",
                        buf.len()
                    )));
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => return Ok(buf.freeze()),
                Err(e) if e.is_transient() && attempt < self.config.max_attempts => {
                    backoff(attempt, &e, spec).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch_streamed(
        &self,
        spec: &DownloadSpec,
        mut first: Option<GetResponse>,
        progress: &Progress,
    ) -> Result<Arc<TaskEntry>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let resp = match first.take() {
                    Some(r) => r,
                    None => self.backend.get(self.request(spec, None)).await?,
                };
                if resp.status != 200 {
                    return Err(Error::OriginStatus {
                        status: resp.status,
                        url: redacted(&spec.url),
                    });
                }
                self.stream_body(spec, resp, progress).await
            }
            .await;
            match result {
                Err(e) if e.is_transient() && attempt < self.config.max_attempts => {
                    backoff(attempt, &e, spec).await
                }
                other => return other,
            }
        }
    }

    /// Cuts a full body into pieces; pieces already stored are skipped.
    async fn stream_body(
        &self,
        spec: &DownloadSpec,
        mut resp: GetResponse,
        progress: &Progress,
    ) -> Result<Arc<TaskEntry>> {
        let len = resp.content_length;
        let piece_length = spec.piece_length.unwrap_or_else(|| piece_length_for(len));
        let entry = self.open(spec, len, piece_length).await?;
        progress.started(&entry);
        let mut number = 0u32;
        let mut offset = 0u64;
        let mut buf = BytesMut::with_capacity(piece_length as usize);
        loop {
            let chunk = resp.body.try_next().await?;
            let done = chunk.is_none();
            let mut chunk = chunk.unwrap_or_default();
            while !chunk.is_empty() || (done && !buf.is_empty()) {
                let take = chunk.len().min(piece_length as usize - buf.len());
                buf.extend_from_slice(&chunk.split_to(take));
                if buf.len() as u64 == piece_length || (done && chunk.is_empty()) {
                    let bytes =
                        std::mem::replace(&mut buf, BytesMut::with_capacity(piece_length as usize))
                            .freeze();
                    let piece_len = bytes.len() as u64;
                    if let Some(total) = len
                        && offset + piece_len > total
                    {
                        return Err(Error::OriginProtocol(format!(
                            "origin sent more than its content-length {total}"
                        )));
                    }
                    if !entry.has_piece(number) {
                        let piece = store(entry.clone(), number, offset, bytes).await?;
                        progress.piece_from_origin(piece);
                    }
                    number += 1;
                    offset += piece_len;
                }
            }
            if done {
                break;
            }
        }
        match len {
            Some(total) if total != offset => Err(Error::OriginUnavailable(format!(
                "body ended after {offset} of {total} bytes"
            ))),
            Some(_) => Ok(entry),
            None => {
                let e = entry.clone();
                tokio::task::spawn_blocking(move || e.set_content_length(offset))
                    .await
                    .map_err(join_err)??;
                Ok(entry)
            }
        }
    }

    async fn open(
        &self,
        spec: &DownloadSpec,
        len: Option<u64>,
        piece_length: u64,
    ) -> Result<Arc<TaskEntry>> {
        let (storage, id, url) = (
            self.storage.clone(),
            spec.task_id.clone(),
            redacted(&spec.url),
        );
        tokio::task::spawn_blocking(move || storage.open_task(&id, &url, len, piece_length))
            .await
            .map_err(join_err)?
    }
}

/// A piece that was just stored.
#[derive(Debug, Clone, Copy)]
pub struct NewPiece {
    /// Number.
    pub number: u32,
    /// Offset.
    pub offset: u64,
    /// Length.
    pub length: u64,
    /// Digest.
    pub digest: Digest,
}

/// Hashes and writes a piece off the async runtime.
async fn store(entry: Arc<TaskEntry>, number: u32, offset: u64, bytes: Bytes) -> Result<NewPiece> {
    tokio::task::spawn_blocking(move || {
        let digest = Digest::of(&bytes);
        entry.write_piece(number, offset, &bytes, digest)?;
        Ok(NewPiece {
            number,
            offset,
            length: bytes.len() as u64,
            digest,
        })
    })
    .await
    .map_err(join_err)?
}

pub(crate) fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Storage(format!("blocking task failed: {e}"))
}

async fn backoff(attempt: u32, e: &Error, spec: &DownloadSpec) {
    let delay = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5)))
        .min(Duration::from_secs(2));
    tracing::warn!(task_id = %spec.task_id, attempt, error = %e, ?delay, "origin request failed, retrying");
    tokio::time::sleep(delay).await;
}
