//! Dependency order, end to end: an application may depend on a database (Redis here)
//! and on other applications; names that do not exist and cycles are refused when an
//! application is created or updated (the cycle is named); a dry run prints the waves
//! (the database first) and queues nothing; a deployment deploys an application only
//! after the applications it depends on finished (step timestamps); and when a dependency
//! fails, the applications depending on it are skipped ("dependency api failed") and keep
//! serving their previous version, while an independent application still updates and
//! the deployment is recorded failed naming the failing application.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;
use test_support::harness::{unique_name, ServerOptions, TestServer};
use test_support::harness_ext::{create_git_application, update_application};
use test_support::webhook::cli_json;

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn current_deployment(server: &TestServer, project: &str, name: &str) -> Value {
    cli_json(
        server,
        &["application", "show", "--project", project, "--environment", "production", name],
    )["current_deployment"]
        .clone()
}

fn deployments(server: &TestServer, project: &str) -> Vec<Value> {
    cli_json(server, &["deployment", "list", "--project", project, "--environment", "production"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn steps_of<'a>(deployment: &'a Value, application: &str) -> Vec<&'a Value> {
    deployment["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["application"] == application)
        .collect()
}

/// `2026-11-23T14:58:41.123456Z` → (date, seconds of the day), comparable.
fn instant(timestamp: &Value) -> (String, f64) {
    let text = timestamp.as_str().unwrap();
    let (date, time) = text.split_once('T').unwrap();
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let hours: f64 = parts.next().unwrap().parse().unwrap();
    let minutes: f64 = parts.next().unwrap().parse().unwrap();
    let seconds: f64 = parts.next().unwrap().parse().unwrap();
    (date.to_owned(), hours * 3600.0 + minutes * 60.0 + seconds)
}

fn later_or_equal(a: &(String, f64), b: &(String, f64)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 >= b.1)
}

#[test]
fn dependencies_order_the_deployment_and_a_failed_dependency_holds_back_its_dependents() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("ord");
    let build_id = unique_name("build");
    let dockerfile =
        "FROM berth/busybox:1\nCOPY build-id.txt index.html /www/\nCMD exec httpd -f -p \"$PORT\" -h /www\n";
    let repo = server.fixture_repo(
        &[("Dockerfile", dockerfile), ("build-id.txt", &build_id), ("index.html", "ordered\n")],
        "main",
    );
    server.create_project_and_environment(&project, "production");
    server
        .cli(&[
            "database",
            "create",
            "--project",
            &project,
            "--environment",
            "production",
            "cache",
            "--engine",
            "redis",
        ])
        .expect_success();
    let create = |name: &str, depends_on: Option<&str>| {
        let extra = match depends_on {
            Some(names) => vec!["--depends-on", names],
            None => Vec::new(),
        };
        create_git_application(&server, &project, "production", name, &repo.file_url(), &extra)
    };
    create("api", Some("cache")).expect_success();
    let unknown = create("web", Some("api,nosuch")).expect_failure();
    assert!(unknown.combined().contains("\"nosuch\""), "names the unknown dependency:\n{unknown}");
    create("web", Some("api")).expect_success();
    create("docs", None).expect_success();

    let cycle =
        update_application(&server, &project, "production", "api", &["--depends-on", "web"])
            .expect_failure();
    assert!(cycle.combined().contains("dependency cycle: api → web → api"), "{cycle}");

    // The dry run: the database, then api and docs, then web; nothing is queued.
    let table = server
        .cli(&["deploy", "--project", &project, "--environment", "production", "--dry-run"])
        .expect_success();
    assert!(table.stdout.contains("WAVE"), "{table}");
    assert!(table.stdout.contains("nothing was deployed"), "{table}");
    let plan = cli_json(
        &server,
        &["deploy", "--project", &project, "--environment", "production", "--dry-run"],
    );
    let names = |wave: usize| -> Vec<String> {
        plan["waves"][wave]["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(0), ["cache"], "{plan:#}");
    assert_eq!(plan["waves"][0]["services"][0]["kind"], "database", "{plan:#}");
    assert_eq!(names(1), ["api", "docs"], "{plan:#}");
    assert_eq!(names(2), ["web"], "{plan:#}");
    assert!(deployments(&server, &project).is_empty(), "a dry run queues nothing");

    server
        .cli(&["deploy", "--project", &project, "--environment", "production", "--wait"])
        .expect_success();
    let first = deployments(&server, &project).remove(0);
    let api_finished = steps_of(&first, "api")
        .iter()
        .filter_map(|s| s["finished_at"].as_str().map(|_| instant(&s["finished_at"])))
        .fold(None::<(String, f64)>, |latest, at| match latest {
            Some(latest) if later_or_equal(&latest, &at) => Some(latest),
            _ => Some(at),
        })
        .unwrap();
    for web_step in steps_of(&first, "web") {
        assert!(
            later_or_equal(&instant(&web_step["started_at"]), &api_finished),
            "web's {} step started before api finished: {first:#}",
            web_step["name"]
        );
    }
    let web_host = server.app_host(&project, "production", "web");
    assert!(server.proxy_get(&web_host, "/").body.contains("ordered"));
    let (api_before, web_before, docs_before) = (
        current_deployment(&server, &project, "api"),
        current_deployment(&server, &project, "web"),
        current_deployment(&server, &project, "docs"),
    );

    // api now fails (its release command exits 1): web is held back, docs still updates.
    update_application(&server, &project, "production", "api", &["--release-command", "false"])
        .expect_success();
    let failed = server
        .cli(&["deploy", "--project", &project, "--environment", "production", "--wait"])
        .expect_failure();
    assert!(failed.combined().contains("api"), "{failed}");
    let second = deployments(&server, &project).remove(0);
    assert_eq!(second["status"], "failed", "{second:#}");
    assert_eq!(second["failure"]["application"], "api", "{second:#}");
    assert_eq!(second["failure"]["step"], "release", "{second:#}");
    let web_steps = steps_of(&second, "web");
    assert_eq!(web_steps.len(), 1, "{second:#}");
    assert_eq!(web_steps[0]["status"], "skipped");
    assert_eq!(web_steps[0]["message"], "dependency api failed");
    assert_eq!(current_deployment(&server, &project, "api"), api_before);
    assert_eq!(current_deployment(&server, &project, "web"), web_before);
    let docs_after = current_deployment(&server, &project, "docs");
    assert_ne!(docs_after, docs_before, "the independent application updated");
    assert_eq!(docs_after, second["id"]);
    assert!(server.proxy_get(&web_host, "/").body.contains("ordered"), "web still serves");
}
