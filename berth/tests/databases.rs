//! Databases, end to end, through the CLI of a real server and the local Docker engine.
//!
//! - PostgreSQL: an environment with a database and an application that receives
//!   `BERTH_DATABASE_MAIN_*` and the alias `DATABASE_URL`, and reaches the server by its
//!   host name; rows written, then the application redeployed many times, the database
//!   container restarted and stopped, the Berth server restarted (SIGTERM) and killed
//!   (SIGKILL): the checksum of the data never changes, and no redeploy touches the
//!   database's container.
//! - MariaDB and Redis, lighter: data through redeploys and a container restart (for Redis
//!   the application writes the key itself, over the network, with the injected
//!   credentials).
//! - External mode against a PostgreSQL this test starts outside Berth: the record, the
//!   variables an application receives, no container or volume, the password nowhere in
//!   clear, and deleting it leaves the external server and its data alone.
//! - Bad input: unknown engine, version `latest` (refused before any pull), external without
//!   a URL, a name taken by an application (and the reverse), a duplicate; nothing changes.
//! - Deleting: refused without `--yes` and a terminal; with `--yes` the database's container
//!   and volume go, while decoy volumes (an unlabelled `berth-db-<uuid>`, one labelled for
//!   another organization) and another project's database survive.
//!
//! Every test has its own server, project names and decoys, so they run in parallel; waits
//! are on conditions with deadlines.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use test_support::databases::{
    container_id, container_labels, container_running, container_volumes, database_container,
    database_volume, mariadb, psql, random_uuid, redis_cli, require_image, run_loopback_postgres,
    try_docker, try_mariadb, try_psql, try_psql_with_password_from, try_redis_cli, volume_exists,
    volume_labels, wait_for_answer, VolumeGuard,
};
use test_support::environment_containers::container_env;
use test_support::harness::{
    docker, files_containing, labelled_objects, unique_name, CliOutput, ContainerGuard, TestServer,
};
use test_support::harness_ext::{cli_in, worker_files, RestartableServer};

const ENVIRONMENT: &str = "production";
/// How often the PostgreSQL test redeploys its application.
const REDEPLOYS: usize = 10;
/// A database that restarts answers within seconds; a minute means it lost its data dir.
const READY_DEADLINE: Duration = Duration::from_secs(90);
/// Deleting stops the database gracefully (up to 60 s) before its volume goes.
const DELETE_DEADLINE: Duration = Duration::from_secs(180);
/// Refusing bad input needs no Docker work: seconds at most.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(15);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// One project with environment `production`, and the CLI calls about it (the server is
/// passed in: the PostgreSQL test restarts it in between).
struct Env {
    project: String,
}

impl Env {
    #[track_caller]
    fn create(server: &TestServer, prefix: &str) -> Env {
        let project = unique_name(prefix);
        server.create_project_and_environment(&project, ENVIRONMENT);
        Env { project }
    }

    /// `berth VERB... --project P --environment production REST...`.
    fn cli(&self, server: &TestServer, verb: &[&str], rest: &[&str]) -> CliOutput {
        cli_in(server, &self.project, ENVIRONMENT, verb, rest)
    }

    /// `berth database create ... NAME FLAGS --output json`, which must succeed.
    #[track_caller]
    fn create_database(
        &self,
        server: &TestServer,
        name: &str,
        flags: &[&str],
    ) -> serde_json::Value {
        let mut rest = vec![name];
        rest.extend(flags);
        rest.extend(["--output", "json"]);
        self.cli(server, &["database", "create"], &rest).expect_success().json()
    }

    /// `database show --output json`.
    #[track_caller]
    fn show_database(&self, server: &TestServer, name: &str) -> serde_json::Value {
        self.cli(server, &["database", "show"], &[name, "--output", "json"]).expect_success().json()
    }

    /// Creates the worker application `name` (drain 0: redeploys are quick).
    #[track_caller]
    fn create_worker(&self, server: &TestServer, name: &str) {
        let repo = server.fixture_repo(&worker_files(), "main");
        let url = repo.file_url();
        self.cli(server, &["application", "create"], &[name, "--git", &url, "--drain", "0"])
            .expect_success();
    }

    #[track_caller]
    fn deploy(&self, server: &TestServer) {
        self.cli(server, &["deploy"], &["--wait"]).expect_success();
    }

    /// `berth exec ... --application APP -- sh -c SCRIPT`: its standard output.
    #[track_caller]
    fn exec(&self, server: &TestServer, application: &str, script: &str) -> String {
        self.cli(server, &["exec"], &["--application", application, "--", "sh", "-c", script])
            .expect_success()
            .stdout
    }

