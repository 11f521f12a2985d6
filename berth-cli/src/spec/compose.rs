//! The docker-compose → spec conversion of `berth import compose`, as a pure function of
//! the compose text and where its builds come from ([`ComposeContext`]).
//!
//! What converts: services with `build` (context, dockerfile, args) become applications
//! built from the repository, with `image` image applications; known database images
//! (postgres, mariadb, mysql, redis) become Berth databases; `ports` (or `expose`) the
//! application's port; `environment` (list or map) application variables, where values
//! pointing at a database service (`postgres://user:pass@db:5432/app`, or just `db`) become
//! aliases of `BERTH_DATABASE_<NAME>_URL` / `_HOST`, and names that look secret
//! (PASSWORD, SECRET, TOKEN, KEY) or URLs with a password in them become secret references; `depends_on`; named volumes;
//! `deploy.replicas` and `deploy.resources.limits`; an HTTP `healthcheck` on localhost.
//! Everything else is listed in [`Conversion::dropped`] with the reason.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::model::{
    ApplicationSpec, DatabaseSpec, EnvironmentSpec, HealthCheckSpec, ProjectSpec, VariableSpec,
    Visibility, VolumeSpec,
};

/// Where `build` services come from.
#[derive(Debug, Clone)]
pub(crate) struct ComposeContext {
    pub(crate) project: String,
    pub(crate) environment: String,
    pub(crate) branch: String,
    /// The repository URL applications are built from.
    pub(crate) repository: Option<String>,
    /// The compose file's directory relative to the repository root (`""` at the root),
    /// with `/` separators: build contexts are relative to it.
    pub(crate) directory_in_repository: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conversion {
    pub(crate) spec: ProjectSpec,
    /// `service web → application web (build services/web, port 8080)`.
    pub(crate) converted: Vec<String>,
    /// `services.web.networks: Berth gives each environment its own network`.
    pub(crate) dropped: Vec<String>,
    /// (application, variable): secret references whose values must be set on the server.
    pub(crate) secrets: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ComposeError(String);

const SECRET_WORDS: [&str; 5] = ["PASSWORD", "SECRET", "TOKEN", "KEY", "PASSWD"];

/// A database image: `postgres:15-alpine` → (`postgresql`, `15`).
fn database_image(image: &str) -> Option<(&'static str, Option<String>)> {
    let without_registry = image.rsplit('/').next().unwrap_or(image);
    let (name, tag) = match without_registry.split_once(':') {
        Some((name, tag)) => (name, Some(tag)),
        None => (without_registry, None),
    };
    let (engine, default_version) = match name {
        "postgres" | "postgresql" => ("postgresql", "15"),
        "mariadb" | "mysql" => ("mariadb", "10.11"),
        "redis" => ("redis", "7.0"),
        _ => return None,
    };
    // `15-alpine` → `15`; `7` means the 7.x Berth provides; `latest`/none → the default.
    let version = tag
        .map(|tag| tag.split('-').next().unwrap_or(tag))
        .filter(|version| version.chars().next().is_some_and(|c| c.is_ascii_digit()));
    let version = match version {
        // MySQL becomes MariaDB, whose versions are not MySQL's.
        Some(_) if name == "mysql" => None,
        Some(version)
            if default_version == version
                || default_version.starts_with(&format!("{version}.")) =>
        {
            None
        }
        Some(version) => Some(version.to_owned()),
        None => None,
    };
    Some((engine, version))
}

/// A compose name as a Berth name: lower case, `_` and `.` become `-` (`app_data` →
/// `app-data`).
fn berth_name(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// `environment:` in list (`A=b`, `C`) or map form; `None` values come from the host.
fn environment_entries(value: &Value) -> Vec<(String, Option<String>)> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .filter_map(scalar_text)
            .map(|item| match item.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (item, None),
            })
            .collect(),
        Value::Mapping(map) => map
            .iter()
            .filter_map(|(name, value)| Some((scalar_text(name)?, scalar_text(value))))
            .collect(),
        _ => Vec::new(),
    }
}

