//! Environment variables and secrets: scopes, precedence and the built-in variables Berth
//! injects. Resolution is a pure function so it can be tested without a store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::EnvVarName;

/// Where a variable is set. A narrower scope overrides a wider one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariableScope {
    Project,
    Environment,
    Application,
}

/// A variable whose value has been decrypted for a deployment. Never logged or serialised
/// to a client: `Debug` hides secret values.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedVariable {
    pub scope: VariableScope,
    pub name: EnvVarName,
    pub value: String,
    pub secret: bool,
}

impl std::fmt::Debug for ResolvedVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.secret { "********" } else { self.value.as_str() };
        write!(f, "{:?} {}={shown:?}", self.scope, self.name)
    }
}

/// Merges variables of all scopes: application overrides environment overrides project.
pub fn resolve(variables: &[ResolvedVariable]) -> BTreeMap<EnvVarName, ResolvedVariable> {
    let mut sorted: Vec<&ResolvedVariable> = variables.iter().collect();
    sorted.sort_by_key(|v| v.scope);
    let mut merged = BTreeMap::new();
    for variable in sorted {
        merged.insert(variable.name.clone(), variable.clone());
    }
    merged
}

/// The values Berth itself provides to every application container.
#[derive(Debug, Clone)]
pub struct BuiltinVariables<'a> {
    pub port: Option<u16>,
    pub project_name: &'a str,
    pub environment_name: &'a str,
    pub application_name: &'a str,
    pub git_commit: Option<&'a str>,
    pub deployment_id: String,
}

impl BuiltinVariables<'_> {
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("BERTH_PROJECT_NAME".to_owned(), self.project_name.to_owned()),
            ("BERTH_ENVIRONMENT_NAME".to_owned(), self.environment_name.to_owned()),
            ("BERTH_APPLICATION_NAME".to_owned(), self.application_name.to_owned()),
            ("BERTH_GIT_COMMIT".to_owned(), self.git_commit.unwrap_or("").to_owned()),
            ("BERTH_DEPLOYMENT_ID".to_owned(), self.deployment_id.clone()),
        ];
        if let Some(port) = self.port {
            pairs.push(("PORT".to_owned(), port.to_string()));
        }
        pairs
    }
}

/// Masks a secret for display: never reveals length or content.
pub const MASKED_VALUE: &str = "********";

/// Parses one line of a `.env` file: `KEY=VALUE`, `export KEY=VALUE`, quotes stripped,
/// comments and blank lines skipped (`Ok(None)`).
pub fn parse_dotenv_line(line: &str) -> Result<Option<(String, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let Some((key, value)) = line.split_once('=') else {
        return Err("expected KEY=VALUE".to_owned());
    };
    let value = value.trim();
    let value = if value.len() >= 2
        && ((value.starts_with('"') && value.ends_with('"'))
            || (value.starts_with('\'') && value.ends_with('\'')))
    {
        &value[1..value.len() - 1]
    } else {
        value
    };
    Ok(Some((key.trim().to_owned(), value.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(scope: VariableScope, name: &str, value: &str) -> ResolvedVariable {
        ResolvedVariable {
            scope,
            name: EnvVarName::parse(name).unwrap(),
            value: value.to_owned(),
            secret: false,
        }
    }

    #[test]
    fn narrower_scope_wins() {
        let merged = resolve(&[
            var(VariableScope::Application, "A", "app"),
            var(VariableScope::Project, "A", "project"),
            var(VariableScope::Environment, "A", "env"),
            var(VariableScope::Project, "B", "project"),
            var(VariableScope::Environment, "C", "env"),
        ]);
        let pairs: Vec<_> = merged.iter().map(|(k, v)| format!("{k}={}", v.value)).collect();
        assert_eq!(pairs, ["A=app", "B=project", "C=env"]);
    }

    #[test]
    fn secrets_are_masked_in_debug_output() {
        let mut v = var(VariableScope::Project, "TOKEN", "hunter2");
        v.secret = true;
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn dotenv_lines() {
        assert_eq!(parse_dotenv_line("# c").unwrap(), None);
        assert_eq!(
            parse_dotenv_line("export A=\"x y\"").unwrap(),
            Some(("A".into(), "x y".into()))
        );
        assert_eq!(parse_dotenv_line("B=1=2").unwrap(), Some(("B".into(), "1=2".into())));
        assert!(parse_dotenv_line("nope").is_err());
    }
}
