//! `GitCli`: the `Source` adapter that runs the `git` command-line program.
//!
//! Expected flow of a fetch: check the request (nothing runs if it is refused) → prepare a
//! private session (temporary HOME, credentials) → create the checkout directory →
//! `git init`, `git fetch --depth=1 -- <url> refs/heads/<branch>`, `git checkout --detach
//! FETCH_HEAD`, `git rev-parse HEAD`, all under one deadline.
//!
//! Guarantees: on any failure or cancellation the checkout directory is removed again (a
//! retry can use the same path); the temporary directory with the deploy key is always
//! removed; secrets never reach the log or an error message.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_domain::source::RepositoryTransport;
use berth_engine::adapters::{FetchRequest, FetchedSource, LogSink, Source, SourceError};
use berth_process::{InheritEnv, OutputStream, ProcessError, ProcessOutput, ProcessSpec};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::classify::{classify_failure, last_error_line, FailureContext};
use crate::session::GitSession;
use crate::validate::{check_request, CheckedRequest};

/// Fetches repositories with the `git` program.
#[derive(Debug, Clone)]
pub struct GitCli {
    git_program: PathBuf,
    temp_root: Option<PathBuf>,
    /// Set once `git version` showed a usable git (shared by clones; failures are not
    /// remembered, so installing git later needs no restart).
    version_checked: Arc<OnceCell<()>>,
}

/// `GIT_CONFIG_COUNT` (how the token reaches git without a command line) needs 2.31.
const MINIMUM_GIT_VERSION: (u32, u32) = (2, 31);

impl Default for GitCli {
    fn default() -> Self {
        Self::new()
    }
}

impl GitCli {
    /// Uses `git` from `PATH` and private temporary directories in the system's
    /// temporary directory.
    pub fn new() -> Self {
        Self { git_program: PathBuf::from("git"), temp_root: None, version_checked: Arc::default() }
    }

    /// Uses another git executable (a path, or a name looked up in `PATH`).
    pub fn with_git_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.git_program = program.into();
        self.version_checked = Arc::default();
        self
    }

    /// Creates the per-fetch private directories (which briefly hold a deploy key) under
    /// `dir` instead of the system's temporary directory.
    pub fn with_temp_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_root = Some(dir.into());
        self
    }

    /// The commit at the head of `request.branch`, without fetching anything else (for
    /// "is there something new to deploy?"). Same checks and credentials as `fetch`.
    pub async fn ls_remote_head(
        &self,
        request: &FetchRequest,
        log: &dyn LogSink,
    ) -> Result<String, SourceError> {
        let checked = check_request(request)?;
        let deadline = Deadline::start(request.timeout);
        self.ensure_supported_git().await?;
        let session = self.session(&checked, request)?;
        let wanted = format!("refs/heads/{}", checked.branch);
        let run = GitRun { session: &session, checked: &checked, request, deadline };
        let args = ["ls-remote", "--", checked.url.as_str(), wanted.as_str()].map(OsStr::new);
        let output = run.remote(&args, session.temp_dir(), None).await?;
        let head = output.lines_of(OutputStream::Stdout).find_map(|line| {
            let (commit, reference) = line.split_once('\t')?;
            (reference == wanted && is_commit_id(commit)).then(|| commit.to_owned())
        });
        match head {
            Some(commit) => {
                log.line(&format!("Branch {} of {} is at {commit}", checked.branch, checked.url));
                Ok(commit)
            }
            None => {
                Err(SourceError::BranchNotFound { repository: checked.url, branch: checked.branch })
            }
        }
    }

    /// Runs `git version` once: an old git would silently ignore the token passed
    /// through the environment and report a misleading authentication failure.
    async fn ensure_supported_git(&self) -> Result<(), SourceError> {
        self.version_checked
            .get_or_try_init(|| async {
                let spec = ProcessSpec::new(self.git_program.as_os_str(), Duration::from_secs(30))
                    .arg("version")
                    .inherit_env(InheritEnv::Only(vec!["PATH".into()]))
                    .env("LC_ALL", "C");
                let output = berth_process::run(&spec, |_| {}).await.map_err(|error| {
                    SourceError::Git(format!(
                        "{error}; is git installed and on the PATH of the Berth server?"
                    ))
                })?;
                let line = output.lines_of(OutputStream::Stdout).next().unwrap_or_default();
                match parse_git_version(line) {
                    Some(version) if output.success() && version >= MINIMUM_GIT_VERSION => Ok(()),
                    _ => Err(SourceError::Git(format!(
                        "Berth needs git {}.{} or newer, and `{} version` printed {line:?}; install a newer git",
                        MINIMUM_GIT_VERSION.0,
                        MINIMUM_GIT_VERSION.1,
                        self.git_program.display()
                    ))),
                }
            })
            .await
            .map(|_| ())
    }

    fn session(
        &self,
        checked: &CheckedRequest,
        request: &FetchRequest,
    ) -> Result<GitSession, SourceError> {
        let temp_root = self.temp_root.clone().unwrap_or_else(std::env::temp_dir);
        GitSession::prepare(&self.git_program, &temp_root, checked, request.credentials.as_ref())
    }
}

