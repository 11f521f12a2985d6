//! Tests of `berth exec`: the meaning of each event of the stream, the exit code, and the
//! command against the stand-in server (and against a server that sends its output slowly,
//! to show that lines are printed as they arrive).

use std::time::Duration;

use expect_test::expect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{exit_status, interpret, ExecEvent};
use crate::commands::testing::{run_cli, run_cli_into, SharedBuffer};
use crate::output::Terminals;
use crate::sse::{SseEvent, SseParser};
use crate::test_server::{Reply, StubServer};

const EXEC: &str = "POST /api/v1/projects/shop/environments/prod/applications/web/exec";

fn events(stream: &str) -> Vec<SseEvent> {
    SseParser::default().push(stream.as_bytes()).unwrap()
}

#[test]
fn each_event_of_the_stream_means_one_thing() {
    let stream = "data: listening\n\n\
                  data:\n\n\
                  data: \u{1b}[32mok\u{1b}[0m\tdone\n\n\
                  data: two\ndata: lines\n\n\
                  event: progress\ndata: 50%\n\n\
                  event: exit\ndata: {\"exit_code\":3}\n\n\
                  event: exit\ndata: {\"exit_code\":0}\n\n\
                  event: exit\ndata: not json\n\n\
                  event: error\ndata: application web is not deployed; deploy it first\n\n";
    let meanings: Vec<ExecEvent> = events(stream).iter().map(interpret).collect();
    expect![[r#"
        [
            Output(
                "listening",
            ),
            Output(
                "",
            ),
            Output(
                "ok\tdone",
            ),
            Output(
                "two lines",
            ),
            Other,
            Exited(
                3,
            ),
            Exited(
                0,
            ),
            Failed(
                "the server's exit event does not carry an exit code (expected ident at line 1 column 2): not json",
            ),
            Failed(
                "application web is not deployed; deploy it first",
            ),
        ]
    "#]]
    .assert_debug_eq(&meanings);
}

#[test]
fn exit_codes_outside_a_process_status_are_failures() {
    let statuses: Vec<u8> =
        [0, 1, 3, 137, 255, 256, 70_000, -1, i64::MIN].into_iter().map(exit_status).collect();
    assert_eq!(statuses, [0, 1, 3, 137, 255, 255, 255, 255, 255]);
}

#[tokio::test]
async fn output_is_printed_and_the_exit_code_is_the_commands() {
    let failing = "data: migrating 0042_orders\n\n\
                   data: error: relation \"orders\" already exists\n\n\
                   event: exit\ndata: {\"exit_code\":3}\n\n";
    let stub = StubServer::start(vec![(EXEC, vec![Reply::events(failing)])]).await;
    let args =
        ["exec", "-p", "shop", "-e", "prod", "-a", "web", "--", "sh", "-c", "bin/migrate --yes"];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    assert_eq!(outcome.exit_code, 3);
    expect![[r#"
        migrating 0042_orders
        error: relation "orders" already exists
        --- exit code 3
    "#]]
    .assert_eq(&outcome.transcript());
    expect![[r#"
        POST /api/v1/projects/shop/environments/prod/applications/web/exec
        authorization: Bearer t0ken
        {"command":["sh","-c","bin/migrate --yes"],"instance":null}
    "#]]
    .assert_eq(&stub.requests_text());
}

#[tokio::test]
async fn a_successful_command_in_one_instance_exits_zero() {
    let ok = "data: total 0\n\nevent: exit\ndata: {\"exit_code\":0}\n\n";
    let stub = StubServer::start(vec![(EXEC, vec![Reply::events(ok)])]).await;
    let args = ["exec", "-p", "shop", "-e", "prod", "-a", "web", "--instance", "1", "--", "ls"];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    assert!(outcome.success);
    assert_eq!(outcome.exit_code, 0);
    expect![[r#"
        total 0
    "#]]
    .assert_eq(&outcome.transcript());
    assert_eq!(stub.bodies("POST"), [r#"{"command":["ls"],"instance":1}"#]);
}

#[tokio::test]
async fn errors_exit_one_with_the_message_on_stderr() {
    let not_deployed = serde_json::json!({"error": {"code": "conflict",
        "message": "application web is not deployed; deploy it first with `berth deploy`"}});
    let stub = StubServer::start(vec![
        (
            "POST /api/v1/projects/shop/environments/prod/applications/web/exec",
            vec![Reply::events(
                "data: partial\n\nevent: error\ndata: the container runtime is unreachable\n\n",
            )],
        ),
        (
            "POST /api/v1/projects/shop/environments/prod/applications/cut/exec",
            vec![Reply::events("data: partial\n\n")],
        ),
        (
            "POST /api/v1/projects/shop/environments/prod/applications/new/exec",
            vec![Reply::value(409, &not_deployed)],
        ),
    ])
    .await;
    let mut transcripts = String::new();
    for application in ["web", "cut", "new"] {
        let args = ["exec", "-p", "shop", "-e", "prod", "-a", application, "--", "true"];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        assert_eq!(outcome.exit_code, 1);
        transcripts.push_str(&format!("# {application}\n{}", outcome.transcript()));
    }
    expect![[r#"
        # web
        partial
        --- stderr
        error: the container runtime is unreachable
        --- failed
        # cut
        partial
        --- stderr
        error: the server closed the stream before the command finished; its exit code is unknown
        --- failed
        # new
        --- stderr
        error: application web is not deployed; deploy it first with `berth deploy`
        --- failed
    "#]]
    .assert_eq(&transcripts);
}

/// A server that answers the first request with an event stream whose parts are sent
/// when the test says so (HTTP/1.1, the body ends when the connection closes).
async fn slow_server() -> (String, tokio::sync::mpsc::Sender<&'static str>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (parts, mut next_part) = tokio::sync::mpsc::channel::<&'static str>(4);
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // Read the head and the body (its length is in the head) before answering.
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = socket.read(&mut buffer).await.unwrap();
            request.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse().unwrap());
                if request.len() >= end + 4 + length {
                    break;
                }
            }
            assert!(read > 0, "the client closed the connection early");
        }
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        while let Some(part) = next_part.recv().await {
            socket.write_all(part.as_bytes()).await.unwrap();
            socket.flush().await.unwrap();
        }
    });
    (url, parts)
}

#[tokio::test]
async fn lines_are_printed_as_they_arrive() {
    let (url, parts) = slow_server().await;
    let out = SharedBuffer::default();
    let command = tokio::spawn({
        let out = out.clone();
        async move {
            let args = ["exec", "-p", "shop", "-e", "prod", "-a", "web", "--", "sleep-then-exit"];
            run_cli_into(&url, &args, "", Terminals::default(), out).await
        }
    });
    parts.send("data: first line\n\n").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.text() != "first line\n" {
        assert!(tokio::time::Instant::now() < deadline, "the first line was not printed in time");
        assert!(!command.is_finished(), "the command ended before its exit event");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    parts.send("data: second line\n\nevent: exit\ndata: {\"exit_code\":42}\n\n").await.unwrap();
    drop(parts);
    let outcome = command.await.unwrap();
    expect![[r#"
        first line
        second line
        --- exit code 42
    "#]]
    .assert_eq(&outcome.transcript());
}
