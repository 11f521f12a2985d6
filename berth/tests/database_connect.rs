//! `berth database connect` and the external-credential check, end to end: a real server,
//! real database containers, and the CLI as a child process.
//!
//! - Tunnels: `connect --no-client` prints a local port; Redis is spoken over it from the
//!   test (AUTH, SET, GET on several connections at once) and the keys are read back
//!   inside the container; PostgreSQL gets several concurrent `psql` sessions through one
//!   tunnel, and the client-running mode runs `psql -c` itself (the password never on its
//!   command line).
//! - Refusals: a wrong token (401), an unknown database (404), a database that is not
//!   running (409), a request without the upgrade headers (422); the CLI names each.
//! - External mode: a wrong password, a missing database and an unreachable port are
//!   refused with messages naming what failed, and nothing is recorded; the right URL is
//!   accepted, and `connect` reaches that server through the API too.
//!
//! Every test has its own server and project; waits are on conditions with deadlines.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use test_support::databases::{
    database_container, psql, random_uuid, redis_cli, require_image, run_loopback_postgres,
    try_psql, wait_for_answer,
};
use test_support::harness::{docker, run_program, unique_name, ContainerGuard, TestServer};

const ENVIRONMENT: &str = "production";
/// How long `connect` may take to print its port.
const TUNNEL_READY_DEADLINE: Duration = Duration::from_secs(30);
const READY_DEADLINE: Duration = Duration::from_secs(90);
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);
/// Sessions opened at the same time through one tunnel.
const CONCURRENT_SESSIONS: usize = 4;

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// A running `berth database connect ... --no-client`, killed (by its pid) on drop.
struct ConnectProcess {
    child: Child,
    port: u16,
    stdout: String,
}

