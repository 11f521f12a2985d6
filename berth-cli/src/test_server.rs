//! A STAND-IN for the real Berth server, for unit tests only: an axum server on
//! 127.0.0.1:0 that answers each `METHOD /path?query` with canned replies (in order, the
//! last one repeating) and records every request it receives. It knows nothing of Berth;
//! the replies are what the API contract (`berth-api`) says the server sends. The real
//! server is exercised by the end-to-end tests of the workspace.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;

#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    location: Option<&'static str>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: impl Into<String>) -> Self {
        Reply { status, content_type: "application/json", body: body.into(), location: None }
    }

    pub(crate) fn value(status: u16, body: &serde_json::Value) -> Self {
        Reply::json(status, body.to_string())
    }

    pub(crate) fn text(status: u16, content_type: &'static str, body: &str) -> Self {
        Reply { status, content_type, body: body.into(), location: None }
    }

    pub(crate) fn not_found(message: &str) -> Self {
        let body = serde_json::json!({"error": {"code": "not_found", "message": message}});
        Reply::value(404, &body)
    }

    pub(crate) fn events(body: impl Into<String>) -> Self {
        Reply { status: 200, content_type: "text/event-stream", body: body.into(), location: None }
    }

    pub(crate) fn redirect(location: &'static str) -> Self {
        Reply {
            status: 307,
            content_type: "text/plain",
            body: String::new(),
            location: Some(location),
        }
    }
}

#[derive(Debug)]
struct Recorded {
    request_line: String,
    authorization: Option<String>,
    body: String,
}

#[derive(Debug, Default)]
struct StubState {
    routes: Vec<(String, VecDeque<Reply>)>,
    requests: Vec<Recorded>,
}

#[derive(Debug, Clone)]
pub(crate) struct StubServer {
    pub(crate) url: String,
    state: Arc<Mutex<StubState>>,
}

impl StubServer {
    pub(crate) async fn start(routes: Vec<(&str, Vec<Reply>)>) -> Self {
        let state = Arc::new(Mutex::new(StubState {
            routes: routes
                .into_iter()
                .map(|(key, replies)| (key.to_owned(), replies.into()))
                .collect(),
            requests: Vec::new(),
        }));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let url = format!("http://{}", listener.local_addr().expect("stub address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        StubServer { url, state }
    }

    /// Every request received: request line, authorization header, body.
    pub(crate) fn requests_text(&self) -> String {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::new();
        for request in &state.requests {
            text.push_str(&request.request_line);
            text.push('\n');
            text.push_str(&format!(
                "authorization: {}\n",
                request.authorization.as_deref().unwrap_or("none")
            ));
            if !request.body.is_empty() {
                text.push_str(&request.body);
                text.push('\n');
            }
        }
        text
    }

    /// Only the request lines, collapsing consecutive repeats (polling) into `(xN)`.
    pub(crate) fn request_lines(&self) -> String {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lines: Vec<(String, usize)> = Vec::new();
        for request in &state.requests {
            match lines.last_mut() {
                Some((line, count)) if *line == request.request_line => *count += 1,
                _ => lines.push((request.request_line.clone(), 1)),
            }
        }
        lines
            .into_iter()
            .map(
                |(line, count)| {
                    if count > 1 {
                        format!("{line} (x{count})\n")
                    } else {
                        format!("{line}\n")
                    }
                },
            )
            .collect()
    }

    /// Bodies of the requests whose request line starts with `prefix`.
    pub(crate) fn bodies(&self, prefix: &str) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .requests
            .iter()
            .filter(|request| request.request_line.starts_with(prefix))
            .map(|request| request.body.clone())
            .collect()
    }
}

async fn handle(State(state): State<Arc<Mutex<StubState>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let request_line = format!("{} {}", parts.method, parts.uri);
    let authorization =
        parts.headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let reply = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.requests.push(Recorded { request_line: request_line.clone(), authorization, body });
        let route = state.routes.iter_mut().find(|(key, _)| *key == request_line);
        match route {
            Some((_, replies)) if replies.len() > 1 => replies.pop_front(),
            Some((_, replies)) => replies.front().cloned(),
            None => None,
        }
    };
    let reply = reply
        .unwrap_or_else(|| Reply::not_found(&format!("stub server: no reply for {request_line}")));
    let mut response =
        Response::builder().status(reply.status).header("content-type", reply.content_type);
    if let Some(location) = reply.location {
        response = response.header("location", location);
    }
    response.body(Body::from(reply.body)).unwrap_or_default()
}
