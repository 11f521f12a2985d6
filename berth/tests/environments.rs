//! Whole-environment actions and clones, end to end, through the CLI of a real server,
//! the edge proxy and the local Docker engine:
//!
//! - stop / start / redeploy / delete: a stopped environment keeps its containers (not
//!   running), its database rows and its volume files; its host answers 503 and a deploy is
//!   refused with the command that fixes it; start brings it back (served, same data);
//!   redeploy queues a new deployment; delete without `--yes` (no terminal) changes nothing;
//!   with `--yes --final-backup` its database is backed up first (the file stays) and
//!   nothing labelled for the environment remains, while decoys survive (an
//!   unmanaged volume carrying its id, another environment of the same project that keeps
//!   serving).
//! - clone without data: the configuration is equal (applications, variables of every scope,
//!   the secret, the alias), the database gets new credentials and the alias follows them,
//!   the clone is served on its own host with an empty database and volume; from inside the
//!   clone's application container, its own database answers while the source's database is
//!   unreachable by name and by IP (isolation). Clone with data: rows and volume files are
//!   copied, and writing to the clone leaves the source unchanged. A clone that fails
//!   part-way (a foreign container stands where its database must start) says why and
//!   leaves nothing behind; a stopped source refuses `--with-data` before creating anything.
//!
//! Every test has its own server and unique project names; waits are on conditions with
//! deadlines.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::databases::{
    container_running, database_container, psql, try_docker, try_psql, VolumeGuard,
};
use test_support::environment_containers::{
    application_container, container_env, container_ip, postgres_answer_from,
};
use test_support::harness::{
    as_pairs, docker, files_in, labelled_objects, unique_name, wait_for, CliOutput, ContainerGuard,
    ServerOptions, TestServer,
};

/// Deleting stops the database gracefully before its volume goes.
const DELETE_DEADLINE: Duration = Duration::from_secs(180);
const SERVE_DEADLINE: Duration = Duration::from_secs(60);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The id of an environment, from `environment list --output json`.
fn environment_field(server: &TestServer, project: &str, environment: &str, field: &str) -> String {
    let listed = server
        .cli(&["environment", "list", "--project", project, "--output", "json"])
        .expect_success()
        .json();
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == environment)
        .unwrap_or_else(|| panic!("no environment {environment} in {listed}"))[field]
        .as_str()
        .unwrap()
        .to_owned()
}

fn exec(container: &str, script: &str) -> String {
    docker(&["exec", container, "sh", "-c", script])
}

/// One project with environment `production` holding the `env-page` application `web`
/// (volume `data:/data`) and the PostgreSQL database `main`.
struct Project {
    name: String,
}

impl Project {
    fn create(server: &TestServer, prefix: &str) -> Project {
        let name = unique_name(prefix);
        server.create_project_and_environment(&name, "production");
        Project { name }
    }

    fn cli(&self, server: &TestServer, args: &[&str]) -> CliOutput {
        let mut full = args.to_vec();
        full.extend(["--project", &self.name]);
        server.cli(&full)
    }

    fn add_web(&self, server: &TestServer, environment: &str) {
        let repo = server.fixture_repo(&as_pairs(&files_in(&fixture("env-page"))), "main");
        self.cli(
            server,
            &[
                "application",
                "create",
                "--environment",
                environment,
                "web",
                "--git",
                &repo.file_url(),
                "--port",
                "8080",
                "--volume",
                "data:/data",
                "--drain",
                "0",
            ],
        )
        .expect_success();
    }

    fn add_database(&self, server: &TestServer, environment: &str) {
        self.cli(
            server,
            &["database", "create", "--environment", environment, "main", "--engine", "postgresql"],
        )
        .expect_success();
    }

    fn deploy(&self, server: &TestServer, environment: &str) {
        self.cli(server, &["deploy", "--environment", environment, "--wait"]).expect_success();
    }

    fn database(&self, environment: &str) -> String {
        database_container(&self.name, environment, "main")
    }

    fn application_id(&self, server: &TestServer, environment: &str) -> String {
        let shown = self
            .cli(
                server,
                &["application", "show", "--environment", environment, "web", "--output", "json"],
            )
            .expect_success()
            .json();
        shown["id"].as_str().unwrap().to_owned()
    }

    fn host(&self, server: &TestServer, environment: &str) -> String {
        server.app_host(&self.name, environment, "web")
    }

