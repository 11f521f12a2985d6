//! Bad input, end to end: invalid names, unknown references, hostile repository URLs and
//! branches, repositories and branches that do not exist, a missing Dockerfile, a failing
//! build, a container that exits at once, a port that never opens and an oversized request
//! body. Each is refused with a 4xx and a message that names the rule, or fails the
//! deployment at the right step with the reason; nothing the user did not ask for is
//! executed; no container is left for the application; a previously deployed version keeps
//! being served; deleting the project afterwards leaves nothing labelled for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::git_http::GitHttpServer;
use test_support::harness::{
    as_pairs, docker, files_in, labelled_objects, unique_name, CliOutput, ServerOptions, TestServer,
};

const DELETE_DEADLINE: Duration = Duration::from_secs(60);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("read a fixture file")
}

/// The static-page fixture with `page` as its content.
fn static_page(page: &str) -> Vec<(String, String)> {
    let mut files = files_in(&fixture("static-page"));
    for (path, content) in &mut files {
        if path == "index.html" {
            *content = format!("{page}\n");
        }
    }
    files
}

fn create_app(server: &TestServer, project: &str, name: &str, source: &[&str]) {
    let mut args =
        vec!["application", "create", "--project", project, "--environment", "production", name];
    args.extend(source);
    args.extend(["--port", "8080"]);
    server.cli(&args).expect_success();
}

fn deploy(server: &TestServer, project: &str, application: &str) -> CliOutput {
    server.cli(&[
        "deploy",
        "--project",
        project,
        "--environment",
        "production",
        "--application",
        application,
        "--wait",
    ])
}

/// Asserts that `deploy --wait` failed at `step` and printed every fragment.
#[track_caller]
fn assert_failed_at(output: &CliOutput, step: &str, fragments: &[&str]) {
    assert!(!output.success(), "the deployment should fail:\n{output}");
    let text = output.combined();
    assert!(text.contains(&format!("failed at step {step}")), "names the step {step}:\n{output}");
    for fragment in fragments {
        assert!(text.contains(fragment), "says {fragment:?}:\n{output}");
    }
}

fn application_id(server: &TestServer, project: &str, application: &str) -> String {
    let shown = server
        .cli(&[
            "application",
            "show",
            "--project",
            project,
            "--environment",
            "production",
            application,
            "--output",
            "json",
        ])
        .expect_success();
    shown.json()["id"].as_str().expect("application id").to_owned()
}

