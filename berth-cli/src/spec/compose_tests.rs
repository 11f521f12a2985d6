//! Tests of `compose.rs`: a realistic compose file becomes the expected spec, with what
//! was converted, dropped and turned into secret references.

use expect_test::expect;

use super::super::export::render;
use super::*;

const COMPOSE: &str = r#"
name: shop
services:
  web:
    build:
      context: ./web
      dockerfile: Dockerfile.prod
      args:
        - NODE_ENV=production
    ports:
      - "127.0.0.1:8000:8080/tcp"
    environment:
      DATABASE_URL: postgres://shop:secret@db:5432/shop
      CACHE_HOST: cache
      STRIPE_API_KEY: sk_test_123
      LOG_LEVEL: info
      WORKERS: 4
      LEGACY_URL: mysql://app:hunter2@legacy.example.com:3306/app
      DOCS_URL: https://docs.example.com/a@b
    depends_on:
      db:
        condition: service_healthy
    volumes:
      - uploads_data:/srv/uploads
      - ./config:/etc/shop:ro
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://localhost:8080/healthz"]
      interval: 5s
      retries: 5
    networks: [back]
    restart: always
  worker:
    image: registry.example.com/shop/worker:2
    environment:
      - QUEUE=default
      - SESSION_SECRET
    deploy:
      replicas: 2
      resources:
        limits:
          cpus: "0.5"
          memory: 512M
  db:
    image: postgres:15-alpine
    environment:
      POSTGRES_PASSWORD: secret
    volumes:
      - db_data:/var/lib/postgresql/data
  cache:
    image: redis:7
volumes:
  db_data:
  uploads_data:
networks:
  back:
"#;

fn context() -> ComposeContext {
    ComposeContext {
        project: "shop".into(),
        environment: "production".into(),
        branch: "main".into(),
        repository: Some("/srv/shop".into()),
        directory_in_repository: "deploy".into(),
    }
}

#[test]
fn a_compose_file_becomes_a_spec() {
    let conversion = convert(COMPOSE, &context()).unwrap();
    expect![[r##"
        # Berth spec file written by `berth export`; see docs/spec.md.
        # Secrets are references: their values stay on the server.

        project = "shop"

        [environments.production]
        mode = "production"
        branch = "main"

        [environments.production.databases.cache]
        engine = "redis"

        [environments.production.databases.db]
        engine = "postgresql"

        [environments.production.applications.web]
        git = "/srv/shop"
        root_path = "deploy/web"
        dockerfile_path = "Dockerfile.prod"
        port = 8080
        depends_on = ["db"]
        build_args = { NODE_ENV = "production" }
        health_check = { kind = "http", path = "/healthz", expected_status = "200-399", start_delay_secs = 0.0, interval_secs = 5.0, timeout_secs = 2.0, failure_threshold = 5 }
        volumes = [{ name = "uploads-data", path = "/srv/uploads", size_gb = 1 }]

        [environments.production.applications.web.variables]
        CACHE_HOST = { alias = "BERTH_DATABASE_CACHE_HOST" }
        DATABASE_URL = { alias = "BERTH_DATABASE_DB_URL" }
        DOCS_URL = "https://docs.example.com/a@b"
        LEGACY_URL = { secret = true }
        LOG_LEVEL = "info"
        STRIPE_API_KEY = { secret = true }
        WORKERS = "4"

        [environments.production.applications.worker]
        image = "registry.example.com/shop/worker:2"
        cpu = 0.5
        memory_mb = 512
        instances = 2

        [environments.production.applications.worker.variables]
        QUEUE = "default"
        SESSION_SECRET = { secret = true }
    "##]]
    .assert_eq(&render(&conversion.spec).unwrap());
    expect![[r#"
        [
            "service db (postgres:15-alpine) → database db (postgresql default version)",
            "service cache (redis:7) → database cache (redis default version)",
            "services.web.environment.DATABASE_URL → alias of BERTH_DATABASE_DB_URL",
            "services.web.environment.CACHE_HOST → alias of BERTH_DATABASE_CACHE_HOST",
            "service web → application web (build deploy/web, port 8080, volume uploads_data, http health check /healthz)",
            "service worker → application worker (image registry.example.com/shop/worker:2, no port: a worker)",
        ]
    "#]]
    .assert_debug_eq(&conversion.converted);
    expect![[r#"
        [
            "networks (top level): Berth gives each environment its own network",
            "volumes (top level): named volumes become application volumes where services mount them",
            "services.db.environment: Berth runs and configures the database (credentials are generated; its data is in a Berth volume)",
            "services.db.volumes: Berth runs and configures the database (credentials are generated; its data is in a Berth volume)",
            "services.web.volumes: ./config:/etc/shop (bind mounts and anonymous volumes are not supported; the code comes from the image)",
            "services.web.networks: Berth gives each environment its own network; services reach each other by name",
            "services.web.restart: Berth restarts crashed instances itself",
        ]
    "#]]
    .assert_debug_eq(&conversion.dropped);
    assert_eq!(
        conversion.secrets,
        [
            ("web".to_owned(), "STRIPE_API_KEY".to_owned()),
            ("web".to_owned(), "LEGACY_URL".to_owned()),
            ("worker".into(), "SESSION_SECRET".into())
        ]
    );
}

#[test]
fn database_images_and_their_versions() {
    let cases = [
        "postgres:15",
        "postgres:16.2-bookworm",
        "mariadb:10.11",
        "mysql:8",
        "redis",
        "library/redis:7.2",
        "nginx",
    ];
    let seen: Vec<String> =
        cases.iter().map(|image| format!("{image} → {:?}", database_image(image))).collect();
    expect![[r#"
        [
            "postgres:15 → Some((\"postgresql\", None))",
            "postgres:16.2-bookworm → Some((\"postgresql\", Some(\"16.2\")))",
            "mariadb:10.11 → Some((\"mariadb\", None))",
            "mysql:8 → Some((\"mariadb\", None))",
            "redis → Some((\"redis\", None))",
            "library/redis:7.2 → Some((\"redis\", Some(\"7.2\")))",
            "nginx → None",
        ]
    "#]]
    .assert_debug_eq(&seen);
}

#[test]
fn a_build_without_a_repository_asks_for_one() {
    let mut context = context();
    context.repository = None;
    let error = convert(COMPOSE, &context).unwrap_err();
    assert_eq!(
        error.to_string(),
        "service web is built from source, but the compose file is not in a Git repository: pass --git URL"
    );
}

#[test]
fn a_build_context_outside_the_repository_is_refused() {
    let text = "services:\n  web:\n    build: ../../elsewhere\n";
    let error = convert(text, &context()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "service web: the build context \"../../elsewhere\" is outside the repository"
    );
}
