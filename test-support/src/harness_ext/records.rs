//! The application under test with the CLI calls the rollout tests repeat ([`TestApp`]),
//! readers for deployment records, and the containers and images Berth labelled for an
//! application, a deployment or a project.

use std::time::{Duration, Instant};

use crate::harness::{docker, docker_output, wait_for, CliOutput, FixtureRepo, TestServer};

use super::line_value;

/// An application in environment `production` of its own project, created through the CLI,
/// with the CLI calls the rollout tests make about it.
#[derive(Debug, Clone)]
pub struct TestApp {
    pub project: String,
    pub environment: String,
    pub name: String,
    /// The host name the proxy serves it under.
    pub host: String,
}

impl TestApp {
    /// Creates `project`, its environment `production` and application `name` from `repo`
    /// (port 8080) with further `application create` flags.
    #[track_caller]
    pub fn create(
        server: &TestServer,
        project: &str,
        name: &str,
        repo: &FixtureRepo,
        flags: &[&str],
    ) -> TestApp {
        server.create_project_and_environment(project, "production");
        super::create_git_application(server, project, "production", name, &repo.file_url(), flags)
            .expect_success();
        TestApp {
            project: project.to_owned(),
            environment: "production".to_owned(),
            name: name.to_owned(),
            host: server.app_host(project, "production", name),
        }
    }

    fn scope(&self) -> [&str; 4] {
        ["--project", &self.project, "--environment", &self.environment]
    }

    /// `berth application update ... FLAGS`, which must succeed.
    #[track_caller]
    pub fn update(&self, server: &TestServer, flags: &[&str]) {
        let mut args = vec!["application", "update"];
        args.extend(self.scope());
        args.push(&self.name);
        args.extend(flags);
        server.cli(&args).expect_success();
    }

    /// `berth env-var set` at the application's scope.
    #[track_caller]
    pub fn set_variable(&self, server: &TestServer, assignment: &str) {
        let mut args = vec!["env-var", "set"];
        args.extend(self.scope());
        args.extend(["--application", &self.name, assignment]);
        server.cli(&args).expect_success();
    }

    /// `berth deploy --wait` of the environment (success or not).
    pub fn deploy_and_wait(&self, server: &TestServer) -> CliOutput {
        let mut args = vec!["deploy"];
        args.extend(self.scope());
        args.push("--wait");
        server.cli(&args)
    }

    /// `berth deploy` without waiting; returns the new deployment's id.
    #[track_caller]
    pub fn deploy(&self, server: &TestServer) -> String {
        let mut args = vec!["deploy"];
        args.extend(self.scope());
        args.extend(["--output", "json"]);
        let output = server.cli(&args).expect_success();
        output.json()["id"].as_str().expect("the deployment's id").to_owned()
    }

    /// The newest deployment of the environment (`deployment list`).
    #[track_caller]
    pub fn latest_deployment(&self, server: &TestServer) -> serde_json::Value {
        let mut args = vec!["deployment", "list"];
        args.extend(self.scope());
        args.extend(["--output", "json"]);
        let listed = server.cli(&args).expect_success().json();
        listed[0].clone()
    }

    /// The application's entry in `berth status --output json`.
    #[track_caller]
    pub fn status(&self, server: &TestServer) -> serde_json::Value {
        let mut args = vec!["status"];
        args.extend(self.scope());
        args.extend(["--output", "json"]);
        let status = server.cli(&args).expect_success().json();
        status["applications"]
            .as_array()
            .and_then(|apps| apps.iter().find(|app| app["name"] == self.name.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("no application {} in the status: {status}", self.name))
    }

    /// The application's id (`application show`).
    #[track_caller]
    pub fn id(&self, server: &TestServer) -> String {
        let mut args = vec!["application", "show"];
        args.extend(self.scope());
        args.extend([self.name.as_str(), "--output", "json"]);
        let shown = server.cli(&args).expect_success().json();
        shown["id"].as_str().expect("application id").to_owned()
    }

    /// `GET /` through the proxy; panics unless it answers 200.
    #[track_caller]
    pub fn page(&self, server: &TestServer) -> String {
        let page = server.proxy_get(&self.host, "/");
        assert_eq!(page.status, 200, "GET http://{}/ through the proxy: {page:?}", self.host);
        page.body
    }

    /// The `content:` line of the page served now.
    #[track_caller]
    pub fn served_content(&self, server: &TestServer) -> String {
        let page = self.page(server);
        line_value(&page, "content").unwrap_or_else(|| panic!("no content line in {page:?}"))
    }
}

/// `GET /api/v1/deployments/{id}` as JSON.
#[track_caller]
pub fn deployment_record(server: &TestServer, id: &str) -> serde_json::Value {
    let response = server.api("GET", &format!("/api/v1/deployments/{id}"), None);
    assert_eq!(response.status, 200, "GET deployment {id}: {}", response.body);
    response.json()
}

/// Whether a deployment status is final.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled" | "superseded")
}

