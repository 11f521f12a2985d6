//! Builds and image availability: a Dockerfile builds into an image carrying Berth's
//! labels (and the build cache makes the second build fast), failures name the step, a
//! missing Dockerfile is named relative to the repository, the deadline is enforced, and
//! `ensure_image` pulls from a real local registry when the image is not present.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_domain::source::{ImageReference, RepositoryPath};
use berth_engine::adapters::{BuildError, BuildRequest, Builder};
use bollard::container::ListContainersOptions;
use test_support::registry::LocalRegistry;

use crate::support::{checkout, image_labels, unique, wait_for, Fixture, RecordedLog};

pub(crate) fn build_request(
    checkout: &Path,
    root: &str,
    dockerfile: &str,
    tag: &str,
    labels: BTreeMap<String, String>,
) -> BuildRequest {
    BuildRequest {
        checkout_dir: checkout.to_owned(),
        root_path: RepositoryPath::parse("root path", root).unwrap(),
        dockerfile_path: RepositoryPath::parse("dockerfile", dockerfile).unwrap(),
        build_args: BTreeMap::new(),
        tag: tag.to_owned(),
        labels,
        timeout: Duration::from_secs(120),
    }
}

#[tokio::test]
async fn a_dockerfile_builds_into_a_labelled_image_and_rebuilds_from_cache() {
    let fixture = Fixture::new().await;
    let base = fixture.base_image().await;
    let name = unique("build");
    let tag = format!("{name}/web:1");
    fixture.cleanup.image(&tag);
    let dockerfile = format!(
        "FROM {base}\n\
         ARG FLAVOUR=plain\n\
         COPY . /www/\n\
         RUN test ! -e /www/key.secret && test ! -e /www/target/big && echo \"flavour=$FLAVOUR\" > /www/flavour.txt\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
    );
    let repository = checkout(&[
        ("app/Dockerfile", &dockerfile),
        ("app/.dockerignore", "*.secret\ntarget\n"),
        // Unique content: the first build really builds (no cache from earlier runs).
        ("app/index.html", &format!("hello from {name}\n")),
        ("app/key.secret", "do not send\n"),
        ("app/target/big", "build output\n"),
    ]);
    let mut request =
        build_request(repository.path(), "app", "Dockerfile", &tag, image_labels(&name));
    request.build_args.insert("FLAVOUR".to_owned(), "spicy".to_owned());

    let log = RecordedLog::default();
    let started = Instant::now();
    fixture
        .engine
        .build(&request, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{:#?}", log.lines()));
    let cold = started.elapsed();
    assert!(fixture.engine.image_exists(&tag).await.unwrap());
    assert!(log.contains("Step 1/"), "{:#?}", log.lines());
    assert!(log.contains(&format!("Successfully tagged {tag}")), "{:#?}", log.lines());

    let image = fixture.docker.inspect_image(&tag).await.unwrap();
    // When another build of the same steps runs concurrently, the legacy builder's cache
    // may pick that build's intermediate image and the rebuild below then gives the tag a
    // new image, leaving this one untagged: remove it by id too.
    fixture.cleanup.image(image.id.as_deref().unwrap());
    let labels = image.config.unwrap().labels.unwrap();
    assert_eq!(labels.get("berth.managed-by").map(String::as_str), Some("berth"));
    assert_eq!(labels.get("berth.project"), Some(&name));

    let warm_log = RecordedLog::default();
    let started = Instant::now();
    fixture.engine.build(&request, &warm_log).await.unwrap();
    let warm = started.elapsed();
    assert!(warm_log.contains("Using cache"), "{:#?}", warm_log.lines());
    eprintln!("timing: build cold {cold:?}, warm {warm:?}");
}

#[tokio::test]
async fn a_failing_step_is_named() {
    let fixture = Fixture::new().await;
    let base = fixture.base_image().await;
    let tag = format!("{}/broken:1", unique("failing"));
    fixture.cleanup.image(&tag);
    // The failing step is the first after FROM, so no intermediate image is committed.
    let repository = checkout(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo before && false\nCMD [\"true\"]\n"),
    )]);
    let log = RecordedLog::default();
    let request = build_request(repository.path(), ".", "Dockerfile", &tag, BTreeMap::new());
    let error = fixture.engine.build(&request, &log).await.unwrap_err();
    match &error {
        BuildError::Failed { step, message } => {
            assert_eq!(step, "RUN echo before && false");
            assert!(message.contains("returned a non-zero code: 1"), "{message}");
        }
        other => panic!("expected a failed step, got {other:?}"),
    }
    assert!(log.contains("before"), "{:#?}", log.lines());
    assert!(!fixture.engine.image_exists(&tag).await.unwrap());
}

