//! Webhook signatures and payloads, with trimmed copies of the payloads GitHub, GitLab and
//! Gitea document (in `berth-domain/tests/fixtures/webhooks`).

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/webhooks/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn event(host: GitHost, event: &str, name: &str) -> GitEvent {
    match parse_delivery(host, Some(event), &fixture(name)).unwrap() {
        DeliveryContent::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn branch(name: &str) -> BranchName {
    BranchName::parse(name).unwrap()
}

#[test]
fn github_documented_signature_example_verifies() {
    // The example in GitHub's "Validating webhook deliveries".
    let secret = "It's a Secret to Everybody";
    let body = b"Hello, World!";
    let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign_body(secret, body), header.trim_start_matches("sha256="));
    assert_eq!(verify_signature(GitHost::GitHub, Some(header), body, secret), Ok(()));
}

#[test]
fn forged_unsigned_and_malformed_signatures_are_refused() {
    let body = fixture("github_push.json");
    let secret = "s3cret-value";
    let good = format!("sha256={}", sign_body(secret, &body));
    assert_eq!(verify_signature(GitHost::GitHub, Some(&good), &body, secret), Ok(()));

    let forged = format!("sha256={}", sign_body("another-secret", &body));
    assert_eq!(
        verify_signature(GitHost::GitHub, Some(&forged), &body, secret),
        Err(SignatureRefused::Mismatch { header: "x-hub-signature-256" })
    );
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert!(verify_signature(GitHost::GitHub, Some(&good), &tampered, secret).is_err());
    assert_eq!(
        verify_signature(GitHost::GitHub, None, &body, secret),
        Err(SignatureRefused::Missing { header: "x-hub-signature-256" })
    );
    assert!(matches!(
        verify_signature(GitHost::GitHub, Some(&sign_body(secret, &body)), &body, secret),
        Err(SignatureRefused::Malformed { .. })
    ));
    assert!(matches!(
        verify_signature(GitHost::GitHub, Some("sha256=zz"), &body, secret),
        Err(SignatureRefused::Malformed { .. })
    ));

    // Gitea: bare hex.
    let gitea = sign_body(secret, &body);
    assert_eq!(verify_signature(GitHost::Gitea, Some(&gitea), &body, secret), Ok(()));
    assert!(verify_signature(GitHost::Gitea, Some(&sign_body("x", &body)), &body, secret).is_err());

    // GitLab: the token itself.
    assert_eq!(verify_signature(GitHost::GitLab, Some(secret), &body, secret), Ok(()));
    assert_eq!(
        verify_signature(GitHost::GitLab, Some("s3cret-valuf"), &body, secret),
        Err(SignatureRefused::Mismatch { header: "x-gitlab-token" })
    );
    assert!(verify_signature(GitHost::GitLab, Some("s3cret"), &body, secret).is_err());
    assert!(verify_signature(GitHost::GitLab, Some(""), &body, secret).is_err());
}

#[test]
fn github_push_becomes_a_push_event() {
    let GitEvent::Push(push) = event(GitHost::GitHub, "push", "github_push.json") else {
        panic!("not a push")
    };
    assert_eq!(push.branch, branch("main"));
    assert_eq!(push.head_commit.as_deref(), Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"));
    assert_eq!(push.previous_commit.as_deref(), Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"));
    assert!(!push.created && !push.deleted);
    assert_eq!(
        push.repository_urls,
        [
            "https://github.com/Codertocat/Hello-World.git",
            "git@github.com:Codertocat/Hello-World.git",
            "https://github.com/Codertocat/Hello-World",
        ]
    );
}

#[test]
fn deleted_branches_and_tags() {
    let GitEvent::Push(push) = event(GitHost::GitHub, "push", "github_push_branch_deleted.json")
    else {
        panic!("not a push")
    };
    assert!(push.deleted && push.head_commit.is_none());
    assert_eq!(push.branch, branch("feature/login"));

    let content =
        parse_delivery(GitHost::GitHub, Some("push"), &fixture("github_push_tag.json")).unwrap();
    assert!(matches!(content, DeliveryContent::Ignored { .. }), "{content:?}");

    let ping = parse_delivery(GitHost::GitHub, Some("ping"), b"{\"zen\":\"Keep it simple\"}");
    assert_eq!(ping, Ok(DeliveryContent::Ping));
    let issue = parse_delivery(GitHost::GitHub, Some("issues"), b"{}").unwrap();
    assert!(matches!(issue, DeliveryContent::Ignored { .. }));
}

#[test]
fn gitea_push_created_and_deleted_from_zero_commits() {
    let GitEvent::Push(push) = event(GitHost::Gitea, "push", "gitea_push.json") else {
        panic!("not a push")
    };
    assert_eq!(push.branch, branch("develop"));
    assert!(!push.created && !push.deleted);
    assert!(push.repository_urls.contains(&"ssh://gitea@localhost:2222/gitea/webhooks.git".into()));

    let body = br#"{"ref":"refs/heads/feature/x","before":"0000000000000000000000000000000000000000","after":"bffeb74224043ba2feb48d137756c8a9331c449a","repository":{"clone_url":"http://localhost:3000/gitea/webhooks.git"}}"#;
    let Ok(DeliveryContent::Event(GitEvent::Push(created))) =
        parse_delivery(GitHost::Gitea, Some("push"), body)
    else {
        panic!("not a push")
    };
    assert!(created.created && !created.deleted);

    let body = br#"{"ref":"feature/x","ref_type":"branch","pusher_type":"user","repository":{"clone_url":"http://localhost:3000/gitea/webhooks.git"}}"#;
    let Ok(DeliveryContent::Event(GitEvent::Push(deleted))) =
        parse_delivery(GitHost::Gitea, Some("delete"), body)
    else {
        panic!("not a push")
    };
    assert!(deleted.deleted && deleted.head_commit.is_none());
    assert_eq!(deleted.branch, branch("feature/x"));
}

#[test]
fn gitlab_push_and_merge_request() {
    let GitEvent::Push(push) = event(GitHost::GitLab, "Push Hook", "gitlab_push.json") else {
        panic!("not a push")
    };
    assert_eq!(push.branch, branch("main"));
    assert_eq!(push.head_commit.as_deref(), Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"));
    assert_eq!(
        push.repository_urls,
        [
            "http://example.com/mike/diaspora.git",
            "git@example.com:mike/diaspora.git",
            "http://example.com/mike/diaspora",
        ]
    );

    let GitEvent::PullRequest(request) =
        event(GitHost::GitLab, "Merge Request Hook", "gitlab_merge_request_update.json")
    else {
        panic!("not a merge request")
    };
    assert_eq!(request.number, 1);
    assert_eq!(request.action, PullRequestAction::Updated);
    assert_eq!(request.base_branch, branch("master"));
    assert_eq!(request.head_branch, branch("ms-viewport"));
    assert!(!request.from_fork);
    assert_eq!(request.head_repository_url, "http://example.com/awesome_space/awesome_project.git");

    // An update without new commits (title, labels) is not acted on.
    let mut payload: serde_json::Value =
        serde_json::from_slice(&fixture("gitlab_merge_request_update.json")).unwrap();
    payload["object_attributes"].as_object_mut().unwrap().remove("oldrev");
    let body = serde_json::to_vec(&payload).unwrap();
    let content = parse_delivery(GitHost::GitLab, Some("Merge Request Hook"), &body).unwrap();
    assert!(matches!(content, DeliveryContent::Ignored { .. }));

    for (action, expected) in [
        ("open", PullRequestAction::Opened),
        ("reopen", PullRequestAction::Opened),
        ("merge", PullRequestAction::Closed),
        ("close", PullRequestAction::Closed),
    ] {
        payload["object_attributes"]["action"] = action.into();
        payload["object_attributes"]["source_project_id"] = 99.into();
        let body = serde_json::to_vec(&payload).unwrap();
        let Ok(DeliveryContent::Event(GitEvent::PullRequest(request))) =
            parse_delivery(GitHost::GitLab, Some("Merge Request Hook"), &body)
        else {
            panic!("not a merge request")
        };
        assert_eq!(request.action, expected, "{action}");
        assert!(request.from_fork);
    }
    let tag = parse_delivery(GitHost::GitLab, Some("Tag Push Hook"), b"{}").unwrap();
    assert!(matches!(tag, DeliveryContent::Ignored { .. }));
}

#[test]
fn github_and_gitea_pull_requests() {
    let GitEvent::PullRequest(request) =
        event(GitHost::GitHub, "pull_request", "github_pull_request_from_fork.json")
    else {
        panic!("not a pull request")
    };
    assert_eq!(request.number, 2);
    assert_eq!(request.action, PullRequestAction::Opened);
    assert!(request.from_fork);
    assert_eq!(request.head_repository_url, "https://github.com/Contributor/Hello-World.git");
    assert_eq!(request.head_commit, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(request.base_branch, branch("main"));

    let GitEvent::PullRequest(closed) =
        event(GitHost::Gitea, "pull_request", "gitea_pull_request_closed.json")
    else {
        panic!("not a pull request")
    };
    assert_eq!(closed.action, PullRequestAction::Closed);
    assert!(!closed.from_fork);
    assert_eq!(closed.head_branch, branch("feature/login"));

    let mut payload: serde_json::Value =
        serde_json::from_slice(&fixture("gitea_pull_request_closed.json")).unwrap();
    payload["action"] = "synchronized".into();
    let body = serde_json::to_vec(&payload).unwrap();
    let Ok(DeliveryContent::Event(GitEvent::PullRequest(updated))) =
        parse_delivery(GitHost::Gitea, Some("pull_request_sync"), &body)
    else {
        panic!("not a pull request")
    };
    assert_eq!(updated.action, PullRequestAction::Updated);
    payload["action"] = "labeled".into();
    let body = serde_json::to_vec(&payload).unwrap();
    let labeled = parse_delivery(GitHost::Gitea, Some("pull_request"), &body).unwrap();
    assert!(matches!(labeled, DeliveryContent::Ignored { .. }));
}

#[test]
fn malformed_payloads_and_missing_event_headers_are_errors() {
    assert_eq!(
        parse_delivery(GitHost::GitHub, None, b"{}"),
        Err(PayloadError::MissingEvent { header: "x-github-event" })
    );
    let error = parse_delivery(GitHost::GitHub, Some("push"), b"not json").unwrap_err();
    assert!(error.to_string().contains("not what github sends"), "{error}");
    let error = parse_delivery(GitHost::GitHub, Some("push"), b"payload=%7B%7D").unwrap_err();
    assert!(error.to_string().contains("content type to application/json"), "{error}");
    let error = parse_delivery(GitHost::GitLab, Some("Push Hook"), b"{\"ref\":1}").unwrap_err();
    assert!(matches!(error, PayloadError::Malformed { .. }));
    let body = br#"{"ref":"refs/heads/-x","after":"abc","repository":{}}"#;
    assert!(parse_delivery(GitHost::GitHub, Some("push"), body).is_err());
}

#[test]
fn repository_urls_normalise_across_transports() {
    let same = [
        "https://github.com/Codertocat/Hello-World.git",
        "https://GitHub.com/Codertocat/Hello-World/",
        "https://github.com:443/Codertocat/Hello-World",
        "git@github.com:Codertocat/Hello-World.git",
        "ssh://git@github.com/Codertocat/Hello-World.git",
        "ssh://git@github.com:22/Codertocat/Hello-World",
        "http://github.com/Codertocat/Hello-World.git",
    ];
    for url in same {
        assert_eq!(normalize_repository_url(url), "github.com/Codertocat/Hello-World", "{url}");
    }
    assert_eq!(
        normalize_repository_url("http://127.0.0.1:8123/repos/app.git"),
        "127.0.0.1:8123/repos/app"
    );
    assert_ne!(
        normalize_repository_url("http://127.0.0.1:8123/repos/app.git"),
        normalize_repository_url("http://127.0.0.1:8124/repos/app.git")
    );
    assert_eq!(normalize_repository_url("/srv/git/App.git/"), "/srv/git/App");
    assert_eq!(normalize_repository_url("file:///srv/git/App.git"), "/srv/git/App");
    assert!(repository_matches(
        &["git@example.com:mike/diaspora.git".to_owned()],
        "https://example.com/mike/diaspora"
    ));
    assert!(!repository_matches(
        &["https://example.com/mike/diaspora-two.git".to_owned()],
        "https://example.com/mike/diaspora"
    ));
}
