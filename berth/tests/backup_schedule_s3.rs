//! Scheduled backups, retention, the S3-compatible backup store and crash safety of the
//! scheduler, end to end through the CLI of a real server and the local Docker engine.
//!
//! The S3 store is tested against moto, a local S3-compatible server (PyPI's `moto[server]`,
//! installed by `BERTH_SETUP_TEST_TOOLS=1 scripts/setup-host.sh` into
//! /opt/berth-test-tools/moto). The test starts its own moto server on a free loopback
//! port, owns its process and kills it at the end; without moto the test fails and says how
//! to install it. The bucket's content is checked with boto3 from moto's environment,
//! independently of Berth's S3 client.
//!
//! 1. `s3_store_schedule_retention_restore_and_delete` (PostgreSQL): a bad cron expression
//!    is refused and nothing is created; a schedule every 3 s with retention 2 keeps
//!    exactly the newest 2 scheduled backups (older ones leave the list and the bucket);
//!    a manual backup is kept when the schedule stops and retention drops to 1; the bucket
//!    holds exactly the listed backups, of their sizes; a restore from S3 leaves exactly
//!    the backup's data; `backup-delete` asks for confirmation, then removes the object.
//!    Before that, a server pointed at a missing bucket (or without one) refuses to start
//!    and says why.
//! 2. `a_slot_missed_while_the_server_was_down_runs_once` (Redis, local store): the server
//!    is killed (SIGKILL) and kept down across at least two slots; at start one backup is
//!    taken for the latest slot due, none for the slots in between, and no slot is ever
//!    backed up twice.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::databases::{database_container, psql, redis_cli, require_image};
use test_support::harness::{
    free_loopback_address, run_program, unique_name, wait_for, wait_until, CliOutput, TestServer,
};
use test_support::harness_ext::RestartableServer;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const ENVIRONMENT: &str = "production";
const MOTO_DIR: &str = "/opt/berth-test-tools/moto";
const BUCKET: &str = "berth-backups";
const ACCESS_KEY_ID: &str = "berth-test-key";
const SECRET_ACCESS_KEY: &str = "berth-test-secret";
/// Long enough for several 3-second slots on a loaded 2-core machine.
const SCHEDULE_DEADLINE: Duration = Duration::from_secs(120);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// moto, a local S3-compatible server, started by this test on a free loopback port and
/// killed (by its pid, our child) when dropped.
struct Moto {
    child: Child,
    address: SocketAddr,
    _log_dir: tempfile::TempDir,
}

impl Moto {
    #[track_caller]
    fn start() -> Moto {
        let server = Path::new(MOTO_DIR).join("bin/moto_server");
        assert!(
            server.is_file(),
            "moto, the local S3-compatible server this test runs against, is missing at {}: \
             install it with `BERTH_SETUP_TEST_TOOLS=1 scripts/setup-host.sh`",
            server.display()
        );
        let log_dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(log_dir.path().join("moto.log")).unwrap();
        let address = free_loopback_address();
        // Dev-only: the test owns this server process (berth-process is the product's
        // subprocess helper and does not model long-running children).
        #[allow(clippy::disallowed_methods)]
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &address.port().to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", server.display()));
        let moto = Moto { child, address, _log_dir: log_dir };
        wait_until(Duration::from_secs(60), "moto answers on its port", || {
            TcpStream::connect_timeout(&moto.address, Duration::from_millis(200)).is_ok()
        });
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Runs a Python snippet with boto3 pointed at this moto server; its stdout.
    #[track_caller]
    fn boto3(&self, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='{ACCESS_KEY_ID}', aws_secret_access_key='{SECRET_ACCESS_KEY}')\n{code}",
            self.endpoint()
        );
        let python = Path::new(MOTO_DIR).join("bin/python");
        run_program(&python, &["-c", &script], Path::new("/"), &[], Duration::from_secs(60))
            .expect_success()
            .stdout
    }

    #[track_caller]
    fn create_bucket(&self, bucket: &str) {
        self.boto3(&format!("s3.create_bucket(Bucket='{bucket}')"));
    }

    /// The bucket's objects: key → size.
    #[track_caller]
    fn objects(&self, bucket: &str) -> BTreeMap<String, u64> {
        let listed = self.boto3(&format!(
            "for page in s3.get_paginator('list_objects_v2').paginate(Bucket='{bucket}'):\n    \
             for o in page.get('Contents', []):\n        print(o['Key'], o['Size'])"
        ));
        listed
            .lines()
            .filter_map(|line| line.rsplit_once(' '))
            .map(|(key, size)| (key.to_owned(), size.parse().unwrap()))
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `berth VERB... --project P --environment production REST...`.
fn cli(server: &TestServer, project: &str, verb: &[&str], rest: &[&str]) -> CliOutput {
    let mut args = verb.to_vec();
    args.extend(["--project", project, "--environment", ENVIRONMENT]);
    args.extend(rest);
    server.cli(&args)
}

#[track_caller]
fn cli_json(server: &TestServer, project: &str, verb: &[&str], rest: &[&str]) -> serde_json::Value {
    let mut rest = rest.to_vec();
    rest.extend(["--output", "json"]);
    cli(server, project, verb, &rest).expect_success().json()
}

#[track_caller]
fn backups(server: &TestServer, project: &str, name: &str) -> Vec<serde_json::Value> {
    cli_json(server, project, &["database", "backups"], &[name]).as_array().unwrap().clone()
}

fn with_reason<'a>(backups: &'a [serde_json::Value], reason: &str) -> Vec<&'a serde_json::Value> {
    backups.iter().filter(|b| b["reason"] == reason).collect()
}

