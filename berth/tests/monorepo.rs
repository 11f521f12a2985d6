//! Monorepos, end to end: three applications built from one repository served over HTTP
//! (`git http-backend` on loopback), two of them from the same directory. A dry run shows
//! the plan and changes nothing; a manual deployment builds the shared directory once
//! ("shared build with api") and both applications run that one image; a push (a signed
//! GitHub webhook) touching only `services/api` rebuilds and redeploys the two
//! applications built from it while `web` keeps its container and image (its `clone` step
//! is skipped: "no watched file changed"); a push touching only an excluded file of `web`
//! (`!**/*.md`) deploys nothing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use test_support::git_http::GitHttpServer;
use test_support::harness::{docker, unique_name, wait_for, ServerOptions, TestServer};
use test_support::harness_ext::create_git_application;
use test_support::repo::{commit_files, init_repo};
use test_support::webhook::{
    cli_json, deliver_signed_github, queued_deployment_ids, wait_deployments_ended,
};

const DEPLOY_DEADLINE: Duration = Duration::from_secs(240);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// A directory serving `index.html` with busybox httpd; `build-id.txt` keeps this test's
/// build-cache layers its own (another test's image cleanup cannot remove them).
fn service_files(directory: &str, page: &str, build_id: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("{directory}/Dockerfile"),
            "FROM berth/busybox:1\nCOPY build-id.txt index.html /www/\nCMD exec httpd -f -p \"$PORT\" -h /www\n"
                .to_owned(),
        ),
        (format!("{directory}/build-id.txt"), format!("{build_id}\n")),
        (format!("{directory}/index.html"), format!("{page}\n")),
    ]
}

fn pairs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files.iter().map(|(path, content)| (path.as_str(), content.as_str())).collect()
}

fn application(server: &TestServer, project: &str, name: &str) -> Value {
    cli_json(
        server,
        &["application", "show", "--project", project, "--environment", "production", name],
    )
}

fn deployments(server: &TestServer, project: &str) -> Vec<Value> {
    let listed = cli_json(
        server,
        &["deployment", "list", "--project", project, "--environment", "production"],
    );
    listed.as_array().cloned().unwrap_or_default()
}

/// The ids of the running containers of an application.
fn containers_of(application_id: &str) -> Vec<String> {
    let output = docker(&[
        "ps",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("label=berth.service={application_id}"),
    ]);
    let mut ids: Vec<String> = output.lines().map(str::to_owned).collect();
    ids.sort();
    ids
}

/// The image the application's current deployment runs.
fn serving_image(server: &TestServer, project: &str, name: &str) -> String {
    let app = application(server, project, name);
    let deployment = app["current_deployment"].as_str().unwrap().to_owned();
    let shown = cli_json(server, &["deployment", "show", &deployment]);
    let services = shown["services"].as_array().unwrap();
    let service = services.iter().find(|s| s["application"] == name).unwrap();
    service["image"].as_str().unwrap().to_owned()
}

fn step<'a>(deployment: &'a Value, application: &str, name: &str) -> &'a Value {
    deployment["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["application"] == application && s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} step for {application} in {deployment:#}"))
}

/// Delivers a GitHub push webhook signed with the project's secret; returns the ids of the
/// deployments it queued.
fn deliver_push(
    server: &TestServer,
    project: &str,
    repository_url: &str,
    before: &str,
    after: &str,
) -> Vec<String> {
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "repository": { "full_name": "acme/mono", "clone_url": repository_url },
        "head_commit": { "id": after },
    })
    .to_string();
    let answer = deliver_signed_github(server, project, "push", &body, Duration::from_secs(30));
    queued_deployment_ids(&answer)
}

/// Waits until every given deployment ended; returns them.
fn wait_finished(server: &TestServer, ids: &[String]) -> Vec<Value> {
    wait_deployments_ended(server, ids, DEPLOY_DEADLINE)
}