#[tokio::test]
async fn an_unparsable_dockerfile_is_a_build_failure() {
    let fixture = Fixture::new().await;
    let base = fixture.base_image().await;
    let tag = format!("{}/unparsable:1", unique("unparsable"));
    fixture.cleanup.image(&tag);
    let repository = checkout(&[("Dockerfile", &format!("FROM {base}\nFROBNICATE now\n"))]);
    let request = build_request(repository.path(), ".", "Dockerfile", &tag, BTreeMap::new());
    let error = fixture.engine.build(&request, &RecordedLog::default()).await.unwrap_err();
    match &error {
        BuildError::Failed { step, message } => {
            assert_eq!(step, "the Dockerfile");
            assert!(message.to_lowercase().contains("unknown instruction"), "{message}");
        }
        other => panic!("expected a build failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_dockerfile_is_named_relative_to_the_repository() {
    let fixture = Fixture::new().await;
    let repository = checkout(&[("app/index.html", "hello\n")]);
    let cases = [
        ("app", "Dockerfile", "app/Dockerfile"),
        (".", "deploy/Dockerfile.web", "deploy/Dockerfile.web"),
        ("absent", "Dockerfile", "absent/Dockerfile"),
    ];
    for (root, dockerfile, expected) in cases {
        let request = build_request(
            repository.path(),
            root,
            dockerfile,
            "berth-test/never:1",
            BTreeMap::new(),
        );
        match fixture.engine.build(&request, &RecordedLog::default()).await {
            Err(BuildError::DockerfileMissing { path }) => assert_eq!(path, expected),
            other => panic!("expected DockerfileMissing for {root}/{dockerfile}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_build_deadline_is_enforced_and_the_step_container_goes_away() {
    let fixture = Fixture::new().await;
    let base = fixture.base_image().await;
    let name = unique("slow");
    let tag = format!("{name}/slow:1");
    fixture.cleanup.image(&tag);
    let repository =
        checkout(&[("Dockerfile", &format!("FROM {base}\nRUN sleep 60 && echo {name}\n"))]);
    let mut request = build_request(repository.path(), ".", "Dockerfile", &tag, BTreeMap::new());
    request.timeout = Duration::from_secs(3);
    let started = Instant::now();
    let error = fixture.engine.build(&request, &RecordedLog::default()).await.unwrap_err();
    assert!(matches!(error, BuildError::Timeout { seconds: 3 }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // Dropping the request cancels the build; forcerm removes the RUN step's container.
    let started = Instant::now();
    wait_for("the cancelled step's container to be removed", Duration::from_secs(30), || async {
        let options = ListContainersOptions::<String> { all: true, ..Default::default() };
        let containers = fixture.docker.list_containers(Some(options)).await.unwrap();
        let left = containers
            .iter()
            .any(|container| container.command.as_deref().unwrap_or_default().contains(&name));
        (!left).then_some(())
    })
    .await;
    eprintln!(
        "timing: cancelled build step container gone {:?} after the deadline",
        started.elapsed()
    );
}

#[tokio::test]
async fn ensure_image_uses_the_local_image_else_pulls_from_a_registry() {
    let fixture = Fixture::new().await;
    let base = fixture.base_image().await;
    let registry = LocalRegistry::start();
    let reference = registry.push_image(&base, &format!("{}/app:1", unique("pull")));
    fixture.cleanup.image(&reference);
    assert!(!fixture.engine.image_exists(&reference).await.unwrap());

    let log = RecordedLog::default();
    let started = Instant::now();
    let parsed = ImageReference::parse(&reference).unwrap();
    fixture
        .engine
        .ensure_image(&parsed, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", registry.log()));
    eprintln!("timing: pull from the local registry {:?}", started.elapsed());
    assert!(fixture.engine.image_exists(&reference).await.unwrap());
    assert!(log.contains("pulling"), "{:#?}", log.lines());

    let again = RecordedLog::default();
    fixture.engine.ensure_image(&parsed, &again).await.unwrap();
    assert!(again.contains("using the local image"), "{:#?}", again.lines());
}

#[tokio::test]
async fn a_pull_from_an_unreachable_registry_fails_with_the_engine_message() {
    let fixture = Fixture::new().await;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let reference = format!("127.0.0.1:{closed_port}/berth-test/absent:1");
    let error = fixture
        .engine
        .ensure_image(&ImageReference::parse(&reference).unwrap(), &RecordedLog::default())
        .await
        .unwrap_err();
    match &error {
        BuildError::PullFailed { reference: failed, message } => {
            assert_eq!(failed, &reference);
            assert!(message.contains("connection refused"), "{message}");
        }
        other => panic!("expected PullFailed, got {other:?}"),
    }
    eprintln!("PullFailed message: {error}");
}
