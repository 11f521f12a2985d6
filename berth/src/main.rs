//! The `berth` binary: `berth server` and `berth proxy` run the control plane and the edge
//! proxy; every other subcommand is the CLI talking to a server's REST API.
fn main() {}