/// `name deployment-id` of every container (any state) labelled for the application.
fn containers_of(application_id: &str) -> Vec<String> {
    docker(&[
        "ps",
        "--all",
        "--filter",
        &format!("label=berth.service={application_id}"),
        "--format",
        "{{.Names}} {{.Label \"berth.deployment\"}}",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

fn last_deployment_id(server: &TestServer, project: &str) -> String {
    let listed = server
        .cli(&[
            "deployment",
            "list",
            "--project",
            project,
            "--environment",
            "production",
            "--output",
            "json",
        ])
        .expect_success();
    listed.json()[0]["id"].as_str().expect("deployment id").to_owned()
}

/// Deletes the project and asserts that nothing labelled for it remains.
#[track_caller]
fn delete_project_and_check_nothing_left(server: &TestServer, project: &str) {
    let project_id = server.project_id(project);
    server.cli_within(DELETE_DEADLINE, &["project", "delete", project, "--yes"]).expect_success();
    assert_eq!(
        labelled_objects(&format!("berth.project={project_id}")),
        Vec::<String>::new(),
        "objects labelled for the deleted project remain"
    );
}

#[test]
fn invalid_names_are_refused_with_the_naming_rule() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let rule = "lower-case letters, digits and '-'";
    let long = "a".repeat(64);
    for name in ["Bad_Name", "9lives", "ends-with-", "has.dot", long.as_str(), ""] {
        let output = server.cli(&["project", "create", name]).expect_failure();
        assert!(
            output.stderr.contains(rule),
            "project {name:?} refused naming the rule:\n{output}"
        );
    }
    let project = unique_name("bn");
    server.cli(&["project", "create", &project]).expect_success();
    let output =
        server.cli(&["environment", "create", "--project", &project, "Prod"]).expect_failure();
    assert!(output.stderr.contains(rule), "{output}");
    server.cli(&["environment", "create", "--project", &project, "production"]).expect_success();
    let output = server
        .cli(&[
            "application",
            "create",
            "--project",
            &project,
            "--environment",
            "production",
            "my_app",
            "--image",
            "berth/busybox:1",
        ])
        .expect_failure();
    assert!(output.stderr.contains(rule), "{output}");
    // The API says the same with a 422 and its stable error code.
    let response =
        server.api("POST", "/api/v1/projects", Some(&serde_json::json!({ "name": "Bad_Name" })));
    assert_eq!(response.status, 422, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "invalid_input", "{response:?}");
    assert!(response.json()["error"]["message"].as_str().unwrap_or_default().contains(rule));
    // Nothing was created by the refused requests.
    let listed = server.cli(&["project", "list", "--output", "json"]).expect_success();
    assert_eq!(listed.json().as_array().map(Vec::len), Some(1), "{listed}");
}

#[test]
fn unknown_references_are_named_in_the_error() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("ur");
    let missing_project = unique_name("nope");
    server.create_project_and_environment(&project, "production");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["environment", "create", "--project", &missing_project, "production"],
            format!("project \"{missing_project}\" does not exist"),
        ),
        (
            vec!["application", "list", "--project", &project, "--environment", "staging"],
            "\"staging\" does not exist".to_owned(),
        ),
        (
            vec![
                "application",
                "show",
                "--project",
                &project,
                "--environment",
                "production",
                "ghost",
            ],
            "application \"ghost\" does not exist".to_owned(),
        ),
        (
            vec![
                "deploy",
                "--project",
                &project,
                "--environment",
                "production",
                "--application",
                "ghost",
                "--wait",
            ],
            "application \"ghost\" does not exist".to_owned(),
        ),
        (
            vec![
                "env-var",
                "set",
                "--project",
                &project,
                "--environment",
                "production",
                "--application",
                "ghost",
                "KEY=value",
            ],
            "application \"ghost\" does not exist".to_owned(),
        ),
        (
            vec!["project", "delete", &missing_project, "--yes"],
            format!("\"{missing_project}\" does not exist"),
        ),
    ];
    for (args, message) in cases {
        let output = server.cli(&args).expect_failure();
        assert!(
            output.stderr.contains(&message),
            "`berth {}` says {message:?}:\n{output}",
            args.join(" ")
        );
    }
    let response = server.api("GET", &format!("/api/v1/projects/{missing_project}"), None);
    assert_eq!(response.status, 404, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "not_found", "{response:?}");
}

#[test]
fn hostile_urls_and_branches_are_refused_before_git_runs() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("hu");
    server.create_project_and_environment(&project, "production");
    let repo = server.fixture_repo(&as_pairs(&static_page("hostile")), "main");
    let markers = server.scratch_dir().join("markers");
    std::fs::create_dir_all(&markers).expect("markers directory");
    let marker = |name: &str| markers.join(name).display().to_string();

    // (application name, repository URL, branch, what the message says)
    let cases = [
        ("ext-url", format!("ext::sh -c touch {}", marker("ext")), None, "invalid repository URL"),
        (
            "ext-url-nospace",
            format!("ext::touch%20{}", marker("ext-nospace")),
            None,
            "\"ext::\" remote-helper syntax is not allowed",
        ),
        (
            "option-url",
            format!("--upload-pack=touch {}", marker("upload-pack")),
            None,
            "invalid repository URL",
        ),
        (
            "dollar-branch",
            repo.file_url(),
            Some(format!("$(touch {})", marker("dollar"))),
            "invalid branch name",
        ),
        (
            "option-branch",
            repo.file_url(),
            Some(format!("--upload-pack=touch {}", marker("branch-option"))),
            "invalid branch name",
        ),
    ];
    let applications_path =
        format!("/api/v1/projects/{project}/environments/production/applications");
    for (name, url, branch, message) in &cases {
        // Through the CLI (`--git=VALUE` so that a value starting with '-' reaches Berth).
        let git = format!("--git={url}");
        let mut args = vec![
            "application",
            "create",
            "--project",
            &project,
            "--environment",
            "production",
            name,
            &git,
        ];
        let branch_arg = branch.as_ref().map(|branch| format!("--branch={branch}"));
        args.extend(branch_arg.as_deref());
        let output = server.cli(&args).expect_failure();
        assert!(output.stderr.contains(message), "{name}: says {message:?}:\n{output}");
        // Through the API: a 4xx, whatever the client.
        let body = serde_json::json!({
            "name": name,
            "git": { "repository": url, "branch": branch },
            "port": 8080,
        });
        let response = server.api("POST", &applications_path, Some(&body));
        assert_eq!(response.status, 422, "{name}: refused: {response:?}");
        assert_eq!(response.json()["error"]["code"], "invalid_input", "{response:?}");
        let api_message =
            response.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(api_message.contains(message), "{name}: the API says {message:?}: {api_message}");
    }
    // The same request with a plain URL and branch is accepted: the refusals above were
    // about the hostile values, not the request.
    let body = serde_json::json!({
        "name": "plain",
        "git": { "repository": repo.file_url(), "branch": "main" },
        "port": 8080,
    });
    let response = server.api("POST", &applications_path, Some(&body));
    assert!((200..300).contains(&response.status), "{response:?}");
    let listed = server
        .cli(&[
            "application",
            "list",
            "--project",
            &project,
            "--environment",
            "production",
            "--output",
            "json",
        ])
        .expect_success();
    let applications = listed.json();
    let names: Vec<&str> = applications
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|app| app["name"].as_str())
        .collect();
    assert_eq!(names, ["plain"], "only the plain application was created:\n{listed}");
    let created: Vec<String> = std::fs::read_dir(&markers)
        .expect("read markers")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(created, Vec::<String>::new(), "a hostile input ran a command");
}

