//! Containers, networks and cleanup: an application is reachable through its port
//! published on 127.0.0.1 and by its alias on its network, its output is readable and
//! followable, limits are applied (and an OOM kill is reported), and listing and removal
//! see only what carries `berth.managed-by=berth`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use berth_domain::plan::ObjectKind;
use berth_engine::adapters::{Builder, ContainerSpec, NetworkSpec, Runtime};
use bollard::container::{Config, CreateContainerOptions, KillContainerOptions};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::volume::CreateVolumeOptions;
use futures_util::StreamExt;

use crate::images::build_request;
use crate::support::{checkout, http_get, image_labels, unique, wait_for, Fixture, RecordedLog};

pub(crate) fn owned_labels(test: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("berth.managed-by".to_owned(), "berth".to_owned()),
        ("berth.project".to_owned(), test.to_owned()),
        ("berth.environment".to_owned(), "test".to_owned()),
    ])
}

/// Builds `dockerfile_tail` on top of the base image as `<name>/app:1`, labelled as
/// Berth's.
pub(crate) async fn build_image(fixture: &Fixture, name: &str, dockerfile_tail: &str) -> String {
    let base = fixture.base_image().await;
    let tag = format!("{name}/app:1");
    fixture.cleanup.image(&tag);
    let repository = checkout(&[("Dockerfile", &format!("FROM {base}\n{dockerfile_tail}"))]);
    let request = build_request(repository.path(), ".", "Dockerfile", &tag, image_labels(name));
    let log = RecordedLog::default();
    fixture
        .engine
        .build(&request, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{:#?}", log.lines()));
    tag
}

pub(crate) async fn network(fixture: &Fixture, name: &str) -> String {
    let network = format!("{name}-net");
    fixture.cleanup.network(&network);
    fixture
        .engine
        .ensure_network(&NetworkSpec { name: network.clone(), labels: owned_labels(name) })
        .await
        .unwrap();
    network
}

pub(crate) fn spec(name: &str, image: &str, network: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.to_owned(),
        image: image.to_owned(),
        env: Vec::new(),
        labels: owned_labels(name),
        network: network.to_owned(),
        network_aliases: Vec::new(),
        port: None,
        cpu_millis: None,
        memory_bytes: None,
        command: None,
        mounts: Vec::new(),
    }
}

#[tokio::test]
async fn an_application_is_reachable_on_loopback_and_its_output_readable() {
    let fixture = Fixture::new().await;
    let name = unique("web");
    let image = build_image(
        &fixture,
        &name,
        "RUN mkdir -p /www && echo hello-from-berth > /www/index.html\n\
         EXPOSE 8080\n\
         CMD [\"sh\", \"-c\", \"echo booted-marker greeting=$GREETING; echo to-stderr >&2; exec httpd -f -v -p 8080 -h /www\"]\n",
    )
    .await;
    let network = network(&fixture, &name).await;
    // Already done is success.
    fixture
        .engine
        .ensure_network(&NetworkSpec { name: network.clone(), labels: owned_labels(&name) })
        .await
        .unwrap();
    let inspected_network = fixture.docker.inspect_network::<String>(&network, None).await.unwrap();
    assert_eq!(inspected_network.driver.as_deref(), Some("bridge"));
    assert_eq!(
        inspected_network.labels.unwrap().get("berth.managed-by").map(String::as_str),
        Some("berth")
    );

    let container = format!("{name}-1");
    fixture.cleanup.container(&container);
    let mut web = spec(&container, &image, &network);
    web.env = vec![("GREETING".to_owned(), "hi there".to_owned())];
    web.network_aliases = vec!["web".to_owned()];
    web.port = Some(8080);
    web.cpu_millis = Some(500);
    web.memory_bytes = Some(64 * 1024 * 1024);

    let started = Instant::now();
    let state = fixture.engine.start_container(&web).await.unwrap();
    let start_returned = started.elapsed();
    let published = state.published.expect("a published port");
    assert!(published.ip().is_loopback(), "{published}");
    let response = wait_for("the application to answer", Duration::from_secs(20), || async {
        http_get(published, "/").await.filter(|response| response.contains("hello-from-berth"))
    })
    .await;
    eprintln!(
        "timing: start_container returned after {start_returned:?}, port answered after {:?}",
        started.elapsed()
    );
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert!(state.running && !state.oom_killed && state.exit_code.is_none(), "{state:?}");
    assert_eq!(state.name, container);
    assert_eq!(state.labels.get("berth.project"), Some(&container));

    // What the engine was asked for.
    let inspected = fixture.docker.inspect_container(&container, None).await.unwrap();
    let host = inspected.host_config.unwrap();
    let bindings = host.port_bindings.unwrap()["8080/tcp"].clone().unwrap();
    assert!(bindings.iter().all(|b| b.host_ip.as_deref() == Some("127.0.0.1")), "{bindings:?}");
    assert_eq!((host.memory, host.memory_swap), (Some(64 << 20), Some(64 << 20)));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.init, Some(true));
    let aliases = inspected.network_settings.unwrap().networks.unwrap()[&network].aliases.clone();
    assert!(aliases.unwrap_or_default().contains(&"web".to_owned()));

    // The alias resolves on the network (from inside the container: container-to-container
    // traffic on the test's own network).
    let exec = fixture
        .docker
        .create_exec(
            &container,
            CreateExecOptions {
                cmd: Some(vec!["wget", "-q", "-O", "-", "http://web:8080/"]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut through_alias = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        fixture.docker.start_exec(&exec.id, None).await.unwrap()
    {
        while let Some(chunk) = output.next().await {
            through_alias.push_str(&chunk.unwrap().to_string());
        }
    }
    assert!(through_alias.contains("hello-from-berth"), "{through_alias}");

    // Output, both streams.
    let lines = wait_for("the boot line in the logs", Duration::from_secs(10), || async {
        let lines = fixture.engine.container_logs(&container, 100).await.unwrap();
        lines.iter().any(|line| line == "booted-marker greeting=hi there").then_some(lines)
    })
    .await;
    assert!(lines.contains(&"to-stderr".to_owned()), "{lines:?}");
    assert_eq!(fixture.engine.container_logs(&container, 1).await.unwrap().len(), 1);

    // Following: stops when the receiver goes away, even if the container is quiet.
    let (sender, mut receiver) = tokio::sync::mpsc::channel(16);
    let engine = fixture.engine.clone();
    let follow_name = container.clone();
    let follower =
        tokio::spawn(async move { engine.follow_container_logs(&follow_name, 100, sender).await });
    let first = tokio::time::timeout(Duration::from_secs(10), receiver.recv()).await.unwrap();
    assert!(first.is_some());
    drop(receiver);
    tokio::time::timeout(Duration::from_secs(10), follower).await.unwrap().unwrap().unwrap();

    // ... and when the container stops.
    let (sender, mut receiver) = tokio::sync::mpsc::channel(16);
    let engine = fixture.engine.clone();
    let follow_name = container.clone();
    let follower =
        tokio::spawn(async move { engine.follow_container_logs(&follow_name, 0, sender).await });
    // httpd -v logs each response; request until the follower (which attaches
    // concurrently, with no backlog) has seen one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        http_get(published, "/index.html").await.unwrap();
        let line = tokio::time::timeout(Duration::from_millis(100), receiver.recv()).await;
        if let Ok(Some(line)) = line {
            assert!(line.contains("response:200"), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "no access log line was followed");
    }

    // Starting again under the same name replaces the container.
    let replaced = fixture.engine.start_container(&web).await.unwrap();
    assert_ne!(replaced.id, state.id);
    tokio::time::timeout(Duration::from_secs(10), follower).await.unwrap().unwrap().unwrap();
    assert!(fixture.engine.inspect_container(&state.id).await.unwrap().is_none());

    let started = Instant::now();
    fixture.engine.remove_container(&container, Duration::from_secs(10)).await.unwrap();
    eprintln!("timing: remove_container (SIGTERM through init) {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "httpd should stop on SIGTERM");
    assert!(fixture.engine.inspect_container(&container).await.unwrap().is_none());
    // Absent is success.
    fixture.engine.remove_container(&container, Duration::from_secs(1)).await.unwrap();
    assert!(matches!(
        fixture.engine.container_logs(&container, 10).await,
        Err(berth_engine::adapters::RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_container_past_its_memory_limit_is_reported_oom_killed() {
    let fixture = Fixture::new().await;
    let name = unique("oom");
    // dd allocates its 256 MB block and fills it from /dev/zero.
    let image = build_image(
        &fixture,
        &name,
        "CMD [\"dd\", \"if=/dev/zero\", \"of=/dev/null\", \"bs=256M\", \"count=1\"]\n",
    )
    .await;
    let network = network(&fixture, &name).await;
    let container = format!("{name}-1");
    fixture.cleanup.container(&container);
    let mut hungry = spec(&container, &image, &network);
    hungry.memory_bytes = Some(32 * 1024 * 1024);
    fixture.engine.start_container(&hungry).await.unwrap();

    let state = wait_for("the container to stop", Duration::from_secs(30), || async {
        let state = fixture.engine.inspect_container(&container).await.unwrap().unwrap();
        (!state.running).then_some(state)
    })
    .await;
    assert!(state.oom_killed, "{state:?}");
    assert_eq!(state.exit_code, Some(137), "{state:?}");
    assert_eq!(state.restart_count, 0);
}

#[tokio::test]
async fn a_container_killed_otherwise_is_not_reported_oom_killed() {
    let fixture = Fixture::new().await;
    let name = unique("killed");
    let image = build_image(&fixture, &name, "CMD [\"sleep\", \"3600\"]\n").await;
    let network = network(&fixture, &name).await;
    let container = format!("{name}-1");
    fixture.cleanup.container(&container);
    let mut sleeper = spec(&container, &image, &network);
    sleeper.memory_bytes = Some(32 * 1024 * 1024);
    fixture.engine.start_container(&sleeper).await.unwrap();
    fixture
        .docker
        .kill_container(&container, Some(KillContainerOptions { signal: "SIGKILL" }))
        .await
        .unwrap();
    // Exit code 137 without an OOM event: the engine's event log is asked (and waited on
    // for a late event) before answering.
    let started = Instant::now();
    let state = wait_for("the container to stop", Duration::from_secs(30), || async {
        let state = fixture.engine.inspect_container(&container).await.unwrap().unwrap();
        (!state.running).then_some(state)
    })
    .await;
    eprintln!("timing: inspect of a SIGKILLed container {:?}", started.elapsed());
    assert_eq!(state.exit_code, Some(137), "{state:?}");
    assert!(!state.oom_killed, "{state:?}");
}

#[tokio::test]
async fn listing_and_removal_touch_only_labelled_objects() {
    let fixture = Fixture::new().await;
    let name = unique("gc");
    let image = build_image(&fixture, &name, "CMD [\"sleep\", \"3600\"]\n").await;
    let network = network(&fixture, &name).await;
    let container = format!("{name}-1");
    fixture.cleanup.container(&container);
    let state = fixture.engine.start_container(&spec(&container, &image, &network)).await.unwrap();
    let volume = format!("{name}-data");
    fixture.cleanup.volume(&volume);
    fixture
        .docker
        .create_volume(CreateVolumeOptions {
            name: volume.clone(),
            labels: owned_labels(&name).into_iter().collect::<HashMap<_, _>>(),
            ..Default::default()
        })
        .await
        .unwrap();

    // A container named like Berth's but without its labels (from the unlabelled base).
    let decoy = format!("berth-decoy-{name}");
    fixture.cleanup.container(&decoy);
    let base = fixture.base_image().await;
    fixture
        .docker
        .create_container(
            Some(CreateContainerOptions { name: decoy.clone(), platform: None }),
            Config {
                image: Some(base),
                cmd: Some(vec!["sleep".to_owned(), "3600".to_owned()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fixture.docker.start_container::<String>(&decoy, None).await.unwrap();

    let listed = fixture.engine.list_managed().await.unwrap();
    let find = |kind: ObjectKind, name: &str| {
        listed.iter().find(|object| object.kind == kind && object.name == name).cloned()
    };
    let listed_container =
        find(ObjectKind::Container, &container).expect("the container is listed");
    assert_eq!(listed_container.id, state.id);
    assert_eq!(listed_container.labels.get("berth.project"), Some(&container));
    let listed_network = find(ObjectKind::Network, &network).expect("the network is listed");
    let listed_volume = find(ObjectKind::Volume, &volume).expect("the volume is listed");
    let listed_image = find(ObjectKind::Image, &image).expect("the image is listed");
    assert_eq!(listed_image.id, image);
    assert!(listed.iter().all(|object| object.name != decoy), "the decoy must not be listed");

    // Removal refuses what Berth does not own, and says what blocks an object in use.
    let refused = fixture.engine.remove_object(ObjectKind::Container, &decoy).await.unwrap_err();
    assert!(refused.to_string().contains("refused"), "{refused}");
    let refused =
        fixture.engine.remove_container(&decoy, Duration::from_secs(1)).await.unwrap_err();
    assert!(refused.to_string().contains("refused"), "{refused}");
    let refused =
        fixture.engine.start_container(&spec(&decoy, &image, &network)).await.unwrap_err();
    assert!(refused.to_string().contains("refused"), "{refused}");
    eprintln!("decoy: {refused}");
    let in_use = fixture.engine.remove_object(ObjectKind::Image, &image).await.unwrap_err();
    assert!(in_use.to_string().contains("in use"), "{in_use}");
    eprintln!("image in use: {in_use}");
    let in_use =
        fixture.engine.remove_object(ObjectKind::Network, &listed_network.id).await.unwrap_err();
    assert!(in_use.to_string().contains("in use"), "{in_use}");
    eprintln!("network in use: {in_use}");

    for object in [&listed_container, &listed_network, &listed_volume, &listed_image] {
        fixture.engine.remove_object(object.kind, &object.id).await.unwrap();
    }
    let listed = fixture.engine.list_managed().await.unwrap();
    for object in [&listed_container, &listed_network, &listed_volume, &listed_image] {
        assert!(
            !listed.iter().any(|seen| seen.kind == object.kind && seen.id == object.id),
            "{object:?} is still there"
        );
        // Absent is success.
        fixture.engine.remove_object(object.kind, &object.id).await.unwrap();
    }
    let decoy_state =
        fixture.engine.inspect_container(&decoy).await.unwrap().expect("the decoy survives");
    assert!(decoy_state.running);
}