fn text(value: &serde_json::Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value:#}")).to_owned()
}

/// The backups once no scheduled backup is in flight: two reads in a row agree.
#[track_caller]
fn settled_backups(server: &TestServer, project: &str, name: &str) -> Vec<serde_json::Value> {
    let mut previous = backups(server, project, name);
    wait_for(Duration::from_secs(60), "the list of backups settles", || {
        let current = backups(server, project, name);
        let same = current == previous;
        previous = current.clone();
        same.then_some(current)
    })
}

/// `s3://bucket/key` → key.
fn object_key(backup: &serde_json::Value) -> String {
    let path = text(backup, "path");
    path.strip_prefix(&format!("s3://{BUCKET}/"))
        .unwrap_or_else(|| panic!("the backup is in the bucket: {backup:#}"))
        .to_owned()
}

#[test]
fn s3_store_schedule_retention_restore_and_delete() {
    require_image("berth/postgres:15");
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let endpoint = moto.endpoint();

    // A bucket that does not exist, or a missing setting: the server refuses to start and
    // says what is wrong.
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let (listen, proxy_listen) =
        (free_loopback_address().to_string(), free_loopback_address().to_string());
    let refused_start = |extra: &[&str]| {
        let mut args = vec![
            "server",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--listen",
            &listen,
            "--proxy-listen",
            &proxy_listen,
            "--backup-store",
            "s3",
            "--s3-endpoint",
            &endpoint,
            "--s3-access-key-id",
            ACCESS_KEY_ID,
            "--s3-secret-access-key",
            SECRET_ACCESS_KEY,
        ];
        args.extend(extra);
        run_program(berth_binary(), &args, scratch.path(), &[], Duration::from_secs(60))
            .expect_failure()
    };
    let no_bucket = refused_start(&["--s3-bucket", "no-such-bucket"]);
    assert!(
        no_bucket.stderr.contains("has no bucket \"no-such-bucket\"; create it first"),
        "{no_bucket}"
    );
    assert!(!no_bucket.stderr.contains(SECRET_ACCESS_KEY), "{no_bucket}");
    let unnamed = refused_start(&[]);
    assert!(unnamed.stderr.contains("--backup-store s3 needs --s3-bucket BUCKET"), "{unnamed}");
    assert!(!data_dir.join("proxy.pid").exists(), "nothing was started");

    let server = RestartableServer::start(
        berth_binary(),
        &[
            "--backup-store",
            "s3",
            "--s3-endpoint",
            &endpoint,
            "--s3-bucket",
            BUCKET,
            "--s3-prefix",
            "tests",
            "--s3-access-key-id",
            ACCESS_KEY_ID,
            "--s3-secret-access-key",
            SECRET_ACCESS_KEY,
        ],
    );
    assert!(!server.server_log().contains(SECRET_ACCESS_KEY), "the secret is never logged");
    let project = unique_name("bks3");
    server.create_project_and_environment(&project, ENVIRONMENT);

    // A bad cron expression: a clear error, nothing created.
    let refused = cli(
        &server,
        &project,
        &["database", "create"],
        &["main", "--engine", "postgresql", "--backup-schedule", "61 * * * *"],
    )
    .expect_failure();
    assert!(refused.stderr.contains("invalid backup schedule \"61 * * * *\""), "{refused}");
    assert!(refused.stderr.contains("\"0 3 * * *\""), "the error shows an example: {refused}");
    let listed = cli_json(&server, &project, &["database", "list"], &[]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "nothing was created: {listed:#}");

    // A valid schedule at creation is shown with its next slot.
    let nightly = cli_json(
        &server,
        &project,
        &["database", "create"],
        &["nightly", "--engine", "redis", "--backup-schedule", "0 3 * * *"],
    );
    assert_eq!(nightly["backup_schedule"], "0 3 * * *", "{nightly:#}");
    assert_eq!(nightly["backup_retention"], 7, "the default retention: {nightly:#}");
    assert!(text(&nightly, "next_backup_at").ends_with("T03:00:00Z"), "{nightly:#}");

    // The database to protect, with data, then a schedule every 3 s keeping 2.
    let created =
        cli_json(&server, &project, &["database", "create"], &["main", "--engine", "postgresql"]);
    cli(&server, &project, &["deploy"], &["--wait"]).expect_success();
    let container = database_container(&project, ENVIRONMENT, "main");
    let (user, database) = (text(&created, "user"), text(&created, "database"));
    psql(
        &container,
        &user,
        &database,
        "CREATE TABLE items (id integer PRIMARY KEY, body text NOT NULL); \
         INSERT INTO items SELECT i, md5(i::text) FROM generate_series(1, 500) AS i",
    );
    let fingerprint_sql =
        "SELECT count(*) || ' ' || md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM items";
    let original = psql(&container, &user, &database, fingerprint_sql);
    let updated = cli_json(
        &server,
        &project,
        &["database", "update"],
        &["main", "--backup-schedule", "*/3 * * * * *", "--backup-retention", "2"],
    );
    assert_eq!(updated["backup_schedule"], "*/3 * * * * *", "{updated:#}");
    // Bad settings are refused with the reason, and change nothing.
    let bad =
        cli(&server, &project, &["database", "update"], &["main", "--backup-schedule", "0 3 * *"])
            .expect_failure();
    assert!(bad.stderr.contains("invalid backup schedule \"0 3 * *\": it has 4 fields"), "{bad}");
    let zero =
        cli(&server, &project, &["database", "update"], &["main", "--backup-retention", "0"])
            .expect_failure();
    assert!(zero.stderr.contains("--backup-retention must be between 1 and"), "{zero}");
    let unknown = cli(&server, &project, &["database", "backups"], &["nope"]).expect_failure();
    assert!(unknown.stderr.contains("database \"nope\" does not exist"), "{unknown}");
    let shown = cli_json(&server, &project, &["database", "show"], &["main"]);
    assert_eq!(
        (&shown["backup_schedule"], &shown["backup_retention"]),
        (&updated["backup_schedule"], &updated["backup_retention"])
    );
    assert_eq!(updated["backup_retention"], 2, "{updated:#}");

    // Scheduled backups come and the oldest go: at least 4 taken, never more than the
    // retention kept (plus one between its record and the retention pass).
    let mut seen = std::collections::BTreeSet::new();
    wait_until(SCHEDULE_DEADLINE, "4 scheduled backups were taken", || {
        let current = backups(&server, &project, "main");
        let scheduled = with_reason(&current, "scheduled");
        assert!(scheduled.len() <= 3, "retention keeps 2: {current:#?}");
        for backup in &scheduled {
            assert_eq!(backup["store"], "s3", "{backup:#}");
            seen.insert(text(backup, "id"));
        }
        seen.len() >= 4 && scheduled.len() == 2
    });

    // A manual backup, kept when the schedule stops and the retention drops to 1.
    let manual = cli_json(&server, &project, &["database", "backup"], &["main"]);
    assert!(text(&manual, "path").starts_with(&format!("s3://{BUCKET}/tests/")), "{manual:#}");
    let stopped = cli_json(
        &server,
        &project,
        &["database", "update"],
        &["main", "--backup-schedule", "none", "--backup-retention", "1"],
    );
    assert!(stopped["backup_schedule"].is_null(), "{stopped:#}");
    let kept = settled_backups(&server, &project, "main");
    assert_eq!(with_reason(&kept, "scheduled").len(), 1, "retention 1: {kept:#?}");
    assert_eq!(with_reason(&kept, "manual").len(), 1, "the manual backup is kept: {kept:#?}");
    let later = settled_backups(&server, &project, "main");
    assert_eq!(later, kept, "no scheduled backup after the schedule stopped");

    // The bucket holds exactly the listed backups, of the recorded sizes.
    let expected: BTreeMap<String, u64> =
        kept.iter().map(|b| (object_key(b), b["size_bytes"].as_u64().unwrap())).collect();
    assert_eq!(moto.objects(BUCKET), expected, "the bucket holds exactly the listed backups");

    // A restore from the S3 store leaves exactly the backup's data.
    let scheduled_id = text(with_reason(&kept, "scheduled")[0], "id");
    psql(
        &container,
        &user,
        &database,
        "DELETE FROM items WHERE id > 10; CREATE TABLE later (x int)",
    );
    assert_ne!(psql(&container, &user, &database, fingerprint_sql), original);
    cli(&server, &project, &["database", "restore"], &["main", "--backup", &scheduled_id, "--yes"])
        .expect_success();
    assert_eq!(psql(&container, &user, &database, fingerprint_sql), original);
    assert_eq!(
        psql(
            &container,
            &user,
            &database,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'later'"
        ),
        "0",
        "the table created after the backup is gone"
    );

    // Deleting the manual backup asks first, then removes its object.
    let manual_id = text(&manual, "id");
    let unconfirmed = cli(&server, &project, &["database", "backup-delete"], &["main", &manual_id])
        .expect_failure();
    assert!(unconfirmed.stderr.contains("without confirmation"), "{unconfirmed}");
    assert!(moto.objects(BUCKET).contains_key(&object_key(&manual)));
    cli(&server, &project, &["database", "backup-delete"], &["main", &manual_id, "--yes"])
        .expect_success();
    let remaining = backups(&server, &project, "main");
    assert!(remaining.iter().all(|b| b["id"] != manual_id.as_str()), "{remaining:#?}");
    assert!(!moto.objects(BUCKET).contains_key(&object_key(&manual)), "its object is gone");
    assert_eq!(moto.objects(BUCKET).len(), 1, "the scheduled backup stays");
}

