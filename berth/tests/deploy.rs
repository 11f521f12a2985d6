//! The whole Git-to-URL path, end to end, with a real server, proxy, Git repository and
//! Docker engine: an application created with the CLI from a fixture repository is built,
//! started and served through the edge proxy with Berth's built-in variables and the
//! user's variables at the right precedence; a secret reaches the container and nothing
//! else; a new commit is served after a redeploy; `status` and `logs` tell what runs; and
//! deleting the project removes everything labelled for it and nothing else (decoys: an
//! unlabelled container named like Berth's and another project's deployed application; a
//! container carrying the project's id under another organization's label neither blocks
//! the deletion nor is removed); and another Berth server sharing the Docker engine leaves
//! this server's images alone when it cleans up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::harness::{
    as_pairs, docker, files_containing, files_in, labelled_objects, unique_name, wait_for,
    CliOutput, ContainerGuard, ServerOptions, TestServer, BASE_IMAGE,
};

/// Deleting waits for the reconciler; a few seconds here. Longer means it hangs.
const DELETE_DEADLINE: Duration = Duration::from_secs(60);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Every CLI output of the test, to check at the end that the secret never appeared.
#[derive(Default)]
struct Transcript(Vec<CliOutput>);

impl Transcript {
    fn keep(&mut self, output: CliOutput) -> CliOutput {
        self.0.push(output.clone());
        output
    }
}

