//! Where the CLI finds its server and its token.
//!
//! Expected flow: the process environment is read once into [`ProcessEnv`]; every path and
//! decision below is a function of it and of the global flags, so it is tested without
//! touching the real environment.
//!
//! - URL: `--url`/`BERTH_URL`, else the URL saved by `berth login`, else
//!   [`DEFAULT_URL`](crate::args::DEFAULT_URL).
//! - Token: `--token`/`BERTH_TOKEN`, else the token saved by `berth login` (only when it was
//!   saved for this same URL), else the admin token of the local server's data directory
//!   (only when the URL is a loopback address, so a local admin token is never sent to
//!   another machine).
//!
//! Guarantees: the config file is written with mode 0600 (write to a temporary file, then
//! rename), its directory with mode 0700.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::args::{GlobalArgs, DEFAULT_URL};

/// The parts of the process environment the CLI depends on, read once.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessEnv {
    pub(crate) home: Option<PathBuf>,
    pub(crate) xdg_config_home: Option<PathBuf>,
    pub(crate) xdg_data_home: Option<PathBuf>,
    pub(crate) berth_data_dir: Option<PathBuf>,
    pub(crate) is_root: bool,
}

impl ProcessEnv {
    pub(crate) fn from_process() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let is_root = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| effective_uid(&status))
            .map(|uid| uid == 0)
            .unwrap_or(false);
        ProcessEnv {
            home: var("HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_data_home: var("XDG_DATA_HOME"),
            berth_data_dir: var("BERTH_DATA_DIR"),
            is_root,
        }
    }

    /// `$XDG_CONFIG_HOME/berth/config.json`, else `$HOME/.config/berth/config.json`.
    pub(crate) fn config_file(&self) -> Option<PathBuf> {
        xdg_dir(self.xdg_config_home.as_deref(), self.home.as_deref(), ".config")
            .map(|dir| dir.join("berth").join("config.json"))
    }

    /// The admin token a local `berth server` with default flags writes.
    pub(crate) fn admin_token_file(&self) -> Option<PathBuf> {
        let data_dir = if let Some(dir) = &self.berth_data_dir {
            dir.clone()
        } else if self.is_root {
            PathBuf::from("/var/lib/berth")
        } else {
            xdg_dir(self.xdg_data_home.as_deref(), self.home.as_deref(), ".local/share")?
                .join("berth")
        };
        Some(data_dir.join("admin.token"))
    }
}

/// An XDG base directory: the variable when absolute (the spec says to ignore relative
/// values), else `$HOME/<fallback>`.
fn xdg_dir(xdg: Option<&Path>, home: Option<&Path>, fallback: &str) -> Option<PathBuf> {
    match xdg {
        Some(dir) if dir.is_absolute() => Some(dir.to_path_buf()),
        _ => home.map(|home| home.join(fallback)),
    }
}

/// The effective uid from the `Uid:` line of `/proc/self/status` (real, effective, saved,
/// filesystem).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// What `berth login` saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfigFile {
    pub(crate) url: String,
    pub(crate) token: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("{url:?} is not a usable server URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot read the config file {}: {source}", path.display())]
    ReadConfig { path: PathBuf, source: io::Error },
    #[error("the config file {} is not valid: {source}", path.display())]
    ParseConfig { path: PathBuf, source: serde_json::Error },
    #[error("cannot write the config file {}: {source}", path.display())]
    WriteConfig { path: PathBuf, source: io::Error },
    #[error("neither XDG_CONFIG_HOME nor HOME is set, so there is no place for the config file")]
    NoConfigDirectory,
    #[error("no API token for {url}{}", notes.iter().map(|n| format!("\n  ({n})")).collect::<String>())]
    NoToken { url: String, notes: Vec<String> },
}

impl ConfigError {
    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            ConfigError::InvalidUrl { .. } => {
                Some(format!("give the server's base URL, e.g. --url {DEFAULT_URL}"))
            }
            ConfigError::ParseConfig { .. } => {
                Some("fix or delete it, then run `berth login --url URL --token TOKEN`".into())
            }
            ConfigError::NoToken { .. } => Some(
                "run `berth login --url URL --token TOKEN`, pass --token / set BERTH_TOKEN, or \
                 use the admin token whose path `berth server` printed when it first started"
                    .into(),
            ),
            ConfigError::NoConfigDirectory => Some("set HOME or XDG_CONFIG_HOME".into()),
            ConfigError::ReadConfig { .. } | ConfigError::WriteConfig { .. } => None,
        }
    }
}

/// A normalized server base URL (`http://host:port` or with a path prefix, no trailing
/// slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerUrl(String);

