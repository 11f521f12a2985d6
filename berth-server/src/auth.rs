//! Bearer-token authentication. Tokens are random 32-byte values; the store keeps only
//! their SHA-256, so a leaked database does not leak usable tokens.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::state::AppState;

/// Who made a request (recorded as a deployment's trigger).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) token_name: String,
    /// The token's role (`admin` for the bootstrap token); some endpoints need `admin`.
    pub(crate) role: String,
}

/// The role whose tokens may read secrets in clear (database credentials, webhook secrets).
const ADMIN_ROLE: &str = "admin";

/// Refuses callers whose token is not an admin token, naming the token and what needs it.
pub(crate) fn require_admin(caller: &Caller, what: &str) -> Result<(), AppError> {
    if caller.role == ADMIN_ROLE {
        return Ok(());
    }
    Err(AppError::Forbidden(format!(
        "{what} needs an admin token; token {:?} has role {:?}",
        caller.token_name, caller.role
    )))
}

pub(crate) fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token: `berth_` followed by 64 hex digits.
pub(crate) fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("berth_{}", hex::encode(bytes))
}

pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let header = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim) else {
        return Err(AppError::Unauthorized(
            "missing `Authorization: Bearer TOKEN` header; run `berth login` or pass --token"
                .into(),
        ));
    };
    let record = state.store.find_api_token(&token_digest(token)).await?;
    match record {
        Some(record) if record.organization_id == state.organization => {
            request.extensions_mut().insert(Caller { token_name: record.name, role: record.role });
            Ok(next.run(request).await)
        }
        _ => Err(AppError::Unauthorized(
            "the API token is not valid; check --token, BERTH_TOKEN or `berth login`".into(),
        )),
    }
}
