//! The REST API under `/api/v1`: routes, the OpenAPI document generated from the same
//! route declarations (so a route cannot be missing from `/openapi.json`), bearer-token
//! auth, the JSON body extractor and the body-size limit.

mod applications;
mod convert;
mod database_backups;
mod database_credentials;
mod database_tunnel;
mod databases;
mod deployment_plan;
mod deployments;
mod environments;
mod exec;
mod lookup;
mod projects;
mod status;
mod variables;
mod webhooks;

#[cfg(test)]
mod tests;

use axum::extract::{DefaultBodyLimit, FromRequest};
use axum::routing::get;
use axum::{middleware, Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth;
use crate::error::AppError;
use crate::state::AppState;

/// Largest accepted request body.
pub(crate) const BODY_LIMIT_BYTES: usize = 256 * 1024;

/// `Json` whose rejections become the API's JSON errors.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub(crate) struct ApiJson<T>(pub T);

#[derive(OpenApi)]
#[openapi(
    info(title = "Berth API", description = "Berth's REST API. Authenticate with `Authorization: Bearer TOKEN`."),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The authenticated API routes and their OpenAPI description, from one declaration.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(projects::get_organization))
        .routes(routes!(projects::list_projects, projects::create_project))
        .routes(routes!(projects::get_project, projects::update_project, projects::delete_project))
        .routes(routes!(projects::get_project_settings))
        .routes(routes!(webhooks::show_webhook))
        .routes(routes!(webhooks::rotate_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(environments::list_environments, environments::create_environment))
        .routes(routes!(environments::get_environment, environments::delete_environment))
        .routes(routes!(environments::stop_environment))
        .routes(routes!(environments::start_environment))
        .routes(routes!(environments::redeploy_environment))
        .routes(routes!(environments::clone_environment))
        .routes(routes!(
            environments::list_previews,
            environments::enable_previews,
            environments::disable_previews
        ))
        .routes(routes!(applications::list_applications, applications::create_application))
        .routes(routes!(
            applications::get_application,
            applications::update_application,
            applications::delete_application
        ))
        .routes(routes!(variables::list_project_variables, variables::set_project_variable))
        .routes(routes!(variables::delete_project_variable))
        .routes(routes!(variables::list_environment_variables, variables::set_environment_variable))
        .routes(routes!(variables::delete_environment_variable))
        .routes(routes!(variables::list_application_variables, variables::set_application_variable))
        .routes(routes!(variables::delete_application_variable))
        .routes(routes!(deployments::list_deployments, deployments::create_deployment))
        .routes(routes!(deployment_plan::deployment_plan))
        .routes(routes!(databases::list_databases, databases::create_database))
        .routes(routes!(databases::get_database, databases::delete_database))
        .routes(routes!(database_backups::update_database))
        .routes(routes!(database_credentials::rotate_database_credentials))
        .routes(routes!(databases::list_backups, databases::create_backup))
        .routes(routes!(database_backups::delete_backup))
        .routes(routes!(databases::restore_backup))
        .routes(routes!(databases::clone_database))
        .routes(routes!(database_tunnel::get_database_credentials))
        .routes(routes!(database_tunnel::open_database_tunnel))
        .routes(routes!(deployments::get_deployment))
        .routes(routes!(deployments::cancel_deployment))
        .routes(routes!(deployments::rollback))
        .routes(routes!(exec::exec))
        .routes(routes!(deployments::deployment_logs))
        .routes(routes!(status::environment_status))
        .routes(routes!(status::application_logs))
}

/// The Git hosts' webhook receivers (outside bearer-token auth).
fn webhook_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(webhooks::receive_delivery))
}

/// The OpenAPI document, with paths under `/api/v1`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut document) = api_routes().merge(webhook_routes()).split_for_parts();
    let paths = std::mem::take(&mut document.paths.paths);
    document.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (format!("{}{path}", berth_api::API_PREFIX), item))
        .collect();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

async fn health() -> Json<berth_api::Health> {
    Json(berth_api::Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

async fn no_route(uri: axum::http::Uri) -> AppError {
    AppError::NoRoute(format!("no API route at {}; see /openapi.json for the routes", uri.path()))
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let api = api.layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    // Webhook receivers: no bearer token (the delivery's signature authenticates it),
    // and a larger body limit than the rest of the API.
    let (hooks, _) = webhook_routes().split_for_parts();
    let hooks = hooks.layer(DefaultBodyLimit::max(webhooks::WEBHOOK_BODY_LIMIT_BYTES));
    let document = openapi_document();
    Router::new()
        .nest(berth_api::API_PREFIX, api.merge(hooks))
        .route("/api/v1/health", get(health))
        .route("/openapi.json", get(move || async move { Json(document) }))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(state)
}
