//! Private repositories, end to end: an application cloned over HTTP behind basic
//! authentication (`git http-backend` on loopback) deploys with a token given on standard
//! input, and one cloned over SSH (Debian's sshd on loopback) deploys with a deploy key
//! file. Without the credential, or with a wrong one, the deployment fails at `clone` with
//! an authentication message; a changed SSH host key is refused. The credential never
//! appears in CLI output, API output, logs, the data directory, or a URL sent to the Git
//! server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::git_http::GitHttpServer;
use test_support::git_ssh::{generate_key_pair, GitSshServer};
use test_support::harness::{
    as_pairs, files_containing, files_in, labelled_objects, unique_name, CliOutput, ServerOptions,
    TestServer,
};

const DELETE_DEADLINE: Duration = Duration::from_secs(60);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
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

fn create_app(
    server: &TestServer,
    project: &str,
    name: &str,
    source: &[&str],
    stdin: Option<&str>,
) {
    let mut args =
        vec!["application", "create", "--project", project, "--environment", "production", name];
    args.extend(source);
    args.extend(["--port", "8080"]);
    match stdin {
        Some(input) => server.cli_with_stdin(&args, input),
        None => server.cli(&args),
    }
    .expect_success();
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

#[track_caller]
fn assert_failed_at_clone(output: &CliOutput, fragments: &[&str]) {
    assert!(!output.success(), "the deployment should fail:\n{output}");
    let text = output.combined();
    assert!(text.contains("failed at step clone"), "fails at clone:\n{output}");
    for fragment in fragments {
        assert!(text.contains(fragment), "says {fragment:?}:\n{output}");
    }
}

/// Asserts that `secret` appears in none of `outputs`, the server's and proxy's logs, and
/// no file of the data directory.
#[track_caller]
fn assert_never_shown(server: &TestServer, outputs: &[CliOutput], secret: &str, what: &str) {
    for output in outputs {
        assert!(
            !output.combined().contains(secret),
            "`berth {}` printed the {what}",
            output.args.join(" ")
        );
    }
    assert!(!server.server_log().contains(secret), "the server log contains the {what}");
    assert!(!server.proxy_log().contains(secret), "the proxy log contains the {what}");
    assert_eq!(
        files_containing(server.data_dir(), secret),
        Vec::<PathBuf>::new(),
        "files in the data dir hold the {what} in clear"
    );
}

/// What a user would run to look at an application and its deployments.
fn inspect(server: &TestServer, project: &str, application: &str) -> Vec<CliOutput> {
    let mut outputs = vec![
        server
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
            .expect_success(),
        server
            .cli(&["status", "--project", project, "--environment", "production"])
            .expect_success(),
    ];
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
    for deployment in listed.json().as_array().into_iter().flatten() {
        let id = deployment["id"].as_str().expect("deployment id");
        outputs.push(server.cli(&["deployment", "logs", id]).expect_success());
        outputs.push(server.cli(&["deployment", "show", id, "--output", "json"]).expect_success());
    }
    outputs.push(listed);
    outputs
}

#[test]
fn https_repository_deploys_with_a_token_and_fails_at_clone_without_it() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("ph");
    server.create_project_and_environment(&project, "production");
    let token = format!("{}-private-token", unique_name("tok"));
    let repos_root = server.scratch_dir().join("http-repos");
    let page = format!("private over http {}", unique_name("page"));
    test_support::repo::init_repo(
        &repos_root.join("app.git"),
        &as_pairs(&static_page(&page)),
        "main",
    );
    // Hosting services take a token as the password of HTTP basic authentication.
    let git_server = GitHttpServer::start(&repos_root, Some(("x-access-token", &token)));
    let url = git_server.url("app.git");

    create_app(
        &server,
        &project,
        "with-token",
        &["--git", &url, "--git-token-stdin"],
        Some(&format!("{token}\n")),
    );
    let mut outputs = vec![deploy(&server, &project, "with-token").expect_success()];
    let host = server.app_host(&project, "production", "with-token");
    assert_eq!(server.proxy_get(&host, "/").body.trim(), page);

    create_app(&server, &project, "without-token", &["--git", &url], None);
    let output = deploy(&server, &project, "without-token");
    assert_failed_at_clone(&output, &["authentication", &url]);
    outputs.push(output);

    create_app(
        &server,
        &project,
        "wrong-token",
        &["--git", &url, "--git-token-stdin"],
        Some("not-the-token\n"),
    );
    let output = deploy(&server, &project, "wrong-token");
    assert_failed_at_clone(&output, &["authentication", &url]);
    outputs.push(output);

    let shown = server
        .cli(&[
            "application",
            "show",
            "--project",
            &project,
            "--environment",
            "production",
            "with-token",
            "--output",
            "json",
        ])
        .expect_success();
    assert_eq!(shown.json()["git"]["repository"], url.as_str(), "{shown}");
    outputs.extend(inspect(&server, &project, "with-token"));
    assert_never_shown(&server, &outputs, &token, "token");
    for request in git_server.requests() {
        assert!(!request.target.contains(&token), "the token was sent in a URL: {request:?}");
    }

    let project_id = server.project_id(&project);
    server.cli_within(DELETE_DEADLINE, &["project", "delete", &project, "--yes"]).expect_success();
    assert_eq!(labelled_objects(&format!("berth.project={project_id}")), Vec::<String>::new());
}