#[async_trait]
impl Source for GitCli {
    async fn fetch(
        &self,
        request: &FetchRequest,
        checkout_dir: &Path,
        log: &dyn LogSink,
    ) -> Result<FetchedSource, SourceError> {
        let checked = check_request(request)?;
        let deadline = Deadline::start(request.timeout);
        self.ensure_supported_git().await?;
        let session = self.session(&checked, request)?;
        let mut checkout = CheckoutDir::create(checkout_dir)?;
        let run = GitRun { session: &session, checked: &checked, request, deadline };

        log.line(&format!("Fetching branch {} of {}", checked.branch, checked.url));
        if checked.transport == RepositoryTransport::Http && request.credentials.is_some() {
            log.line("warning: the token is sent over plain http://; use https:// outside a private network");
        }
        run.local("init", &["init", "--quiet"].map(OsStr::new), checkout_dir, None).await?;
        let refspec = format!("refs/heads/{}", checked.branch);
        let fetch = fetch_args("--depth=1", &checked.url, &refspec);
        run.remote(&fetch, checkout_dir, Some(log)).await?;
        let checkout_args = ["checkout", "--quiet", "--detach", "FETCH_HEAD", "--"].map(OsStr::new);
        run.local("checkout", &checkout_args, checkout_dir, Some(log)).await?;
        let output = run
            .local(
                "rev-parse",
                &["rev-parse", "--verify", "HEAD^{commit}"].map(OsStr::new),
                checkout_dir,
                None,
            )
            .await?;
        let commit =
            output.lines_of(OutputStream::Stdout).next().unwrap_or_default().trim().to_owned();
        if !is_commit_id(&commit) {
            return Err(SourceError::Git(format!(
                "git rev-parse printed {commit:?} instead of a commit id"
            )));
        }
        log.line(&format!("Checked out commit {commit}"));
        checkout.keep();
        Ok(FetchedSource { commit })
    }

    async fn head_commit(
        &self,
        request: &FetchRequest,
        log: &dyn LogSink,
    ) -> Result<String, SourceError> {
        self.ls_remote_head(request, log).await
    }

