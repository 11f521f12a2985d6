//! `GitCli` against real git and real servers on loopback: local repositories over
//! file://, a private repository behind `git http-backend` with HTTP basic auth, and
//! OpenSSH's sshd with a deploy key. Checks what a user would see: the right commit is
//! checked out, failures are named (authentication, branch, repository, host key,
//! timeout) with advice, hostile input never runs anything, and secrets never appear in
//! the log or in error messages.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_domain::names::BranchName;
use berth_domain::source::RepositoryUrl;
use berth_engine::adapters::{
    FetchRequest, GitCredentials, LogSink, SecretString, Source, SourceError,
};
use berth_git::GitCli;
use test_support::git_http::GitHttpServer;
use test_support::git_ssh::{generate_key_pair, GitSshServer};
use test_support::repo::{commit_files, init_repo};

const TOKEN: &str = "ghs_berthTestToken0123456789abcdef";
const TOKEN_USER: &str = "x-access-token";

#[derive(Default)]
struct RecordingLog(Mutex<Vec<String>>);

impl LogSink for RecordingLog {
    fn line(&self, line: &str) {
        self.0.lock().expect("log lock").push(line.to_owned());
    }
}

impl RecordingLog {
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("log lock").clone()
    }
}

fn request(url: &str, branch: &str, credentials: Option<GitCredentials>) -> FetchRequest {
    FetchRequest {
        repository: RepositoryUrl::parse(url).expect("test URL parses"),
        branch: BranchName::parse(branch).expect("test branch parses"),
        credentials,
        allow_local: false,
        timeout: Duration::from_secs(30),
    }
}

fn local_request(url: &str, branch: &str) -> FetchRequest {
    FetchRequest { allow_local: true, ..request(url, branch, None) }
}

fn token(value: &str) -> Option<GitCredentials> {
    Some(GitCredentials::Token(SecretString::new(value.to_owned())))
}

fn deploy_key(private_key: String, known_hosts: &Path) -> Option<GitCredentials> {
    Some(GitCredentials::SshKey {
        private_key: SecretString::new(private_key),
        known_hosts: known_hosts.to_owned(),
    })
}

/// The repositories of one test, with one application repository `app.git` on `main`.
struct Fixture {
    dir: tempfile::TempDir,
    commit: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let commit = init_repo(
            &dir.path().join("repos/app.git"),
            &[("README.md", "hello from the fixture\n"), ("web/index.html", "<h1>hi</h1>\n")],
            "main",
        );
        Self { dir, commit }
    }

    fn repos(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    fn app_repo(&self) -> PathBuf {
        self.repos().join("app.git")
    }

    fn checkout(&self, name: &str) -> PathBuf {
        self.dir.path().join("checkouts").join(name)
    }
}

/// A stand-in for git that leaves a marker file if it is ever run.
fn tripwire_git(dir: &Path) -> (GitCli, PathBuf) {
    let marker = dir.join("git-was-run");
    let script = dir.join("fake-git");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()))
        .expect("write fake git");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make fake git executable");
    (GitCli::new().with_git_program(&script), marker)
}

fn assert_no_secret(texts: &[String], secrets: &[&str]) {
    for text in texts {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret leaked into {text:?}");
        }
    }
}

#[tokio::test]
async fn a_local_repository_is_fetched_when_the_server_allows_it() {
    let fixture = Fixture::new();
    let git = GitCli::new();
    let repo = fixture.app_repo();
    for (index, url) in
        [format!("file://{}", repo.display()), repo.display().to_string()].iter().enumerate()
    {
        let log = RecordingLog::default();
        let checkout = fixture.checkout(&format!("local-{index}"));
        let fetched = git.fetch(&local_request(url, "main"), &checkout, &log).await.unwrap();

        assert_eq!(fetched.commit, fixture.commit);
        assert_eq!(
            std::fs::read_to_string(checkout.join("README.md")).unwrap(),
            "hello from the fixture\n"
        );
        assert!(checkout.join("web/index.html").is_file());
        let lines = log.lines();
        assert!(lines.contains(&format!("Fetching branch main of {url}")), "{lines:?}");
        assert!(lines.contains(&format!("Checked out commit {}", fixture.commit)), "{lines:?}");
    }

    // A new push is picked up: the head of the branch, not a cached one.
    let newer = commit_files(&repo, &[("README.md", "second version\n")], "main");
    let checkout = fixture.checkout("local-newer");
    let url = format!("file://{}", repo.display());
    let fetched =
        git.fetch(&local_request(&url, "main"), &checkout, &RecordingLog::default()).await.unwrap();
    assert_eq!(fetched.commit, newer);
    assert_eq!(std::fs::read_to_string(checkout.join("README.md")).unwrap(), "second version\n");
}