#[test]
fn clone_failures_name_the_missing_repository_or_branch() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("cf");
    server.create_project_and_environment(&project, "production");
    let repos_root = server.scratch_dir().join("served");
    std::fs::create_dir_all(&repos_root).expect("repository root");
    test_support::repo::init_repo(
        &repos_root.join("exists.git"),
        &as_pairs(&static_page("x")),
        "main",
    );
    let git_server = GitHttpServer::start(&repos_root, None);

    let missing_url = git_server.url("missing.git");
    create_app(&server, &project, "missing-repo", &["--git", &missing_url]);
    let output = deploy(&server, &project, "missing-repo");
    assert_failed_at(&output, "clone", &[&format!("repository {missing_url} was not found")]);
    let id = application_id(&server, &project, "missing-repo");
    assert_eq!(containers_of(&id), Vec::<String>::new(), "no container for missing-repo");

    let exists_url = git_server.url("exists.git");
    create_app(
        &server,
        &project,
        "missing-branch",
        &["--git", &exists_url, "--branch", "feature-x"],
    );
    let output = deploy(&server, &project, "missing-branch");
    assert_failed_at(&output, "clone", &["branch \"feature-x\" does not exist"]);
    let id = application_id(&server, &project, "missing-branch");
    assert_eq!(containers_of(&id), Vec::<String>::new(), "no container for missing-branch");

    // A local repository that does not exist is refused when the application is created.
    let missing_local = server.scratch_dir().join("nowhere.git");
    let output = server
        .cli(&[
            "application",
            "create",
            "--project",
            &project,
            "--environment",
            "production",
            "missing-local",
            "--git",
            &format!("file://{}", missing_local.display()),
        ])
        .expect_failure();
    assert!(output.stderr.contains("does not exist"), "{output}");

    delete_project_and_check_nothing_left(&server, &project);
}

#[test]
fn missing_dockerfile_fails_at_build_naming_the_path() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("md");
    server.create_project_and_environment(&project, "production");
    let repo = server.fixture_repo(&as_pairs(&static_page("no dockerfile here")), "main");
    create_app(
        &server,
        &project,
        "web",
        &["--git", &repo.file_url(), "--dockerfile", "docker/Web.Dockerfile"],
    );
    let output = deploy(&server, &project, "web");
    assert_failed_at(&output, "build", &["docker/Web.Dockerfile"]);
    let id = application_id(&server, &project, "web");
    assert_eq!(containers_of(&id), Vec::<String>::new());
    delete_project_and_check_nothing_left(&server, &project);
}