#[test]
fn deploys_from_git_redeploys_a_new_commit_and_deletes_only_what_it_owns() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let mut transcript = Transcript::default();
    // Short names: Berth's container names keep 20 characters of each part, so the decoy
    // below really looks like one of this project's containers.
    let project = unique_name("dp");
    let other_project = unique_name("dq");
    let secret = format!("{}-never-shown", unique_name("s3cret"));
    let mut repo = server.fixture_repo(&as_pairs(&files_in(&fixture("env-page"))), "main");
    let first_commit = repo.commit.clone();

    server.create_project_and_environment(&project, "production");
    let created = transcript.keep(
        server
            .cli(&[
                "application",
                "create",
                "--project",
                &project,
                "--environment",
                "production",
                "web",
                "--git",
                &repo.file_url(),
                "--port",
                "8080",
            ])
            .expect_success(),
    );
    assert!(created.stdout.contains("created application web"), "{created}");

    // Precedence: application overrides environment overrides project.
    let scopes: [(&[&str], &[&str]); 3] = [
        (&[], &["FROM_PROJECT=project", "FROM_ENVIRONMENT=project", "FROM_APPLICATION=project"]),
        (
            &["--environment", "production"],
            &["FROM_ENVIRONMENT=environment", "FROM_APPLICATION=environment"],
        ),
        (
            &["--environment", "production", "--application", "web"],
            &["FROM_APPLICATION=application"],
        ),
    ];
    for (scope, assignments) in scopes {
        for assignment in assignments {
            let mut args = vec!["env-var", "set", "--project", &project];
            args.extend(scope);
            args.push(assignment);
            transcript.keep(server.cli(&args).expect_success());
        }
    }
    // A secret's value from standard input (`KEY` alone), as a user keeps it off argv.
    transcript.keep(
        server
            .cli_with_stdin(
                &[
                    "env-var",
                    "set",
                    "--project",
                    &project,
                    "--environment",
                    "production",
                    "--application",
                    "web",
                    "--secret",
                    "SECRET_TOKEN",
                ],
                &format!("{secret}\n"),
            )
            .expect_success(),
    );

    let deployed = transcript.keep(
        server
            .cli(&["deploy", "--project", &project, "--environment", "production", "--wait"])
            .expect_success(),
    );
    let host = server.app_host(&project, "production", "web");
    let url = format!("http://{host}:{}/", server.proxy_port());
    assert!(deployed.combined().contains(&url), "deploy --wait prints the URL {url}:\n{deployed}");
    let deployments = transcript.keep(
        server
            .cli(&[
                "deployment",
                "list",
                "--project",
                &project,
                "--environment",
                "production",
                "--output",
                "json",
            ])
            .expect_success(),
    );
    let first_deployment = deployments.json()[0]["id"].as_str().expect("deployment id").to_owned();

    let page = server.proxy_get(&host, "/");
    assert_eq!(page.status, 200, "{page:?}");
    for expected in [
        "content: version one".to_owned(),
        "PORT=8080".to_owned(),
        format!("BERTH_PROJECT_NAME={project}"),
        "BERTH_ENVIRONMENT_NAME=production".to_owned(),
        "BERTH_APPLICATION_NAME=web".to_owned(),
        format!("BERTH_GIT_COMMIT={first_commit}"),
        format!("BERTH_DEPLOYMENT_ID={first_deployment}"),
        "FROM_PROJECT=project".to_owned(),
        "FROM_ENVIRONMENT=environment".to_owned(),
        "FROM_APPLICATION=application".to_owned(),
        // The secret reached the container (the application chose to show it).
        format!("SECRET_TOKEN={secret}"),
    ] {
        assert!(
            page.body.lines().any(|line| line == expected),
            "page lacks {expected:?}:\n{}",
            page.body
        );
    }

    // The secret is write-only: masked in every listing and absent from everything else.
    for scope in [
        vec!["--project", &project],
        vec!["--project", &project, "--environment", "production"],
        vec!["--project", &project, "--environment", "production", "--application", "web"],
    ] {
        for output in [&["--output", "table"][..], &["--output", "json"][..]] {
            let mut args = vec!["env-var", "list"];
            args.extend(&scope);
            args.extend(output);
            transcript.keep(server.cli(&args).expect_success());
        }
    }
    let listed = transcript.0.last().expect("env-var list output").clone();
    assert!(listed.stdout.contains("SECRET_TOKEN"), "the secret's name is listed:\n{listed}");
    let shown = transcript.keep(
        server
            .cli(&[
                "application",
                "show",
                "--project",
                &project,
                "--environment",
                "production",
                "web",
                "--output",
                "json",
            ])
            .expect_success(),
    );
    assert_eq!(shown.json()["url"], url.as_str(), "{shown}");
    let application_id = shown.json()["id"].as_str().expect("application id").to_owned();
    transcript.keep(server.cli(&["deployment", "logs", &first_deployment]).expect_success());
    transcript.keep(
        server.cli(&["deployment", "show", &first_deployment, "--output", "json"]).expect_success(),
    );

    // `status` says the application runs, at which commit; `logs` shows its output.
    let status = transcript.keep(
        server
            .cli(&["status", "--project", &project, "--environment", "production"])
            .expect_success(),
    );
    let web_line = status.stdout.lines().find(|line| line.starts_with("web ")).unwrap_or_default();
    assert!(web_line.contains("running"), "status shows web running:\n{status}");
    assert!(web_line.contains(&first_commit[..7]), "status shows the commit:\n{status}");
    let logs =
        wait_for(Duration::from_secs(20), "the application's start-up line in `logs`", || {
            let logs = server.cli(&[
                "logs",
                "--project",
                &project,
                "--environment",
                "production",
                "--application",
                "web",
            ]);
            logs.stdout.contains("env-page: serving version one on port 8080").then_some(logs)
        });
    transcript.keep(logs);

    // A new commit, redeployed, is served; the previous container is retired.
    let second_commit = repo.commit(&[("content.txt", "version two\n")], "main");
    transcript.keep(
        server
            .cli(&["deploy", "--project", &project, "--environment", "production", "--wait"])
            .expect_success(),
    );
    let page = server.proxy_get(&host, "/");
    assert!(page.body.contains("content: version two"), "new content served:\n{}", page.body);
    assert!(page.body.contains(&format!("BERTH_GIT_COMMIT={second_commit}")), "{}", page.body);
    let running =
        docker(&["ps", "--quiet", "--filter", &format!("label=berth.service={application_id}")]);
    assert_eq!(running.lines().count(), 1, "one running container after the redeploy:\n{running}");

    // Decoys that deleting the project must not touch.
    let mut decoys = ContainerGuard::new();
    let unlabelled_decoy = format!("berth-{project}-production-web-decoy");
    decoys.run(&unlabelled_decoy, &[BASE_IMAGE, "sleep", "600"]);
    let project_id = server.project_id(&project);
    server.create_project_and_environment(&other_project, "production");
    server
        .cli(&[
            "application",
            "create",
            "--project",
            &other_project,
            "--environment",
            "production",
            "web",
            "--git",
            &repo.file_url(),
            "--port",
            "8080",
        ])
        .expect_success();
    server
        .cli(&["deploy", "--project", &other_project, "--environment", "production", "--wait"])
        .expect_success();
    let other_host = server.app_host(&other_project, "production", "web");
    let other_project_id = server.project_id(&other_project);
    let other_objects_before = labelled_objects(&format!("berth.project={other_project_id}"));

    let deleted =
        transcript.keep(server.cli(&["project", "delete", &project, "--yes"]).expect_success());
    assert!(deleted.combined().contains(&format!("deleted project {project}")), "{deleted}");

    // Nothing labelled for the project remains: containers, networks, volumes, images.
    assert_eq!(
        labelled_objects(&format!("berth.project={project_id}")),
        Vec::<String>::new(),
        "objects labelled for the deleted project remain"
    );
    let listed = server.cli(&["project", "list", "--output", "json"]).expect_success();
    assert!(!listed.stdout.contains(&format!("\"{project}\"")), "project still listed:\n{listed}");
    let gone = server.proxy_get(&host, "/");
    assert_eq!(gone.status, 404, "the deleted application is no longer routed: {gone:?}");
    // The decoys and the other project are untouched and still served.
    let state = docker(&["inspect", "--format", "{{.State.Running}}", &unlabelled_decoy]);
    assert_eq!(state.trim(), "true", "the unlabelled decoy {unlabelled_decoy} still runs");
    assert_eq!(
        labelled_objects(&format!("berth.project={other_project_id}")),
        other_objects_before,
        "the other project's containers, network and images are untouched"
    );
    let other_page = server.proxy_get(&other_host, "/");
    assert!(other_page.body.contains("content: version two"), "{other_page:?}");

    // The secret never appeared anywhere but inside the container.
    for output in &transcript.0 {
        assert!(
            !output.combined().contains(&secret),
            "`berth {}` printed the secret",
            output.args.join(" ")
        );
    }
    assert!(!server.server_log().contains(&secret), "the server log contains the secret");
    assert!(!server.proxy_log().contains(&secret), "the proxy log contains the secret");
    assert_eq!(
        files_containing(server.data_dir(), &secret),
        Vec::<PathBuf>::new(),
        "files in the data dir hold the secret in clear"
    );
}

