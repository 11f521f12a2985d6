//! The application part of the `apply` plan: the create request of a new application,
//! and the field-level changes (with the one PATCH request that makes them) of an existing
//! one. Numbers are compared at the precision the API stores (milliseconds, millicores).

use std::collections::BTreeMap;
use std::fmt::Display;

use berth_api::{
    CreateApplication, GitSourceInput, HealthCheckSettings, UpdateApplication, VolumeSettings,
};

use super::diff::{Action, Change, Operation, Plan};
use super::model::{ApplicationSpec, HealthCheckSpec, Visibility};

fn git_input(application: &ApplicationSpec) -> Option<GitSourceInput> {
    application.git.as_ref().map(|repository| GitSourceInput {
        repository: repository.clone(),
        branch: application.branch.clone(),
        root_path: application.root_path.clone(),
        dockerfile_path: application.dockerfile_path.clone(),
        build_args: application.build_args.clone(),
    })
}

fn health_settings(check: &HealthCheckSpec) -> HealthCheckSettings {
    HealthCheckSettings {
        kind: Some(check.kind.clone()),
        path: check.path.clone(),
        expected_status: check.expected_status.clone(),
        start_delay_secs: Some(check.start_delay_secs),
        interval_secs: Some(check.interval_secs),
        timeout_secs: Some(check.timeout_secs),
        failure_threshold: Some(check.failure_threshold),
    }
}

fn volume_settings(application: &ApplicationSpec) -> Vec<VolumeSettings> {
    application
        .volumes
        .iter()
        .map(|volume| VolumeSettings {
            name: volume.name.clone(),
            path: volume.path.clone(),
            size_gb: Some(volume.size_gb),
        })
        .collect()
}

pub(super) fn create_application(
    environment: &str,
    name: &str,
    application: &ApplicationSpec,
) -> Change {
    let mut details = Vec::new();
    match (&application.git, &application.image) {
        (Some(git), _) => details.push(format!("git {git}")),
        (None, Some(image)) => details.push(format!("image {image}")),
        (None, None) => {}
    }
    if let Some(port) = application.port {
        details.push(format!("port {port}"));
    }
    let body = CreateApplication {
        name: name.to_owned(),
        git: git_input(application),
        image: application.image.clone(),
        port: application.port,
        private: application.visibility == Visibility::Private,
        cpu: application.cpu,
        memory_mb: application.memory_mb,
        instances: Some(application.instances),
        health_check: Some(health_settings(&application.health_check)),
        release_command: application.release_command.clone(),
        drain_secs: Some(application.drain_secs),
        volumes: volume_settings(application),
        depends_on: application.depends_on.clone(),
        watch_paths: application.watch_paths.clone(),
        auto_deploy: Some(application.auto_deploy),
        ..CreateApplication::default()
    };
    Change {
        action: Action::Create,
        resource: format!("application {environment}/{name}"),
        details,
        operation: Operation::CreateApplication {
            environment: environment.to_owned(),
            body: Box::new(body),
        },
    }
}

/// Numbers from the API (milliseconds shown as seconds, millicores as cores) compared at
/// the precision the API stores.
fn same_number(left: f64, right: f64) -> bool {
    (left * 1000.0).round() == (right * 1000.0).round()
}

fn same_option_number(left: Option<f64>, right: Option<f64>) -> bool {
    match (left, right) {
        (Some(left), Some(right)) => same_number(left, right),
        (None, None) => true,
        _ => false,
    }
}

fn same_health_check(left: &HealthCheckSpec, right: &HealthCheckSpec) -> bool {
    left.kind == right.kind
        && left.path == right.path
        && left.expected_status == right.expected_status
        && same_number(left.start_delay_secs, right.start_delay_secs)
        && same_number(left.interval_secs, right.interval_secs)
        && same_number(left.timeout_secs, right.timeout_secs)
        && left.failure_threshold == right.failure_threshold
}