/// The container port of the first `ports` entry (`8080:80` → 80, `127.0.0.1:8080:80/tcp`
/// → 80, `{ target: 80 }` → 80).
fn container_port(entry: &Value) -> Option<u32> {
    match entry {
        Value::Mapping(map) => map.get("target").and_then(scalar_text)?.parse().ok(),
        other => {
            let text = scalar_text(other)?;
            let without_protocol = text.split('/').next().unwrap_or(&text);
            let last = without_protocol.rsplit(':').next().unwrap_or(without_protocol);
            // A range (`8000-8001`) keeps its first port.
            last.split('-').next()?.parse().ok()
        }
    }
}

/// `DB_URL=postgres://u:p@db:5432/app` → `db` when `db` is a database service.
fn database_host_in_url(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    Some(host_port.split(':').next().unwrap_or(host_port))
}

/// `scheme://user:password@host/...`: a URL (to a server that is not a service of the
/// file) carrying a password, which must not be copied into the spec.
fn url_has_password(value: &str) -> bool {
    let Some((_, rest)) = value.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|word| upper.contains(word))
}

/// `10s`, `1m30s`, `500ms` → seconds.
fn duration_secs(value: &Value) -> Option<f64> {
    let text = scalar_text(value)?;
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let amount: f64 = number.parse().ok()?;
        number.clear();
        total += match c {
            'h' => amount * 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                amount / 1000.0
            }
            'm' => amount * 60.0,
            's' => amount,
            _ => return None,
        };
    }
    if !number.is_empty() {
        total += number.parse::<f64>().ok()?;
    }
    Some(total)
}

/// An HTTP health check from `test: ["CMD", "curl", "-f", "http://localhost:8080/health"]`.
fn health_check(value: &Value) -> Option<HealthCheckSpec> {
    let test = match value.get("test")? {
        Value::Sequence(items) => {
            items.iter().filter_map(scalar_text).collect::<Vec<_>>().join(" ")
        }
        other => scalar_text(other)?,
    };
    let start = test.find("http://localhost").or_else(|| test.find("http://127.0.0.1"))?;
    let url = test[start..].split_whitespace().next()?;
    let after_scheme = &url["http://".len()..];
    let path = after_scheme.find('/').map_or("/", |index| &after_scheme[index..]);
    let mut check = HealthCheckSpec {
        kind: "http".into(),
        path: Some(path.trim_end_matches(['"', '\'']).to_owned()),
        expected_status: Some("200-399".into()),
        ..HealthCheckSpec::default()
    };
    if let Some(seconds) = value.get("interval").and_then(duration_secs) {
        check.interval_secs = seconds;
    }
    if let Some(seconds) = value.get("timeout").and_then(duration_secs) {
        check.timeout_secs = seconds;
    }
    if let Some(seconds) = value.get("start_period").and_then(duration_secs) {
        check.start_delay_secs = seconds;
    }
    if let Some(retries) = value.get("retries").and_then(scalar_text).and_then(|r| r.parse().ok()) {
        check.failure_threshold = retries;
    }
    Some(check)
}

/// `a/./b/../c` relative to the repository root → `a/c`; `None` when it leaves it.
fn normalize_relative(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(if parts.is_empty() { ".".into() } else { parts.join("/") })
}

fn blank_application() -> ApplicationSpec {
    ApplicationSpec {
        git: None,
        image: None,
        branch: None,
        root_path: None,
        dockerfile_path: None,
        port: None,
        visibility: Visibility::Public,
        cpu: None,
        memory_mb: None,
        instances: 1,
        drain_secs: 5.0,
        release_command: None,
        build_args: BTreeMap::new(),
        health_check: HealthCheckSpec::default(),
        volumes: Vec::new(),
        depends_on: Vec::new(),
        watch_paths: Vec::new(),
        auto_deploy: true,
        variables: BTreeMap::new(),
    }
}

