//! Fixture Git repositories: bare repositories with known files on a known branch, made
//! with the real `git` so that what tests fetch is what a user's server would serve.
//! Fixture helpers panic with a clear message on failure: a broken fixture is a failed
//! test, not a condition to handle.

use std::ffi::OsStr;
use std::path::Path;

/// Creates a bare repository at `bare_dir` (parent directories included) whose `branch`
/// holds exactly `files` (`(relative path, content)`), and returns the commit id.
pub fn init_repo(bare_dir: &Path, files: &[(&str, &str)], branch: &str) -> String {
    std::fs::create_dir_all(bare_dir)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", bare_dir.display()));
    git(None, [OsStr::new("init"), "--bare".as_ref(), "--quiet".as_ref(), bare_dir.as_os_str()]);
    commit_files(bare_dir, files, branch)
}

/// Adds a commit writing `files` on top of `branch` of the bare repository (creating the
/// branch if it does not exist) and returns the new commit id.
pub fn commit_files(bare_dir: &Path, files: &[(&str, &str)], branch: &str) -> String {
    let work = tempfile::tempdir().expect("temporary work tree");
    let work_dir = work.path();
    git(Some(work_dir), ["init", "--quiet"].map(OsStr::new));
    let fetched = git_status(
        Some(work_dir),
        [
            OsStr::new("fetch"),
            "--quiet".as_ref(),
            bare_dir.as_os_str(),
            format!("refs/heads/{branch}").as_ref(),
        ],
    );
    if fetched {
        git(Some(work_dir), ["checkout", "--quiet", "-B", branch, "FETCH_HEAD"].map(OsStr::new));
    } else {
        git(Some(work_dir), ["checkout", "--quiet", "--orphan", branch].map(OsStr::new));
    }
    for (relative, content) in files {
        let path = work_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("fixture file directory");
        }
        std::fs::write(&path, content)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }
    git(Some(work_dir), ["add", "--all"].map(OsStr::new));
    git(
        Some(work_dir),
        ["commit", "--quiet", "--allow-empty", "-m", "fixture commit"].map(OsStr::new),
    );
    git(
        Some(work_dir),
        [
            OsStr::new("push"),
            "--quiet".as_ref(),
            bare_dir.as_os_str(),
            format!("HEAD:refs/heads/{branch}").as_ref(),
        ],
    );
    // Point the bare repository's HEAD at the branch, as a hosting service would for its
    // default branch.
    git(
        None,
        [
            OsStr::new("--git-dir"),
            bare_dir.as_os_str(),
            "symbolic-ref".as_ref(),
            "HEAD".as_ref(),
            format!("refs/heads/{branch}").as_ref(),
        ],
    );
    let output = git(Some(work_dir), ["rev-parse", "HEAD"].map(OsStr::new));
    output.trim().to_owned()
}

fn git_command(cwd: Option<&Path>) -> std::process::Command {
    // Dev-only fixture code: berth-process is for the product's subprocesses; here a
    // plain blocking command keeps fixtures usable from sync and async tests alike.
    #[allow(clippy::disallowed_methods)]
    let mut command = std::process::Command::new("git");
    // Hermetic: no system or user configuration, a fixed identity and dates.
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Berth Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@berth.invalid")
        .env("GIT_COMMITTER_NAME", "Berth Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@berth.invalid")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false"])
        .stdin(std::process::Stdio::null());
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    command
}

fn git<'a>(cwd: Option<&Path>, args: impl IntoIterator<Item = &'a OsStr>) -> String {
    let args: Vec<&OsStr> = args.into_iter().collect();
    let output = git_command(cwd)
        .args(&args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run git {args:?}: {error}"));
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn git_status<'a>(cwd: Option<&Path>, args: impl IntoIterator<Item = &'a OsStr>) -> bool {
    git_command(cwd)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