impl ServerUrl {
    pub(crate) fn parse(raw: &str) -> Result<Self, ConfigError> {
        let invalid =
            |reason: &str| ConfigError::InvalidUrl { url: raw.to_owned(), reason: reason.into() };
        if !raw.contains("://") {
            return Err(invalid(&format!("add the scheme, e.g. http://{}", raw.trim())));
        }
        let url = Url::parse(raw.trim()).map_err(|error| invalid(&error.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid("use http:// or https://"));
        }
        if url.host_str().is_none() {
            return Err(invalid("it has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("remove the query and fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("put credentials in --token, not in the URL"));
        }
        Ok(ServerUrl(url.as_str().trim_end_matches('/').to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the host is this machine (`localhost`, 127.0.0.0/8, ::1).
    pub(crate) fn is_loopback(&self) -> bool {
        let Ok(url) = Url::parse(&self.0) else { return false };
        let Some(host) = url.host_str() else { return false };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => host == "localhost" || host.ends_with(".localhost"),
        }
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the token came from (said in messages, never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    Flag,
    ConfigFile(PathBuf),
    AdminToken(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Flag => f.write_str("--token / BERTH_TOKEN"),
            TokenSource::ConfigFile(path) => {
                write!(f, "{} (saved by `berth login`)", path.display())
            }
            TokenSource::AdminToken(path) => write!(f, "the admin token file {}", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) url: ServerUrl,
    pub(crate) token: String,
    pub(crate) token_source: TokenSource,
}

pub(crate) fn load_config(path: &Path) -> Result<Option<ConfigFile>, ConfigError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ConfigError::ReadConfig { path: path.to_owned(), source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| ConfigError::ParseConfig { path: path.to_owned(), source })
}

/// Writes the config file atomically with mode 0600.
pub(crate) fn save_config(path: &Path, config: &ConfigFile) -> Result<(), ConfigError> {
    let write_error = |source| ConfigError::WriteConfig { path: path.to_owned(), source };
    let directory = path.parent().ok_or(ConfigError::NoConfigDirectory)?;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(directory).map_err(write_error)?;
    let temporary = directory.join(format!(".config.json.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        let mut json = serde_json::to_vec_pretty(config).map_err(io::Error::other)?;
        json.push(b'\n');
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result.map_err(write_error)
}

/// The URL to talk to: the flag/variable, else the saved one, else the default.
pub(crate) fn resolve_url(
    global: &GlobalArgs,
    saved: Option<&ConfigFile>,
) -> Result<ServerUrl, ConfigError> {
    match non_empty(global.url.as_deref()) {
        Some(url) => ServerUrl::parse(url),
        None => ServerUrl::parse(saved.map(|c| c.url.as_str()).unwrap_or(DEFAULT_URL)),
    }
}

/// Resolves URL and token for every command except `login`.
pub(crate) fn resolve_connection(
    global: &GlobalArgs,
    env: &ProcessEnv,
) -> Result<Connection, ConfigError> {
    let config_path = env.config_file();
    let saved = match &config_path {
        Some(path) => load_config(path)?,
        None => None,
    };
    let url = resolve_url(global, saved.as_ref())?;
    if let Some(token) = non_empty(global.token.as_deref()) {
        return Ok(Connection { url, token: token.to_owned(), token_source: TokenSource::Flag });
    }
    let mut notes = Vec::new();
    if let (Some(saved), Some(path)) = (&saved, &config_path) {
        let saved_for_this_url = ServerUrl::parse(&saved.url).ok().as_ref() == Some(&url);
        if saved_for_this_url && !saved.token.trim().is_empty() {
            return Ok(Connection {
                url,
                token: saved.token.trim().to_owned(),
                token_source: TokenSource::ConfigFile(path.clone()),
            });
        }
        notes.push(format!(
            "the token saved in {} is for {}, not this URL",
            path.display(),
            saved.url
        ));
    }
    match env.admin_token_file() {
        Some(path) if url.is_loopback() => match fs::read_to_string(&path) {
            Ok(token) if !token.trim().is_empty() => {
                return Ok(Connection {
                    url,
                    token: token.trim().to_owned(),
                    token_source: TokenSource::AdminToken(path),
                });
            }
            Ok(_) => notes.push(format!("{} is empty", path.display())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                notes.push(format!("no admin token at {}", path.display()))
            }
            Err(error) => notes.push(format!("cannot read {}: {error}", path.display())),
        },
        Some(path) => notes.push(format!(
            "the local admin token {} is only used for a server on this machine",
            path.display()
        )),
        None => {}
    }
    Err(ConfigError::NoToken { url: url.to_string(), notes })
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use expect_test::expect;

    use super::*;

    fn env_in(dir: &Path) -> ProcessEnv {
        ProcessEnv {
            home: Some(dir.join("home")),
            xdg_config_home: None,
            xdg_data_home: None,
            berth_data_dir: None,
            is_root: false,
        }
    }

    fn global(url: Option<&str>, token: Option<&str>) -> GlobalArgs {
        GlobalArgs { url: url.map(Into::into), token: token.map(Into::into), ..Default::default() }
    }

    #[test]
    fn paths_follow_xdg_then_home_then_root_rules() {
        let mut env = ProcessEnv { home: Some("/home/u".into()), ..Default::default() };
        assert_eq!(env.config_file(), Some("/home/u/.config/berth/config.json".into()));
        assert_eq!(env.admin_token_file(), Some("/home/u/.local/share/berth/admin.token".into()));
        env.xdg_config_home = Some("relative/ignored".into());
        env.xdg_data_home = Some("/xdg/data".into());
        assert_eq!(env.config_file(), Some("/home/u/.config/berth/config.json".into()));
        assert_eq!(env.admin_token_file(), Some("/xdg/data/berth/admin.token".into()));
        env.is_root = true;
        assert_eq!(env.admin_token_file(), Some("/var/lib/berth/admin.token".into()));
        env.berth_data_dir = Some("/srv/berth".into());
        assert_eq!(env.admin_token_file(), Some("/srv/berth/admin.token".into()));
    }

    #[test]
    fn effective_uid_is_the_second_number() {
        let status = "Name:\tberth\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name: x\n"), None);
    }

    #[test]
    fn urls_are_normalized_and_checked() {
        assert_eq!(
            ServerUrl::parse("http://127.0.0.1:8080/").unwrap().as_str(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            ServerUrl::parse("https://h.example/berth/").unwrap().as_str(),
            "https://h.example/berth"
        );
        let errors: Vec<String> = ["127.0.0.1:8080", "ftp://h", "http://u:p@h", "http://h/?a=1"]
            .iter()
            .map(|raw| ServerUrl::parse(raw).unwrap_err().to_string())
            .collect();
        expect![[r#"
            [
                "\"127.0.0.1:8080\" is not a usable server URL: add the scheme, e.g. http://127.0.0.1:8080",
                "\"ftp://h\" is not a usable server URL: use http:// or https://",
                "\"http://u:p@h\" is not a usable server URL: put credentials in --token, not in the URL",
                "\"http://h/?a=1\" is not a usable server URL: remove the query and fragment",
            ]
        "#]]
        .assert_debug_eq(&errors);
        assert!(ServerUrl::parse("http://localhost:1").unwrap().is_loopback());
        assert!(ServerUrl::parse("http://[::1]:1").unwrap().is_loopback());
        assert!(!ServerUrl::parse("http://10.0.0.1:1").unwrap().is_loopback());
    }

    #[test]
    fn login_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        let path = env.config_file().unwrap();
        let config = ConfigFile { url: "http://127.0.0.1:9".into(), token: "t0k".into() };
        save_config(&path, &config).unwrap();
        save_config(&path, &config).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(load_config(&path).unwrap(), Some(config));
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary left");
    }

    #[test]
    fn token_precedence_is_flag_then_login_then_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env_in(dir.path());
        env.berth_data_dir = Some(dir.path().join("data"));
        fs::create_dir_all(dir.path().join("data")).unwrap();
        fs::write(dir.path().join("data/admin.token"), "admin-secret\n").unwrap();

        let resolved = resolve_connection(&global(None, None), &env).unwrap();
        assert_eq!(resolved.token, "admin-secret");
        assert_eq!(resolved.url.as_str(), DEFAULT_URL);
        assert!(matches!(resolved.token_source, TokenSource::AdminToken(_)));

        let saved = ConfigFile { url: "http://127.0.0.1:9000".into(), token: "login-token".into() };
        save_config(&env.config_file().unwrap(), &saved).unwrap();
        let resolved = resolve_connection(&global(None, None), &env).unwrap();
        assert_eq!(
            (resolved.url.as_str(), resolved.token.as_str()),
            ("http://127.0.0.1:9000", "login-token")
        );

        let resolved = resolve_connection(&global(None, Some("flag")), &env).unwrap();
        assert_eq!((resolved.token.as_str(), resolved.token_source), ("flag", TokenSource::Flag));

        // The saved token belongs to its URL; another local URL falls back to the admin token.
        let resolved =
            resolve_connection(&global(Some("http://127.0.0.1:7000"), None), &env).unwrap();
        assert_eq!(resolved.token, "admin-secret");
    }

    #[test]
    fn no_token_error_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env_in(Path::new("/nonexistent-berth-test"));
        env.berth_data_dir = Some("/nonexistent-berth-test/data".into());
        let error = resolve_connection(&global(None, None), &env).unwrap_err();
        expect![[r#"
            no API token for http://127.0.0.1:8080
              (no admin token at /nonexistent-berth-test/data/admin.token)"#]]
        .assert_eq(&error.to_string());

        let env = env_in(dir.path());
        let saved = ConfigFile { url: "http://127.0.0.1:9000".into(), token: "login-token".into() };
        save_config(&env.config_file().unwrap(), &saved).unwrap();
        let error =
            resolve_connection(&global(Some("http://berth.example.com"), None), &env).unwrap_err();
        let text = error.to_string().replace(dir.path().to_str().unwrap(), "$TMP");
        expect![[r#"
            no API token for http://berth.example.com
              (the token saved in $TMP/home/.config/berth/config.json is for http://127.0.0.1:9000, not this URL)
              (the local admin token $TMP/home/.local/share/berth/admin.token is only used for a server on this machine)"#]]
        .assert_eq(&text);
    }
}