/// `512M`, `1g`, `256m` → MiB.
fn memory_mib(text: &str) -> Option<u32> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (number, factor) = match lower.chars().last()? {
        'k' => (&lower[..lower.len() - 1], 1.0 / 1024.0),
        'm' => (&lower[..lower.len() - 1], 1.0),
        'g' => (&lower[..lower.len() - 1], 1024.0),
        _ => (lower, 1.0 / (1024.0 * 1024.0)),
    };
    let value: f64 = number.parse().ok()?;
    Some((value * factor).round() as u32)
}

pub(crate) fn convert(text: &str, context: &ComposeContext) -> Result<Conversion, ComposeError> {
    let document: Value = serde_yaml::from_str(text)
        .map_err(|error| ComposeError(format!("not a valid compose file: {error}")))?;
    let services = document
        .get("services")
        .and_then(Value::as_mapping)
        .ok_or_else(|| ComposeError("the compose file has no `services`".into()))?;
    let mut converted = Vec::new();
    let mut dropped = Vec::new();
    let mut secrets = Vec::new();
    for key in ["networks", "volumes", "configs", "secrets"] {
        if document.get(key).is_some() {
            dropped.push(format!(
                "{key} (top level): {}",
                match key {
                    "networks" => "Berth gives each environment its own network",
                    "volumes" =>
                        "named volumes become application volumes where services mount them",
                    _ => "not supported; use Berth secrets (`berth env-var set --secret`)",
                }
            ));
        }
    }

    // Databases first: applications refer to them by service name.
    let mut databases: BTreeMap<String, DatabaseSpec> = BTreeMap::new();
    for (name, service) in services {
        let Some(name) = scalar_text(name).map(|name| berth_name(&name)) else { continue };
        let Some(image) = service.get("image").and_then(scalar_text) else { continue };
        if service.get("build").is_some() {
            continue;
        }
        let Some((engine, version)) = database_image(&image) else { continue };
        let shown_version = version.clone().unwrap_or_else(|| "default version".into());
        converted
            .push(format!("service {name} ({image}) → database {name} ({engine} {shown_version})"));
        if image.contains("mysql") {
            dropped.push(format!("services.{name}.image: MySQL becomes MariaDB {}", "10.11"));
        }
        if let Some(mapping) = service.as_mapping() {
            for (key, _) in mapping {
                let Some(key) = scalar_text(key) else { continue };
                if key != "image" {
                    dropped.push(format!(
                        "services.{name}.{key}: Berth runs and configures the database (credentials are generated; its data is in a Berth volume)"
                    ));
                }
            }
        }
        databases.insert(
            name,
            DatabaseSpec {
                engine: engine.into(),
                version,
                mode: "container".into(),
                storage_gb: None,
                url: None,
            },
        );
    }

    let mut applications: BTreeMap<String, ApplicationSpec> = BTreeMap::new();
    for (name, service) in services {
        let Some(name) = scalar_text(name).map(|name| berth_name(&name)) else { continue };
        if databases.contains_key(&name) {
            continue;
        }
        let Some(mapping) = service.as_mapping() else {
            return Err(ComposeError(format!("service {name} is not a mapping")));
        };
        let mut application = blank_application();
        let mut summary = Vec::new();
        for (key, value) in mapping {
            let Some(key) = scalar_text(key) else { continue };
            match key.as_str() {
                "build" => {
                    let (build_context, dockerfile, args) = match value {
                        Value::Mapping(_) => (
                            value.get("context").and_then(scalar_text).unwrap_or_else(|| ".".into()),
                            value.get("dockerfile").and_then(scalar_text),
                            value.get("args").map(environment_entries).unwrap_or_default(),
                        ),
                        other => (scalar_text(other).unwrap_or_else(|| ".".into()), None, Vec::new()),
                    };
                    let Some(repository) = &context.repository else {
                        return Err(ComposeError(format!(
                            "service {name} is built from source, but the compose file is not in a Git repository: pass --git URL"
                        )));
                    };
                    if build_context.contains("://") || build_context.starts_with("git@") {
                        return Err(ComposeError(format!(
                            "service {name} builds from a remote context {build_context:?}: pass its repository with --git and a local context"
                        )));
                    }
                    let joined = format!("{}/{build_context}", context.directory_in_repository);
                    let root = normalize_relative(&joined).ok_or_else(|| {
                        ComposeError(format!(
                            "service {name}: the build context {build_context:?} is outside the repository"
                        ))
                    })?;
                    summary.push(format!("build {root}"));
                    application.git = Some(repository.clone());
                    application.root_path = Some(root);
                    application.dockerfile_path = Some(dockerfile.unwrap_or_else(|| "Dockerfile".into()));
                    for (arg, value) in args {
                        match value {
                            Some(value) => {
                                application.build_args.insert(arg, value);
                            }
                            None => dropped.push(format!(
                                "services.{name}.build.args.{arg}: no value (taken from the host by compose)"
                            )),
                        }
                    }
                }
                "image" => {
                    if mapping.get("build").is_none() {
                        if let Some(image) = scalar_text(value) {
                            summary.push(format!("image {image}"));
                            application.image = Some(image);
                        }
                    } else {
                        dropped.push(format!("services.{name}.image: the application is built from `build`"));
                    }
                }
                "ports" => {
                    let ports: Vec<u32> = value
                        .as_sequence()
                        .map(|items| items.iter().filter_map(container_port).collect())
                        .unwrap_or_default();
                    if let Some(port) = ports.first() {
                        application.port = Some(*port);
                        summary.push(format!("port {port}"));
                    }
                    if ports.len() > 1 {
                        dropped.push(format!(
                            "services.{name}.ports: only the first port is routed ({})",
                            ports.first().copied().unwrap_or_default()
                        ));
                    }
                }
                "expose" => {
                    if mapping.get("ports").is_none() {
                        let port = value.as_sequence().and_then(|items| items.first()).and_then(container_port);
                        if let Some(port) = port {
                            application.port = Some(port);
                            application.visibility = Visibility::Private;
                            summary.push(format!("private port {port}"));
                        }
                    }
                }
                "environment" => {
                    for (variable, value) in environment_entries(value) {
                        let converted_value = convert_variable(&variable, value.as_deref(), &databases);
                        match converted_value {
                            VariableSpec::Secret => secrets.push((name.clone(), variable.clone())),
                            VariableSpec::Alias(ref target) => converted.push(format!(
                                "services.{name}.environment.{variable} → alias of {target}"
                            )),
                            VariableSpec::Plain(_) => {}
                        }
                        application.variables.insert(variable, converted_value);
                    }
                }
                "depends_on" => {
                    let names: Vec<String> = match value {
                        Value::Sequence(items) => items.iter().filter_map(scalar_text).collect(),
                        Value::Mapping(map) => map.keys().filter_map(scalar_text).collect(),
                        _ => Vec::new(),
                    };
                    application.depends_on = names.iter().map(|name| berth_name(name)).collect();
                }
                "volumes" => {
                    for entry in value.as_sequence().into_iter().flatten() {
                        let (source, target) = match entry {
                            Value::Mapping(_) => (
                                entry.get("source").and_then(scalar_text).unwrap_or_default(),
                                entry.get("target").and_then(scalar_text).unwrap_or_default(),
                            ),
                            other => {
                                let text = scalar_text(other).unwrap_or_default();
                                let mut parts = text.splitn(3, ':');
                                let source = parts.next().unwrap_or_default().to_owned();
                                match parts.next() {
                                    Some(target) => (source, target.to_owned()),
                                    None => (String::new(), source),
                                }
                            }
                        };
                        let named = !source.is_empty()
                            && !source.starts_with('.')
                            && !source.starts_with('/')
                            && !source.starts_with('~');
                        if named {
                            summary.push(format!("volume {source}"));
                            application.volumes.push(VolumeSpec {
                                name: berth_name(&source),
                                path: target,
                                size_gb: 1,
                            });
                        } else {
                            dropped.push(format!(
                                "services.{name}.volumes: {} (bind mounts and anonymous volumes are not supported; the code comes from the image)",
                                if source.is_empty() { target } else { format!("{source}:{target}") }
                            ));
                        }
                    }
                }
                "healthcheck" => match health_check(value) {
                    Some(check) => {
                        summary.push(format!("http health check {}", check.path.clone().unwrap_or_default()));
                        application.health_check = check;
                    }
                    None => dropped.push(format!(
                        "services.{name}.healthcheck: only HTTP checks on localhost convert (Berth checks the port by default)"
                    )),
                },
                "deploy" => {
                    if let Some(replicas) = value.get("replicas").and_then(scalar_text).and_then(|r| r.parse().ok()) {
                        application.instances = replicas;
                    }
                    if let Some(limits) = value.get("resources").and_then(|r| r.get("limits")) {
                        application.cpu = limits.get("cpus").and_then(scalar_text).and_then(|c| c.parse().ok());
                        application.memory_mb = limits.get("memory").and_then(scalar_text).and_then(|m| memory_mib(&m));
                    }
                }
                other => dropped.push(format!("services.{name}.{other}: {}", drop_reason(other))),
            }
        }
        if application.git.is_none() && application.image.is_none() {
            return Err(ComposeError(format!("service {name} has neither `build` nor `image`")));
        }
        if application.port.is_none() {
            summary.push("no port: a worker".into());
        }
        converted.push(format!("service {name} → application {name} ({})", summary.join(", ")));
        applications.insert(name, application);
    }

    let environment = EnvironmentSpec {
        mode: "production".into(),
        branch: context.branch.clone(),
        variables: BTreeMap::new(),
        databases,
        applications,
    };
    let spec = ProjectSpec {
        project: context.project.clone(),
        variables: BTreeMap::new(),
        environments: BTreeMap::from([(context.environment.clone(), environment)]),
    };
    Ok(Conversion { spec, converted, dropped, secrets })
}

