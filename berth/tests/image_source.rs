//! Applications from an image reference, end to end: an image pushed to a real local
//! registry (Debian's docker-registry on 127.0.0.1) and absent from the engine is pulled
//! and served through the proxy; a reference the registry does not have fails the
//! deployment at `build` naming the reference. The pulled image is not Berth's (it carries
//! no Berth label), so deleting the project leaves it alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::harness::{
    docker, docker_output, files_in, labelled_objects, unique_name, ImageGuard, ServerOptions,
    TestServer,
};
use test_support::registry::LocalRegistry;

const DELETE_DEADLINE: Duration = Duration::from_secs(60);

fn berth_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn image_present(reference: &str) -> bool {
    docker_output(&["image", "inspect", reference]).is_ok_and(|output| output.status.success())
}

#[test]
fn deploys_an_image_pulled_from_a_local_registry() {
    let server = TestServer::start(berth_binary(), ServerOptions::default());
    let registry = LocalRegistry::start();
    let mut images = ImageGuard::new();

    // Build an image locally from the static-page fixture with a page of our own.
    let page = format!("served from the registry {}", unique_name("page"));
    let context = server.scratch_dir().join("image-context");
    std::fs::create_dir_all(&context).expect("build context");
    for (path, content) in files_in(&fixture("static-page")) {
        let content = if path == "index.html" { format!("{page}\n") } else { content };
        std::fs::write(context.join(&path), content).expect("write the build context");
    }
    let local_tag = format!("berth-e2e-local/{}:v1", unique_name("img"));
    images.add(&local_tag);
    docker(&["build", "--quiet", "--tag", &local_tag, &context.display().to_string()]);
    let reference =
        registry.push_image(&local_tag, &format!("berth-e2e/{}:v1", unique_name("app")));
    images.add(&reference);
    docker(&["image", "rm", &local_tag]);
    assert!(!image_present(&reference), "the image must be pulled, not found locally");

    let project = unique_name("is");
    server.create_project_and_environment(&project, "production");
    server
        .cli(&[
            "application",
            "create",
            "--project",
            &project,
            "--environment",
            "production",
            "web",
            "--image",
            &reference,
            "--port",
            "8080",
        ])
        .expect_success();
    server
        .cli(&[
            "deploy",
            "--project",
            &project,
            "--environment",
            "production",
            "--application",
            "web",
            "--wait",
        ])
        .expect_success();
    let served = server.proxy_get(&server.app_host(&project, "production", "web"), "/");
    assert_eq!((served.status, served.body.trim()), (200, page.as_str()), "{served:?}");
    assert!(image_present(&reference), "the image was pulled");

    // A reference the registry does not have.
    let absent = format!("{}/berth-e2e/{}:v1", registry.address(), unique_name("absent"));
    server
        .cli(&[
            "application",
            "create",
            "--project",
            &project,
            "--environment",
            "production",
            "absent",
            "--image",
            &absent,
            "--port",
            "8080",
        ])
        .expect_success();
    let failed = server.cli(&[
        "deploy",
        "--project",
        &project,
        "--environment",
        "production",
        "--application",
        "absent",
        "--wait",
    ]);
    assert!(!failed.success(), "{failed}");
    assert!(failed.combined().contains("failed at step build"), "{failed}");
    assert!(failed.combined().contains(&absent), "names the reference:\n{failed}");

    let project_id = server.project_id(&project);
    server.cli_within(DELETE_DEADLINE, &["project", "delete", &project, "--yes"]).expect_success();
    assert_eq!(labelled_objects(&format!("berth.project={project_id}")), Vec::<String>::new());
    assert!(image_present(&reference), "the pulled image is not Berth's to delete");
}
