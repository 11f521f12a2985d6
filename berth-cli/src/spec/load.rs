//! Reading a spec file: TOML parsing with the key path and line of every mistake, then
//! validation with the API's own rules (`berth-domain`'s name, branch, URL, path, port,
//! limit and health-check validators), then normalization (defaults written out) so the
//! result compares equal to what the server reports for the same settings.
//!
//! Every problem in the file is reported at once, each as `FILE:LINE: KEY.PATH: what is
//! wrong`, so one run of `berth apply --dry-run` lists all of them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use berth_domain::database::{DatabaseEngine, DatabaseVersion};
use berth_domain::health::{parse_status_range, HealthCheck, HealthProbe};
use berth_domain::source::{ImageReference, RepositoryPath, RepositoryUrl};
use berth_domain::spec::{
    validate_build_arg_key, validate_instances, validate_port, validate_release_command,
    ApplicationVolume, MemoryMib, MilliCpu,
};
use berth_domain::{BranchName, EnvVarName, ResourceName};

use super::model::{
    ApplicationSpec, DatabaseSpec, EnvironmentSpec, HealthCheckSpec, ProjectSpec, VariableSpec,
};

/// Largest variable value the API accepts.
const MAX_VALUE_BYTES: usize = 64 * 1024;
const MAX_VOLUMES: usize = 16;
const ENVIRONMENT_MODES: [&str; 4] = ["production", "staging", "development", "preview"];

/// One problem in a spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpecProblem {
    /// 1-based line of the offending key or value, when it can be found.
    pub(crate) line: Option<usize>,
    /// Dotted key path, e.g. `environments.production.applications.web.port`.
    pub(crate) key: String,
    pub(crate) message: String,
}

/// Everything wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct SpecErrors {
    pub(crate) file: String,
    pub(crate) problems: Vec<SpecProblem>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(formatter)?;
            }
            match problem.line {
                Some(line) => write!(formatter, "{}:{line}: ", self.file)?,
                None => write!(formatter, "{}: ", self.file)?,
            }
            if !problem.key.is_empty() {
                write!(formatter, "{}: ", problem.key)?;
            }
            write!(formatter, "{}", problem.message)?;
        }
        Ok(())
    }
}

/// Parses, validates and normalizes `text` (the content of `file`). `lookup_env` resolves
/// `${NAME}` in `git` values (see [`expand_variables`]).
pub(crate) fn parse_spec(
    file: &str,
    text: &str,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProjectSpec, SpecErrors> {
    let fail = |problems| SpecErrors { file: file.to_owned(), problems };
    let deserializer = toml::Deserializer::new(text);
    let mut spec: ProjectSpec = match serde_path_to_error::deserialize(deserializer) {
        Ok(spec) => spec,
        Err(error) => {
            let key = error.path().to_string();
            let inner = error.into_inner();
            let line = inner.span().map(|span| line_of_offset(text, span.start));
            let key = if key == "." { String::new() } else { key };
            return Err(fail(vec![SpecProblem { line, key, message: inner.message().to_owned() }]));
        }
    };
    let mut validator = Validator { text, problems: Vec::new(), lookup_env };
    validator.project(&mut spec);
    if validator.problems.is_empty() {
        Ok(spec)
    } else {
        Err(fail(validator.problems))
    }
}

/// Reads and parses a spec file.
pub(crate) fn read_spec(
    path: &Path,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProjectSpec, SpecErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| SpecErrors {
        file: file.clone(),
        problems: vec![SpecProblem {
            line: None,
            key: String::new(),
            message: format!("cannot read the file: {error}"),
        }],
    })?;
    parse_spec(&file, &text, lookup_env)
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(1, |before| before.matches('\n').count() + 1)
}

/// The line of the value at `path` (table keys), found by re-reading the document with
/// spans; `None` when the document does not spell it out (a default).
fn line_of_key(text: &str, path: &[&str]) -> Option<usize> {
    let document = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = document.as_item();
    let mut span = None;
    for key in path {
        let key_span = match item {
            toml_edit::Item::Table(table) => table.get_key_value(key).and_then(|(k, _)| k.span()),
            toml_edit::Item::Value(toml_edit::Value::InlineTable(table)) => {
                table.get_key_value(key).and_then(|(k, _)| k.span())
            }
            _ => None,
        };
        span = key_span.or(span);
        match item.get(key) {
            Some(next) => item = next,
            None => break,
        }
    }
    span.map(|span| line_of_offset(text, span.start))
}

