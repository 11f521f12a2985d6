//! Database backups, restores, clones and final backups, end to end, through the CLI of a
//! real server and the local Docker engine, for PostgreSQL, MariaDB and Redis (one test
//! each, the same script):
//!
//! 1. An environment holding only the database deploys; data is written with the engine's
//!    own client inside the container.
//! 2. `database backup`: the file is at the path printed, 0600, of the size and SHA-256
//!    recorded; `database backups` lists it.
//! 3. The data is dropped and a table (key) created after the backup; `restore` without
//!    `--yes` (no terminal) is refused and changes nothing; `restore --yes` brings the data
//!    back exactly, and the table (key) created since is gone.
//! 4. A damaged backup (one byte flipped in the file at the printed path): the restore is
//!    refused with the checksum message and the data is untouched.
//! 5. `database clone`: the copy runs with its own volume and a different password, holds
//!    the source's data; a write to the copy does not reach the source, and the reverse.
//!    (PostgreSQL also clones into another, never deployed, environment.)
//! 6. `database delete --final-backup --yes`: the final backup file stays at the path the
//!    answer gives, with its recorded checksum; the container and the volume are gone; the
//!    clone keeps running with its data.
//! 7. The backup records outlive the database: `database backups main` still lists both;
//!    a new `main` of another engine refuses them (PostgreSQL's test); a new `main` of the
//!    same engine restores the final backup, holding exactly the deleted database's data.
//!
//! Every test has its own server and a unique project name, so the three run in parallel;
//! waits are on conditions with deadlines, and the server's drop removes what is left.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::databases::{
    container_id, container_running, database_container, database_volume, mariadb, psql, redis_cli,
    require_image, try_mariadb, try_psql, try_redis_cli, volume_exists,
};
use test_support::environment_containers::container_env;
use test_support::harness::{run_program, unique_name, CliOutput, TestServer};
use test_support::harness_ext::{cli_in, database_json_in};

const ENVIRONMENT: &str = "production";
/// Deleting stops the database gracefully (up to 60 s) before its volume goes.
const DELETE_DEADLINE: Duration = Duration::from_secs(180);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// The SHA-256 of a file, by `sha256sum`.
#[track_caller]
fn sha256_of(path: &Path) -> String {
    let path_text = path.to_str().expect("a UTF-8 path");
    let output = run_program(
        Path::new("/usr/bin/sha256sum"),
        &[path_text],
        Path::new("/"),
        &[],
        Duration::from_secs(60),
    )
    .expect_success();
    output.stdout.split_whitespace().next().expect("a checksum").to_owned()
}

/// Flips every bit of the byte in the middle of the file.
#[track_caller]
fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read the backup file");
    assert!(!bytes.is_empty(), "{} is empty", path.display());
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, bytes).expect("write the backup file");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgresql,
    Mariadb,
    Redis,
}