    /// `git cat-file -e` for the old commit; when the (shallow) checkout lacks it, `git
    /// fetch --depth=1 <commit>` (protocol v2 serves any reachable commit), else `git
    /// fetch --unshallow` of the branch; then `git diff --name-only --no-renames -z`
    /// written to a private file (no quoting, no truncated output).
    async fn changed_files(
        &self,
        request: &FetchRequest,
        checkout_dir: &Path,
        from_commit: &str,
        to_commit: &str,
        log: &dyn LogSink,
    ) -> Result<Option<Vec<String>>, SourceError> {
        for commit in [from_commit, to_commit] {
            if !is_commit_id(commit) {
                return Err(SourceError::Refused(format!(
                    "{commit:?} is not a full commit id; cannot compare commits"
                )));
            }
        }
        let checked = check_request(request)?;
        let deadline = Deadline::start(request.timeout);
        self.ensure_supported_git().await?;
        let session = self.session(&checked, request)?;
        let run = GitRun { session: &session, checked: &checked, request, deadline };
        let wanted = format!("{from_commit}^{{commit}}");
        let cat_file = ["cat-file", "-e", wanted.as_str()].map(OsStr::new);
        if !run.run(&cat_file, checkout_dir, None).await?.success() {
            log.line(&format!("Fetching commit {from_commit} to compare with"));
            let by_id = fetch_args("--depth=1", &checked.url, from_commit);
            let fetched = run.run(&by_id, checkout_dir, Some(log)).await?;
            if !fetched.success() {
                log.line("the server does not serve commits by id; fetching the branch history");
                let refspec = format!("refs/heads/{}", checked.branch);
                let history = fetch_args("--unshallow", &checked.url, &refspec);
                run.remote(&history, checkout_dir, Some(log)).await?;
            }
            if !run.run(&cat_file, checkout_dir, None).await?.success() {
                log.line(&format!(
                    "commit {from_commit} is no longer in {}; treating every file as changed",
                    checked.url
                ));
                return Ok(None);
            }
        }
        let output_file = session.temp_dir().join("changed-files");
        let output_arg = format!("--output={}", output_file.display());
        let diff = [
            "diff",
            "--name-only",
            "--no-renames",
            "-z",
            output_arg.as_str(),
            from_commit,
            to_commit,
            "--",
        ]
        .map(OsStr::new);
        run.local("diff", &diff, checkout_dir, None).await?;
        let bytes = tokio::fs::read(&output_file).await.map_err(|error| {
            SourceError::Git(format!("cannot read the list of changed files: {error}"))
        })?;
        let files: Vec<String> = bytes
            .split(|byte| *byte == 0)
            .filter(|name| !name.is_empty())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        log.line(&format!(
            "{} file(s) changed between {} and {}",
            files.len(),
            &from_commit[..12],
            &to_commit[..12]
        ));
        Ok(Some(files))
    }
}

/// One request's git invocations: shared session, deadline and error mapping.
struct GitRun<'a> {
    session: &'a GitSession,
    checked: &'a CheckedRequest,
    request: &'a FetchRequest,
    deadline: Deadline,
}

impl GitRun<'_> {
    /// A command that talks to the remote: failures are classified from its output.
    async fn remote(
        &self,
        args: &[&OsStr],
        cwd: &Path,
        log: Option<&dyn LogSink>,
    ) -> Result<ProcessOutput, SourceError> {
        let output = self.run(args, cwd, log).await?;
        if output.success() {
            return Ok(output);
        }
        let lines: Vec<String> = output.last_lines.iter().map(|line| line.text.clone()).collect();
        let context = FailureContext {
            repository: &self.checked.url,
            branch: &self.checked.branch,
            host: &self.checked.host,
            credentials: self.session.credentials,
            known_hosts: self.session.known_hosts.as_deref(),
        };
        Err(self.scrub(classify_failure(&lines, context)))
    }

    /// A command on the local checkout only: a failure is reported as it is.
    async fn local(
        &self,
        step: &str,
        args: &[&OsStr],
        cwd: &Path,
        log: Option<&dyn LogSink>,
    ) -> Result<ProcessOutput, SourceError> {
        let output = self.run(args, cwd, log).await?;
        if output.success() {
            return Ok(output);
        }
        let lines: Vec<String> = output.last_lines.iter().map(|line| line.text.clone()).collect();
        Err(self.scrub(SourceError::Git(format!("git {step} failed: {}", last_error_line(&lines)))))
    }

    async fn run(
        &self,
        args: &[&OsStr],
        cwd: &Path,
        log: Option<&dyn LogSink>,
    ) -> Result<ProcessOutput, SourceError> {
        let timeout = self.deadline.remaining().ok_or_else(|| self.timed_out())?;
        let spec = self.session.spec(args, cwd, timeout);
        let result = berth_process::run(&spec, |line| {
            if let Some(log) = log {
                log.line(line);
            }
        })
        .await;
        result.map_err(|error| match error {
            ProcessError::TimedOut { .. } => self.timed_out(),
            ProcessError::Spawn { .. } => self.scrub(SourceError::Git(format!(
                "{error}; is git installed and on the PATH of the Berth server?"
            ))),
            other => self.scrub(SourceError::Git(other.to_string())),
        })
    }

    fn timed_out(&self) -> SourceError {
        SourceError::Timeout {
            repository: self.checked.url.clone(),
            seconds: self.request.timeout.as_secs_f64().ceil() as u64,
        }
    }

    /// Last line of defence: whatever text an error carries is redacted once more.
    fn scrub(&self, error: SourceError) -> SourceError {
        let secrets = self.session.secrets();
        let redact = |text: String| berth_process::redact(&text, secrets);
        match error {
            SourceError::Git(message) => SourceError::Git(redact(message)),
            SourceError::Refused(message) => SourceError::Refused(redact(message)),
            SourceError::AuthenticationFailed { repository, detail } => {
                SourceError::AuthenticationFailed { repository, detail: redact(detail) }
            }
            other => other,
        }
    }
}

