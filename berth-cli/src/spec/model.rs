//! The data model of a spec file (`berth.toml`): one project with its variables and
//! environments, each environment with its databases, applications and variables.
//!
//! The same types describe both sides of `berth apply`: the file (desired state) and what
//! the server holds (read through the API by `remote`), so a diff is a comparison of two
//! values and `berth export` is the server's side serialized. Absent fields take the API's
//! defaults at deserialization (`mode = "development"`, `instances = 1`, ...), which is what
//! makes "field left out" and "field set to its default" compare equal. Every table refuses
//! unknown keys (`deny_unknown_fields`), so a typo is an error naming the key, not a
//! silently ignored setting.
//!
//! Secrets appear only as references (`{ secret = true }`): their values are never part
//! of the model.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectSpec {
    /// The project's name (a DNS label).
    pub(crate) project: String,
    /// Project-scoped variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) variables: BTreeMap<String, VariableSpec>,
    #[serde(default)]
    pub(crate) environments: BTreeMap<String, EnvironmentSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvironmentSpec {
    /// `production`, `staging`, `development` or `preview`.
    #[serde(default = "default_mode")]
    pub(crate) mode: String,
    /// The Git branch the environment's applications follow.
    #[serde(default = "default_branch")]
    pub(crate) branch: String,
    /// Environment-scoped variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) variables: BTreeMap<String, VariableSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) databases: BTreeMap<String, DatabaseSpec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) applications: BTreeMap<String, ApplicationSpec>,
}

fn default_mode() -> String {
    "development".into()
}

fn default_branch() -> String {
    "main".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseSpec {
    /// `postgresql`, `mariadb` (`mysql`) or `redis`.
    pub(crate) engine: String,
    /// Absent: the engine's default (15, 10.11, 7.0); filled in by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
    /// `container` or `external`.
    #[serde(default = "default_database_mode", skip_serializing_if = "is_container")]
    pub(crate) mode: String,
    /// Container mode: GB accounted for the volume (default 1, filled in by validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) storage_gb: Option<u32>,
    /// External mode: where the URL (with its password) comes from when `apply` creates
    /// the database. Not compared: the server never returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<SecretSource>,
}

fn default_database_mode() -> String {
    "container".into()
}

/// `url = { secret = "ORDERS_DATABASE_URL" }`: the value is read from that environment
/// variable of the `berth apply` process, once, when the database is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretSource {
    pub(crate) secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplicationSpec {
    /// Git repository URL (exactly one of `git` and `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) git: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) image: Option<String>,
    /// Branch override (Git only); absent: the environment's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) branch: Option<String>,
    /// Build context inside the repository (Git only).
    #[serde(default, skip_serializing_if = "is_default_root_path")]
    pub(crate) root_path: Option<String>,
    /// Dockerfile path relative to the root path (Git only).
    #[serde(default, skip_serializing_if = "is_default_dockerfile_path")]
    pub(crate) dockerfile_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) port: Option<u32>,
    #[serde(default, skip_serializing_if = "is_public")]
    pub(crate) visibility: Visibility,
    /// CPU limit in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpu: Option<f64>,
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory_mb: Option<u32>,
    #[serde(default = "default_instances", skip_serializing_if = "is_one")]
    pub(crate) instances: u32,
    /// Seconds old instances keep serving in-flight requests after a switch.
    #[serde(default = "default_drain_secs", skip_serializing_if = "is_default_drain")]
    pub(crate) drain_secs: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) release_command: Option<String>,
    /// Build arguments (Git only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) build_args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_default_health_check")]
    pub(crate) health_check: HealthCheckSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) volumes: Vec<VolumeSpec>,
    /// Applications or databases of the environment deployed before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) depends_on: Vec<String>,
    /// Globs relative to the repository root (`!` excludes) whose changes redeploy the
    /// application on a push; empty: its root path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) watch_paths: Vec<String>,
    /// Whether a push to the followed branch deploys it.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub(crate) auto_deploy: bool,
    /// Application-scoped variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) variables: BTreeMap<String, VariableSpec>,
}

