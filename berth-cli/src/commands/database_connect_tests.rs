//! Unit tests of `database connect`: the client command lines per engine (password never
//! among the arguments), the command shown to a user, PATH lookup and the details text.
//! The tunnel itself is tested end to end in `berth/tests/database_connect.rs`.

use expect_test::expect;

use super::*;

fn credentials(engine: &str, user: &str, database: &str) -> DatabaseCredentials {
    DatabaseCredentials {
        database_name: "main".into(),
        engine: engine.into(),
        host: "main".into(),
        port: 5432,
        user: user.into(),
        password: "pa'ss word".into(),
        database: database.into(),
    }
}

#[test]
fn each_engine_gets_its_client_with_the_password_in_the_environment() {
    let extra = vec!["-c".to_owned(), "select 1".to_owned()];
    let mut lines = Vec::new();
    for (engine, user, database) in [
        ("postgresql", "main", "main"),
        ("mariadb", "app", "shop"),
        ("redis", "default", "0"),
        ("redis", "reader", "2"),
    ] {
        let credentials = credentials(engine, user, database);
        let command = client_command(&credentials, 40123, &extra).unwrap();
        assert!(!command.args.iter().any(|arg| arg.contains("pa'ss")), "{command:?}");
        let spec = command.process_spec(Path::new("/usr/bin/x"), &credentials);
        assert_eq!(
            spec.env,
            vec![(OsString::from(command.password_variable), OsString::from("pa'ss word"))]
        );
        lines.push(format!(
            "{engine}: {}",
            command.display(command.programs[0], false, &credentials)
        ));
    }
    expect![[r#"
        postgresql: PGPASSWORD=PASSWORD psql -h 127.0.0.1 -p 40123 -U main -d main -c 'select 1'
        mariadb: MYSQL_PWD=PASSWORD mariadb -h 127.0.0.1 -P 40123 --protocol=TCP -u app shop -c 'select 1'
        redis: REDISCLI_AUTH=PASSWORD redis-cli -h 127.0.0.1 -p 40123 -n 0 -c 'select 1'
        redis: REDISCLI_AUTH=PASSWORD redis-cli -h 127.0.0.1 -p 40123 -n 2 --user reader -c 'select 1'"#]]
    .assert_eq(&lines.join("\n"));
}

#[test]
fn the_password_is_shown_quoted_only_when_asked_for() {
    let credentials = credentials("postgresql", "main", "main");
    let command = client_command(&credentials, 5, &[]).unwrap();
    assert_eq!(
        command.display("psql", true, &credentials),
        r"PGPASSWORD='pa'\''ss word' psql -h 127.0.0.1 -p 5 -U main -d main"
    );
}

#[test]
fn an_unknown_engine_is_named() {
    let error = client_command(&credentials("cassandra", "u", "d"), 5, &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"this berth does not know a client for the engine "cassandra""#
    );
}

#[test]
fn clients_are_found_on_path_in_order_and_only_if_executable() {
    use std::os::unix::fs::PermissionsExt;
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let write = |dir: &Path, name: &str, mode: u32| {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    write(first.path(), "mariadb", 0o644);
    let mysql = write(first.path(), "mysql", 0o755);
    let path = std::env::join_paths([first.path(), second.path()]).unwrap();
    assert_eq!(find_on_path(&["mariadb", "mysql"], Some(path.clone())), Some(mysql));
    let mariadb = write(second.path(), "mariadb", 0o755);
    assert_eq!(find_on_path(&["mariadb", "mysql"], Some(path.clone())), Some(mariadb));
    assert_eq!(find_on_path(&["psql"], Some(path)), None);
    assert_eq!(find_on_path(&["psql"], None), None);
}

#[test]
fn details_hide_the_password_unless_asked() {
    let credentials = credentials("redis", "default", "0");
    let address: SocketAddr = "127.0.0.1:40123".parse().unwrap();
    expect![[r#"
        Tunnel to database "main" (redis) open on 127.0.0.1:40123
        host:     127.0.0.1
        port:     40123
        user:     default
        database: 0
        password: (hidden: add --show-password)
    "#]]
    .assert_eq(&details_text(&credentials, address, None));
    assert!(
        details_text(&credentials, address, Some("pa'ss word")).contains("password: pa'ss word")
    );
}