#[test]
fn a_push_redeploys_only_the_applications_whose_watched_files_changed() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("mono");
    let build_id = unique_name("build");
    let repos = tempfile::tempdir().unwrap();
    let mut files = service_files("services/api", "api one", &build_id);
    files.extend(service_files("services/web", "web one", &build_id));
    files.push(("README.md".to_owned(), "# mono\n".to_owned()));
    let bare = repos.path().join("mono.git");
    let first_commit = init_repo(&bare, &pairs(&files), "main");
    let git = GitHttpServer::start(repos.path(), None);
    let url = git.url("mono.git");

    server.create_project_and_environment(&project, "production");
    for (name, root, extra) in [
        ("api", "services/api", None),
        ("api-copy", "services/api", None),
        ("web", "services/web", Some("services/web/**,!**/*.md")),
    ] {
        let mut flags = vec!["--root-path", root];
        if let Some(watch) = extra {
            flags.extend(["--watch-paths", watch]);
        }
        create_git_application(&server, &project, "production", name, &url, &flags)
            .expect_success();
    }
    let web = application(&server, &project, "web");
    assert_eq!(web["watch_paths"], serde_json::json!(["services/web/**", "!**/*.md"]));

    // The dry run: one wave (no dependencies), api builds, api-copy shares it, web builds;
    // nothing is deployed.
    let plan = cli_json(
        &server,
        &["deploy", "--project", &project, "--environment", "production", "--dry-run"],
    );
    let wave = &plan["waves"][0]["services"];
    let action = |name: &str| {
        wave.as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["action"].clone()
    };
    assert_eq!(action("api"), "build", "{plan:#}");
    assert_eq!(action("api-copy"), "shared", "{plan:#}");
    assert_eq!(action("web"), "build", "{plan:#}");
    assert!(deployments(&server, &project).is_empty(), "a dry run queues nothing");

    server
        .cli(&["deploy", "--project", &project, "--environment", "production", "--wait"])
        .expect_success();
    let first = deployments(&server, &project).remove(0);
    assert!(
        step(&first, "api-copy", "build")["message"]
            .as_str()
            .unwrap()
            .starts_with("shared build with api"),
        "{first:#}"
    );
    assert_eq!(
        serving_image(&server, &project, "api"),
        serving_image(&server, &project, "api-copy"),
        "both applications run the one image built"
    );
    let api_host = server.app_host(&project, "production", "api");
    let web_host = server.app_host(&project, "production", "web");
    assert!(server.proxy_get(&api_host, "/").body.contains("api one"));
    assert!(server.proxy_get(&web_host, "/").body.contains("web one"));
    let web_id = web["id"].as_str().unwrap().to_owned();
    let web_containers = containers_of(&web_id);
    let web_image = serving_image(&server, &project, "web");
    let web_deployment = application(&server, &project, "web")["current_deployment"].clone();
    assert_eq!(web_containers.len(), 1);

    // A push touching only the api directory (and the README, which nobody watches).
    let second_commit = commit_files(
        &bare,
        &[("services/api/index.html", "api two\n"), ("README.md", "# mono, again\n")],
        "main",
    );
    let queued = deliver_push(&server, &project, &url, &first_commit, &second_commit);
    assert!(!queued.is_empty(), "the push queued a deployment");
    let pushed_deployments = wait_finished(&server, &queued);
    assert!(
        pushed_deployments.iter().any(|d| d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["application"] == "web")),
        "the push deployment covers web and records why it was skipped: {pushed_deployments:#?}"
    );
    for pushed in pushed_deployments {
        assert_eq!(pushed["status"], "succeeded", "{pushed:#}");
        assert!(pushed["trigger"].as_str().unwrap().starts_with("push"), "{pushed:#}");
        if pushed["steps"].as_array().unwrap().iter().any(|s| s["application"] == "web") {
            let clone = step(&pushed, "web", "clone");
            assert_eq!(clone["status"], "skipped", "{pushed:#}");
            let message = clone["message"].as_str().unwrap();
            assert_eq!(
                message,
                format!("skipped: no watched file changed since {}", &first_commit[..12]),
                "{pushed:#}"
            );
            assert!(
                !pushed["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["application"] == "web" && s["name"] == "build"),
                "web is not built: {pushed:#}"
            );
        }
    }
    wait_for(DEPLOY_DEADLINE, "the new api page", || {
        server.proxy_get(&api_host, "/").body.contains("api two").then_some(())
    });
    assert_eq!(
        serving_image(&server, &project, "api"),
        serving_image(&server, &project, "api-copy"),
        "the push's build is shared too"
    );
    assert_ne!(serving_image(&server, &project, "api"), web_image);
    assert_eq!(containers_of(&web_id), web_containers, "web keeps its container");
    assert_eq!(serving_image(&server, &project, "web"), web_image, "web keeps its image");
    assert_eq!(application(&server, &project, "web")["current_deployment"], web_deployment);
    assert!(server.proxy_get(&web_host, "/").body.contains("web one"));

    // A push touching only an excluded file of web's directory deploys nobody.
    let api_deployment = application(&server, &project, "api")["current_deployment"].clone();
    let third_commit = commit_files(&bare, &[("services/web/NOTES.md", "notes\n")], "main");
    let queued = deliver_push(&server, &project, &url, &second_commit, &third_commit);
    for pushed in wait_finished(&server, &queued) {
        assert_eq!(pushed["status"], "succeeded", "{pushed:#}");
        for clone in pushed["steps"].as_array().unwrap().iter().filter(|s| s["name"] == "clone") {
            assert_eq!(clone["status"], "skipped", "{pushed:#}");
        }
        assert!(
            !pushed["steps"].as_array().unwrap().iter().any(|s| s["name"] == "build"),
            "nothing is built: {pushed:#}"
        );
    }
    assert_eq!(application(&server, &project, "api")["current_deployment"], api_deployment);
    assert_eq!(application(&server, &project, "web")["current_deployment"], web_deployment);
    assert_eq!(containers_of(&web_id), web_containers);
}
