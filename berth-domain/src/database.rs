//! Database services: engines and versions Berth runs, how a database is provided
//! (a container with a volume, or an external server), and the built-in variables that
//! give applications its coordinates.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::{NameError, ResourceName};

/// The database engines Berth runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseEngine {
    Postgresql,
    /// MariaDB; `mysql` is accepted as its MySQL-compatible name.
    Mariadb,
    Redis,
}

impl DatabaseEngine {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        match value.to_ascii_lowercase().as_str() {
            "postgresql" | "postgres" => Ok(Self::Postgresql),
            "mariadb" | "mysql" => Ok(Self::Mariadb),
            "redis" => Ok(Self::Redis),
            _ => Err(NameError::new_pub(
                "database engine",
                value,
                "use postgresql, mariadb (or mysql) or redis",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgresql => "postgresql",
            Self::Mariadb => "mariadb",
            Self::Redis => "redis",
        }
    }

    /// The version used when none is given (the one the offline images provide).
    pub fn default_version(self) -> &'static str {
        match self {
            Self::Postgresql => "15",
            Self::Mariadb => "10.11",
            Self::Redis => "7.0",
        }
    }

    /// The port the server listens on inside its container.
    pub fn port(self) -> u16 {
        match self {
            Self::Postgresql => 5432,
            Self::Mariadb => 3306,
            Self::Redis => 6379,
        }
    }

    /// The URL scheme of connection strings.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Postgresql => "postgresql",
            Self::Mariadb => "mysql",
            Self::Redis => "redis",
        }
    }

    /// The locally built image (scripts/build-base-images.sh) for a version; the same
    /// name is pulled from a registry when it is not present and one is reachable.
    pub fn image(self, version: &DatabaseVersion) -> String {
        let repository = match self {
            Self::Postgresql => "berth/postgres",
            Self::Mariadb => "berth/mariadb",
            Self::Redis => "berth/redis",
        };
        format!("{repository}:{version}")
    }
}

impl fmt::Display for DatabaseEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version like `15` or `10.11`: digits and dots only, since it becomes an image tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatabaseVersion(String);

impl DatabaseVersion {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let valid = !value.is_empty()
            && value.len() <= 16
            && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && !value.starts_with('.')
            && !value.ends_with('.');
        if !valid {
            return Err(NameError::new_pub(
                "database version",
                value,
                "use digits and dots, e.g. 15 or 10.11",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DatabaseVersion {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<DatabaseVersion> for String {
    fn from(value: DatabaseVersion) -> String {
        value.0
    }
}

/// How a database is provided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum DatabaseMode {
    /// One container with a named volume on the environment's network.
    Container {
        /// Storage accounted for the volume, in GB.
        storage_gb: u32,
    },
    /// An existing server (e.g. one a cloud provider manages); its URL, with the
    /// password, is stored encrypted with the credentials.
    External,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSpec {
    pub engine: DatabaseEngine,
    pub version: DatabaseVersion,
    pub mode: DatabaseMode,
}

/// How to reach a database: the values behind the built-in variables.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseCredentials {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Database name (PostgreSQL, MariaDB) or index (Redis, usually `0`).
    pub database: String,
}

impl fmt::Debug for DatabaseCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseCredentials")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"********")
            .field("database", &self.database)
            .finish()
    }
}

impl DatabaseCredentials {
    /// The connection URL, e.g. `postgresql://user:password@main:5432/app`.
    pub fn url(&self, engine: DatabaseEngine) -> String {
        let user = percent_encode(&self.user);
        let password = percent_encode(&self.password);
        let authority = match engine {
            DatabaseEngine::Redis if self.user.is_empty() || self.user == "default" => {
                format!(":{password}@")
            }
            _ => format!("{user}:{password}@"),
        };
        format!(
            "{}://{authority}{}:{}/{}",
            engine.scheme(),
            self.host,
            self.port,
            percent_encode(&self.database)
        )
    }

    /// Parses an external server's URL (`postgresql://user:pass@host:5432/db`,
    /// `mysql://...`, `redis://:pass@host:6379/0`).
    pub fn parse_url(engine: DatabaseEngine, url: &str) -> Result<Self, NameError> {
        let fail = |reason: &str| NameError::new_pub("database URL", &redact_url(url), reason);
        let schemes: &[&str] = match engine {
            DatabaseEngine::Postgresql => &["postgresql", "postgres"],
            DatabaseEngine::Mariadb => &["mysql", "mariadb"],
            DatabaseEngine::Redis => &["redis"],
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| fail("expected scheme://user:password@host:port/name"))?;
        if !schemes.contains(&scheme) {
            return Err(fail(&format!("a {engine} URL starts with {}://", schemes[0])));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority
            .rsplit_once('@')
            .ok_or_else(|| fail("give the user and password: scheme://user:password@host"))?;
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) => {
                (host, port.parse::<u16>().map_err(|_| fail("the port is not a number"))?)
            }
            None => (hostport, engine.port()),
        };
        if host.is_empty()
            || host.starts_with('-')
            || host.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(fail("the host name is missing or invalid"));
        }
        let database = path.split(['?', '#']).next().unwrap_or_default();
        let database =
            if database.is_empty() && engine == DatabaseEngine::Redis { "0" } else { database };
        if database.is_empty() {
            return Err(fail("give the database name after the host: .../name"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            user: percent_decode(user),
            password: percent_decode(password),
            database: percent_decode(database),
        })
    }
}

/// The URL with its password masked, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (userinfo, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:********@{host}")
        }
        _ => url.to_owned(),
    }
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            // Bytes, not a str slice: a multi-byte character after '%' must not panic.
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `BERTH_DATABASE_<NAME>`: the prefix of a database's built-in variables.
pub fn builtin_prefix(name: &ResourceName) -> String {
    format!("BERTH_DATABASE_{}", name.as_str().to_ascii_uppercase().replace('-', "_"))
}

