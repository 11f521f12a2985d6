//! Behaviour of `run` and `spawn_detached` against real processes (`/bin/sh`, `sleep`):
//! redaction, exit codes, environment, timeouts that kill the whole process group, and
//! detached processes in their own group.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_process::{
    is_alive, run, spawn_detached, terminate_group, InheritEnv, OutputStream, ProcessError,
    ProcessSpec, REDACTION_MASK,
};

fn sh(script: &str, timeout: Duration) -> ProcessSpec {
    ProcessSpec::new("/bin/sh", timeout).arg("-c").arg(script)
}

/// Whether `pid` is gone or a zombie (a killed orphan may wait for init to reap it).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        }
    }
}

fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn output_lines_are_redacted_before_anyone_sees_them() {
    let secret = "tok-3f9a1c";
    let spec = sh(
        &format!("echo \"header: {secret}\"; echo \"err {secret}{secret}\" >&2; printf 'progress 1\\rprogress 2\\r\\n'"),
        Duration::from_secs(10),
    )
    .redact(secret);
    let mut seen = Vec::new();
    let output = run(&spec, |line| seen.push(line.to_owned())).await.unwrap();

    assert!(output.success());
    for line in seen.iter().chain(output.last_lines.iter().map(|line| &line.text)) {
        assert!(!line.contains(secret), "secret leaked in {line:?}");
    }
    assert!(seen.contains(&format!("header: {REDACTION_MASK}")), "{seen:?}");
    assert!(seen.contains(&format!("err {REDACTION_MASK}{REDACTION_MASK}")), "{seen:?}");
    assert!(seen.contains(&"progress 1".to_owned()) && seen.contains(&"progress 2".to_owned()));
    let stderr: Vec<_> = output.lines_of(OutputStream::Stderr).collect();
    assert_eq!(stderr, [format!("err {REDACTION_MASK}{REDACTION_MASK}")]);
}

#[tokio::test]
async fn exit_codes_are_reported_and_failures_quote_the_last_line() {
    let output =
        run(&sh("echo out; echo 'fatal: it broke' >&2; exit 3", Duration::from_secs(10)), |_| {})
            .await
            .unwrap();
    assert_eq!(output.code(), Some(3));
    assert!(!output.success());
    let error = output.check_success().unwrap_err();
    assert!(matches!(error, ProcessError::Failed { .. }));
    assert_eq!(error.to_string(), "/bin/sh failed (exit status: 3): fatal: it broke");

    let output = run(&sh("exit 0", Duration::from_secs(10)), |_| {}).await.unwrap();
    assert_eq!(output.code(), Some(0));
    assert!(output.check_success().is_ok());
}

