//! Tests of `load.rs`: a full file parses and normalizes; every kind of mistake is
//! reported with its file, line and key path.

use expect_test::{expect, Expect};

use super::*;

/// A file using every key of the schema.
pub(crate) const FULL_EXAMPLE: &str = r#"
project = "shop"

[variables]
LOG_LEVEL = "info"
API_KEY = { secret = true }

[environments.production]
mode = "production"
branch = "main"

[environments.production.variables]
DATABASE_URL = { alias = "BERTH_DATABASE_MAIN_URL" }

[environments.production.databases.main]
engine = "postgres"
storage_gb = 2

[environments.production.databases.legacy]
engine = "mysql"
version = "10.11"
mode = "external"
url = { secret = "LEGACY_DATABASE_URL" }

[environments.production.applications.web]
git = "https://git.example.com/shop.git"
branch = "release"
root_path = "services/web"
build_args = { NODE_ENV = "production" }
port = 8080
cpu = 0.5
memory_mb = 256
instances = 2
drain_secs = 10
release_command = "./migrate up"
health_check = { kind = "http", path = "/healthz", expected_status = "200", interval_secs = 1 }
volumes = [{ name = "uploads", path = "/data/uploads", size_gb = 5 }]
depends_on = ["main", "worker"]
watch_paths = ["services/web/**", "!services/web/docs/**"]
auto_deploy = false

[environments.production.applications.web.variables]
FEATURE_FLAGS = "beta"

[environments.production.applications.worker]
image = "registry.example.com/shop/worker:1.2"
visibility = "private"
"#;

fn no_environment(_: &str) -> Option<String> {
    None
}

fn check_errors(text: &str, expected: Expect) {
    let errors = parse_spec("berth.toml", text, &no_environment).unwrap_err();
    expected.assert_eq(&format!("{errors}\n"));
}

#[test]
fn a_full_file_is_normalized_with_the_apis_defaults() {
    let spec = parse_spec("berth.toml", FULL_EXAMPLE, &no_environment).unwrap();
    let production = &spec.environments["production"];
    let main = &production.databases["main"];
    assert_eq!((main.engine.as_str(), main.version.as_deref()), ("postgresql", Some("15")));
    assert_eq!(main.storage_gb, Some(2));
    assert_eq!(production.databases["legacy"].engine, "mariadb");
    let web = &production.applications["web"];
    assert_eq!(web.dockerfile_path.as_deref(), Some("Dockerfile"));
    assert_eq!(web.health_check.expected_status.as_deref(), Some("200-200"));
    assert_eq!(web.health_check.timeout_secs, 2.0);
    let worker = &production.applications["worker"];
    assert_eq!((worker.instances, worker.drain_secs, worker.auto_deploy), (1, 5.0, true));
    assert_eq!(worker.root_path, None, "image applications have no root path");
    assert_eq!(spec.variables["API_KEY"], VariableSpec::Secret);
}

