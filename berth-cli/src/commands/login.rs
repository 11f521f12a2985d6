//! `berth login --url URL --token TOKEN`: checks the token with
//! `GET /api/v1/organization`, then saves URL and token in the config file (mode 0600).
//! Nothing is saved when the server refuses the token or cannot be reached.

use berth_api::Organization;

use super::{read_secret, CliError};
use crate::args::{GlobalArgs, LoginArgs};
use crate::client::{ApiClient, Fetched};
use crate::config::{load_config, resolve_url, save_config, ConfigError, ConfigFile, ProcessEnv};
use crate::output::{sanitize, Console};
use crate::paths;

pub(crate) async fn run(
    global: &GlobalArgs,
    args: &LoginArgs,
    env: &ProcessEnv,
    console: &mut Console,
) -> Result<(), CliError> {
    let path = env.config_file().ok_or(ConfigError::NoConfigDirectory)?;
    // A broken config file must not prevent logging in again: it is about to be replaced.
    let saved = load_config(&path).ok().flatten();
    let url = resolve_url(global, saved.as_ref())?;
    let token = if args.token_stdin {
        read_secret(console, "API token: ", "token")?
    } else {
        match global.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => token.to_owned(),
            None => {
                return Err(CliError::failed(
                    "no token to log in with",
                    Some("pass --token TOKEN (or --token-stdin); the admin token's path is printed by `berth server` when it first starts".into()),
                ))
            }
        }
    };
    let client = ApiClient::new(url.clone(), token.clone())?;
    let organization: Fetched<Organization> = client.get(&paths::organization()).await?;
    save_config(&path, &ConfigFile { url: url.to_string(), token })?;
    if console.is_json() {
        console.print_json(&organization.raw)?;
    } else {
        console.println(&format!(
            "token verified: organization {} at {url}",
            sanitize(&organization.value.name, false)
        ))?;
        console.println(&format!("saved to {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use expect_test::expect;

    use crate::args::Cli;
    use crate::commands::testing::run_parsed;
    use crate::config::{load_config, ProcessEnv};
    use crate::output::Terminals;
    use crate::test_server::{Reply, StubServer};

    #[tokio::test]
    async fn login_verifies_then_saves_and_later_commands_use_it() {
        let organization = serde_json::json!({"id": "o1", "name": "default", "created_at": "2024-05-01T10:00:00Z"});
        let stub = StubServer::start(vec![
            ("GET /api/v1/organization", vec![Reply::value(200, &organization)]),
            ("GET /api/v1/projects", vec![Reply::json(200, "[]")]),
        ])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let env = ProcessEnv { xdg_config_home: Some(dir.path().into()), ..Default::default() };
        let cli = Cli::parse_from(["berth", "login", "--url", &stub.url, "--token-stdin"]);
        let outcome = run_parsed(cli, "s3cret\n", Terminals::default(), &env).await;
        let transcript = outcome
            .transcript()
            .replace(&stub.url, "$URL")
            .replace(dir.path().to_str().unwrap(), "$XDG_CONFIG_HOME");
        expect![[r#"
            token verified: organization default at $URL
            saved to $XDG_CONFIG_HOME/berth/config.json
        "#]]
        .assert_eq(&transcript);
        let saved = load_config(&dir.path().join("berth/config.json")).unwrap().unwrap();
        assert_eq!((saved.url.as_str(), saved.token.as_str()), (stub.url.as_str(), "s3cret"));

        // No --url, no --token: both come from the config file.
        let cli = Cli::parse_from(["berth", "project", "list"]);
        let listed = run_parsed(cli, "", Terminals::default(), &env).await;
        assert!(listed.success, "{}", listed.transcript());
        assert!(stub
            .requests_text()
            .ends_with("GET /api/v1/projects\nauthorization: Bearer s3cret\n"));
    }

    #[tokio::test]
    async fn a_refused_token_is_not_saved() {
        let stub = StubServer::start(vec![(
            "GET /api/v1/organization",
            vec![Reply::json(
                401,
                r#"{"error":{"code":"unauthorized","message":"the API token is not valid"}}"#,
            )],
        )])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let env = ProcessEnv { xdg_config_home: Some(dir.path().into()), ..Default::default() };
        let cli = Cli::parse_from(["berth", "login", "--url", &stub.url, "--token", "wrong"]);
        let outcome = run_parsed(cli, "", Terminals::default(), &env).await;
        expect![[r#"
            --- stderr
            error: the API token is not valid
            hint: check the token: run `berth login --url URL --token TOKEN`, or pass --token
            --- failed
        "#]]
        .assert_eq(&outcome.transcript());
        assert!(!dir.path().join("berth/config.json").exists());
    }
}
