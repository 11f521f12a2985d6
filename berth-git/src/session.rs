//! The environment one fetch runs git in: a private temporary directory (the `HOME` git
//! sees, and the deploy key file), configuration that allows exactly one transport and
//! disables hooks, credential helpers, prompts and the server user's own Git and SSH
//! configuration, and credentials passed only through the environment or a 0600 file,
//! never on a command line (which `ps` would show). Dropping the session deletes the
//! temporary directory, key included.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use berth_domain::source::RepositoryTransport;
use berth_engine::adapters::{GitCredentials, SourceError};
use berth_process::{InheritEnv, ProcessSpec};

use crate::classify::CredentialKind;
use crate::validate::{is_shell_safe_path, CheckedRequest};

/// The only variables git inherits from the server: where programs are, and the
/// operator's proxy and CA settings (needed to reach a Git host at all).
const INHERITED_VARIABLES: &[&str] = &[
    "PATH",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
];

/// The user name Git hosts expect with a token in HTTP basic authentication.
const TOKEN_USER: &str = "x-access-token";

pub(crate) struct GitSession {
    temp: tempfile::TempDir,
    git_program: PathBuf,
    config_args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    redact: Vec<String>,
    pub(crate) credentials: CredentialKind,
    pub(crate) known_hosts: Option<PathBuf>,
}