// What `berth export` leaves out: values equal to the defaults, so an exported file reads
// like a hand-written one (and still compares equal, since parsing fills them in again).

fn is_default_root_path(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(|path| path == ".")
}

fn is_default_dockerfile_path(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(|path| path == "Dockerfile")
}

fn is_public(value: &Visibility) -> bool {
    *value == Visibility::Public
}

fn is_one(value: &u32) -> bool {
    *value == 1
}

fn is_default_drain(value: &f64) -> bool {
    *value == default_drain_secs()
}

fn is_default_health_check(value: &HealthCheckSpec) -> bool {
    *value == HealthCheckSpec::default()
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_container(value: &String) -> bool {
    value == "container"
}

fn default_true() -> bool {
    true
}

fn default_instances() -> u32 {
    1
}

fn default_drain_secs() -> f64 {
    5.0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Visibility {
    #[default]
    Public,
    Private,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheckSpec {
    /// `tcp` or `http`.
    #[serde(default = "default_health_kind")]
    pub(crate) kind: String,
    /// HTTP only (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    /// HTTP only (default `200-399`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expected_status: Option<String>,
    #[serde(default)]
    pub(crate) start_delay_secs: f64,
    #[serde(default = "default_two_seconds")]
    pub(crate) interval_secs: f64,
    #[serde(default = "default_two_seconds")]
    pub(crate) timeout_secs: f64,
    #[serde(default = "default_failure_threshold")]
    pub(crate) failure_threshold: u32,
}

impl Default for HealthCheckSpec {
    fn default() -> Self {
        HealthCheckSpec {
            kind: default_health_kind(),
            path: None,
            expected_status: None,
            start_delay_secs: 0.0,
            interval_secs: default_two_seconds(),
            timeout_secs: default_two_seconds(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

fn default_health_kind() -> String {
    "tcp".into()
}

fn default_two_seconds() -> f64 {
    2.0
}

fn default_failure_threshold() -> u32 {
    3
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VolumeSpec {
    pub(crate) name: String,
    /// Absolute mount path inside the container.
    pub(crate) path: String,
    #[serde(default = "default_volume_size")]
    pub(crate) size_gb: u32,
}

fn default_volume_size() -> u32 {
    1
}

/// A variable: a plain value (`LOG_LEVEL = "info"`), a reference to a secret that must
/// exist at the same scope (`API_KEY = { secret = true }`), or an alias of a database's
/// built-in variable (`DATABASE_URL = { alias = "BERTH_DATABASE_MAIN_URL" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VariableSpec {
    Plain(String),
    Secret,
    Alias(String),
}

/// The table form of a variable, before it is checked to be exactly one of the two.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariableTable {
    #[serde(default)]
    secret: Option<bool>,
    #[serde(default)]
    alias: Option<String>,
}

impl Serialize for VariableSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            VariableSpec::Plain(value) => serializer.serialize_str(value),
            VariableSpec::Secret => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("secret", &true)?;
                map.end()
            }
            VariableSpec::Alias(target) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("alias", target)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for VariableSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VariableVisitor;
        impl<'de> Visitor<'de> for VariableVisitor {
            type Value = VariableSpec;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(
                    "a string value, `{ secret = true }` or `{ alias = \"BERTH_DATABASE_<NAME>_URL\" }`",
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<VariableSpec, E> {
                Ok(VariableSpec::Plain(value.to_owned()))
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<VariableSpec, M::Error> {
                let table = VariableTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                match (table.secret, table.alias) {
                    (Some(true), None) => Ok(VariableSpec::Secret),
                    (None, Some(alias)) => Ok(VariableSpec::Alias(alias)),
                    (Some(false), None) => Err(de::Error::custom(
                        "`secret = false` means nothing: give the value as a string instead",
                    )),
                    (Some(_), Some(_)) => Err(de::Error::custom(
                        "a variable is either a secret or an alias, not both",
                    )),
                    (None, None) => Err(de::Error::custom(
                        "give `secret = true` or `alias = \"BERTH_DATABASE_<NAME>_URL\"`",
                    )),
                }
            }
        }
        deserializer.deserialize_any(VariableVisitor)
    }
}