/// One running database container and the coordinates its client needs.
#[derive(Debug, Clone)]
struct Db {
    container: String,
    user: String,
    database: String,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Postgresql => "postgresql",
            Engine::Mariadb => "mariadb",
            Engine::Redis => "redis",
        }
    }

    fn image(self) -> &'static str {
        match self {
            Engine::Postgresql => "berth/postgres:15",
            Engine::Mariadb => "berth/mariadb:10.11",
            Engine::Redis => "berth/redis:7.0",
        }
    }

    /// The variable of the container's environment that holds its password.
    fn password_variable(self) -> &'static str {
        match self {
            Engine::Postgresql => "POSTGRES_PASSWORD",
            Engine::Mariadb => "MARIADB_PASSWORD",
            Engine::Redis => "REDIS_PASSWORD",
        }
    }

    /// Writes the data the test protects: 1000 rows (or keys of three kinds for Redis).
    #[track_caller]
    fn seed(self, db: &Db) {
        match self {
            Engine::Postgresql => {
                psql(
                    &db.container,
                    &db.user,
                    &db.database,
                    "CREATE TABLE items (id integer PRIMARY KEY, body text NOT NULL); \
                     INSERT INTO items SELECT i, md5(i::text) FROM generate_series(1, 1000) AS i",
                );
            }
            Engine::Mariadb => {
                mariadb(
                    &db.container,
                    &db.user,
                    &db.database,
                    "CREATE TABLE items (id INT PRIMARY KEY, body VARCHAR(64) NOT NULL); \
                     INSERT INTO items SELECT seq, MD5(seq) FROM seq_1_to_1000",
                );
            }
            Engine::Redis => {
                let mut args = vec!["MSET".to_owned()];
                for i in 1..=300 {
                    args.push(format!("item:{i:04}"));
                    args.push(format!("value-{i}"));
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                assert_eq!(redis_cli(&db.container, &args), "OK");
                redis_cli(&db.container, &["RPUSH", "queue", "a", "b", "c"]);
                redis_cli(&db.container, &["HSET", "user:1", "name", "ada", "lang", "en"]);
            }
        }
    }

    /// A fingerprint of all the data: equal fingerprints, equal data. A missing table
    /// gives the client's error (which never equals a fingerprint of data).
    fn fingerprint(self, db: &Db) -> String {
        let answer = match self {
            Engine::Postgresql => try_psql(
                &db.container,
                &db.user,
                &db.database,
                "SELECT count(*) || ' ' || md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM items",
            ),
            Engine::Mariadb => try_mariadb(
                &db.container,
                &db.user,
                &db.database,
                "SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(id, ':', body ORDER BY id SEPARATOR ','))) FROM items",
            ),
            // Four client calls whatever the number of keys (each is a `docker exec`).
            Engine::Redis => try_redis_cli(&db.container, &["KEYS", "*"]).and_then(|keys| {
                let mut keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
                keys.sort_unstable();
                let strings: Vec<&str> =
                    keys.iter().copied().filter(|k| !matches!(*k, "queue" | "user:1")).collect();
                let mut text = keys.join(",");
                if !strings.is_empty() {
                    let mget: Vec<&str> = std::iter::once("MGET").chain(strings).collect();
                    text.push_str(&format!("\n{}", try_redis_cli(&db.container, &mget)?));
                }
                if keys.contains(&"queue") {
                    let list = try_redis_cli(&db.container, &["LRANGE", "queue", "0", "-1"])?;
                    text.push_str(&format!("\nqueue={list}"));
                }
                if keys.contains(&"user:1") {
                    let hash = try_redis_cli(&db.container, &["HGETALL", "user:1"])?;
                    text.push_str(&format!("\nuser:1={hash}"));
                }
                Ok(text)
            }),
        };
        answer.unwrap_or_else(|error| format!("no data: {error}"))
    }

    /// Drops all the data.
    #[track_caller]
    fn wipe(self, db: &Db) {
        match self {
            Engine::Postgresql => {
                psql(&db.container, &db.user, &db.database, "DROP TABLE items");
            }
            Engine::Mariadb => {
                mariadb(&db.container, &db.user, &db.database, "DROP TABLE items");
            }
            Engine::Redis => assert_eq!(redis_cli(&db.container, &["FLUSHALL"]), "OK"),
        }
    }

    /// Adds one row (key) marked `tag` (a constant of this file: letters and '-').
    #[track_caller]
    fn write(self, db: &Db, tag: &str) {
        assert!(tag.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{tag}");
        let sql = format!("INSERT INTO items SELECT max(id) + 1, '{tag}' FROM items");
        match self {
            Engine::Postgresql => {
                psql(&db.container, &db.user, &db.database, &sql);
            }
            Engine::Mariadb => {
                mariadb(&db.container, &db.user, &db.database, &sql);
            }
            Engine::Redis => {
                let key = format!("tag:{tag}");
                assert_eq!(redis_cli(&db.container, &["SET", &key, tag]), "OK");
            }
        }
    }

    /// Creates a table (a key for Redis) that is not in any backup.
    #[track_caller]
    fn create_later(self, db: &Db) {
        match self {
            Engine::Postgresql => {
                psql(&db.container, &db.user, &db.database, "CREATE TABLE later (x integer)");
            }
            Engine::Mariadb => {
                mariadb(&db.container, &db.user, &db.database, "CREATE TABLE later (x INT)");
            }
            Engine::Redis => assert_eq!(redis_cli(&db.container, &["SET", "later", "1"]), "OK"),
        }
        assert!(self.has_later(db), "the later table (key) exists");
    }

    /// Whether the table (key) of `create_later` exists.
    #[track_caller]
    fn has_later(self, db: &Db) -> bool {
        let count = match self {
            Engine::Postgresql => psql(
                &db.container,
                &db.user,
                &db.database,
                "SELECT count(*) FROM pg_tables WHERE tablename = 'later'",
            ),
            Engine::Mariadb => mariadb(
                &db.container,
                &db.user,
                &db.database,
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'later'",
            ),
            Engine::Redis => redis_cli(&db.container, &["EXISTS", "later"]),
        };
        count == "1"
    }

    /// Whether the row (key) marked `tag` is there.
    #[track_caller]
    fn has(self, db: &Db, tag: &str) -> bool {
        let sql = format!("SELECT count(*) FROM items WHERE body = '{tag}'");
        let count = match self {
            Engine::Postgresql => psql(&db.container, &db.user, &db.database, &sql),
            Engine::Mariadb => mariadb(&db.container, &db.user, &db.database, &sql),
            Engine::Redis => redis_cli(&db.container, &["EXISTS", &format!("tag:{tag}")]),
        };
        match count.as_str() {
            "0" => false,
            "1" => true,
            other => panic!("counting {tag} in {}: {other}", db.container),
        }
    }
}

/// One project with environment `production`, and the CLI calls about it.
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

    /// `berth database VERB ... ARGS --output json`, which must succeed.
    #[track_caller]
    fn database_json(&self, server: &TestServer, verb: &str, args: &[&str]) -> serde_json::Value {
        database_json_in(server, &self.project, ENVIRONMENT, verb, args)
    }

    /// The database `record` (as the API shows it) and its container, by Berth's naming.
    fn db(&self, environment: &str, record: &serde_json::Value) -> Db {
        let field = |name: &str| record[name].as_str().expect(name).to_owned();
        Db {
            container: database_container(&self.project, environment, &field("name")),
            user: field("user"),
            database: field("database"),
        }
    }
}