#[test]
fn an_unknown_key_is_named_with_its_path_and_line() {
    check_errors(
        r#"
project = "shop"
[environments.production.applications.web]
image = "nginx"
prot = 8080
"#,
        expect![[r#"
            berth.toml:5: environments.production.applications.web.prot: unknown field `prot`, expected one of `git`, `image`, `branch`, `root_path`, `dockerfile_path`, `port`, `visibility`, `cpu`, `memory_mb`, `instances`, `drain_secs`, `release_command`, `build_args`, `health_check`, `volumes`, `depends_on`, `watch_paths`, `auto_deploy`, `variables`
        "#]],
    );
}

#[test]
fn a_wrong_type_is_named_with_its_path_and_line() {
    check_errors(
        r#"project = "shop"
[environments.production.applications.web]
image = "nginx"
port = "eighty"
"#,
        expect![[r#"
            berth.toml:4: environments.production.applications.web.port: invalid type: string "eighty", expected u32
        "#]],
    );
}

#[test]
fn every_invalid_value_is_reported_at_once_with_the_apis_rules() {
    check_errors(
        r#"project = "Shop"

[variables]
BERTH_X = "reserved"
DB = { alias = "OTHER" }

[environments.production]
mode = "prod"
branch = "bad..branch"

[environments.production.databases.main]
engine = "oracle"

[environments.production.applications.web]
git = "https://git.example.com/shop.git"
image = "nginx"
port = 70000
instances = 50
health_check = { kind = "tcp", path = "/healthz" }
depends_on = ["nothing"]

[environments.production.applications.api]
image = "nginx"
root_path = "services/api"
"#,
        expect![[r#"
            berth.toml:1: project: invalid name "Shop": use 1 to 63 lower-case letters, digits and '-', starting with a letter and not ending with '-' (e.g. "my-app")
            berth.toml:4: variables.BERTH_X: invalid variable name "BERTH_X": names starting with BERTH_ and the name PORT are set by Berth itself; choose another name
            berth.toml:5: variables.DB: an alias follows a database's built-in variable (BERTH_DATABASE_<NAME>_URL, _HOST, _PORT, _USER, _PASSWORD, _NAME), not "OTHER"
            berth.toml:8: environments.production.mode: invalid environment mode "prod": use production, staging, development or preview
            berth.toml:9: environments.production.branch: invalid branch name "bad..branch": it contains '..' or '@{' or ends with '.', which Git refuses
            berth.toml:12: environments.production.databases.main.engine: invalid database engine "oracle": use postgresql, mariadb (or mysql) or redis
            berth.toml:24: environments.production.applications.api.root_path: applies to applications built from Git only
            berth.toml:14: environments.production.applications.web: give exactly one source: `git = "URL"` (a repository with a Dockerfile) or `image = "REF"`
            berth.toml:17: environments.production.applications.web.port: invalid port "70000": give a TCP port between 1 and 65535
            berth.toml:18: environments.production.applications.web.instances: invalid instance count "50": give between 1 and 20 instances
            berth.toml:19: environments.production.applications.web.health_check.path: applies to `kind = "http"` health checks only
            berth.toml:20: environments.production.applications.web.depends_on: "nothing" is neither an application nor a database of environment production
        "#]],
    );
}

#[test]
fn a_missing_environment_variable_in_git_is_named() {
    let text = r#"project = "shop"
[environments.production.applications.web]
git = "file://${BERTH_TEST_NOT_SET}/source.git"
"#;
    check_errors(
        text,
        expect![[r#"
            berth.toml:3: environments.production.applications.web.git: "file://${BERTH_TEST_NOT_SET}/source.git" uses ${BERTH_TEST_NOT_SET}, but the environment variable BERTH_TEST_NOT_SET is not set; export it before running berth
        "#]],
    );
    let lookup = |name: &str| (name == "BERTH_TEST_NOT_SET").then(|| "/srv".to_owned());
    let spec = parse_spec("berth.toml", text, &lookup).unwrap();
    assert_eq!(
        spec.environments["production"].applications["web"].git.as_deref(),
        Some("file:///srv/source.git")
    );
}

#[test]
fn dependency_cycles_are_refused() {
    check_errors(
        r#"project = "shop"
[environments.production.applications.a]
image = "nginx"
depends_on = ["b"]
[environments.production.applications.b]
image = "nginx"
depends_on = ["a"]
"#,
        expect![[r#"
            berth.toml:2: environments.production.applications: the applications depend on each other in a cycle: a → b → a
        "#]],
    );
}

#[test]
fn a_variable_table_must_be_a_secret_or_an_alias() {
    check_errors(
        r#"project = "shop"
[variables]
TOKEN = { secret = true, alias = "BERTH_DATABASE_MAIN_URL" }
"#,
        expect![[r#"
            berth.toml:3: variables.TOKEN: a variable is either a secret or an alias, not both
        "#]],
    );
}

/// The TOML blocks of a Markdown file that start with `project =`.
fn spec_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .map(|block| block.trim_start_matches("# berth.toml\n").to_owned())
        .filter(|block| block.starts_with("project ="))
        .collect()
}

#[test]
fn the_documented_examples_are_valid() {
    let lookup = |name: &str| (name == "BERTH_DATA_DIR").then(|| "/var/lib/berth".to_owned());
    let mut checked = 0;
    for (file, text) in [
        ("docs/spec.md", include_str!("../../../docs/spec.md")),
        ("README.md", include_str!("../../../README.md")),
    ] {
        for block in spec_blocks(text) {
            if let Err(errors) = parse_spec(file, &block, &lookup) {
                panic!("{errors}\n{block}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "the full example of docs/spec.md and the README's");
    let example = include_str!("../../../examples/hello/berth.toml");
    let spec = parse_spec("examples/hello/berth.toml", example, &lookup).unwrap();
    assert_eq!(
        spec.environments["production"].applications["hello"].git.as_deref(),
        Some("file:///var/lib/berth/quickstart-source.git")
    );
}