/// The built-in variables of one database, as given to the environment's applications.
pub fn builtin_variables(
    name: &ResourceName,
    engine: DatabaseEngine,
    credentials: &DatabaseCredentials,
) -> Vec<(String, String)> {
    let prefix = builtin_prefix(name);
    vec![
        (format!("{prefix}_URL"), credentials.url(engine)),
        (format!("{prefix}_HOST"), credentials.host.clone()),
        (format!("{prefix}_PORT"), credentials.port.to_string()),
        (format!("{prefix}_USER"), credentials.user.clone()),
        (format!("{prefix}_PASSWORD"), credentials.password.clone()),
        (format!("{prefix}_NAME"), credentials.database.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_and_versions() {
        assert_eq!(DatabaseEngine::parse("MySQL").unwrap(), DatabaseEngine::Mariadb);
        assert!(DatabaseEngine::parse("oracle").is_err());
        assert!(DatabaseVersion::parse("15").is_ok());
        assert!(DatabaseVersion::parse("10.11").is_ok());
        assert!(DatabaseVersion::parse("latest").is_err());
        assert_eq!(
            DatabaseEngine::Postgresql.image(&DatabaseVersion::parse("15").unwrap()),
            "berth/postgres:15"
        );
    }

    #[test]
    fn urls_round_trip_and_are_redacted() {
        let credentials = DatabaseCredentials {
            host: "main".into(),
            port: 5432,
            user: "app".into(),
            password: "p@ss:w/rd".into(),
            database: "app".into(),
        };
        let url = credentials.url(DatabaseEngine::Postgresql);
        assert_eq!(url, "postgresql://app:p%40ss%3Aw%2Frd@main:5432/app");
        assert_eq!(
            DatabaseCredentials::parse_url(DatabaseEngine::Postgresql, &url).unwrap(),
            credentials
        );
        assert_eq!(redact_url(&url), "postgresql://app:********@main:5432/app");
        let redis =
            DatabaseCredentials::parse_url(DatabaseEngine::Redis, "redis://:secret@cache:6379")
                .unwrap();
        assert_eq!((redis.password.as_str(), redis.database.as_str()), ("secret", "0"));
        assert!(
            DatabaseCredentials::parse_url(DatabaseEngine::Postgresql, "mysql://a:b@h/db").is_err()
        );
        let odd =
            DatabaseCredentials::parse_url(DatabaseEngine::Postgresql, "postgresql://u:%aé%@h/db")
                .unwrap();
        assert_eq!(odd.password, "%aé%");
        let error = DatabaseCredentials::parse_url(
            DatabaseEngine::Postgresql,
            "postgresql://u:topsecret@h",
        )
        .unwrap_err();
        assert!(!error.to_string().contains("topsecret"), "{error}");
    }

    #[test]
    fn builtin_names() {
        let name = ResourceName::parse("main-db").unwrap();
        let credentials = DatabaseCredentials {
            host: "main-db".into(),
            port: 6379,
            user: "default".into(),
            password: "x".into(),
            database: "0".into(),
        };
        let vars = builtin_variables(&name, DatabaseEngine::Redis, &credentials);
        assert_eq!(
            vars[0],
            ("BERTH_DATABASE_MAIN_DB_URL".into(), "redis://:x@main-db:6379/0".into())
        );
    }
}
