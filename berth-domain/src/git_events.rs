//! What a Git host tells Berth, in Berth's own words: a push to a branch, or a pull /
//! merge request changing state. Webhook payloads from GitHub, GitLab and Gitea, and the
//! polling fallback, are all turned into these values before anything acts on them, so
//! deploy, branch-environment and preview logic never see a host's payload shape.

use crate::names::BranchName;

/// A branch moved, appeared or disappeared in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// Every URL the host gives for the repository (https clone URL, SSH URL, web URL);
    /// applications are matched against them after normalisation.
    pub repository_urls: Vec<String>,
    pub branch: BranchName,
    /// The branch's new head; `None` when the branch was deleted.
    pub head_commit: Option<String>,
    /// The head before the push, when the host says (all zeros means a new branch).
    pub previous_commit: Option<String>,
    /// Whether the push created the branch.
    pub created: bool,
    /// Whether the push deleted the branch.
    pub deleted: bool,
}

/// What happened to a pull / merge request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullRequestAction {
    /// Opened or reopened: a preview should exist.
    Opened,
    /// New commits on its head: the preview should be redeployed.
    Updated,
    /// Closed or merged: the preview and everything it created should go.
    Closed,
}

/// A pull request (GitHub, Gitea) or merge request (GitLab) event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    /// The URLs of the repository the request targets (the base repository).
    pub repository_urls: Vec<String>,
    pub number: u64,
    pub action: PullRequestAction,
    /// The branch the request would merge into (the preview blueprint follows it).
    pub base_branch: BranchName,
    /// The branch holding the proposed change.
    pub head_branch: BranchName,
    pub head_commit: String,
    /// The URL the head can be cloned from (the fork's, for a request from a fork).
    pub head_repository_url: String,
    /// Whether the head lives in another repository than the base.
    pub from_fork: bool,
}

/// Any event Berth acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitEvent {
    Push(PushEvent),
    PullRequest(PullRequestEvent),
}
