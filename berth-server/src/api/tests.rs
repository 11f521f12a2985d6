//! API tests without a socket (`Router::oneshot`): authentication, validation, error
//! shapes, secrets never returned, and every documented route being served. They use a
//! real store in a temporary directory and the real Docker adapter (never asked to run
//! anything here); the engine loop is not started.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_engine::config::{EngineConfig, StepDeadlines};
use berth_engine::secrets::MasterKey;
use berth_engine::{Adapters, Engine};
use berth_store::Store;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::state::{AppState, PublicSettings};

struct Harness {
    app: axum::Router,
    token: String,
    data_dir: tempfile::TempDir,
}

async fn harness(allow_local: bool) -> Harness {
    let data_dir = tempfile::tempdir().unwrap();
    let store = Store::open(&data_dir.path().join("berth.db")).await.unwrap();
    let organization =
        crate::bootstrap::ensure_organization(&store, data_dir.path()).await.unwrap();
    let token =
        std::fs::read_to_string(data_dir.path().join("admin.token")).unwrap().trim().to_owned();
    let (key, _) = MasterKey::load_or_create(&data_dir.path().join("master.key")).unwrap();
    let docker = Arc::new(berth_docker::DockerEngine::connect(None).await.unwrap());
    let adapters = Adapters {
        source: Arc::new(berth_git::GitCli::new()),
        builder: docker.clone(),
        runtime: docker,
        router: Arc::new(crate::proxy_supervisor::ProxyRouter::new(data_dir.path())),
        database_verifier: Arc::new(berth_database_check::NetworkDatabaseVerifier),
        backup_store: Arc::new(berth_engine::backup_store::LocalDirectoryStore::new(
            data_dir.path().join("backups"),
        )),
    };
    let base_domain = berth_domain::Hostname::parse("localhost").unwrap();
    let config = EngineConfig {
        data_dir: data_dir.path().to_owned(),
        base_domain: base_domain.clone(),
        allow_local_repositories: allow_local,
        deadlines: StepDeadlines::default(),
        max_parallel_deployments: 1,
        deploy_concurrency: 2,
        keep_successful_images: 5,
        pause_at: None,
    };
    let engine = Engine::new(store.clone(), adapters, key.clone(), config, organization.id);
    let state = AppState {
        store,
        engine,
        key,
        organization: organization.id,
        settings: Arc::new(PublicSettings {
            base_domain,
            proxy_port: 8000,
            allow_local_repositories: allow_local,
        }),
    };
    Harness { app: super::router(state), token, data_dir }
}

