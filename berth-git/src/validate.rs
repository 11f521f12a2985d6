//! Checks a fetch request again right before Git runs, independently of the domain's
//! parsing (defence in depth): the transport is one Berth allows for this server, the
//! credentials fit the transport, and nothing in the URL or branch could be read by git
//! or ssh as an option or a remote-helper command.

use berth_domain::names::BranchName;
use berth_domain::source::{RepositoryTransport, RepositoryUrl};
use berth_engine::adapters::{FetchRequest, GitCredentials, SourceError};

/// What a validated request needs in order to run git.
#[derive(Debug, Clone)]
pub(crate) struct CheckedRequest {
    pub(crate) url: String,
    pub(crate) branch: String,
    pub(crate) transport: RepositoryTransport,
    /// `host` or `[host]:port`, as ssh writes it in known_hosts (empty for local).
    pub(crate) host: String,
}

impl CheckedRequest {
    /// The protocol name git uses in `protocol.<name>.allow` and `GIT_ALLOW_PROTOCOL`.
    pub(crate) fn git_protocol(&self) -> &'static str {
        match self.transport {
            RepositoryTransport::Https => "https",
            RepositoryTransport::Http => "http",
            RepositoryTransport::Ssh => "ssh",
            RepositoryTransport::Local => "file",
        }
    }
}

pub(crate) fn check_request(request: &FetchRequest) -> Result<CheckedRequest, SourceError> {
    let refused = |reason: String| Err(SourceError::Refused(reason));
    // Re-parse: the values are typed already, but these checks are cheap and this is the
    // last point before a command line is built.
    let url = RepositoryUrl::parse(request.repository.as_str())
        .map_err(|error| SourceError::Refused(error.to_string()))?;
    let branch = BranchName::parse(request.branch.as_str())
        .map_err(|error| SourceError::Refused(error.to_string()))?;
    let text = url.as_str();
    if looks_like_remote_helper(text) {
        return refused(format!(
            "the repository URL {text:?} uses Git's remote-helper syntax, which can run commands; use an https://, ssh:// or file:// URL"
        ));
    }
    let transport = url.transport();
    if transport == RepositoryTransport::Local && !request.allow_local {
        return refused(format!(
            "local repositories ({text}) read the server's own files and are disabled; start the server with `berth server --allow-local-repositories` to allow them"
        ));
    }

    match (&request.credentials, transport) {
        (None, RepositoryTransport::Ssh) => {
            return refused(format!(
                "{text} is an SSH repository and no deploy key was given; add a deploy key to the application (SSH access without a key is not attempted, so the server's own keys are never used)"
            ))
        }
        (Some(GitCredentials::Token(_)), RepositoryTransport::Ssh | RepositoryTransport::Local) => {
            return refused(format!(
                "a token is sent as HTTP authentication and cannot be used with {text}; use an https:// URL, or a deploy key for ssh://"
            ))
        }
        (Some(GitCredentials::Token(token)), _) if token.expose().is_empty() => {
            return refused("the Git token is empty".to_owned())
        }
        (Some(GitCredentials::SshKey { .. }), transport) if transport != RepositoryTransport::Ssh => {
            return refused(format!(
                "a deploy key is only used with SSH repositories, and {text} is not one; use an ssh:// URL or give a token instead"
            ))
        }
        _ => {}
    }

    let host = match transport {
        RepositoryTransport::Ssh => check_ssh_url(text)?,
        RepositoryTransport::Https | RepositoryTransport::Http => {
            let rest = text.split_once("://").map_or("", |(_, rest)| rest);
            rest.split(['/', '?', '#']).next().unwrap_or_default().to_owned()
        }
        RepositoryTransport::Local => String::new(),
    };
    Ok(CheckedRequest { url: text.to_owned(), branch: branch.as_str().to_owned(), transport, host })
}

/// Git treats `<scheme>::<address>` as "run git-remote-<scheme>" when the scheme is made
/// of URL-scheme characters (`ext::` runs any command). Mirrors git's own test.
fn looks_like_remote_helper(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once("::") else { return false };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Refuses SSH URLs whose user, host, port or path ssh or the remote shell could read as
/// an option, and returns the host as ssh writes it in known_hosts.
fn check_ssh_url(url: &str) -> Result<String, SourceError> {
    let (authority, path) = match url.strip_prefix("ssh://") {
        Some(rest) => match rest.split_once('/') {
            Some((authority, path)) => (authority, path),
            None => (rest, ""),
        },
        // scp-like `user@host:path`
        None => url.split_once(':').unwrap_or((url, "")),
    };
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (Some(user), host_port),
        None => (None, authority),
    };
    let (host, port) =
        if url.starts_with("ssh://") { split_host_port(host_port) } else { (host_port, None) };
    let refused = |what: &str| {
        Err(SourceError::Refused(format!(
            "the {what} in {url:?} starts with '-' or is empty, which ssh could read as an option"
        )))
    };
    if user.is_some_and(|user| user.is_empty() || user.starts_with('-')) {
        return refused("user name");
    }
    if host.is_empty() || host.starts_with('-') {
        return refused("host name");
    }
    if port.is_some_and(|port| port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())) {
        return Err(SourceError::Refused(format!("the port in {url:?} is not a number")));
    }
    if path.trim_start_matches('/').starts_with('-') {
        return refused("repository path");
    }
    Ok(match port {
        Some(port) if port != "22" => format!("[{host}]:{port}"),
        _ => host.to_owned(),
    })
}

