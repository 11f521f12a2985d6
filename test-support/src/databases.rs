//! Helpers for the database end-to-end tests: Berth's names for a database's container
//! and volume, queries run inside a database container with its own client tools
//! (`psql`, `mariadb`, `redis-cli`), a data checksum, waiting until a restarted database
//! answers, and decoy volumes that a test plants and removes itself.
//!
//! Expected flow: a test creates a database with the CLI and deploys its environment, then
//! reads and writes data through [`psql`], [`mariadb`] or [`redis_cli`] (`docker exec` into
//! the database container Berth started), restarts things, and compares checksums.
//!
//! Guarantees: secrets never go through an argument vector: `mariadb` and `redis-cli` read
//! the password from the container's own environment (`MARIADB_PASSWORD`,
//! `REDIS_PASSWORD`, which Berth set), and SQL is passed as a separate argument, never
//! spliced into a shell line. [`VolumeGuard`] removes the volumes it created when dropped,
//! so a failing test leaves no decoy behind.
//!
//! Caveats: everything goes through `/usr/bin/docker` on the local engine; a query that
//! fails panics with its output (use the `try_` forms while a database may still be
//! starting).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{docker, docker_output, ContainerGuard};

/// Berth's name for a database's container: `berth-<project>-<environment>-<database>-db`
/// (each part cut to 20 characters, as `berth-engine::naming` does).
pub fn database_container(project: &str, environment: &str, database: &str) -> String {
    let cut = |s: &str| s.chars().take(20).collect::<String>();
    format!("berth-{}-{}-{}-db", cut(project), cut(environment), cut(database))
}

/// Berth's name for a database's volume: `berth-db-<database id>`.
pub fn database_volume(database_id: &str) -> String {
    format!("berth-db-{database_id}")
}

/// A fresh random UUID (v4) from the kernel, for names a test must not share.
pub fn random_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("read /proc/sys/kernel/random/uuid")
        .trim()
        .to_owned()
}

/// Runs `docker ARGS`; `Ok(stdout)` when it succeeds, `Err(stdout + stderr)` otherwise.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let output = docker_output(args).map_err(|error| format!("cannot run docker: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
    }
}

/// Fails the test, saying how to build it, when a database image is missing (they are
/// built by `scripts/build-base-images.sh --with-databases`).
#[track_caller]
pub fn require_image(image: &str) {
    assert!(
        try_docker(&["image", "inspect", image]).is_ok(),
        "image {image} is missing: run scripts/build-base-images.sh --with-databases"
    );
}

/// The id of container `name`, `None` when there is no such container.
pub fn container_id(name: &str) -> Option<String> {
    try_docker(&["container", "inspect", "--format", "{{.Id}}", name])
        .ok()
        .map(|id| id.trim().to_owned())
}

/// Whether container `name` exists and runs.
pub fn container_running(name: &str) -> bool {
    try_docker(&["container", "inspect", "--format", "{{.State.Running}}", name])
        .is_ok_and(|state| state.trim() == "true")
}

/// The labels of container `name` (panics when it does not exist).
#[track_caller]
pub fn container_labels(name: &str) -> BTreeMap<String, String> {
    let json = try_docker(&["container", "inspect", "--format", "{{json .Config.Labels}}", name])
        .unwrap_or_else(|error| panic!("inspect container {name}: {error}"));
    parse_labels(&json)
}

/// Whether volume `name` exists.
pub fn volume_exists(name: &str) -> bool {
    try_docker(&["volume", "inspect", name]).is_ok()
}

/// The labels of volume `name` (panics when it does not exist).
#[track_caller]
pub fn volume_labels(name: &str) -> BTreeMap<String, String> {
    let json = try_docker(&["volume", "inspect", "--format", "{{json .Labels}}", name])
        .unwrap_or_else(|error| panic!("inspect volume {name}: {error}"));
    parse_labels(&json)
}

/// The volumes mounted in container `name`, as `volume name -> path`.
#[track_caller]
pub fn container_volumes(name: &str) -> BTreeMap<String, String> {
    let listed = try_docker(&[
        "container",
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Name}} {{.Destination}}\n{{end}}",
        name,
    ])
    .unwrap_or_else(|error| panic!("inspect container {name}: {error}"));
    listed
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(volume, _)| !volume.is_empty())
        .map(|(volume, path)| (volume.to_owned(), path.to_owned()))
        .collect()
}