    fn wait_served(&self, server: &TestServer, environment: &str) -> String {
        let host = self.host(server, environment);
        wait_for(SERVE_DEADLINE, &format!("{host} serves 200"), || {
            server.try_proxy_get(&host, "/").ok().filter(|r| r.status == 200).map(|r| r.body)
        })
    }
}

#[test]
fn stop_start_redeploy_and_delete_an_environment() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = Project::create(&server, "ea");
    project.add_web(&server, "production");
    project.add_database(&server, "production");
    project.cli(&server, &["environment", "create", "staging"]).expect_success();
    project.add_web(&server, "staging");
    project.deploy(&server, "production");
    project.deploy(&server, "staging");
    project.wait_served(&server, "production");
    project.wait_served(&server, "staging");
    let production_id = environment_field(&server, &project.name, "production", "id");
    let production_web_id = project.application_id(&server, "production");
    let staging_web_id = project.application_id(&server, "staging");
    let database = project.database("production");
    psql(
        &database,
        "main",
        "main",
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row-1')",
    );
    let web = application_container(&production_id);
    exec(&web, "echo file-1 > /data/kept.txt");

    // Stop: containers stay (not running), data stays, 503, deployments refused.
    let stopped = project.cli(&server, &["environment", "stop", "production"]).expect_success();
    assert!(stopped.stdout.contains("stopped"), "{stopped}");
    assert_eq!(environment_field(&server, &project.name, "production", "status"), "stopped");
    let status = project
        .cli(&server, &["status", "--environment", "production", "--output", "json"])
        .expect_success()
        .json();
    assert_eq!(status["applications"][0]["status"], "stopped", "{status:#}");
    assert!(!container_running(&database), "the database container is stopped");
    assert!(!container_running(&web), "the application container is stopped");
    assert!(try_docker(&["inspect", &web]).is_ok(), "the application container is kept");
    let host = project.host(&server, "production");
    let answer = wait_for(SERVE_DEADLINE, "503 from a stopped environment", || {
        server.try_proxy_get(&host, "/").ok().filter(|r| r.status == 503)
    });
    assert_eq!(answer.status, 503);
    assert_eq!(server.proxy_get(&project.host(&server, "staging"), "/").status, 200);
    let refused = project.cli(&server, &["deploy", "--environment", "production"]).expect_failure();
    assert!(
        refused.combined().contains("is stopped")
            && refused.combined().contains("environment start"),
        "a deploy to a stopped environment says how to start it:\n{refused}"
    );

    // Start: served again with the same data.
    let started = project.cli(&server, &["environment", "start", "production"]).expect_success();
    assert!(started.stdout.contains("started"), "{started}");
    assert_eq!(environment_field(&server, &project.name, "production", "status"), "active");
    project.wait_served(&server, "production");
    assert_eq!(psql(&database, "main", "main", "SELECT v FROM kept"), "row-1");
    assert_eq!(exec(&web, "cat /data/kept.txt").trim(), "file-1");

    // Redeploy: a new deployment of the same configuration.
    let before = project
        .cli(&server, &["deployment", "list", "--environment", "production", "--output", "json"])
        .expect_success()
        .json();
    project.cli(&server, &["environment", "redeploy", "production", "--wait"]).expect_success();
    let after = project
        .cli(&server, &["deployment", "list", "--environment", "production", "--output", "json"])
        .expect_success()
        .json();
    assert_eq!(after.as_array().unwrap().len(), before.as_array().unwrap().len() + 1);
    assert_eq!(after[0]["status"], "succeeded", "{after}");
    project.wait_served(&server, "production");

    // Delete: refused without confirmation; with --yes nothing labelled for it remains.
    let mut decoys = VolumeGuard::new();
    let decoy = unique_name("berth-decoy");
    decoys.create(&decoy, &[("berth.environment", &production_id)]);
    let unconfirmed =
        project.cli(&server, &["environment", "delete", "production"]).expect_failure();
    assert!(unconfirmed.combined().contains("--yes"), "{unconfirmed}");
    assert_eq!(environment_field(&server, &project.name, "production", "status"), "active");
    assert_eq!(server.proxy_get(&host, "/").status, 200);
    let deleted = project
        .cli(&server, &["environment", "delete", "production", "--final-backup", "--yes"])
        .expect_success();
    let backup_line = deleted
        .stdout
        .lines()
        .find(|l| l.starts_with("final backup of main: "))
        .unwrap_or_else(|| panic!("the final backup's location is printed:\n{deleted}"));
    let location = backup_line.trim_start_matches("final backup of main: ");
    if location.starts_with('/') {
        assert!(Path::new(location).is_file(), "the final backup is kept at {location}");
    }
    let label = format!("berth.environment={production_id}");
    let remaining = wait_for(DELETE_DEADLINE, "nothing labelled for production", || {
        let left = labelled_objects(&label);
        (left == vec![format!("volume {decoy}")]).then_some(left)
    });
    assert_eq!(remaining.len(), 1);
    // Its application's images go too (referenced by nothing else); staging's stay.
    let images_of = |application: &str| {
        docker(&["images", "--format", "{{.Repository}}"])
            .lines()
            .filter(|r| r.ends_with(&format!("/{application}")))
            .count()
    };
    wait_for(DELETE_DEADLINE, "the deleted application's images to go", || {
        (images_of(&production_web_id) == 0).then_some(())
    });
    assert!(images_of(&staging_web_id) > 0, "staging's image is kept");
    assert_eq!(server.proxy_get(&project.host(&server, "staging"), "/").status, 200);
}

