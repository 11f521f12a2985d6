//! Commands and restarts: a one-off container runs a command to completion (its output
//! streamed, its exit code returned, no port, no alias, the service's limits) and is
//! removed whatever happens (exit, timeout, a dropped caller); a command runs inside a
//! running container; Docker restarts a container once restarts are enabled; and none of
//! it touches a container without Berth's label.

use std::time::{Duration, Instant};

use berth_engine::adapters::{ContainerSpec, Runtime, RuntimeError};
use bollard::container::{Config, CreateContainerOptions, KillContainerOptions};
use bollard::models::{ContainerStateStatusEnum, RestartPolicyNameEnum};
use tokio::sync::mpsc;

use crate::containers::{build_image, network, spec};
use crate::support::{unique, wait_for, Fixture};

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

fn shell(script: &str) -> Vec<String> {
    argv(&["sh", "-c", script])
}

/// Everything sent to a channel until its sender is gone.
async fn drain(mut receiver: mpsc::Receiver<String>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(line) = receiver.recv().await {
        lines.push(line);
    }
    lines
}

/// A one-off spec the way the executor makes one for a release command: the service's
/// port, alias and limits (which the one-off must not publish or take, except the limits).
async fn one_off_spec(fixture: &Fixture, name: &str) -> ContainerSpec {
    let base = fixture.base_image().await;
    let network = network(fixture, name).await;
    let container = format!("{name}-release");
    fixture.cleanup.container(&container);
    let mut one_off = spec(&container, &base, &network);
    one_off.env = vec![("GREETING".to_owned(), "hi there".to_owned())];
    one_off.network_aliases = vec!["svc-alias".to_owned()];
    one_off.port = Some(8080);
    one_off.cpu_millis = Some(500);
    one_off.memory_bytes = Some(64 * 1024 * 1024);
    one_off
}

async fn gone(fixture: &Fixture, name: &str) -> bool {
    fixture.engine.inspect_container(name).await.unwrap().is_none()
}

#[tokio::test]
async fn a_one_off_command_returns_its_exit_code_and_output_and_leaves_nothing() {
    let fixture = Fixture::new().await;
    let name = unique("release");
    let one_off = one_off_spec(&fixture, &name).await;
    let (sender, receiver) = mpsc::channel(16);
    let lines = tokio::spawn(drain(receiver));
    let started = Instant::now();
    let code = fixture
        .engine
        .run_to_completion(
            &one_off,
            &shell("echo hi; echo err >&2; echo \"greeting=$GREETING\"; printf no-newline; exit 3"),
            Duration::from_secs(60),
            sender,
        )
        .await
        .unwrap();
    eprintln!("timing: a one-off command ran and was removed in {:?}", started.elapsed());
    assert_eq!(code, 3);
    let lines = lines.await.unwrap();
    for expected in ["hi", "err", "greeting=hi there", "no-newline"] {
        assert!(lines.contains(&expected.to_owned()), "{expected:?} missing from {lines:?}");
    }
    assert!(gone(&fixture, &one_off.name).await, "the one-off container is still there");

    // Success is 0, and the same name can be used again.
    let (sender, receiver) = mpsc::channel(16);
    let code = fixture
        .engine
        .run_to_completion(&one_off, &argv(&["echo", "again"]), Duration::from_secs(60), sender)
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(drain(receiver).await, ["again"]);
    assert!(gone(&fixture, &one_off.name).await);

    // A command that cannot start is an exit code (Docker's init reports it), not a leak.
    let (sender, receiver) = mpsc::channel(16);
    let result = fixture
        .engine
        .run_to_completion(&one_off, &argv(&["no-such-binary"]), Duration::from_secs(60), sender)
        .await;
    eprintln!("missing binary: {result:?} {:?}", drain(receiver).await);
    assert_ne!(result.ok(), Some(0));
    assert!(gone(&fixture, &one_off.name).await);
}

#[tokio::test]
async fn a_one_off_container_gets_the_limits_but_no_port_and_no_alias() {
    let fixture = Fixture::new().await;
    let name = unique("oneoff-config");
    let one_off = one_off_spec(&fixture, &name).await;
    let (sender, mut receiver) = mpsc::channel(16);
    let engine = fixture.engine.clone();
    let spec = one_off.clone();
    let run = tokio::spawn(async move {
        let script = "echo ready; while [ ! -e /tmp/go ]; do sleep 1; done; echo released";
        engine.run_to_completion(&spec, &shell(script), Duration::from_secs(60), sender).await
    });
    let ready = tokio::time::timeout(Duration::from_secs(30), receiver.recv()).await.unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));

    let inspected = fixture.docker.inspect_container(&one_off.name, None).await.unwrap();
    let host = inspected.host_config.unwrap();
    assert!(host.port_bindings.unwrap_or_default().is_empty(), "a port is published");
    assert!(inspected.config.as_ref().unwrap().exposed_ports.is_none());
    assert_eq!((host.memory, host.memory_swap), (Some(64 << 20), Some(64 << 20)));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.restart_policy.unwrap().name, Some(RestartPolicyNameEnum::NO));
    let networks = inspected.network_settings.unwrap().networks.unwrap();
    let aliases = networks[&one_off.network].aliases.clone().unwrap_or_default();
    assert!(!aliases.contains(&"svc-alias".to_owned()), "{aliases:?}");
    let labels = inspected.config.unwrap().labels.unwrap();
    assert!(one_off.labels.iter().all(|(key, value)| labels.get(key) == Some(value)));
    let state = fixture.engine.inspect_container(&one_off.name).await.unwrap().unwrap();
    assert!(state.running && state.published.is_none(), "{state:?}");

    // exec_in_container into it (it carries Berth's labels) releases it.
    let (exec_sender, exec_receiver) = mpsc::channel(16);
    let code = fixture
        .engine
        .exec_in_container(&one_off.name, &shell(": > /tmp/go; echo exec-done"), exec_sender)
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(drain(exec_receiver).await, ["exec-done"]);
    let code = tokio::time::timeout(Duration::from_secs(30), run).await.unwrap().unwrap().unwrap();
    assert_eq!(code, 0);
    assert_eq!(drain(receiver).await, ["released"]);
    assert!(gone(&fixture, &one_off.name).await);
}

