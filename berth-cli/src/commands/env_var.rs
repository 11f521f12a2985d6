//! `berth env-var set|list|delete|import|alias`: variables and secrets at project,
//! environment or application scope, and aliases that follow a database's built-in
//! variable (listed with the value `${TARGET}`).
//!
//! Secret values are read from stdin when only `KEY` is given (so they stay out of shell
//! history) and are never printed: the server returns them masked, and the CLI masks any
//! secret again in tables. `import` parses the whole file first and sets nothing when a
//! line is malformed; there is no bulk endpoint, so a server refusal part-way through is
//! reported with the list of what was already set.

use berth_api::{SetVariable, Variable};

use super::{read_secret, CliError, Context};
use crate::args::{EnvVarCommand, ScopeArgs};
use crate::client::Fetched;
use crate::dotenv::{check_variable_name, parse_dotenv};
use crate::output::Table;
use crate::paths::VariableScope;

const MASK: &str = "********";
const MAX_SHOWN_VALUE_CHARS: usize = 60;

fn scope_of(args: &ScopeArgs) -> VariableScope {
    VariableScope::new(args.project.clone(), args.environment.clone(), args.application.clone())
}

pub(crate) async fn run(context: &mut Context<'_>, command: EnvVarCommand) -> Result<(), CliError> {
    match command {
        EnvVarCommand::Set(args) => {
            let scope = scope_of(&args.scope);
            let (name, value) = match args.assignment.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None if args.secret => {
                    check_variable_name(&args.assignment).map_err(|m| CliError::failed(m, None))?;
                    let prompt = format!("value of {}: ", args.assignment);
                    let value = read_secret(context.console, &prompt, "value")?;
                    (args.assignment.clone(), value)
                }
                None => {
                    return Err(CliError::failed(
                        format!("expected KEY=VALUE, got {:?}", args.assignment),
                        Some("to read a secret's value from standard input, pass --secret and KEY alone".into()),
                    ));
                }
            };
            check_variable_name(&name).map_err(|message| CliError::failed(message, None))?;
            let body =
                SetVariable { name: name.clone(), value, secret: args.secret, alias_of: None };
            let set: Fetched<serde_json::Value> =
                context.client.put(&scope.variables()?, &body).await?;
            if context.console.is_json() {
                context.console.print_json(&set.raw)?;
            } else {
                let kind = if args.secret { "secret" } else { "variable" };
                context.console.println(&format!("set {kind} {name} on {}", scope.describe()))?;
            }
        }
        EnvVarCommand::List(args) => {
            let scope = scope_of(&args);
            let variables: Fetched<Vec<Variable>> = context.client.get(&scope.variables()?).await?;
            if context.console.is_json() {
                context.console.print_json(&variables.raw)?;
            } else {
                context.console.print(&variables_table(&scope, &args, &variables.value))?;
            }
        }
        EnvVarCommand::Delete(args) => {
            let scope = scope_of(&args.scope);
            let deleted = context.client.delete(&scope.variable(&args.key)?).await?;
            if context.console.is_json() {
                // 204 No Content: nothing to print.
                if !deleted.is_null() {
                    context.console.print_json(&deleted)?;
                }
            } else {
                context.console.println(&format!(
                    "deleted {} from {}",
                    args.key,
                    scope.describe()
                ))?;
            }
        }
        EnvVarCommand::Alias(args) => {
            let scope = scope_of(&args.scope);
            let (name, target) = args.assignment;
            check_variable_name(&name).map_err(|message| CliError::failed(message, None))?;
            let body = SetVariable {
                name: name.clone(),
                value: String::new(),
                secret: false,
                alias_of: Some(target.clone()),
            };
            let set: Fetched<serde_json::Value> =
                context.client.put(&scope.variables()?, &body).await?;
            if context.console.is_json() {
                context.console.print_json(&set.raw)?;
            } else {
                context
                    .console
                    .println(&format!("{name} on {} now follows {target}", scope.describe()))?;
            }
        }
        EnvVarCommand::Import(args) => {
            let scope = scope_of(&args.scope);
            let file = args.file.display().to_string();
            let text = std::fs::read_to_string(&args.file)
                .map_err(|error| CliError::failed(format!("cannot read {file}: {error}"), None))?;
            let entries = parse_dotenv(&text).map_err(|error| {
                CliError::failed(
                    format!("{file}, {error}"),
                    Some("fix that line and import again; nothing was set".into()),
                )
            })?;
            let path = scope.variables()?;
            let mut results = Vec::new();
            let mut done: Vec<String> = Vec::new();
            for entry in entries {
                let body = SetVariable {
                    name: entry.key.clone(),
                    value: entry.value,
                    secret: args.secret,
                    alias_of: None,
                };
                match context.client.put::<_, serde_json::Value>(&path, &body).await {
                    Ok(result) => results.push(result),
                    Err(error) => {
                        let already =
                            if done.is_empty() { "none".to_owned() } else { done.join(", ") };
                        return Err(CliError::failed(
                            format!("{file}, line {}: setting {} failed: {error}", entry.line, entry.key),
                            Some(format!("variables set before it: {already}; fix the problem and import again (setting a variable twice is harmless)")),
                        ));
                    }
                }
                done.push(entry.key);
            }
            if context.console.is_json() {
                context.console.print_json(&results)?;
            } else if done.is_empty() {
                context.console.println(&format!("no variables in {file}"))?;
            } else {
                let kind = if args.secret { "secrets" } else { "variables" };
                context.console.println(&format!(
                    "set {} {kind} on {}: {}",
                    done.len(),
                    scope.describe(),
                    done.join(", ")
                ))?;
            }
        }
    }
    Ok(())
}

