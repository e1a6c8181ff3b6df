//! One JSON request over HTTP/1.1 to a service on loopback (the manager's
//! REST API), without a client library; and raw exchanges, for requests a
//! client library would not send.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `method path` with an optional bearer token and JSON body; answers
/// the status and the JSON body (`null` when empty or not JSON).
pub async fn json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    tokio::time::timeout(TIMEOUT, send(addr, method, path, bearer, body))
        .await
        .map_err(|_| anyhow::anyhow!("{method} http://{addr}{path}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("{method} http://{addr}{path}"))
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONNECTION, "close");
    if let Some(token) = bearer {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let payload = match body {
        Some(v) => {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(v)?)
        }
        None => Bytes::new(),
    };
    let response = sender.send_request(request.body(Full::new(payload))?).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)))
}

/// Sends `request` as written (a raw HTTP/1.1 exchange, for requests a
/// client library will not send) and reads the answer until the server
/// closes the connection; the request should say `Connection: close`.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{addr}: no answer within {TIMEOUT:?}"))?
}
