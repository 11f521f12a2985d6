//! Tests of the command line: what parses, what is refused with which message, and that
//! the definitions can be embedded in the `berth` binary's own parser.

use clap::CommandFactory;
use expect_test::{expect, Expect};

use super::*;

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))
}

fn check_error(args: &[&str], expected: Expect) {
    let error = parse(args).expect_err("should be refused");
    let rendered = error.to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .filter(|line| !line.trim().is_empty())
        .collect();
    expected.assert_eq(&message.join("\n"));
}

#[test]
fn global_flags_are_accepted_after_the_subcommand() {
    let cli = parse(&["project", "list", "--output", "json", "--url", "http://h:1"]).unwrap();
    assert_eq!(cli.global.output, OutputFormat::Json);
    assert_eq!(cli.global.url.as_deref(), Some("http://h:1"));
    assert!(matches!(cli.command, Command::Project(ProjectCommand::List)));
}

#[test]
fn application_create_from_git_with_every_option() {
    let cli = parse(&[
        "application",
        "create",
        "--project",
        "shop",
        "--environment",
        "prod",
        "web",
        "--git",
        "https://example.com/r.git",
        "--branch",
        "dev",
        "--root-path",
        "apps/web",
        "--dockerfile",
        "Dockerfile.prod",
        "--build-arg",
        "A=1",
        "--build-arg",
        "B=x=y",
        "--port",
        "3000",
        "--private",
        "--cpu",
        "0.5",
        "--memory",
        "256",
    ])
    .unwrap();
    let Command::Application(ApplicationCommand::Create(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!(args.source.build_args, [("A".into(), "1".into()), ("B".into(), "x=y".into())]);
    assert_eq!(args.runtime.port, Some(3000));
    assert_eq!(args.runtime.cpu, Some(0.5));
    assert!(args.runtime.private);
}

#[test]
fn bad_input_is_a_usage_error() {
    check_error(
        &["app", "create", "-p", "p", "-e", "e", "web"],
        expect![[r#"
            error: the following required arguments were not provided:
              <--git <URL>|--image <REF>>"#]],
    );
    check_error(
        &["app", "create", "-p", "p", "-e", "e", "web", "--git", "u", "--image", "i"],
        expect!["error: the argument '--git <URL>' cannot be used with '--image <REF>'"],
    );
    check_error(
        &["app", "create", "-p", "p", "-e", "e", "web", "--image", "i", "--branch", "b"],
        expect![[r#"
            error: the argument '--image <REF>' cannot be used with:
              --branch <BRANCH>
              --root-path <DIR>
              --dockerfile <PATH>
              --build-arg <K=V>
              --git-token-stdin
              --ssh-key-file <FILE>"#]],
    );
    check_error(
        &["app", "create", "-p", "p", "-e", "e", "w", "--git", "u", "--port", "0"],
        expect![[r#"
            error: invalid value '0' for '--port <PORT>': 0 is not in 1..=65535
            For more information, try '--help'."#]],
    );
    check_error(
        &["app", "create", "-p", "p", "-e", "e", "w", "--git", "u", "--cpu", "-1"],
        expect![[r#"
            error: invalid value '-1' for '--cpu <CORES>': expected a positive number of cores such as 0.5 or 2, got "-1"
            For more information, try '--help'."#]],
    );
    check_error(
        &["app", "create", "-p", "p", "-e", "e", "w", "--git", "u", "--cpu=0"],
        expect![[r#"
            error: invalid value '0' for '--cpu <CORES>': expected a positive number of cores such as 0.5 or 2, got "0"
            For more information, try '--help'."#]],
    );
    check_error(
        &["app", "create", "-p", "p", "-e", "e", "w", "--git", "u", "--build-arg", "noequals"],
        expect![[r#"
            error: invalid value 'noequals' for '--build-arg <K=V>': expected KEY=VALUE, got "noequals"
            For more information, try '--help'."#]],
    );
    check_error(
        &[
            "app",
            "create",
            "-p",
            "p",
            "-e",
            "e",
            "w",
            "--git",
            "u",
            "--git-token-stdin",
            "--ssh-key-file",
            "k",
        ],
        expect![
            "error: the argument '--git-token-stdin' cannot be used with '--ssh-key-file <FILE>'"
        ],
    );
    check_error(
        &["app", "update", "-p", "p", "-e", "e", "w", "--port", "80", "--no-port"],
        expect!["error: the argument '--port <PORT>' cannot be used with '--no-port'"],
    );
    check_error(
        &["app", "update", "-p", "p", "-e", "e", "w", "--private", "--public"],
        expect!["error: the argument '--private' cannot be used with '--public'"],
    );
    check_error(
        &["env-var", "list", "-p", "p", "--application", "a"],
        expect![[r#"
            error: the following required arguments were not provided:
              --environment <ENVIRONMENT>"#]],
    );
    check_error(
        &["--output", "yaml", "project", "list"],
        expect![[r#"
            error: invalid value 'yaml' for '--output <OUTPUT>'
              [possible values: table, json]
            For more information, try '--help'."#]],
    );
}

#[test]
fn logs_default_to_the_last_hundred_lines() {
    let cli = parse(&["logs", "-p", "p", "-e", "e", "-a", "web"]).unwrap();
    let Command::Logs(args) = cli.command else { panic!("wrong command") };
    assert_eq!(args.tail, 100);
    assert!(!args.follow);
}

#[test]
fn exec_takes_the_command_after_a_double_dash() {
    let cli = parse(&[
        "exec",
        "-p",
        "p",
        "-e",
        "e",
        "-a",
        "web",
        "--instance",
        "1",
        "--",
        "ls",
        "-l",
        "--color",
        "--url",
        "-p",
    ])
    .unwrap();
    let Command::Exec(args) = cli.command else { panic!("wrong command") };
    assert_eq!(args.command, ["ls", "-l", "--color", "--url", "-p"], "all of it is the command's");
    assert_eq!(args.instance, Some(1));
    assert_eq!(args.environment.project, "p");
    assert_eq!(cli.global.url, None);
    check_error(
        &["exec", "-p", "p", "-e", "e", "-a", "web"],
        expect![[r#"
            error: the following required arguments were not provided:
              <COMMAND>..."#]],
    );
    check_error(
        &["exec", "-p", "p", "-e", "e", "-a", "web", "ls"],
        expect!["error: unexpected argument 'ls' found"],
    );
    check_error(
        &["exec", "-p", "p", "-e", "e", "-a", "web", "--instance", "-1", "--", "ls"],
        expect![[r#"
            error: unexpected argument '-1' found
              tip: to pass '-1' as a value, use '-- -1'"#]],
    );
}

#[test]
fn rollback_cancel_and_history_of_one_application() {
    let cli = parse(&["rollback", "-p", "p", "-e", "e", "--to", "d1", "-w"]).unwrap();
    let Command::Rollback(args) = cli.command else { panic!("wrong command") };
    assert_eq!((args.to.as_str(), args.wait), ("d1", true));
    check_error(
        &["rollback", "-p", "p", "-e", "e"],
        expect![[r#"
            error: the following required arguments were not provided:
              --to <DEPLOYMENT_ID>"#]],
    );
    let cli = parse(&["deployment", "cancel", "d1"]).unwrap();
    assert!(
        matches!(cli.command, Command::Deployment(DeploymentCommand::Cancel(ref a)) if a.id == "d1")
    );
    let cli = parse(&["deployment", "list", "-p", "p", "-e", "e", "-a", "web"]).unwrap();
    let Command::Deployment(DeploymentCommand::List(args)) = cli.command else {
        panic!("wrong command")
    };
    assert_eq!(args.application.as_deref(), Some("web"));
}

#[test]
fn rollout_settings_parse_and_check_their_ranges() {
    let cli = parse(&[
        "app",
        "update",
        "-p",
        "p",
        "-e",
        "e",
        "web",
        "--instances",
        "3",
        "--health-path",
        "/healthz",
        "--health-interval",
        "0.5",
        "--drain",
        "10",
        "--no-release-command",
    ])
    .unwrap();
    let Command::Application(ApplicationCommand::Update(args)) = cli.command else {
        panic!("wrong command")
    };
    assert_eq!(args.runtime.instances, Some(3));
    assert!(args.no_release_command);
    let check = args.runtime.health_check_settings().unwrap();
    assert_eq!(check.kind.as_deref(), Some("http"), "a path implies an HTTP check");
    assert_eq!(check.interval_secs, Some(0.5));
    check_error(
        &["app", "update", "-p", "p", "-e", "e", "w", "--instances", "21"],
        expect![[r#"
            error: invalid value '21' for '--instances <N>': 21 is not in 1..=20
            For more information, try '--help'."#]],
    );
    check_error(
        &["app", "update", "-p", "p", "-e", "e", "w", "--health-check", "udp"],
        expect![[r#"
            error: invalid value 'udp' for '--health-check <KIND>'
              [possible values: tcp, http]
            For more information, try '--help'."#]],
    );
    check_error(
        &["app", "update", "-p", "p", "-e", "e", "w", "--release-command", "x", "--no-release-command"],
        expect!["error: the argument '--release-command <COMMAND>' cannot be used with '--no-release-command'"],
    );
}

#[test]
fn env_var_set_takes_a_single_assignment() {
    let cli = parse(&["env-var", "set", "-p", "p", "-e", "e", "--secret", "TOKEN"]).unwrap();
    let Command::EnvVar(EnvVarCommand::Set(args)) = cli.command else { panic!("wrong command") };
    assert!(args.secret);
    assert_eq!(args.assignment, "TOKEN");
    assert_eq!(args.scope.environment.as_deref(), Some("e"));
}

/// The shape the `berth` binary uses: its own `server` and `proxy` next to these commands.
#[derive(Debug, Parser)]
#[command(name = "berth")]
struct Binary {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: BinaryCommand,
}

#[derive(Debug, Subcommand)]
enum BinaryCommand {
    /// Run the server.
    Server {
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run the edge proxy.
    Proxy,
    // Boxed: `Command` is large next to `Proxy` (clippy's large_enum_variant).
    #[command(flatten)]
    Cli(Box<Command>),
}

#[test]
fn commands_embed_in_the_binarys_parser() {
    Binary::command().debug_assert();
    let parsed = Binary::try_parse_from(["berth", "server", "--listen", "0.0.0.0:8080"]).unwrap();
    assert!(matches!(parsed.command, BinaryCommand::Server { .. }));
    let parsed =
        Binary::try_parse_from(["berth", "status", "-p", "a", "-e", "b", "-o", "json"]).unwrap();
    assert!(
        matches!(parsed.command, BinaryCommand::Cli(command) if matches!(*command, Command::Status(_)))
    );
    assert_eq!(parsed.global.output, OutputFormat::Json);
    assert!(matches!(
        Binary::try_parse_from(["berth", "proxy"]).unwrap().command,
        BinaryCommand::Proxy
    ));
}

#[test]
fn top_level_help() {
    let help = Cli::command().render_help().to_string();
    expect![[r#"
        Berth's command-line client: talks to a Berth server's REST API

        Usage: berth [OPTIONS] <COMMAND>

        Commands:
          login        Check a token against a server and save both in the config file
          project      Create, list, update and delete projects
          webhook      Show the Git webhook URLs and secret of a project, rotate it, list deliveries
          environment  Create, list and delete environments of a project [alias: env]
          application  Create, change, inspect and delete applications [alias: app]
          env-var      Set, list, import and delete environment variables and secrets
          database     Create, list, back up, restore, clone and delete the databases of an environment [alias: db]
          deploy       Deploy an environment (or one of its applications)
          rollback     Deploy an earlier successful deployment again: its images and its configuration
          deployment   List, inspect and cancel deployments and read their logs
          status       Show the applications of an environment: status, instances, URL, commit, restarts
          logs         Show (or follow) the runtime logs of an application
          exec         Run a one-off command in a new container of an application's current image
          apply        Create or update a project from a spec file (berth.toml), printing the diff first
          export       Write the spec file (berth.toml) of an existing project
          import       Convert another tool's configuration into a spec file
          help         Print this message or the help of the given subcommand(s)

        Options:
              --url <URL>        URL of the Berth server [default: the URL saved by `berth login`, else http://127.0.0.1:8080] [env: BERTH_URL]
              --token <TOKEN>    API token [default: the token saved by `berth login`, else the admin token of the local server's data directory] [env: BERTH_TOKEN]
          -o, --output <OUTPUT>  Output format: aligned tables for people, or the API's JSON for scripts [default: table] [possible values: table, json]
          -h, --help             Print help
          -V, --version          Print version
    "#]].assert_eq(&help);
}

#[test]
fn application_create_help() {
    let mut command = Cli::command();
    let help = command
        .find_subcommand_mut("application")
        .and_then(|c| c.find_subcommand_mut("create"))
        .map(|c| c.render_help().to_string())
        .unwrap();
    expect![[r#"
        Create an application from a Git repository (`--git`) or an image (`--image`)

        Usage: create [OPTIONS] --project <PROJECT> --environment <ENVIRONMENT> <--git <URL>|--image <REF>> <NAME>

        Arguments:
          <NAME>  Application name

        Options:
          -p, --project <PROJECT>          Project name
          -e, --environment <ENVIRONMENT>  Environment name
              --git <URL>                  Git repository URL (https://, ssh://, user@host:path)
              --image <REF>                Container image reference to run instead of building
              --branch <BRANCH>            Git branch to build [default: the environment's branch]
              --root-path <DIR>            Directory of the build context inside the repository [default: .]
              --dockerfile <PATH>          Dockerfile path relative to the root path [default: Dockerfile]
              --build-arg <K=V>            Docker build argument (repeatable; on `update`, replaces all build arguments)
              --git-token-stdin            Read an HTTPS access token for a private repository from standard input
              --ssh-key-file <FILE>        OpenSSH private key (deploy key) for a private repository reached over SSH
              --port <PORT>                Port the application listens on (omit for a worker without a route)
              --private                    Give the application no public URL
              --cpu <CORES>                CPU limit in cores, e.g. 0.5
              --memory <MB>                Memory limit in MiB
              --instances <N>              Number of instances the proxy balances across (1 to 20)
              --health-check <KIND>        Health check kind: `tcp` (the port accepts connections; the default) or `http` [possible values: tcp, http]
              --health-path <PATH>         HTTP health check path, e.g. /healthz (implies --health-check http)
              --health-status <RANGE>      Accepted HTTP statuses of the health check, e.g. 200-399
              --health-start-delay <SECS>  Seconds to wait after start before the first health check
              --health-interval <SECS>     Seconds between health checks
              --health-timeout <SECS>      Seconds one health check may take
              --health-threshold <N>       Consecutive failed checks that take an instance out of rotation
              --release-command <COMMAND>  Command run once in a one-off container of the new image before traffic switches (e.g. database migrations); its failure fails the deployment
              --drain <SECS>               Seconds old instances keep finishing in-flight requests after traffic moves
              --volume <NAME:/PATH>        A persistent volume mounted in every instance, kept across deployments (repeatable). On update, the list given replaces the current one
              --size <GB>                  Size in GB accounted for the volumes given with --volume (default 1)
              --auto-deploy <true|false>   Whether a push to the followed branch deploys the application (Git webhooks and polling); default true [possible values: true, false]
              --depends-on <NAME[,NAME]>   Applications or databases of the environment deployed before this one, comma-separated (on update, replaces the list; "" removes it)
              --watch-paths <GLOB[,GLOB]>  Globs relative to the repository root whose changes redeploy the application on a push, comma-separated; `!` excludes, e.g. 'services/api/**,!**/*.md' [default: its root path] (on update, "" goes back to the default)
          -h, --help                       Print help
    "#]].assert_eq(&help);
}

#[test]
fn database_create_and_alias_parse() {
    let cli = parse(&[
        "db",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "main",
        "--engine",
        "mysql",
        "--version",
        "10.11",
        "--storage",
        "8",
    ])
    .unwrap();
    let Command::Database(DatabaseCommand::Create(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!((args.engine.as_str(), args.version.as_deref()), ("mysql", Some("10.11")));
    assert_eq!((args.storage, args.mode, args.external_url), (Some(8), None, None));
    // `--url` stays the Berth server's URL, also after `database create`.
    let cli = parse(&[
        "db",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "main",
        "--engine",
        "redis",
        "--url",
        "http://berth:8080",
        "--external-url",
        "redis://:pw@cache:6379/0",
    ])
    .unwrap();
    assert_eq!(cli.global.url.as_deref(), Some("http://berth:8080"));
    let Command::Database(DatabaseCommand::Create(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!(args.external_url.as_deref(), Some("redis://:pw@cache:6379/0"));

    let cli = parse(&[
        "env-var",
        "alias",
        "-p",
        "shop",
        "-e",
        "prod",
        "DATABASE_URL=BERTH_DATABASE_MAIN_URL",
    ])
    .unwrap();
    let Command::EnvVar(EnvVarCommand::Alias(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!(args.assignment, ("DATABASE_URL".into(), "BERTH_DATABASE_MAIN_URL".into()));
}

#[test]
fn bad_database_input_is_a_usage_error() {
    let create = ["database", "create", "-p", "p", "-e", "e", "main"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        create.iter().copied().chain(extra.iter().copied()).collect()
    };
    check_error(
        &create,
        expect![[r#"
            error: the following required arguments were not provided:
              --engine <ENGINE>"#]],
    );
    check_error(
        &with(&["--engine", "oracle"]),
        expect![[r#"
            error: invalid value 'oracle' for '--engine <ENGINE>'
              [possible values: postgresql, mariadb, mysql, redis]
            For more information, try '--help'."#]],
    );
    check_error(
        &with(&["--engine", "redis", "--mode", "managed"]),
        expect![[r#"
            error: invalid value 'managed' for '--mode <MODE>'
              [possible values: container, external]
            For more information, try '--help'."#]],
    );
    check_error(
        &with(&["--engine", "redis", "--storage", "0"]),
        expect![[r#"
            error: invalid value '0' for '--storage <GB>': 0 is not in 1..=16384
            For more information, try '--help'."#]],
    );
    check_error(
        &with(&["--engine", "redis", "--external-url", "redis://:x@h", "--external-url-stdin"]),
        expect![
            "error: the argument '--external-url <URL>' cannot be used with '--external-url-stdin'"
        ],
    );
    check_error(
        &["env-var", "alias", "-p", "p", "DATABASE_URL"],
        expect![[r#"
            error: invalid value 'DATABASE_URL' for '<NAME=TARGET>': expected KEY=VALUE, got "DATABASE_URL"
            For more information, try '--help'."#]],
    );
}

#[test]
fn database_backup_restore_and_clone_parse() {
    let cli = parse(&["db", "backup", "-p", "shop", "-e", "prod", "main"]).unwrap();
    assert!(
        matches!(cli.command, Command::Database(DatabaseCommand::Backup(ref args)) if args.name == "main")
    );
    let cli = parse(&["db", "backups", "-p", "shop", "-e", "prod", "main"]).unwrap();
    assert!(matches!(cli.command, Command::Database(DatabaseCommand::Backups(_))));

    let cli = parse(&["db", "restore", "-p", "shop", "-e", "prod", "main", "--backup", "b1", "-y"])
        .unwrap();
    let Command::Database(DatabaseCommand::Restore(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!((args.database.name.as_str(), args.backup.as_str()), ("main", "b1"));
    assert!(args.confirm.yes);

    let cli = parse(&[
        "db",
        "clone",
        "-p",
        "shop",
        "-e",
        "prod",
        "main",
        "main-copy",
        "--to-environment",
        "staging",
    ])
    .unwrap();
    let Command::Database(DatabaseCommand::Clone(args)) = cli.command else {
        panic!("wrong command");
    };
    assert_eq!((args.source.as_str(), args.new.as_str()), ("main", "main-copy"));
    assert_eq!(args.to_environment.as_deref(), Some("staging"));

    let cli =
        parse(&["db", "delete", "-p", "shop", "-e", "prod", "main", "--final-backup", "--yes"])
            .unwrap();
    let Command::Database(DatabaseCommand::Delete(args)) = cli.command else {
        panic!("wrong command");
    };
    assert!(args.final_backup && args.confirm.yes);
    let cli = parse(&["db", "delete", "-p", "shop", "-e", "prod", "main"]).unwrap();
    let Command::Database(DatabaseCommand::Delete(args)) = cli.command else {
        panic!("wrong command");
    };
    assert!(!args.final_backup);

    check_error(
        &["db", "restore", "-p", "shop", "-e", "prod", "main"],
        expect![[r#"
            error: the following required arguments were not provided:
              --backup <ID>"#]],
    );
    check_error(
        &["db", "clone", "-p", "shop", "-e", "prod", "main"],
        expect![[r#"
            error: the following required arguments were not provided:
              <NEW>"#]],
    );
}