    /// The `BERTH_DATABASE_*` and `DATABASE_URL` variables a new container of the
    /// application sees (`berth exec`), by name.
    #[track_caller]
    fn variables_seen_by(
        &self,
        server: &TestServer,
        application: &str,
    ) -> BTreeMap<String, String> {
        self.exec(server, application, "env | grep -E '^(BERTH_DATABASE_|DATABASE_URL=)' || true")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    fn container(&self, database: &str) -> String {
        database_container(&self.project, ENVIRONMENT, database)
    }

    fn project_id(&self, server: &TestServer) -> String {
        server.project_id(&self.project)
    }
}

/// Every host address container `name` publishes a port on.
fn published_host_addresses(name: &str) -> Vec<String> {
    docker(&["port", name])
        .lines()
        .filter_map(|line| line.split_once(" -> ").map(|(_, host)| host.to_owned()))
        .collect()
}

/// Asserts the labels and the volume Berth gave database `database` (its record).
#[track_caller]
fn assert_owned_database(
    server: &TestServer,
    env: &Env,
    database: &serde_json::Value,
    data_path: &str,
) {
    let name = database["name"].as_str().expect("name");
    let id = database["id"].as_str().expect("id");
    let container = env.container(name);
    assert!(container_running(&container), "{container} runs");
    let labels = container_labels(&container);
    let expected = [
        ("berth.managed-by", "berth"),
        ("berth.organization", server.organization_id()),
        ("berth.project", &env.project_id(server)),
        ("berth.service", id),
        ("berth.service-kind", "database"),
    ];
    for (key, value) in expected {
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key} of {container}");
    }
    let volume = database_volume(id);
    assert_eq!(
        container_volumes(&container).get(&volume).map(String::as_str),
        Some(data_path),
        "{container} keeps its data in volume {volume}"
    );
    let volume_labels = volume_labels(&volume);
    assert_eq!(volume_labels.get("berth.service").map(String::as_str), Some(id));
    assert_eq!(volume_labels.get("berth.service-kind").map(String::as_str), Some("database"));
    // Reachable from the host only through loopback.
    let published = published_host_addresses(&container);
    assert!(
        published.iter().all(|address| address.starts_with("127.0.0.1:")),
        "{container} is published beyond 127.0.0.1: {published:?}"
    );
}

/// Asserts the six built-in variables of database `database` (its record) as an
/// application sees them (`seen`), with `password` and `expected_url`.
#[track_caller]
fn assert_builtins(
    seen: &BTreeMap<String, String>,
    prefix: &str,
    database: &serde_json::Value,
    password: &str,
    expected_url: &str,
) {
    let get = |field: &str| {
        let name = format!("{prefix}_{field}");
        seen.get(&name).cloned().unwrap_or_else(|| panic!("no {name} in {seen:#?}"))
    };
    assert_eq!(get("HOST"), database["host"].as_str().expect("host"));
    assert_eq!(get("PORT"), database["port"].to_string());
    assert_eq!(get("USER"), database["user"].as_str().expect("user"));
    assert_eq!(get("NAME"), database["database"].as_str().expect("database"));
    assert_eq!(get("PASSWORD"), password);
    assert_eq!(get("URL"), expected_url);
}

/// Count and md5 of every row, in order.
const PG_CHECKSUM: &str =
    "SELECT count(*) || ' ' || md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM items";