#[test]
fn deleting_a_project_ignores_another_organizations_objects_naming_it() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("dr");
    server.create_project_and_environment(&project, "production");
    let project_id = server.project_id(&project);
    // Another Berth server's (organization's) object that names this project's id: Berth
    // must neither remove it nor wait for it to disappear.
    let mut decoys = ContainerGuard::new();
    let foreign_decoy = format!("berth-{project}-production-web-foreign");
    let labels = [
        "berth.managed-by=berth".to_owned(),
        "berth.organization=00000000-0000-4000-8000-00000000d0c0".to_owned(),
        format!("berth.project={project_id}"),
    ];
    let mut args: Vec<&str> = Vec::new();
    for label in &labels {
        args.extend(["--label", label]);
    }
    args.extend([BASE_IMAGE, "sleep", "600"]);
    decoys.run(&foreign_decoy, &args);

    // A deletion with nothing to remove takes a reconcile pass (well under a second);
    // waiting longer means it waits for the other organization's container.
    let deleted = server
        .cli_within(Duration::from_secs(20), &["project", "delete", &project, "--yes"])
        .expect_success();
    assert!(deleted.combined().contains(&format!("deleted project {project}")), "{deleted}");
    let state = docker(&["inspect", "--format", "{{.State.Running}}", &foreign_decoy]);
    assert_eq!(state.trim(), "true", "the other organization's container still runs");
}

/// Two Berth servers (two organizations) may share one Docker engine, as the tests here do:
/// one server's cleanup must not remove the images the other keeps.
#[test]
fn another_servers_cleanup_keeps_this_servers_images() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let neighbour = TestServer::start(berth_binary(), ServerOptions::default());
    let project = unique_name("di");
    server.create_project_and_environment(&project, "production");
    let mut repo = server.fixture_repo(&as_pairs(&files_in(&fixture("static-page"))), "main");
    server
        .cli(&[
            "application",
            "create",
            "--project",
            &project,
            "--environment",
            "production",
            "web",
            "--git",
            &repo.file_url(),
            "--port",
            "8080",
        ])
        .expect_success();
    let deploy = ["deploy", "--project", &project, "--environment", "production", "--wait"];
    server.cli(&deploy).expect_success();
    let listed = server
        .cli(&[
            "deployment",
            "list",
            "--project",
            &project,
            "--environment",
            "production",
            "--output",
            "json",
        ])
        .expect_success();
    let first_image =
        listed.json()[0]["services"][0]["image"].as_str().expect("the deployed image").to_owned();
    // A second version: the first image is no longer used by a container, but the server
    // keeps it (the last successful deployments stay available).
    repo.commit(&[("index.html", "second version\n")], "main");
    server.cli(&deploy).expect_success();
    let shown = server
        .cli(&[
            "application",
            "show",
            "--project",
            &project,
            "--environment",
            "production",
            "web",
            "--output",
            "json",
        ])
        .expect_success();
    let application_id = shown.json()["id"].as_str().expect("application id").to_owned();
    let service_filter = format!("label=berth.service={application_id}");
    wait_for(Duration::from_secs(30), "the retired container to be removed", || {
        (docker(&["ps", "--all", "--quiet", "--filter", &service_filter]).lines().count() == 1)
            .then_some(())
    });
    let image_exists = || {
        test_support::harness::docker_output(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &first_image,
        ])
        .is_ok_and(|output| output.status.success())
    };
    // Kept by this server for rollbacks (the last --keep-images successful deployments).
    assert!(
        image_exists(),
        "the image {first_image} of the previous successful deployment is gone; this server \
         keeps it for rollbacks, so another Berth server sharing the engine removed it:\n{}",
        neighbour.server_log()
    );

    // The neighbour runs a cleanup pass: deleting one of its projects waits for one.
    let other_project = unique_name("dj");
    neighbour.create_project_and_environment(&other_project, "production");
    neighbour
        .cli_within(DELETE_DEADLINE, &["project", "delete", &other_project, "--yes"])
        .expect_success();
    assert!(
        image_exists(),
        "the other server removed this server's image {first_image}:\n{}",
        neighbour.server_log()
    );
}
