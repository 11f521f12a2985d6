//! Spec files end to end, through the CLI of a real server, the local Docker engine and
//! real Git repositories:
//!
//! - `apply` of a spec with an application (built from a fixture repository), PostgreSQL,
//!   variables at three scopes and an alias: `--dry-run` creates nothing; `apply --deploy`
//!   creates everything and deploys; the page served through the proxy shows the variable
//!   and that the application reaches its database through the alias. A second `apply`
//!   prints "no changes" and changes nothing on the server (no `updated_at` moves, no new
//!   deployment). `export` of the project, applied with `--dry-run`, shows no changes. A
//!   secret the file references but the server lacks stops `apply` before anything
//!   changes, with the `env-var set --secret` command to run.
//! - `import compose` of a sample compose file (an application built from a local
//!   checkout, plus `postgres:15`) → `apply --deploy` → served, reading its database URL.
//! - A bad spec (an unknown key, a bad port) fails naming the key and its line, and
//!   creates nothing.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::harness::{
    as_pairs, files_in, run_program, unique_name, CliOutput, ServerOptions, TestServer,
};

const DEPLOY_DEADLINE: Duration = Duration::from_secs(600);
const DELETE_DEADLINE: Duration = Duration::from_secs(180);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn require_postgres_image() {
    let inspected = run_program(
        Path::new("docker"),
        &["image", "inspect", "berth/postgres:15"],
        Path::new("/"),
        &[],
        Duration::from_secs(30),
    );
    assert!(
        inspected.success(),
        "image berth/postgres:15 is missing: run scripts/build-base-images.sh --with-databases"
    );
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}

/// What `apply` must not change when it has nothing to do: every application's
/// `updated_at`, every variable's `updated_at`, and the deployments.
fn server_state(server: &TestServer, project: &str) -> String {
    let mut state = String::new();
    for path in [
        format!("/api/v1/projects/{project}/variables"),
        format!("/api/v1/projects/{project}/environments/production/variables"),
        format!("/api/v1/projects/{project}/environments/production/applications"),
        format!("/api/v1/projects/{project}/environments/production/applications/web/variables"),
        format!("/api/v1/projects/{project}/environments/production/databases"),
        format!("/api/v1/projects/{project}/environments/production/deployments"),
    ] {
        let response = server.api("GET", &path, None);
        assert_eq!(response.status, 200, "GET {path}: {response:?}");
        let mut value: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        // Runtime observations change on their own; configuration must not.
        strip_runtime_fields(&mut value);
        state.push_str(&format!("{path}\n{value}\n"));
    }
    state
}

fn strip_runtime_fields(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for key in ["status", "runtime_status"] {
                map.remove(key);
            }
            map.values_mut().for_each(strip_runtime_fields);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_runtime_fields),
        _ => {}
    }
}

fn project_exists(server: &TestServer, project: &str) -> bool {
    server.api("GET", &format!("/api/v1/projects/{project}"), None).status == 200
}

#[track_caller]
fn page(server: &TestServer, project: &str) -> String {
    let response = server.proxy_get(&server.app_host(project, "production", "web"), "/");
    assert_eq!(response.status, 200, "{response:?}");
    response.body
}

fn delete_project(server: &TestServer, project: &str) {
    server.cli_within(DELETE_DEADLINE, &["project", "delete", project, "--yes"]).expect_success();
}

