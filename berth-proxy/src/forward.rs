//! The request path: one accepted client connection served over HTTP/1.1, each request
//! routed by its host to an upstream from the current snapshot and streamed both ways.
//! Nothing here takes a lock or does IO besides the client and upstream connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HOST, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use crate::table::{normalize_host, RouteState};

/// Response bodies: upstream bodies streamed through, or the proxy's own short texts.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Slow or stalled clients must not hold a connection slot forever before even naming
/// the request.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle upstream connections are kept this long; it also bounds how long connections to
/// upstreams that left the table linger.
const UPSTREAM_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");

/// Headers that describe one hop, not the message (RFC 9110 section 7.6.1), plus the
/// legacy ones still seen in the wild.
const HOP_BY_HOP_HEADERS: [HeaderName; 7] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// How the client reached the proxy, as far as the upstream needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientConnection {
    pub(crate) remote: SocketAddr,
    pub(crate) proto: ForwardedProto,
}

/// The value of `X-Forwarded-Proto`; a TLS listener will add `Https`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ForwardedProto {
    Http,
}

impl ForwardedProto {
    fn header_value(self) -> HeaderValue {
        match self {
            Self::Http => HeaderValue::from_static("http"),
        }
    }
}

pub(crate) struct Forwarder {
    routes: Arc<RouteState>,
    client: Client<HttpConnector, ReturnableBody>,
}

impl Forwarder {
    pub(crate) fn new(routes: Arc<RouteState>, connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(UPSTREAM_POOL_IDLE_TIMEOUT)
            .build(connector);
        Self { routes, client }
    }

    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        client: ClientConnection,
    ) -> Response<ProxyBody> {
        if request.method() == Method::CONNECT {
            return plain_text(
                StatusCode::METHOD_NOT_ALLOWED,
                "This is a reverse proxy for Berth applications; it does not open tunnels.\n"
                    .to_owned(),
            );
        }
        let Some(host) = request_host(&request) else {
            return plain_text(
                StatusCode::BAD_REQUEST,
                "This request names no host. Send a Host header with the application's domain.\n"
                    .to_owned(),
            );
        };
        let snapshot = self.routes.snapshot();
        let Some(route) = snapshot.route(&host) else {
            tracing::debug!(%host, "no route for host");
            return plain_text(
                StatusCode::NOT_FOUND,
                format!("No application is routed to the host {host} on this Berth proxy.\n"),
            );
        };
        if route.is_empty() {
            return plain_text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "The host {host} belongs to an application, but none of its instances is \
                     healthy right now. Try again shortly.\n"
                ),
            );
        }

        let (parts, mut body) = request.into_parts();
        let path_and_query =
            parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let headers = upstream_request_headers(&parts.headers, parts.uri.authority(), client);

        for upstream in route.attempt_order() {
            let uri = Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(upstream.authority().clone())
                .path_and_query(path_and_query.clone())
                .build();
            let uri = match uri {
                Ok(uri) => uri,
                Err(error) => {
                    tracing::error!(
                        %host,
                        upstream = %upstream.addr(),
                        %error,
                        "cannot build the upstream URI"
                    );
                    continue;
                }
            };
            let (outgoing_body, mut returned_body) = ReturnableBody::new(body);
            let mut outgoing = Request::new(outgoing_body);
            *outgoing.method_mut() = parts.method.clone();
            *outgoing.uri_mut() = uri;
            *outgoing.version_mut() = Version::HTTP_11;
            *outgoing.headers_mut() = headers.clone();

            match self.client.request(outgoing).await {
                Ok(response) => {
                    upstream.mark_accepted();
                    tracing::debug!(
                        %host,
                        upstream = %upstream.addr(),
                        method = %parts.method,
                        path = %path_and_query,
                        status = %response.status(),
                        "forwarded"
                    );
                    return downstream_response(response);
                }
                Err(error) if error.is_connect() => {
                    upstream.mark_refused();
                    tracing::warn!(
                        %host,
                        upstream = %upstream.addr(),
                        error = %crate::error_chain(&error),
                        "upstream refused the connection; trying the next one"
                    );
                    // A connection that never opened never read the body, so it comes back
                    // whole and can go to the next upstream.
                    match returned_body.try_recv() {
                        Ok(unread) => body = unread,
                        Err(_) => {
                            return plain_text(
                                StatusCode::BAD_GATEWAY,
                                format!(
                                    "The instance of {host} at {} refused the connection.\n",
                                    upstream.addr()
                                ),
                            )
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        %host,
                        upstream = %upstream.addr(),
                        error = %crate::error_chain(&error),
                        "upstream failed before answering"
                    );
                    return plain_text(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "The instance of {host} at {} failed before answering this request.\n",
                            upstream.addr()
                        ),
                    );
                }
            }
        }
        plain_text(
            StatusCode::BAD_GATEWAY,
            format!(
                "None of the {} instances of {host} accepted a connection. The application may \
                 be restarting; try again shortly.\n",
                route.len()
            ),
        )
    }
}