#[test]
fn ssh_repository_deploys_with_a_deploy_key_and_fails_at_clone_without_it() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("ps");
    server.create_project_and_environment(&project, "production");
    let repos_root = server.scratch_dir().join("ssh-repos");
    let page = format!("private over ssh {}", unique_name("page"));
    let repo_path = repos_root.join("app.git");
    test_support::repo::init_repo(&repo_path, &as_pairs(&static_page(&page)), "main");
    let mut ssh_server = GitSshServer::start(&repos_root);
    let url = ssh_server.url("app.git");
    let key_file = server.scratch_dir().join("deploy_key");
    std::fs::write(&key_file, ssh_server.private_key()).expect("write the deploy key");
    let wrong_key_file = server.scratch_dir().join("wrong_key");
    std::fs::write(&wrong_key_file, generate_key_pair().private_key).expect("write another key");
    let key_file_arg = key_file.display().to_string();
    let wrong_key_file_arg = wrong_key_file.display().to_string();

    create_app(
        &server,
        &project,
        "with-key",
        &["--git", &url, "--ssh-key-file", &key_file_arg],
        None,
    );
    let mut outputs = vec![deploy(&server, &project, "with-key").expect_success()];
    let host = server.app_host(&project, "production", "with-key");
    assert_eq!(server.proxy_get(&host, "/").body.trim(), page);

    create_app(&server, &project, "without-key", &["--git", &url], None);
    let output = deploy(&server, &project, "without-key");
    assert_failed_at_clone(&output, &["no deploy key was given"]);
    outputs.push(output);

    create_app(
        &server,
        &project,
        "wrong-key",
        &["--git", &url, "--ssh-key-file", &wrong_key_file_arg],
        None,
    );
    let output = deploy(&server, &project, "wrong-key");
    assert_failed_at_clone(&output, &["authentication"]);
    outputs.push(output);

    // The host key was recorded on first use: a server presenting another key is refused,
    // and the version already deployed keeps being served.
    ssh_server.regenerate_host_key();
    let output = deploy(&server, &project, "with-key");
    assert_failed_at_clone(&output, &["host key", "changed"]);
    outputs.push(output);
    assert_eq!(server.proxy_get(&host, "/").body.trim(), page);

    outputs.extend(inspect(&server, &project, "with-key"));
    // The key's body (a line of its base64) is the secret part.
    let private_key = ssh_server.private_key();
    let key_line = private_key.lines().nth(1).expect("a base64 line of the key");
    assert_never_shown(&server, &outputs, key_line, "deploy key");

    let project_id = server.project_id(&project);
    server.cli_within(DELETE_DEADLINE, &["project", "delete", &project, "--yes"]).expect_success();
    assert_eq!(labelled_objects(&format!("berth.project={project_id}")), Vec::<String>::new());
}
