//! Git webhooks and auto-deploy, end to end: a real server, a real bare repository served
//! by `git http-backend` on loopback, an application deployed from it. Pushes announced
//! by GitHub-, GitLab- and Gitea-shaped deliveries signed with the project's secret deploy
//! the new commit (the proxy serves it); forged, unsigned and unknown-project deliveries
//! get 401, deploy nothing and are listed as refused; the same commit again, or an
//! application with auto-deploy off, deploys nothing. The polling fallback deploys a new
//! commit of a local repository without any webhook. A push creating a branch matching
//! the project's glob creates a branch environment cloned from the blueprint and serves
//! it; deleting the branch deletes it with everything labelled for it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use berth_domain::webhook_payloads::sign_body;
use serde_json::{json, Value};
use test_support::git_http::GitHttpServer;
use test_support::harness::{labelled_objects, unique_name, wait_for, ServerOptions, TestServer};
use test_support::harness_ext::{create_git_application, update_application};
use test_support::repo::{commit_files, init_repo};
use test_support::webhook::{
    self, cli_json, post_webhook, queued_deployment_ids, wait_deployments_succeeded,
};

const DEPLOY_DEADLINE: Duration = Duration::from_secs(240);
const ZERO_COMMIT: &str = "0000000000000000000000000000000000000000";

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// busybox httpd serving `index.html`; `build-id.txt` keeps the test's build cache its own.
fn site(page: &str, build_id: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "Dockerfile",
            "FROM berth/busybox:1\nCOPY build-id.txt index.html /www/\nCMD exec httpd -f -p \"$PORT\" -h /www\n"
                .to_owned(),
        ),
        ("build-id.txt", format!("{build_id}\n")),
        ("index.html", format!("{page}\n")),
    ]
}

fn pairs<'a>(files: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    files.iter().map(|(path, content)| (*path, content.as_str())).collect()
}

fn deployments(server: &TestServer, project: &str, environment: &str) -> Vec<Value> {
    cli_json(server, &["deployment", "list", "--project", project, "--environment", environment])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A raw POST to the webhook receiver, as a Git host sends it (no bearer token).
fn post_delivery(
    server: &TestServer,
    provider: &str,
    project: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, Value) {
    post_webhook(server, provider, project, headers, body, Duration::from_secs(60))
}

fn github_push(repository_url: &str, branch: &str, before: &str, after: &str) -> String {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "before": before,
        "after": after,
        "created": before == ZERO_COMMIT,
        "deleted": after == ZERO_COMMIT,
        "forced": false,
        "repository": {
            "full_name": "acme/site",
            "html_url": "https://github.com/acme/site",
            "ssh_url": "git@github.com:acme/site.git",
            "clone_url": repository_url
        },
        "head_commit": { "id": after }
    })
    .to_string()
}

fn github_headers(secret: &str, body: &str) -> Vec<(&'static str, String)> {
    webhook::github_headers("push", secret, body)
}

/// The environment named `name` in `berth environment list`, if it exists.
fn environment(server: &TestServer, project: &str, name: &str) -> Option<Value> {
    let listed = cli_json(server, &["environment", "list", "--project", project]);
    listed.as_array().unwrap().iter().find(|e| e["name"] == name).cloned()
}

fn wait_served(server: &TestServer, host: &str, page: &str) {
    wait_for(DEPLOY_DEADLINE, &format!("{host} to serve {page:?}"), || {
        server.try_proxy_get(host, "/").ok().filter(|r| r.body.contains(page)).map(|_| ())
    });
}