impl Harness {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_raw(method, path, body.map(|b| b.to_string()), Some(&self.token), true).await
    }

    async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
        json_content_type: bool,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if json_content_type {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let h = harness(false).await;
    let (status, body) = h.call_raw("GET", "/api/v1/projects", None, None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthorized");
    assert!(error_message(&body).contains("berth login"), "{body}");
    let (status, _) =
        h.call_raw("GET", "/api/v1/projects", None, Some("berth_forged"), false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h.call_raw("GET", "/api/v1/health", None, None, false).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_references_are_404_with_a_hint() {
    let h = harness(false).await;
    let (status, body) = h.call("GET", "/api/v1/projects/nope/environments", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    assert!(error_message(&body).contains("berth project list"), "{body}");
    h.call("POST", "/api/v1/projects", Some(json!({"name": "shop"}))).await;
    let (status, body) = h.call("GET", "/api/v1/projects/shop/environments/staging", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_message(&body).contains("\"staging\""), "{body}");
    let (status, _) = h.call("GET", "/api/v1/deployments/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_input_is_422_naming_the_rule() {
    let h = harness(false).await;
    for bad in ["Shop", "-shop", "shop_1", "$(id)", ""] {
        let (status, body) = h.call("POST", "/api/v1/projects", Some(json!({"name": bad}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(error_message(&body).contains("lower-case letters"), "{body}");
    }
    let (status, _) = h.call("POST", "/api/v1/projects", Some(json!({"name": "shop"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = h.call("POST", "/api/v1/projects", Some(json!({"name": "shop"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(error_message(&body).contains("already exists"), "{body}");
    let (status, body) = h
        .call(
            "POST",
            "/api/v1/projects/shop/environments",
            Some(json!({"name": "prod", "mode": "live"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(&body).contains("production, staging"), "{body}");
    let (status, body) = h
        .call(
            "POST",
            "/api/v1/projects/shop/environments",
            Some(json!({"name": "prod", "branch": "--upload-pack=x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(&body).contains("option"), "{body}");
    let (status, _) =
        h.call("POST", "/api/v1/projects/shop/environments", Some(json!({"name": "prod"}))).await;
    assert_eq!(status, StatusCode::CREATED);

    let apps = "/api/v1/projects/shop/environments/prod/applications";
    let cases = [
        (
            json!({"name": "web", "git": {"repository": "ext::sh -c touch% /tmp/pwned"}}),
            "remote-helper",
        ),
        (json!({"name": "web", "git": {"repository": "--upload-pack=touch /tmp/pwned"}}), "option"),
        (
            json!({"name": "web", "git": {"repository": "https://example.com/a.git", "branch": "$(id)"}}),
            "branch",
        ),
        (json!({"name": "web", "git": {"repository": "/srv/repo"}}), "--allow-local-repositories"),
        (
            json!({"name": "web", "git": {"repository": "https://example.com/a.git", "root_path": "../etc"}}),
            "without '..'",
        ),
        (json!({"name": "web"}), "exactly one source"),
        (
            json!({"name": "web", "image": "x", "git": {"repository": "https://example.com/a.git"}}),
            "exactly one source",
        ),
        (json!({"name": "web", "image": "busybox", "port": 70000}), "port"),
        (json!({"name": "web", "image": "busybox", "memory_mb": 1}), "memory"),
        (json!({"name": "web", "image": "busybox", "cpu": 0}), "CPU"),
        (
            json!({"name": "web", "git": {"repository": "ssh://git@127.0.0.1/r.git"}, "git_token": "t"}),
            "--ssh-key-file",
        ),
    ];
    for (body, expected) in cases {
        let (status, response) = h.call("POST", apps, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(error_message(&response).contains(expected), "{body} -> {response}");
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    let (_, list) = h.call("GET", apps, None).await;
    assert_eq!(list, json!([]), "nothing was created by refused requests");
}

#[tokio::test]
async fn bodies_that_are_too_large_or_not_json_are_refused_cleanly() {
    let h = harness(false).await;
    let huge = json!({"name": "x".repeat(super::BODY_LIMIT_BYTES + 10)}).to_string();
    let (status, body) =
        h.call_raw("POST", "/api/v1/projects", Some(huge), Some(&h.token), true).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "payload_too_large");
    let (status, body) = h
        .call_raw(
            "POST",
            "/api/v1/projects",
            Some("{\"name\":\"a\"}".into()),
            Some(&h.token),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error_message(&body).contains("Content-Type"), "{body}");
    let (status, body) =
        h.call_raw("POST", "/api/v1/projects", Some("{nope".into()), Some(&h.token), true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "invalid_input");
}

#[tokio::test]
async fn secrets_are_write_only_and_encrypted_at_rest() {
    let h = harness(false).await;
    h.call("POST", "/api/v1/projects", Some(json!({"name": "shop"}))).await;
    let secret = "s3cr3t-value-that-must-not-leak";
    let (status, body) = h
        .call(
            "PUT",
            "/api/v1/projects/shop/variables",
            Some(json!({"name": "API_KEY", "value": secret, "secret": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], "********");
    let (_, list) = h.call("GET", "/api/v1/projects/shop/variables", None).await;
    assert!(!list.to_string().contains(secret));
    assert_eq!(list[0]["secret"], true);
    let (status, body) = h
        .call(
            "PUT",
            "/api/v1/projects/shop/variables",
            Some(json!({"name": "BERTH_X", "value": "1"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(&body).contains("BERTH_"), "{body}");
    // Nothing in the data directory holds the secret in clear (SQLite WAL included).
    for entry in std::fs::read_dir(h.data_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn every_documented_route_is_served_and_documented_routes_cover_the_router() {
    let h = harness(false).await;
    let (status, document) = h.call_raw("GET", "/openapi.json", None, None, false).await;
    assert_eq!(status, StatusCode::OK);
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{}", paths.len());
    let mut checked = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{project}", "p")
                .replace("{environment}", "e")
                .replace("{application}", "a")
                .replace("{name}", "N")
                .replace("{id}", "00000000-0000-0000-0000-000000000000");
            let body = matches!(method.as_str(), "post" | "put" | "patch").then(|| json!({}));
            let (status, response) = h.call(&method.to_uppercase(), &concrete, body).await;
            assert_ne!(error_code(&response), "no_route", "{method} {path}");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked}");
    // The router is built from the same `routes!` declarations as the document, so the
    // other direction holds by construction; an undocumented path is not served.
    let (status, body) = h.call("GET", "/api/v1/undocumented", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "no_route");
}

#[tokio::test]
async fn database_credentials_are_revealed_to_admin_tokens_only() {
    let h = harness(false).await;
    h.call("POST", "/api/v1/projects", Some(json!({"name": "shop"}))).await;
    h.call("POST", "/api/v1/projects/shop/environments", Some(json!({"name": "prod"}))).await;
    let databases = "/api/v1/projects/shop/environments/prod/databases";
    let (status, created) =
        h.call("POST", databases, Some(json!({"name": "cache", "engine": "redis"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    let (status, revealed) = h.call("GET", &format!("{databases}/cache/credentials"), None).await;
    assert_eq!(status, StatusCode::OK, "{revealed}");
    let password = revealed["password"].as_str().unwrap();
    assert_eq!(password.len(), 32, "{revealed}");
    assert_eq!((&revealed["engine"], &revealed["user"]), (&json!("redis"), &json!("default")));
    // Everywhere else the password stays masked.
    for path in [databases.to_owned(), format!("{databases}/cache")] {
        let (_, body) = h.call("GET", &path, None).await;
        assert!(!body.to_string().contains(password), "{path}: {body}");
    }

    // A token of another role is refused, and so is an unknown database.
    let store = Store::open(&h.data_dir.path().join("berth.db")).await.unwrap();
    let organization =
        crate::bootstrap::ensure_organization(&store, h.data_dir.path()).await.unwrap();
    let viewer = crate::auth::generate_token();
    store
        .create_api_token(organization.id, "ci", &crate::auth::token_digest(&viewer), "viewer")
        .await
        .unwrap();
    // The tunnel too: a raw connection to the database is worth its password.
    for suffix in ["credentials", "tunnel"] {
        let path = format!("{databases}/cache/{suffix}");
        let (status, body) = h.call_raw("GET", &path, None, Some(&viewer), false).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{suffix}: {body}");
        assert!(error_message(&body).contains("needs an admin token"), "{suffix}: {body}");
    }
    let (status, body) = h.call("GET", &format!("{databases}/nope/credentials"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A database being deleted (the engine loop does not run here, so it stays so) gives
    // neither its credentials nor a tunnel.
    let (status, _) = h.call("DELETE", &format!("{databases}/cache"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for suffix in ["credentials", "tunnel"] {
        let (status, body) = h.call("GET", &format!("{databases}/cache/{suffix}"), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{suffix}: {body}");
        assert!(error_message(&body).contains("is being deleted"), "{body}");
    }
}