#[test]
fn postgresql_keeps_its_data_through_redeploys_and_restarts() {
    require_image("berth/postgres:15");
    let mut server = RestartableServer::start(berth_binary(), &[]);
    let env = Env::create(&server, "dbpg");
    let created = env.create_database(&server, "main", &["--engine", "postgresql"]);
    assert_eq!(created["engine"], "postgresql", "{created:#}");
    assert_eq!(created["version"], "15", "{created:#}");
    assert_eq!(created["mode"], "container", "{created:#}");
    assert_eq!(created["storage_gb"], 1, "{created:#}");
    assert_eq!((&created["host"], &created["port"]), (&"main".into(), &5432.into()));
    assert_eq!(created["runtime_status"], "not_deployed", "{created:#}");
    assert!(created["url"].as_str().is_some_and(|url| url.contains("********")), "{created:#}");
    let names: Vec<&str> = created["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        names,
        ["URL", "HOST", "PORT", "USER", "PASSWORD", "NAME"]
            .map(|f| format!("BERTH_DATABASE_MAIN_{f}"))
    );
    let container = env.container("main");
    assert_eq!(container_id(&container), None, "nothing starts before a deployment");

    env.create_worker(&server, "web");
    env.cli(&server, &["env-var", "alias"], &["DATABASE_URL=BERTH_DATABASE_MAIN_URL"])
        .expect_success();
    let listed = env.cli(&server, &["env-var", "list"], &[]).expect_success();
    assert!(
        listed.stdout.lines().any(|line| {
            line.starts_with("DATABASE_URL ") && line.contains("${BERTH_DATABASE_MAIN_URL}")
        }),
        "env-var list shows the alias:\n{listed}"
    );
    let table = env.cli(&server, &["database", "list"], &[]).expect_success();
    assert!(table.stdout.contains("not_deployed"), "{table}");

    env.deploy(&server);
    let shown = env.show_database(&server, "main");
    assert_eq!(shown["runtime_status"], "running", "{shown:#}");
    assert_owned_database(&server, &env, &shown, "/var/lib/postgresql/data");
    let volume = database_volume(shown["id"].as_str().expect("id"));
    let (user, database) =
        (created["user"].as_str().expect("user"), created["database"].as_str().expect("db"));

    // The application receives the coordinates and the alias; the password is the one the
    // server was started with, strong, and written nowhere in clear.
    let password = container_env(&container, "POSTGRES_PASSWORD");
    assert!(password.len() >= 32 && password.chars().all(|c| c.is_ascii_alphanumeric()));
    let seen = env.variables_seen_by(&server, "web");
    let url = format!("postgresql://{user}:{password}@main:5432/{database}");
    assert_builtins(&seen, "BERTH_DATABASE_MAIN", &shown, &password, &url);
    assert_eq!(seen.get("DATABASE_URL"), Some(&url), "the alias follows the URL");
    for listing in [
        env.cli(&server, &["database", "show"], &["main"]).expect_success().combined(),
        env.cli(&server, &["database", "list", "--output", "json"], &[])
            .expect_success()
            .combined(),
        listed.combined(),
    ] {
        assert!(!listing.contains(&password), "the password is shown:\n{listing}");
    }
    assert_eq!(files_containing(server.data_dir(), &password), Vec::<std::path::PathBuf>::new());

    // The application reaches PostgreSQL by its host name: an SSLRequest is answered 'N'.
    let answer = env.exec(
        &server,
        "web",
        r#"printf '\0\0\0\10\4\322\26\57' | nc -w 5 "$BERTH_DATABASE_MAIN_HOST" "$BERTH_DATABASE_MAIN_PORT" | head -c 1"#,
    );
    assert_eq!(answer.trim_end(), "N", "PostgreSQL answers the application");

    // Rows written with the credentials the application got (the password counts: over
    // TCP a wrong one is refused).
    let wrong = try_psql_with_password_from(&container, "PG_MAJOR", user, database, "SELECT 1");
    assert!(
        wrong.as_ref().is_err_and(|error| error.contains("password authentication failed")),
        "{wrong:?}"
    );
    psql(
        &container,
        user,
        database,
        "CREATE TABLE items (id integer PRIMARY KEY, body text NOT NULL); \
         INSERT INTO items SELECT i, md5(i::text) FROM generate_series(1, 5000) AS i",
    );
    let checksum = psql(&container, user, database, PG_CHECKSUM);
    assert!(checksum.starts_with("5000 "), "{checksum}");
    let database_container_id = container_id(&container).expect("the database container");

    for round in 1..=REDEPLOYS {
        env.deploy(&server);
        assert_eq!(
            container_id(&container).as_deref(),
            Some(database_container_id.as_str()),
            "redeploy {round} left the database container alone"
        );
        assert_eq!(
            psql(&container, user, database, PG_CHECKSUM),
            checksum,
            "after redeploy {round}"
        );
    }

    // A restart of the container (SIGINT, PostgreSQL's fast shutdown), then a deployment.
    docker(&["restart", "--time", "60", &container]);
    let after = wait_for_answer(READY_DEADLINE, "PostgreSQL after docker restart", || {
        try_psql(&container, user, database, PG_CHECKSUM)
    });
    assert_eq!(after, checksum, "after docker restart");
    env.deploy(&server);
    assert_eq!(psql(&container, user, database, PG_CHECKSUM), checksum);

    // The Berth server restarts (SIGTERM) and crashes (SIGKILL); its reconciler runs at start
    // and on the deployment after it.
    server.restart(&[]);
    env.deploy(&server);
    assert_eq!(container_id(&container).as_deref(), Some(database_container_id.as_str()));
    assert_eq!(psql(&container, user, database, PG_CHECKSUM), checksum, "after a server restart");
    server.kill_hard();
    assert_eq!(psql(&container, user, database, PG_CHECKSUM), checksum, "while the server is down");
    server.start_again(&[]);
    env.deploy(&server);
    assert_eq!(container_id(&container).as_deref(), Some(database_container_id.as_str()));
    assert_eq!(psql(&container, user, database, PG_CHECKSUM), checksum, "after a server crash");

    // A stopped database is started again by the next deployment, on the same volume.
    docker(&["stop", "--time", "60", &container]);
    env.deploy(&server);
    assert!(container_running(&container), "the deployment started the database again");
    assert_eq!(
        container_volumes(&container).get(&volume).map(String::as_str),
        Some("/var/lib/postgresql/data")
    );
    assert_eq!(
        psql(&container, user, database, PG_CHECKSUM),
        checksum,
        "after docker stop + deploy"
    );
    assert_eq!(
        env.variables_seen_by(&server, "web").get("DATABASE_URL"),
        Some(&url),
        "same credentials"
    );
}