#[test]
fn signed_pushes_from_github_gitlab_and_gitea_deploy_and_forged_ones_are_refused() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("hooks");
    let build_id = unique_name("build");
    let repos = tempfile::tempdir().unwrap();
    let bare = repos.path().join("site.git");
    let first = init_repo(&bare, &pairs(&site("page one", &build_id)), "main");
    let git = GitHttpServer::start(repos.path(), None);
    let url = git.url("site.git");

    server.create_project_and_environment(&project, "production");
    create_git_application(&server, &project, "production", "web", &url, &[]).expect_success();
    let shown = cli_json(
        &server,
        &["application", "show", "--project", &project, "--environment", "production", "web"],
    );
    assert_eq!(shown["auto_deploy"], true, "auto-deploy is on by default");
    server
        .cli(&["deploy", "--project", &project, "--environment", "production", "--wait"])
        .expect_success();
    let host = server.app_host(&project, "production", "web");
    wait_served(&server, &host, "page one");

    let settings = cli_json(&server, &["webhook", "show", "--project", &project]);
    let secret = settings["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64, "{settings:#}");
    let text = server.cli(&["webhook", "show", "--project", &project]).expect_success().stdout;
    assert!(
        text.contains(&format!(
            "{}/api/v1/webhooks/gitlab?project={project}",
            server.url().trim_end_matches('/')
        )),
        "{text}"
    );
    assert_eq!(
        cli_json(&server, &["webhook", "show", "--project", &project])["secret"],
        secret.as_str(),
        "the secret is created once"
    );

    // Forged, unsigned and unknown-project deliveries: 401, nothing deployed.
    let second = commit_files(&bare, &[("index.html", "page two\n")], "main");
    let before = deployments(&server, &project, "production").len();
    let body = github_push(&url, "main", &first, &second);
    let forged = github_headers("not-the-secret", &body);
    let (status, error) = post_delivery(&server, "github", &project, &forged, &body);
    assert_eq!(status, 401, "{error:#}");
    assert_eq!(error["error"]["code"], "unauthorized", "{error:#}");
    let unsigned = vec![("X-GitHub-Event", "push".to_owned())];
    assert_eq!(post_delivery(&server, "github", &project, &unsigned, &body).0, 401);
    let (status, _) =
        post_delivery(&server, "github", "no-such-project", &github_headers(&secret, &body), &body);
    assert_eq!(status, 401);
    let gitlab_forged =
        vec![("X-Gitlab-Event", "Push Hook".to_owned()), ("X-Gitlab-Token", format!("{secret}x"))];
    assert_eq!(post_delivery(&server, "gitlab", &project, &gitlab_forged, "{}").0, 401);
    assert_eq!(deployments(&server, &project, "production").len(), before, "nothing was queued");
    assert!(server.proxy_get(&host, "/").body.contains("page one"));
    let listed = cli_json(&server, &["webhook", "deliveries", "--project", &project]);
    let refused: Vec<&Value> =
        listed.as_array().unwrap().iter().filter(|d| d["verdict"] == "refused").collect();
    assert_eq!(refused.len(), 3, "{listed:#}");
    assert!(
        refused.iter().any(|d| d["reason"].as_str().unwrap().contains("does not match")),
        "{listed:#}"
    );
    let table =
        server.cli(&["webhook", "deliveries", "--project", &project]).expect_success().stdout;
    assert!(table.contains("refused") && table.contains("VERDICT"), "{table}");
    assert!(!table.contains(&secret), "the secret is never listed");

    // A large delivery (over the API's usual 256 KiB limit) and a ping are accepted.
    let large = json!({ "action": "opened", "padding": "x".repeat(600 * 1024) }).to_string();
    let mut headers = github_headers(&secret, &large);
    headers[0].1 = "issues".to_owned();
    let (status, answer) = post_delivery(&server, "github", &project, &headers, &large);
    assert_eq!((status, answer["verdict"].as_str()), (200, Some("ignored")), "{answer:#}");
    let ping = r#"{"zen":"Design for failure.","hook_id":1}"#;
    let mut headers = github_headers(&secret, ping);
    headers[0].1 = "ping".to_owned();
    let (status, answer) = post_delivery(&server, "github", &project, &headers, ping);
    assert_eq!((status, answer["verdict"].as_str()), (200, Some("accepted")), "{answer:#}");

    // GitHub: signed push → deployed.
    let (status, answer) =
        post_delivery(&server, "github", &project, &github_headers(&secret, &body), &body);
    assert_eq!(status, 200, "{answer:#}");
    let queued = queued_deployment_ids(&answer);
    assert_eq!(queued.len(), 1, "{answer:#}");
    wait_deployments_succeeded(&server, &queued, DEPLOY_DEADLINE);
    wait_served(&server, &host, "page two");
    let deployment = cli_json(&server, &["deployment", "show", &queued[0]]);
    assert!(
        deployment["trigger"].as_str().unwrap().starts_with(&format!("push main@{}", &second[..7])),
        "{deployment:#}"
    );

    // The same commit again: already served, nothing queued.
    let (status, again) =
        post_delivery(&server, "github", &project, &github_headers(&secret, &body), &body);
    assert_eq!(status, 200, "{again:#}");
    assert!(queued_deployment_ids(&again).is_empty(), "{again:#}");
    assert!(again["message"].as_str().unwrap().contains("already serves"), "{again:#}");

    // GitLab: the token header, project URLs.
    let third = commit_files(&bare, &[("index.html", "page three\n")], "main");
    let body = json!({
        "object_kind": "push",
        "event_name": "push",
        "before": second,
        "after": third,
        "ref": "refs/heads/main",
        "checkout_sha": third,
        "project": {
            "name": "site",
            "web_url": url.trim_end_matches(".git"),
            "git_ssh_url": "git@gitlab.example:acme/site.git",
            "git_http_url": url,
            "path_with_namespace": "acme/site",
            "default_branch": "main"
        },
        "commits": [],
        "total_commits_count": 1
    })
    .to_string();
    let headers =
        vec![("X-Gitlab-Event", "Push Hook".to_owned()), ("X-Gitlab-Token", secret.clone())];
    let (status, answer) = post_delivery(&server, "gitlab", &project, &headers, &body);
    assert_eq!(status, 200, "{answer:#}");
    wait_deployments_succeeded(&server, &queued_deployment_ids(&answer), DEPLOY_DEADLINE);
    wait_served(&server, &host, "page three");

    // Gitea: bare hex signature, zero-less push without created/deleted flags.
    let fourth = commit_files(&bare, &[("index.html", "page four\n")], "main");
    let body = json!({
        "ref": "refs/heads/main",
        "before": third,
        "after": fourth,
        "compare_url": "",
        "commits": [],
        "repository": {
            "full_name": "acme/site",
            "html_url": url.trim_end_matches(".git"),
            "ssh_url": "ssh://git@127.0.0.1:2222/acme/site.git",
            "clone_url": url
        }
    })
    .to_string();
    let headers = vec![
        ("X-Gitea-Event", "push".to_owned()),
        ("X-Gitea-Signature", sign_body(&secret, body.as_bytes())),
    ];
    let (status, answer) = post_delivery(&server, "gitea", &project, &headers, &body);
    assert_eq!(status, 200, "{answer:#}");
    wait_deployments_succeeded(&server, &queued_deployment_ids(&answer), DEPLOY_DEADLINE);
    wait_served(&server, &host, "page four");

    let listed = cli_json(&server, &["webhook", "deliveries", "--project", &project]);
    let accepted: Vec<&Value> =
        listed.as_array().unwrap().iter().filter(|d| d["verdict"] == "accepted").collect();
    assert_eq!(accepted.len(), 5, "{listed:#}");
    assert!(
        accepted.iter().filter(|d| d["triggered"].as_str().unwrap().contains("deployment")).count()
            == 3,
        "{listed:#}"
    );

    // Auto-deploy off: a push deploys nothing.
    update_application(&server, &project, "production", "web", &["--auto-deploy", "false"])
        .expect_success();
    let fifth = commit_files(&bare, &[("index.html", "page five\n")], "main");
    let body = github_push(&url, "main", &fourth, &fifth);
    let (status, answer) =
        post_delivery(&server, "github", &project, &github_headers(&secret, &body), &body);
    assert_eq!(status, 200, "{answer:#}");
    assert!(queued_deployment_ids(&answer).is_empty(), "{answer:#}");
    assert!(answer["message"].as_str().unwrap().contains("auto-deploy off"), "{answer:#}");

    // Rotation: the old secret is refused from now on.
    let rotated = cli_json(&server, &["webhook", "rotate", "--project", &project]);
    assert_ne!(rotated["secret"], secret.as_str());
    let (status, _) =
        post_delivery(&server, "github", &project, &github_headers(&secret, &body), &body);
    assert_eq!(status, 401);
}

#[test]
fn polling_deploys_a_new_commit_of_a_local_repository_without_a_webhook() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("poll");
    let build_id = unique_name("build");
    let files = site("polled one", &build_id);
    let mut repo = server.fixture_repo(&pairs(&files), "main");
    let url = repo.file_url();
    server.create_project_and_environment(&project, "production");
    create_git_application(&server, &project, "production", "web", &url, &[]).expect_success();
    server
        .cli(&["deploy", "--project", &project, "--environment", "production", "--wait"])
        .expect_success();
    let host = server.app_host(&project, "production", "web");
    wait_served(&server, &host, "polled one");

    let updated = server
        .cli(&["project", "update", "--project", &project, "--poll-interval", "1s"])
        .expect_success()
        .stdout;
    assert!(updated.contains("polling: every 1 s"), "{updated}");
    let deployed_before = deployments(&server, &project, "production").len();
    // Polls of an unchanged branch deploy nothing.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(deployments(&server, &project, "production").len(), deployed_before);

    let commit = repo.commit(&[("index.html", "polled two\n")], "main");
    wait_served(&server, &host, "polled two");
    let newest = deployments(&server, &project, "production").remove(0);
    assert_eq!(
        newest["trigger"].as_str().unwrap(),
        format!("push main@{} (poll)", &commit[..7]),
        "{newest:#}"
    );

    let off = server
        .cli(&["project", "update", "--project", &project, "--poll-interval", "off"])
        .expect_success()
        .stdout;
    assert!(off.contains("polling: off"), "{off}");
    let bad = server.cli(&["project", "update", "--project", &project, "--poll-interval", "0s"]);
    assert!(!bad.success(), "a zero interval is refused");
}