#[test]
fn failed_build_and_crashing_container_keep_the_previous_version_served() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("fb");
    server.create_project_and_environment(&project, "production");
    let good_page = format!("good version {}", unique_name("page"));
    let mut repo = server.fixture_repo(&as_pairs(&static_page(&good_page)), "main");
    create_app(&server, &project, "web", &["--git", &repo.file_url()]);
    deploy(&server, &project, "web").expect_success();
    let host = server.app_host(&project, "production", "web");
    assert_eq!(server.proxy_get(&host, "/").body.trim(), good_page);
    let good_deployment = last_deployment_id(&server, &project);
    let id = application_id(&server, &project, "web");
    let only_the_good_container = containers_of(&id);
    assert_eq!(only_the_good_container.len(), 1, "{only_the_good_container:?}");
    assert!(only_the_good_container[0].ends_with(&good_deployment));

    // A build that fails at `RUN false`.
    repo.commit(&[("Dockerfile", &fixture_text("broken/run-false.Dockerfile"))], "main");
    let output = deploy(&server, &project, "web");
    assert_failed_at(&output, "build", &["RUN false", "preparing the build"]);
    assert_eq!(
        server.proxy_get(&host, "/").body.trim(),
        good_page,
        "the good version still serves"
    );
    assert_eq!(containers_of(&id), only_the_good_container, "only the good version's container");

    // A container that exits at once, with its exit code and last output.
    repo.commit(&[("Dockerfile", &fixture_text("broken/exits-at-once.Dockerfile"))], "main");
    let output = deploy(&server, &project, "web");
    assert_failed_at(
        &output,
        "health",
        &["exited with code 3", "cannot find my configuration file"],
    );
    assert_eq!(
        server.proxy_get(&host, "/").body.trim(),
        good_page,
        "the good version still serves"
    );
    assert_eq!(containers_of(&id), only_the_good_container, "only the good version's container");

    let status = server
        .cli(&["status", "--project", &project, "--environment", "production"])
        .expect_success();
    let web_line = status.stdout.lines().find(|line| line.starts_with("web ")).unwrap_or_default();
    assert!(web_line.contains("running"), "the application still runs:\n{status}");
    assert!(status.stdout.contains("failed"), "status tells the last deployment failed:\n{status}");

    delete_project_and_check_nothing_left(&server, &project);
}

#[test]
fn port_that_never_opens_fails_at_health_after_the_deadline() {
    let options = ServerOptions { health_timeout_secs: Some(8), ..ServerOptions::default() };
    let server = TestServer::start(berth_binary(), options);
    let project = unique_name("po");
    server.create_project_and_environment(&project, "production");
    let mut files = static_page("never served");
    for (path, content) in &mut files {
        if path == "Dockerfile" {
            *content = fixture_text("broken/never-listens.Dockerfile");
        }
    }
    let repo = server.fixture_repo(&as_pairs(&files), "main");
    create_app(&server, &project, "web", &["--git", &repo.file_url()]);
    let output = deploy(&server, &project, "web");
    assert_failed_at(
        &output,
        "health",
        &["on port 8080 within 8 s", "nothing listens on the port"],
    );
    let id = application_id(&server, &project, "web");
    assert_eq!(
        containers_of(&id),
        Vec::<String>::new(),
        "the container that never listened is gone"
    );
    let host = server.app_host(&project, "production", "web");
    assert_ne!(server.proxy_get(&host, "/").status, 200, "nothing is routed");
    delete_project_and_check_nothing_left(&server, &project);
}

#[test]
fn oversized_request_body_is_refused() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let name = "a".repeat(300 * 1024);
    let response =
        server.api("POST", "/api/v1/projects", Some(&serde_json::json!({ "name": name })));
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "payload_too_large", "{response:?}");
}

#[test]
fn duplicate_names_are_refused_naming_the_name() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("dn");
    server.create_project_and_environment(&project, "production");
    create_app(&server, &project, "web", &["--image", "berth/busybox:1"]);
    // (command, what the message says, the name it names)
    let cases: [(Vec<&str>, &str, &str); 3] = [
        (vec!["project", "create", &project], "a project named", &project),
        (
            vec!["environment", "create", "--project", &project, "production"],
            "already has an environment named",
            "production",
        ),
        (
            vec![
                "application",
                "create",
                "--project",
                &project,
                "--environment",
                "production",
                "web",
                "--image",
                "berth/busybox:1",
            ],
            "already has an application named",
            "web",
        ),
    ];
    for (args, message, name) in cases {
        let output = server.cli(&args).expect_failure();
        let error =
            output.stderr.lines().find(|line| line.starts_with("error:")).unwrap_or_default();
        assert!(error.contains(message), "`berth {}` says {message:?}:\n{output}", args.join(" "));
        assert!(error.contains(name), "names {name:?}:\n{output}");
        // The name as the user typed it, not a Rust debug representation.
        assert!(!error.contains("ResourceName("), "internal type in the message:\n{output}");
    }
    let response =
        server.api("POST", "/api/v1/projects", Some(&serde_json::json!({ "name": project })));
    assert_eq!(response.status, 409, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "conflict", "{response:?}");
}

#[test]
fn a_wrong_token_is_refused() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let output = server.cli(&["--token", "not-a-token", "project", "list"]).expect_failure();
    assert!(
        output.stderr.to_lowercase().contains("token"),
        "says the token is the problem:\n{output}"
    );
    assert!(!output.combined().contains(server.token()), "{output}");
}
