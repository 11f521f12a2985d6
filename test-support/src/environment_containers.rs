//! Reading the containers Berth runs for one environment, as the environment, clone and
//! preview tests check them: the application's container, a container's address on its
//! network, and whether a PostgreSQL server answers from inside another container (the
//! isolation checks).

use crate::databases::try_docker;
use crate::harness::docker;

/// The running application container of an environment (one instance).
pub fn application_container(environment_id: &str) -> String {
    let listed = docker(&[
        "ps",
        "--filter",
        &format!("label=berth.environment={environment_id}"),
        "--filter",
        "label=berth.service-kind=application",
        "--format",
        "{{.Names}}",
    ]);
    listed
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no running application container in {environment_id}"))
        .to_owned()
}

/// The container's IP address on its network(s).
pub fn container_ip(name: &str) -> String {
    docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ])
    .trim()
    .to_owned()
}

/// From inside `container`, sends PostgreSQL's SSLRequest to `host`:5432 and returns the
/// first byte of the answer (`N` from a reachable server; empty when unreachable).
pub fn postgres_answer_from(container: &str, host: &str) -> String {
    let script = r"printf '\000\000\000\010\004\322\026\057' | timeout 5 nc $0 5432 | head -c 1";
    try_docker(&["exec", container, "sh", "-c", script, host]).unwrap_or_default()
}

/// The value of `variable` in container `name`'s environment (as Berth configured it).
#[track_caller]
pub fn container_env(name: &str, variable: &str) -> String {
    let listed = docker(&["container", "inspect", "--format", "{{json .Config.Env}}", name]);
    let entries: Vec<String> = serde_json::from_str(listed.trim()).expect("the container's env");
    let prefix = format!("{variable}=");
    entries
        .iter()
        .find_map(|entry| entry.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {variable} in the environment of {name}"))
}