/// A backup as the API shows it, with its file checked against the record: under the
/// database's folder of the backup store, private, of the recorded size and checksum.
#[track_caller]
fn checked_backup(
    server: &TestServer,
    database_id: &str,
    backup: &serde_json::Value,
    reason: &str,
) -> (String, PathBuf) {
    let id = backup["id"].as_str().expect("backup id").to_owned();
    assert_eq!(backup["reason"], reason, "{backup:#}");
    let path = PathBuf::from(backup["path"].as_str().expect("backup path"));
    assert_eq!(
        path.parent(),
        Some(server.data_dir().join("backups").join(database_id).as_path()),
        "{backup:#}"
    );
    let metadata = std::fs::metadata(&path)
        .unwrap_or_else(|error| panic!("the backup file {}: {error}", path.display()));
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "{} is private", path.display());
    assert!(metadata.len() > 0, "{backup:#}");
    assert_eq!(backup["size_bytes"].as_u64(), Some(metadata.len()), "{backup:#}");
    assert_eq!(backup["sha256"].as_str(), Some(sha256_of(&path).as_str()), "{backup:#}");
    (id, path)
}

fn backup_restore_clone_and_final_backup(engine: Engine, prefix: &str) {
    require_image(engine.image());
    let server = TestServer::start(berth_binary(), Default::default());
    let env = Env::create(&server, prefix);

    // 1. An environment with only the database deploys it.
    let created = env.database_json(&server, "create", &["main", "--engine", engine.name()]);
    env.cli(&server, &["deploy"], &["--wait"]).expect_success();
    let source = env.db(ENVIRONMENT, &created);
    let source_id = created["id"].as_str().expect("id").to_owned();
    assert!(container_running(&source.container), "the deployment started {}", source.container);
    engine.seed(&source);
    let original = engine.fingerprint(&source);
    assert!(!original.starts_with("no data"), "{original}");

    // 2. A backup, at the path printed, and listed.
    let backup = env.database_json(&server, "backup", &["main"]);
    assert_eq!(backup["database"], "main", "{backup:#}");
    let (backup_id, backup_path) = checked_backup(&server, &source_id, &backup, "manual");
    let listed = env.cli(&server, &["database", "backups"], &["main"]).expect_success();
    let row = listed
        .stdout
        .lines()
        .find(|line| line.starts_with(&backup_id))
        .unwrap_or_else(|| panic!("backup {backup_id} is listed:\n{listed}"));
    let sha = backup["sha256"].as_str().expect("sha256");
    assert!(row.contains("manual") && row.ends_with(&sha[..12]), "{row}");
    assert!(listed.stdout.starts_with("ID "), "{listed}");

    // 3. Data dropped; a restore without --yes and without a terminal changes nothing; with
    //    --yes the data is back, exactly.
    engine.wipe(&source);
    engine.create_later(&source);
    let wiped = engine.fingerprint(&source);
    assert_ne!(wiped, original);
    let refused = env
        .cli(&server, &["database", "restore"], &["main", "--backup", &backup_id])
        .expect_failure();
    assert!(refused.stderr.contains("refusing to restore without confirmation"), "{refused}");
    assert_eq!(engine.fingerprint(&source), wiped, "nothing was restored");
    let restored = env
        .cli(&server, &["database", "restore"], &["main", "--backup", &backup_id, "--yes"])
        .expect_success();
    assert!(
        restored.stderr.contains("its current data is replaced by the backup's"),
        "the restore is announced: {restored}"
    );
    assert!(
        restored.stdout.starts_with(&format!("restored database main from backup {backup_id}")),
        "{restored}"
    );
    assert_eq!(engine.fingerprint(&source), original, "the restore brought the data back");
    assert!(!engine.has_later(&source), "what was created after the backup is gone");

    // 4. A damaged backup is refused before anything is touched.
    engine.write(&source, "after-restore");
    let current = engine.fingerprint(&source);
    flip_a_byte(&backup_path);
    let damaged = env
        .cli(&server, &["database", "restore"], &["main", "--backup", &backup_id, "--yes"])
        .expect_failure();
    assert!(
        damaged.stderr.contains(&format!(
            "backup {backup_id} is damaged: its checksum does not match the one recorded when it was taken"
        )),
        "{damaged}"
    );
    assert_eq!(engine.fingerprint(&source), current, "a damaged backup changes nothing");

    // 5. A clone: its own container, volume and password, the same data, and isolated
    //    both ways.
    let copy = env.database_json(&server, "clone", &["main", "copy"]);
    assert_eq!((&copy["name"], &copy["engine"]), (&"copy".into(), &engine.name().into()));
    assert_eq!(copy["runtime_status"], "running", "{copy:#}");
    let copy_id = copy["id"].as_str().expect("id").to_owned();
    assert_ne!(copy_id, source_id);
    let clone = env.db(ENVIRONMENT, &copy);
    assert!(container_running(&clone.container), "{} runs", clone.container);
    assert!(volume_exists(&database_volume(&copy_id)), "the clone has its own volume");
    let (source_password, clone_password) = (
        container_env(&source.container, engine.password_variable()),
        container_env(&clone.container, engine.password_variable()),
    );
    assert_ne!(source_password, clone_password, "the clone's password differs");
    assert!(clone_password.len() >= 32, "a strong password");
    assert_eq!(engine.fingerprint(&clone), current, "the clone holds the source's data");
    engine.write(&clone, "on-clone");
    assert!(engine.has(&clone, "on-clone"));
    assert!(!engine.has(&source, "on-clone"), "a write to the clone stays in the clone");
    assert_eq!(engine.fingerprint(&source), current);
    engine.write(&source, "on-source");
    assert!(!engine.has(&clone, "on-source"), "a write to the source stays in the source");
    let clone_data = engine.fingerprint(&clone);

    // PostgreSQL: also into another environment that was never deployed.
    if engine == Engine::Postgresql {
        server
            .cli(&["environment", "create", "--project", &env.project, "staging"])
            .expect_success();
        let staged =
            env.database_json(&server, "clone", &["main", "main", "--to-environment", "staging"]);
        assert_eq!((&staged["environment"], &staged["name"]), (&"staging".into(), &"main".into()));
        let staged_db = env.db("staging", &staged);
        assert!(container_running(&staged_db.container), "{} runs", staged_db.container);
        assert_eq!(engine.fingerprint(&staged_db), engine.fingerprint(&source));
        assert_ne!(
            container_env(&staged_db.container, engine.password_variable()),
            source_password
        );
    }

    // 6. Deleting with a final backup: the file stays, the container and volume go.
    let final_data = engine.fingerprint(&source);
    let deleted = server
        .cli_within(
            DELETE_DEADLINE,
            &[
                "database",
                "delete",
                "--project",
                &env.project,
                "--environment",
                ENVIRONMENT,
                "main",
                "--final-backup",
                "--yes",
                "--output",
                "json",
            ],
        )
        .expect_success();
    let final_backup = deleted.json()["final_backup"].clone();
    assert!(final_backup.is_object(), "the answer names the final backup: {deleted}");
    let (final_id, final_path) = checked_backup(&server, &source_id, &final_backup, "final");
    assert_ne!(final_id, backup_id);
    let gone = env.cli(&server, &["database", "show"], &["main"]).expect_failure();
    assert!(gone.stderr.contains("does not exist"), "{gone}");
    assert_eq!(container_id(&source.container), None, "the database container is gone");
    assert!(!volume_exists(&database_volume(&source_id)), "the database volume is gone");
    assert!(final_path.is_file() && backup_path.is_file(), "the backup files stay");
    // The clone lives on with its own data.
    assert!(container_running(&clone.container));
    assert_eq!(engine.fingerprint(&clone), clone_data);

    // 7. The records outlive the database: still listed, and restorable into a new
    //    database of the same name and engine.
    let listed = env.database_json(&server, "backups", &["main"]);
    let listed_ids: Vec<&str> =
        listed.as_array().expect("a list").iter().filter_map(|b| b["id"].as_str()).collect();
    assert_eq!(listed_ids, [final_id.as_str(), backup_id.as_str()], "newest first: {listed:#}");
    if engine == Engine::Postgresql {
        // Another engine under the same name: the backups are refused, clearly.
        env.database_json(&server, "create", &["main", "--engine", "redis"]);
        let refused = env
            .cli(&server, &["database", "restore"], &["main", "--backup", &final_id, "--yes"])
            .expect_failure();
        assert!(
            refused
                .stderr
                .contains("was taken of a postgresql database; it cannot be restored into redis"),
            "{refused}"
        );
        env.cli(&server, &["database", "delete"], &["main", "--yes"]).expect_success();
        test_support::harness::wait_until(DELETE_DEADLINE, "the redis main is deleted", || {
            !env.cli(&server, &["database", "show"], &["main"]).status.success()
        });
    }
    let again = env.database_json(&server, "create", &["main", "--engine", engine.name()]);
    env.cli(&server, &["deploy"], &["--wait"]).expect_success();
    let recreated = env.db(ENVIRONMENT, &again);
    assert!(container_running(&recreated.container));
    assert_ne!(engine.fingerprint(&recreated), final_data, "the new database starts empty");
    env.cli(&server, &["database", "restore"], &["main", "--backup", &final_id, "--yes"])
        .expect_success();
    assert_eq!(engine.fingerprint(&recreated), final_data, "the deleted database's data is back");
}

#[test]
fn postgresql_backup_restore_clone_and_final_backup() {
    backup_restore_clone_and_final_backup(Engine::Postgresql, "bkpg");
}

#[test]
fn mariadb_backup_restore_clone_and_final_backup() {
    backup_restore_clone_and_final_backup(Engine::Mariadb, "bkmaria");
}

#[test]
fn redis_backup_restore_clone_and_final_backup() {
    backup_restore_clone_and_final_backup(Engine::Redis, "bkredis");
}
