//! With `tracing.otlp_endpoint` set, the daemon exports its spans over
//! OTLP/gRPC: a collector started by the test receives the download's span.

mod support;

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use support::Daemon;
use testkit::data::random_bytes;
use testkit::eventually::{DEADLINE, wait_until};
use testkit::origin::{Behavior, Content, Origin};
use tokio_stream::wrappers::TcpListenerStream;

/// A received span: its name and attribute keys.
type SpanSeen = (String, Vec<String>);

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<SpanSeen>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((span.name, span.attributes.into_iter().map(|kv| kv.key).collect()));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_the_otlp_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tonic::transport::Server::builder().add_service(TraceServiceServer::new(collector.clone()));
    tokio::spawn(server.serve_with_incoming(TcpListenerStream::new(listener)));

    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let mut daemon = Daemon::start(dir.path(), &[("DFDAEMON__TRACING__OTLP_ENDPOINT", &endpoint)]).await;
    origin.add("/traced", Content::Bytes(random_bytes(1 << 20, 14)), Behavior::default());
    let r = daemon.dfget(&origin.url("/traced"), &dir.path().join("t"), &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Spans are batched; a graceful shutdown flushes them.
    let status = daemon.terminate().await;
    assert!(status.success(), "{status}\n{}", daemon.log());
    wait_until("the download span at the collector", DEADLINE, || async {
        collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .any(|(name, keys)| name == "download" && keys.iter().any(|k| k == "task_id"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: got {:?}\n{}", collector.spans.lock().unwrap(), daemon.log()));
}
