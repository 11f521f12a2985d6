//! Webhook deliveries for the end-to-end tests: a raw POST to the receiver as a Git host
//! sends it (no bearer token), a GitHub delivery signed with the project's own secret, and
//! waiting for the deployments a delivery queued.
//!
//! Requests go only to the test server's loopback API address.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{unique_name, wait_for, TestServer};

/// `berth ARGS --output json`, which must succeed; its parsed output.
pub fn cli_json(server: &TestServer, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    server.cli(&args).expect_success().json()
}

/// A raw POST of `body` to `/api/v1/webhooks/{provider}?project={project}` with `headers`;
/// returns the status code and the JSON answer (`Null` when the answer is not JSON).
/// `read_timeout` bounds the wait for the answer (a delivery may queue deployments first).
pub fn post_webhook(
    server: &TestServer,
    provider: &str,
    project: &str,
    headers: &[(&str, String)],
    body: &str,
    read_timeout: Duration,
) -> (u16, Value) {
    let address = server.url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut stream = TcpStream::connect(&address).expect("connect to the test server");
    stream.set_read_timeout(Some(read_timeout)).expect("set the read timeout");
    let mut request = format!(
        "POST /api/v1/webhooks/{provider}?project={project} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send the delivery");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the answer to the delivery");
    let status: u16 = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json_start = response.find("\r\n\r\n").map(|i| i + 4).unwrap_or(0);
    (status, serde_json::from_str(response[json_start..].trim()).unwrap_or(Value::Null))
}

/// The project's webhook secret (`berth webhook show`).
pub fn webhook_secret(server: &TestServer, project: &str) -> String {
    let shown = cli_json(server, &["webhook", "show", "--project", project]);
    shown["secret"].as_str().unwrap_or_else(|| panic!("no secret in {shown}")).to_owned()
}

/// The headers GitHub sends with a `event` delivery of `body` signed with `secret`.
pub fn github_headers(event: &str, secret: &str, body: &str) -> Vec<(&'static str, String)> {
    let signature = berth_domain::webhook_payloads::sign_body(secret, body.as_bytes());
    vec![
        ("X-GitHub-Event", event.to_owned()),
        ("X-GitHub-Delivery", unique_name("delivery")),
        ("X-Hub-Signature-256", format!("sha256={signature}")),
    ]
}

/// Delivers a GitHub `event` signed with the project's secret and asserts it was
/// accepted; returns the server's answer.
pub fn deliver_signed_github(
    server: &TestServer,
    project: &str,
    event: &str,
    body: &str,
    read_timeout: Duration,
) -> Value {
    let secret = webhook_secret(server, project);
    let headers = github_headers(event, &secret, body);
    let (status, answer) = post_webhook(server, "github", project, &headers, body, read_timeout);
    assert!((200..300).contains(&status), "the webhook was refused: {status} {answer}");
    answer
}

/// The ids of the deployments a delivery's answer says it queued.
pub fn queued_deployment_ids(answer: &Value) -> Vec<String> {
    answer["deployments"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Waits (up to `deadline` each) until every given deployment ended; returns them.
pub fn wait_deployments_ended(
    server: &TestServer,
    ids: &[String],
    deadline: Duration,
) -> Vec<Value> {
    ids.iter()
        .map(|id| {
            wait_for(deadline, &format!("deployment {id} to end"), || {
                let shown = cli_json(server, &["deployment", "show", id]);
                let status = shown["status"].as_str().unwrap_or_default().to_owned();
                (status != "queued" && status != "running").then_some(shown)
            })
        })
        .collect()
}

/// Waits until every given deployment ended and asserts that each succeeded.
pub fn wait_deployments_succeeded(server: &TestServer, ids: &[String], deadline: Duration) {
    for id in ids {
        let finished = wait_deployments_ended(server, std::slice::from_ref(id), deadline);
        for shown in finished {
            assert_eq!(shown["status"], "succeeded", "{shown:#}");
        }
    }
}
