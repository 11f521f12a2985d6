//! Preview environments, end to end, driven by real signed GitHub-shaped `pull_request`
//! webhooks delivered to a real server (`POST /api/v1/webhooks/github?project=P`), with a
//! real Git repository, the edge proxy and the local Docker engine:
//!
//! 1. Previews enabled on `production` (an application and PostgreSQL), at most 2.
//! 2. PR #1 opened → `pr-1` is created, follows the PR's head branch and is served at its
//!    `pr-1` URL with the head's content; a new commit + `synchronize` → the new content is
//!    served.
//! 3. PR #2 opened → `pr-2`. Isolation: from inside pr-1's application container, its own
//!    database answers while pr-2's database is unreachable by name and by IP.
//! 4. PR #3 opened → refused (limit of 2), recorded in `preview list`; PR #4 from a fork →
//!    refused and recorded; neither gets an environment.
//! 5. PR #1 closed → nothing labelled for pr-1 remains (containers, networks, volumes) and
//!    the environment is gone; production keeps serving.
//! 6. Forks allowed → PR #5 from a fork gets `pr-5`, built from the fork's repository;
//!    previews disabled, closing PR #5 still deletes `pr-5`.
//! 7. Expiry set to 5 s → pr-2, idle, is deleted with everything labelled for it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use test_support::databases::database_container;
use test_support::environment_containers::{
    application_container, container_ip, postgres_answer_from,
};
use test_support::harness::{
    as_pairs, files_in, labelled_objects, unique_name, wait_for, CliOutput, FixtureRepo,
    ServerOptions, TestServer,
};
use test_support::webhook::{
    cli_json, deliver_signed_github, queued_deployment_ids, wait_deployments_succeeded,
};

const DEPLOY_DEADLINE: Duration = Duration::from_secs(180);
const DELETE_DEADLINE: Duration = Duration::from_secs(180);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A pull request of the test, as GitHub describes it.
struct PullRequest<'a> {
    number: u64,
    head_branch: &'a str,
    head_commit: &'a str,
    /// `None`: the head is in the base repository; `Some(url)`: a fork at `url`.
    fork: Option<&'a str>,
}

/// Delivers a signed GitHub `pull_request` event; returns the server's answer.
fn deliver(
    server: &TestServer,
    project: &str,
    repository_url: &str,
    action: &str,
    pr: &PullRequest<'_>,
) -> Value {
    let base_repo = json!({ "full_name": "acme/shop", "clone_url": repository_url });
    let head_repo = match pr.fork {
        Some(url) => json!({ "full_name": "someone/shop", "clone_url": url }),
        None => base_repo.clone(),
    };
    let body = json!({
        "action": action,
        "number": pr.number,
        "pull_request": {
            "number": pr.number,
            "head": { "ref": pr.head_branch, "sha": pr.head_commit, "repo": head_repo },
            "base": { "ref": "main", "sha": "0".repeat(40), "repo": base_repo },
        },
        "repository": base_repo,
    })
    .to_string();
    deliver_signed_github(server, project, "pull_request", &body, Duration::from_secs(300))
}

/// `berth environment preview enable --project P production FLAGS`, which must succeed.
fn enable_previews(server: &TestServer, project: &str, flags: &[&str]) -> CliOutput {
    let mut args = vec!["environment", "preview", "enable", "--project", project, "production"];
    args.extend_from_slice(flags);
    server.cli(&args).expect_success()
}

/// Waits until the deployments a delivery queued succeeded.
fn wait_deployed(server: &TestServer, answer: &Value) {
    let ids = answer["deployments"].as_array().unwrap_or_else(|| panic!("{answer}"));
    assert!(!ids.is_empty(), "the delivery queued no deployment: {answer}");
    wait_deployments_succeeded(server, &queued_deployment_ids(answer), DEPLOY_DEADLINE);
}

fn environments(server: &TestServer, project: &str) -> Vec<Value> {
    cli_json(server, &["environment", "list", "--project", project]).as_array().unwrap().clone()
}

