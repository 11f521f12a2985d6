//! A real Git HTTP server for tests: a small HTTP/1.1 server (hyper) on 127.0.0.1 that
//! runs `git http-backend` as a CGI program for every request, optionally behind HTTP
//! basic authentication, the way a private repository on a hosting service behaves.
//! It runs on its own thread and runtime, so it works from sync and async tests alike,
//! and stops when dropped.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

/// One request as the server saw it (for assertions such as "the token never appeared in
/// a URL").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query string.
    pub target: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The HTTP status the server answered with.
    pub status: u16,
}

/// `git http-backend` behind HTTP on a loopback port. Stops on drop.
pub struct GitHttpServer {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct ServerState {
    repos_root: PathBuf,
    /// `user:password`, when basic authentication is required.
    credentials: Option<String>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl GitHttpServer {
    /// Serves the repositories under `repos_root` (all exported) at
    /// `http://127.0.0.1:PORT/<name>`. With `credentials` (`(user, password)`), every
    /// request without matching basic authentication gets `401` and
    /// `WWW-Authenticate: Basic realm="git"`.
    pub fn start(repos_root: &Path, credentials: Option<(&str, &str)>) -> GitHttpServer {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let address = listener.local_addr().expect("listener address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(ServerState {
            repos_root: repos_root.canonicalize().unwrap_or_else(|_| repos_root.to_owned()),
            credentials: credentials.map(|(user, password)| format!("{user}:{password}")),
            requests: Arc::clone(&requests),
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("git-http-{}", address.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime for the Git HTTP server");
                runtime.block_on(serve(listener, state, stopped));
            })
            .expect("thread for the Git HTTP server");
        GitHttpServer { address, requests, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT/<repo_name>`.
    pub fn url(&self, repo_name: &str) -> String {
        format!("http://{}/{}", self.address, repo_name.trim_start_matches('/'))
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|requests| requests.clone()).unwrap_or_default()
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: StdTcpListener,
    state: Arc<ServerState>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(request, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

async fn handle(request: Request<Incoming>, state: &ServerState) -> Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let target = request.uri().path_and_query().map_or("/", |target| target.as_str()).to_owned();
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);

    let response = match authorized_user(state, authorization.as_deref()) {
        Ok(user) => run_backend(request, state, user).await,
        Err(()) => {
            let mut response = text_response(StatusCode::UNAUTHORIZED, "authentication required\n");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"git\""));
            response
        }
    };
    if let Ok(mut requests) = state.requests.lock() {
        requests.push(RecordedRequest {
            method,
            target,
            authorization,
            status: response.status().as_u16(),
        });
    }
    response
}

/// `Ok(Some(user))` for valid credentials, `Ok(None)` when none are required.
fn authorized_user(state: &ServerState, authorization: Option<&str>) -> Result<Option<String>, ()> {
    let Some(expected) = &state.credentials else { return Ok(None) };
    let encoded = authorization.and_then(|value| value.strip_prefix("Basic ")).ok_or(())?;
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| ())?;
    if decoded != expected.as_bytes() {
        return Err(());
    }
    let user = expected.split_once(':').map_or(expected.as_str(), |(user, _)| user);
    Ok(Some(user.to_owned()))
}

/// Runs `git http-backend` as CGI (RFC 3875) for one request.
async fn run_backend(
    request: Request<Incoming>,
    state: &ServerState,
    user: Option<String>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return text_response(StatusCode::BAD_REQUEST, &format!("bad body: {error}\n"))
        }
    };

    // Dev-only fixture: the CGI program needs a piped stdin, which berth-process (built
    // for the product's git, with a null stdin) deliberately does not offer.
    #[allow(clippy::disallowed_methods)]
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &state.repos_root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &state.repos_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(user) = user {
        command.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    for (name, value) in &parts.headers {
        let Ok(value) = value.to_str() else { continue };
        if name == AUTHORIZATION {
            continue;
        }
        if name == hyper::header::CONTENT_TYPE {
            command.env("CONTENT_TYPE", value);
        }
        // `Git-Protocol: version=2` becomes HTTP_GIT_PROTOCOL, which http-backend reads.
        let variable = format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_"));
        command.env(variable, value);
    }

    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot run git http-backend: {error}\n"),
            )
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // Written concurrently with reading the output, so a large body cannot deadlock.
        tokio::spawn(async move {
            let _ = stdin.write_all(&body).await;
        });
    }
    let output = match child.wait_with_output().await {
        Ok(output) => output,
        Err(error) => {
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("git http-backend failed: {error}\n"),
            )
        }
    };
    if !output.stderr.is_empty() {
        eprintln!("git http-backend: {}", String::from_utf8_lossy(&output.stderr).trim_end());
    }
    cgi_response(&output.stdout)
}

/// Turns CGI output (headers, blank line, body) into an HTTP response.
fn cgi_response(output: &[u8]) -> Response<Full<Bytes>> {
    let (head, body) = match find(output, b"\r\n\r\n") {
        Some(end) => (&output[..end], &output[end + 4..]),
        None => match find(output, b"\n\n") {
            Some(end) => (&output[..end], &output[end + 2..]),
            None => {
                return text_response(StatusCode::BAD_GATEWAY, "git http-backend sent no headers\n")
            }
        },
    };
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body)));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            let code = value.split_whitespace().next().and_then(|code| code.parse::<u16>().ok());
            if let Some(status) = code.and_then(|code| StatusCode::from_u16(code).ok()) {
                *response.status_mut() = status;
            }
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn text_response(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}
