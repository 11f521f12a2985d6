//! Changing database credentials, end to end, through the CLI of a real server and the
//! local Docker engine.
//!
//! - PostgreSQL: an application (busybox httpd + a CGI script running `psql
//!   "$DATABASE_URL"`, `DATABASE_URL` an alias of `BERTH_DATABASE_MAIN_URL`) reads rows
//!   through the proxy. `rotate-credentials` without `--yes` and without a terminal is
//!   refused and changes nothing; with `--yes --wait` the old password is refused by the
//!   database, the new one works, a deployment `credentials of database main changed` was
//!   queued and succeeded, the application still reads the rows through the proxy, and
//!   the new password is nowhere in clear in the data directory. After `docker restart`
//!   of the database container the new password still works (the old one does not); a
//!   rollback to the deployment made before the rotation still reads the rows (it gets
//!   the current credentials); a later deployment leaves the container alone.
//! - Redis and MariaDB (no application: nothing to redeploy, and the CLI says so): the
//!   old password is refused (MariaDB: for the user and for root), the new one works, the
//!   data is kept, also after `docker restart`.
//! - External PostgreSQL (a server this test starts outside Berth): `update
//!   --external-url` with a wrong password is refused and changes nothing; after the
//!   server's password changed, the right URL is stored (masked in answers) and the
//!   application is redeployed with it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use test_support::databases::{
    container_id, database_container, psql, random_uuid, redis_cli, require_image,
    run_loopback_postgres, try_docker, try_psql, wait_for_answer,
};
use test_support::environment_containers::container_env;
use test_support::harness::{
    docker, files_containing, unique_name, CliOutput, ContainerGuard, TestServer,
};
use test_support::harness_ext::{cli_in, worker_files};

const ENVIRONMENT: &str = "production";
/// A database that restarts answers within seconds.
const READY_DEADLINE: Duration = Duration::from_secs(90);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// An application that answers `GET /cgi-bin/rows` with the rows of table `items`, read
/// with psql through `DATABASE_URL` (psql's error when it cannot).
fn rows_app_files() -> [(&'static str, &'static str); 2] {
    [
        (
            "Dockerfile",
            "FROM berth/postgres:15\nCOPY www /www\nRUN chmod 0755 /www/cgi-bin/rows\nENTRYPOINT []\nCMD [\"sh\", \"-c\", \"exec httpd -f -p \\\"$PORT\\\" -h /www\"]\n",
        ),
        (
            "www/cgi-bin/rows",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\npsql \"$DATABASE_URL\" -X -tA -c 'SELECT body FROM items ORDER BY id' 2>&1\n",
        ),
    ]
}

struct Env {
    project: String,
}

impl Env {
    fn create(server: &TestServer, prefix: &str) -> Env {
        let project = unique_name(prefix);
        server.create_project_and_environment(&project, ENVIRONMENT);
        Env { project }
    }

    fn cli(&self, server: &TestServer, verb: &[&str], rest: &[&str]) -> CliOutput {
        cli_in(server, &self.project, ENVIRONMENT, verb, rest)
    }

    fn container(&self, database: &str) -> String {
        database_container(&self.project, ENVIRONMENT, database)
    }

    /// The deployments of the environment, newest first.
    fn deployments(&self, server: &TestServer) -> Vec<serde_json::Value> {
        let listed = self.cli(server, &["deployment", "list"], &["--output", "json"]);
        listed.expect_success().json().as_array().cloned().unwrap_or_default()
    }

    /// The credentials in clear, from the admin-only endpoint `connect` uses.
    fn password(&self, server: &TestServer, database: &str) -> String {
        let path = format!(
            "/api/v1/projects/{}/environments/{ENVIRONMENT}/databases/{database}/credentials",
            self.project
        );
        let answer = server.api("GET", &path, None);
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["password"].as_str().unwrap().to_owned()
    }
}

/// psql inside `container` over its network address (where passwords are checked) with
/// `password`, given in the exec's environment.
fn psql_with_password(
    container: &str,
    password: &str,
    user: &str,
    database: &str,
    sql: &str,
) -> Result<String, String> {
    let env = format!("BERTH_TEST_PASSWORD={password}");
    let script = r#"PGPASSWORD="$BERTH_TEST_PASSWORD" exec psql -X -h "$HOSTNAME" -v ON_ERROR_STOP=1 -U "$1" -d "$2" -tAc "$3""#;
    try_docker(&["exec", "-e", &env, container, "sh", "-c", script, "sh", user, database, sql])
        .map(|out| out.trim().to_owned())
}