#[test]
fn mariadb_keeps_its_data_through_redeploys_and_a_container_restart() {
    require_image("berth/mariadb:10.11");
    let server = TestServer::start(berth_binary(), Default::default());
    let env = Env::create(&server, "dbmaria");
    // `mysql` is the MySQL-compatible name of MariaDB; '-' becomes '_' in variable names.
    let created = env.create_database(&server, "shop-db", &["--engine", "mysql", "--storage", "2"]);
    assert_eq!((&created["engine"], &created["version"]), (&"mariadb".into(), &"10.11".into()));
    assert_eq!((&created["port"], &created["storage_gb"]), (&3306.into(), &2.into()));
    env.create_worker(&server, "web");
    // An alias at the application's scope.
    env.cli(
        &server,
        &["env-var", "alias"],
        &["--application", "web", "DATABASE_URL=BERTH_DATABASE_SHOP_DB_URL"],
    )
    .expect_success();
    env.deploy(&server);
    let shown = env.show_database(&server, "shop-db");
    assert_owned_database(&server, &env, &shown, "/var/lib/mysql");
    let container = env.container("shop-db");
    let (user, database) =
        (created["user"].as_str().expect("user"), created["database"].as_str().expect("db"));
    assert_eq!((user, database), ("shop_db", "shop_db"));
    let password = container_env(&container, "MARIADB_PASSWORD");
    let seen = env.variables_seen_by(&server, "web");
    let url = format!("mysql://{user}:{password}@shop-db:3306/{database}");
    assert_builtins(&seen, "BERTH_DATABASE_SHOP_DB", &shown, &password, &url);
    assert_eq!(seen.get("DATABASE_URL"), Some(&url));
    // The application reaches MariaDB by its host name: the server greets it.
    let greeting = env.exec(
        &server,
        "web",
        r#"nc -w 5 "$BERTH_DATABASE_SHOP_DB_HOST" "$BERTH_DATABASE_SHOP_DB_PORT" </dev/null | head -c 64 | tr -c 'A-Za-z0-9.-' '.'"#,
    );
    assert!(greeting.contains("MariaDB"), "MariaDB greets the application: {greeting:?}");

    let checksum_sql = "SELECT CONCAT(COUNT(*), ' ', SUM(CRC32(CONCAT(id, ':', body)))) FROM items";
    mariadb(
        &container,
        user,
        database,
        "CREATE TABLE items (id INT PRIMARY KEY, body VARCHAR(64) NOT NULL); \
         INSERT INTO items SELECT seq, MD5(seq) FROM seq_1_to_2000",
    );
    let checksum = mariadb(&container, user, database, checksum_sql);
    assert!(checksum.starts_with("2000 "), "{checksum}");
    let id = container_id(&container);
    for round in 1..=2 {
        env.deploy(&server);
        assert_eq!(container_id(&container), id, "redeploy {round} left the database alone");
        assert_eq!(mariadb(&container, user, database, checksum_sql), checksum);
    }
    docker(&["restart", "--time", "60", &container]);
    let after = wait_for_answer(READY_DEADLINE, "MariaDB after docker restart", || {
        try_mariadb(&container, user, database, checksum_sql)
    });
    assert_eq!(after, checksum, "after docker restart");
    env.deploy(&server);
    assert_eq!(mariadb(&container, user, database, checksum_sql), checksum);
}