#[test]
fn clone_copies_configuration_then_data_isolated_from_the_source() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = Project::create(&server, "ec");
    let secret = unique_name("clone-secret");
    project.add_web(&server, "production");
    project.add_database(&server, "production");
    project
        .cli(
            &server,
            &["env-var", "set", "--environment", "production", "FROM_ENVIRONMENT=env-value"],
        )
        .expect_success();
    server
        .cli_with_stdin(
            &[
                "env-var",
                "set",
                "--project",
                &project.name,
                "--environment",
                "production",
                "--application",
                "web",
                "--secret",
                "SECRET_TOKEN",
            ],
            &format!("{secret}\n"),
        )
        .expect_success();
    project
        .cli(
            &server,
            &[
                "env-var",
                "alias",
                "--environment",
                "production",
                "--application",
                "web",
                "DATABASE_URL=BERTH_DATABASE_MAIN_URL",
            ],
        )
        .expect_success();
    project.deploy(&server, "production");
    project.wait_served(&server, "production");
    let source_id = environment_field(&server, &project.name, "production", "id");
    let source_db = project.database("production");
    let source_web = application_container(&source_id);
    psql(
        &source_db,
        "main",
        "main",
        "CREATE TABLE items (v text); INSERT INTO items VALUES ('source-row')",
    );
    exec(&source_web, "echo source-file > /data/file.txt");

    // Bad input changes nothing.
    let taken = project
        .cli(&server, &["environment", "clone", "production", "production"])
        .expect_failure();
    assert!(taken.combined().contains("already has an environment named"), "{taken}");
    let unknown =
        project.cli(&server, &["environment", "clone", "nowhere", "copy"]).expect_failure();
    assert!(unknown.combined().contains("does not exist"), "{unknown}");

    // Without data: same configuration, new credentials, empty database and volume.
    let cloned =
        project.cli(&server, &["environment", "clone", "production", "copy"]).expect_success();
    assert!(cloned.combined().contains("database main: created with new credentials"), "{cloned}");
    let page = project.wait_served(&server, "copy");
    for expected in [
        "BERTH_ENVIRONMENT_NAME=copy".to_owned(),
        "FROM_ENVIRONMENT=env-value".to_owned(),
        format!("SECRET_TOKEN={secret}"),
    ] {
        assert!(page.lines().any(|l| l == expected), "the clone's page lacks {expected}:\n{page}");
    }
    for scope in [&["--environment"][..], &["--application", "web", "--environment"][..]] {
        let list = |environment: &str| {
            let mut args = vec!["env-var", "list"];
            let mut scope_args = scope.to_vec();
            scope_args.push(environment);
            args.extend(scope_args);
            args.extend(["--output", "json"]);
            project.cli(&server, &args).expect_success().json()
        };
        let strip = |v: serde_json::Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    (
                        x["name"].clone(),
                        x["value"].clone(),
                        x["secret"].clone(),
                        x["alias_of"].clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(list("copy")), strip(list("production")), "variables of scope {scope:?}");
    }
    let show = |environment: &str| {
        let mut shown = project
            .cli(
                &server,
                &["application", "show", "--environment", environment, "web", "--output", "json"],
            )
            .expect_success()
            .json();
        for volatile in
            ["id", "environment", "url", "created_at", "updated_at", "status", "current_deployment"]
        {
            shown.as_object_mut().unwrap().remove(volatile);
        }
        shown
    };
    assert_eq!(show("copy"), show("production"), "the application's configuration is copied");
    let copy_id = environment_field(&server, &project.name, "copy", "id");
    let copy_db = project.database("copy");
    let copy_web = application_container(&copy_id);
    let source_password = container_env(&source_db, "POSTGRES_PASSWORD");
    let copy_password = container_env(&copy_db, "POSTGRES_PASSWORD");
    assert_ne!(copy_password, source_password, "the clone's database has its own password");
    let copy_url = container_env(&copy_web, "DATABASE_URL");
    assert!(copy_url.contains(&copy_password), "the alias follows the clone's database");
    assert!(!copy_url.contains(&source_password));
    assert!(try_psql(&copy_db, "main", "main", "SELECT v FROM items").is_err(), "no data copied");
    assert!(try_docker(&["exec", &copy_web, "cat", "/data/file.txt"]).is_err(), "empty volume");

    // Isolation: from the clone's application, its own database answers (by name and IP),
    // the source's does not (by container name or IP).
    assert_eq!(postgres_answer_from(&copy_web, "main"), "N", "own database by name");
    assert_eq!(postgres_answer_from(&copy_web, &container_ip(&copy_db)), "N", "own database by IP");
    assert_eq!(postgres_answer_from(&copy_web, &source_db), "", "source database by name");
    assert_eq!(
        postgres_answer_from(&copy_web, &container_ip(&source_db)),
        "",
        "source database by IP"
    );
    assert_eq!(postgres_answer_from(&source_web, &container_ip(&copy_db)), "", "and the reverse");

    // With data: rows and files copied; writes to the clone stay in the clone.
    let cloned = project
        .cli(&server, &["environment", "clone", "production", "copy2", "--with-data"])
        .expect_success();
    assert!(cloned.combined().contains("bytes of data copied"), "{cloned}");
    project.wait_served(&server, "copy2");
    let copy2_id = environment_field(&server, &project.name, "copy2", "id");
    let copy2_db = project.database("copy2");
    let copy2_web = application_container(&copy2_id);
    assert_ne!(container_env(&copy2_db, "POSTGRES_PASSWORD"), source_password);
    assert_eq!(psql(&copy2_db, "main", "main", "SELECT v FROM items"), "source-row");
    assert_eq!(exec(&copy2_web, "cat /data/file.txt").trim(), "source-file");
    psql(&copy2_db, "main", "main", "INSERT INTO items VALUES ('clone-row')");
    exec(&copy2_web, "echo clone-file > /data/file.txt");
    assert_eq!(psql(&source_db, "main", "main", "SELECT v FROM items ORDER BY v"), "source-row");
    assert_eq!(exec(&source_web, "cat /data/file.txt").trim(), "source-file");
    assert_eq!(postgres_answer_from(&copy2_web, &container_ip(&source_db)), "");

    // All or nothing: a container Berth did not create stands where the clone's database
    // must start, so the clone fails part-way; it says why, and everything it created goes.
    let mut foreign = ContainerGuard::new();
    let in_the_way = project.database("copy3");
    foreign.run(&in_the_way, &["--network", "none", "berth/busybox:1", "sleep", "600"]);
    let project_label = format!("berth.project={}", server.project_id(&project.name));
    let mut before = labelled_objects(&project_label);
    before.sort();
    let failed = project
        .cli(&server, &["environment", "clone", "production", "copy3", "--with-data"])
        .expect_failure();
    assert!(
        failed.combined().contains("clone failed")
            && failed.combined().contains("without the label"),
        "{failed}"
    );
    wait_for(DELETE_DEADLINE, "the failed clone to be removed with all it created", || {
        let listed = project
            .cli(&server, &["environment", "list", "--output", "json"])
            .expect_success()
            .json();
        let mut now = labelled_objects(&project_label);
        now.sort();
        (!listed.as_array().unwrap().iter().any(|e| e["name"] == "copy3") && now == before)
            .then_some(())
    });
    assert!(container_running(&in_the_way), "the foreign container is left alone");
    drop(foreign);

    // A stopped source cannot give its data: refused before anything is created.
    project.cli(&server, &["environment", "stop", "production"]).expect_success();
    let refused = project
        .cli(&server, &["environment", "clone", "production", "copy3", "--with-data"])
        .expect_failure();
    assert!(refused.combined().contains("is stopped"), "{refused}");
    let listed =
        project.cli(&server, &["environment", "list", "--output", "json"]).expect_success().json();
    assert!(!listed.as_array().unwrap().iter().any(|e| e["name"] == "copy3"), "{listed}");
}