#[tokio::test]
async fn a_local_repository_is_refused_without_the_server_flag() {
    let fixture = Fixture::new();
    let (git, marker) = tripwire_git(fixture.dir.path());
    let checkout = fixture.checkout("refused");
    for url in [
        format!("file://{}", fixture.app_repo().display()),
        fixture.app_repo().display().to_string(),
    ] {
        let error = git
            .fetch(&request(&url, "main", None), &checkout, &RecordingLog::default())
            .await
            .unwrap_err();
        assert!(matches!(error, SourceError::Refused(_)), "{error:?}");
        assert!(error.to_string().contains("berth server --allow-local-repositories"), "{error}");
    }
    assert!(!marker.exists(), "git ran for a refused request");
    assert!(!checkout.exists());
}

#[tokio::test]
async fn hostile_inputs_are_refused_before_git_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (git, marker) = tripwire_git(dir.path());
    let touch = format!("touch {}", marker.display());

    // Remote-helper and option syntax cannot even be expressed as a repository or branch.
    for url in [
        format!("ext::sh -c {touch}"),
        format!("ext::sh%20-c%20{}", touch.replace(' ', "%20")),
        format!("--upload-pack={touch}"),
        "-oProxyCommand=x".to_owned(),
    ] {
        assert!(RepositoryUrl::parse(&url).is_err(), "{url:?} was accepted");
    }
    assert!(BranchName::parse(&format!("--upload-pack={touch}")).is_err());

    // What parses is still checked by the adapter before anything runs.
    let known_hosts = dir.path().join("known_hosts");
    let key = || deploy_key("not-a-real-key".to_owned(), &known_hosts);
    let cases = [
        request("ssh://-oProxyCommand=touch$IFS@127.0.0.1/srv/app.git", "main", key()),
        request("ssh://git@127.0.0.1/-oProxyCommand=x", "main", key()),
        request("ssh://git@127.0.0.1/srv/app.git", "main", None),
        request("ssh://git@127.0.0.1/srv/app.git", "main", token(TOKEN)),
        request("http://127.0.0.1:1/app.git", "main", key()),
    ];
    for case in &cases {
        let checkout = dir.path().join("checkout");
        let error = git.fetch(case, &checkout, &RecordingLog::default()).await.unwrap_err();
        assert!(matches!(error, SourceError::Refused(_)), "{}: {error:?}", case.repository);
        assert_no_secret(&[error.to_string()], &[TOKEN]);
        assert!(!checkout.exists());
    }
    assert!(!marker.exists(), "git ran for a refused request");
}

