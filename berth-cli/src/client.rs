//! The HTTP client of the REST API: bearer auth, JSON bodies, the one error shape
//! (`berth_api::ErrorBody`) turned into [`ClientError`], and server-sent event streams.
//!
//! Caveats: redirects are not followed (an API never redirects, and following one could
//! carry the token elsewhere); this build has no TLS, so `https://` URLs are refused with a
//! clear message instead of a confusing connection error.

use std::collections::VecDeque;
use std::time::Duration;

use berth_api::ErrorBody;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::ServerUrl;
use crate::output::sanitize;
use crate::paths::InvalidName;
use crate::sse::{LineTooLong, SseEvent, SseParser};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// For requests whose answer waits for work proportional to the data (a database backup,
/// restore or clone, a deletion with a final backup): the server answers when it is done.
pub(crate) const LONG_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("cannot reach the Berth server at {url}: is `berth server` running?")]
    Unreachable { url: String },
    #[error("the Berth server at {url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    /// The server's own error (`ErrorBody`): its message says what to fix.
    #[error("{message}")]
    Api { status: u16, code: String, message: String },
    #[error("unexpected answer from the server to {method} {path} (HTTP {status}): {detail}")]
    Unexpected { method: Method, path: String, status: u16, detail: String },
    #[error("the connection to the server failed: {detail}")]
    Transport { detail: String },
    #[error("{url} uses https, but this build of berth speaks plain HTTP only")]
    TlsUnsupported { url: String },
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error(transparent)]
    EventStream(#[from] LineTooLong),
}

impl ClientError {
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }

    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            ClientError::Unreachable { .. } => Some(
                "start it with `berth server`, or point --url / BERTH_URL at the right server"
                    .into(),
            ),
            ClientError::Api { status: 401, .. } => Some(
                "check the token: run `berth login --url URL --token TOKEN`, or pass --token"
                    .into(),
            ),
            ClientError::TlsUnsupported { .. } => {
                Some("reach the server over http:// (e.g. through an SSH tunnel)".into())
            }
            _ => None,
        }
    }
}

/// A client bound to one server and one token.
#[derive(Debug, Clone)]
pub(crate) struct ApiClient {
    http: reqwest::Client,
    base: ServerUrl,
    token: String,
}

impl ApiClient {
    pub(crate) fn new(base: ServerUrl, token: String) -> Result<Self, ClientError> {
        if base.as_str().starts_with("https:") {
            return Err(ClientError::TlsUnsupported { url: base.to_string() });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ClientError::Transport { detail: error_chain(&error) })?;
        Ok(ApiClient { http, base, token })
    }

