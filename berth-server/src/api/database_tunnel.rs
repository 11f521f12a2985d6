//! `berth database connect`'s two endpoints: the credentials of a database in clear (admin
//! tokens only; every other response masks the password), and a byte tunnel to the
//! database through the API, so that a developer's machine that reaches only the API can
//! run `psql`, `mariadb` or `redis-cli` against it.
//!
//! The tunnel is an HTTP/1.1 upgrade (`Connection: Upgrade`, `Upgrade:
//! berth-database-tunnel`, answered `101 Switching Protocols`) rather than a WebSocket:
//! the database protocols are byte streams already, so framing them in WebSocket messages
//! would add a dependency on both sides and nothing else; hyper hands the raw connection
//! over after the 101, and reqwest's `Response::upgrade` does the same in the CLI. The
//! bearer-token middleware runs before it (no token, no upgrade), and, like the
//! credentials, the tunnel needs an admin token: a raw connection to the database is
//! worth as much as its password.
//!
//! Expected flow: resolve the database (404 when unknown, 409 while it is being deleted),
//! resolve its address (its port published on 127.0.0.1 in container mode, the external
//! server's host and port otherwise), connect to it within 5 s (409 when that fails, so
//! the CLI reports the failure instead of a silently closed socket), answer 101, then
//! copy bytes both ways until both sides have closed. One request is one database
//! connection; the CLI opens one per local connection, so concurrent sessions are
//! independent.

use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONNECTION, UPGRADE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_api as wire;
use berth_api::DATABASE_TUNNEL_PROTOCOL;
use berth_engine::database_access::TunnelTargetError;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::databases::find;
use super::lookup;
use crate::auth::{require_admin, Caller};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

/// How long the server waits for the database to accept the tunnel's connection.
const DATABASE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reveals the database's connection credentials (password included). Admin tokens only;
/// every other endpoint returns the password masked. Used by `berth database connect` to
/// run a client through the tunnel. Each call is logged with the token's name.
#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/databases/{database}/credentials", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path)),
    responses((status = 200, body = wire::DatabaseCredentials), (status = 401, body = wire::ErrorBody), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn get_database_credentials(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, environment, database)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    require_admin(&caller, "reading a database's credentials")?;
    let (_, _, record) = find(&state, &project, &environment, &database).await?;
    lookup::ensure_active(record.lifecycle, "the database")?;
    let credentials = state.engine.database_credentials(&record)?;
    tracing::info!(token = %caller.token_name, database = %record.name, "database credentials revealed");
    let body = wire::DatabaseCredentials {
        database_name: record.name.to_string(),
        engine: record.spec.engine.as_str().to_owned(),
        host: credentials.host.clone(),
        port: credentials.port,
        user: credentials.user.clone(),
        password: credentials.password.clone(),
        database: credentials.database.clone(),
    };
    // Keep the password out of any cache between the server and the CLI.
    Ok(([(CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

/// **Upgrade endpoint**: opens a byte tunnel to the database. Send `Connection: Upgrade`
/// and `Upgrade: berth-database-tunnel`; on `101 Switching Protocols` the connection
/// carries the database's own protocol (PostgreSQL, MySQL, RESP) until either side closes.
/// Admin tokens only. Errors (not an admin token, unknown database, database being
/// deleted or not running, database not answering) come as the usual JSON error before
/// any upgrade.
#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/databases/{database}/tunnel", tag = "databases",
    params(("project" = String, Path), ("environment" = String, Path), ("database" = String, Path),
        ("Upgrade" = String, Header, description = "`berth-database-tunnel`"),
        ("Connection" = String, Header, description = "`Upgrade`")),
    responses((status = 101, description = "Switching Protocols: the connection is now the tunnel"),
        (status = 401, body = wire::ErrorBody), (status = 403, body = wire::ErrorBody),
        (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody),
        (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn open_database_tunnel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, environment, database)): Path<(String, String, String)>,
    mut request: Request,
) -> ApiResult<Response> {
    // A raw connection to the database is worth as much as its credentials.
    require_admin(&caller, "opening a tunnel to a database")?;
    let (project, environment, record) = find(&state, &project, &environment, &database).await?;
    lookup::ensure_active(record.lifecycle, "the database")?;
    if !asks_for_tunnel(request.headers()) {
        return Err(AppError::Invalid(format!(
            "this endpoint opens a tunnel: send `Connection: Upgrade` and `Upgrade: {DATABASE_TUNNEL_PROTOCOL}` (as `berth database connect` does)"
        )));
    }
    let target =
        state.engine.database_tunnel_target(&project, &environment, &record).await.map_err(
            |error| match error {
                TunnelTargetError::Engine(error) => AppError::from(error),
                other => AppError::Conflict(other.to_string()),
            },
        )?;
    let connected =
        tokio::time::timeout(DATABASE_CONNECT_TIMEOUT, TcpStream::connect(target.as_str())).await;
    let mut database_stream = match connected {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            return Err(AppError::Conflict(format!(
                "database {} does not accept connections at {target}: {error}",
                record.name
            )))
        }
        Err(_) => {
            return Err(AppError::Conflict(format!(
                "database {} did not accept a connection at {target} within {} s",
                record.name,
                DATABASE_CONNECT_TIMEOUT.as_secs()
            )))
        }
    };
    // Interactive clients send small packets: do not hold them back.
    let _ = database_stream.set_nodelay(true);
    let on_upgrade = hyper::upgrade::on(&mut request);
    let database_name = record.name.to_string();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::warn!(database = %database_name, %error, "the tunnel's upgrade failed");
                return;
            }
        };
        let mut client_stream = TokioIo::new(upgraded);
        tracing::info!(database = %database_name, "database tunnel opened");
        match tokio::io::copy_bidirectional(&mut client_stream, &mut database_stream).await {
            Ok((to_database, from_database)) => tracing::info!(
                database = %database_name,
                to_database,
                from_database,
                "database tunnel closed"
            ),
            Err(error) => {
                tracing::info!(database = %database_name, %error, "database tunnel ended")
            }
        }
    });
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (CONNECTION, HeaderValue::from_static("upgrade")),
            (UPGRADE, HeaderValue::from_static(DATABASE_TUNNEL_PROTOCOL)),
        ],
    )
        .into_response())
}

/// `Connection` lists `upgrade` and `Upgrade` names the tunnel protocol (both
/// case-insensitive, as HTTP tokens are).
fn asks_for_tunnel(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers.get_all(CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    let protocol = headers
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|text| text.trim().eq_ignore_ascii_case(DATABASE_TUNNEL_PROTOCOL));
    connection_upgrade && protocol
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tunnel_upgrade_is_accepted() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(asks_for_tunnel(&headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "Berth-Database-Tunnel")
        ])));
        assert!(!asks_for_tunnel(&headers(&[("upgrade", "berth-database-tunnel")])));
        assert!(!asks_for_tunnel(&headers(&[("connection", "upgrade"), ("upgrade", "websocket")])));
    }
}
