//! `berth database` against the stand-in server: the bodies sent, the tables and fields
//! shown, the server's refusals, and the confirmation of `delete`.

use expect_test::expect;
use serde_json::json;

use crate::commands::testing::run_cli;
use crate::output::Terminals;
use crate::test_server::{Reply, StubServer};

const DATABASES: &str = "/api/v1/projects/shop/environments/prod/databases";

fn database(name: &str, engine: &str, mode: &str, status: &str) -> serde_json::Value {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    let (version, port, user, url, storage) = match (engine, mode) {
        (_, "external") => {
            ("15", 5432, "app", "postgresql://app:********@db.example:5432/app", None)
        }
        ("redis", _) => ("7.0", 6379, "default", "redis://default:********@cache:6379/0", Some(1)),
        _ => ("15", 5432, "main", "postgresql://main:********@main:5432/main", Some(4)),
    };
    let host = if mode == "external" { "db.example".to_owned() } else { name.to_owned() };
    let variables: Vec<String> = ["URL", "HOST", "PORT", "USER", "PASSWORD", "NAME"]
        .iter()
        .map(|field| format!("BERTH_DATABASE_{upper}_{field}"))
        .collect();
    json!({
        "id": format!("{name}-id"), "project": "shop", "environment": "prod", "name": name,
        "engine": engine, "version": version, "mode": mode, "storage_gb": storage,
        "host": host, "port": port, "user": user, "database": user, "url": url,
        "variables": variables, "status": status,
        "runtime_status": if mode == "external" { "external" } else { "running" },
        "created_at": "2024-05-01T10:00:00Z",
    })
}

fn refusal(status: u16, code: &str, message: &str) -> Reply {
    Reply::value(status, &json!({"error": {"code": code, "message": message}}))
}

async fn stub() -> StubServer {
    let post = format!("POST {DATABASES}");
    let list = format!("GET {DATABASES}");
    let show = format!("GET {DATABASES}/main");
    StubServer::start(vec![
        (
            post.as_str(),
            vec![Reply::value(201, &database("main", "postgresql", "container", "active"))],
        ),
        (
            list.as_str(),
            vec![Reply::value(
                200,
                &json!([
                    database("main", "postgresql", "container", "active"),
                    database("cache", "redis", "container", "deleting"),
                    database("legacy-db", "postgresql", "external", "active"),
                ]),
            )],
        ),
        (
            show.as_str(),
            vec![Reply::value(200, &database("main", "postgresql", "container", "active"))],
        ),
        ("GET /api/v1/projects/shop/environments/empty/databases", vec![Reply::json(200, "[]")]),
    ])
    .await
}

fn pretty(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    serde_json::to_string_pretty(&value).unwrap() + "\n"
}

