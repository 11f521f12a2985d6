//! Tests of `diff.rs`: the printed plan for a new project, for an unchanged one, for field
//! updates, with and without `prune`, and what is refused before anything changes.

use expect_test::{expect, Expect};

use super::super::load::parse_spec;
use super::*;

fn spec(text: &str) -> ProjectSpec {
    parse_spec("berth.toml", text, &|_| None).unwrap()
}

const BASE: &str = r#"
project = "shop"

[variables]
LOG_LEVEL = "info"
API_KEY = { secret = true }

[environments.production]
mode = "production"

[environments.production.variables]
DATABASE_URL = { alias = "BERTH_DATABASE_MAIN_URL" }

[environments.production.databases.main]
engine = "postgresql"

[environments.production.applications.api]
git = "https://git.example.com/shop.git"
root_path = "api"
port = 8080
depends_on = ["main"]

[environments.production.applications.web]
image = "nginx:1.25"
port = 80
depends_on = ["api"]

[environments.production.applications.web.variables]
TITLE = "Shop"
"#;

/// The plan as `apply` prints it, then refusals and missing secrets.
fn render(plan: &Plan) -> String {
    let mut text = String::new();
    if plan.changes.is_empty() {
        text.push_str("no changes\n");
    }
    for change in &plan.changes {
        text.push_str(&change.line());
        text.push('\n');
    }
    for refusal in &plan.refusals {
        text.push_str(&format!("refused: {refusal}\n"));
    }
    for missing in &plan.missing_secrets {
        text.push_str(&format!(
            "missing secret {} at {:?} (new scope: {})\n",
            missing.name, missing.scope, missing.scope_is_new
        ));
    }
    for unmanaged in &plan.unmanaged {
        text.push_str(&format!("unmanaged: {unmanaged}\n"));
    }
    text
}

fn check(desired: &str, current: Option<&str>, prune: bool, expected: Expect) {
    let current = current.map(spec);
    expected.assert_eq(&render(&plan(&spec(desired), current.as_ref(), prune)));
}

#[test]
fn a_new_project_is_created_in_dependency_order() {
    check(
        BASE,
        None,
        false,
        expect![[r#"
            + project shop
            + environment production (mode production, branch main)
            + database production/main (postgresql 15, container, 1 GB)
            + application production/api (git https://git.example.com/shop.git, port 8080)
            + application production/web (image nginx:1.25, port 80)
            + variable LOG_LEVEL in project ("info")
            + variable TITLE in production/web ("Shop")
            + variable DATABASE_URL in production (alias of BERTH_DATABASE_MAIN_URL)
            missing secret API_KEY at Project (new scope: true)
        "#]],
    );
}

#[test]
fn the_same_spec_on_both_sides_is_no_changes() {
    check(
        BASE,
        Some(BASE),
        true,
        expect![[r#"
        no changes
    "#]],
    );
}

#[test]
fn dependents_are_created_after_what_they_depend_on() {
    let text = r#"project = "shop"
[environments.production.applications.a-front]
image = "nginx"
depends_on = ["z-back"]
[environments.production.applications.z-back]
image = "nginx"
"#;
    check(
        text,
        None,
        false,
        expect![[r#"
            + project shop
            + environment production (mode development, branch main)
            + application production/z-back (image nginx)
            + application production/a-front (image nginx)
        "#]],
    );
}

#[test]
fn field_changes_are_listed_and_sent_as_one_update() {
    let desired = BASE
        .replace(
            "port = 8080",
            "port = 9090\ninstances = 2\nhealth_check = { kind = \"http\", path = \"/healthz\" }",
        )
        .replace("TITLE = \"Shop\"", "TITLE = \"Shop!\"")
        .replace(
            "image = \"nginx:1.25\"",
            "image = \"nginx:1.27\"\nrelease_command = \"./migrate\"",
        );
    check(
        &desired,
        Some(BASE),
        false,
        expect![[r#"
            ~ application production/api: port 8080 → 9090, instances 1 → 2, health_check tcp every 2s timeout 2s after 0s, 3 failures → http /healthz 200-399 every 2s timeout 2s after 0s, 3 failures
            ~ application production/web: image nginx:1.25 → nginx:1.27, release_command none → ./migrate
            ~ variable TITLE in production/web: "Shop" → "Shop!"
        "#]],
    );
    let plan = plan(&spec(&desired), Some(&spec(BASE)), false);
    let Operation::UpdateApplication { body, .. } = &plan.changes[0].operation else {
        panic!("expected an update: {:?}", plan.changes[0]);
    };
    assert_eq!((body.port, body.instances, body.git.is_some()), (Some(9090), Some(2), false));
    assert_eq!(body.health_check.as_ref().and_then(|c| c.path.as_deref()), Some("/healthz"));
}

#[test]
fn removing_a_port_or_release_command_clears_it() {
    let current = BASE.replace("port = 80\n", "port = 80\nrelease_command = \"x\"\n");
    let desired = BASE.replace("port = 80\n", "");
    let plan = plan(&spec(&desired), Some(&spec(&current)), false);
    assert_eq!(
        plan.changes.iter().map(Change::line).collect::<Vec<_>>(),
        ["~ application production/web: port 80 → none, release_command x → none"]
    );
    let Operation::UpdateApplication { body, .. } = &plan.changes[0].operation else {
        panic!("expected an update");
    };
    assert!(body.clear_port && body.clear_release_command);
}

#[test]
fn what_the_file_leaves_out_is_deleted_only_with_prune() {
    let current = format!(
        "{BASE}\n[environments.staging]\n\n[environments.pr-7]\nmode = \"preview\"\n\n[environments.production.databases.old]\nengine = \"redis\"\n\n[environments.production.applications.legacy]\nimage = \"nginx\"\n"
    )
    .replace("TITLE = \"Shop\"", "TITLE = \"Shop\"\nOLD = \"1\"");
    check(
        BASE,
        Some(&current),
        false,
        expect![[r#"
            no changes
            unmanaged: variable OLD in production/web
            unmanaged: application production/legacy
            unmanaged: database production/old
            unmanaged: environment staging
        "#]],
    );
    check(
        BASE,
        Some(&current),
        true,
        expect![[r#"
            - variable OLD in production/web
            - application production/legacy
            - database production/old
            - environment staging
        "#]],
    );
}

#[test]
fn what_the_api_cannot_change_is_refused() {
    let desired = BASE
        .replace("mode = \"production\"", "mode = \"production\"\nbranch = \"develop\"")
        .replace("engine = \"postgresql\"", "engine = \"postgresql\"\nversion = \"16\"");
    let current = BASE.replace("port = 80\n", "port = 80\ncpu = 0.5\n");
    check(
        &desired,
        Some(&current),
        false,
        expect![[r#"
            ~ application production/web: cpu 0.5 → none
            refused: environment production: the API cannot change an environment's branch (main → develop); put it back to main in the file, or create a new environment with that branch
            refused: database production/main: the API cannot change a database's version (15 → 16); put it back in the file, or add a database under a new name (`berth database clone` copies the data)
            refused: application production/web: the API cannot remove a CPU limit; give `cpu = ...` (the current limit is 0.5 cores)
        "#]],
    );
}

#[test]
fn a_secret_missing_at_an_existing_scope_is_reported() {
    let current = BASE.replace("API_KEY = { secret = true }\n", "API_KEY = \"plain\"\n");
    check(
        BASE,
        Some(&current),
        false,
        expect![[r#"
            no changes
            missing secret API_KEY at Project (new scope: false)
        "#]],
    );
}