#[tokio::test]
async fn a_private_repository_over_http_needs_the_token_and_never_shows_it() {
    let fixture = Fixture::new();
    let server = GitHttpServer::start(&fixture.repos(), Some((TOKEN_USER, TOKEN)));
    let url = server.url("app.git");
    let git = GitCli::new();
    let encoded = base64_basic(TOKEN_USER, TOKEN);
    let mut texts = Vec::new();

    let log = RecordingLog::default();
    let fetched = git
        .fetch(&request(&url, "main", token(TOKEN)), &fixture.checkout("ok"), &log)
        .await
        .unwrap();
    assert_eq!(fetched.commit, fixture.commit);
    assert!(fixture.checkout("ok").join("README.md").is_file());
    texts.extend(log.lines());

    // The token travelled in the Authorization header only, never in a URL.
    let requests = server.requests();
    assert!(requests
        .iter()
        .any(|r| r.authorization.as_deref() == Some(&format!("Basic {encoded}"))));
    assert!(requests.iter().all(|r| !r.target.contains(TOKEN)), "{requests:?}");

    // No token: the advice says a token is needed.
    let log = RecordingLog::default();
    let checkout = fixture.checkout("anonymous");
    let error = git.fetch(&request(&url, "main", None), &checkout, &log).await.unwrap_err();
    assert!(matches!(error, SourceError::AuthenticationFailed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("authentication to {url} failed: the repository needs credentials and none were given; give the application a token that can read it (--git-token-stdin)")
    );
    assert!(!checkout.exists(), "a failed fetch leaves no checkout behind");
    texts.extend(log.lines());

    // A wrong token: refused, and the wrong token is not echoed either.
    let wrong = "ghs_wrongTokenValue987654321";
    let log = RecordingLog::default();
    let error = git
        .fetch(&request(&url, "main", token(wrong)), &fixture.checkout("wrong"), &log)
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::AuthenticationFailed { .. }), "{error:?}");
    assert!(error.to_string().contains("the server refused the token"), "{error}");
    texts.push(error.to_string());
    texts.push(format!("{error:?}"));
    texts.extend(log.lines());

    // Missing branch and missing repository are named as such.
    let log = RecordingLog::default();
    let error = git
        .fetch(&request(&url, "release/9", token(TOKEN)), &fixture.checkout("branch"), &log)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SourceError::BranchNotFound { branch, .. } if branch == "release/9"),
        "{error:?}"
    );
    texts.push(error.to_string());
    texts.extend(log.lines());
    let missing = server.url("missing.git");
    let log = RecordingLog::default();
    let error = git
        .fetch(&request(&missing, "main", token(TOKEN)), &fixture.checkout("missing"), &log)
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::RepositoryNotFound { .. }), "{error:?}");
    texts.push(error.to_string());
    texts.extend(log.lines());

    // ls-remote sees the same head.
    let log = RecordingLog::default();
    let head = git.ls_remote_head(&request(&url, "main", token(TOKEN)), &log).await.unwrap();
    assert_eq!(head, fixture.commit);
    let error = git.ls_remote_head(&request(&url, "nope", token(TOKEN)), &log).await.unwrap_err();
    assert!(matches!(error, SourceError::BranchNotFound { .. }), "{error:?}");
    texts.extend(log.lines());

    assert_no_secret(&texts, &[TOKEN, wrong, &encoded, &base64_basic(TOKEN_USER, wrong)]);
}

#[tokio::test]
async fn missing_branch_and_repository_over_file_urls() {
    let fixture = Fixture::new();
    let git = GitCli::new();
    let url = format!("file://{}", fixture.app_repo().display());
    let error = git
        .fetch(&local_request(&url, "nope"), &fixture.checkout("a"), &RecordingLog::default())
        .await
        .unwrap_err();
    expect_branch_not_found(&error, "nope");
    let missing = format!("file://{}", fixture.repos().join("missing.git").display());
    let error = git
        .fetch(&local_request(&missing, "main"), &fixture.checkout("b"), &RecordingLog::default())
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::RepositoryNotFound { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("repository {missing} was not found or is not readable; check the URL and the credentials")
    );
}

fn expect_branch_not_found(error: &SourceError, expected: &str) {
    assert!(
        matches!(error, SourceError::BranchNotFound { branch, .. } if branch == expected),
        "{error:?}"
    );
    assert!(error.to_string().contains("push it or choose another branch"), "{error}");
}