pub(super) fn update_application(
    environment: &str,
    name: &str,
    want: &ApplicationSpec,
    have: &ApplicationSpec,
    plan: &mut Plan,
) -> Option<Change> {
    let mut details = Vec::new();
    let mut body = UpdateApplication::default();
    let mut field = |label: &str, from: String, to: String| {
        details.push(format!("{label} {from} → {to}"));
    };
    let source_changed = want.git != have.git
        || want.image != have.image
        || want.branch != have.branch
        || want.root_path != have.root_path
        || want.dockerfile_path != have.dockerfile_path
        || want.build_args != have.build_args;
    if source_changed {
        for (label, from, to) in [
            ("git", &have.git, &want.git),
            ("image", &have.image, &want.image),
            ("branch", &have.branch, &want.branch),
            ("root_path", &have.root_path, &want.root_path),
            ("dockerfile_path", &have.dockerfile_path, &want.dockerfile_path),
        ] {
            if from != to {
                field(label, show_option(from.as_ref()), show_option(to.as_ref()));
            }
        }
        if want.build_args != have.build_args {
            field("build_args", show_map(&have.build_args), show_map(&want.build_args));
        }
        body.git = git_input(want);
        body.image = want.image.clone();
    }
    if want.port != have.port {
        field("port", show_option(have.port), show_option(want.port));
        body.port = want.port;
        body.clear_port = want.port.is_none();
    }
    if want.visibility != have.visibility {
        field("visibility", show_visibility(have.visibility), show_visibility(want.visibility));
        body.private = Some(want.visibility == Visibility::Private);
    }
    let resource = format!("application {environment}/{name}");
    if !same_option_number(want.cpu, have.cpu) {
        field("cpu", show_option(have.cpu), show_option(want.cpu));
        match want.cpu {
            Some(cpu) => body.cpu = Some(cpu),
            None => plan.refusals.push(format!(
                "{resource}: the API cannot remove a CPU limit; give `cpu = ...` (the current limit is {} cores)",
                show_option(have.cpu)
            )),
        }
    }
    if want.memory_mb != have.memory_mb {
        field("memory_mb", show_option(have.memory_mb), show_option(want.memory_mb));
        match want.memory_mb {
            Some(memory) => body.memory_mb = Some(memory),
            None => plan.refusals.push(format!(
                "{resource}: the API cannot remove a memory limit; give `memory_mb = ...` (the current limit is {} MiB)",
                show_option(have.memory_mb)
            )),
        }
    }
    if want.instances != have.instances {
        field("instances", have.instances.to_string(), want.instances.to_string());
        body.instances = Some(want.instances);
    }
    if !same_number(want.drain_secs, have.drain_secs) {
        field("drain_secs", have.drain_secs.to_string(), want.drain_secs.to_string());
        body.drain_secs = Some(want.drain_secs);
    }
    if want.release_command != have.release_command {
        field(
            "release_command",
            show_option(have.release_command.as_ref()),
            show_option(want.release_command.as_ref()),
        );
        body.release_command = want.release_command.clone();
        body.clear_release_command = want.release_command.is_none();
    }
    if !same_health_check(&want.health_check, &have.health_check) {
        field(
            "health_check",
            show_health_check(&have.health_check),
            show_health_check(&want.health_check),
        );
        body.health_check = Some(health_settings(&want.health_check));
    }
    if want.volumes != have.volumes {
        let show = |spec: &ApplicationSpec| {
            let volumes: Vec<String> = spec
                .volumes
                .iter()
                .map(|v| format!("{}:{} ({} GB)", v.name, v.path, v.size_gb))
                .collect();
            if volumes.is_empty() {
                "none".to_owned()
            } else {
                volumes.join(" ")
            }
        };
        field("volumes", show(have), show(want));
        body.volumes = Some(volume_settings(want));
    }
    if want.depends_on != have.depends_on {
        field("depends_on", show_list(&have.depends_on), show_list(&want.depends_on));
        body.depends_on = Some(want.depends_on.clone());
    }
    if want.watch_paths != have.watch_paths {
        field("watch_paths", show_list(&have.watch_paths), show_list(&want.watch_paths));
        body.watch_paths = Some(want.watch_paths.clone());
    }
    if want.auto_deploy != have.auto_deploy {
        field("auto_deploy", have.auto_deploy.to_string(), want.auto_deploy.to_string());
        body.auto_deploy = Some(want.auto_deploy);
    }
    if details.is_empty() {
        return None;
    }
    Some(Change {
        action: Action::Update,
        resource,
        details,
        operation: Operation::UpdateApplication {
            environment: environment.to_owned(),
            name: name.to_owned(),
            body: Box::new(body),
        },
    })
}

pub(super) fn show_option<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_owned(), |value| value.to_string())
}

fn show_list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(" ")
    }
}

fn show_map(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(" ")
}

fn show_visibility(visibility: Visibility) -> String {
    match visibility {
        Visibility::Public => "public".into(),
        Visibility::Private => "private".into(),
    }
}

fn show_health_check(check: &HealthCheckSpec) -> String {
    let mut text = check.kind.clone();
    if let Some(path) = &check.path {
        text.push_str(&format!(" {path}"));
    }
    if let Some(status) = &check.expected_status {
        text.push_str(&format!(" {status}"));
    }
    text.push_str(&format!(
        " every {}s timeout {}s after {}s, {} failures",
        check.interval_secs, check.timeout_secs, check.start_delay_secs, check.failure_threshold
    ));
    text
}