/// Serves one client connection until it closes or graceful shutdown finishes its current
/// request. Generic over the stream so that a TLS listener can hand over its decrypted
/// streams.
pub(crate) async fn serve_connection<I>(
    io: I,
    client: ClientConnection,
    forwarder: Arc<Forwarder>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let forwarder = Arc::clone(&forwarder);
        async move { Ok::<_, Infallible>(forwarder.handle(request, client).await) }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(remote = %client.remote, %error, "client connection ended with an error");
    }
}

/// The routing key: the URI authority of an absolute-form request wins over the Host
/// header, as RFC 9112 section 3.2.2 requires.
fn request_host(request: &Request<Incoming>) -> Option<String> {
    if let Some(authority) = request.uri().authority() {
        return normalize_host(authority.as_str());
    }
    let host = request.headers().get(HOST)?.to_str().ok()?;
    normalize_host(host)
}

fn upstream_request_headers(
    incoming: &HeaderMap,
    authority: Option<&http::uri::Authority>,
    client: ClientConnection,
) -> HeaderMap {
    let mut headers = incoming.clone();
    remove_hop_by_hop_headers(&mut headers);

    if let Some(authority) = authority {
        // Without this the upstream client would put the upstream's own address in Host.
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(HOST, value);
        }
    }
    if let Some(host) = headers.get(HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }

    // Appending keeps earlier hops; applications that trust it must read the right-most
    // entry, the one this proxy wrote.
    let client_ip = client.remote.ip().to_string();
    let earlier: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .collect();
    let forwarded_for =
        if earlier.is_empty() { client_ip } else { format!("{}, {client_ip}", earlier.join(", ")) };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, client.proto.header_value());
    headers
}

fn downstream_response(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop_headers(&mut parts.headers);
    Response::from_parts(parts, body.boxed_unsync())
}

fn remove_hop_by_hop_headers(headers: &mut HeaderMap) {
    // `Connection` may name further headers that only concern this hop.
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP_HEADERS {
        headers.remove(name);
    }
}

fn plain_text(status: StatusCode, message: String) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(message)).map_err(|never| match never {}).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    // The text echoes the requested host: never let a browser sniff it as HTML.
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // A host without a route now may have one a second later.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The client's request body on its way upstream. If it is dropped before anyone read
/// from it (the upstream connection never opened), it hands the body back through a
/// oneshot channel so the next upstream can receive it: no buffering, and no lock.
pub(crate) struct ReturnableBody {
    inner: Option<Incoming>,
    give_back: Option<oneshot::Sender<Incoming>>,
}

impl ReturnableBody {
    fn new(inner: Incoming) -> (Self, oneshot::Receiver<Incoming>) {
        let (sender, receiver) = oneshot::channel();
        (Self { inner: Some(inner), give_back: Some(sender) }, receiver)
    }
}

impl Body for ReturnableBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // Once read, part of the body is gone: it must never be handed back.
        this.give_back = None;
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for ReturnableBody {
    fn drop(&mut self) {
        if let (Some(sender), Some(inner)) = (self.give_back.take(), self.inner.take()) {
            // The receiver is gone when the request succeeded; then the body just drops.
            let _ = sender.send(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "expires"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-secret-hop", "1"),
            ("x-kept", "yes"),
            ("content-length", "3"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        remove_hop_by_hop_headers(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "x-kept"]);
    }

    #[test]
    fn forwarded_headers_append_the_client_and_name_the_host() {
        let mut incoming = HeaderMap::new();
        incoming.insert(HOST, HeaderValue::from_static("Web.Test:8000"));
        incoming.append(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
        incoming.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.2"));
        incoming.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let client = ClientConnection {
            remote: SocketAddr::from(([127, 0, 0, 9], 5555)),
            proto: ForwardedProto::Http,
        };
        let headers = upstream_request_headers(&incoming, None, client);
        assert_eq!(headers[HOST], "Web.Test:8000");
        assert_eq!(headers[X_FORWARDED_HOST], "Web.Test:8000");
        assert_eq!(headers[X_FORWARDED_FOR], "203.0.113.7, 198.51.100.2, 127.0.0.9");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers.get_all(X_FORWARDED_FOR).iter().count(), 1);
    }
}