#[tokio::test]
async fn a_one_off_command_past_its_timeout_is_killed_and_removed() {
    let fixture = Fixture::new().await;
    let name = unique("oneoff-timeout");
    let one_off = one_off_spec(&fixture, &name).await;
    let (sender, receiver) = mpsc::channel(16);
    let started = Instant::now();
    let error = fixture
        .engine
        .run_to_completion(
            &one_off,
            &shell("echo sleeping; sleep 30"),
            Duration::from_secs(1),
            sender,
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("timeout: {error} after {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    match &error {
        RuntimeError::Engine { operation, message } => {
            assert!(operation.starts_with("run"), "{operation}");
            assert_eq!(message, "timed out after 1 s");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(drain(receiver).await, ["sleeping"]);
    assert!(gone(&fixture, &one_off.name).await, "the timed-out container is still there");
}

#[tokio::test]
async fn a_one_off_command_runs_on_when_nobody_reads_its_output() {
    let fixture = Fixture::new().await;
    let name = unique("oneoff-unread");
    let one_off = one_off_spec(&fixture, &name).await;
    let (sender, receiver) = mpsc::channel(1);
    drop(receiver);
    let script = "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; exit 7";
    let code = fixture
        .engine
        .run_to_completion(&one_off, &shell(script), Duration::from_secs(60), sender)
        .await
        .unwrap();
    assert_eq!(code, 7);
    assert!(gone(&fixture, &one_off.name).await);
}

#[tokio::test]
async fn a_dropped_one_off_run_still_removes_its_container() {
    let fixture = Fixture::new().await;
    let name = unique("oneoff-dropped");
    let one_off = one_off_spec(&fixture, &name).await;
    let (sender, mut receiver) = mpsc::channel(16);
    let engine = fixture.engine.clone();
    let spec = one_off.clone();
    let run = tokio::spawn(async move {
        engine
            .run_to_completion(
                &spec,
                &shell("echo ready; sleep 60"),
                Duration::from_secs(120),
                sender,
            )
            .await
    });
    let ready = tokio::time::timeout(Duration::from_secs(30), receiver.recv()).await.unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));
    // A cancelled deployment drops the future mid-run.
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    wait_for("the dropped run's container to be removed", Duration::from_secs(20), || async {
        gone(&fixture, &one_off.name).await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_command_runs_inside_a_running_container() {
    let fixture = Fixture::new().await;
    let name = unique("exec");
    let image = build_image(&fixture, &name, "CMD [\"sleep\", \"3600\"]\n").await;
    let network = network(&fixture, &name).await;
    let container = format!("{name}-1");
    fixture.cleanup.container(&container);
    let mut service = spec(&container, &image, &network);
    service.env = vec![("GREETING".to_owned(), "hello".to_owned())];
    fixture.engine.start_container(&service).await.unwrap();

    let (sender, receiver) = mpsc::channel(16);
    let script = "echo out; echo err >&2; echo \"greeting=$GREETING\"; exit 5";
    let code = fixture.engine.exec_in_container(&container, &shell(script), sender).await.unwrap();
    assert_eq!(code, 5);
    let lines = drain(receiver).await;
    for expected in ["out", "err", "greeting=hello"] {
        assert!(lines.contains(&expected.to_owned()), "{expected:?} missing from {lines:?}");
    }

    let (sender, receiver) = mpsc::channel(16);
    let code =
        fixture.engine.exec_in_container(&container, &argv(&["echo", "ok"]), sender).await.unwrap();
    assert_eq!((code, drain(receiver).await), (0, vec!["ok".to_owned()]));

    // A missing program: the engine's message arrives as output, with a non-zero code.
    let (sender, receiver) = mpsc::channel(16);
    let result =
        fixture.engine.exec_in_container(&container, &argv(&["no-such-binary"]), sender).await;
    eprintln!("exec of a missing binary: {result:?} {:?}", drain(receiver).await);
    assert!(matches!(result, Ok(code) if code != 0), "{result:?}");

    // Absent, then not running.
    let (sender, _receiver) = mpsc::channel(16);
    let absent = format!("{name}-absent");
    let error = fixture.engine.exec_in_container(&absent, &argv(&["true"]), sender).await;
    assert!(matches!(error, Err(RuntimeError::NotFound(_))), "{error:?}");
    fixture
        .docker
        .kill_container(&container, Some(KillContainerOptions { signal: "SIGKILL" }))
        .await
        .unwrap();
    wait_for("the container to stop", Duration::from_secs(20), || async {
        let state = fixture.engine.inspect_container(&container).await.unwrap().unwrap();
        (!state.running).then_some(())
    })
    .await;
    let (sender, _receiver) = mpsc::channel(16);
    let error =
        fixture.engine.exec_in_container(&container, &argv(&["true"]), sender).await.unwrap_err();
    eprintln!("exec in a stopped container: {error}");
    assert!(error.to_string().contains("not running"), "{error}");
}

#[tokio::test]
async fn docker_restarts_a_container_once_restarts_are_enabled() {
    let fixture = Fixture::new().await;
    let name = unique("restart");
    let image = build_image(&fixture, &name, "CMD [\"sh\", \"-c\", \"sleep 2; exit 3\"]\n").await;
    let network = network(&fixture, &name).await;
    let container = format!("{name}-1");
    fixture.cleanup.container(&container);
    let mut crashing = spec(&container, &image, &network);
    crashing.memory_bytes = Some(64 * 1024 * 1024);
    fixture.engine.start_container(&crashing).await.unwrap();
    fixture.engine.set_restart_on_failure(&container, true).await.unwrap();

    let host = fixture.docker.inspect_container(&container, None).await.unwrap().host_config;
    let host = host.unwrap();
    assert_eq!(host.restart_policy.unwrap().name, Some(RestartPolicyNameEnum::UNLESS_STOPPED));
    // The update changes the policy only.
    assert_eq!((host.memory, host.memory_swap), (Some(64 << 20), Some(64 << 20)));

    let started = Instant::now();
    let state = wait_for("two restarts", Duration::from_secs(60), || async {
        let state = fixture.engine.inspect_container(&container).await.unwrap().unwrap();
        (state.restart_count >= 2).then_some(state)
    })
    .await;
    eprintln!("timing: restart count {} after {:?}", state.restart_count, started.elapsed());

    fixture.engine.set_restart_on_failure(&container, false).await.unwrap();
    let inspected = fixture.docker.inspect_container(&container, None).await.unwrap();
    let policy = inspected.host_config.unwrap().restart_policy.unwrap();
    assert_eq!(policy.name, Some(RestartPolicyNameEnum::NO));
    // Once it has exited for good (not merely waiting out a backoff), it stays down.
    let exited = || async {
        let inspected = fixture.docker.inspect_container(&container, None).await.unwrap();
        let status = inspected.state.unwrap().status;
        (status == Some(ContainerStateStatusEnum::EXITED)).then_some(inspected.restart_count)
    };
    let count = wait_for("the container to exit for good", Duration::from_secs(30), exited).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(exited().await, Some(count), "restarted after restarts were disabled");

    let absent = format!("{name}-absent");
    let error = fixture.engine.set_restart_on_failure(&absent, true).await;
    assert!(matches!(error, Err(RuntimeError::NotFound(_))), "{error:?}");
}

#[tokio::test]
async fn commands_and_restarts_refuse_an_unlabelled_container() {
    let fixture = Fixture::new().await;
    let name = unique("cmd-decoy");
    let base = fixture.base_image().await;
    let decoy = format!("berth-decoy-{name}");
    fixture.cleanup.container(&decoy);
    fixture
        .docker
        .create_container(
            Some(CreateContainerOptions { name: decoy.clone(), platform: None }),
            Config {
                image: Some(base.clone()),
                cmd: Some(argv(&["sleep", "3600"])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fixture.docker.start_container::<String>(&decoy, None).await.unwrap();

    let refused = fixture.engine.set_restart_on_failure(&decoy, true).await.unwrap_err();
    assert!(refused.to_string().contains("refused"), "{refused}");
    eprintln!("decoy: {refused}");
    let (sender, receiver) = mpsc::channel(16);
    let refused =
        fixture.engine.exec_in_container(&decoy, &argv(&["echo", "x"]), sender).await.unwrap_err();
    assert!(refused.to_string().contains("refused"), "{refused}");
    assert!(drain(receiver).await.is_empty());
    let network = network(&fixture, &name).await;
    let (sender, _receiver) = mpsc::channel(16);
    let refused = fixture
        .engine
        .run_to_completion(
            &spec(&decoy, &base, &network),
            &argv(&["true"]),
            Duration::from_secs(10),
            sender,
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("refused"), "{refused}");

    // The decoy is untouched: still running, its policy unchanged.
    let inspected = fixture.docker.inspect_container(&decoy, None).await.unwrap();
    assert_eq!(inspected.state.unwrap().running, Some(true));
    let policy = inspected.host_config.unwrap().restart_policy.unwrap().name;
    assert_ne!(policy, Some(RestartPolicyNameEnum::UNLESS_STOPPED));
}