    /// The server's URL (e.g. to print the webhook URLs a Git host should call).
    pub(crate) fn base_url(&self) -> &str {
        self.base.as_str()
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// POST without a body (actions such as `/cancel`).
    pub(crate) async fn post_empty<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, None::<&()>).await
    }

    /// POST (`body` as JSON, or none) for an action that may take up to `timeout`.
    pub(crate) async fn post_within<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        self.call_within(Method::POST, path, body, timeout).await
    }

    pub(crate) async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// DELETE; the body of the answer (if any) is returned as JSON.
    pub(crate) async fn delete(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.delete_within(path, REQUEST_TIMEOUT).await
    }

    /// DELETE that may take up to `timeout` before the server answers.
    pub(crate) async fn delete_within(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, ClientError> {
        let response = self.send(Method::DELETE, path, None::<&()>, Some(timeout)).await?;
        let bytes = response.bytes().await.map_err(|error| self.transport(error, timeout))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Unexpected {
            method: Method::DELETE,
            path: path.to_owned(),
            status: 200,
            detail: error.to_string(),
        })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call_within(method, path, body, REQUEST_TIMEOUT).await
    }

    async fn call_within<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let response = self.send(method.clone(), path, body, Some(timeout)).await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|error| self.transport(error, timeout))?;
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Unexpected {
            method,
            path: path.to_owned(),
            status,
            detail: error.to_string(),
        })
    }

    /// Opens a `text/event-stream` (no overall timeout: it lasts as long as the server
    /// keeps it open).
    pub(crate) async fn events(&self, path: &str) -> Result<EventStream, ClientError> {
        self.open_events(Method::GET, path, None::<&()>).await
    }

    /// POSTs `body` and reads the answer as a `text/event-stream` (`exec`), with no
    /// overall timeout.
    pub(crate) async fn post_events<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<EventStream, ClientError> {
        self.open_events(Method::POST, path, Some(body)).await
    }

    async fn open_events<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<EventStream, ClientError> {
        let response = self.send(method.clone(), path, body, None).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.starts_with("text/event-stream") {
            return Err(ClientError::Unexpected {
                method,
                path: path.to_owned(),
                status: response.status().as_u16(),
                detail: format!("expected text/event-stream, got {content_type:?}"),
            });
        }
        Ok(EventStream {
            client: self.clone(),
            response,
            parser: SseParser::default(),
            pending: VecDeque::new(),
        })
    }

    /// Opens an HTTP/1.1 upgrade (`GET path`, `Upgrade: protocol`) and returns the raw
    /// connection once the server answered `101 Switching Protocols` (the database tunnel).
    /// Any other answer is the usual [`ClientError`].
    pub(crate) async fn upgrade(
        &self,
        path: &str,
        protocol: &'static str,
    ) -> Result<reqwest::Upgraded, ClientError> {
        let url = format!("{}{path}", self.base);
        let request = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONNECTION, "Upgrade")
            .header(reqwest::header::UPGRADE, protocol)
            .send();
        // The deadline covers the answer only: a request timeout would also bound the
        // upgraded connection's lifetime.
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(sent) => sent.map_err(|error| self.transport(error, REQUEST_TIMEOUT))?,
            Err(_) => {
                return Err(ClientError::Timeout {
                    url: self.base.to_string(),
                    seconds: REQUEST_TIMEOUT.as_secs(),
                })
            }
        };
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(self.error_from(Method::GET, path, status, response, None).await);
        }
        response
            .upgrade()
            .await
            .map_err(|error| ClientError::Transport { detail: error_chain(&error) })
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let accept = if timeout.is_some() { "application/json" } else { "text/event-stream" };
        let mut request =
            self.http.request(method.clone(), url).bearer_auth(&self.token).header(ACCEPT, accept);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.transport(error, timeout.unwrap_or(REQUEST_TIMEOUT)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(self.error_from(method, path, status, response, timeout).await)
    }

    async fn error_from(
        &self,
        method: Method,
        path: &str,
        status: StatusCode,
        response: reqwest::Response,
        timeout: Option<Duration>,
    ) -> ClientError {
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned();
            return ClientError::Unexpected {
                method,
                path: path.to_owned(),
                status: status.as_u16(),
                detail: format!("a redirect to {location:?}; is --url the Berth API's address?"),
            };
        }
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return self.transport(error, timeout.unwrap_or(REQUEST_TIMEOUT)),
        };
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ClientError::Api {
                status: status.as_u16(),
                code: body.error.code,
                message: sanitize(&body.error.message, false).into_owned(),
            },
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let mut detail: String = sanitize(text.trim(), false).chars().take(200).collect();
                if detail.is_empty() {
                    detail = status.canonical_reason().unwrap_or("no details").to_owned();
                }
                ClientError::Unexpected {
                    method,
                    path: path.to_owned(),
                    status: status.as_u16(),
                    detail,
                }
            }
        }
    }

    /// `timeout`: the deadline the request had (for the message when it passed).
    fn transport(&self, error: reqwest::Error, timeout: Duration) -> ClientError {
        if error.is_connect() {
            ClientError::Unreachable { url: self.base.to_string() }
        } else if error.is_timeout() {
            ClientError::Timeout { url: self.base.to_string(), seconds: timeout.as_secs() }
        } else {
            ClientError::Transport { detail: error_chain(&error) }
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An API answer both as the JSON the server sent (printed unchanged by `--output json`,
/// fields this CLI does not know included) and as its typed view (for tables).
#[derive(Debug, Clone)]
pub(crate) struct Fetched<T> {
    pub(crate) raw: serde_json::Value,
    pub(crate) value: T,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Fetched<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(deserializer)?;
        let value = T::deserialize(&raw).map_err(D::Error::custom)?;
        Ok(Fetched { raw, value })
    }
}

/// The events of one server-sent event stream, in order.
pub(crate) struct EventStream {
    client: ApiClient,
    response: reqwest::Response,
    parser: SseParser,
    pending: VecDeque<SseEvent>,
}

impl EventStream {
    /// The next event, or `None` when the server closed the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.pending.extend(self.parser.push(&chunk)?),
                Ok(None) => return Ok(None),
                Err(error) => return Err(self.client.transport(error, REQUEST_TIMEOUT)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::test_server::{Reply, StubServer};

    fn client(url: &str) -> ApiClient {
        ApiClient::new(ServerUrl::parse(url).unwrap(), "t0ken".into()).unwrap()
    }

    #[tokio::test]
    async fn requests_carry_the_token_and_json_body() {
        let stub = StubServer::start(vec![(
            "POST /api/v1/projects",
            vec![Reply::json(
                201,
                r#"{"id":"p1","name":"shop","status":"active","created_at":"x"}"#,
            )],
        )])
        .await;
        let project: berth_api::Project = client(&stub.url)
            .post("/api/v1/projects", &berth_api::CreateProject { name: "shop".into() })
            .await
            .unwrap();
        assert_eq!(project.name, "shop");
        expect![[r#"
            POST /api/v1/projects
            authorization: Bearer t0ken
            {"name":"shop"}
        "#]]
        .assert_eq(&stub.requests_text());
    }

    #[tokio::test]
    async fn the_servers_error_message_is_what_the_user_sees() {
        let stub = StubServer::start(vec![(
            "GET /api/v1/projects/nope",
            vec![Reply::json(
                404,
                r#"{"error":{"code":"not_found","message":"project \"nope\" does not exist"}}"#,
            )],
        )])
        .await;
        let error =
            client(&stub.url).get::<serde_json::Value>("/api/v1/projects/nope").await.unwrap_err();
        assert!(error.is_not_found());
        assert_eq!(error.to_string(), r#"project "nope" does not exist"#);
    }

    #[tokio::test]
    async fn answers_that_are_not_the_api_are_reported_with_their_status() {
        let stub = StubServer::start(vec![
            ("GET /html", vec![Reply::text(502, "text/html", "<h1>Bad gateway</h1>")]),
            ("GET /redirect", vec![Reply::redirect("https://elsewhere.example/")]),
            ("GET /garbage", vec![Reply::text(200, "application/json", "{not json")]),
        ])
        .await;
        let client = client(&stub.url);
        let mut messages = Vec::new();
        for path in ["/html", "/redirect", "/garbage"] {
            messages.push(client.get::<serde_json::Value>(path).await.unwrap_err().to_string());
        }
        expect![[r#"
            [
                "unexpected answer from the server to GET /html (HTTP 502): <h1>Bad gateway</h1>",
                "unexpected answer from the server to GET /redirect (HTTP 307): a redirect to \"https://elsewhere.example/\"; is --url the Berth API's address?",
                "unexpected answer from the server to GET /garbage (HTTP 200): key must be a string at line 1 column 2",
            ]
        "#]]
        .assert_debug_eq(&messages);
    }

    #[tokio::test]
    async fn a_server_that_is_not_running_is_named() {
        // Bind then drop a listener: nothing listens on that port any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let error =
            client(&url).get::<serde_json::Value>("/api/v1/organization").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("cannot reach the Berth server at {url}: is `berth server` running?")
        );
    }

    #[test]
    fn https_is_refused_clearly() {
        let error =
            ApiClient::new(ServerUrl::parse("https://b.example").unwrap(), "t".into()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "https://b.example uses https, but this build of berth speaks plain HTTP only"
        );
    }

    #[tokio::test]
    async fn event_streams_yield_events_until_the_server_closes() {
        let stub = StubServer::start(vec![(
            "GET /api/v1/deployments/d1/logs?follow=true",
            vec![Reply::events("data: {\"a\":1}\n\n: ping\n\nevent: end\ndata: {}\n\n")],
        )])
        .await;
        let mut stream =
            client(&stub.url).events("/api/v1/deployments/d1/logs?follow=true").await.unwrap();
        let mut seen = Vec::new();
        while let Some(event) = stream.next().await.unwrap() {
            seen.push(format!("{:?} {}", event.event, event.data));
        }
        assert_eq!(seen, [r#"None {"a":1}"#, r#"Some("end") {}"#]);
        assert!(stub.requests_text().contains("GET /api/v1/deployments/d1/logs?follow=true"));
    }
}