fn environment_id(server: &TestServer, project: &str, name: &str) -> String {
    environments(server, project)
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no environment {name}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until `host` serves a page containing `content`.
fn wait_content(server: &TestServer, host: &str, content: &str) {
    wait_for(DEPLOY_DEADLINE, &format!("{host} to serve {content:?}"), || {
        server.try_proxy_get(host, "/").ok().filter(|r| r.status == 200 && r.body.contains(content))
    });
}

/// Waits until the environment is gone and nothing labelled for it remains.
fn wait_gone(server: &TestServer, project: &str, name: &str, id: &str) {
    let label = format!("berth.environment={id}");
    wait_for(DELETE_DEADLINE, &format!("{name} and everything labelled for it to go"), || {
        let listed = environments(server, project).iter().any(|e| e["name"] == name);
        (!listed && labelled_objects(&label).is_empty()).then_some(())
    });
}

fn commit_content(repo: &mut FixtureRepo, branch: &str, content: &str) -> String {
    let mut files = files_in(&fixture("env-page"));
    for (name, value) in &mut files {
        if name == "content.txt" {
            *value = format!("{content}\n");
        }
    }
    repo.commit(&as_pairs(&files), branch)
}

#[test]
fn pull_requests_create_update_and_delete_isolated_previews() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("pv");
    let mut repo = server.fixture_repo(&as_pairs(&files_in(&fixture("env-page"))), "main");
    let url = repo.file_url();
    server.create_project_and_environment(&project, "production");
    let base = ["--project", project.as_str(), "--environment", "production"];
    let mut create = vec!["application", "create"];
    create.extend(base);
    create.extend(["web", "--git", &url, "--port", "8080", "--drain", "0"]);
    server.cli(&create).expect_success();
    let mut database = vec!["database", "create"];
    database.extend(base);
    database.extend(["main", "--engine", "postgresql"]);
    server.cli(&database).expect_success();
    let mut deploy = vec!["deploy"];
    deploy.extend(base);
    deploy.push("--wait");
    server.cli(&deploy).expect_success();
    let production_host = server.app_host(&project, "production", "web");
    wait_content(&server, &production_host, "content: version one");
    let enabled = enable_previews(&server, &project, &["--max-previews", "2"]);
    assert!(enabled.stdout.contains("previews enabled"), "{enabled}");

    // PR #1 opened: pr-1 follows its head.
    let feature_1 = commit_content(&mut repo, "feature-1", "feature one");
    let pr1 =
        PullRequest { number: 1, head_branch: "feature-1", head_commit: &feature_1, fork: None };
    let answer = deliver(&server, &project, &url, "opened", &pr1);
    wait_deployed(&server, &answer);
    let pr1_host = server.app_host(&project, "pr-1", "web");
    assert!(pr1_host.contains("pr-1"), "{pr1_host}");
    wait_content(&server, &pr1_host, "content: feature one");
    let pr1_environment =
        environments(&server, &project).into_iter().find(|e| e["name"] == "pr-1").unwrap();
    assert_eq!(pr1_environment["branch"], "feature-1");
    assert_eq!(pr1_environment["mode"], "preview");

    // A new commit and `synchronize`: the new content is served.
    let feature_1b = commit_content(&mut repo, "feature-1", "feature one again");
    let pr1b = PullRequest { head_commit: &feature_1b, ..pr1 };
    let answer = deliver(&server, &project, &url, "synchronize", &pr1b);
    wait_deployed(&server, &answer);
    wait_content(&server, &pr1_host, "content: feature one again");

    // PR #2 opened; pr-1's application cannot reach pr-2's database.
    let feature_2 = commit_content(&mut repo, "feature-2", "feature two");
    let pr2 =
        PullRequest { number: 2, head_branch: "feature-2", head_commit: &feature_2, fork: None };
    let answer = deliver(&server, &project, &url, "opened", &pr2);
    wait_deployed(&server, &answer);
    wait_content(&server, &server.app_host(&project, "pr-2", "web"), "content: feature two");
    let pr1_id = environment_id(&server, &project, "pr-1");
    let pr2_id = environment_id(&server, &project, "pr-2");
    let pr1_web = application_container(&pr1_id);
    let pr1_db = database_container(&project, "pr-1", "main");
    let pr2_db = database_container(&project, "pr-2", "main");
    assert_eq!(postgres_answer_from(&pr1_web, "main"), "N", "own database by name");
    assert_eq!(postgres_answer_from(&pr1_web, &container_ip(&pr1_db)), "N", "own database by IP");
    assert_eq!(postgres_answer_from(&pr1_web, &pr2_db), "", "other preview's database by name");
    assert_eq!(
        postgres_answer_from(&pr1_web, &container_ip(&pr2_db)),
        "",
        "other preview's database by IP"
    );

    // PR #3: over the limit. PR #4: from a fork. Both refused and recorded.
    let pr3 =
        PullRequest { number: 3, head_branch: "feature-2", head_commit: &feature_2, fork: None };
    let answer = deliver(&server, &project, &url, "opened", &pr3);
    assert!(answer["message"].as_str().unwrap_or_default().contains("limit"), "{answer}");
    let fork_url = format!("{url}-fork");
    let pr4 = PullRequest {
        number: 4,
        head_branch: "feature-2",
        head_commit: &feature_2,
        fork: Some(&fork_url),
    };
    let answer = deliver(&server, &project, &url, "opened", &pr4);
    assert!(answer["message"].as_str().unwrap_or_default().contains("fork"), "{answer}");
    let listed =
        cli_json(&server, &["environment", "preview", "list", "--project", &project, "production"]);
    let numbers: Vec<u64> = listed["previews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2], "{listed:#}");
    let refusals = listed["refusals"].as_array().unwrap();
    assert!(
        refusals
            .iter()
            .any(|r| r["number"] == 3 && r["reason"].as_str().unwrap().contains("limit")),
        "{listed:#}"
    );
    assert!(
        refusals.iter().any(|r| r["number"] == 4 && r["reason"].as_str().unwrap().contains("fork")),
        "{listed:#}"
    );
    let table = server
        .cli(&["environment", "preview", "list", "--project", &project, "production"])
        .expect_success();
    assert!(table.stdout.contains("pr-1") && table.stdout.contains("#3"), "{table}");
    let names: Vec<Value> =
        environments(&server, &project).iter().map(|e| e["name"].clone()).collect();
    assert!(!names.contains(&json!("pr-3")) && !names.contains(&json!("pr-4")), "{names:?}");

    // PR #1 closed: nothing labelled for pr-1 remains; production still serves.
    let answer = deliver(&server, &project, &url, "closed", &pr1b);
    assert!(
        answer["message"].as_str().unwrap_or_default().contains("pr-1")
            || answer.to_string().contains("pr-1"),
        "{answer}"
    );
    wait_gone(&server, &project, "pr-1", &pr1_id);
    wait_content(&server, &production_host, "content: version one");

    // With forks allowed, a fork's pull request gets a preview built from the fork.
    enable_previews(&server, &project, &["--max-previews", "2", "--allow-forks"]);
    let mut fork = server.fixture_repo(&as_pairs(&files_in(&fixture("env-page"))), "main");
    let fork_commit = commit_content(&mut fork, "fork-feature", "from the fork");
    let fork_url = fork.file_url();
    let pr5 = PullRequest {
        number: 5,
        head_branch: "fork-feature",
        head_commit: &fork_commit,
        fork: Some(&fork_url),
    };
    let answer = deliver(&server, &project, &url, "opened", &pr5);
    wait_deployed(&server, &answer);
    wait_content(&server, &server.app_host(&project, "pr-5", "web"), "content: from the fork");
    let pr5_id = environment_id(&server, &project, "pr-5");

    // Disabling previews keeps the existing ones; closing PR #5 still deletes its preview.
    server
        .cli(&["environment", "preview", "disable", "--project", &project, "production"])
        .expect_success();
    let answer = deliver(&server, &project, &url, "closed", &pr5);
    assert!(answer.to_string().contains("pr-5"), "{answer}");
    wait_gone(&server, &project, "pr-5", &pr5_id);

    // Expiry: pr-2 has been idle longer than 5 s once the setting is there.
    enable_previews(&server, &project, &["--max-previews", "2", "--expire-after", "5s"]);
    wait_gone(&server, &project, "pr-2", &pr2_id);
    let listed =
        cli_json(&server, &["environment", "preview", "list", "--project", &project, "production"]);
    assert!(listed["previews"].as_array().unwrap().is_empty(), "{listed:#}");
    wait_content(&server, &production_host, "content: version one");

    // Deleting the blueprint deletes its previews with it.
    enable_previews(&server, &project, &["--expire-after", "1h"]);
    let pr6 =
        PullRequest { number: 6, head_branch: "feature-2", head_commit: &feature_2, fork: None };
    let answer = deliver(&server, &project, &url, "opened", &pr6);
    wait_deployed(&server, &answer);
    let pr6_id = environment_id(&server, &project, "pr-6");
    server
        .cli(&["environment", "delete", "--project", &project, "production", "--yes"])
        .expect_success();
    wait_gone(&server, &project, "pr-6", &pr6_id);
}