/// A deadline shared by every step of one request.
#[derive(Debug, Clone, Copy)]
struct Deadline(Option<Instant>);

impl Deadline {
    fn start(timeout: Duration) -> Self {
        Self(Instant::now().checked_add(timeout))
    }

    /// Time left, or `None` once the deadline has passed.
    fn remaining(&self) -> Option<Duration> {
        match self.0 {
            // An unrepresentably far deadline: effectively none.
            None => Some(Duration::from_secs(u32::MAX.into())),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(left)
            }
        }
    }
}

/// The checkout directory, removed again unless the fetch succeeded (also when the fetch
/// future is dropped half-way).
struct CheckoutDir {
    path: PathBuf,
    keep: bool,
}

impl CheckoutDir {
    fn create(path: &Path) -> Result<Self, SourceError> {
        let failed = |error: std::io::Error| {
            SourceError::Git(format!(
                "cannot create the checkout directory {}: {error}",
                path.display()
            ))
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        // create_dir (not _all) fails if the directory exists: never fetch into, and later
        // delete, a directory Berth did not create.
        std::fs::create_dir(path).map_err(failed)?;
        Ok(Self { path: path.to_owned(), keep: false })
    }

    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for CheckoutDir {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(error) = std::fs::remove_dir_all(&self.path) {
                tracing::warn!(path = %self.path.display(), %error, "could not remove a failed checkout");
            }
        }
    }
}

/// `git version 2.39.5` (or `2.47.3.windows.1`, `2.39.5 (Apple Git-154)`) → `(2, 39)`.
fn parse_git_version(line: &str) -> Option<(u32, u32)> {
    let version = line.strip_prefix("git version ")?;
    let mut numbers = version.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

/// `git fetch <depth> --no-tags --no-recurse-submodules -- <url> <what>`: the URL and the
/// refspec or commit come after `--`, so neither is ever read as an option.
fn fetch_args<'a>(depth: &'a str, url: &'a str, what: &'a str) -> [&'a OsStr; 7] {
    ["fetch", depth, "--no-tags", "--no-recurse-submodules", "--", url, what].map(OsStr::new)
}

/// A full SHA-1 (40) or SHA-256 (64) object id in lower-case hex.
fn is_commit_id(value: &str) -> bool {
    matches!(value.len(), 40 | 64)
        && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_versions_are_parsed() {
        assert_eq!(parse_git_version("git version 2.39.5"), Some((2, 39)));
        assert_eq!(parse_git_version("git version 2.47.3.windows.1"), Some((2, 47)));
        assert_eq!(parse_git_version("git version 2.30.2"), Some((2, 30)));
        assert!(parse_git_version("git version 2.30.2").unwrap() < MINIMUM_GIT_VERSION);
        assert_eq!(parse_git_version("hub version 1"), None);
    }

    #[test]
    fn commit_ids_are_full_lower_case_hex() {
        assert!(is_commit_id("db15a28e9932302a86ca59e1167d2c16bfd60b6c"));
        assert!(!is_commit_id("db15a28"));
        assert!(!is_commit_id("DB15A28E9932302A86CA59E1167D2C16BFD60B6C"));
    }
}