#[test]
fn apply_creates_and_deploys_then_changes_nothing_the_second_time() {
    require_postgres_image();
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("sa");
    let repo = server.fixture_repo(&as_pairs(&files_in(&fixture("spec-app/app"))), "main");
    let scratch = server.scratch_dir();
    let spec_text = format!(
        r#"project = "{project}"

[variables]
GREETING = "hello from the spec"

[environments.production]
mode = "production"
branch = "main"

[environments.production.variables]
DATABASE_URL = {{ alias = "BERTH_DATABASE_MAIN_URL" }}

[environments.production.databases.main]
engine = "postgresql"
version = "15"

[environments.production.applications.web]
git = "{}"
port = 8080
depends_on = ["main"]
health_check = {{ kind = "http", path = "/" }}

[environments.production.applications.web.variables]
LOG_LEVEL = "debug"
"#,
        repo.file_url()
    );
    let spec = write(&scratch.join("berth.toml"), &spec_text);

    let dry_run = server.cli(&["apply", "-f", &spec, "--dry-run"]).expect_success();
    for line in [
        format!("+ project {project}"),
        "+ environment production (mode production, branch main)".into(),
        "+ database production/main (postgresql 15, container, 1 GB)".into(),
        format!("+ application production/web (git {}, port 8080)", repo.file_url()),
        "+ variable GREETING in project (\"hello from the spec\")".into(),
        "+ variable LOG_LEVEL in production/web (\"debug\")".into(),
        "+ variable DATABASE_URL in production (alias of BERTH_DATABASE_MAIN_URL)".into(),
        "dry run: nothing was changed".into(),
    ] {
        assert!(dry_run.stdout.contains(&line), "dry run shows {line:?}:\n{dry_run}");
    }
    assert!(!project_exists(&server, &project), "--dry-run created nothing");

    let applied = server.cli_within(DEPLOY_DEADLINE, &["apply", "-f", &spec, "--deploy"]);
    let applied = applied.expect_success();
    assert!(applied.stdout.contains("applied 7 changes"), "{applied}");
    server.project_id(&project);
    let served = page(&server, &project);
    assert!(served.contains("greeting: hello from the spec"), "{served}");
    assert!(served.contains("database: main:5432/"), "the alias gives the URL: {served}");
    assert!(served.contains("database reachable: yes"), "{served}");

    // The second apply of the same file: nothing to do, nothing done.
    let before = server_state(&server, &project);
    let again = server.cli(&["apply", "-f", &spec, "--deploy"]).expect_success();
    assert_eq!(again.stdout.lines().next(), Some("no changes"), "{again}");
    assert!(!again.stdout.contains("deploy"), "nothing to deploy: {again}");
    assert_eq!(server_state(&server, &project), before, "the second apply changed nothing");

    // An export applies as "no changes".
    let exported = scratch.join("exported.toml");
    let exported_path = exported.display().to_string();
    server.cli(&["export", "--project", &project, "-f", &exported_path]).expect_success();
    let exported_text = std::fs::read_to_string(&exported).unwrap();
    assert!(
        exported_text.contains("DATABASE_URL = { alias = \"BERTH_DATABASE_MAIN_URL\" }"),
        "{exported_text}"
    );
    let check = server.cli(&["apply", "-f", &exported_path, "--dry-run"]).expect_success();
    assert_eq!(check.stdout.trim(), "no changes", "export then apply:\n{check}\n{exported_text}");

    // A referenced secret that does not exist stops apply before the greeting changes.
    let with_secret = spec_text.replace(
        "GREETING = \"hello from the spec\"",
        "GREETING = \"changed\"\nAPI_KEY = { secret = true }",
    );
    let spec_with_secret = write(&scratch.join("secret.toml"), &with_secret);
    let refused = server.cli(&["apply", "-f", &spec_with_secret]).expect_failure();
    assert!(
        refused.stderr.contains(&format!("berth env-var set --project {project} --secret API_KEY")),
        "{refused}"
    );
    assert_eq!(server_state(&server, &project), before, "a refused apply changes nothing");
    let secret_value = format!("{}-never-shown", unique_name("k3y"));
    server
        .cli_with_stdin(
            &["env-var", "set", "--project", &project, "--secret", "API_KEY"],
            &secret_value,
        )
        .expect_success();
    let changed = server.cli(&["apply", "-f", &spec_with_secret]).expect_success();
    assert!(
        changed
            .stdout
            .contains("~ variable GREETING in project: \"hello from the spec\" → \"changed\""),
        "{changed}"
    );
    assert!(changed.stdout.contains("applied 1 change\n"), "{changed}");
    assert!(
        changed.stdout.contains(&format!(
            "deploy the changes with `berth deploy --project {project} --environment production --wait`"
        )),
        "a project variable changes every environment: {changed}"
    );
    let all_output: String = [&dry_run, &applied, &again, &check, &refused, &changed]
        .iter()
        .map(|output: &&CliOutput| output.combined())
        .collect();
    assert!(!all_output.contains(&secret_value), "no secret value is ever printed");

    // A variable left out of the file is kept, and deleted only with --prune.
    let without_log_level = with_secret.replace("LOG_LEVEL = \"debug\"\n", "");
    let spec_without = write(&scratch.join("pruned.toml"), &without_log_level);
    let kept = server.cli(&["apply", "-f", &spec_without]).expect_success();
    assert!(kept.stdout.contains("no changes"), "{kept}");
    assert!(
        kept.stdout.contains("not in the file, left alone (--prune deletes them): variable LOG_LEVEL in production/web"),
        "{kept}"
    );
    let unconfirmed = server.cli(&["apply", "-f", &spec_without, "--prune"]).expect_failure();
    assert!(unconfirmed.stderr.contains("pass --yes"), "{unconfirmed}");
    let pruned = server.cli(&["apply", "-f", &spec_without, "--prune", "--yes"]).expect_success();
    assert!(pruned.stdout.contains("- variable LOG_LEVEL in production/web"), "{pruned}");
    let variables = server.api(
        "GET",
        &format!("/api/v1/projects/{project}/environments/production/applications/web/variables"),
        None,
    );
    assert!(!variables.body.contains("LOG_LEVEL"), "{variables:?}");

    delete_project(&server, &project);
}