#[tokio::test]
async fn create_a_container_database() {
    let stub = stub().await;
    let args = [
        "database",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "main",
        "--engine",
        "postgresql",
        "--version",
        "15",
        "--storage",
        "4",
    ];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    expect![[r#"
        created database main (postgresql 15, container) in environment prod of project shop
        applications of the environment receive BERTH_DATABASE_MAIN_URL, _HOST, _PORT, _USER, _PASSWORD and _NAME
        to give one the name it expects: berth env-var alias --project shop --environment prod DATABASE_URL=BERTH_DATABASE_MAIN_URL
        it starts with the environment's next deployment, before the applications: berth deploy --project shop --environment prod --wait
    "#]]
    .assert_eq(&outcome.transcript());
    expect![[r#"
        {
          "engine": "postgresql",
          "mode": null,
          "name": "main",
          "storage_gb": 4,
          "url": null,
          "version": "15"
        }
    "#]]
    .assert_eq(&pretty(&stub.bodies("POST")[0]));
}

#[tokio::test]
async fn an_external_url_is_read_from_stdin_and_never_printed() {
    let secret_url = "postgresql://app:hunter2@db.example:5432/app";
    let stub = StubServer::start(vec![(
        "POST /api/v1/projects/shop/environments/prod/databases",
        vec![Reply::value(201, &database("legacy", "postgresql", "external", "active"))],
    )])
    .await;
    let args = [
        "db",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "legacy",
        "--engine",
        "postgresql",
        "--mode",
        "external",
        "--external-url-stdin",
    ];
    let outcome = run_cli(&stub.url, &args, &format!("{secret_url}\n"), Terminals::default()).await;
    expect![[r#"
        created database legacy (postgresql 15, external) in environment prod of project shop
        applications of the environment receive BERTH_DATABASE_LEGACY_URL, _HOST, _PORT, _USER, _PASSWORD and _NAME
        to give one the name it expects: berth env-var alias --project shop --environment prod DATABASE_URL=BERTH_DATABASE_LEGACY_URL
        applications get its variables with their next deployment: berth deploy --project shop --environment prod --wait
    "#]]
    .assert_eq(&outcome.transcript());
    let body: serde_json::Value = serde_json::from_str(&stub.bodies("POST")[0]).unwrap();
    assert_eq!((&body["mode"], &body["url"]), (&json!("external"), &json!(secret_url)));
    assert_eq!(body["storage_gb"], serde_json::Value::Null);

    // The same with --external-url, which implies --mode external; the JSON output is the
    // server's (masked) answer.
    let args = [
        "db",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "legacy",
        "--engine",
        "postgresql",
        "--external-url",
        secret_url,
        "-o",
        "json",
    ];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    assert!(outcome.success, "{}", outcome.transcript());
    assert!(!outcome.transcript().contains("hunter2"), "{}", outcome.transcript());
    let shown: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(shown["url"], "postgresql://app:********@db.example:5432/app");
    let body: serde_json::Value = serde_json::from_str(&stub.bodies("POST")[1]).unwrap();
    assert_eq!((&body["mode"], &body["url"]), (&json!("external"), &json!(secret_url)));
}

#[tokio::test]
async fn the_servers_refusals_are_shown_as_they_are() {
    let stub = StubServer::start(vec![(
        "POST /api/v1/projects/shop/environments/prod/databases",
        vec![
            refusal(422, "invalid", "database version \"latest\" is not valid: use digits and dots, e.g. 15 or 10.11"),
            refusal(422, "invalid", "an external database needs its URL, e.g. --url postgresql://user:password@host:5432/name"),
            refusal(409, "conflict", "an application named \"web\" exists in this environment; services share one namespace, choose another name"),
        ],
    )])
    .await;
    let mut transcripts = String::new();
    for extra in [&["--version", "latest"][..], &["--mode", "external"], &[]] {
        let mut args =
            vec!["database", "create", "-p", "shop", "-e", "prod", "web", "--engine", "postgresql"];
        args.extend(extra);
        transcripts
            .push_str(&run_cli(&stub.url, &args, "", Terminals::default()).await.transcript());
    }
    expect![[r#"
        --- stderr
        error: database version "latest" is not valid: use digits and dots, e.g. 15 or 10.11
        --- failed
        --- stderr
        error: an external database needs its URL, e.g. --url postgresql://user:password@host:5432/name
        --- failed
        --- stderr
        error: an application named "web" exists in this environment; services share one namespace, choose another name
        --- failed
    "#]]
    .assert_eq(&transcripts);
}

#[tokio::test]
async fn empty_url_on_stdin_is_refused_before_sending() {
    let stub = StubServer::start(vec![]).await;
    let args = [
        "database",
        "create",
        "-p",
        "shop",
        "-e",
        "prod",
        "x",
        "--engine",
        "redis",
        "--mode",
        "external",
        "--external-url-stdin",
    ];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    expect![[r#"
        --- stderr
        error: no URL on standard input
        --- failed
    "#]]
    .assert_eq(&outcome.transcript());
    assert_eq!(stub.request_lines(), "");
}

#[tokio::test]
async fn list_and_show() {
    let stub = stub().await;
    let list = run_cli(
        &stub.url,
        &["database", "list", "-p", "shop", "-e", "prod"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        NAME        ENGINE          MODE        STATUS     ADDRESS           VARIABLES
        main        postgresql 15   container   running    main:5432         BERTH_DATABASE_MAIN_*
        cache       redis 7.0       container   deleting   cache:6379        BERTH_DATABASE_CACHE_*
        legacy-db   postgresql 15   external    external   db.example:5432   BERTH_DATABASE_LEGACY_DB_*
    "#]]
    .assert_eq(&list.transcript());
    let empty = run_cli(
        &stub.url,
        &["database", "list", "-p", "shop", "-e", "empty"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        no databases in environment empty of project shop yet: create one with `berth database create --project shop --environment empty NAME --engine postgresql`
    "#]]
    .assert_eq(&empty.transcript());
    let json = run_cli(
        &stub.url,
        &["database", "list", "-p", "shop", "-e", "prod", "--output", "json"],
        "",
        Terminals::default(),
    )
    .await;
    let listed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3));

    let show = run_cli(
        &stub.url,
        &["database", "show", "-p", "shop", "-e", "prod", "main"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        name:            main
        project:         shop
        environment:     prod
        engine:          postgresql 15
        mode:            container
        status:          running
        storage:         4 GB
        host:            main
        port:            5432
        user:            main
        database:        main
        url:             postgresql://main:********@main:5432/main
        variables:       BERTH_DATABASE_MAIN_URL, BERTH_DATABASE_MAIN_HOST, BERTH_DATABASE_MAIN_PORT, BERTH_DATABASE_MAIN_USER, BERTH_DATABASE_MAIN_PASSWORD, BERTH_DATABASE_MAIN_NAME
        backup schedule: none (manual backups only)
        id:              main-id
        created:         2024-05-01 10:00:00
    "#]]
    .assert_eq(&show.transcript());
}

#[tokio::test]
async fn delete_with_yes_waits_until_the_database_is_gone() {
    let path = format!("{DATABASES}/main");
    let (delete_key, get_key) = (format!("DELETE {path}"), format!("GET {path}"));
    let stub = StubServer::start(vec![
        (
            delete_key.as_str(),
            vec![Reply::value(202, &database("main", "postgresql", "container", "deleting"))],
        ),
        (
            get_key.as_str(),
            vec![
                Reply::value(200, &database("main", "postgresql", "container", "deleting")),
                Reply::not_found("database \"main\" does not exist in shop/prod"),
            ],
        ),
    ])
    .await;
    let outcome = run_cli(
        &stub.url,
        &["database", "delete", "-p", "shop", "-e", "prod", "main", "--yes"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        deleted database main
        --- stderr
        deleting database "main"...
    "#]]
    .assert_eq(&outcome.transcript());
    expect![[r#"
        DELETE /api/v1/projects/shop/environments/prod/databases/main
        GET /api/v1/projects/shop/environments/prod/databases/main (x2)
    "#]]
    .assert_eq(&stub.request_lines());
}

#[tokio::test]
async fn delete_without_yes_and_without_a_terminal_sends_nothing() {
    let stub = StubServer::start(vec![]).await;
    let outcome = run_cli(
        &stub.url,
        &["database", "delete", "-p", "shop", "-e", "prod", "main"],
        "y\n",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        --- stderr
        error: refusing to delete without confirmation: pass --yes
        hint: standard input is not a terminal, so there is no one to ask
        --- failed
    "#]]
    .assert_eq(&outcome.transcript());
    assert_eq!(stub.request_lines(), "");
}

#[tokio::test]
async fn on_a_terminal_the_question_says_the_data_is_deleted() {
    let path = format!("{DATABASES}/main");
    let external = format!("{DATABASES}/legacy");
    let (get_main, get_external) = (format!("GET {path}"), format!("GET {external}"));
    let delete_main = format!("DELETE {path}");
    let stub = StubServer::start(vec![
        (
            get_main.as_str(),
            vec![
                Reply::value(200, &database("main", "postgresql", "container", "active")),
                Reply::value(200, &database("main", "postgresql", "container", "active")),
                Reply::not_found("gone"),
            ],
        ),
        (
            get_external.as_str(),
            vec![Reply::value(200, &database("legacy", "postgresql", "external", "active"))],
        ),
        (
            delete_main.as_str(),
            vec![Reply::value(202, &database("main", "postgresql", "container", "deleting"))],
        ),
    ])
    .await;
    let terminal = Terminals { stdin: true, stderr: false };
    let args = ["database", "delete", "-p", "shop", "-e", "prod", "main"];
    let declined = run_cli(&stub.url, &args, "n\n", terminal).await;
    expect![[r#"
        --- stderr
        Delete database "main" (postgresql 15) of environment "prod" in project "shop"? Its volume and ALL ITS DATA are deleted; this cannot be undone. [y/N] error: cancelled: database "main" was not deleted
        --- failed
    "#]]
    .assert_eq(&declined.transcript());
    let external_declined = run_cli(
        &stub.url,
        &["database", "delete", "-p", "shop", "-e", "prod", "legacy"],
        "\n",
        terminal,
    )
    .await;
    expect![[r#"
        --- stderr
        Delete database "legacy" (postgresql 15) of environment "prod" in project "shop"? Berth forgets it and its variables; the external server and its data are not touched. [y/N] error: cancelled: database "legacy" was not deleted
        --- failed
    "#]]
    .assert_eq(&external_declined.transcript());
    assert!(!stub.request_lines().contains("DELETE"), "{}", stub.request_lines());

    let accepted = run_cli(&stub.url, &args, "yes\n", terminal).await;
    assert!(accepted.success, "{}", accepted.transcript());
    assert_eq!(accepted.stdout, "deleted database main\n");
}

#[tokio::test]
async fn deleting_a_database_that_does_not_exist_on_a_terminal_asks_nothing() {
    let stub = StubServer::start(vec![(
        "GET /api/v1/projects/shop/environments/prod/databases/nope",
        vec![Reply::not_found(
            "database \"nope\" does not exist in shop/prod; list them with `berth database list`",
        )],
    )])
    .await;
    let terminal = Terminals { stdin: true, stderr: false };
    let outcome = run_cli(
        &stub.url,
        &["database", "delete", "-p", "shop", "-e", "prod", "nope"],
        "y\n",
        terminal,
    )
    .await;
    expect![[r#"
        --- stderr
        error: database "nope" does not exist in shop/prod; list them with `berth database list`
        --- failed
    "#]]
    .assert_eq(&outcome.transcript());
}

fn backup(id: &str, reason: &str, created_at: &str, size: u64) -> serde_json::Value {
    json!({
        "id": id, "database": "main",
        "path": format!("/var/lib/berth/backups/main-id/{id}.pgdump"),
        "size_bytes": size,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "reason": reason, "created_at": created_at,
    })
}

const BACKUP_ID: &str = "0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a";

#[tokio::test]
async fn backup_prints_the_id_the_size_and_the_path() {
    let stub = StubServer::start(vec![(
        "POST /api/v1/projects/shop/environments/prod/databases/main/backups",
        vec![Reply::value(201, &backup(BACKUP_ID, "manual", "2024-05-01T10:00:00Z", 1_258_291))],
    )])
    .await;
    let args = ["database", "backup", "-p", "shop", "-e", "prod", "main"];
    let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
    expect![[r#"
        backed up database main
        backup:  0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a
        size:    1.2 MiB (1258291 bytes)
        path:    /var/lib/berth/backups/main-id/0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a.pgdump
        sha256:  9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        created: 2024-05-01 10:00:00
        restore it with: berth database restore --project shop --environment prod main --backup 0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a
        --- stderr
        backing up database "main"...
    "#]]
    .assert_eq(&outcome.transcript());
    // No body: the server takes the backup of the database named in the path.
    expect![[r#"
        POST /api/v1/projects/shop/environments/prod/databases/main/backups
        authorization: Bearer t0ken
    "#]]
    .assert_eq(&stub.requests_text());

    let json =
        run_cli(&stub.url, &[&args[..], &["-o", "json"]].concat(), "", Terminals::default()).await;
    let printed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(printed["path"], format!("/var/lib/berth/backups/main-id/{BACKUP_ID}.pgdump"));
    assert_eq!(printed["size_bytes"], 1_258_291);
}

#[tokio::test]
async fn a_backup_the_server_cannot_take_is_explained() {
    let stub = StubServer::start(vec![(
        "POST /api/v1/projects/shop/environments/prod/databases/main/backups",
        vec![refusal(
            409,
            "conflict",
            "the database container berth-shop-prod-main-db is not running; deploy the environment first",
        )],
    )])
    .await;
    let outcome = run_cli(
        &stub.url,
        &["db", "backup", "-p", "shop", "-e", "prod", "main"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        --- stderr
        backing up database "main"...
        error: the database container berth-shop-prod-main-db is not running; deploy the environment first
        --- failed
    "#]]
    .assert_eq(&outcome.transcript());
}

#[tokio::test]
async fn backups_are_listed_newest_first_with_a_short_checksum() {
    let stub = StubServer::start(vec![
        (
            "GET /api/v1/projects/shop/environments/prod/databases/main/backups",
            vec![Reply::value(
                200,
                &json!([
                    backup(BACKUP_ID, "final", "2024-05-02T08:30:00Z", 2 << 30),
                    backup(
                        "5d1c0f3e-8b2a-4c6d-9e7f-1a2b3c4d5e6f",
                        "manual",
                        "2024-05-01T10:00:00Z",
                        900
                    ),
                ]),
            )],
        ),
        (
            "GET /api/v1/projects/shop/environments/prod/databases/fresh/backups",
            vec![Reply::json(200, "[]")],
        ),
    ])
    .await;
    let listed = run_cli(
        &stub.url,
        &["database", "backups", "-p", "shop", "-e", "prod", "main"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        ID                                     CREATED               SIZE      TRIGGER   STORE   SHA256
        0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a   2024-05-02 08:30:00   2.0 GiB   final             9f86d081884c
        5d1c0f3e-8b2a-4c6d-9e7f-1a2b3c4d5e6f   2024-05-01 10:00:00   900 B     manual            9f86d081884c
    "#]]
    .assert_eq(&listed.transcript());
    let empty = run_cli(
        &stub.url,
        &["database", "backups", "-p", "shop", "-e", "prod", "fresh"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        no backups of database fresh yet: take one with `berth database backup --project shop --environment prod fresh`
    "#]]
    .assert_eq(&empty.transcript());
}

#[tokio::test]
async fn restore_with_yes_announces_what_it_replaces() {
    let stub = StubServer::start(vec![(
        "POST /api/v1/projects/shop/environments/prod/databases/main/restore",
        vec![Reply::value(200, &backup(BACKUP_ID, "manual", "2024-05-01T10:00:00Z", 4096))],
    )])
    .await;
    let args = ["database", "restore", "-p", "shop", "-e", "prod", "main", "--backup", BACKUP_ID];
    let outcome =
        run_cli(&stub.url, &[&args[..], &["--yes"]].concat(), "", Terminals::default()).await;
    expect![[r#"
        restored database main from backup 0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a (taken 2024-05-01 10:00:00, 4.0 KiB)
        --- stderr
        restoring database "main" of environment "prod" in project "shop" from backup 0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a: its current data is replaced by the backup's
    "#]]
    .assert_eq(&outcome.transcript());
    expect![[r#"
        POST /api/v1/projects/shop/environments/prod/databases/main/restore
        authorization: Bearer t0ken
        {"backup":"0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a"}
    "#]]
    .assert_eq(&stub.requests_text());
}

#[tokio::test]
async fn restore_without_yes_and_without_a_terminal_sends_nothing() {
    let stub = StubServer::start(vec![]).await;
    let outcome = run_cli(
        &stub.url,
        &["database", "restore", "-p", "shop", "-e", "prod", "main", "--backup", BACKUP_ID],
        "y\n",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        --- stderr
        error: refusing to restore without confirmation: pass --yes
        hint: standard input is not a terminal, so there is no one to ask
        --- failed
    "#]]
    .assert_eq(&outcome.transcript());
    assert_eq!(stub.request_lines(), "");
}

#[tokio::test]
async fn on_a_terminal_restore_names_the_database_and_the_backup() {
    let database_path = format!("GET {DATABASES}/main");
    let backups_path = format!("GET {DATABASES}/main/backups");
    let restore_path = format!("POST {DATABASES}/main/restore");
    let stub = StubServer::start(vec![
        (
            database_path.as_str(),
            vec![Reply::value(200, &database("main", "postgresql", "container", "active"))],
        ),
        (
            backups_path.as_str(),
            vec![Reply::value(
                200,
                &json!([backup(BACKUP_ID, "manual", "2024-05-01T10:00:00Z", 4096)]),
            )],
        ),
        (
            restore_path.as_str(),
            vec![Reply::value(200, &backup(BACKUP_ID, "manual", "2024-05-01T10:00:00Z", 4096))],
        ),
    ])
    .await;
    let terminal = Terminals { stdin: true, stderr: false };
    let args = ["database", "restore", "-p", "shop", "-e", "prod", "main", "--backup", BACKUP_ID];
    let declined = run_cli(&stub.url, &args, "n\n", terminal).await;
    expect![[r#"
        --- stderr
        Restore database "main" (postgresql 15) of environment "prod" in project "shop" from backup 0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a (manual, taken 2024-05-01 10:00:00, 4.0 KiB)? Its current data is replaced by the backup's: what changed since then is lost. Applications keep running and see the restored data. [y/N] error: cancelled: database "main" was not restored
        --- failed
    "#]]
    .assert_eq(&declined.transcript());
    assert!(!stub.request_lines().contains("POST"), "{}", stub.request_lines());

    // An unknown backup is reported before anyone is asked.
    let unknown = run_cli(
        &stub.url,
        &["database", "restore", "-p", "shop", "-e", "prod", "main", "--backup", "nope"],
        "y\n",
        terminal,
    )
    .await;
    expect![[r#"
        --- stderr
        error: backup "nope" of database "main" does not exist
        hint: list them with `berth database backups --project shop --environment prod main`
        --- failed
    "#]]
    .assert_eq(&unknown.transcript());
    assert!(!stub.request_lines().contains("POST"), "{}", stub.request_lines());

    let accepted = run_cli(&stub.url, &args, "y\n", terminal).await;
    assert!(accepted.success, "{}", accepted.transcript());
    assert!(
        accepted.stderr.ends_with("[y/N] restoring database \"main\"...\n"),
        "{}",
        accepted.stderr
    );
    assert_eq!(
        accepted.stdout,
        format!(
            "restored database main from backup {BACKUP_ID} (taken 2024-05-01 10:00:00, 4.0 KiB)\n"
        )
    );
    assert_eq!(stub.bodies("POST"), [format!(r#"{{"backup":"{BACKUP_ID}"}}"#)]);
}

#[tokio::test]
async fn a_damaged_backup_is_refused_with_the_servers_message() {
    let message = format!(
        "backup {BACKUP_ID} is damaged: its checksum does not match the one recorded when it was taken"
    );
    let stub = StubServer::start(vec![(
        "POST /api/v1/projects/shop/environments/prod/databases/main/restore",
        vec![refusal(409, "conflict", &message)],
    )])
    .await;
    let outcome = run_cli(
        &stub.url,
        &["database", "restore", "-p", "shop", "-e", "prod", "main", "--backup", BACKUP_ID, "-y"],
        "",
        Terminals::default(),
    )
    .await;
    assert!(!outcome.success);
    assert_eq!(outcome.stdout, "");
    assert!(outcome.stderr.ends_with(&format!("error: {message}\n")), "{}", outcome.stderr);
}

#[tokio::test]
async fn clone_sends_the_new_name_and_the_target_environment() {
    let clone_path = format!("POST {DATABASES}/main/clone");
    let mut copy = database("copy", "postgresql", "container", "active");
    copy["environment"] = json!("staging");
    let stub = StubServer::start(vec![(clone_path.as_str(), vec![Reply::value(201, &copy)])]).await;
    let outcome = run_cli(
        &stub.url,
        &[
            "database",
            "clone",
            "-p",
            "shop",
            "-e",
            "prod",
            "main",
            "copy",
            "--to-environment",
            "staging",
        ],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        cloned database main into copy (postgresql 15) in environment staging of project shop, with its own credentials
        applications of the environment receive BERTH_DATABASE_COPY_URL, _HOST, _PORT, _USER, _PASSWORD and _NAME with their next deployment: berth deploy --project shop --environment staging --wait
        --- stderr
        cloning database "main" into "copy"...
    "#]]
    .assert_eq(&outcome.transcript());
    let same_environment = run_cli(
        &stub.url,
        &["database", "clone", "-p", "shop", "-e", "prod", "main", "copy", "-o", "json"],
        "",
        Terminals::default(),
    )
    .await;
    assert!(same_environment.success, "{}", same_environment.transcript());
    let printed: serde_json::Value = serde_json::from_str(&same_environment.stdout).unwrap();
    assert_eq!(printed["name"], "copy");
    expect![[r#"
        [
            "{\"name\":\"copy\",\"environment\":\"staging\"}",
            "{\"name\":\"copy\",\"environment\":null}",
        ]
    "#]]
    .assert_debug_eq(&stub.bodies("POST"));
}

#[tokio::test]
async fn delete_with_a_final_backup_says_where_the_backup_is_kept() {
    let path = format!("{DATABASES}/main");
    let delete_key = format!("DELETE {path}?final_backup=true");
    let get_key = format!("GET {path}");
    let mut deleting = database("main", "postgresql", "container", "deleting");
    deleting["final_backup"] = backup(BACKUP_ID, "final", "2024-05-01T10:00:00Z", 2048);
    let stub = StubServer::start(vec![
        (delete_key.as_str(), vec![Reply::value(202, &deleting)]),
        (
            get_key.as_str(),
            vec![
                Reply::value(200, &database("main", "postgresql", "container", "deleting")),
                Reply::not_found("database \"main\" does not exist in shop/prod"),
            ],
        ),
    ])
    .await;
    let args = ["database", "delete", "-p", "shop", "-e", "prod", "main", "--final-backup"];
    let outcome =
        run_cli(&stub.url, &[&args[..], &["--yes"]].concat(), "", Terminals::default()).await;
    expect![[r#"
        final backup 0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a of database main (2.0 KiB) is kept at /var/lib/berth/backups/main-id/0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a.pgdump
        deleted database main
        --- stderr
        deleting database "main"...
    "#]]
    .assert_eq(&outcome.transcript());
    // The query goes with the DELETE only; the polling reads the database itself.
    expect![[r#"
        DELETE /api/v1/projects/shop/environments/prod/databases/main?final_backup=true
        GET /api/v1/projects/shop/environments/prod/databases/main (x2)
    "#]]
    .assert_eq(&stub.request_lines());

    // JSON: the server's answer, final backup included.
    let json = run_cli(
        &stub.url,
        &[&args[..], &["--yes", "--output", "json"]].concat(),
        "",
        Terminals::default(),
    )
    .await;
    let printed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(printed["final_backup"]["id"], BACKUP_ID, "{}", json.transcript());

    // On a terminal, the question says a backup is kept.
    let terminal = Terminals { stdin: true, stderr: false };
    let stub = StubServer::start(vec![(
        get_key.as_str(),
        vec![Reply::value(200, &database("main", "postgresql", "container", "active"))],
    )])
    .await;
    let declined = run_cli(&stub.url, &args, "n\n", terminal).await;
    expect![[r#"
        --- stderr
        Delete database "main" (postgresql 15) of environment "prod" in project "shop"? A final backup is taken first and kept in the backup store; then its volume and ALL ITS DATA are deleted. [y/N] error: cancelled: database "main" was not deleted
        --- failed
    "#]]
    .assert_eq(&declined.transcript());
}

#[tokio::test]
async fn a_failed_final_backup_deletes_nothing_and_says_why() {
    let stub = StubServer::start(vec![(
        "DELETE /api/v1/projects/shop/environments/prod/databases/main?final_backup=true",
        vec![refusal(
            409,
            "conflict",
            "the final backup failed, so nothing was deleted: the database container berth-shop-prod-main-db is not running; deploy the environment first",
        )],
    )])
    .await;
    let outcome = run_cli(
        &stub.url,
        &["database", "delete", "-p", "shop", "-e", "prod", "main", "--final-backup", "-y"],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        --- stderr
        error: the final backup failed, so nothing was deleted: the database container berth-shop-prod-main-db is not running; deploy the environment first
        --- failed
    "#]]
    .assert_eq(&outcome.transcript());
    // No polling after a refusal.
    expect![[r#"
        DELETE /api/v1/projects/shop/environments/prod/databases/main?final_backup=true
    "#]]
    .assert_eq(&stub.request_lines());
}

#[tokio::test]
async fn update_sends_the_schedule_and_the_retention() {
    let path = format!("PATCH {DATABASES}/main");
    let mut updated = database("main", "postgresql", "container", "active");
    updated["backup_schedule"] = json!("0 3 * * *");
    updated["backup_retention"] = json!(3);
    updated["next_backup_at"] = json!("2024-05-02T03:00:00Z");
    let stub = StubServer::start(vec![(path.as_str(), vec![Reply::value(200, &updated)])]).await;
    let outcome = run_cli(
        &stub.url,
        &[
            "database",
            "update",
            "-p",
            "shop",
            "-e",
            "prod",
            "main",
            "--backup-schedule",
            "0 3 * * *",
            "--backup-retention",
            "3",
        ],
        "",
        Terminals::default(),
    )
    .await;
    expect![[r#"
        updated database main: backups on schedule "0 3 * * *" (UTC), next at 2024-05-02 03:00:00; the newest 3 scheduled backups are kept
    "#]]
    .assert_eq(&outcome.transcript());
    assert_eq!(stub.bodies("PATCH"), [r#"{"backup_schedule":"0 3 * * *","backup_retention":3}"#]);

    // Nothing to change: refused before any request.
    let stub = StubServer::start(vec![]).await;
    let nothing = run_cli(
        &stub.url,
        &["database", "update", "-p", "shop", "-e", "prod", "main"],
        "",
        Terminals::default(),
    )
    .await;
    assert!(!nothing.success);
    assert!(nothing.stderr.contains("--backup-schedule CRON|none"), "{}", nothing.stderr);
    assert_eq!(stub.request_lines(), "");
}

#[tokio::test]
async fn backup_delete_asks_first_then_sends_the_delete() {
    let path = format!("DELETE {DATABASES}/main/backups/{BACKUP_ID}");
    let stub = StubServer::start(vec![(
        path.as_str(),
        vec![Reply::value(200, &backup(BACKUP_ID, "manual", "2024-05-01T10:00:00Z", 4096))],
    )])
    .await;
    let args = ["database", "backup-delete", "-p", "shop", "-e", "prod", "main", BACKUP_ID];
    let refused = run_cli(&stub.url, &args, "y\n", Terminals::default()).await;
    assert!(!refused.success);
    assert!(refused.stderr.contains("refusing to delete a backup without confirmation"));
    assert_eq!(stub.request_lines(), "");
    let deleted =
        run_cli(&stub.url, &[&args[..], &["--yes"]].concat(), "", Terminals::default()).await;
    expect![[r#"
        deleted backup 0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a of database main
    "#]]
    .assert_eq(&deleted.transcript());
    expect![[r#"
        DELETE /api/v1/projects/shop/environments/prod/databases/main/backups/0b7e5c1a-2f44-4d1e-9a55-3c1f0e2d4b6a
    "#]]
    .assert_eq(&stub.request_lines());
}
