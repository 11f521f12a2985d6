//! `Source::changed_files` against real git: a shallow checkout of the new head learns
//! which files changed since an older commit (fetched by id over HTTP and file://), the
//! list names every side of a rename, and a commit the remote does not know gives `None`
//! (the caller then treats everything as changed).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_domain::names::BranchName;
use berth_domain::source::RepositoryUrl;
use berth_engine::adapters::{FetchRequest, LogSink, Source};
use berth_git::GitCli;
use test_support::git_http::GitHttpServer;
use test_support::repo::{commit_files, init_repo};

struct Quiet;

impl LogSink for Quiet {
    fn line(&self, _line: &str) {}
}

fn request(url: &str) -> FetchRequest {
    FetchRequest {
        repository: RepositoryUrl::parse(url).unwrap(),
        branch: BranchName::parse("main").unwrap(),
        credentials: None,
        allow_local: true,
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn files_changed_between_two_commits_over_http_and_file_urls() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("repos/mono.git");
    let first = init_repo(
        &bare,
        &[
            ("services/api/main.go", "v1\n"),
            ("services/web/index.html", "v1\n"),
            ("README.md", "r\n"),
        ],
        "main",
    );
    commit_files(&bare, &[("services/web/index.html", "v2\n")], "main");
    let last =
        commit_files(&bare, &[("services/api/main.go", "v3\n"), ("docs/new.md", "n\n")], "main");
    let server = GitHttpServer::start(&dir.path().join("repos"), None);
    let git = GitCli::new();
    for url in [server.url("mono.git"), format!("file://{}", bare.display())] {
        let checkout = dir.path().join(format!("checkout-{}", url.len()));
        let request = request(&url);
        let fetched = git.fetch(&request, &checkout, &Quiet).await.unwrap();
        assert_eq!(fetched.commit, last);
        let mut files =
            git.changed_files(&request, &checkout, &first, &last, &Quiet).await.unwrap().unwrap();
        files.sort();
        assert_eq!(
            files,
            ["docs/new.md", "services/api/main.go", "services/web/index.html"],
            "{url}"
        );
        let unknown = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            git.changed_files(&request, &checkout, unknown, &last, &Quiet).await.unwrap(),
            None
        );
        assert!(git.changed_files(&request, &checkout, "HEAD~1", &last, &Quiet).await.is_err());
        assert_eq!(git.head_commit(&request, &Quiet).await.unwrap(), last);
    }
}
