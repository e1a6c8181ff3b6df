//! dfget's conversation with the daemon over the unix socket.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use darter_proto::common::v1 as pb;
use darter_proto::dfdaemon::v1::download_task_response::Response;
use darter_proto::dfdaemon::v1::{DownloadTaskRequest, dfdaemon_download_client::DfdaemonDownloadClient};
use hyper_util::rt::TokioIo;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

use super::args::Args;
use super::exit;
use super::progress::Display;

/// A failure with its exit code and message.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: i32,
    /// What to tell the user.
    pub message: String,
}

fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into() }
}

/// Connects to the daemon's unix socket.
pub async fn connect(socket: &Path) -> Result<Channel, Failure> {
    let path = socket.to_path_buf();
    let no_daemon = || {
        fail(
            exit::NO_DAEMON,
            format!(
                "no dfdaemon is listening on {}; start one with `dfdaemon` (or point dfget at it with --socket)",
                socket.display()
            ),
        )
    };
    if !path.exists() {
        return Err(no_daemon());
    }
    Endpoint::try_from("http://dfdaemon.local")
        .expect("static uri")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|_| no_daemon())
}

fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| fail(exit::OUTPUT, format!("cannot resolve {}: {e}", path.display())))?
            .join(path)
    };
    if abs.is_dir() {
        return Err(fail(exit::OUTPUT, format!("output {} is a directory; name a file", abs.display())));
    }
    Ok(abs)
}

/// The exit code for a failed call: by its reason when the daemon gave one
/// this build knows, else by the gRPC code (a status without a reason came
/// from the transport, not from the daemon's error mapping).
pub(super) fn code_for(status: &tonic::Status) -> i32 {
    match darter_common::status::reason(status) {
        Some(reason) => exit::for_reason(reason),
        None => match status.code() {
            Code::DeadlineExceeded => exit::TIMEOUT,
            Code::Unavailable if !darter_common::status::has_reason(status) => exit::NO_DAEMON,
            _ => exit::FAILED,
        },
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

/// Runs one download; returns the exit code.
pub async fn run(args: Args) -> Result<(), Failure> {
    let headers = args.parsed_headers().map_err(|m| fail(exit::USAGE, m))?;
    let output = absolute(&args.output)?;
    let socket = args.socket.clone().unwrap_or_else(crate::paths::default_socket);
    let channel = connect(&socket).await?;
    let mut client = DfdaemonDownloadClient::new(channel).max_decoding_message_size(16 << 20);
    let download = pb::Download {
        url: args.url.clone(),
        digest: args.digest.clone(),
        tag: args.tag.clone(),
        application: args.application.clone(),
        request_headers: headers.into_iter().collect(),
        output_path: output.display().to_string(),
        timeout_ms: args.timeout.as_millis() as u64,
        disable_back_to_source: args.disable_back_to_source,
        piece_length: 0,
    };
    let display = Display::new(!args.no_progress && std::io::stderr().is_terminal());
    let started = std::time::Instant::now();
    let call = async {
        let mut stream = client.download_task(DownloadTaskRequest { download: Some(download) }).await?.into_inner();
        while let Some(msg) = stream.message().await? {
            match msg.response {
                Some(Response::Started(s)) => {
                    display.set_total(s.content_length);
                    display.set_done(s.local_bytes);
                }
                Some(Response::Piece(p)) => display.set_done(p.completed_bytes),
                Some(Response::Finished(f)) => return Ok(Some(f)),
                None => {}
            }
        }
        Ok::<_, tonic::Status>(None)
    };
    // The daemon enforces the timeout; this bound only catches a daemon that stopped answering.
    let grace = args.timeout + std::time::Duration::from_secs(10);
    let result = tokio::time::timeout(grace, call)
        .await
        .map_err(|_| fail(exit::TIMEOUT, format!("download timed out after {:?}", args.timeout)))?;
    match result {
        Ok(Some(f)) => {
            let secs = started.elapsed().as_secs_f64();
            let line = format!(
                "downloaded {} to {} in {secs:.2}s ({}/s): origin {}, peers {}, local {}",
                human(f.content_length),
                output.display(),
                human((f.content_length as f64 / secs.max(1e-6)) as u64),
                human(f.origin_bytes),
                human(f.peer_bytes),
                human(f.local_bytes)
            );
            display.finish();
            if args.verbose || display.visible() {
                eprintln!("{line}");
            }
            Ok(())
        }
        Ok(None) => {
            display.finish();
            Err(fail(exit::FAILED, "dfdaemon ended the download without finishing it"))
        }
        Err(status) => {
            display.finish();
            Err(fail(code_for(&status), status.message().to_string()))
        }
    }
}
