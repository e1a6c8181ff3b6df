//! Turns one request into a response according to the resource's behaviour.

use std::convert::Infallible;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::{Counters, OriginBody, Plan, Source};
use super::range::{self, RangeRequest};
use super::{Content, Resource, State};

type Reply = Response<OriginBody>;

pub(super) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_owned();
    let record = state.record(&path);
    let range_header = req.headers().get(header::RANGE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    {
        let mut log = record.log.lock().unwrap();
        log.requests += 1;
        log.ranges.push(range_header.clone());
        log.last_headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
    }

    let resource = state.resources.lock().unwrap().get(&path).cloned();
    let Some(resource) = resource else {
        return Ok(message(StatusCode::NOT_FOUND, "origin: no such resource\n"));
    };
    let behavior = &resource.behavior;
    if let Some(delay) = behavior.header_delay {
        tokio::time::sleep(delay).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut reply = message(StatusCode::METHOD_NOT_ALLOWED, "origin: only GET and HEAD\n");
        reply.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(reply);
    }
    if let Some((name, value)) = &behavior.require_header {
        let present = req.headers().get_all(name.as_str()).iter().any(|v| v.as_bytes() == value.as_bytes());
        if !present {
            return Ok(message(StatusCode::FORBIDDEN, "origin: required header missing\n"));
        }
    }
    if let Some(location) = &behavior.redirect_to {
        let mut reply = message(StatusCode::FOUND, "origin: moved\n");
        match HeaderValue::from_str(location) {
            Ok(v) => reply.headers_mut().insert(header::LOCATION, v),
            Err(_) => {
                return Ok(message(StatusCode::INTERNAL_SERVER_ERROR, "origin: bad redirect_to\n"));
            }
        };
        return Ok(reply);
    }
    if let Some(code) = behavior.status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(message(status, format!("origin: status {code}\n")));
    }

    let (source, len) = match open(&resource.content).await {
        Ok(opened) => opened,
        Err(e) => {
            return Ok(message(StatusCode::INTERNAL_SERVER_ERROR, format!("origin: {e}\n")));
        }
    };
    // RFC 9110 If-Range: a validator that no longer matches means "send it all".
    let if_range = req.headers().get(header::IF_RANGE).map(|v| v.as_bytes().to_vec());
    let stale = if_range.is_some_and(|v| behavior.etag.as_deref().map(str::as_bytes) != Some(v.as_slice()));
    let wanted =
        if behavior.ignore_range || stale { RangeRequest::Full } else { range::parse(range_header.as_deref(), len) };
    let (status, start, end) = match wanted {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        RangeRequest::Unsatisfiable => {
            let mut reply = message(StatusCode::RANGE_NOT_SATISFIABLE, "");
            set(&mut reply, header::CONTENT_RANGE, format!("bytes */{len}"));
            set(&mut reply, header::ACCEPT_RANGES, "bytes".to_owned());
            return Ok(reply);
        }
    };

    let body = if req.method() == Method::HEAD {
        OriginBody::message("")
    } else {
        let plan = Plan {
            source,
            start,
            len: end - start,
            rate: behavior.rate_limit,
            reset_after: behavior.reset_after.filter(|&limit| end - start > limit && should_reset(&resource)),
        };
        let counters = Counters { path: Arc::clone(&record.body_bytes), total: Arc::clone(&state.total_body_bytes) };
        OriginBody::content(plan, counters)
    };
    let mut reply = Response::new(body);
    *reply.status_mut() = status;
    set(&mut reply, header::CONTENT_TYPE, "application/octet-stream".to_owned());
    if !behavior.ignore_range {
        set(&mut reply, header::ACCEPT_RANGES, "bytes".to_owned());
    }
    if let Some(etag) = &behavior.etag {
        set(&mut reply, header::ETAG, etag.clone());
    }
    if status == StatusCode::PARTIAL_CONTENT {
        set(&mut reply, header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1));
    }
    if !behavior.no_content_length {
        set(&mut reply, header::CONTENT_LENGTH, (end - start).to_string());
    }
    Ok(reply)
}

/// Whether this content request should be cut short: always, or for a
/// `reset_once` resource only the first time a body longer than the limit is sent.
fn should_reset(resource: &Resource) -> bool {
    !resource.behavior.reset_once || !resource.reset_fired.swap(true, Ordering::Relaxed)
}

/// Opens the content and returns it with its current length.
async fn open(content: &Content) -> std::io::Result<(Source, u64)> {
    match content {
        Content::Bytes(b) => Ok((Source::Bytes(b.clone()), b.len() as u64)),
        Content::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let file = File::open(&path)?;
                let len = file.metadata()?.len();
                Ok((Source::File(Arc::new(file)), len))
            })
            .await
            .map_err(std::io::Error::other)?
        }
    }
}

fn message(status: StatusCode, text: impl Into<bytes::Bytes>) -> Reply {
    let mut reply = Response::new(OriginBody::message(text));
    *reply.status_mut() = status;
    reply
}

fn set(reply: &mut Reply, name: header::HeaderName, value: String) {
    let value = HeaderValue::try_from(value).expect("origin builds only ASCII header values");
    reply.headers_mut().insert(name, value);
}