impl ConnectProcess {
    /// Starts `berth database connect --project P --environment production NAME
    /// --no-client EXTRA...` and waits until it printed its port.
    // The child is waited for by `Drop` once it is handed over (or right after the kill).
    #[allow(clippy::zombie_processes)]
    #[track_caller]
    fn start(server: &TestServer, project: &str, name: &str, extra: &[&str]) -> ConnectProcess {
        let mut args = vec![
            "database",
            "connect",
            "--project",
            project,
            "--environment",
            ENVIRONMENT,
            name,
            "--no-client",
        ];
        args.extend(extra);
        // Test harness: the child must stay running while the test talks through it,
        // which the run-to-completion helpers do not model.
        #[allow(clippy::disallowed_methods)]
        let mut command = std::process::Command::new(berth_binary());
        for (variable, _) in std::env::vars_os() {
            if variable.to_string_lossy().starts_with("BERTH_") {
                command.env_remove(variable);
            }
        }
        command
            .args(&args)
            .env("BERTH_URL", server.url())
            .env("BERTH_TOKEN", server.token())
            .env("XDG_CONFIG_HOME", server.scratch_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let (sender, receiver) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + TUNNEL_READY_DEADLINE;
        let mut printed = String::new();
        let mut port = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => {
                    printed.push_str(&line);
                    printed.push('\n');
                    if let Some(number) = line.strip_prefix("port:") {
                        port = Some(number.trim().parse().unwrap());
                    }
                    // The password line is the last of the details.
                    if let (Some(port), true) = (port, line.starts_with("password:")) {
                        return ConnectProcess { child, port, stdout: printed };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let mut stderr = String::new();
                    if let Some(mut err) = child.stderr.take() {
                        let _ = err.read_to_string(&mut stderr);
                    }
                    panic!("connect printed no port:\n{printed}\n--- stderr\n{stderr}");
                }
            }
        }
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for ConnectProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `berth ... --project P --environment production REST...`, with the server's URL and
/// token in the environment (or `token` instead).
fn berth(server: &TestServer, token: &str, args: &[&str]) -> test_support::harness::CliOutput {
    run_program(
        berth_binary(),
        args,
        &server.scratch_dir(),
        &[
            ("BERTH_URL", server.url()),
            ("BERTH_TOKEN", token.to_owned()),
            ("XDG_CONFIG_HOME", server.scratch_dir().display().to_string()),
        ],
        CLIENT_DEADLINE,
    )
}

/// `berth database connect -p P -e production NAME -- CLIENT_ARGS`: the client-running
/// mode (short flags), with the server's token.
fn connect_with_client(
    server: &TestServer,
    project: &str,
    name: &str,
    client_args: &[&str],
) -> test_support::harness::CliOutput {
    let mut args = vec!["database", "connect", "-p", project, "-e", ENVIRONMENT, name, "--"];
    args.extend_from_slice(client_args);
    berth(server, server.token(), &args)
}

/// The credentials endpoint's answer for database `name`.
#[track_caller]
fn credentials(server: &TestServer, project: &str, name: &str) -> serde_json::Value {
    let path = format!(
        "/api/v1/projects/{project}/environments/{ENVIRONMENT}/databases/{name}/credentials"
    );
    let response = server.api("GET", &path, None);
    assert_eq!(response.status, 200, "{response:?}");
    response.json()
}

/// One RESP command over `stream`; the first line of the reply.
fn resp(stream: &mut BufReader<TcpStream>, command: &[&str]) -> String {
    let mut bytes = format!("*{}\r\n", command.len());
    for part in command {
        bytes.push_str(&format!("${}\r\n{part}\r\n", part.len()));
    }
    stream.get_mut().write_all(bytes.as_bytes()).unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    let line = line.trim_end().to_owned();
    // A bulk string: its value is on the next line.
    if line.starts_with('$') && line != "$-1" {
        let mut value = String::new();
        stream.read_line(&mut value).unwrap();
        return value.trim_end().to_owned();
    }
    line
}

/// A raw request to the tunnel endpoint; the status line and the rest of the head+body.
fn raw_tunnel_request(server: &TestServer, path: &str, token: &str, upgrade: bool) -> String {
    let address: SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let upgrade_headers =
        if upgrade { "Connection: Upgrade\r\nUpgrade: berth-database-tunnel\r\n" } else { "" };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n{upgrade_headers}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Creates project, environment and the databases, and deploys them.
fn project_with_databases(server: &TestServer, prefix: &str, databases: &[(&str, &str)]) -> String {
    let project = unique_name(prefix);
    server.create_project_and_environment(&project, ENVIRONMENT);
    for (name, engine) in databases {
        berth(
            server,
            server.token(),
            &[
                "database",
                "create",
                "--project",
                &project,
                "--environment",
                ENVIRONMENT,
                name,
                "--engine",
                engine,
            ],
        )
        .expect_success();
    }
    server
        .cli_within(
            Duration::from_secs(300),
            &["deploy", "--project", &project, "--environment", ENVIRONMENT, "--wait"],
        )
        .expect_success();
    project
}

#[test]
fn redis_and_postgresql_sessions_go_through_the_tunnel() {
    require_image("berth/redis:7.0");
    require_image("berth/postgres:15");
    let server = TestServer::start(berth_binary(), Default::default());
    let project =
        project_with_databases(&server, "dbconn", &[("cache", "redis"), ("main", "postgresql")]);

    // Redis: several connections at once, each authenticating and writing its own key.
    let cache = ConnectProcess::start(&server, &project, "cache", &[]);
    let password = credentials(&server, &project, "cache")["password"].as_str().unwrap().to_owned();
    assert!(!cache.stdout.contains(&password), "hidden without --show-password: {}", cache.stdout);
    assert!(cache.stdout.contains("password: (hidden: add --show-password)"), "{}", cache.stdout);
    let sessions: Vec<_> = (0..CONCURRENT_SESSIONS)
        .map(|index| {
            let (address, password) = (cache.address(), password.clone());
            std::thread::spawn(move || {
                let stream = TcpStream::connect(address).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut stream = BufReader::new(stream);
                assert_eq!(resp(&mut stream, &["PING"]), "-NOAUTH Authentication required.");
                assert_eq!(resp(&mut stream, &["AUTH", &password]), "+OK");
                let (key, value) = (format!("key-{index}"), format!("through-the-tunnel-{index}"));
                assert_eq!(resp(&mut stream, &["SET", &key, &value]), "+OK");
                assert_eq!(resp(&mut stream, &["GET", &key]), value);
            })
        })
        .collect();
    for session in sessions {
        session.join().unwrap();
    }
    let cache_container = database_container(&project, ENVIRONMENT, "cache");
    for index in 0..CONCURRENT_SESSIONS {
        assert_eq!(
            redis_cli(&cache_container, &["GET", &format!("key-{index}")]),
            format!("through-the-tunnel-{index}")
        );
    }
    drop(cache);

    // PostgreSQL: concurrent psql sessions through one tunnel, with the password from the
    // environment as `connect` would pass it.
    let main = ConnectProcess::start(&server, &project, "main", &["--show-password"]);
    let main_credentials = credentials(&server, &project, "main");
    let (user, database, password) = (
        main_credentials["user"].as_str().unwrap().to_owned(),
        main_credentials["database"].as_str().unwrap().to_owned(),
        main_credentials["password"].as_str().unwrap().to_owned(),
    );
    assert!(main.stdout.contains(&format!("password: {password}")), "{}", main.stdout);
    let port = main.port.to_string();
    let psql_through_tunnel = |sql: &str| {
        run_program(
            Path::new("psql"),
            &[
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                &user,
                "-d",
                &database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                sql,
            ],
            &server.scratch_dir(),
            &[("PGPASSWORD", password.clone())],
            CLIENT_DEADLINE,
        )
        .expect_success()
        .stdout
        .trim()
        .to_owned()
    };
    psql_through_tunnel("CREATE TABLE visits (session int)");
    std::thread::scope(|scope| {
        for index in 0..CONCURRENT_SESSIONS {
            let run = &psql_through_tunnel;
            scope.spawn(move || {
                // pg_sleep keeps the sessions open at the same time.
                run(&format!("SELECT pg_sleep(1); INSERT INTO visits VALUES ({index})"));
            });
        }
    });
    let container = database_container(&project, ENVIRONMENT, "main");
    assert_eq!(
        psql(&container, &user, &database, "SELECT count(DISTINCT session) FROM visits"),
        CONCURRENT_SESSIONS.to_string()
    );
    drop(main);

    // The client-running mode: berth runs psql itself, arguments after `--`.
    let ran = berth(
        &server,
        server.token(),
        &[
            "database",
            "connect",
            "--project",
            &project,
            "--environment",
            ENVIRONMENT,
            "main",
            "--",
            "-X",
            "-tAc",
            "SELECT 'rows: ' || count(*) FROM visits",
        ],
    )
    .expect_success();
    assert_eq!(ran.stdout.trim(), format!("rows: {CONCURRENT_SESSIONS}"), "{ran}");
    assert!(!ran.combined().contains(&password), "{ran}");
    // A failing client command is the CLI's exit status.
    let failed = connect_with_client(
        &server,
        &project,
        "main",
        &["-X", "-v", "ON_ERROR_STOP=1", "-c", "SELECT nope"],
    )
    .expect_failure();
    assert!(failed.stderr.contains("nope"), "{failed}");
}

#[test]
fn tunnels_are_refused_clearly() {
    require_image("berth/redis:7.0");
    let server = TestServer::start(berth_binary(), Default::default());
    let project = unique_name("dbconnbad");
    server.create_project_and_environment(&project, ENVIRONMENT);
    berth(
        &server,
        server.token(),
        &["database", "create", "-p", &project, "-e", ENVIRONMENT, "idle", "--engine", "redis"],
    )
    .expect_success();
    let base = format!("/api/v1/projects/{project}/environments/{ENVIRONMENT}/databases");

    // A wrong token: 401 from the API, and the CLI says so.
    let answer = raw_tunnel_request(&server, &format!("{base}/idle/tunnel"), "berth_wrong", true);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let cli = berth(
        &server,
        "berth_wrong",
        &["database", "connect", "-p", &project, "-e", ENVIRONMENT, "idle", "--no-client"],
    )
    .expect_failure();
    assert!(cli.stderr.contains("the API token is not valid"), "{cli}");

    // An unknown database: 404, named.
    let answer = raw_tunnel_request(&server, &format!("{base}/nope/tunnel"), server.token(), true);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains(r#"database \"nope\" does not exist"#), "{answer}");
    let cli = berth(
        &server,
        server.token(),
        &["database", "connect", "-p", &project, "-e", ENVIRONMENT, "nope", "--no-client"],
    )
    .expect_failure();
    assert!(cli.stderr.contains(r#"database "nope" does not exist"#), "{cli}");

    // Not deployed yet: 409 from the tunnel, and the CLI says what to do.
    let answer = raw_tunnel_request(&server, &format!("{base}/idle/tunnel"), server.token(), true);
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
    assert!(answer.contains("is not running"), "{answer}");
    let cli = berth(
        &server,
        server.token(),
        &["database", "connect", "-p", &project, "-e", ENVIRONMENT, "idle", "--no-client"],
    )
    .expect_failure();
    assert!(cli.stderr.contains("is not running (not_deployed)"), "{cli}");
    assert!(cli.stderr.contains("berth deploy"), "{cli}");

    // Without the upgrade headers: 422 that says what to send.
    let answer = raw_tunnel_request(&server, &format!("{base}/idle/tunnel"), server.token(), false);
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    assert!(answer.contains("Upgrade: berth-database-tunnel"), "{answer}");

    // The route and the credentials endpoint are in the OpenAPI document.
    let document = server.api("GET", "/openapi.json", None).json();
    for suffix in ["tunnel", "credentials"] {
        let path = format!(
            "/api/v1/projects/{{project}}/environments/{{environment}}/databases/{{database}}/{suffix}"
        );
        assert!(document["paths"][&path]["get"].is_object(), "{path} documented");
    }
}

#[test]
fn external_credentials_are_checked_before_anything_is_stored() {
    require_image("berth/postgres:15");
    let server = TestServer::start(berth_binary(), Default::default());
    let project = unique_name("dbextcheck");
    server.create_project_and_environment(&project, ENVIRONMENT);

    let external = unique_name("dbextcheck-server");
    let external_password = format!("ext{}", random_uuid().replace('-', ""));
    let mut guard = ContainerGuard::new();
    let port = run_loopback_postgres(&mut guard, &external, &external_password);
    wait_for_answer(READY_DEADLINE, "the external PostgreSQL", || {
        try_psql(&external, "postgres", "postgres", "SELECT 1")
    });
    let create = |name: &str, url: &str| {
        create_external_database(&server, &project, name, "postgresql", url)
    };

    let wrong_password =
        create("legacy", &format!("postgresql://postgres:wrong-pw@127.0.0.1:{port}/postgres"))
            .expect_failure();
    assert!(
        wrong_password
            .stderr
            .contains(&format!(r#"authentication failed for user "postgres" at 127.0.0.1:{port}"#)),
        "{wrong_password}"
    );
    assert!(!wrong_password.combined().contains("wrong-pw"), "{wrong_password}");

    let wrong_database = create(
        "legacy",
        &format!("postgresql://postgres:{external_password}@127.0.0.1:{port}/nope"),
    )
    .expect_failure();
    assert!(
        wrong_database
            .stderr
            .contains(&format!(r#"database "nope" does not exist on 127.0.0.1:{port}"#)),
        "{wrong_database}"
    );
    assert!(!wrong_database.combined().contains(&external_password), "{wrong_database}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let started = Instant::now();
    let unreachable =
        create("legacy", &format!("postgresql://postgres:pw@127.0.0.1:{closed_port}/postgres"))
            .expect_failure();
    assert!(
        unreachable
            .stderr
            .contains(&format!("could not connect to 127.0.0.1:{closed_port} within 5 s")),
        "{unreachable}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "refused quickly");

    // Nothing was recorded by the refusals.
    let listed = berth(
        &server,
        server.token(),
        &["database", "list", "-p", &project, "-e", ENVIRONMENT, "--output", "json"],
    )
    .expect_success();
    assert_eq!(listed.json(), serde_json::json!([]), "{listed}");

    // The right URL is accepted, and the tunnel reaches the external server too.
    create(
        "legacy",
        &format!("postgresql://postgres:{external_password}@127.0.0.1:{port}/postgres"),
    )
    .expect_success();
    let ran = connect_with_client(
        &server,
        &project,
        "legacy",
        &["-X", "-tAc", "SELECT 'external ' || 40 + 2"],
    )
    .expect_success();
    assert_eq!(ran.stdout.trim(), "external 42", "{ran}");
}

/// `berth database create -p P -e production NAME --engine ENGINE --mode external
/// --external-url URL`, with the server's token; the output is returned unchecked.
fn create_external_database(
    server: &TestServer,
    project: &str,
    name: &str,
    engine: &str,
    url: &str,
) -> test_support::harness::CliOutput {
    let args = [
        "database",
        "create",
        "-p",
        project,
        "-e",
        ENVIRONMENT,
        name,
        "--engine",
        engine,
        "--mode",
        "external",
        "--external-url",
        url,
    ];
    berth(server, server.token(), &args)
}

/// The host port `container` publishes its only port on.
#[track_caller]
fn published_port(container: &str) -> String {
    let published = docker(&["port", container]);
    published
        .lines()
        .find_map(|line| line.split_once(" -> ").and_then(|(_, host)| host.rsplit_once(':')))
        .map(|(_, port)| port.trim().to_owned())
        .unwrap_or_else(|| panic!("{container} publishes a port: {published}"))
}

#[test]
fn external_mariadb_and_redis_credentials_are_checked_too() {
    require_image("berth/mariadb:10.11");
    require_image("berth/redis:7.0");
    let server = TestServer::start(berth_binary(), Default::default());
    let project = unique_name("dbextcheck2");
    server.create_project_and_environment(&project, ENVIRONMENT);
    let password = format!("ext{}", random_uuid().replace('-', ""));
    let mut guard = ContainerGuard::new();

    let mariadb = unique_name("dbextcheck-mariadb");
    let environment: Vec<String> = [
        "MARIADB_USER=app".to_owned(),
        format!("MARIADB_PASSWORD={password}"),
        "MARIADB_DATABASE=shop".to_owned(),
        format!("MARIADB_ROOT_PASSWORD={password}"),
    ]
    .into();
    let mut args = vec!["-p", "127.0.0.1::3306"];
    for entry in &environment {
        args.extend(["-e", entry.as_str()]);
    }
    args.push("berth/mariadb:10.11");
    guard.run(&mariadb, &args);
    let redis = unique_name("dbextcheck-redis");
    guard.run(
        &redis,
        &[
            "-p",
            "127.0.0.1::6379",
            "berth/redis:7.0",
            "redis-server",
            "--requirepass",
            &password,
            "--protected-mode",
            "no",
        ],
    );
    wait_for_answer(READY_DEADLINE, "the external MariaDB", || {
        test_support::databases::try_mariadb(&mariadb, "app", "shop", "SELECT 1")
    });
    let (mariadb_port, redis_port) = (published_port(&mariadb), published_port(&redis));
    let create = |name: &str, engine: &str, url: &str| {
        create_external_database(&server, &project, name, engine, url)
    };

    let refused =
        create("shop", "mariadb", &format!("mysql://app:wrong-pw@127.0.0.1:{mariadb_port}/shop"))
            .expect_failure();
    assert!(
        refused.stderr.contains(&format!(
            r#"authentication failed for user "app" at 127.0.0.1:{mariadb_port}"#
        )),
        "{refused}"
    );
    let refused =
        create("shop", "mariadb", &format!("mysql://app:{password}@127.0.0.1:{mariadb_port}/nope"))
            .expect_failure();
    // MariaDB answers "access denied" for a database the user may not see.
    assert!(
        refused.stderr.contains(r#"database "nope" does not exist"#)
            || refused.stderr.contains(r#"authentication failed for user "app""#),
        "{refused}"
    );
    assert!(!refused.combined().contains(&password), "{refused}");
    let refused = create("cache", "redis", &format!("redis://:wrong-pw@127.0.0.1:{redis_port}/0"))
        .expect_failure();
    assert!(
        refused.stderr.contains(&format!(
            r#"authentication failed for user "default" at 127.0.0.1:{redis_port}"#
        )),
        "{refused}"
    );
    let listed = berth(
        &server,
        server.token(),
        &["database", "list", "-p", &project, "-e", ENVIRONMENT, "--output", "json"],
    )
    .expect_success();
    assert_eq!(listed.json(), serde_json::json!([]), "nothing recorded: {listed}");

    create("shop", "mariadb", &format!("mysql://app:{password}@127.0.0.1:{mariadb_port}/shop"))
        .expect_success();
    create("cache", "redis", &format!("redis://:{password}@127.0.0.1:{redis_port}/0"))
        .expect_success();
}