fn split_host_port(host_port: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host_port.strip_prefix('[') {
        // [ipv6]:port
        return match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (host_port, None),
        };
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    }
}

/// Whether a path Berth generated (temporary directory, known_hosts in the data
/// directory) can be put into `GIT_SSH_COMMAND`, which git runs through `sh -c`: only
/// absolute paths made of letters, digits and `/._+-`, with no component starting with
/// '-', are accepted, so quoting can never be escaped.
pub(crate) fn is_shell_safe_path(path: &std::path::Path) -> bool {
    let Some(text) = path.to_str() else { return false };
    text.starts_with('/')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'+' | b'-'))
        && !text.split('/').any(|component| component.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use berth_engine::adapters::SecretString;

    use super::*;

    fn request(url: &str, credentials: Option<GitCredentials>, allow_local: bool) -> FetchRequest {
        FetchRequest {
            repository: RepositoryUrl::parse(url).unwrap(),
            branch: BranchName::main(),
            credentials,
            allow_local,
            timeout: Duration::from_secs(10),
        }
    }

    fn key() -> Option<GitCredentials> {
        Some(GitCredentials::SshKey {
            private_key: SecretString::new("key".to_owned()),
            known_hosts: "/var/lib/berth/known_hosts".into(),
        })
    }

    fn token() -> Option<GitCredentials> {
        Some(GitCredentials::Token(SecretString::new("t0ken".to_owned())))
    }

    #[test]
    fn hosts_are_written_as_known_hosts_does() {
        let checked =
            check_request(&request("ssh://git@127.0.0.1:2222/srv/a.git", key(), false)).unwrap();
        assert_eq!(checked.host, "[127.0.0.1]:2222");
        assert_eq!(checked.git_protocol(), "ssh");
        let checked = check_request(&request("git@github.com:team/app.git", key(), false)).unwrap();
        assert_eq!(checked.host, "github.com");
        let checked = check_request(&request("ssh://git@example.com:22/a", key(), false)).unwrap();
        assert_eq!(checked.host, "example.com");
        let checked = check_request(&request("https://example.com/a.git", token(), false)).unwrap();
        assert_eq!((checked.host.as_str(), checked.git_protocol()), ("example.com", "https"));
    }

    #[test]
    fn options_hidden_in_ssh_urls_are_refused() {
        for url in [
            "ssh://-oProxyCommand=touch$IFS@example.com/repo.git",
            "ssh://git@example.com/-oProxyCommand=x",
            "git@example.com:-x/repo.git",
            "ssh://git@example.com:22x/repo.git",
        ] {
            let error = check_request(&request(url, key(), false)).unwrap_err();
            assert!(matches!(error, SourceError::Refused(_)), "{url}: {error:?}");
        }
    }

    #[test]
    fn credentials_must_fit_the_transport() {
        let cases = [
            ("ssh://git@example.com/a.git", None, "no deploy key was given"),
            ("ssh://git@example.com/a.git", token(), "cannot be used with"),
            ("https://example.com/a.git", key(), "only used with SSH"),
            ("/srv/a.git", token(), "cannot be used with"),
        ];
        for (url, credentials, expected) in cases {
            let error = check_request(&request(url, credentials, true)).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
        }
    }

    #[test]
    fn local_repositories_need_the_server_flag() {
        for url in ["/srv/a.git", "file:///srv/a.git"] {
            let error = check_request(&request(url, None, false)).unwrap_err().to_string();
            assert!(error.contains("--allow-local-repositories"), "{error}");
            assert_eq!(check_request(&request(url, None, true)).unwrap().git_protocol(), "file");
        }
    }

    #[test]
    fn remote_helper_syntax_is_recognised_like_git_does() {
        assert!(looks_like_remote_helper("ext::sh"));
        assert!(looks_like_remote_helper("git+x.y-z::foo"));
        assert!(!looks_like_remote_helper("/srv/a::b"));
        assert!(!looks_like_remote_helper("https://example.com/a::b"));
    }

    #[test]
    fn only_plain_absolute_paths_go_into_the_ssh_command() {
        assert!(is_shell_safe_path(Path::new("/tmp/berth-git-Ab12/key")));
        for bad in ["relative/key", "/tmp/a b", "/tmp/a'b", "/tmp/$(id)", "/tmp/-x/key", "/tmp/a;b"]
        {
            assert!(!is_shell_safe_path(Path::new(bad)), "{bad}");
        }
    }
}
