//! Turns git's (and ssh's) error output into a `SourceError` a person can act on. The
//! input lines are already redacted by berth-process, and the messages built here quote
//! only those lines, the repository URL (which never holds credentials) and the branch.

use std::path::Path;

use berth_engine::adapters::SourceError;

/// Which kind of credentials the failed command used: the advice differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialKind {
    Nothing,
    Token,
    SshKey,
}

/// What the classifier needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailureContext<'a> {
    pub(crate) repository: &'a str,
    pub(crate) branch: &'a str,
    /// `host` or `[host]:port`.
    pub(crate) host: &'a str,
    pub(crate) credentials: CredentialKind,
    pub(crate) known_hosts: Option<&'a Path>,
}

/// Classifies the output of a failed `git fetch` / `git ls-remote`.
pub(crate) fn classify_failure(lines: &[String], context: FailureContext<'_>) -> SourceError {
    let text = lines.join("\n").to_ascii_lowercase();
    let has = |needle: &str| text.contains(needle);
    let repository = context.repository.to_owned();

    // Checked first: ssh prints "Host key verification failed" and then git adds the
    // generic "Could not read from remote repository".
    if has("remote host identification has changed") || has("host key verification failed") {
        return SourceError::HostKeyChanged {
            host: context.host.to_owned(),
            known_hosts: context.known_hosts.map_or_else(
                || "the known_hosts file".to_owned(),
                |path| path.display().to_string(),
            ),
        };
    }
    if has("couldn't find remote ref") {
        return SourceError::BranchNotFound { repository, branch: context.branch.to_owned() };
    }
    let authentication_failed = [
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "permission denied (publickey",
        "permission denied, please try again",
        "invalid username or password",
        "the requested url returned error: 401",
        "the requested url returned error: 403",
        "http basic: access denied",
    ];
    if authentication_failed.iter().any(|needle| has(needle)) {
        let detail = match context.credentials {
            CredentialKind::Nothing => {
                "the repository needs credentials and none were given; give the application a token that can read it (--git-token-stdin)"
            }
            CredentialKind::Token => {
                "the server refused the token; check that it is valid, not expired, and allowed to read this repository"
            }
            CredentialKind::SshKey => {
                "the server refused the deploy key; add its public key to the repository as a (read-only) deploy key"
            }
        };
        return SourceError::AuthenticationFailed { repository, detail: detail.to_owned() };
    }
    let not_found = [
        "repository not found",
        "does not appear to be a git repository",
        "not a git repository",
        "the requested url returned error: 404",
    ];
    if not_found.iter().any(|needle| has(needle)) || (has("repository '") && has("' not found")) {
        return SourceError::RepositoryNotFound { repository };
    }

    let quoted = last_error_line(lines);
    if has("could not resolve host") || has("could not resolve hostname") {
        return SourceError::Git(format!(
            "the host name in {repository} could not be resolved; check the URL ({quoted})"
        ));
    }
    let unreachable = [
        "connection refused",
        "failed to connect",
        "couldn't connect to server",
        "connection timed out",
        "no route to host",
        "network is unreachable",
        "connection reset",
    ];
    if unreachable.iter().any(|needle| has(needle)) {
        return SourceError::Git(format!(
            "could not connect to the server of {repository}; check the URL and that the Berth server can reach it ({quoted})"
        ));
    }
    if has("ssl certificate problem") || has("server certificate verification failed") {
        return SourceError::Git(format!(
            "the TLS certificate of the server of {repository} was not accepted ({quoted})"
        ));
    }
    SourceError::Git(format!("fetching {repository} failed: {quoted}"))
}

