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

use bytes::Bytes;
use darter_common::digest::{Digest, Hasher};
use darter_common::piece::{check_geometry, piece_length_for, piece_range};
use futures::{StreamExt as _, TryStreamExt as _};

use super::announcer::Reporter;
use super::piece_buf::PieceBuf;
use super::progress::Progress;
use super::spec::DownloadSpec;
use crate::backend::redacted;
use crate::backend::{Backend, GetRequest, GetResponse, Range};
use crate::config::BackToSourceConfig;
use crate::error::{Error, Result};
use crate::storage::{Lease, Shape, Storage};

/// What back-to-source needs.
#[derive(Clone)]
pub struct BackToSource {
    /// The origin backend for this URL.
    pub backend: Arc<dyn Backend>,
    /// Storage.
    pub storage: Arc<Storage>,
    /// Limits.
    pub config: BackToSourceConfig,
    /// Where origin pieces are reported (the scheduler), when in a swarm.
    pub reporter: Option<Reporter>,
}

/// How the origin is to be read.
enum Plan {
    /// Known length, ranges work; the validator pins the content version.
    Ranged { len: u64, validator: Option<String> },
    /// Stream a full response (this one, when the probe already got it).
    Stream(Option<GetResponse>),
}

impl BackToSource {
    /// Fetches every missing piece of `spec` into storage; returns the task,
    /// leased. The origin is always probed first, so a stored partial task is
    /// resumed only when the origin still describes the same content.
    pub async fn fetch(&self, spec: &DownloadSpec, progress: &Progress) -> Result<Lease> {
        match self.probe(spec).await? {
            Plan::Ranged { len, validator } => self.fetch_ranged(spec, len, validator, progress).await,
            Plan::Stream(first) => self.fetch_streamed(spec, first, progress).await,
        }
    }

    /// A piece from the origin is stored: count it and report its digest.
    fn piece_done(&self, progress: &Progress, piece: NewPiece, content_length: Option<u64>, piece_length: u64) {
        progress.piece_from_origin(piece);
        if let Some(r) = &self.reporter {
            r.origin_piece(&piece, content_length, piece_length);
        }
    }

    fn request(&self, spec: &DownloadSpec, range: Option<Range>, if_range: Option<String>) -> GetRequest {
        GetRequest { url: spec.url.clone(), headers: spec.headers.clone(), range, if_range }
    }

