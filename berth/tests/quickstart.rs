//! The README's first command, end to end: `scripts/quickstart.sh` installs what is missing,
//! builds Berth, starts the server in the background, deploys the bundled example and
//! prints its URL, which answers "Hello from Berth" through the proxy; run a second time
//! it reuses the running server and succeeds again. The test then deletes the `example`
//! project and stops the server and proxy by their pid files, leaving nothing behind.

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use test_support::harness::{free_loopback_address, labelled_objects, run_program, TestServer};

/// Generous: the script runs `cargo build`, which waits for other builds on the machine.
const QUICKSTART_DEADLINE: Duration = Duration::from_secs(900);

#[test]
fn quickstart_deploys_the_example_and_can_run_twice() {
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let directory =
        tempfile::Builder::new().prefix("berth-quickstart-").tempdir().expect("temp dir");
    let data_dir = directory.path().join("data");
    let api_address = free_loopback_address();
    let proxy_address = free_loopback_address();
    let environment = [
        ("BERTH_DATA_DIR", data_dir.display().to_string()),
        ("BERTH_LISTEN", api_address.to_string()),
        ("BERTH_PROXY_LISTEN", proxy_address.to_string()),
        ("BERTH_CARGO_PROFILE", "dev".to_owned()),
    ];
    let script = repo_root.join("scripts/quickstart.sh");
    let url = format!("http://hello.production.example.localhost:{}/", proxy_address.port());

    let first = run_program(&script, &[], repo_root, &environment, QUICKSTART_DEADLINE);
    // From here on the server runs: adopt it so that it is stopped and cleaned up whatever
    // happens next.
    let server = (data_dir.join("server.pid").exists()).then(|| {
        TestServer::adopt(
            Path::new(env!("CARGO_BIN_EXE_berth")),
            directory,
            &data_dir,
            api_address,
            proxy_address,
        )
    });
    assert!(first.success(), "quickstart.sh failed ({}):\n{first}", first.status);
    let server = server.expect("the quick start left a server running (server.pid)");
    assert!(first.stdout.contains("Hello from Berth"), "the script curls the example:\n{first}");
    assert!(
        first.stdout.contains(&format!("The example is deployed at {url}")),
        "the script prints the URL {url}:\n{first}"
    );
    let page = server.proxy_get("hello.production.example.localhost", "/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("Hello from Berth"), "{page:?}");

    let second = run_program(&script, &[], repo_root, &environment, QUICKSTART_DEADLINE);
    assert!(
        second.success(),
        "quickstart.sh failed the second time ({}):\n{second}",
        second.status
    );
    assert!(
        second.combined().contains("a Berth server already answers"),
        "reuses the server:\n{second}"
    );
    assert!(second.stdout.contains(&format!("The example is deployed at {url}")), "{second}");
    let page = server.proxy_get("hello.production.example.localhost", "/");
    assert!(page.body.contains("Hello from Berth"), "{page:?}");

    let project_id = server.project_id("example");
    server
        .cli_within(Duration::from_secs(60), &["project", "delete", "example", "--yes"])
        .expect_success();
    assert_eq!(labelled_objects(&format!("berth.project={project_id}")), Vec::<String>::new());
    // Dropping the adopted server stops the server and the proxy by their pid files.
    drop(server);
    for address in [api_address, proxy_address] {
        assert!(TcpStream::connect(address).is_err(), "nothing answers on {address} any more");
    }
}