impl GitSession {
    pub(crate) fn prepare(
        git_program: &Path,
        temp_root: &Path,
        request: &CheckedRequest,
        credentials: Option<&GitCredentials>,
    ) -> Result<Self, SourceError> {
        let temp = tempfile::Builder::new().prefix("berth-git-").tempdir_in(temp_root).map_err(
            |error| {
                SourceError::Git(format!(
                    "cannot create a private temporary directory in {}: {error}",
                    temp_root.display()
                ))
            },
        )?;
        let protocol = request.git_protocol();
        let config_args = [
            // Exactly one transport: whatever the URL or a server redirect says, git
            // cannot switch to ext::, fd::, file:// or another protocol.
            "protocol.allow=never".to_owned(),
            format!("protocol.{protocol}.allow=always"),
            // Nothing from the fetched repository or the server's config runs.
            "core.hooksPath=/dev/null".to_owned(),
            "core.fsmonitor=false".to_owned(),
            // An empty value clears every credential helper: the server's stored
            // credentials are never offered to a repository a user named.
            "credential.helper=".to_owned(),
            "core.askPass=".to_owned(),
            "submodule.recurse=false".to_owned(),
            "fetch.recurseSubmodules=false".to_owned(),
            "transfer.bundleURI=false".to_owned(),
            "init.defaultBranch=berth".to_owned(),
            "advice.detachedHead=false".to_owned(),
        ]
        .into_iter()
        .flat_map(|setting| [OsString::from("-c"), OsString::from(setting)])
        .collect();

        let home = temp.path().to_owned();
        let mut env: Vec<(OsString, OsString)> = vec![
            ("HOME".into(), home.clone().into()),
            ("XDG_CONFIG_HOME".into(), home.join(".config").into()),
            // English messages: failures are classified from git's and ssh's wording.
            ("LC_ALL".into(), "C".into()),
            ("LANGUAGE".into(), "C".into()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            // Empty (not unset) so git does not fall back to another askpass program.
            ("GIT_ASKPASS".into(), "".into()),
            ("SSH_ASKPASS".into(), "".into()),
            ("SSH_ASKPASS_REQUIRE".into(), "never".into()),
            ("GIT_ALLOW_PROTOCOL".into(), protocol.into()),
            ("GIT_PROTOCOL_FROM_USER".into(), "0".into()),
        ];
        let mut redact = Vec::new();
        let mut known_hosts = None;
        let kind = match credentials {
            None => CredentialKind::Nothing,
            Some(GitCredentials::Token(token)) => {
                let token = token.expose();
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{TOKEN_USER}:{token}"));
                let header = format!("Authorization: Basic {encoded}");
                // Through the environment, not `-c` (argv is world-readable in /proc).
                env.push(("GIT_CONFIG_COUNT".into(), "1".into()));
                env.push(("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()));
                env.push(("GIT_CONFIG_VALUE_0".into(), header.into()));
                redact.push(token.to_owned());
                redact.push(encoded);
                CredentialKind::Token
            }
            Some(GitCredentials::SshKey { private_key, known_hosts: known_hosts_path }) => {
                let key_path = write_private_key(temp.path(), private_key.expose())?;
                prepare_known_hosts(known_hosts_path)?;
                env.push((
                    "GIT_SSH_COMMAND".into(),
                    ssh_command(&key_path, known_hosts_path)?.into(),
                ));
                // ssh never prints the key, but if anything ever echoed it, each line of
                // it (the redactor works line by line) is masked.
                redact.extend(
                    private_key
                        .expose()
                        .lines()
                        .map(str::trim)
                        .filter(|line| line.len() >= 16 && !line.starts_with("-----"))
                        .map(str::to_owned),
                );
                known_hosts = Some(known_hosts_path.clone());
                CredentialKind::SshKey
            }
        };
        if request.transport == RepositoryTransport::Ssh && kind != CredentialKind::SshKey {
            // Validation refuses this already; keep ssh from ever using the server's keys.
            return Err(SourceError::Refused("an SSH repository needs a deploy key".to_owned()));
        }
        Ok(Self {
            temp,
            git_program: git_program.to_owned(),
            config_args,
            env,
            redact,
            credentials: kind,
            known_hosts,
        })
    }

    /// The private temporary directory (a safe working directory for `ls-remote`).
    pub(crate) fn temp_dir(&self) -> &Path {
        self.temp.path()
    }

    /// `git <config args> <args>` in `cwd`, with this session's environment and secrets.
    pub(crate) fn spec(&self, args: &[&OsStr], cwd: &Path, timeout: Duration) -> ProcessSpec {
        let inherited = INHERITED_VARIABLES.iter().map(OsString::from).collect();
        let mut spec = ProcessSpec::new(self.git_program.as_os_str(), timeout)
            .inherit_env(InheritEnv::Only(inherited))
            .args(self.config_args.iter().cloned())
            .args(args.iter().copied())
            .cwd(cwd);
        for (name, value) in &self.env {
            spec = spec.env(name, value);
        }
        // Repository discovery stops at `cwd`: git never picks up a repository (and its
        // config) from a directory above the one Berth made.
        if let Some(parent) = cwd.parent() {
            spec = spec.env("GIT_CEILING_DIRECTORIES", parent);
        }
        for secret in &self.redact {
            spec = spec.redact(secret.clone());
        }
        spec
    }

    /// The secrets of this session, for redacting text built outside berth-process.
    pub(crate) fn secrets(&self) -> &[String] {
        &self.redact
    }
}

fn write_private_key(dir: &Path, key: &str) -> Result<PathBuf, SourceError> {
    // ssh refuses keys with CRLF line ends or without a final newline, both common when
    // a key is pasted into a form.
    let mut normalized = key.replace("\r\n", "\n").trim().to_owned();
    if normalized.is_empty() {
        return Err(SourceError::Refused("the deploy key is empty".to_owned()));
    }
    normalized.push('\n');
    let path = dir.join("deploy_key");
    let write = || -> std::io::Result<()> {
        // 0600 from the start (no window where another user could read it), inside a
        // 0700 directory.
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        file.write_all(normalized.as_bytes())
    };
    write().map_err(|error| {
        SourceError::Git(format!("cannot write the deploy key to a temporary file: {error}"))
    })?;
    Ok(path)
}

fn prepare_known_hosts(path: &Path) -> Result<(), SourceError> {
    if !is_shell_safe_path(path) {
        return Err(SourceError::Git(format!(
            "the known_hosts path {} cannot be passed to ssh safely; use a data directory whose path has only letters, digits, '/', '.', '_', '+' and '-'",
            path.display()
        )));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| {
            SourceError::Git(format!("cannot create the directory of {}: {error}", path.display()))
        })?;
    }
    Ok(())
}

/// `GIT_SSH_COMMAND` (run by git through `sh -c`): every path in it was generated by
/// Berth and checked to need no quoting, so nothing a user typed reaches the shell.
fn ssh_command(key: &Path, known_hosts: &Path) -> Result<String, SourceError> {
    if !is_shell_safe_path(key) {
        return Err(SourceError::Git(format!(
            "the temporary directory {} cannot be passed to ssh safely; set TMPDIR to a path with only letters, digits, '/', '.', '_', '+' and '-'",
            key.parent().unwrap_or(key).display()
        )));
    }
    let (key, known_hosts) = (key.display(), known_hosts.display());
    // -F /dev/null: ssh reads the server user's ~/.ssh/config from its passwd entry, not
    // from $HOME, so it must be told to read none. accept-new: record an unknown host key
    // on first use, refuse a changed one.
    Ok(format!(
        "ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o IdentityAgent=none \
         -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known_hosts} \
         -o BatchMode=yes -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
         -o ConnectTimeout=30 -o UpdateHostKeys=no -o ClearAllForwardings=yes"
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_domain::names::BranchName;
    use berth_domain::source::RepositoryUrl;
    use berth_engine::adapters::{FetchRequest, SecretString};

    use super::*;
    use crate::validate::check_request;

    fn session(url: &str, credentials: GitCredentials) -> (tempfile::TempDir, GitSession) {
        let root = tempfile::tempdir().unwrap();
        let request = FetchRequest {
            repository: RepositoryUrl::parse(url).unwrap(),
            branch: BranchName::main(),
            credentials: Some(credentials.clone()),
            allow_local: false,
            timeout: Duration::from_secs(5),
        };
        let checked = check_request(&request).unwrap();
        let session =
            GitSession::prepare(Path::new("git"), root.path(), &checked, Some(&credentials))
                .unwrap();
        (root, session)
    }

    #[test]
    fn the_token_is_never_on_the_command_line() {
        let token = "ghp_secretTOKENvalue123";
        let (_root, session) = session(
            "https://example.com/a.git",
            GitCredentials::Token(SecretString::new(token.to_owned())),
        );
        let spec = session.spec(&["fetch".as_ref()], Path::new("/tmp"), Duration::from_secs(5));
        for arg in &spec.args {
            assert!(!arg.to_string_lossy().contains(token), "{arg:?}");
        }
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let header = spec.env.iter().find(|(name, _)| name == "GIT_CONFIG_VALUE_0").unwrap();
        assert_eq!(header.1, OsString::from(format!("Authorization: Basic {encoded}")));
        assert!(spec.redact.contains(&token.to_owned()) && spec.redact.contains(&encoded));
        // The debug form (used in logs) shows neither.
        let debug = format!("{spec:?}");
        assert!(!debug.contains(token) && !debug.contains(&encoded), "{debug}");
        let protocols: Vec<_> =
            spec.args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
        assert!(protocols.contains(&"protocol.allow=never".to_owned()));
        assert!(protocols.contains(&"protocol.https.allow=always".to_owned()));
    }

    #[test]
    fn the_deploy_key_is_a_private_file_named_in_the_ssh_command() {
        let known_hosts = tempfile::tempdir().unwrap();
        let known_hosts_path = known_hosts.path().join("state/known_hosts");
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\r\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\r\n-----END OPENSSH PRIVATE KEY-----";
        let (_root, session) = session(
            "ssh://git@127.0.0.1:2222/srv/a.git",
            GitCredentials::SshKey {
                private_key: SecretString::new(key.to_owned()),
                known_hosts: known_hosts_path.clone(),
            },
        );
        let key_path = session.temp_dir().join("deploy_key");
        let metadata = std::fs::metadata(&key_path).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777, 0o600);
        let written = std::fs::read_to_string(&key_path).unwrap();
        assert!(!written.contains('\r') && written.ends_with("KEY-----\n"));
        assert!(known_hosts_path.parent().unwrap().is_dir());

        let spec = session.spec(&["fetch".as_ref()], Path::new("/tmp"), Duration::from_secs(5));
        let ssh = spec
            .env
            .iter()
            .find(|(name, _)| name == "GIT_SSH_COMMAND")
            .unwrap()
            .1
            .to_string_lossy()
            .into_owned();
        assert!(ssh.contains(&format!("-i {}", key_path.display())), "{ssh}");
        assert!(
            ssh.contains(&format!("UserKnownHostsFile={}", known_hosts_path.display())),
            "{ssh}"
        );
        assert!(ssh.contains("StrictHostKeyChecking=accept-new") && ssh.contains("-F /dev/null"));
        assert!(spec.redact.iter().any(|line| line.starts_with("b3BlbnNzaC1rZXkt")));

        drop(session);
        assert!(!key_path.exists(), "the key is deleted with the session");
    }

    #[test]
    fn an_unsafe_known_hosts_path_is_refused() {
        let credentials = GitCredentials::SshKey {
            private_key: SecretString::new("key".to_owned()),
            known_hosts: "/var/lib/berth data/known_hosts".into(),
        };
        let request = FetchRequest {
            repository: RepositoryUrl::parse("ssh://git@example.com/a.git").unwrap(),
            branch: BranchName::main(),
            credentials: Some(credentials.clone()),
            allow_local: false,
            timeout: Duration::from_secs(5),
        };
        let checked = check_request(&request).unwrap();
        let root = tempfile::tempdir().unwrap();
        let error =
            GitSession::prepare(Path::new("git"), root.path(), &checked, Some(&credentials))
                .err()
                .unwrap();
        assert!(error.to_string().contains("cannot be passed to ssh safely"), "{error}");
    }
}