/// Waits until deployment `id` has a final status and returns its record.
#[track_caller]
pub fn wait_for_terminal_deployment(
    server: &TestServer,
    id: &str,
    timeout: Duration,
) -> serde_json::Value {
    wait_for(timeout, &format!("deployment {id} to end"), || {
        let record = deployment_record(server, id);
        is_terminal(record["status"].as_str().unwrap_or_default()).then_some(record)
    })
}

/// Waits until deployment `id` has a step `step` in state `running`.
#[track_caller]
pub fn wait_for_running_step(server: &TestServer, id: &str, step: &str, timeout: Duration) {
    wait_for(timeout, &format!("step {step} of deployment {id} to run"), || {
        let record = deployment_record(server, id);
        let status = record["status"].as_str().unwrap_or_default().to_owned();
        assert!(!is_terminal(&status), "deployment {id} ended before its {step} step: {record}");
        record["steps"]
            .as_array()
            .is_some_and(|steps| {
                steps.iter().any(|s| s["name"] == step && s["status"] == "running")
            })
            .then_some(())
    });
}

/// A container Berth labelled for an application.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelledContainer {
    pub name: String,
    /// Its `berth.deployment` label.
    pub deployment: String,
    /// Docker's state word: `running`, `exited`, `created`, `restarting`...
    pub state: String,
}

/// Every container (any state) labelled `berth.service=<application_id>`, by name.
pub fn application_containers(application_id: &str) -> Vec<LabelledContainer> {
    let filter = format!("label=berth.service={application_id}");
    let listed = docker(&[
        "ps",
        "--all",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.Label \"berth.deployment\"}} {{.State}}",
    ]);
    let mut containers: Vec<LabelledContainer> = listed
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some(LabelledContainer {
                name: parts.next()?.to_owned(),
                deployment: parts.next().unwrap_or_default().to_owned(),
                state: parts.next().unwrap_or_default().to_owned(),
            })
        })
        .collect();
    containers.sort();
    containers
}

/// Every container (any state) labelled `berth.deployment=<deployment_id>`.
pub fn deployment_containers(deployment_id: &str) -> Vec<String> {
    let filter = format!("label=berth.deployment={deployment_id}");
    docker(&["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the containers of `application_id` are exactly `instances` running
/// containers of deployment `current`: nothing of another deployment remains.
#[track_caller]
pub fn wait_for_only_current_containers(
    application_id: &str,
    current: &str,
    instances: usize,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let last = application_containers(application_id);
        let converged = last.len() == instances
            && last.iter().all(|c| c.deployment == current && c.state == "running");
        if converged {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "after {timeout:?} the containers of application {application_id} are not \
                 {instances} running container(s) of deployment {current}: {last:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `docker exec CONTAINER sh -c SCRIPT`, which must succeed.
#[track_caller]
pub fn exec_in_container(container: &str, script: &str) -> String {
    docker(&["exec", container, "sh", "-c", script])
}

/// Images labelled `berth.project=<project_id>`, as `repository:tag`.
pub fn project_images(project_id: &str) -> Vec<String> {
    let filter = format!("label=berth.project={project_id}");
    let output =
        docker_output(&["images", "--filter", &filter, "--format", "{{.Repository}}:{{.Tag}}"]);
    output
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect())
        .unwrap_or_default()
}
