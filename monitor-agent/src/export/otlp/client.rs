//! One export request: `POST <endpoint>/v1/metrics` with the protobuf body and the
//! operator's headers (marked sensitive, so hyper never shows them), on a new HTTP/1.1
//! connection (a push is one request a minute: no pool to keep), TLS for https with the
//! system's CA bundle. Everything is under one timeout, so an endpoint that accepts the
//! connection and then says nothing costs a delivery attempt, not the queue.
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Request, StatusCode,
    header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT},
};
use hyper_util::rt::TokioIo;
use log::debug;

use super::stats::Outcome;
use crate::settings::otlp::{Endpoint, Header};

/// The whole request: connect, TLS, send, the answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What of an error answer is kept for the log.
const MAX_ANSWER_BYTES: usize = 4096;

pub struct Client {
    endpoint: Endpoint,
    headers: Vec<(HeaderName, HeaderValue)>,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// How a request ended, and what to say about it in the log.
#[derive(Debug)]
pub struct Answer {
    pub outcome: Outcome,
    pub detail: String,
}

impl Client {
    pub fn new(endpoint: Endpoint, headers: &[Header]) -> anyhow::Result<Client> {
        let headers = headers
            .iter()
            .map(|header| {
                let name = HeaderName::try_from(header.name.as_str()).map_err(|_| {
                    anyhow!("--otlp.headers: `{}` is not a header name", header.name)
                })?;
                let mut value = HeaderValue::try_from(header.value()).map_err(|_| {
                    anyhow!(
                        "--otlp.headers: the value of `{}` cannot be sent",
                        header.name
                    )
                })?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect::<anyhow::Result<_>>()?;
        let tls = if endpoint.https {
            Some(
                crate::identity::kubernetes::client::tls_connector(None)
                    .context("--otlp.endpoint is https")?,
            )
        } else {
            None
        };
        Ok(Client {
            endpoint,
            headers,
            tls,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `body`; never longer than [`TIMEOUT`].
    pub async fn send(&self, body: Bytes) -> Answer {
        match tokio::time::timeout(TIMEOUT, self.exchange(body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => Answer {
                outcome: Outcome::Failure,
                detail: format!("{err:#}"),
            },
            Err(_) => Answer {
                outcome: Outcome::Failure,
                detail: format!("no answer within {TIMEOUT:?}"),
            },
        }
    }

    async fn exchange(&self, body: Bytes) -> anyhow::Result<Answer> {
        let io = self.endpoint.connect(self.tls.as_ref()).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io))
                .await
                .context("HTTP handshake")?;
        let connection = tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!("OTLP connection ended: {err}");
            }
        });
        let mut request = Request::post(self.endpoint.path.as_str())
            .header(HOST, self.endpoint.authority.as_str())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(
                USER_AGENT,
                concat!("monitor-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .context("building the request")?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .context("sending the request")?;
            let status = response.status();
            // The body is read to the end (and bounded) so the connection ends cleanly; an
            // error's text goes to the log.
            let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .unwrap_or_default();
            Ok(classify(status, &answer))
        }
        .await;
        connection.abort();
        result
    }
}

/// OTLP/HTTP's rules: 2xx is taken; 429, 502, 503, 504 are worth retrying; anything else
/// is final.
pub fn classify(status: StatusCode, answer: &[u8]) -> Answer {
    let outcome = if status.is_success() {
        Outcome::Success
    } else if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
        Outcome::Failure
    } else {
        Outcome::Rejected
    };
    let text: String = String::from_utf8_lossy(answer)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let detail = if text.is_empty() || status.is_success() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    };
    Answer { outcome, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_otlp_says() {
        assert_eq!(classify(StatusCode::OK, b"").outcome, Outcome::Success);
        for retry in [429, 502, 503, 504] {
            let status = StatusCode::from_u16(retry).unwrap();
            assert_eq!(classify(status, b"").outcome, Outcome::Failure, "{retry}");
        }
        for final_ in [400, 401, 403, 404, 413, 500] {
            let status = StatusCode::from_u16(final_).unwrap();
            assert_eq!(classify(status, b"").outcome, Outcome::Rejected, "{final_}");
        }
        let answer = classify(StatusCode::UNAUTHORIZED, b"bad key\n");
        assert_eq!(answer.detail, "HTTP 401 Unauthorized: bad key");
    }

    #[test]
    fn header_values_are_not_in_debug_output() {
        let endpoint = crate::settings::otlp::parse_endpoint("http://127.0.0.1:4318").unwrap();
        let raw = [crate::settings::otlp::raw_header("api-key=s3cr3t").unwrap()];
        let headers = crate::settings::otlp::parse_headers(&raw).unwrap();
        let client = Client::new(endpoint, &headers).unwrap();
        let shown = format!("{:?}", client.headers);
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