fn parse_labels(json: &str) -> BTreeMap<String, String> {
    match serde_json::from_str::<serde_json::Value>(json.trim()) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(|(key, value)| (key, value.as_str().unwrap_or_default().to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Runs `sql` with `psql` inside a PostgreSQL container as `user` on database `database`,
/// with the password of the container's `POSTGRES_PASSWORD`, unaligned, tuples only,
/// stopping at the first error; output trimmed. It connects over TCP to the container's
/// own network address, not to 127.0.0.1: like the official images, the server trusts
/// loopback and the local socket, and asks for the password on every other address.
pub fn try_psql(container: &str, user: &str, database: &str, sql: &str) -> Result<String, String> {
    try_psql_with_password_from(container, "POSTGRES_PASSWORD", user, database, sql)
}

/// [`try_psql`] with the password taken from the container's variable `password_variable`
/// (e.g. a variable that does not hold the right password, to see a refusal).
pub fn try_psql_with_password_from(
    container: &str,
    password_variable: &str,
    user: &str,
    database: &str,
    sql: &str,
) -> Result<String, String> {
    assert!(
        password_variable
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
        "not a variable name: {password_variable:?}"
    );
    // The script is a constant; the values arrive as positional parameters.
    let script = r#"eval "PGPASSWORD=\"\${$1}\"" && export PGPASSWORD && exec psql -X -h "$HOSTNAME" -v ON_ERROR_STOP=1 -U "$2" -d "$3" -tAc "$4""#;
    try_docker(&[
        "exec",
        container,
        "sh",
        "-c",
        script,
        "sh",
        password_variable,
        user,
        database,
        sql,
    ])
    .map(|out| out.trim().to_owned())
}

/// [`try_psql`], panicking with the output when it fails.
#[track_caller]
pub fn psql(container: &str, user: &str, database: &str, sql: &str) -> String {
    try_psql(container, user, database, sql)
        .unwrap_or_else(|error| panic!("psql in {container}: {sql}\n{error}"))
}

/// Runs `sql` with the `mariadb` client inside a MariaDB container as `user` on
/// `database`, the password read from the container's `MARIADB_PASSWORD`; output trimmed.
pub fn try_mariadb(
    container: &str,
    user: &str,
    database: &str,
    sql: &str,
) -> Result<String, String> {
    // The script is a constant; the values arrive as positional parameters.
    let script =
        r#"MYSQL_PWD="$MARIADB_PASSWORD" exec mariadb -h 127.0.0.1 -u "$1" -N -B -e "$3" "$2""#;
    try_docker(&["exec", container, "sh", "-c", script, "sh", user, database, sql])
        .map(|out| out.trim().to_owned())
}

/// [`try_mariadb`], panicking with the output when it fails.
#[track_caller]
pub fn mariadb(container: &str, user: &str, database: &str, sql: &str) -> String {
    try_mariadb(container, user, database, sql)
        .unwrap_or_else(|error| panic!("mariadb in {container}: {sql}\n{error}"))
}

/// Runs `redis-cli ARGS` inside a Redis container, authenticated with the container's
/// `REDIS_PASSWORD`; output trimmed.
pub fn try_redis_cli(container: &str, args: &[&str]) -> Result<String, String> {
    let script = r#"exec redis-cli --no-auth-warning -a "$REDIS_PASSWORD" "$@""#;
    let mut all = vec!["exec", container, "sh", "-c", script, "sh"];
    all.extend(args);
    try_docker(&all).map(|out| out.trim().to_owned())
}

/// [`try_redis_cli`], panicking with the output when it fails.
#[track_caller]
pub fn redis_cli(container: &str, args: &[&str]) -> String {
    try_redis_cli(container, args)
        .unwrap_or_else(|error| panic!("redis-cli {} in {container}: {error}", args.join(" ")))
}

/// Waits until `query` succeeds (a database that restarts refuses connections for a
/// while) and returns its output; panics after `timeout` with the last error.
#[track_caller]
pub fn wait_for_answer(
    timeout: Duration,
    what: &str,
    mut query: impl FnMut() -> Result<String, String>,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        match query() {
            Ok(answer) => return answer,
            Err(error) if Instant::now() > deadline => {
                panic!("{what}: still failing after {timeout:?}: {error}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Volumes a test creates itself (decoys), removed when dropped.
#[derive(Debug, Default)]
pub struct VolumeGuard {
    names: Vec<String>,
}

impl VolumeGuard {
    pub fn new() -> VolumeGuard {
        VolumeGuard::default()
    }

    /// `docker volume create --label K=V... NAME`, remembered for removal.
    #[track_caller]
    pub fn create(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.names.push(name.to_owned());
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["volume", "create"];
        for pair in &pairs {
            args.extend(["--label", pair.as_str()]);
        }
        args.push(name);
        try_docker(&args).unwrap_or_else(|error| panic!("create volume {name}: {error}"));
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = docker_output(&["volume", "rm", "-f", name]);
        }
    }
}

/// Runs `berth/postgres:15` as container `name` (removed by `guard`) with superuser
/// password `password`, its port published on 127.0.0.1 only: a database Berth does not
/// run, for the external-mode tests. Returns the host port (the server may still be
/// starting: wait for it to answer).
pub fn run_loopback_postgres(guard: &mut ContainerGuard, name: &str, password: &str) -> String {
    let password_env = format!("POSTGRES_PASSWORD={password}");
    guard.run(name, &["-p", "127.0.0.1::5432", "-e", &password_env, "berth/postgres:15"]);
    let published = docker(&["port", name, "5432"]);
    published
        .lines()
        .find_map(|line| line.rsplit_once(':'))
        .map(|(_, port)| port.trim().to_owned())
        .unwrap_or_else(|| panic!("{name} publishes 5432: {published}"))
}
