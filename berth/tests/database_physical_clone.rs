//! The online physical clone of PostgreSQL (`berth database clone --method physical`, the
//! default for PostgreSQL), end to end through the CLI of a real server and the local
//! Docker engine:
//!
//! 1. A PostgreSQL database deploys and gets a table of rows (owned by its user).
//! 2. While a loop of reads and writes runs against the source, `database clone main
//!    copy` copies it: the answer says `physical`, no query of the loop failed, and the
//!    source served queries during the clone.
//! 3. The copy holds every row written before the clone; its table belongs to the copy's
//!    own user (the source's role was renamed, not re-created); the source's role, the
//!    temporary role and the source's database name are gone from the copy; the source
//!    has no replication slot left.
//! 4. Credentials: a different, strong password; the source's credentials (its user, or
//!    the copy's user, with the source's password) are refused by the copy, tried from the
//!    source's container over the environment's network, as an application would.
//! 5. Isolation both ways: a write to the copy does not reach the source and the reverse.
//! 6. `--method dump` still works for PostgreSQL; `--method physical` for Redis is refused
//!    with a clear message and creates nothing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use test_support::databases::{
    container_running, database_container, database_volume, psql, require_image, try_docker,
    try_psql, volume_exists,
};
use test_support::environment_containers::container_env;
use test_support::harness::{unique_name, CliOutput, TestServer};
use test_support::harness_ext::{cli_in, database_json_in};

const ENVIRONMENT: &str = "production";

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// A database as the API shows it, and its container by Berth's naming.
struct Db {
    container: String,
    user: String,
    database: String,
}

fn db(project: &str, record: &serde_json::Value) -> Db {
    let field = |name: &str| record[name].as_str().unwrap().to_owned();
    Db {
        container: database_container(project, ENVIRONMENT, &field("name")),
        user: field("user"),
        database: field("database"),
    }
}

fn sql(db: &Db, statement: &str) -> String {
    psql(&db.container, &db.user, &db.database, statement)
}

/// From inside `from`'s container, connects over the environment's network to `host` as
/// `user` with `from`'s own POSTGRES_PASSWORD: what an application still holding the
/// source's credentials would do.
fn try_with_source_password(
    from: &str,
    host: &str,
    user: &str,
    database: &str,
) -> Result<String, String> {
    let script =
        r#"PGPASSWORD="$POSTGRES_PASSWORD" exec psql -X -h "$1" -U "$2" -d "$3" -tAc 'SELECT 1'"#;
    try_docker(&["exec", from, "sh", "-c", script, "sh", host, user, database])
}

struct Project {
    name: String,
}

impl Project {
    fn cli(&self, server: &TestServer, verb: &[&str], rest: &[&str]) -> CliOutput {
        cli_in(server, &self.name, ENVIRONMENT, verb, rest)
    }

    #[track_caller]
    fn database_json(&self, server: &TestServer, verb: &str, args: &[&str]) -> serde_json::Value {
        database_json_in(server, &self.name, ENVIRONMENT, verb, args)
    }
}