    async fn probe(&self, spec: &DownloadSpec) -> Result<Plan> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut resp =
                    self.backend.get(self.request(spec, Some(Range { start: 0, end: Some(0) }), None)).await?;
                match (resp.status, resp.content_range) {
                    (206, Some((0, 0, Some(total)))) => {
                        while resp.body.try_next().await?.is_some() {}
                        Ok(Plan::Ranged { len: total, validator: resp.validator })
                    }
                    (206, _) => Ok(Plan::Stream(None)),
                    (200, _) => Ok(Plan::Stream(Some(resp))),
                    (416, _) if resp.unsatisfied_total == Some(0) => {
                        Ok(Plan::Ranged { len: 0, validator: resp.validator })
                    }
                    // A 416 that does not say the content is empty: read it whole.
                    (416, _) => Ok(Plan::Stream(None)),
                    (status, _) => Err(Error::OriginStatus { status, url: redacted(&spec.url).into_string() }),
                }
            }
            .await;
            match result {
                Err(e) if e.is_transient() && attempt < self.config.max_attempts => backoff(attempt, &e, spec).await,
                other => return other,
            }
        }
    }

    async fn fetch_ranged(
        &self,
        spec: &DownloadSpec,
        len: u64,
        validator: Option<String>,
        progress: &Progress,
    ) -> Result<Lease> {
        let piece_length = spec.piece_length.unwrap_or_else(|| piece_length_for(Some(len)));
        let entry =
            self.open(spec, Shape { content_length: Some(len), piece_length, validator: validator.clone() }).await?;
        progress.started(&entry);
        let geometry = Geometry { len, piece_length, validator };
        let segments = plan_segments(&entry.missing_pieces(), piece_length, self.config.concurrency);
        futures::stream::iter(segments)
            .map(|segment| self.fetch_segment(spec, &entry, &geometry, segment, progress))
            .buffer_unordered(self.config.concurrency)
            .try_collect::<()>()
            .await?;
        Ok(entry)
    }

    /// Fetches a run of consecutive pieces with one range request, cutting
    /// pieces as they arrive and storing each while the next is received. A
    /// broken body is resumed from the byte where it broke.
    async fn fetch_segment(
        &self,
        spec: &DownloadSpec,
        entry: &Lease,
        g: &Geometry,
        segment: Segment,
        progress: &Progress,
    ) -> Result<()> {
        let end_number = segment.first + segment.count;
        let (last_offset, last_len) = piece_range(end_number - 1, g.len, g.piece_length);
        let end = last_offset + last_len - 1;
        let mut number = segment.first;
        let mut buf = PieceBuf::default();
        let mut storing = futures::stream::FuturesUnordered::new();
        let mut attempt = 0;
        while number < end_number {
            attempt += 1;
            let start = piece_range(number, g.len, g.piece_length).0 + buf.len() as u64;
            let number_before = number;
            let result: Result<()> = async {
                let range = Some(Range { start, end: Some(end) });
                let mut resp = self.backend.get(self.request(spec, range, g.validator.clone())).await?;
                match (resp.status, resp.content_range) {
                    (206, Some((a, b, total))) if a == start && b == end && total.is_none_or(|t| t == g.len) => {}
                    (206, other) => {
                        return Err(Error::OriginProtocol(format!(
                            "asked for bytes {start}-{end}, got content-range {other:?}"
                        )));
                    }
                    (200, _) => {
                        return Err(Error::OriginChanged(redacted(&spec.url).into_string()));
                    }
                    (status, _) => {
                        return Err(Error::OriginStatus { status, url: redacted(&spec.url).into_string() });
                    }
                }
                while let Some(mut chunk) = resp.body.try_next().await? {
                    while !chunk.is_empty() {
                        if number >= end_number {
                            return Err(Error::OriginProtocol(format!(
                                "origin sent more than the bytes {start}-{end} asked for"
                            )));
                        }
                        let (offset, length) = piece_range(number, g.len, g.piece_length);
                        buf.fill_from(&mut chunk, length as usize - buf.len());
                        if buf.len() as u64 == length {
                            // Keep at most two pieces hashing/writing behind the receiver.
                            while storing.len() >= 2 {
                                let piece = storing.next().await.expect("non-empty")?;
                                self.piece_done(progress, piece, Some(g.len), g.piece_length);
                            }
                            storing.push(store(entry.clone(), number, offset, buf.take()));
                            number += 1;
                        }
                    }
                }
                if number < end_number {
                    return Err(Error::OriginUnavailable(format!(
                        "body ended at piece {number} of bytes {start}-{end}"
                    )));
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => {}
                Err(e) if e.is_transient() && attempt < self.config.max_attempts => {
                    if number > number_before {
                        attempt = 0;
                    }
                    backoff(attempt.max(1), &e, spec).await;
                }
                Err(e) => return Err(e),
            }
        }
        while let Some(piece) = storing.next().await {
            self.piece_done(progress, piece?, Some(g.len), g.piece_length);
        }
        Ok(())
    }

    async fn fetch_streamed(
        &self,
        spec: &DownloadSpec,
        mut first: Option<GetResponse>,
        progress: &Progress,
    ) -> Result<Lease> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let resp = match first.take() {
                    Some(r) => r,
                    None => self.backend.get(self.request(spec, None, None)).await?,
                };
                if resp.status != 200 {
                    return Err(Error::OriginStatus { status: resp.status, url: redacted(&spec.url).into_string() });
                }
                self.stream_body(spec, resp, progress).await
            }
            .await;
            match result {
                Err(e) if e.is_transient() && attempt < self.config.max_attempts => backoff(attempt, &e, spec).await,
                other => return other,
            }
        }
    }

    /// Cuts a full body into pieces; pieces already stored are skipped.
    async fn stream_body(&self, spec: &DownloadSpec, mut resp: GetResponse, progress: &Progress) -> Result<Lease> {
        let len = resp.content_length;
        let piece_length = spec.piece_length.unwrap_or_else(|| piece_length_for(len));
        let entry =
            self.open(spec, Shape { content_length: len, piece_length, validator: resp.validator.clone() }).await?;
        progress.started(&entry);
        let mut number = 0u32;
        let mut offset = 0u64;
        let mut buf = PieceBuf::default();
        loop {
            let chunk = resp.body.try_next().await?;
            let done = chunk.is_none();
            let mut chunk = chunk.unwrap_or_default();
            while !chunk.is_empty() || (done && !buf.is_empty()) {
                buf.fill_from(&mut chunk, piece_length as usize - buf.len());
                let max = self.config.max_content_length.as_u64();
                if len.is_none() && offset + buf.len() as u64 > max {
                    return Err(Error::LimitExceeded(format!(
                        "the origin sent more than {} without saying its length (back_to_source.max_content_length)",
                        self.config.max_content_length
                    )));
                }
                if buf.len() as u64 == piece_length || (done && chunk.is_empty()) {
                    let piece_len = buf.len() as u64;
                    if let Some(total) = len
                        && offset + piece_len > total
                    {
                        return Err(Error::OriginProtocol(format!("origin sent more than its content-length {total}")));
                    }
                    let chunks = buf.take();
                    if !entry.has_piece(number) {
                        let piece = store(entry.clone(), number, offset, chunks).await?;
                        self.piece_done(progress, piece, len, piece_length);
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
            Some(total) if total != offset => {
                Err(Error::OriginUnavailable(format!("body ended after {offset} of {total} bytes")))
            }
            Some(_) => Ok(entry),
            None => {
                let e = entry.clone();
                tokio::task::spawn_blocking(move || e.set_content_length(offset)).await.map_err(join_err)??;
                Ok(entry)
            }
        }
    }

    /// Opens (or resumes) the task in storage, refusing shapes it cannot hold.
    async fn open(&self, spec: &DownloadSpec, shape: Shape) -> Result<Lease> {
        check_geometry(shape.content_length.unwrap_or(0), shape.piece_length).map_err(Error::OriginProtocol)?;
        let (storage, id, url) = (self.storage.clone(), spec.task_id.clone(), redacted(&spec.url));
        tokio::task::spawn_blocking(move || storage.open_task(&id, &url, shape)).await.map_err(join_err)?
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
async fn store(entry: Lease, number: u32, offset: u64, chunks: Vec<Bytes>) -> Result<NewPiece> {
    tokio::task::spawn_blocking(move || {
        let mut hasher = Hasher::new();
        chunks.iter().for_each(|c| hasher.update(c));
        let digest = hasher.finish();
        entry.write_piece(number, offset, &chunks, digest)?;
        let length = chunks.iter().map(|c| c.len() as u64).sum();
        Ok(NewPiece { number, offset, length, digest })
    })
    .await
    .map_err(join_err)?
}

pub(crate) fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Storage(format!("blocking task failed: {e}"))
}

async fn backoff(attempt: u32, e: &Error, spec: &DownloadSpec) {
    let delay = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(2));
    tracing::warn!(task_id = %spec.task_id, attempt, error = %e, ?delay, "origin request failed, retrying");
    tokio::time::sleep(delay).await;
}

/// Content length, piece length and validator of a task being fetched.
#[derive(Debug, Clone)]
struct Geometry {
    len: u64,
    piece_length: u64,
    validator: Option<String>,
}

/// Consecutive pieces fetched with one range request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    first: u32,
    count: u32,
}

/// Longest range asked for in one request (fewer requests, less per-request
/// cost at the origin), unless that would leave `concurrency` idle.
const MAX_SEGMENT_BYTES: u64 = 16 << 20;

/// Groups missing pieces into runs of consecutive numbers, each at most
/// [`MAX_SEGMENT_BYTES`] and small enough that `concurrency` requests share
/// the work.
fn plan_segments(missing: &[u32], piece_length: u64, concurrency: usize) -> Vec<Segment> {
    let total = missing.len() as u64;
    let by_bytes = (MAX_SEGMENT_BYTES / piece_length).max(1);
    let by_concurrency = total.div_ceil(concurrency.max(1) as u64).max(1);
    let max_count = by_bytes.min(by_concurrency) as u32;
    let mut segments: Vec<Segment> = Vec::new();
    for &n in missing {
        match segments.last_mut() {
            Some(s) if s.first + s.count == n && s.count < max_count => s.count += 1,
            _ => segments.push(Segment { first: n, count: 1 }),
        }
    }
    segments
}

#[cfg(test)]
#[path = "back_to_source_tests.rs"]
mod tests;
