//! One `GET` on a fresh HTTP/1.1 connection, for the identity clients (Docker's Unix socket,
//! the Kubernetes API): a handful of requests over a process's life, so no pool. The response
//! body streams as it arrives, for as long as the returned `Connection` lives.
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::{
    Request, Response,
    body::Incoming,
    header::{ACCEPT, AUTHORIZATION, HOST, HeaderValue, USER_AGENT},
};
use hyper_util::rt::TokioIo;
use log::debug;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    task::JoinHandle,
};

/// Ends the connection's task when the exchange is over (or dropped).
pub struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `GET path` over `io` with `Host: host`, JSON accepted and, when given, the
/// (sensitive) `authorization`. The connection runs on the caller's runtime.
pub async fn get<IO>(
    io: IO,
    host: &str,
    path: &str,
    authorization: Option<HeaderValue>,
) -> anyhow::Result<(Response<Incoming>, Connection)>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .context("HTTP handshake")?;
    let connection = Connection(tokio::spawn(async move {
        if let Err(err) = connection.await {
            debug!("API connection ended: {err}");
        }
    }));
    let mut request = Request::get(path)
        .header(HOST, host)
        .header(ACCEPT, "application/json")
        .header(
            USER_AGENT,
            concat!("monitor-agent/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .context("building the request")?;
    if let Some(mut value) = authorization {
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let response = sender
        .send_request(request)
        .await
        .context("sending the request")?;
    Ok((response, connection))
}