#[test]
fn postgresql_physical_clone_is_online_consistent_isolated_and_has_new_credentials() {
    require_image("berth/postgres:15");
    require_image("berth/redis:7.0");
    let server = TestServer::start(berth_binary(), Default::default());
    let project = Project { name: unique_name("physclone") };
    server.create_project_and_environment(&project.name, ENVIRONMENT);

    // 1. The source, with rows owned by its user.
    let created = project.database_json(&server, "create", &["main", "--engine", "postgresql"]);
    project.cli(&server, &["deploy"], &["--wait"]).expect_success();
    let source = db(&project.name, &created);
    assert!(container_running(&source.container));
    sql(
        &source,
        "CREATE TABLE items (id bigserial PRIMARY KEY, tag text NOT NULL, payload text NOT NULL);
         INSERT INTO items (tag, payload) SELECT 'seed', repeat(md5(i::text), 8) FROM generate_series(1, 50000) i;
         CREATE TABLE traffic (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());",
    );
    let seed_fingerprint = "SELECT count(*) || ':' || md5(string_agg(id || tag || payload, ',' ORDER BY id)) FROM items";
    let seeded = sql(&source, seed_fingerprint);
    assert!(seeded.starts_with("50000:"), "{seeded}");

    // 2. The clone, while the source serves a loop of writes and reads.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = std::thread::spawn({
        let stop = stop.clone();
        let (container, user, database) =
            (source.container.clone(), source.user.clone(), source.database.clone());
        move || {
            let (mut served, mut failures) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let sql = "INSERT INTO traffic DEFAULT VALUES; SELECT count(*) FROM traffic";
                match try_psql(&container, &user, &database, sql) {
                    Ok(_) => served += 1,
                    Err(error) => failures.push(error),
                }
            }
            (served, failures)
        }
    });
    // The loop is running before the clone starts.
    test_support::harness::wait_until(Duration::from_secs(30), "the traffic loop to write", || {
        sql(&source, "SELECT count(*) FROM traffic") != "0"
    });
    let before_clone: i64 = sql(&source, "SELECT count(*) FROM traffic").parse().unwrap();
    let cloned = project.cli(&server, &["database", "clone"], &["main", "copy"]).expect_success();
    let during_clone: i64 = sql(&source, "SELECT count(*) FROM traffic").parse().unwrap();
    stop.store(true, Ordering::SeqCst);
    let (served, failures) = traffic.join().unwrap();
    assert!(failures.is_empty(), "the source refused queries during the clone: {failures:#?}");
    assert!(
        served >= 2 && during_clone > before_clone,
        "the source served writes during the clone"
    );
    assert!(cloned.stderr.contains("with the physical method"), "the method is reported: {cloned}");
    assert!(cloned.stdout.starts_with("cloned database main into copy"), "{cloned}");

    let copy = project.database_json(&server, "show", &["copy"]);
    assert_eq!(copy["runtime_status"], "running", "{copy:#}");
    let clone = db(&project.name, &copy);
    assert!(container_running(&clone.container), "{} runs", clone.container);
    assert!(volume_exists(&database_volume(copy["id"].as_str().unwrap())));

    // 3. The same rows, owned by the copy's own user; nothing of the source's identity left.
    assert_ne!((&clone.user, &clone.database), (&source.user, &source.database));
    assert_eq!(sql(&clone, seed_fingerprint), seeded, "the clone holds the source's rows");
    let copied_traffic: i64 = sql(&clone, "SELECT count(*) FROM traffic").parse().unwrap();
    assert!(copied_traffic >= before_clone, "writes made before the clone are in it");
    assert_eq!(
        sql(&clone, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'"),
        clone.user
    );
    assert_eq!(
        sql(&clone, "SELECT current_user || ' ' || current_database()"),
        format!("{} {}", clone.user, clone.database)
    );
    let leftover_roles = format!(
        "SELECT count(*) FROM pg_roles WHERE rolname IN ('{}', 'berth_clone_recredential')",
        source.user
    );
    assert_eq!(sql(&clone, &leftover_roles), "0", "only the copy's own role is left");
    let old_database =
        format!("SELECT count(*) FROM pg_database WHERE datname = '{}'", source.database);
    assert_eq!(sql(&clone, &old_database), "0");
    assert_eq!(
        sql(&source, "SELECT count(*) FROM pg_replication_slots"),
        "0",
        "no slot left on the source"
    );
    assert_eq!(sql(&clone, "SELECT pg_is_in_recovery()"), "f", "the copy is a primary");

    // 4. New credentials; the source's do not open the copy.
    let (source_password, clone_password) = (
        container_env(&source.container, "POSTGRES_PASSWORD"),
        container_env(&clone.container, "POSTGRES_PASSWORD"),
    );
    assert_ne!(source_password, clone_password);
    assert!(clone_password.len() >= 32, "a strong password");
    assert_eq!(
        try_with_source_password(&source.container, "main", &source.user, &source.database)
            .map(|s| s.trim().to_owned()),
        Ok("1".to_owned()),
        "the check itself works against the source"
    );
    for user in [&source.user, &clone.user] {
        let refused = try_with_source_password(&source.container, "copy", user, &clone.database)
            .expect_err("the source's password must not open the copy");
        assert!(refused.contains("password authentication failed"), "{refused}");
    }

    // 5. Isolated both ways.
    sql(&clone, "INSERT INTO items (tag, payload) VALUES ('on-clone', '')");
    sql(&source, "INSERT INTO items (tag, payload) VALUES ('on-source', '')");
    let count =
        |db: &Db, tag: &str| sql(db, &format!("SELECT count(*) FROM items WHERE tag = '{tag}'"));
    assert_eq!((count(&clone, "on-clone"), count(&source, "on-clone")), ("1".into(), "0".into()));
    assert_eq!((count(&source, "on-source"), count(&clone, "on-source")), ("1".into(), "0".into()));

    // 6. The dump method on request; physical refused for Redis, creating nothing.
    let dumped = project.database_json(&server, "clone", &["main", "dumped", "--method", "dump"]);
    assert_eq!(dumped["clone_method"], "dump", "{dumped:#}");
    let dumped_db = db(&project.name, &dumped);
    assert_eq!(sql(&dumped_db, "SELECT count(*) FROM items WHERE tag = 'seed'"), "50000");
    project.database_json(&server, "create", &["cache", "--engine", "redis"]);
    let refused = project
        .cli(&server, &["database", "clone"], &["cache", "cache-copy", "--method", "physical"])
        .expect_failure();
    assert!(
        refused.stderr.contains("the physical clone method is for PostgreSQL only")
            && refused.stderr.contains("--method dump"),
        "{refused}"
    );
    let listed = project.cli(&server, &["database", "list"], &[]).expect_success();
    assert!(!listed.stdout.contains("cache-copy"), "nothing was created:\n{listed}");
}