/// `PING` to the Redis in `container` authenticated with `password`: its answer
/// (`PONG`, or `NOAUTH ...` when the password was refused).
fn redis_ping_with_password(container: &str, password: &str) -> String {
    let env = format!("REDISCLI_AUTH={password}");
    match try_docker(&["exec", "-e", &env, container, "redis-cli", "ping"]) {
        Ok(out) | Err(out) => out.trim().to_owned(),
    }
}

/// `sql` through the MariaDB client in `container` as `user` with `password`.
fn mariadb_with_password(
    container: &str,
    password: &str,
    user: &str,
    sql: &str,
) -> Result<String, String> {
    let env = format!("BERTH_TEST_PASSWORD={password}");
    let script =
        r#"MYSQL_PWD="$BERTH_TEST_PASSWORD" exec mariadb -h 127.0.0.1 -u "$1" -N -B -e "$2""#;
    try_docker(&["exec", "-e", &env, container, "sh", "-c", script, "sh", user, sql])
        .map(|out| out.trim().to_owned())
}

#[test]
fn postgresql_rotation_redeploys_applications_and_survives_a_restart() {
    require_image("berth/postgres:15");
    let server = TestServer::start(berth_binary(), Default::default());
    let env = Env::create(&server, "dbrot");
    env.cli(&server, &["database", "create"], &["main", "--engine", "postgresql"]).expect_success();
    let repo = server.fixture_repo(&rows_app_files(), "main");
    env.cli(
        &server,
        &["application", "create"],
        &["web", "--git", &repo.file_url(), "--port", "8080", "--drain", "0"],
    )
    .expect_success();
    env.cli(&server, &["env-var", "alias"], &["DATABASE_URL=BERTH_DATABASE_MAIN_URL"])
        .expect_success();
    env.cli(&server, &["deploy"], &["--wait"]).expect_success();

    let container = env.container("main");
    let old_password = container_env(&container, "POSTGRES_PASSWORD");
    assert_eq!(env.password(&server, "main"), old_password);
    psql(
        &container,
        "main",
        "main",
        "CREATE TABLE items (id integer PRIMARY KEY, body text NOT NULL); \
         INSERT INTO items VALUES (1, 'first'), (2, 'second')",
    );
    let host = server.app_host(&env.project, ENVIRONMENT, "web");
    let rows = server.proxy_get(&host, "/cgi-bin/rows");
    assert_eq!((rows.status, rows.body.trim()), (200, "first\nsecond"), "{rows:?}");
    let deployments_before = env.deployments(&server);
    let serving_before = deployments_before[0]["id"].as_str().unwrap().to_owned();
    let deployments_before = deployments_before.len();

    // No terminal and no --yes: refused before any request; nothing changed.
    let refused = env.cli(&server, &["database", "rotate-credentials"], &["main"]).expect_failure();
    assert!(refused.stderr.contains("--yes"), "{refused}");
    assert_eq!(env.password(&server, "main"), old_password);
    assert_eq!(
        psql_with_password(&container, &old_password, "main", "main", "SELECT 1").unwrap(),
        "1"
    );

    let rotated = env
        .cli(&server, &["database", "rotate-credentials"], &["main", "--yes", "--wait"])
        .expect_success();
    let text = rotated.combined();
    assert!(text.contains("rotated the password of database main"), "{rotated}");
    assert!(text.contains("lose access"), "the old instances' fate is announced: {rotated}");
    assert!(text.contains("succeeded"), "--wait follows the redeployment: {rotated}");
    let new_password = env.password(&server, "main");
    assert_ne!(new_password, old_password);
    assert!(new_password.len() >= 32 && new_password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(!text.contains(&new_password) && !text.contains(&old_password), "{rotated}");

    // The database refuses the old password and takes the new one; the data is there.
    let old = psql_with_password(&container, &old_password, "main", "main", "SELECT 1");
    assert!(
        old.as_ref().is_err_and(|error| error.contains("password authentication failed")),
        "{old:?}"
    );
    let count =
        psql_with_password(&container, &new_password, "main", "main", "SELECT count(*) FROM items");
    assert_eq!(count.unwrap(), "2");
    assert_eq!(container_env(&container, "POSTGRES_PASSWORD"), new_password);

    // One deployment was queued for it, and it succeeded; the application reads the rows
    // with the new credentials.
    let deployments = env.deployments(&server);
    assert_eq!(deployments.len(), deployments_before + 1, "{deployments:#?}");
    assert_eq!(deployments[0]["trigger"], "credentials of database main changed");
    assert_eq!(deployments[0]["status"], "succeeded", "{:#}", deployments[0]);
    let rows = server.proxy_get(&host, "/cgi-bin/rows");
    assert_eq!((rows.status, rows.body.trim()), (200, "first\nsecond"), "{rows:?}");
    assert_eq!(
        files_containing(server.data_dir(), &new_password),
        Vec::<std::path::PathBuf>::new()
    );

    // A restart of the container keeps the new password (and only it).
    docker(&["restart", &container]);
    let count = wait_for_answer(READY_DEADLINE, "PostgreSQL after docker restart", || {
        psql_with_password(&container, &new_password, "main", "main", "SELECT count(*) FROM items")
    });
    assert_eq!(count, "2");
    assert!(psql_with_password(&container, &old_password, "main", "main", "SELECT 1").is_err());
    let rows = server.proxy_get(&host, "/cgi-bin/rows");
    assert_eq!((rows.status, rows.body.trim()), (200, "first\nsecond"), "{rows:?}");

    // A rollback to the deployment made with the old password gets the current one.
    env.cli(&server, &["rollback"], &["--to", &serving_before, "--wait"]).expect_success();
    let rows = server.proxy_get(&host, "/cgi-bin/rows");
    assert_eq!((rows.status, rows.body.trim()), (200, "first\nsecond"), "{rows:?}");

    // The next deployment finds the container created with the stored credentials.
    let id = container_id(&container);
    env.cli(&server, &["deploy"], &["--wait"]).expect_success();
    assert_eq!(container_id(&container), id, "an up-to-date database container is left alone");
}

#[test]
fn redis_and_mariadb_rotation_without_applications() {
    require_image("berth/redis:7.0");
    require_image("berth/mariadb:10.11");
    let server = TestServer::start(berth_binary(), Default::default());
    let env = Env::create(&server, "dbrotkv");
    env.cli(&server, &["database", "create"], &["cache", "--engine", "redis"]).expect_success();
    env.cli(&server, &["database", "create"], &["shop", "--engine", "mariadb"]).expect_success();
    env.cli(&server, &["deploy"], &["--wait"]).expect_success();

    // Redis.
    let cache = env.container("cache");
    let old_redis = env.password(&server, "cache");
    assert_eq!(redis_cli(&cache, &["set", "kept", "yes"]), "OK");
    let rotated =
        env.cli(&server, &["database", "rotate-credentials"], &["cache", "--yes"]).expect_success();
    assert!(rotated.stdout.contains("no application"), "{rotated}");
    let new_redis = env.password(&server, "cache");
    assert_ne!(new_redis, old_redis);
    assert!(redis_ping_with_password(&cache, &old_redis).contains("NOAUTH"));
    assert_eq!(redis_ping_with_password(&cache, &new_redis), "PONG");
    assert_eq!(redis_cli(&cache, &["get", "kept"]), "yes");
    docker(&["restart", &cache]);
    wait_for_answer(READY_DEADLINE, "Redis after docker restart", || {
        match redis_ping_with_password(&cache, &new_redis).as_str() {
            "PONG" => Ok(()),
            other => Err(other.to_owned()),
        }
        .map(|()| String::new())
    });
    assert!(redis_ping_with_password(&cache, &old_redis).contains("NOAUTH"));
    assert_eq!(redis_cli(&cache, &["get", "kept"]), "yes");

    // MariaDB: the user and root both change.
    let shop = env.container("shop");
    let old_mariadb = env.password(&server, "shop");
    mariadb_with_password(
        &shop,
        &old_mariadb,
        "shop",
        "CREATE TABLE shop.items (id int PRIMARY KEY); INSERT INTO shop.items VALUES (7)",
    )
    .unwrap();
    env.cli(&server, &["database", "rotate-credentials"], &["shop", "--yes"]).expect_success();
    let new_mariadb = env.password(&server, "shop");
    assert_ne!(new_mariadb, old_mariadb);
    for user in ["shop", "root"] {
        let old = mariadb_with_password(&shop, &old_mariadb, user, "SELECT 1");
        assert!(
            old.as_ref().is_err_and(|error| error.contains("Access denied")),
            "{user}: {old:?}"
        );
    }
    for user in ["shop", "root"] {
        assert_eq!(
            mariadb_with_password(&shop, &new_mariadb, user, "SELECT id FROM shop.items").unwrap(),
            "7"
        );
    }
    docker(&["restart", &shop]);
    let kept = wait_for_answer(READY_DEADLINE, "MariaDB after docker restart", || {
        mariadb_with_password(&shop, &new_mariadb, "shop", "SELECT id FROM shop.items")
    });
    assert_eq!(kept, "7");
    // Backups use the container's credentials: they still work.
    env.cli(&server, &["database", "backup"], &["shop"]).expect_success();
}

#[test]
fn external_url_is_checked_before_it_is_stored_and_redeploys_applications() {
    require_image("berth/postgres:15");
    let server = TestServer::start(berth_binary(), Default::default());
    let env = Env::create(&server, "dbrotext");
    let external = unique_name("dbrotext-server");
    let first_password = format!("ext{}", random_uuid().replace('-', ""));
    let mut guard = ContainerGuard::new();
    let port = run_loopback_postgres(&mut guard, &external, &first_password);
    wait_for_answer(READY_DEADLINE, "the external PostgreSQL", || {
        try_psql(&external, "postgres", "postgres", "SELECT 1")
    });
    let url_with =
        |password: &str| format!("postgresql://postgres:{password}@127.0.0.1:{port}/postgres");
    env.cli(
        &server,
        &["database", "create"],
        &["legacy", "--engine", "postgresql", "--external-url", &url_with(&first_password)],
    )
    .expect_success();
    let repo = server.fixture_repo(&worker_files(), "main");
    env.cli(
        &server,
        &["application", "create"],
        &["worker", "--git", &repo.file_url(), "--drain", "0"],
    )
    .expect_success();
    env.cli(&server, &["env-var", "alias"], &["DATABASE_URL=BERTH_DATABASE_LEGACY_URL"])
        .expect_success();
    env.cli(&server, &["deploy"], &["--wait"]).expect_success();
    let deployments_before = env.deployments(&server).len();

    // The server's password changes; a wrong one in the new URL is refused, nothing moves.
    let second_password = format!("new{}", random_uuid().replace('-', ""));
    psql(
        &external,
        "postgres",
        "postgres",
        &format!("ALTER ROLE postgres PASSWORD '{second_password}'"),
    );
    let wrong = env
        .cli(&server, &["database", "update"], &["legacy", "--external-url", &url_with("wrong")])
        .expect_failure();
    assert!(wrong.stderr.contains("authentication failed"), "{wrong}");
    assert_eq!(env.password(&server, "legacy"), first_password);
    assert_eq!(env.deployments(&server).len(), deployments_before);
    // A container database's credentials are Berth's: refused with the command to use.
    env.cli(&server, &["database", "create"], &["own", "--engine", "postgresql"]).expect_success();
    let not_external = env
        .cli(&server, &["database", "update"], &["own", "--external-url", &url_with("x")])
        .expect_failure();
    assert!(not_external.stderr.contains("rotate-credentials"), "{not_external}");

    // The right URL, on standard input: stored, masked in the answer, applications
    // redeployed with it.
    let updated = server
        .cli_with_stdin(
            &[
                "database",
                "update",
                "--project",
                &env.project,
                "--environment",
                ENVIRONMENT,
                "legacy",
                "--external-url-stdin",
                "--wait",
            ],
            &format!("{}\n", url_with(&second_password)),
        )
        .expect_success();
    assert!(updated.stdout.contains("postgres:********@127.0.0.1"), "{updated}");
    assert!(!updated.combined().contains(&second_password), "{updated}");
    assert!(updated.combined().contains("succeeded"), "{updated}");
    assert_eq!(env.password(&server, "legacy"), second_password);
    let deployments = env.deployments(&server);
    assert_eq!(deployments.len(), deployments_before + 1, "{deployments:#?}");
    assert_eq!(deployments[0]["trigger"], "credentials of database legacy changed");
    assert_eq!(deployments[0]["status"], "succeeded");
    let seen = env.cli(
        &server,
        &["exec"],
        &["--application", "worker", "--", "sh", "-c", "echo \"$DATABASE_URL\""],
    );
    assert_eq!(seen.expect_success().stdout.trim(), url_with(&second_password));
}