#[test]
fn a_pushed_feature_branch_gets_its_own_environment_until_it_is_deleted() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("branches");
    let build_id = unique_name("build");
    let repos = tempfile::tempdir().unwrap();
    let bare = repos.path().join("site.git");
    init_repo(&bare, &pairs(&site("main page", &build_id)), "main");
    let git = GitHttpServer::start(repos.path(), None);
    let url = git.url("site.git");
    server.create_project_and_environment(&project, "production");
    create_git_application(&server, &project, "production", "web", &url, &[]).expect_success();
    server
        .cli(&["deploy", "--project", &project, "--environment", "production", "--wait"])
        .expect_success();
    let refused = server.cli(&[
        "project",
        "update",
        "--project",
        &project,
        "--branch-environments",
        "feature/*",
    ]);
    assert!(!refused.success(), "a glob without a blueprint is refused");
    server
        .cli(&[
            "project",
            "update",
            "--project",
            &project,
            "--branch-environments",
            "feature/*",
            "--branch-blueprint",
            "production",
        ])
        .expect_success();
    let secret = cli_json(&server, &["webhook", "show", "--project", &project])["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    // A branch outside the glob creates nothing.
    let other = commit_files(&bare, &[("index.html", "other page\n")], "other");
    let body = github_push(&url, "other", ZERO_COMMIT, &other);
    let (status, answer) =
        post_delivery(&server, "github", &project, &github_headers(&secret, &body), &body);
    assert_eq!(status, 200, "{answer:#}");
    assert!(queued_deployment_ids(&answer).is_empty(), "{answer:#}");

    // A new branch starts as an orphan here: give it the whole site.
    let feature = commit_files(&bare, &pairs(&site("login page", &build_id)), "feature/Login");
    let body = github_push(&url, "feature/Login", ZERO_COMMIT, &feature);
    let (status, answer) =
        post_delivery(&server, "github", &project, &github_headers(&secret, &body), &body);
    assert_eq!(status, 200, "{answer:#}");
    assert!(
        answer["message"].as_str().unwrap().contains("created environment feature-login"),
        "{answer:#}"
    );
    let created = environment(&server, &project, "feature-login").unwrap();
    assert_eq!(created["branch"], "feature/Login", "{created:#}");
    wait_deployments_succeeded(&server, &queued_deployment_ids(&answer), DEPLOY_DEADLINE);
    let feature_host = server.app_host(&project, "feature-login", "web");
    wait_served(&server, &feature_host, "login page");
    let production_host = server.app_host(&project, "production", "web");
    assert!(server.proxy_get(&production_host, "/").body.contains("main page"));
    let environment_id = created["id"].as_str().unwrap().to_owned();

    // Deleting the branch deletes the environment and everything labelled for it.
    #[allow(clippy::disallowed_methods)]
    let deleted = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&bare)
        .args(["update-ref", "-d", "refs/heads/feature/Login"])
        .status()
        .unwrap();
    assert!(deleted.success());
    let body = github_push(&url, "feature/Login", &feature, ZERO_COMMIT);
    let (status, answer) =
        post_delivery(&server, "github", &project, &github_headers(&secret, &body), &body);
    assert_eq!(status, 200, "{answer:#}");
    assert!(
        answer["message"].as_str().unwrap().contains("deleting environment feature-login"),
        "{answer:#}"
    );
    wait_for(DEPLOY_DEADLINE, "the branch environment to be gone", || {
        environment(&server, &project, "feature-login").is_none().then_some(())
    });
    wait_for(DEPLOY_DEADLINE, "nothing labelled for the branch environment", || {
        let left = labelled_objects(&format!("berth.environment={environment_id}"));
        left.is_empty().then_some(())
    });
    assert!(server.proxy_get(&production_host, "/").body.contains("main page"));
}