fn scope_flags(args: &ScopeArgs) -> String {
    let mut flags = format!("--project {}", args.project);
    if let Some(environment) = &args.environment {
        flags.push_str(&format!(" --environment {environment}"));
    }
    if let Some(application) = &args.application {
        flags.push_str(&format!(" --application {application}"));
    }
    flags
}

fn variables_table(scope: &VariableScope, args: &ScopeArgs, variables: &[Variable]) -> String {
    if variables.is_empty() {
        return format!(
            "no variables on {} yet: set one with `berth env-var set {} KEY=VALUE`\n",
            scope.describe(),
            scope_flags(args)
        );
    }
    let mut table = Table::new(&["NAME", "VALUE", "SECRET", "SCOPE"]);
    for variable in variables {
        let value = match (&variable.alias_of, variable.secret) {
            (Some(target), _) => format!("${{{target}}}"),
            (None, true) => MASK.to_owned(),
            (None, false) => shorten(&variable.value),
        };
        let secret = if variable.secret { "yes" } else { "no" };
        table.row(vec![variable.name.clone(), value, secret.into(), variable.scope.clone()]);
    }
    table.render()
}

fn shorten(value: &str) -> String {
    if value.chars().count() <= MAX_SHOWN_VALUE_CHARS {
        return value.to_owned();
    }
    let mut short: String = value.chars().take(MAX_SHOWN_VALUE_CHARS - 3).collect();
    short.push_str("...");
    short
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use serde_json::json;

    use crate::commands::testing::run_cli;
    use crate::output::Terminals;
    use crate::test_server::{Reply, StubServer};

    const ENV_VARS: &str = "/api/v1/projects/shop/environments/prod/variables";

    fn variable(name: &str, value: &str, secret: bool, scope: &str) -> serde_json::Value {
        json!({"name": name, "value": value, "secret": secret, "scope": scope, "updated_at": "2024-05-01T10:00:00Z"})
    }

    fn alias(name: &str, target: &str, scope: &str) -> serde_json::Value {
        json!({"name": name, "value": format!("${{{target}}}"), "secret": false, "scope": scope,
            "alias_of": target, "updated_at": "2024-05-01T10:00:00Z"})
    }

    async fn stub() -> StubServer {
        let put = format!("PUT {ENV_VARS}");
        let get = format!("GET {ENV_VARS}");
        let delete = format!("DELETE {ENV_VARS}/OLD");
        StubServer::start(vec![
            (
                put.as_str(),
                vec![Reply::value(200, &variable("X", "********", true, "environment"))],
            ),
            (
                get.as_str(),
                vec![Reply::value(
                    200,
                    &json!([
                        variable("DATABASE_URL", "postgres://db:5432/app", false, "project"),
                        variable("API_KEY", "leaked-if-not-masked", true, "environment"),
                        variable("LONG", &"x".repeat(80), false, "environment"),
                        alias("CACHE_URL", "BERTH_DATABASE_CACHE_URL", "environment"),
                    ]),
                )],
            ),
            (delete.as_str(), vec![Reply::text(204, "text/plain", "")]),
            ("GET /api/v1/projects/shop/variables", vec![Reply::json(200, "[]")]),
        ])
        .await
    }

    #[tokio::test]
    async fn set_a_plain_value_and_a_secret_from_stdin() {
        let stub = stub().await;
        let plain = run_cli(
            &stub.url,
            &["env-var", "set", "-p", "shop", "-e", "prod", "LOG_LEVEL=debug=1"],
            "",
            Terminals::default(),
        )
        .await;
        assert_eq!(
            plain.transcript(),
            "set variable LOG_LEVEL on environment \"prod\" of project \"shop\"\n"
        );
        let secret = run_cli(
            &stub.url,
            &["env-var", "set", "-p", "shop", "-e", "prod", "--secret", "API_KEY"],
            "s3cr3t\n",
            Terminals::default(),
        )
        .await;
        assert_eq!(
            secret.transcript(),
            "set secret API_KEY on environment \"prod\" of project \"shop\"\n"
        );
        expect![[r#"
            [
                "{\"name\":\"LOG_LEVEL\",\"value\":\"debug=1\",\"secret\":false,\"alias_of\":null}",
                "{\"name\":\"API_KEY\",\"value\":\"s3cr3t\",\"secret\":true,\"alias_of\":null}",
            ]
        "#]]
        .assert_debug_eq(&stub.bodies("PUT"));
    }

    #[tokio::test]
    async fn a_key_alone_needs_secret_and_a_value() {
        let stub = stub().await;
        let no_secret =
            run_cli(&stub.url, &["env-var", "set", "-p", "shop", "KEY"], "", Terminals::default())
                .await;
        expect![[r#"
            --- stderr
            error: expected KEY=VALUE, got "KEY"
            hint: to read a secret's value from standard input, pass --secret and KEY alone
            --- failed
        "#]]
        .assert_eq(&no_secret.transcript());
        let empty = run_cli(
            &stub.url,
            &["env-var", "set", "-p", "shop", "--secret", "KEY"],
            "",
            Terminals::default(),
        )
        .await;
        expect![[r#"
            --- stderr
            error: no value on standard input
            --- failed
        "#]]
        .assert_eq(&empty.transcript());
        let reserved = run_cli(
            &stub.url,
            &["env-var", "set", "-p", "shop", "BERTH_X=1"],
            "",
            Terminals::default(),
        )
        .await;
        assert!(reserved.stderr.contains("\"BERTH_X\" is reserved"), "{}", reserved.stderr);
        assert!(stub.bodies("PUT").is_empty());
    }

    #[tokio::test]
    async fn list_masks_secrets_and_shortens_long_values() {
        let stub = stub().await;
        let listed = run_cli(
            &stub.url,
            &["env-var", "list", "-p", "shop", "-e", "prod"],
            "",
            Terminals::default(),
        )
        .await;
        expect![[r#"
            NAME           VALUE                                                          SECRET   SCOPE
            DATABASE_URL   postgres://db:5432/app                                         no       project
            API_KEY        ********                                                       yes      environment
            LONG           xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...   no       environment
            CACHE_URL      ${BERTH_DATABASE_CACHE_URL}                                    no       environment
        "#]]
        .assert_eq(&listed.transcript());
        let empty =
            run_cli(&stub.url, &["env-var", "list", "-p", "shop"], "", Terminals::default()).await;
        expect![[r#"
            no variables on project "shop" yet: set one with `berth env-var set --project shop KEY=VALUE`
        "#]]
        .assert_eq(&empty.transcript());
    }

    #[tokio::test]
    async fn delete_a_variable() {
        let stub = stub().await;
        let deleted = run_cli(
            &stub.url,
            &["env-var", "delete", "-p", "shop", "-e", "prod", "OLD"],
            "",
            Terminals::default(),
        )
        .await;
        assert_eq!(
            deleted.transcript(),
            "deleted OLD from environment \"prod\" of project \"shop\"\n"
        );
    }

    #[tokio::test]
    async fn alias_follows_a_built_in_variable() {
        let app_vars = "/api/v1/projects/shop/environments/prod/applications/web/variables";
        let put = format!("PUT {app_vars}");
        let stub = StubServer::start(vec![
            (put.as_str(), vec![Reply::value(200, &alias("DATABASE_URL", "BERTH_DATABASE_MAIN_URL", "application"))]),
            (
                "PUT /api/v1/projects/shop/variables",
                vec![Reply::value(
                    422,
                    &json!({"error": {"code": "invalid", "message": "DATABASE_URL can follow a database's built-in variable (BERTH_DATABASE_<NAME>_URL, _HOST, _PORT, _USER, _PASSWORD, _NAME), not HOME"}}),
                )],
            ),
        ])
        .await;
        let args = [
            "env-var",
            "alias",
            "-p",
            "shop",
            "-e",
            "prod",
            "-a",
            "web",
            "DATABASE_URL=BERTH_DATABASE_MAIN_URL",
        ];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            DATABASE_URL on application "web" of environment "prod" of project "shop" now follows BERTH_DATABASE_MAIN_URL
        "#]]
        .assert_eq(&outcome.transcript());
        expect![[r#"
            [
                "{\"name\":\"DATABASE_URL\",\"value\":\"\",\"secret\":false,\"alias_of\":\"BERTH_DATABASE_MAIN_URL\"}",
            ]
        "#]]
        .assert_debug_eq(&stub.bodies("PUT"));

        let refused = run_cli(
            &stub.url,
            &["env-var", "alias", "-p", "shop", "DATABASE_URL=HOME"],
            "",
            Terminals::default(),
        )
        .await;
        expect![[r#"
            --- stderr
            error: DATABASE_URL can follow a database's built-in variable (BERTH_DATABASE_<NAME>_URL, _HOST, _PORT, _USER, _PASSWORD, _NAME), not HOME
            --- failed
        "#]]
        .assert_eq(&refused.transcript());

        let reserved = run_cli(
            &stub.url,
            &["env-var", "alias", "-p", "shop", "BERTH_X=BERTH_DATABASE_MAIN_URL"],
            "",
            Terminals::default(),
        )
        .await;
        assert!(reserved.stderr.contains("\"BERTH_X\" is reserved"), "{}", reserved.stderr);
        assert_eq!(stub.bodies("PUT").len(), 2, "nothing sent for a reserved name");

        let json = run_cli(
            &stub.url,
            &[&args[..], &["--output", "json"]].concat(),
            "",
            Terminals::default(),
        )
        .await;
        let shown: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(shown["alias_of"], "BERTH_DATABASE_MAIN_URL");
    }

    #[tokio::test]
    async fn import_sets_every_line_or_nothing() {
        let stub = stub().await;
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.env");
        std::fs::write(&good, "# comment\nexport A=1\nB=\"two words\"\n\n").unwrap();
        let bad = dir.path().join("bad.env");
        std::fs::write(&bad, "A=1\nnot a variable\n").unwrap();

        let args = ["env-var", "import", "-p", "shop", "-e", "prod", "--secret", "--file"];
        let bad_args: Vec<&str> = args.iter().copied().chain([bad.to_str().unwrap()]).collect();
        let refused = run_cli(&stub.url, &bad_args, "", Terminals::default()).await;
        let transcript = refused.transcript().replace(dir.path().to_str().unwrap(), "$TMP");
        expect![[r#"
            --- stderr
            error: $TMP/bad.env, line 2: expected KEY=VALUE
            hint: fix that line and import again; nothing was set
            --- failed
        "#]]
        .assert_eq(&transcript);
        assert!(stub.bodies("PUT").is_empty());

        let good_args: Vec<&str> = args.iter().copied().chain([good.to_str().unwrap()]).collect();
        let imported = run_cli(&stub.url, &good_args, "", Terminals::default()).await;
        assert_eq!(
            imported.transcript(),
            "set 2 secrets on environment \"prod\" of project \"shop\": A, B\n"
        );
        expect![[r#"
            [
                "{\"name\":\"A\",\"value\":\"1\",\"secret\":true,\"alias_of\":null}",
                "{\"name\":\"B\",\"value\":\"two words\",\"secret\":true,\"alias_of\":null}",
            ]
        "#]]
        .assert_debug_eq(&stub.bodies("PUT"));
    }
}