#[tokio::test]
async fn an_existing_checkout_directory_is_neither_used_nor_deleted() {
    let fixture = Fixture::new();
    let checkout = fixture.checkout("existing");
    std::fs::create_dir_all(&checkout).unwrap();
    std::fs::write(checkout.join("keep.txt"), "mine").unwrap();
    let url = format!("file://{}", fixture.app_repo().display());
    let error = GitCli::new()
        .fetch(&local_request(&url, "main"), &checkout, &RecordingLog::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cannot create the checkout directory"), "{error}");
    assert_eq!(std::fs::read_to_string(checkout.join("keep.txt")).unwrap(), "mine");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{address}/app.git");
    let request = FetchRequest { timeout: Duration::from_secs(1), ..request(&url, "main", None) };
    let started = Instant::now();
    let error = GitCli::new()
        .fetch(&request, &dir.path().join("checkout"), &RecordingLog::default())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(matches!(error, SourceError::Timeout { seconds: 1, .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("git timed out after 1 s while fetching {url}"));
    assert!(!dir.path().join("checkout").exists());
}

#[tokio::test]
async fn ssh_with_a_deploy_key() {
    let fixture = Fixture::new();
    let server = GitSshServer::start(&fixture.repos());
    let known_hosts = fixture.dir.path().join("data/ssh/known_hosts");
    let url = server.url("app.git");
    let git = GitCli::new();
    let mut texts = Vec::new();

    let log = RecordingLog::default();
    let key = deploy_key(server.private_key(), &known_hosts);
    let fetched = git
        .fetch(&request(&url, "main", key.clone()), &fixture.checkout("ssh"), &log)
        .await
        .unwrap();
    assert_eq!(fetched.commit, fixture.commit);
    assert!(fixture.checkout("ssh").join("README.md").is_file());
    // The host key was recorded on first use.
    assert!(std::fs::read_to_string(&known_hosts)
        .unwrap()
        .contains(&format!("[127.0.0.1]:{}", server.port())));
    texts.extend(log.lines());

    // A key the server does not know is refused, with advice about deploy keys.
    let stranger = generate_key_pair();
    let log = RecordingLog::default();
    let error = git
        .fetch(
            &request(&url, "main", deploy_key(stranger.private_key.clone(), &known_hosts)),
            &fixture.checkout("stranger"),
            &log,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::AuthenticationFailed { .. }), "{error:?}");
    assert!(error.to_string().contains("refused the deploy key"), "{error}");
    texts.push(error.to_string());
    texts.extend(log.lines());

    let log = RecordingLog::default();
    let error = git
        .fetch(&request(&url, "gone", key.clone()), &fixture.checkout("gone"), &log)
        .await
        .unwrap_err();
    expect_branch_not_found(&error, "gone");
    let error = git
        .fetch(
            &request(&server.url("missing.git"), "main", key),
            &fixture.checkout("missing"),
            &log,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::RepositoryNotFound { .. }), "{error:?}");
    texts.extend(log.lines());

    let secret_lines: Vec<String> = [server.private_key(), stranger.private_key]
        .iter()
        .flat_map(|key| {
            key.lines()
                .filter(|line| !line.starts_with("-----"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let secret_lines: Vec<&str> = secret_lines.iter().map(String::as_str).collect();
    assert_no_secret(&texts, &secret_lines);
}

#[tokio::test]
async fn a_changed_ssh_host_key_is_refused() {
    let fixture = Fixture::new();
    let mut server = GitSshServer::start(&fixture.repos());
    let known_hosts = fixture.dir.path().join("known_hosts");
    let url = server.url("app.git");
    let git = GitCli::new();
    let key = deploy_key(server.private_key(), &known_hosts);
    git.fetch(
        &request(&url, "main", key.clone()),
        &fixture.checkout("first"),
        &RecordingLog::default(),
    )
    .await
    .unwrap();

    let before = server.host_key_fingerprint();
    server.regenerate_host_key();
    assert_ne!(server.host_key_fingerprint(), before);

    let checkout = fixture.checkout("second");
    let error = git
        .fetch(&request(&url, "main", key), &checkout, &RecordingLog::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SourceError::HostKeyChanged { host, .. } if *host == format!("[127.0.0.1]:{}", server.port())),
        "{error:?}"
    );
    assert!(error.to_string().contains(&known_hosts.display().to_string()), "{error}");
    assert!(!checkout.exists());
}

fn base64_basic(user: &str, password: &str) -> String {
    // A tiny standard base64 encoder, so the test does not share the adapter's code.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let bytes = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn a_missing_or_too_old_git_is_reported_with_advice() {
    let fixture = Fixture::new();
    let url = format!("file://{}", fixture.app_repo().display());

    let missing = GitCli::new().with_git_program("/nonexistent/bin/git");
    let error = missing
        .fetch(&local_request(&url, "main"), &fixture.checkout("a"), &RecordingLog::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("is git installed and on the PATH"), "{error}");

    // Git before 2.31 ignores GIT_CONFIG_COUNT, so a token would silently not be sent.
    let old = fixture.dir.path().join("old-git");
    std::fs::write(&old, "#!/bin/sh\necho 'git version 2.30.2'\n").unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let error = GitCli::new()
        .with_git_program(&old)
        .fetch(&local_request(&url, "main"), &fixture.checkout("b"), &RecordingLog::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("needs git 2.31 or newer"), "{error}");
    assert!(!fixture.checkout("b").exists());
}