/// The most telling line: the last `fatal:`/`error:` line, else the last non-empty one.
pub(crate) fn last_error_line(lines: &[String]) -> String {
    let is_error = |line: &&String| {
        let lower = line.trim_start().to_ascii_lowercase();
        lower.starts_with("fatal:") || lower.starts_with("error:")
    };
    lines
        .iter()
        .rev()
        .find(is_error)
        .or_else(|| lines.iter().rev().find(|line| !line.trim().is_empty()))
        .map_or_else(|| "git printed no error message".to_owned(), |line| line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(credentials: CredentialKind) -> FailureContext<'static> {
        FailureContext {
            repository: "https://example.com/team/app.git",
            branch: "main",
            host: "example.com",
            credentials,
            known_hosts: Some(Path::new("/var/lib/berth/known_hosts")),
        }
    }

    fn classify(output: &str, credentials: CredentialKind) -> String {
        let lines: Vec<String> = output.lines().map(str::to_owned).collect();
        let error = classify_failure(&lines, context(credentials));
        format!("{error:?}\n{error}")
    }

    #[test]
    fn missing_branch() {
        expect_test::expect![[r#"
            BranchNotFound { repository: "https://example.com/team/app.git", branch: "main" }
            branch "main" does not exist in https://example.com/team/app.git; push it or choose another branch"#]]
        .assert_eq(&classify("fatal: couldn't find remote ref refs/heads/main", CredentialKind::Token));
    }

    #[test]
    fn missing_repository_over_each_transport() {
        for output in [
            "fatal: repository 'http://127.0.0.1:4000/missing.git/' not found",
            "fatal: '/srv/missing.git' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.",
            "ERROR: Repository not found.\nfatal: Could not read from remote repository.",
        ] {
            assert!(classify(output, CredentialKind::Nothing).starts_with("RepositoryNotFound"), "{output}");
        }
    }

    #[test]
    fn refused_credentials_get_advice_for_their_kind() {
        expect_test::expect![[r#"
            AuthenticationFailed { repository: "https://example.com/team/app.git", detail: "the repository needs credentials and none were given; give the application a token that can read it (--git-token-stdin)" }
            authentication to https://example.com/team/app.git failed: the repository needs credentials and none were given; give the application a token that can read it (--git-token-stdin)"#]]
        .assert_eq(&classify(
            "fatal: could not read Username for 'http://127.0.0.1:4000': terminal prompts disabled",
            CredentialKind::Nothing,
        ));
        assert!(classify("remote: HTTP Basic: Access denied\nfatal: Authentication failed for 'https://example.com/'", CredentialKind::Token)
            .contains("the server refused the token"));
        let ssh = "root@127.0.0.1: Permission denied (publickey).\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.";
        assert!(classify(ssh, CredentialKind::SshKey).contains("refused the deploy key"));
    }

    #[test]
    fn changed_host_key() {
        let output = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\nHost key verification failed.\nfatal: Could not read from remote repository.";
        expect_test::expect![[r#"
            HostKeyChanged { host: "example.com", known_hosts: "/var/lib/berth/known_hosts" }
            the SSH host key of example.com changed since it was first recorded; if this is expected, remove its line from /var/lib/berth/known_hosts"#]]
        .assert_eq(&classify(output, CredentialKind::SshKey));
    }

    #[test]
    fn unreachable_servers_and_unknown_failures_quote_gits_last_error() {
        expect_test::expect![[r#"
            Git("could not connect to the server of https://example.com/team/app.git; check the URL and that the Berth server can reach it (fatal: unable to access 'https://example.com/team/app.git/': Failed to connect to example.com port 443 after 0 ms: Couldn't connect to server)")
            git failed: could not connect to the server of https://example.com/team/app.git; check the URL and that the Berth server can reach it (fatal: unable to access 'https://example.com/team/app.git/': Failed to connect to example.com port 443 after 0 ms: Couldn't connect to server)"#]]
        .assert_eq(&classify(
            "fatal: unable to access 'https://example.com/team/app.git/': Failed to connect to example.com port 443 after 0 ms: Couldn't connect to server",
            CredentialKind::Nothing,
        ));
        expect_test::expect![[r#"
            Git("fetching https://example.com/team/app.git failed: error: something unexpected")
            git failed: fetching https://example.com/team/app.git failed: error: something unexpected"#]]
        .assert_eq(&classify("hint: noise\nerror: something unexpected\nmore noise", CredentialKind::Nothing));
    }
}