fn parse_time(value: &serde_json::Value, field: &str) -> OffsetDateTime {
    OffsetDateTime::parse(&text(value, field), &Rfc3339)
        .unwrap_or_else(|error| panic!("{field} of {value:#}: {error}"))
}

#[test]
fn a_slot_missed_while_the_server_was_down_runs_once() {
    require_image("berth/redis:7.0");
    let mut server = RestartableServer::start(berth_binary(), &[]);
    let project = unique_name("bkslot");
    server.create_project_and_environment(&project, ENVIRONMENT);
    cli_json(&server, &project, &["database", "create"], &["cache", "--engine", "redis"]);
    cli(&server, &project, &["deploy"], &["--wait"]).expect_success();
    let container = database_container(&project, ENVIRONMENT, "cache");
    assert_eq!(redis_cli(&container, &["SET", "k", "v"]), "OK");
    cli_json(
        &server,
        &project,
        &["database", "update"],
        &["cache", "--backup-schedule", "*/4 * * * * *", "--backup-retention", "100"],
    );
    wait_until(SCHEDULE_DEADLINE, "a first scheduled backup", || {
        !with_reason(&backups(&server, &project, "cache"), "scheduled").is_empty()
    });
    // SIGKILL: no chance to finish anything. Then stay down across at least two slots
    // (the outage itself is what is tested, so this waits on the clock).
    let killed_at = OffsetDateTime::now_utc();
    server.kill_hard();
    let down_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < down_until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let restarted_at = OffsetDateTime::now_utc();
    server.start_again(&[]);
    wait_until(SCHEDULE_DEADLINE, "the missed slot is backed up at start", || {
        with_reason(&backups(&server, &project, "cache"), "scheduled")
            .iter()
            .any(|b| parse_time(b, "created_at") > restarted_at)
    });
    cli_json(&server, &project, &["database", "update"], &["cache", "--backup-schedule", "none"]);
    let settled = settled_backups(&server, &project, "cache");
    let scheduled = with_reason(&settled, "scheduled");
    let slots: Vec<OffsetDateTime> =
        scheduled.iter().map(|b| parse_time(b, "scheduled_slot")).collect();
    let unique: std::collections::BTreeSet<&OffsetDateTime> = slots.iter().collect();
    assert_eq!(unique.len(), slots.len(), "no slot is backed up twice: {settled:#?}");
    // The last slot backed up before the kill; every slot after it up to the restart was
    // missed (at least two, 4 s apart in a 10 s outage).
    let last_before = scheduled
        .iter()
        .filter(|b| parse_time(b, "created_at") < killed_at)
        .map(|b| parse_time(b, "scheduled_slot"))
        .max()
        .expect("a backup before the kill");
    // The first backup after the restart is for the latest slot due when the scheduler
    // started (the missed ones, or one just after): none of the slots in between ran.
    let caught_up = scheduled
        .iter()
        .filter(|b| parse_time(b, "created_at") > restarted_at)
        .min_by_key(|b| parse_time(b, "created_at"))
        .expect("a backup after the restart");
    let caught_up_slot = parse_time(caught_up, "scheduled_slot");
    assert!(
        caught_up_slot - last_before >= time::Duration::seconds(8),
        "at least two slots were missed between {last_before} and {caught_up_slot}"
    );
    let replayed: Vec<&OffsetDateTime> =
        slots.iter().filter(|slot| **slot > last_before && **slot < caught_up_slot).collect();
    assert!(
        replayed.is_empty(),
        "the missed slots ran once, together, not one by one: {replayed:?}\n{settled:#?}"
    );
    assert!(
        parse_time(caught_up, "created_at") - restarted_at < time::Duration::seconds(20),
        "it ran at start: {caught_up:#}"
    );
}
