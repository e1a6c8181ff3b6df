//! Edge cases of back-to-source against a scripted origin (no sockets).

use std::sync::Mutex;

use futures::StreamExt as _;

use super::*;
use crate::storage::Storage;

/// A scripted answer: status, Content-Range of a 206, total of a 416, body.
type Answer = (u16, Option<(u64, u64, Option<u64>)>, Option<u64>, Vec<u8>);

/// An origin that answers each request with a scripted response.
struct Scripted {
    answer: Box<dyn Fn(&GetRequest) -> Answer + Send + Sync>,
    seen: Mutex<Vec<Option<Range>>>,
}

impl Backend for Scripted {
    fn get(&self, request: GetRequest) -> futures::future::BoxFuture<'_, Result<GetResponse>> {
        self.seen.lock().unwrap().push(request.range);
        let (status, content_range, unsatisfied_total, body) = (self.answer)(&request);
        let len = body.len() as u64;
        Box::pin(async move {
            Ok(GetResponse {
                status,
                content_length: Some(len),
                content_range,
                unsatisfied_total,
                validator: None,
                body: futures::stream::iter([Ok(Bytes::from(body))]).boxed(),
            })
        })
    }
}

fn fetcher(dir: &std::path::Path, answer: Scripted) -> BackToSource {
    BackToSource {
        backend: Arc::new(answer),
        storage: Arc::new(Storage::open(dir).unwrap()),
        config: BackToSourceConfig::default(),
        reporter: None,
    }
}

fn spec() -> DownloadSpec {
    darter_proto::common::v1::Download { url: "http://origin.test/f".into(), ..Default::default() }.try_into().unwrap()
}

fn scripted(f: impl Fn(&GetRequest) -> Answer + Send + Sync + 'static) -> Scripted {
    Scripted { answer: Box::new(f), seen: Mutex::new(Vec::new()) }
}

#[tokio::test]
async fn a_416_without_a_length_is_not_taken_for_empty_content() {
    let dir = tempfile::tempdir().unwrap();
    let b = fetcher(
        dir.path(),
        scripted(|r| match r.range {
            Some(_) => (416, None, None, Vec::new()),
            None => (200, None, None, b"hello".to_vec()),
        }),
    );
    let lease = b.fetch(&spec(), &Progress::new()).await.unwrap();
    assert_eq!(lease.content_length(), Some(5));
}

#[tokio::test]
async fn a_416_that_says_empty_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let b = fetcher(dir.path(), scripted(|_| (416, None, Some(0), Vec::new())));
    let lease = b.fetch(&spec(), &Progress::new()).await.unwrap();
    assert_eq!(lease.content_length(), Some(0));
    assert!(lease.missing_pieces().is_empty());
}

#[tokio::test]
async fn a_range_answer_for_another_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = fetcher(
        dir.path(),
        scripted(|r| match r.range {
            Some(Range { start: 0, end: Some(0) }) => (206, Some((0, 0, Some(10))), None, vec![0]),
            Some(Range { start, end: Some(end) }) => {
                (206, Some((start, end, Some(11))), None, vec![0; (end - start + 1) as usize])
            }
            _ => (500, None, None, Vec::new()),
        }),
    );
    let b = BackToSource { config: BackToSourceConfig { max_attempts: 1, ..Default::default() }, ..b };
    let err = b.fetch(&spec(), &Progress::new()).await.unwrap_err();
    assert!(matches!(err, Error::OriginProtocol(_)), "{err}");
}

#[tokio::test]
async fn absurd_lengths_are_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let b = fetcher(dir.path(), scripted(|_| (206, Some((0, 0, Some(u64::MAX / 2))), None, vec![0])));
    let err = b.fetch(&spec(), &Progress::new()).await.unwrap_err();
    assert!(matches!(err, Error::OriginProtocol(ref m) if m.contains("pieces")), "{err}");
    assert!(b.storage.list().is_empty());
}

#[test]
fn segments_follow_gaps_and_limits() {
    let seg = |first, count| Segment { first, count };
    assert_eq!(plan_segments(&[0, 1, 2, 5, 6], 1 << 20, 1), vec![seg(0, 3), seg(5, 2)]);
    // 64 pieces of 1 MiB over 4 requests: 16 each (also the byte cap).
    let all: Vec<u32> = (0..64).collect();
    assert_eq!(plan_segments(&all, 1 << 20, 4), vec![seg(0, 16), seg(16, 16), seg(32, 16), seg(48, 16)]);
    // Few pieces still spread over the requests.
    assert_eq!(plan_segments(&[0, 1, 2, 3], 1 << 20, 4).len(), 4);
    // The byte cap bounds huge tasks.
    let many: Vec<u32> = (0..1024).collect();
    assert!(plan_segments(&many, 1 << 20, 4).iter().all(|s| s.count == 16));
    assert!(plan_segments(&[], 1 << 20, 4).is_empty());
}
