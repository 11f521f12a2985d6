//! Test harness for the proxy: tiny upstream HTTP servers on loopback that answer their
//! own names, a proxy started on free ports in a temporary directory, and an HTTP client
//! that sends requests to the proxy with any Host header.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_domain::routes::{Route, RouteTable};
use berth_proxy::{ProxyAdminClient, ProxyConfig, ProxyError, ProxyServer};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// Every wait in these tests is bounded by this; nothing should come close.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

pub(crate) type TestBody = BoxBody<Bytes, Infallible>;
pub(crate) type TestClient = Client<HttpConnector, TestBody>;

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not happen within {DEADLINE:?}"),
    }
}

/// Polls `condition` until it holds; panics at the deadline.
pub(crate) async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !condition().await {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// An upstream instance. Paths: `/echo` streams the request body back, `/headers` lists
/// the request headers it received, `/slow` answers only when released; anything else
/// answers the upstream's name.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) slow_started: Arc<Notify>,
    pub(crate) slow_release: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub(crate) async fn start(name: &'static str) -> Self {
        let listener =
            TcpListener::bind("127.0.0.1:0").await.expect("bind an upstream on loopback");
        let addr = listener.local_addr().expect("the upstream's address");
        let slow_started = Arc::new(Notify::new());
        let slow_release = Arc::new(Notify::new());
        let state = (Arc::clone(&slow_started), Arc::clone(&slow_release));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (slow_started, slow_release) = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (slow_started, slow_release) =
                            (Arc::clone(&slow_started), Arc::clone(&slow_release));
                        async move {
                            Ok::<_, Infallible>(
                                answer(name, request, &slow_started, &slow_release).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, slow_started, slow_release, task }
    }
}

async fn answer(
    name: &'static str,
    request: Request<Incoming>,
    slow_started: &Notify,
    slow_release: &Notify,
) -> Response<BoxBody<Bytes, hyper::Error>> {
    let full = |text: String| Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed();
    match request.uri().path() {
        "/echo" => Response::new(request.into_body().boxed()),
        "/headers" => {
            let mut lines: Vec<String> = request
                .headers()
                .iter()
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
                .collect();
            lines.sort();
            Response::new(full(lines.join("\n")))
        }
        "/slow" => {
            slow_started.notify_one();
            slow_release.notified().await;
            Response::new(full(name.to_owned()))
        }
        _ => Response::new(full(name.to_owned())),
    }
}

/// An address on which nothing listens: connections to it are refused.
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port on loopback");
    listener.local_addr().expect("the port's address")
}

pub(crate) fn route(host: &str, upstreams: &[SocketAddr]) -> Route {
    Route { host: host.to_owned(), upstreams: upstreams.to_vec() }
}

pub(crate) fn table(generation: u64, routes: Vec<Route>) -> RouteTable {
    RouteTable { generation, routes }
}

pub(crate) fn config_in(directory: &Path) -> ProxyConfig {
    let mut config = ProxyConfig::in_state_directory(directory);
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.drain_timeout = Duration::from_secs(5);
    config
}

pub(crate) struct RunningProxy {
    pub(crate) addr: SocketAddr,
    pub(crate) admin: ProxyAdminClient,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ProxyError>>,
}

impl RunningProxy {
    pub(crate) async fn start(config: ProxyConfig) -> Self {
        let server = ProxyServer::bind(config).await.expect("the proxy binds");
        let addr = server.local_addr();
        let admin = ProxyAdminClient::new(server.admin_socket());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Self { addr, admin, stop: Some(stop), task }
    }

    /// Starts shutdown without waiting for it.
    pub(crate) fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `serve` to return.
    pub(crate) async fn stopped(self) -> Result<(), ProxyError> {
        within("proxy shutdown", self.task).await.expect("the proxy task does not panic")
    }

    pub(crate) async fn stop(mut self) -> Result<(), ProxyError> {
        self.begin_shutdown();
        self.stopped().await
    }
}

pub(crate) fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub(crate) fn empty() -> TestBody {
    Empty::new().boxed()
}

pub(crate) fn request(
    method: &str,
    proxy: SocketAddr,
    host: &str,
    path: &str,
    body: TestBody,
) -> Request<TestBody> {
    Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"))
        .header(http::header::HOST, host)
        .body(body)
        .expect("a valid test request")
}

/// Sends a request through the proxy and reads the whole answer.
pub(crate) async fn send(client: &TestClient, request: Request<TestBody>) -> (StatusCode, String) {
    within("a proxied response", async {
        let response = client.request(request).await.expect("the proxy answers");
        let status = response.status();
        let body =
            response.into_body().collect().await.expect("the whole response body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
    .await
}

pub(crate) async fn get(
    client: &TestClient,
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> (StatusCode, String) {
    send(client, request("GET", proxy, host, path, empty())).await
}