#[test]
fn a_compose_file_imports_applies_and_serves() {
    require_postgres_image();
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("sc");
    // A checkout holding the compose file and the application it builds.
    let checkout = server.scratch_dir().join("checkout");
    for (relative, content) in files_in(&fixture("spec-app")) {
        let path = checkout.join(&relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let git = |args: &[&str]| {
        run_program(Path::new("git"), args, &checkout, &[], Duration::from_secs(60))
            .expect_success()
    };
    git(&["init", "--quiet", "--initial-branch", "main"]);
    git(&["add", "--all"]);
    git(&[
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.invalid",
        "commit",
        "--quiet",
        "-m",
        "compose fixture",
    ]);

    let compose = checkout.join("docker-compose.yml").display().to_string();
    let spec = server.scratch_dir().join("berth.toml").display().to_string();
    let imported = server
        .cli(&["import", "compose", &compose, "-f", &spec, "--project", &project])
        .expect_success();
    for line in [
        "converted: service db (postgres:15) → database db (postgresql default version)",
        "converted: services.web.environment.DATABASE_URL → alias of BERTH_DATABASE_DB_URL",
        "converted: service web → application web (build app, port 8080)",
        "dropped: services.web.networks",
        "dropped: services.db.environment",
    ] {
        assert!(imported.stderr.contains(line), "import reports {line:?}:\n{imported}");
    }
    let spec_text = std::fs::read_to_string(&spec).unwrap();
    assert!(spec_text.contains(&format!("git = \"{}\"", checkout.display())), "{spec_text}");
    assert!(
        !spec_text.contains("example"),
        "the compose file's database password is dropped:\n{spec_text}"
    );

    let applied =
        server.cli_within(DEPLOY_DEADLINE, &["apply", "-f", &spec, "--deploy"]).expect_success();
    assert!(applied.stdout.contains("+ database production/db"), "{applied}");
    server.project_id(&project);
    let served = page(&server, &project);
    assert!(served.contains("greeting: hello from compose"), "{served}");
    assert!(served.contains("database: db:5432/"), "{served}");
    assert!(served.contains("database reachable: yes"), "{served}");
    let again = server.cli(&["apply", "-f", &spec]).expect_success();
    assert_eq!(again.stdout.trim(), "no changes", "{again}");

    delete_project(&server, &project);
}

#[test]
fn a_bad_spec_names_the_key_and_creates_nothing() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("sb");
    let scratch = server.scratch_dir();
    let unknown_key = write(
        &scratch.join("unknown.toml"),
        &format!(
            "project = \"{project}\"\n\n[environments.production.applications.web]\nimage = \"berth/busybox:1\"\nprot = 8080\n"
        ),
    );
    let refused = server.cli(&["apply", "-f", &unknown_key]).expect_failure();
    assert!(
        refused.stderr.contains(&format!(
            "{unknown_key}:5: environments.production.applications.web.prot: unknown field `prot`"
        )),
        "{refused}"
    );
    assert!(refused.stderr.contains("docs/spec.md"), "says where the schema is: {refused}");

    let bad_port = write(
        &scratch.join("port.toml"),
        &format!(
            "project = \"{project}\"\n\n[environments.production.applications.web]\nimage = \"berth/busybox:1\"\nport = 70000\n"
        ),
    );
    let refused = server.cli(&["apply", "-f", &bad_port]).expect_failure();
    assert!(
        refused.stderr.contains(&format!(
            "{bad_port}:5: environments.production.applications.web.port: invalid port \"70000\""
        )),
        "{refused}"
    );
    assert!(!project_exists(&server, &project), "nothing was created");
}
