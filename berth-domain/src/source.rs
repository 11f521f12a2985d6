//! Where an application's code comes from: repository URLs (validated so that nothing a
//! user typed can make Git run a command), root paths and Dockerfile paths inside a
//! checkout, and image references.

use std::fmt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::names::NameError;

/// How a repository is reached. Local repositories are only allowed when the server runs
/// with `--allow-local-repositories`, because they read the server's own file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepositoryTransport {
    Https,
    /// Plain http: accepted because `git http-backend` on a private network speaks it.
    Http,
    Ssh,
    Local,
}

/// A validated Git repository location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepositoryUrl(String);

impl RepositoryUrl {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let fail = |reason: &str| Err(NameError::new_pub("repository URL", value, reason));
        if value.is_empty() {
            return fail("it is empty");
        }
        if value.len() > 2048 {
            return fail("it is longer than 2048 characters");
        }
        if value.starts_with('-') {
            return fail("it starts with '-', which Git would read as an option");
        }
        // `transport::address` makes Git run a remote helper; `ext::` runs any command.
        if let Some((scheme, _)) = value.split_once("::") {
            if !scheme.contains('/') {
                return fail(&format!(
                    "the \"{scheme}::\" remote-helper syntax is not allowed; use an https://, ssh:// or file:// URL"
                ));
            }
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return fail("it contains spaces or control characters");
        }
        let transport = Self::classify(value);
        match transport {
            Some(RepositoryTransport::Https | RepositoryTransport::Http) => {
                let rest = value.split_once("://").map(|(_, r)| r).unwrap_or_default();
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host = host.rsplit('@').next().unwrap_or_default();
                if host.is_empty() || host.starts_with('-') {
                    return fail("it has no host name");
                }
                if rest.split_once('@').is_some_and(|(userinfo, _)| !userinfo.contains('/')) {
                    return fail("credentials in the URL are not accepted; give a token with --git-token-stdin instead");
                }
            }
            Some(RepositoryTransport::Ssh) => {
                let host_part = value
                    .strip_prefix("ssh://")
                    .map(|r| r.split('/').next().unwrap_or_default())
                    .unwrap_or_else(|| value.split(':').next().unwrap_or_default());
                let host = host_part.rsplit('@').next().unwrap_or_default();
                if host.is_empty() || host.starts_with('-') {
                    return fail("it has no host name, or the host starts with '-'");
                }
            }
            Some(RepositoryTransport::Local) => {}
            None => {
                return fail("use an https://, http://, ssh:// (or user@host:path), file:// URL or an absolute path")
            }
        }
        Ok(Self(value.to_owned()))
    }

    fn classify(value: &str) -> Option<RepositoryTransport> {
        if value.starts_with("https://") {
            Some(RepositoryTransport::Https)
        } else if value.starts_with("http://") {
            Some(RepositoryTransport::Http)
        } else if value.starts_with("ssh://") {
            Some(RepositoryTransport::Ssh)
        } else if value.starts_with("file://") || value.starts_with('/') {
            Some(RepositoryTransport::Local)
        } else if value.contains("://") {
            None
        } else {
            // scp-like `user@host:path`: Git treats it as ssh when a ':' comes before any '/'.
            let colon = value.find(':')?;
            let slash = value.find('/').unwrap_or(usize::MAX);
            (colon < slash && colon > 0).then_some(RepositoryTransport::Ssh)
        }
    }

    pub fn transport(&self) -> RepositoryTransport {
        // Parsing guaranteed a known transport.
        Self::classify(&self.0).unwrap_or(RepositoryTransport::Local)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepositoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RepositoryUrl {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RepositoryUrl> for String {
    fn from(value: RepositoryUrl) -> String {
        value.0
    }
}

/// A relative path inside a checkout (root path, Dockerfile path): no `..`, no absolute
/// path, so a build can never read outside the repository it cloned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepositoryPath(String);

impl RepositoryPath {
    pub fn parse(kind: &'static str, value: &str) -> Result<Self, NameError> {
        let trimmed = value.trim_start_matches("./");
        let trimmed = if trimmed.is_empty() { "." } else { trimmed };
        let fail = |reason: &str| Err(NameError::new_pub(kind, value, reason));
        if trimmed.len() > 1024 || trimmed.chars().any(char::is_control) {
            return fail("it is too long or contains control characters");
        }
        if trimmed.starts_with('-') {
            return fail("it starts with '-'");
        }
        for component in Path::new(trimmed).components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                _ => return fail("use a path relative to the repository root, without '..'"),
            }
        }
        Ok(Self(trimmed.trim_end_matches('/').to_owned()))
    }

    /// The repository root itself.
    pub fn root() -> Self {
        Self(".".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepositoryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RepositoryPath {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse("path", &value)
    }
}

impl From<RepositoryPath> for String {
    fn from(value: RepositoryPath) -> String {
        value.0
    }
}

/// A container image reference such as `registry:5000/team/app:1.2` or `app@sha256:...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageReference(String);

impl ImageReference {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let valid = !value.is_empty()
            && value.len() <= 512
            && !value.starts_with(['-', '.', ':', '/', '@'])
            && value.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_uppercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-' | b'/' | b':' | b'@')
            });
        if !valid {
            return Err(NameError::new_pub(
                "image reference",
                value,
                "use [registry[:port]/]name[:tag][@digest], e.g. 127.0.0.1:5000/team/app:1.0",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ImageReference {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ImageReference> for String {
    fn from(value: ImageReference) -> String {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_recognised() {
        let cases = [
            ("https://github.com/a/b.git", RepositoryTransport::Https),
            ("http://127.0.0.1:9000/repo.git", RepositoryTransport::Http),
            ("ssh://git@127.0.0.1:2222/srv/repo.git", RepositoryTransport::Ssh),
            ("git@github.com:a/b.git", RepositoryTransport::Ssh),
            ("file:///srv/repo", RepositoryTransport::Local),
            ("/srv/repo", RepositoryTransport::Local),
        ];
        for (url, transport) in cases {
            assert_eq!(RepositoryUrl::parse(url).unwrap().transport(), transport, "{url}");
        }
    }

    #[test]
    fn hostile_urls_are_refused() {
        for bad in [
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "fd::17",
            "--upload-pack=touch /tmp/x",
            "-oProxyCommand=id",
            "ssh://-oProxyCommand=id/x",
            "$(id)",
            "relative/path",
            "ftp://example.com/x",
            "https://user:secret@example.com/x.git",
            "https://",
            "",
        ] {
            assert!(RepositoryUrl::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn repository_paths_stay_inside_the_checkout() {
        assert_eq!(
            RepositoryPath::parse("root path", "./examples/hello/").unwrap().as_str(),
            "examples/hello"
        );
        assert_eq!(RepositoryPath::parse("root path", "").unwrap().as_str(), ".");
        for bad in ["../x", "/etc", "a/../../b", "-x"] {
            assert!(RepositoryPath::parse("root path", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_references() {
        assert!(ImageReference::parse("127.0.0.1:5000/team/app:1.0").is_ok());
        assert!(ImageReference::parse("berth/busybox:1").is_ok());
        assert!(ImageReference::parse("-x").is_err());
        assert!(ImageReference::parse("a b").is_err());
    }
}