#[tokio::test]
async fn only_the_last_lines_are_kept() {
    let spec = sh("for i in 1 2 3 4 5 6; do echo line$i; done", Duration::from_secs(10))
        .keep_last_lines(2);
    let mut count = 0;
    let output = run(&spec, |_| count += 1).await.unwrap();
    assert_eq!(count, 6);
    let kept: Vec<_> = output.lines_of(OutputStream::Stdout).collect();
    assert_eq!(kept, ["line5", "line6"]);
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_naming_it() {
    let spec = ProcessSpec::new("/nonexistent/berth-test-program", Duration::from_secs(5));
    let error = run(&spec, |_| {}).await.unwrap_err();
    assert!(matches!(error, ProcessError::Spawn { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with("could not start /nonexistent/berth-test-program: "),
        "{error}"
    );
}

#[tokio::test]
async fn environment_can_be_cleared_and_working_directory_set() {
    let dir = tempfile::tempdir().unwrap();
    // Some variable of this process other than HOME: it must not reach the child.
    let (inherited, _) = std::env::vars()
        .find(|(name, _)| {
            name != "HOME" && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .expect("the test process has environment variables");
    let script = format!("echo \"foo=$FOO leak=${{{inherited}:-none}} home=${{HOME:-none}}\"; pwd");
    let spec = sh(&script, Duration::from_secs(10))
        .inherit_env(InheritEnv::Only(vec!["HOME".into()]))
        .env("FOO", "bar")
        .cwd(dir.path());
    let output = run(&spec, |_| {}).await.unwrap();
    let lines: Vec<_> = output.lines_of(OutputStream::Stdout).collect();
    let home = std::env::var("HOME").unwrap_or_else(|_| "none".to_owned());
    assert_eq!(lines[0], format!("foo=bar leak=none home={home}"));
    assert_eq!(std::path::Path::new(lines[1]), dir.path().canonicalize().unwrap());

    let spec =
        sh("echo \"home=${HOME:-none}\"", Duration::from_secs(10)).inherit_env(InheritEnv::Nothing);
    let output = run(&spec, |_| {}).await.unwrap();
    assert_eq!(output.lines_of(OutputStream::Stdout).collect::<Vec<_>>(), ["home=none"]);
}

#[tokio::test]
async fn a_timeout_kills_the_process_and_everything_it_started() {
    // The shell starts a grandchild and prints its pid, then waits: both must die.
    let spec = sh("sleep 30 & echo $!; wait", Duration::from_millis(300));
    let mut grandchild = None;
    let started = Instant::now();
    let error = run(&spec, |line| grandchild = line.trim().parse::<u32>().ok()).await.unwrap_err();

    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(matches!(error, ProcessError::TimedOut { .. }), "{error:?}");
    assert_eq!(error.to_string(), "/bin/sh did not finish within 300ms and was killed");
    let grandchild = grandchild.expect("the script printed the pid of its sleep");
    wait_until("the grandchild is dead", Duration::from_secs(5), || is_dead(grandchild));
}

#[tokio::test]
async fn a_single_sleep_is_killed_quickly() {
    let started = Instant::now();
    let error = run(&ProcessSpec::new("sleep", Duration::from_millis(200)).arg("30"), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, ProcessError::TimedOut { .. }));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn abandoning_a_run_kills_its_process_group() {
    let spec = sh("sleep 30 & echo $!; wait", Duration::from_secs(60));
    let grandchild = Arc::new(Mutex::new(None));
    let record = Arc::clone(&grandchild);
    let abandoned = tokio::time::timeout(
        Duration::from_millis(500),
        run(&spec, move |line| *record.lock().unwrap() = line.trim().parse::<u32>().ok()),
    )
    .await;
    assert!(abandoned.is_err(), "the run should still have been going");
    let grandchild = grandchild.lock().unwrap().expect("the script printed the pid of its sleep");
    wait_until("the grandchild is dead", Duration::from_secs(5), || is_dead(grandchild));
}

#[test]
fn detached_processes_run_in_their_own_group_and_log_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("proxy.log");
    std::fs::write(&log, "previous run\n").unwrap();
    let spec = sh("echo started; echo oops >&2; exec sleep 30", Duration::from_millis(1));

    let pid = spawn_detached(&spec, &log).unwrap();
    wait_until("the log has both streams", Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|text| text.contains("started") && text.contains("oops"))
    });
    // Appended, not truncated; and the 1 ms timeout does not apply to detached processes.
    assert!(std::fs::read_to_string(&log).unwrap().starts_with("previous run\n"));
    assert!(is_alive(pid));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<_> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    assert_eq!(fields[2], pid.to_string(), "process group id is the pid");

    terminate_group(pid).unwrap();
    // The reaper thread collects it, so the pid disappears entirely.
    wait_until("the detached process is gone", Duration::from_secs(5), || !is_alive(pid));
    // Terminating what is already gone is success.
    terminate_group(pid).unwrap();
}

#[test]
fn special_pids_are_never_signalled() {
    assert!(terminate_group(0).is_err());
    assert!(terminate_group(1).is_err());
    assert!(!is_alive(0));
}
