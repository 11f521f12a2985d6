//! `berth rollback --project P --environment E --to DEPLOYMENT_ID [--wait]`.
//!
//! Expected flow: POST `/rollback` with the earlier deployment's id; the server queues a new
//! deployment that runs that deployment's images with its configuration snapshot (variables
//! included), and from there everything is `berth deploy`'s: the id without `--wait`, the
//! progress, the URLs or the failure (step, reason, last log lines) with it.
//!
//! Refusals come from the server (409 or 422 with a message): a deployment that did not
//! succeed, one of another environment, or one whose images were pruned.

use std::time::Instant;

use berth_api::{Deployment, RollbackRequest};

use super::deploy::follow;
use super::{CliError, Context};
use crate::args::RollbackArgs;
use crate::client::Fetched;
use crate::paths;

pub(crate) async fn run(context: &mut Context<'_>, args: RollbackArgs) -> Result<(), CliError> {
    let (project, environment) = (&args.environment.project, &args.environment.environment);
    let path = paths::environment_rollback(project, environment)?;
    let body = RollbackRequest { to: args.to.clone() };
    let started = Instant::now();
    let created: Fetched<Deployment> = context.client.post(&path, &body).await?;
    follow(context, created, args.wait, started).await
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use serde_json::json;

    use crate::commands::deploy::tests::{
        deployment_json, release_failed_deployment_json, stub_for, without_elapsed,
    };
    use crate::commands::testing::run_cli;
    use crate::output::Terminals;
    use crate::test_server::{Reply, StubServer};

    const ROLLBACK: &str = "POST /api/v1/projects/shop/environments/prod/rollback";

    #[tokio::test]
    async fn rollback_without_wait_prints_the_new_deployment() {
        let mut done = deployment_json("succeeded");
        done["id"] = json!("d5");
        let stub = stub_for(ROLLBACK, done, "d5").await;
        let args = ["rollback", "-p", "shop", "-e", "prod", "--to", "d1"];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            deployment d5 queued
            follow it with `berth deployment logs d5 --follow`
        "#]]
        .assert_eq(&outcome.transcript());
        expect![[r#"
            POST /api/v1/projects/shop/environments/prod/rollback
            authorization: Bearer t0ken
            {"to":"d1"}
        "#]]
        .assert_eq(&stub.requests_text());
    }

    #[tokio::test]
    async fn rollback_wait_shows_what_deploy_wait_shows() {
        let mut done = deployment_json("succeeded");
        done["id"] = json!("d5");
        let stub = stub_for(ROLLBACK, done, "d5").await;
        let args = ["rollback", "-p", "shop", "-e", "prod", "--to", "d1", "--wait"];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            deployment d5 queued
            deployment d5 succeeded in 12.5s
            APPLICATION   URL
            web           http://web.prod.shop.localhost:8000
            --- stderr
            [Ns] clone web: succeeded in 800ms
            [Ns] build web: running
            [Ns] build web: succeeded in 9.0s
            [Ns] start web: succeeded in 1.0s
            [Ns] health web: succeeded in 500ms
        "#]]
        .assert_eq(&without_elapsed(&outcome.transcript()));
        expect![[r#"
            POST /api/v1/projects/shop/environments/prod/rollback
            GET /api/v1/deployments/d5 (x3)
            GET /api/v1/projects/shop/environments/prod/status
        "#]]
        .assert_eq(&stub.request_lines());
    }

    #[tokio::test]
    async fn a_failed_rollback_names_step_reason_and_log_like_deploy() {
        let stub = stub_for(ROLLBACK, release_failed_deployment_json("d6"), "d6").await;
        let args = ["rollback", "-p", "shop", "-e", "prod", "--to", "d1", "-w"];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        assert_eq!(outcome.exit_code, 1);
        expect![[r#"
            deployment d6 queued
            --- stderr
            [Ns] clone web: succeeded in 800ms
            [Ns] build web: running
            [Ns] build web: succeeded in 9.0s
            [Ns] release web: failed in 2.4s: exit code 3
            error: deployment d6 failed at step release of application web: the release command exited with code 3; the previous version keeps serving
            last log lines of release web:
              2024-05-01 10:00:02 [release web] migrating 0042_orders
              2024-05-01 10:00:02 [release web] error: relation "orders" already exists
            hint: read the whole log with `berth deployment logs d6`
            --- failed
        "#]]
        .assert_eq(&without_elapsed(&outcome.transcript()));

        let json_args = [&args[..], &["-o", "json"]].concat();
        let json = run_cli(&stub.url, &json_args, "", Terminals::default()).await;
        assert!(!json.success);
        let printed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(printed["failure"]["step"], "release", "stdout is the final deployment's JSON");
    }

    #[tokio::test]
    async fn a_refused_rollback_shows_the_servers_message() {
        let refusal = json!({"error": {"code": "conflict",
            "message": "deployment d2 did not succeed (failed); roll back to a successful deployment"}});
        let stub = StubServer::start(vec![(ROLLBACK, vec![Reply::value(409, &refusal)])]).await;
        let args = ["rollback", "-p", "shop", "-e", "prod", "--to", "d2", "--wait"];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            --- stderr
            error: deployment d2 did not succeed (failed); roll back to a successful deployment
            --- failed
        "#]]
        .assert_eq(&outcome.transcript());
    }
}
