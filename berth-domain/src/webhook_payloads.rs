//! Webhook deliveries from GitHub, GitLab and Gitea: checking that a delivery was signed
//! with the project's secret, and turning its payload into Berth's own [`GitEvent`].
//! Also the repository-URL normaliser that matches a host's URLs (https, ssh, web) with
//! the URL an application was created with.
//!
//! Everything here is pure: the HTTP handler passes the header values and the raw body,
//! and acts on the returned values. The secret is compared in constant time (HMAC
//! verification for GitHub and Gitea, a byte-wise fold for GitLab's plain token).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::git_events::{GitEvent, PullRequestAction, PullRequestEvent, PushEvent};
use crate::names::BranchName;

/// A Git host Berth accepts webhooks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitHost {
    GitHub,
    GitLab,
    Gitea,
}

impl GitHost {
    pub const ALL: [GitHost; 3] = [GitHost::GitHub, GitHost::GitLab, GitHost::Gitea];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|host| host.as_str() == value)
    }

    /// The header naming the event.
    pub fn event_header(self) -> &'static str {
        match self {
            Self::GitHub => "x-github-event",
            Self::GitLab => "x-gitlab-event",
            Self::Gitea => "x-gitea-event",
        }
    }

    /// The header carrying the signature (GitHub, Gitea) or the token (GitLab).
    pub fn signature_header(self) -> &'static str {
        match self {
            Self::GitHub => "x-hub-signature-256",
            Self::GitLab => "x-gitlab-token",
            Self::Gitea => "x-gitea-signature",
        }
    }
}

