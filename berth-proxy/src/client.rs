//! The client of the proxy's admin API, used by `berth server` to push route tables and
//! to find out whether a proxy is running. One short-lived HTTP/1.1 connection over the
//! Unix socket per call, each bounded by a timeout, because a stuck proxy must never stall
//! the engine.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_domain::routes::RouteTable;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::wire::{
    AppliedResponse, ErrorResponse, ProxyHealth, StaleResponse, HEALTH_PATH, ROUTES_PATH,
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Route tables are small, but a proxy answering garbage must not exhaust memory.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Longest part of an unexpected response body quoted in an error message.
const MAX_QUOTED_BODY_CHARS: usize = 500;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Talks to `berth proxy` over its admin socket.
#[derive(Debug, Clone)]
pub struct ProxyAdminClient {
    socket: PathBuf,
    timeout: Duration,
}

/// The result of `PUT /routes`. A stale table is an expected outcome of racing updates,
/// not a failure: the proxy keeps the newer table it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The proxy now serves the table (and has persisted it).
    Applied { generation: u64, routes: usize },
    /// The proxy kept its table because it is newer than the one sent.
    Stale { current_generation: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyClientError {
    #[error("the proxy admin socket {socket} does not answer: is `berth proxy` running?")]
    NotAnswering {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the proxy admin socket {socket} did not answer within {after:?}: the proxy may be overloaded or stuck")]
    TimedOut { socket: PathBuf, after: Duration },
    #[error("the conversation with the proxy on {socket} broke off")]
    Exchange {
        socket: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("the proxy on {socket} refused the request ({status}): {message}")]
    Rejected { socket: PathBuf, status: StatusCode, message: String },
    #[error("the proxy on {socket} answered in a form this client does not understand: are `berth` and `berth proxy` the same version?")]
    UnexpectedResponse {
        socket: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode the route table as JSON")]
    Encode(#[source] serde_json::Error),
}

impl ProxyAdminClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into(), timeout: DEFAULT_TIMEOUT }
    }

    /// Bounds each call, connection included (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends the complete table; the proxy applies it if its generation is not older than
    /// the one it serves.
    pub async fn put_routes(&self, table: &RouteTable) -> Result<ApplyOutcome, ProxyClientError> {
        let body = serde_json::to_vec(table).map_err(ProxyClientError::Encode)?;
        let (status, body) = self.exchange(Method::PUT, ROUTES_PATH, Bytes::from(body)).await?;
        match status {
            StatusCode::OK => {
                let applied: AppliedResponse = self.decode(&body)?;
                Ok(ApplyOutcome::Applied { generation: applied.generation, routes: applied.routes })
            }
            StatusCode::CONFLICT => {
                let stale: StaleResponse = self.decode(&body)?;
                Ok(ApplyOutcome::Stale { current_generation: stale.current_generation })
            }
            _ => Err(self.rejected(status, &body)),
        }
    }

    pub async fn get_routes(&self) -> Result<RouteTable, ProxyClientError> {
        self.get_json(ROUTES_PATH).await
    }

    pub async fn health(&self) -> Result<ProxyHealth, ProxyClientError> {
        self.get_json(HEALTH_PATH).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ProxyClientError> {
        let (status, body) = self.exchange(Method::GET, path, Bytes::new()).await?;
        if status != StatusCode::OK {
            return Err(self.rejected(status, &body));
        }
        self.decode(&body)
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ProxyClientError> {
        match tokio::time::timeout(self.timeout, self.exchange_unbounded(method, path, body)).await
        {
            Ok(result) => result,
            Err(_) => {
                Err(ProxyClientError::TimedOut { socket: self.socket.clone(), after: self.timeout })
            }
        }
    }

    async fn exchange_unbounded(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ProxyClientError> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|source| {
            ProxyClientError::NotAnswering { socket: self.socket.clone(), source }
        })?;
        let exchange_error =
            |source: BoxError| ProxyClientError::Exchange { socket: self.socket.clone(), source };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| exchange_error(error.into()))?;
        // Aborted on drop so that a timed-out call leaves no task behind waiting on a stuck
        // proxy.
        let connection_task = AbortOnDrop(tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "proxy admin connection ended with an error");
            }
        }));

        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() =
            path.parse().map_err(|error: http::uri::InvalidUri| exchange_error(error.into()))?;
        request.headers_mut().insert(HOST, HeaderValue::from_static("berth-proxy"));
        request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));

        let response =
            sender.send_request(request).await.map_err(|error| exchange_error(error.into()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(exchange_error)?
            .to_bytes();
        drop(connection_task);
        Ok((status, body))
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, ProxyClientError> {
        serde_json::from_slice(body).map_err(|source| ProxyClientError::UnexpectedResponse {
            socket: self.socket.clone(),
            source,
        })
    }

    fn rejected(&self, status: StatusCode, body: &[u8]) -> ProxyClientError {
        let message = match serde_json::from_slice::<ErrorResponse>(body) {
            Ok(error) => error.error,
            Err(_) => String::from_utf8_lossy(body).chars().take(MAX_QUOTED_BODY_CHARS).collect(),
        };
        ProxyClientError::Rejected { socket: self.socket.clone(), status, message }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