fn convert_variable(
    name: &str,
    value: Option<&str>,
    databases: &BTreeMap<String, DatabaseSpec>,
) -> VariableSpec {
    let builtin = |database: &str, field: &str| {
        format!("BERTH_DATABASE_{}_{field}", database.to_ascii_uppercase().replace('-', "_"))
    };
    match value {
        Some(value) => {
            if let Some(host) = database_host_in_url(value) {
                if databases.contains_key(&berth_name(host)) {
                    return VariableSpec::Alias(builtin(&berth_name(host), "URL"));
                }
            }
            if databases.contains_key(&berth_name(value)) {
                return VariableSpec::Alias(builtin(&berth_name(value), "HOST"));
            }
            if looks_secret(name) || url_has_password(value) {
                VariableSpec::Secret
            } else {
                VariableSpec::Plain(value.to_owned())
            }
        }
        // Compose takes a value-less variable from the host: its value is not in the file.
        None => VariableSpec::Secret,
    }
}

fn drop_reason(key: &str) -> &'static str {
    match key {
        "networks" => {
            "Berth gives each environment its own network; services reach each other by name"
        }
        "restart" => "Berth restarts crashed instances itself",
        "container_name" | "hostname" => {
            "Berth names containers; services reach each other by service name"
        }
        "command" | "entrypoint" => {
            "Berth runs the image's CMD/ENTRYPOINT; put the command in the Dockerfile"
        }
        "env_file" => "set those variables with `berth env-var import`",
        "labels" => "Berth labels its containers itself",
        _ => "not supported",
    }
}

#[cfg(test)]
#[path = "compose_tests.rs"]
mod tests;