/// Why a delivery was refused before its payload was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefused {
    #[error("the delivery has no {header} header; set the project's webhook secret in the Git host (`berth webhook show`)")]
    Missing { header: &'static str },
    #[error("the {header} header is malformed; expected {expected}")]
    Malformed { header: &'static str, expected: &'static str },
    #[error("the {header} header does not match the project's webhook secret")]
    Mismatch { header: &'static str },
}

/// Checks that `body` was sent by someone who knows `secret`.
///
/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`; Gitea:
/// `X-Gitea-Signature: <hex HMAC-SHA256(secret, body)>`; GitLab: `X-Gitlab-Token` equal to
/// the secret (GitLab signs nothing).
pub fn verify_signature(
    host: GitHost,
    signature: Option<&str>,
    body: &[u8],
    secret: &str,
) -> Result<(), SignatureRefused> {
    let header = host.signature_header();
    let value = signature.map(str::trim).filter(|v| !v.is_empty());
    let Some(value) = value else {
        return Err(SignatureRefused::Missing { header });
    };
    let hex_digest = match host {
        GitHost::GitLab => {
            return if constant_time_equal(value.as_bytes(), secret.as_bytes()) {
                Ok(())
            } else {
                Err(SignatureRefused::Mismatch { header })
            };
        }
        GitHost::GitHub => value
            .strip_prefix("sha256=")
            .ok_or(SignatureRefused::Malformed { header, expected: "sha256=<64 hex digits>" })?,
        GitHost::Gitea => value,
    };
    let malformed = SignatureRefused::Malformed { header, expected: "64 hex digits" };
    if hex_digest.len() != 64 {
        return Err(malformed);
    }
    let digest = hex::decode(hex_digest).map_err(|_| malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| SignatureRefused::Mismatch { header })?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&digest).map_err(|_| SignatureRefused::Mismatch { header })
}

/// The hex HMAC-SHA256 of `body` under `secret` (what GitHub and Gitea send; tests and
/// clients that simulate a host use it).
pub fn sign_body(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryContent {
    Event(GitEvent),
    /// GitHub's `ping` when a webhook is created: accepted, nothing to do.
    Ping,
    /// A well-formed delivery Berth does not act on (tags, comments, labels...).
    Ignored {
        reason: String,
    },
}

/// A verified delivery whose payload Berth cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the delivery has no {header} header naming the event")]
    MissingEvent { header: &'static str },
    #[error("the {event} payload is not what {host} sends: {reason}")]
    Malformed { host: &'static str, event: String, reason: String },
}

/// Reads a verified delivery's payload.
pub fn parse_delivery(
    host: GitHost,
    event: Option<&str>,
    body: &[u8],
) -> Result<DeliveryContent, PayloadError> {
    let event = event
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or(PayloadError::MissingEvent { header: host.event_header() })?;
    let malformed = |reason: String| PayloadError::Malformed {
        host: host.as_str(),
        event: event.to_owned(),
        reason,
    };
    match (host, event) {
        (GitHost::GitHub, "ping") | (GitHost::Gitea, "ping") => Ok(DeliveryContent::Ping),
        (GitHost::GitHub | GitHost::Gitea, "push") => {
            hub_push(decode(host, event, body)?).map_err(malformed).map(push_content)
        }
        (GitHost::Gitea, "delete") => gitea_delete(decode(host, event, body)?).map_err(malformed),
        (GitHost::GitHub, "pull_request")
        | (GitHost::Gitea, "pull_request" | "pull_request_sync") => {
            hub_pull_request(decode(host, event, body)?).map_err(malformed)
        }
        (GitHost::GitLab, "Push Hook") => {
            gitlab_push(decode(host, event, body)?).map_err(malformed).map(push_content)
        }
        (GitHost::GitLab, "Merge Request Hook") => {
            gitlab_merge_request(decode(host, event, body)?).map_err(malformed)
        }
        (_, other) => Ok(DeliveryContent::Ignored {
            reason: format!("{} event {other:?} is not acted on", host.as_str()),
        }),
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    host: GitHost,
    event: &str,
    body: &[u8],
) -> Result<T, PayloadError> {
    serde_json::from_slice(body).map_err(|e| PayloadError::Malformed {
        host: host.as_str(),
        event: event.to_owned(),
        // GitHub's default content type is a form with the JSON in `payload=`.
        reason: if body.starts_with(b"payload=") {
            "it is form-encoded; set the webhook's content type to application/json".to_owned()
        } else {
            e.to_string()
        },
    })
}

fn push_content(push: Option<PushEvent>) -> DeliveryContent {
    match push {
        Some(push) => DeliveryContent::Event(GitEvent::Push(push)),
        None => DeliveryContent::Ignored { reason: "the push is not to a branch (a tag?)".into() },
    }
}

/// Git's "no commit" id, used for the old side of a created ref and the new side of a
/// deleted one.
fn is_zero_commit(commit: &str) -> bool {
    !commit.is_empty() && commit.bytes().all(|b| b == b'0')
}

fn branch_of_ref(reference: &str) -> Option<Result<BranchName, String>> {
    let branch = reference.strip_prefix("refs/heads/")?;
    Some(BranchName::parse(branch).map_err(|e| e.to_string()))
}

/// A push's branch and its non-empty `before` and `after` commit ids.
struct PushedBranch {
    branch: BranchName,
    before: Option<String>,
    after: Option<String>,
}

/// `Ok(None)` when `reference` is not a branch (a tag); `Err` for an invalid branch name.
fn pushed_branch(
    reference: &str,
    before: Option<String>,
    after: Option<String>,
) -> Result<Option<PushedBranch>, String> {
    let Some(branch) = branch_of_ref(reference) else {
        return Ok(None);
    };
    Ok(Some(PushedBranch {
        branch: branch?,
        before: before.filter(|b| !b.is_empty()),
        after: after.filter(|a| !a.is_empty()),
    }))
}

fn non_empty_urls<'a>(urls: impl IntoIterator<Item = &'a Option<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for url in urls.into_iter().flatten() {
        if !url.is_empty() && !out.contains(url) {
            out.push(url.clone());
        }
    }
    out
}

// GitHub and Gitea share the payload shapes Berth reads ("hub" below).

#[derive(Debug, Deserialize)]
struct HubRepository {
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    ssh_url: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

impl HubRepository {
    fn urls(&self) -> Vec<String> {
        non_empty_urls([&self.clone_url, &self.ssh_url, &self.html_url])
    }
}

#[derive(Debug, Deserialize)]
struct HubPush {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
    /// GitHub only; Gitea says it through the zero commit ids.
    #[serde(default)]
    created: Option<bool>,
    #[serde(default)]
    deleted: Option<bool>,
    repository: HubRepository,
}

fn hub_push(payload: HubPush) -> Result<Option<PushEvent>, String> {
    let Some(PushedBranch { branch, before, after }) =
        pushed_branch(&payload.reference, payload.before, payload.after)?
    else {
        return Ok(None);
    };
    let deleted = payload.deleted.unwrap_or(false) || after.as_deref().is_some_and(is_zero_commit);
    let created = payload.created.unwrap_or(false) || before.as_deref().is_some_and(is_zero_commit);
    let head_commit = if deleted { None } else { after };
    if !deleted && head_commit.is_none() {
        return Err("it has no \"after\" commit".into());
    }
    Ok(Some(PushEvent {
        repository_urls: payload.repository.urls(),
        branch,
        head_commit,
        previous_commit: before,
        created,
        deleted,
    }))
}

#[derive(Debug, Deserialize)]
struct GiteaDelete {
    #[serde(rename = "ref")]
    reference: String,
    ref_type: String,
    repository: HubRepository,
}

fn gitea_delete(payload: GiteaDelete) -> Result<DeliveryContent, String> {
    if payload.ref_type != "branch" {
        return Ok(DeliveryContent::Ignored { reason: "a deleted tag is not acted on".into() });
    }
    let reference = payload.reference.strip_prefix("refs/heads/").unwrap_or(&payload.reference);
    let branch = BranchName::parse(reference).map_err(|e| e.to_string())?;
    Ok(DeliveryContent::Event(GitEvent::Push(PushEvent {
        repository_urls: payload.repository.urls(),
        branch,
        head_commit: None,
        previous_commit: None,
        created: false,
        deleted: true,
    })))
}

#[derive(Debug, Deserialize)]
struct HubBranchTip {
    #[serde(rename = "ref")]
    reference: String,
    sha: String,
    /// Null when the fork was deleted.
    #[serde(default)]
    repo: Option<HubRepository>,
}

#[derive(Debug, Deserialize)]
struct HubPullRequestBody {
    head: HubBranchTip,
    base: HubBranchTip,
    #[serde(default)]
    number: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct HubPullRequest {
    action: String,
    #[serde(default)]
    number: Option<u64>,
    pull_request: HubPullRequestBody,
    repository: HubRepository,
}

fn hub_pull_request(payload: HubPullRequest) -> Result<DeliveryContent, String> {
    let action = match payload.action.as_str() {
        "opened" | "reopened" => PullRequestAction::Opened,
        // GitHub says `synchronize`, Gitea `synchronized`.
        "synchronize" | "synchronized" => PullRequestAction::Updated,
        "closed" => PullRequestAction::Closed,
        other => {
            return Ok(DeliveryContent::Ignored {
                reason: format!("pull request action {other:?} is not acted on"),
            })
        }
    };
    let number = payload
        .number
        .or(payload.pull_request.number)
        .ok_or_else(|| "it has no pull request number".to_owned())?;
    let request = payload.pull_request;
    let base_repository = request.base.repo.as_ref().unwrap_or(&payload.repository);
    let from_fork = match (&request.head.repo, &base_repository.full_name) {
        (Some(head), Some(base)) => head.full_name.as_deref() != Some(base.as_str()),
        (Some(head), None) => head.clone_url != base_repository.clone_url,
        // A deleted fork: certainly not the base repository.
        (None, _) => true,
    };
    let head_repository_url = request
        .head
        .repo
        .as_ref()
        .and_then(|r| r.clone_url.clone())
        .or_else(|| payload.repository.clone_url.clone())
        .ok_or_else(|| "it has no clone URL for the head".to_owned())?;
    Ok(DeliveryContent::Event(GitEvent::PullRequest(PullRequestEvent {
        repository_urls: payload.repository.urls(),
        number,
        action,
        base_branch: BranchName::parse(&request.base.reference).map_err(|e| e.to_string())?,
        head_branch: BranchName::parse(&request.head.reference).map_err(|e| e.to_string())?,
        head_commit: request.head.sha,
        head_repository_url,
        from_fork,
    })))
}

#[derive(Debug, Deserialize)]
struct GitLabProject {
    #[serde(default)]
    git_http_url: Option<String>,
    #[serde(default)]
    git_ssh_url: Option<String>,
    #[serde(default)]
    web_url: Option<String>,
}

impl GitLabProject {
    fn urls(&self) -> Vec<String> {
        non_empty_urls([&self.git_http_url, &self.git_ssh_url, &self.web_url])
    }
}

#[derive(Debug, Deserialize)]
struct GitLabPush {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
    project: GitLabProject,
}

fn gitlab_push(payload: GitLabPush) -> Result<Option<PushEvent>, String> {
    let Some(PushedBranch { branch, before, after }) =
        pushed_branch(&payload.reference, payload.before, payload.after)?
    else {
        return Ok(None);
    };
    let deleted = after.as_deref().is_none_or(is_zero_commit);
    let created = before.as_deref().is_some_and(is_zero_commit);
    Ok(Some(PushEvent {
        repository_urls: payload.project.urls(),
        branch,
        head_commit: if deleted { None } else { after },
        previous_commit: before,
        created,
        deleted,
    }))
}

#[derive(Debug, Deserialize)]
struct GitLabLastCommit {
    id: String,
}

#[derive(Debug, Deserialize)]
struct GitLabMergeRequestAttributes {
    iid: u64,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    source_project_id: Option<u64>,
    #[serde(default)]
    target_project_id: Option<u64>,
    #[serde(default)]
    action: Option<String>,
    /// Present on `update` when new commits were pushed.
    #[serde(default)]
    oldrev: Option<String>,
    last_commit: GitLabLastCommit,
    #[serde(default)]
    source: Option<GitLabProject>,
}

#[derive(Debug, Deserialize)]
struct GitLabMergeRequest {
    project: GitLabProject,
    object_attributes: GitLabMergeRequestAttributes,
}

fn gitlab_merge_request(payload: GitLabMergeRequest) -> Result<DeliveryContent, String> {
    let attributes = payload.object_attributes;
    let action = match attributes.action.as_deref() {
        Some("open" | "reopen") => PullRequestAction::Opened,
        Some("update") if attributes.oldrev.as_deref().is_some_and(|r| !r.is_empty()) => {
            PullRequestAction::Updated
        }
        Some("close" | "merge") => PullRequestAction::Closed,
        other => {
            return Ok(DeliveryContent::Ignored {
                reason: format!(
                    "merge request action {:?} is not acted on (only open, reopen, update with new commits, close, merge)",
                    other.unwrap_or("")
                ),
            })
        }
    };
    let from_fork = match (attributes.source_project_id, attributes.target_project_id) {
        (Some(source), Some(target)) => source != target,
        _ => false,
    };
    let head_repository_url = attributes
        .source
        .as_ref()
        .and_then(|s| s.git_http_url.clone())
        .or_else(|| payload.project.git_http_url.clone())
        .ok_or_else(|| "it has no git_http_url for the source project".to_owned())?;
    Ok(DeliveryContent::Event(GitEvent::PullRequest(PullRequestEvent {
        repository_urls: payload.project.urls(),
        number: attributes.iid,
        action,
        base_branch: BranchName::parse(&attributes.target_branch).map_err(|e| e.to_string())?,
        head_branch: BranchName::parse(&attributes.source_branch).map_err(|e| e.to_string())?,
        head_commit: attributes.last_commit.id,
        head_repository_url,
        from_fork,
    })))
}

/// A repository URL reduced to what identifies the repository, so that the https clone
/// URL, the SSH URL and the web URL a host sends all match the URL an application was
/// created with: scheme, user, `.git` suffix and trailing slashes are dropped, the host
/// is lower-cased (paths keep their case: local paths are case-sensitive). Ports other
/// than the scheme's default are kept, since two servers on one host are two hosts.
///
/// `https://GitHub.com/octo/app.git/`, `git@github.com:octo/app.git` and
/// `ssh://git@github.com/octo/app` all give `github.com/octo/app`; local repositories
/// (`/srv/app.git`, `file:///srv/app.git`) give `/srv/app`.
pub fn normalize_repository_url(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None if url.starts_with('/') => ("file".to_owned(), url),
        None => {
            // scp-like `user@host:path`.
            match url.split_once(':') {
                Some((authority, path)) => {
                    let host = authority.rsplit('@').next().unwrap_or(authority);
                    return format!("{}/{}", host.to_ascii_lowercase(), trim_path(path));
                }
                None => return trim_path(url),
            }
        }
    };
    if scheme == "file" {
        return format!("/{}", trim_path(rest));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or(authority).to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => Some("443"),
        "http" => Some("80"),
        "ssh" => Some("22"),
        "git" => Some("9418"),
        _ => None,
    };
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if Some(port) == default_port => host.to_owned(),
        _ => host_port,
    };
    format!("{host}/{}", trim_path(path))
}

fn trim_path(path: &str) -> String {
    let mut path = path.trim_matches('/');
    while let Some(stripped) = path.strip_suffix(".git") {
        path = stripped.trim_end_matches('/');
    }
    path.trim_start_matches('/').to_owned()
}

/// Whether any of `event_urls` names the same repository as `application_url`.
pub fn repository_matches(event_urls: &[String], application_url: &str) -> bool {
    let wanted = normalize_repository_url(application_url);
    event_urls.iter().any(|url| normalize_repository_url(url) == wanted)
}

#[cfg(test)]
#[path = "webhook_payloads_tests.rs"]
mod tests;