#[test]
fn redis_keeps_a_key_the_application_wrote_through_a_container_restart() {
    require_image("berth/redis:7.0");
    let server = TestServer::start(berth_binary(), Default::default());
    let env = Env::create(&server, "dbredis");
    let created = env.create_database(&server, "cache", &["--engine", "redis"]);
    assert_eq!((&created["version"], &created["port"]), (&"7.0".into(), &6379.into()));
    env.create_worker(&server, "web");
    env.deploy(&server);
    let shown = env.show_database(&server, "cache");
    assert_owned_database(&server, &env, &shown, "/data");
    let container = env.container("cache");
    let password = container_env(&container, "REDIS_PASSWORD");
    let seen = env.variables_seen_by(&server, "web");
    assert_builtins(
        &seen,
        "BERTH_DATABASE_CACHE",
        &shown,
        &password,
        &format!("redis://:{password}@cache:6379/0"),
    );

    // The application writes the key itself, over the environment's network, with the
    // injected host, port and password (RESP inline commands through busybox nc).
    let script = r#"printf 'AUTH %s\r\nSET greeting hello-from-web\r\nQUIT\r\n' "$BERTH_DATABASE_CACHE_PASSWORD" | nc -w 5 "$BERTH_DATABASE_CACHE_HOST" "$BERTH_DATABASE_CACHE_PORT" | tr -d '\r'"#;
    assert_eq!(env.exec(&server, "web", script).lines().collect::<Vec<_>>(), ["+OK", "+OK", "+OK"]);
    // Without the password, Redis refuses.
    let anonymous = env.exec(
        &server,
        "web",
        r#"printf 'GET greeting\r\nQUIT\r\n' | nc -w 5 "$BERTH_DATABASE_CACHE_HOST" "$BERTH_DATABASE_CACHE_PORT" | tr -d '\r'"#,
    );
    assert!(anonymous.starts_with("-NOAUTH"), "{anonymous:?}");
    assert_eq!(redis_cli(&container, &["GET", "greeting"]), "hello-from-web");

    let id = container_id(&container);
    env.deploy(&server);
    assert_eq!(container_id(&container), id, "a redeploy left Redis alone");
    docker(&["restart", "--time", "60", &container]);
    let after = wait_for_answer(READY_DEADLINE, "Redis after docker restart", || {
        try_redis_cli(&container, &["GET", "greeting"]).and_then(|value| {
            if value.is_empty() || value.contains("LOADING") {
                Err(value)
            } else {
                Ok(value)
            }
        })
    });
    assert_eq!(after, "hello-from-web", "the key survived docker restart");
    env.deploy(&server);
    let read_back = env.exec(
        &server,
        "web",
        r#"printf 'AUTH %s\r\nGET greeting\r\nQUIT\r\n' "$BERTH_DATABASE_CACHE_PASSWORD" | nc -w 5 "$BERTH_DATABASE_CACHE_HOST" "$BERTH_DATABASE_CACHE_PORT" | tr -d '\r'"#,
    );
    assert!(read_back.contains("hello-from-web"), "the application reads it back: {read_back:?}");
}

