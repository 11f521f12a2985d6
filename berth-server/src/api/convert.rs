//! Conversions from store records to wire types, by hand, at the server's edge.

use berth_api as wire;
use berth_domain::health::{HealthCheck, HealthProbe};
use berth_domain::spec::{ApplicationSource, GitCredentialKind, Visibility};
use berth_domain::Hostname;
use berth_store::{
    ApplicationRecord, DeploymentRecord, DeploymentServiceRecord, EnvironmentRecord, ProjectRecord,
    StepRecord, StoredValue, VariableRecord,
};

use crate::state::PublicSettings;

pub(crate) fn project(record: &ProjectRecord) -> wire::Project {
    wire::Project {
        id: record.id.to_string(),
        name: record.name.to_string(),
        status: record.lifecycle.as_str().to_owned(),
        created_at: record.created_at.clone(),
    }
}

pub(crate) fn environment(
    project: &ProjectRecord,
    record: &EnvironmentRecord,
) -> wire::Environment {
    wire::Environment {
        id: record.id.to_string(),
        project: project.name.to_string(),
        name: record.name.to_string(),
        mode: record.mode.as_str().to_owned(),
        branch: record.branch.to_string(),
        status: match (record.lifecycle, record.stopped) {
            (berth_store::Lifecycle::Active, true) => "stopped".to_owned(),
            (lifecycle, _) => lifecycle.as_str().to_owned(),
        },
        created_at: record.created_at.clone(),
        final_backups: Vec::new(),
    }
}

/// The public URL of an application, when it has a route.
pub(crate) fn application_url(
    settings: &PublicSettings,
    project: &ProjectRecord,
    environment: &EnvironmentRecord,
    application: &ApplicationRecord,
) -> Option<String> {
    if !application.spec.is_routed() {
        return None;
    }
    let host = Hostname::for_application(
        &application.name,
        &environment.name,
        &project.name,
        &settings.base_domain,
    );
    Some(match settings.proxy_port {
        80 => format!("http://{host}/"),
        port => format!("http://{host}:{port}/"),
    })
}

pub(crate) fn application(
    settings: &PublicSettings,
    project: &ProjectRecord,
    environment: &EnvironmentRecord,
    record: &ApplicationRecord,
    status: &str,
) -> wire::Application {
    let spec = &record.spec;
    let (git, image) = match &spec.source {
        ApplicationSource::Git(git) => (
            Some(wire::GitSourceView {
                repository: git.repository.to_string(),
                branch: git.branch.as_ref().map(ToString::to_string),
                effective_branch: berth_domain::spec::effective_branch(git, &environment.branch)
                    .to_string(),
                root_path: git.root_path.to_string(),
                dockerfile_path: git.dockerfile_path.to_string(),
                build_args: git.build_args.clone(),
                credential: match git.credential {
                    GitCredentialKind::None => "none",
                    GitCredentialKind::Token => "token",
                    GitCredentialKind::SshKey => "ssh_key",
                }
                .to_owned(),
            }),
            None,
        ),
        ApplicationSource::Image { reference } => (None, Some(reference.to_string())),
    };
    wire::Application {
        id: record.id.to_string(),
        project: project.name.to_string(),
        environment: environment.name.to_string(),
        name: record.name.to_string(),
        git,
        image,
        port: spec.port,
        private: spec.visibility == Visibility::Private,
        cpu: spec.cpu.map(|c| c.cores()),
        memory_mb: spec.memory.map(|m| m.mib()),
        instances: u32::from(spec.instances),
        health_check: health_check(&spec.health_check),
        release_command: spec.release_command.clone(),
        drain_secs: spec.drain_ms as f64 / 1000.0,
        volumes: spec
            .volumes
            .iter()
            .map(|v| wire::VolumeSettings {
                name: v.name.to_string(),
                path: v.path.clone(),
                size_gb: Some(v.size_gb),
            })
            .collect(),
        depends_on: spec.depends_on.iter().map(ToString::to_string).collect(),
        watch_paths: spec.watch_paths.iter().map(ToString::to_string).collect(),
        auto_deploy: spec.auto_deploy,
        url: application_url(settings, project, environment, record),
        status: status.to_owned(),
        current_deployment: record.current_deployment_id.map(|d| d.to_string()),
        created_at: record.created_at.clone(),
        updated_at: record.updated_at.clone(),
    }
}

pub(crate) fn health_check(check: &HealthCheck) -> wire::HealthCheckSettings {
    let (kind, path, expected_status) = match &check.probe {
        HealthProbe::Tcp => ("tcp", None, None),
        HealthProbe::Http { path, expected_status_min, expected_status_max } => (
            "http",
            Some(path.clone()),
            Some(format!("{expected_status_min}-{expected_status_max}")),
        ),
    };
    wire::HealthCheckSettings {
        kind: Some(kind.to_owned()),
        path,
        expected_status,
        start_delay_secs: Some(check.start_delay_ms as f64 / 1000.0),
        interval_secs: Some(check.interval_ms as f64 / 1000.0),
        timeout_secs: Some(check.timeout_ms as f64 / 1000.0),
        failure_threshold: Some(check.failure_threshold),
    }
}

pub(crate) fn variable(record: &VariableRecord) -> wire::Variable {
    let (value, secret, alias_of) = match &record.value {
        StoredValue::Plain(text) => (text.clone(), false, None),
        StoredValue::Encrypted(_) => (berth_domain::variables::MASKED_VALUE.to_owned(), true, None),
        StoredValue::Alias(target) => (format!("${{{target}}}"), false, Some(target.to_string())),
    };
    let scope = match record.owner.scope() {
        berth_domain::variables::VariableScope::Project => "project",
        berth_domain::variables::VariableScope::Environment => "environment",
        berth_domain::variables::VariableScope::Application => "application",
    };
    wire::Variable {
        name: record.name.to_string(),
        value,
        secret,
        scope: scope.to_owned(),
        alias_of,
        updated_at: record.updated_at.clone(),
    }
}

pub(crate) fn deployment(
    project: &ProjectRecord,
    environment: &EnvironmentRecord,
    application_name: Option<String>,
    record: &DeploymentRecord,
    services: &[DeploymentServiceRecord],
    steps: &[StepRecord],
) -> wire::Deployment {
    wire::Deployment {
        id: record.id.to_string(),
        project: project.name.to_string(),
        environment: environment.name.to_string(),
        application: application_name,
        status: record.status.as_str().to_owned(),
        trigger: record.trigger.clone(),
        created_at: record.created_at.clone(),
        started_at: record.started_at.clone(),
        finished_at: record.finished_at.clone(),
        failure: record.failure.as_ref().map(|f| wire::DeploymentFailure {
            step: f.step.as_str().to_owned(),
            application: f.application.clone(),
            message: f.message.clone(),
        }),
        services: services
            .iter()
            .map(|s| wire::DeployedService {
                application: s.application_name.clone(),
                commit: s.git_commit.clone(),
                image: s.image.clone(),
            })
            .collect(),
        steps: steps
            .iter()
            .map(|s| wire::DeploymentStep {
                application: s.application_name.clone(),
                name: s.name.as_str().to_owned(),
                status: s.status.as_str().to_owned(),
                started_at: s.started_at.clone(),
                finished_at: s.finished_at.clone(),
                duration_ms: s.duration_ms,
                message: s.message.clone(),
            })
            .collect(),
    }
}
