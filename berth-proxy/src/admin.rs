//! The admin API served on the proxy's Unix socket: the control plane replaces the route
//! table with `PUT /routes`, reads it back with `GET /routes`, and checks the proxy with
//! `GET /health`. Access control is the socket's file mode (0600), set by the listener.
//!
//! Applying a table is serialised by one lock, so "compare generations, persist, swap" is
//! atomic with respect to other updates; that lock is never taken on the request path.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use berth_domain::routes::RouteTable;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use serde::Serialize;
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use crate::state::save_route_table;
use crate::table::RouteState;
use crate::wire::{
    AppliedResponse, ErrorResponse, ProxyHealth, StaleResponse, HEALTH_PATH, ROUTES_PATH,
};

/// Far above any real table; it only stops a runaway client from exhausting memory.
const MAX_TABLE_BYTES: usize = 32 * 1024 * 1024;

pub(crate) struct Admin {
    routes: Arc<RouteState>,
    state_file: PathBuf,
    /// An owned guard moves into the blocking task, so an update keeps the lock until it is
    /// persisted and swapped in, even if the client hangs up half-way.
    apply_lock: Arc<Mutex<()>>,
}

impl Admin {
    pub(crate) fn new(routes: Arc<RouteState>, state_file: PathBuf) -> Self {
        Self { routes, state_file, apply_lock: Arc::new(Mutex::new(())) }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        match (request.method(), path.as_str()) {
            (&Method::GET, HEALTH_PATH) => json_response(
                StatusCode::OK,
                &ProxyHealth {
                    status: "ok".to_owned(),
                    pid: std::process::id(),
                    generation: self.routes.snapshot().generation(),
                },
            ),
            (&Method::GET, ROUTES_PATH) => {
                json_response(StatusCode::OK, self.routes.snapshot().table())
            }
            (&Method::PUT, ROUTES_PATH) => self.put_routes(request.into_body()).await,
            (method, HEALTH_PATH | ROUTES_PATH) => error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported on {path}"),
            ),
            (_, _) => error_response(
                StatusCode::NOT_FOUND,
                format!(
                    "the proxy admin API has no {path}; it serves {ROUTES_PATH} and {HEALTH_PATH}"
                ),
            ),
        }
    }

    async fn put_routes(&self, body: Incoming) -> Response<Full<Bytes>> {
        let bytes = match Limited::new(body, MAX_TABLE_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "cannot read the route table (at most {MAX_TABLE_BYTES} bytes): {error}"
                    ),
                )
            }
        };
        let table: RouteTable = match serde_json::from_slice(&bytes) {
            Ok(table) => table,
            Err(error) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not a route table: {error}"),
                )
            }
        };

        let guard = Arc::clone(&self.apply_lock).lock_owned().await;
        let current_generation = self.routes.snapshot().generation();
        if table.generation < current_generation {
            tracing::info!(
                sent = table.generation,
                current = current_generation,
                "ignored a route table older than the one served"
            );
            return json_response(StatusCode::CONFLICT, &StaleResponse { current_generation });
        }

        let routes = Arc::clone(&self.routes);
        let state_file = self.state_file.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            save_route_table(&state_file, &table)?;
            let applied =
                AppliedResponse { generation: table.generation, routes: table.routes.len() };
            routes.replace(table);
            Ok::<_, crate::state::StateError>(applied)
        })
        .await;
        match applied {
            Ok(Ok(applied)) => {
                tracing::info!(
                    generation = applied.generation,
                    routes = applied.routes,
                    "applied route table"
                );
                json_response(StatusCode::OK, &applied)
            }
            Ok(Err(error)) => {
                let message = crate::error_chain(&error);
                tracing::error!(error = %message, "route table not applied");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the route table was not applied: {message}"),
                )
            }
            Err(join_error) => {
                tracing::error!(error = %join_error, "route table update task failed");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the route table was not applied: the update task failed".to_owned(),
                )
            }
        }
    }
}

pub(crate) async fn serve_admin_connection(
    stream: UnixStream,
    admin: Arc<Admin>,
    watcher: Watcher,
) {
    let service = service_fn(move |request| {
        let admin = Arc::clone(&admin);
        async move { Ok::<_, Infallible>(admin.handle(request).await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "admin connection ended with an error");
    }
}

fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot encode an admin response");
            let mut response = Response::new(Full::new(Bytes::from_static(
                br#"{"error":"the proxy could not encode its answer"}"#,
            )));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

fn error_response(status: StatusCode, error: String) -> Response<Full<Bytes>> {
    json_response(status, &ErrorResponse { error })
}
