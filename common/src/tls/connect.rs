//! The client side of a control connection: a tonic channel whose
//! connections are TLS to a server that must be what the caller expects.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// An endpoint for `addr` (`host:port`), with `TCP_NODELAY`; the caller adds
/// timeouts and keepalives.
pub fn endpoint(addr: &str) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("{addr:?} is not a host:port address: {e}"))?
        .tcp_nodelay(true))
}

/// A lazy channel over `endpoint`: TLS with `config` (whose verifier decides
/// which servers are acceptable), plain when `None`.
pub fn lazy(endpoint: Endpoint, config: Option<Arc<rustls::ClientConfig>>) -> Channel {
    let Some(config) = config else {
        return endpoint.connect_lazy();
    };
    let connector = tower::service_fn(move |uri: Uri| {
        let config = config.clone();
        async move {
            let host = uri.host().ok_or("no host in the address")?.trim_matches(['[', ']']).to_owned();
            let port = uri.port_u16().ok_or("no port in the address")?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            // The name is not checked (identities are); an IP sends no SNI.
            let name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(host).map_err(|e| format!("bad host name: {e}"))?,
            };
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(TokioIo::new(tls))
        }
    });
    endpoint.connect_with_connector_lazy(connector)
}