#[test]
fn external_postgresql_gives_applications_its_coordinates_and_is_never_touched() {
    require_image("berth/postgres:15");
    let server = TestServer::start(berth_binary(), Default::default());
    let env = Env::create(&server, "dbext");

    // A PostgreSQL that Berth does not run, published on loopback only.
    let external = unique_name("dbext-server");
    let external_password = format!("ext{}", random_uuid().replace('-', ""));
    let mut guard = ContainerGuard::new();
    let port = run_loopback_postgres(&mut guard, &external, &external_password);
    wait_for_answer(READY_DEADLINE, "the external PostgreSQL", || {
        try_psql(
            &external,
            "postgres",
            "postgres",
            "CREATE TABLE IF NOT EXISTS kept (v text); SELECT 1",
        )
    });
    psql(&external, "postgres", "postgres", "INSERT INTO kept VALUES ('untouched')");
    let url = format!("postgresql://postgres:{external_password}@127.0.0.1:{port}/postgres");

    // The URL comes on standard input (kept out of shell history and argv).
    let created = server
        .cli_with_stdin(
            &[
                "database",
                "create",
                "--project",
                &env.project,
                "--environment",
                ENVIRONMENT,
                "legacy",
                "--engine",
                "postgresql",
                "--mode",
                "external",
                "--external-url-stdin",
                "--output",
                "json",
            ],
            &format!("{url}\n"),
        )
        .expect_success();
    assert!(!created.combined().contains(&external_password), "{created}");
    let created = created.json();
    assert_eq!(created["mode"], "external", "{created:#}");
    assert_eq!(created["runtime_status"], "external", "{created:#}");
    assert_eq!(created["storage_gb"], serde_json::Value::Null, "{created:#}");
    assert_eq!(
        (&created["host"], &created["port"]),
        (&"127.0.0.1".into(), &port.parse::<u16>().expect("port").into())
    );
    assert_eq!((&created["user"], &created["database"]), (&"postgres".into(), &"postgres".into()));
    assert_eq!(
        created["url"],
        format!("postgresql://postgres:********@127.0.0.1:{port}/postgres"),
        "the URL is shown masked"
    );

    env.create_worker(&server, "web");
    env.cli(&server, &["env-var", "alias"], &["DATABASE_URL=BERTH_DATABASE_LEGACY_URL"])
        .expect_success();
    env.deploy(&server);
    let seen = env.variables_seen_by(&server, "web");
    assert_builtins(&seen, "BERTH_DATABASE_LEGACY", &created, &external_password, &url);
    assert_eq!(seen.get("DATABASE_URL"), Some(&url));

    // Berth runs nothing for it and keeps the password only encrypted.
    assert_eq!(container_id(&env.container("legacy")), None);
    let id = created["id"].as_str().expect("id");
    assert!(!volume_exists(&database_volume(id)));
    assert_eq!(labelled_objects(&format!("berth.service={id}")), Vec::<String>::new());
    for output in [
        env.cli(&server, &["database", "show"], &["legacy"]).expect_success(),
        env.cli(&server, &["database", "list", "--output", "json"], &[]).expect_success(),
    ] {
        assert!(!output.combined().contains(&external_password), "{output}");
    }
    assert_eq!(
        files_containing(server.data_dir(), &external_password),
        Vec::<std::path::PathBuf>::new()
    );

    // Deleting it forgets it: the external server and its data stay.
    let deleted = server.cli_within(
        DELETE_DEADLINE,
        &[
            "database",
            "delete",
            "--project",
            &env.project,
            "--environment",
            ENVIRONMENT,
            "legacy",
            "--yes",
        ],
    );
    deleted.expect_success();
    let gone = env.cli(&server, &["database", "show"], &["legacy"]).expect_failure();
    assert!(gone.stderr.contains("does not exist"), "{gone}");
    assert!(container_running(&external), "the external server still runs");
    assert_eq!(psql(&external, "postgres", "postgres", "SELECT v FROM kept"), "untouched");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let server = TestServer::start(berth_binary(), Default::default());
    let env = Env::create(&server, "dbbad");
    env.create_worker(&server, "web");
    env.create_database(&server, "main", &["--engine", "postgresql"]);
    let api_path = format!("/api/v1/projects/{}/environments/{ENVIRONMENT}/databases", env.project);
    let refused = |body: serde_json::Value, status: u16, fragment: &str| {
        let started = Instant::now();
        let response = server.api("POST", &api_path, Some(&body));
        assert_eq!(response.status, status, "{body}: {}", response.body);
        assert!(
            response.body.contains(fragment),
            "{body}: {} should say {fragment:?}",
            response.body
        );
        assert!(started.elapsed() < REFUSAL_DEADLINE, "{body} took {:?}", started.elapsed());
    };

    // Unknown engine: a usage error in the CLI, 422 from the API.
    let cli =
        env.cli(&server, &["database", "create"], &["x", "--engine", "oracle"]).expect_failure();
    assert_eq!(cli.status.code(), Some(2), "{cli}");
    assert!(cli.stderr.contains("[possible values: postgresql, mariadb, mysql, redis]"), "{cli}");
    refused(
        serde_json::json!({"name": "x", "engine": "oracle"}),
        422,
        "use postgresql, mariadb (or mysql) or redis",
    );

    // Version `latest`: refused by its format, before any image is looked for.
    let started = Instant::now();
    let cli = env
        .cli(
            &server,
            &["database", "create"],
            &["x", "--engine", "postgresql", "--version", "latest"],
        )
        .expect_failure();
    assert!(started.elapsed() < REFUSAL_DEADLINE, "took {:?}", started.elapsed());
    assert!(cli.stderr.contains("\"latest\"") && cli.stderr.contains("digits and dots"), "{cli}");
    refused(
        serde_json::json!({"name": "x", "engine": "postgresql", "version": "latest"}),
        422,
        "digits and dots",
    );
    assert!(
        try_docker(&["image", "inspect", "berth/postgres:latest"]).is_err(),
        "nothing was pulled"
    );

    // External without a URL; a URL in container mode; storage for an external database.
    let cli = env
        .cli(
            &server,
            &["database", "create"],
            &["x", "--engine", "postgresql", "--mode", "external"],
        )
        .expect_failure();
    assert!(cli.stderr.contains("an external database needs its URL"), "{cli}");
    refused(
        serde_json::json!({"name": "x", "engine": "redis", "mode": "external"}),
        422,
        "needs its URL",
    );
    let cli = env
        .cli(
            &server,
            &["database", "create"],
            &[
                "x",
                "--engine",
                "redis",
                "--mode",
                "container",
                "--external-url",
                "redis://:pw@cache:6379/0",
            ],
        )
        .expect_failure();
    assert!(cli.stderr.contains("external"), "{cli}");
    refused(
        serde_json::json!({"name": "x", "engine": "redis", "mode": "external", "url": "redis://:pw@h:6379/0", "storage_gb": 2}),
        422,
        "container databases only",
    );
    // A URL of another engine's scheme.
    refused(
        serde_json::json!({"name": "x", "engine": "postgresql", "mode": "external", "url": "mysql://u:p@h:3306/d"}),
        422,
        "postgresql://",
    );

    // Names: one an application has, a duplicate, an invalid one; and an application named
    // like the database.
    let cli =
        env.cli(&server, &["database", "create"], &["web", "--engine", "redis"]).expect_failure();
    assert!(cli.stderr.contains("an application named \"web\" exists"), "{cli}");
    refused(serde_json::json!({"name": "web", "engine": "redis"}), 409, "share one namespace");
    refused(
        serde_json::json!({"name": "main", "engine": "redis"}),
        409,
        "already has a database named",
    );
    refused(serde_json::json!({"name": "Main_DB", "engine": "redis"}), 422, "Main_DB");
    let repo = server.fixture_repo(&worker_files(), "main");
    let url = repo.file_url();
    let cli =
        env.cli(&server, &["application", "create"], &["main", "--git", &url]).expect_failure();
    assert!(cli.stderr.contains("a database named \"main\" exists"), "{cli}");

    // An alias must follow a database's built-in variable.
    let cli = env.cli(&server, &["env-var", "alias"], &["DATABASE_URL=HOME"]).expect_failure();
    assert!(cli.stderr.contains("BERTH_DATABASE_"), "{cli}");

    // Deleting without --yes and without a terminal: refused, nothing deleted.
    let cli = env.cli(&server, &["database", "delete"], &["main"]).expect_failure();
    assert!(cli.stderr.contains("refusing to delete without confirmation: pass --yes"), "{cli}");

    // Nothing changed: one database, one application, nothing in Docker for the project.
    let databases =
        env.cli(&server, &["database", "list", "--output", "json"], &[]).expect_success().json();
    let names: Vec<&str> =
        databases.as_array().expect("a list").iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["main"]);
    assert_eq!(databases[0]["status"], "active");
    let applications =
        env.cli(&server, &["application", "list", "--output", "json"], &[]).expect_success().json();
    assert_eq!(applications.as_array().map(Vec::len), Some(1), "{applications:#}");
    let aliases =
        env.cli(&server, &["env-var", "list", "--output", "json"], &[]).expect_success().json();
    assert_eq!(aliases, serde_json::json!([]), "no variable was set");
    assert_eq!(
        labelled_objects(&format!("berth.project={}", env.project_id(&server))),
        Vec::<String>::new()
    );
}