/// Replaces `${NAME}` with the environment variable NAME of the `berth apply` process, for
/// values that differ per machine (the path of a local repository). An unset variable is
/// an error naming it.
pub(crate) fn expand_variables(
    value: &str,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut expanded = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        expanded.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unclosed `${{` in {value:?}"))?;
        let name = &after[..end];
        let replacement = lookup_env(name).ok_or_else(|| {
            format!("{value:?} uses ${{{name}}}, but the environment variable {name} is not set; export it before running berth")
        })?;
        expanded.push_str(&replacement);
        rest = &after[end + 1..];
    }
    expanded.push_str(rest);
    Ok(expanded)
}

struct Validator<'a> {
    text: &'a str,
    problems: Vec<SpecProblem>,
    lookup_env: &'a dyn Fn(&str) -> Option<String>,
}

impl Validator<'_> {
    fn problem(&mut self, path: &[&str], message: impl Into<String>) {
        // Points at the deepest key the document spells out.
        let line = line_of_key(self.text, path);
        self.problems.push(SpecProblem { line, key: path.join("."), message: message.into() });
    }

    fn check<T, E: fmt::Display>(&mut self, path: &[&str], result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.problem(path, error.to_string());
                None
            }
        }
    }

    fn project(&mut self, spec: &mut ProjectSpec) {
        self.check(&["project"], ResourceName::parse(&spec.project));
        self.variables(&["variables"], &spec.variables);
        if spec.environments.is_empty() {
            self.problem(
                &["environments"],
                "the project has no environment: add one, e.g. `[environments.production]`",
            );
        }
        for (name, environment) in &mut spec.environments {
            let base = ["environments", name.as_str()];
            self.check(&base, ResourceName::parse(name));
            if !ENVIRONMENT_MODES.contains(&environment.mode.as_str()) {
                self.problem(
                    &[base[0], base[1], "mode"],
                    format!(
                        "invalid environment mode {:?}: use production, staging, development or preview",
                        environment.mode
                    ),
                );
            }
            self.check(&[base[0], base[1], "branch"], BranchName::parse(&environment.branch));
            self.variables(&[base[0], base[1], "variables"], &environment.variables);
            for (database_name, database) in &mut environment.databases {
                self.database(&[base[0], base[1], "databases", database_name], database);
            }
            for (application_name, application) in &mut environment.applications {
                if environment.databases.contains_key(application_name) {
                    self.problem(
                        &[base[0], base[1], "applications", application_name],
                        "a database of this environment has the same name; services reach each other by name, so give them different names",
                    );
                }
                self.application(
                    &[base[0], base[1], "applications", application_name],
                    application,
                );
            }
            self.dependencies(name, environment);
        }
    }

    fn variables(&mut self, path: &[&str], variables: &BTreeMap<String, VariableSpec>) {
        for (name, value) in variables {
            let key: Vec<&str> = path.iter().copied().chain([name.as_str()]).collect();
            self.check(&key, EnvVarName::parse(name));
            match value {
                VariableSpec::Plain(text) => {
                    if text.len() > MAX_VALUE_BYTES {
                        self.problem(&key, "the value is longer than 64 KiB");
                    }
                    if text.contains('\0') {
                        self.problem(&key, "the value contains a NUL byte");
                    }
                }
                VariableSpec::Secret => {}
                VariableSpec::Alias(target) => {
                    if !target.starts_with("BERTH_DATABASE_")
                        || EnvVarName::parse_any(target).is_err()
                    {
                        self.problem(
                            &key,
                            format!("an alias follows a database's built-in variable (BERTH_DATABASE_<NAME>_URL, _HOST, _PORT, _USER, _PASSWORD, _NAME), not {target:?}"),
                        );
                    }
                }
            }
        }
    }

    fn database(&mut self, path: &[&str], database: &mut DatabaseSpec) {
        let at =
            |field: &'static str| -> Vec<&str> { path.iter().copied().chain([field]).collect() };
        self.check(&path[..path.len()], ResourceName::parse(path[path.len() - 1]));
        let Some(engine) = self.check(&at("engine"), DatabaseEngine::parse(&database.engine))
        else {
            return;
        };
        database.engine = engine.as_str().to_owned();
        let version = database.version.clone().unwrap_or_else(|| engine.default_version().into());
        self.check(&at("version"), DatabaseVersion::parse(&version));
        database.version = Some(version);
        match database.mode.as_str() {
            "container" => {
                if database.url.is_some() {
                    self.problem(
                        &at("url"),
                        "`url` is for external databases: add `mode = \"external\"` or remove it",
                    );
                }
                let storage = database.storage_gb.unwrap_or(1);
                if !(1..=16_384).contains(&storage) {
                    self.problem(&at("storage_gb"), "must be between 1 and 16384 GB");
                }
                database.storage_gb = Some(storage);
            }
            "external" => {
                if database.storage_gb.is_some() {
                    self.problem(&at("storage_gb"), "applies to container databases only");
                }
                match &database.url {
                    None => self.problem(
                        &at("url"),
                        "an external database needs `url = { secret = \"NAME\" }`: the URL (with its password) is read from the environment variable NAME when apply creates the database",
                    ),
                    Some(source) => {
                        self.check(&at("url"), EnvVarName::parse_any(&source.secret));
                    }
                }
            }
            other => self.problem(
                &at("mode"),
                format!("unknown database mode {other:?}: use container or external"),
            ),
        }
    }

    fn application(&mut self, path: &[&str], application: &mut ApplicationSpec) {
        let at =
            |field: &'static str| -> Vec<&str> { path.iter().copied().chain([field]).collect() };
        self.check(path, ResourceName::parse(path[path.len() - 1]));
        match (&application.git, &application.image) {
            (Some(git), None) => {
                match expand_variables(git, self.lookup_env) {
                    Ok(expanded) => {
                        self.check(&at("git"), RepositoryUrl::parse(expanded.trim()));
                        application.git = Some(expanded.trim().to_owned());
                    }
                    Err(message) => self.problem(&at("git"), message),
                }
                if let Some(branch) = &application.branch {
                    self.check(&at("branch"), BranchName::parse(branch));
                }
                let root = application.root_path.get_or_insert_with(|| ".".into()).clone();
                self.check(&at("root_path"), RepositoryPath::parse("root path", &root));
                let dockerfile =
                    application.dockerfile_path.get_or_insert_with(|| "Dockerfile".into()).clone();
                self.check(&at("dockerfile_path"), RepositoryPath::parse("Dockerfile path", &dockerfile));
                for key in application.build_args.keys() {
                    self.check(&at("build_args"), validate_build_arg_key(key));
                }
            }
            (None, Some(image)) => {
                self.check(&at("image"), ImageReference::parse(image.trim()));
                for (field, given) in [
                    ("branch", application.branch.is_some()),
                    ("root_path", application.root_path.is_some()),
                    ("dockerfile_path", application.dockerfile_path.is_some()),
                    ("build_args", !application.build_args.is_empty()),
                ] {
                    if given {
                        self.problem(&at(field), "applies to applications built from Git only");
                    }
                }
            }
            _ => self.problem(
                path,
                "give exactly one source: `git = \"URL\"` (a repository with a Dockerfile) or `image = \"REF\"`",
            ),
        }
        if let Some(port) = application.port {
            self.check(&at("port"), validate_port(port));
        }
        if let Some(cpu) = application.cpu {
            self.check(&at("cpu"), MilliCpu::from_cores(cpu));
        }
        if let Some(memory) = application.memory_mb {
            self.check(&at("memory_mb"), MemoryMib::new(memory));
        }
        self.check(&at("instances"), validate_instances(application.instances));
        if !application.drain_secs.is_finite() || !(0.0..=600.0).contains(&application.drain_secs) {
            self.problem(&at("drain_secs"), "must be a number of seconds between 0 and 600");
        }
        if let Some(command) = &application.release_command {
            self.check(&at("release_command"), validate_release_command(command));
        }
        self.health_check(&at("health_check"), &mut application.health_check);
        let mut seen: Vec<(String, String)> = Vec::new();
        for volume in &application.volumes {
            let parsed = ApplicationVolume::parse(
                &format!("{}:{}", volume.name, volume.path),
                volume.size_gb,
            );
            if let Some(parsed) = self.check(&at("volumes"), parsed) {
                let (name, mount) = (parsed.name.to_string(), parsed.path.clone());
                if seen.iter().any(|(n, p)| *n == name || *p == mount) {
                    self.problem(
                        &at("volumes"),
                        format!("volume {name} or its path {mount} is given twice"),
                    );
                }
                seen.push((name, mount));
            }
        }
        if application.volumes.len() > MAX_VOLUMES {
            self.problem(&at("volumes"), "an application can have at most 16 volumes");
        }
        match berth_domain::watch::parse_watch_paths(&application.watch_paths) {
            Ok(patterns) => {
                application.watch_paths = patterns.iter().map(ToString::to_string).collect();
            }
            Err(error) => self.problem(&at("watch_paths"), error.to_string()),
        }
        self.variables(&at("variables"), &application.variables);
    }

    /// Each dependency is a service of the same environment, and there is no cycle (the
    /// API refuses both; finding them here keeps apply all-or-nothing).
    fn dependencies(&mut self, environment_name: &str, environment: &mut EnvironmentSpec) {
        let services: Vec<String> =
            environment.applications.keys().chain(environment.databases.keys()).cloned().collect();
        for (name, application) in &mut environment.applications {
            let path =
                ["environments", environment_name, "applications", name.as_str(), "depends_on"];
            let mut normalized: Vec<String> = Vec::new();
            for dependency in
                application.depends_on.iter().flat_map(|d| d.split(',')).map(str::trim)
            {
                if dependency.is_empty() || normalized.iter().any(|seen| seen == dependency) {
                    continue;
                }
                if dependency == name {
                    self.problem(&path, "an application cannot depend on itself");
                } else if !services.iter().any(|service| service == dependency) {
                    self.problem(
                        &path,
                        format!("{dependency:?} is neither an application nor a database of environment {environment_name}"),
                    );
                }
                normalized.push(dependency.to_owned());
            }
            application.depends_on = normalized;
        }
        if let Some(cycle) = dependency_cycle(&environment.applications) {
            self.problem(
                &["environments", environment_name, "applications"],
                format!("the applications depend on each other in a cycle: {}", cycle.join(" → ")),
            );
        }
    }

    fn health_check(&mut self, path: &[&str], check: &mut HealthCheckSpec) {
        let at =
            |field: &'static str| -> Vec<&str> { path.iter().copied().chain([field]).collect() };
        let probe = match check.kind.as_str() {
            "tcp" => {
                for (field, given) in [
                    ("path", check.path.is_some()),
                    ("expected_status", check.expected_status.is_some()),
                ] {
                    if given {
                        self.problem(&at(field), "applies to `kind = \"http\"` health checks only");
                    }
                }
                HealthProbe::Tcp
            }
            "http" => {
                let path_value = check.path.get_or_insert_with(|| "/".into()).clone();
                let range = check.expected_status.clone().unwrap_or_else(|| "200-399".into());
                let Some((min, max)) =
                    self.check(&at("expected_status"), parse_status_range(&range))
                else {
                    return;
                };
                check.expected_status = Some(format!("{min}-{max}"));
                HealthProbe::Http {
                    path: path_value,
                    expected_status_min: min,
                    expected_status_max: max,
                }
            }
            other => {
                self.problem(
                    &at("kind"),
                    format!("unknown health check kind {other:?}: use tcp or http"),
                );
                return;
            }
        };
        let mut milliseconds = |field: &'static str, seconds: f64| -> u64 {
            if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
                self.problem(&at(field), "must be a number of seconds between 0 and 86400");
                return 0;
            }
            (seconds * 1000.0).round() as u64
        };
        let domain = HealthCheck {
            probe,
            start_delay_ms: milliseconds("start_delay_secs", check.start_delay_secs),
            interval_ms: milliseconds("interval_secs", check.interval_secs),
            timeout_ms: milliseconds("timeout_secs", check.timeout_secs),
            failure_threshold: check.failure_threshold,
        };
        self.check(path, domain.validate());
    }
}

/// A cycle among the applications' `depends_on` (names in order, first repeated last).
fn dependency_cycle(applications: &BTreeMap<String, ApplicationSpec>) -> Option<Vec<String>> {
    fn visit(
        name: &str,
        applications: &BTreeMap<String, ApplicationSpec>,
        stack: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = stack.iter().position(|seen| seen == name) {
            let mut cycle = stack[start..].to_vec();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        if done.iter().any(|seen| seen == name) {
            return None;
        }
        let application = applications.get(name)?;
        stack.push(name.to_owned());
        for dependency in &application.depends_on {
            if let Some(cycle) = visit(dependency, applications, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.push(name.to_owned());
        None
    }
    let mut done = Vec::new();
    for name in applications.keys() {
        if let Some(cycle) = visit(name, applications, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