#[test]
fn deleting_a_database_removes_its_container_and_volume_and_nothing_else() {
    require_image("berth/postgres:15");
    require_image("berth/redis:7.0");
    let server = TestServer::start(berth_binary(), Default::default());
    let doomed = Env::create(&server, "dbdel");
    let created = doomed.create_database(&server, "main", &["--engine", "postgresql"]);
    doomed.create_worker(&server, "web");
    doomed
        .cli(&server, &["env-var", "alias"], &["DATABASE_URL=BERTH_DATABASE_MAIN_URL"])
        .expect_success();
    doomed.deploy(&server);
    // Another project of the same server, with a database of its own and data in it.
    let other = Env::create(&server, "dbkeep");
    let kept = other.create_database(&server, "main", &["--engine", "redis"]);
    other.create_worker(&server, "web");
    other.deploy(&server);
    let (kept_container, kept_volume) =
        (other.container("main"), database_volume(kept["id"].as_str().expect("id")));
    redis_cli(&kept_container, &["SET", "kept", "yes"]);

    // Decoys named like Berth's volumes: one unlabelled, one labelled by another
    // organization (another Berth installation on the same Docker engine).
    let mut decoys = VolumeGuard::new();
    let unlabelled = database_volume(&random_uuid());
    decoys.create(&unlabelled, &[]);
    let foreign = database_volume(&random_uuid());
    let (foreign_org, foreign_project, foreign_env, foreign_db) =
        (random_uuid(), random_uuid(), random_uuid(), random_uuid());
    decoys.create(
        &foreign,
        &[
            ("berth.managed-by", "berth"),
            ("berth.organization", &foreign_org),
            ("berth.project", &foreign_project),
            ("berth.environment", &foreign_env),
            ("berth.service", &foreign_db),
            ("berth.service-kind", "database"),
        ],
    );

    let container = doomed.container("main");
    let volume = database_volume(created["id"].as_str().expect("id"));
    let (user, database) =
        (created["user"].as_str().expect("user"), created["database"].as_str().expect("db"));
    psql(&container, user, database, "CREATE TABLE t (v text); INSERT INTO t VALUES ('precious')");

    // Without --yes and without a terminal: refused, the data is still there.
    let refused = doomed.cli(&server, &["database", "delete"], &["main"]).expect_failure();
    assert!(refused.stderr.contains("pass --yes"), "{refused}");
    assert_eq!(doomed.show_database(&server, "main")["status"], "active");
    assert!(container_running(&container) && volume_exists(&volume));
    assert_eq!(psql(&container, user, database, "SELECT v FROM t"), "precious");

    // With --yes: the CLI waits until the database is gone.
    let deleted = server.cli_within(
        DELETE_DEADLINE,
        &[
            "database",
            "delete",
            "--project",
            &doomed.project,
            "--environment",
            ENVIRONMENT,
            "main",
            "--yes",
        ],
    );
    let deleted = deleted.expect_success();
    assert_eq!(deleted.stdout, "deleted database main\n", "{deleted}");
    let gone = doomed.cli(&server, &["database", "show"], &["main"]).expect_failure();
    assert!(gone.stderr.contains("does not exist"), "{gone}");
    assert_eq!(container_id(&container), None, "the database container is gone");
    assert!(!volume_exists(&volume), "the database volume is gone");
    assert!(
        server.server_log().contains("database deleted with its volume"),
        "the server's log says what it did"
    );

    // The alias that followed it now fails the next deployment with a clear message (the
    // running instance stays); without the alias, the application deploys without it.
    let web_id = doomed
        .cli(&server, &["application", "show"], &["web", "--output", "json"])
        .expect_success()
        .json()["id"]
        .as_str()
        .expect("application id")
        .to_owned();
    let serving = labelled_objects(&format!("berth.service={web_id}"));
    let failed = doomed.cli(&server, &["deploy"], &["--wait"]).expect_failure();
    assert!(
        failed.combined().contains(
            "variable DATABASE_URL follows BERTH_DATABASE_MAIN_URL, which is not a built-in variable"
        ),
        "{failed}"
    );
    assert_eq!(labelled_objects(&format!("berth.service={web_id}")), serving, "nothing changed");
    doomed.cli(&server, &["env-var", "delete"], &["DATABASE_URL"]).expect_success();
    // This deployment also wakes the reconciler once more.
    doomed.deploy(&server);
    let seen = doomed.variables_seen_by(&server, "web");
    assert!(seen.is_empty(), "no database variables are left: {seen:#?}");
    // The decoys and the other project's database are untouched.
    for decoy in [&unlabelled, &foreign] {
        assert!(volume_exists(decoy), "decoy volume {decoy} survived");
    }
    assert!(volume_labels(&unlabelled).is_empty());
    assert_eq!(volume_labels(&foreign).get("berth.organization"), Some(&foreign_org));
    assert!(container_running(&kept_container), "the other project's database still runs");
    assert!(volume_exists(&kept_volume), "the other project's volume survived");
    assert_eq!(redis_cli(&kept_container, &["GET", "kept"]), "yes");
    assert_eq!(other.show_database(&server, "main")["runtime_status"], "running");
    drop(decoys);
    assert!(!volume_exists(&unlabelled) && !volume_exists(&foreign), "decoys cleaned up");
}
