//! Test fixtures shared by Berth's end-to-end tests: real Git servers (HTTP with basic
//! auth through `git http-backend`, SSH through Debian's openssh-server), a local image
//! registry, fixture repositories, and a harness that starts a real `berth server` on
//! free ports. Dev-only: never a dependency of the shipped binary.

pub mod databases;
pub mod environment_containers;
pub mod git_http;
pub mod git_ssh;
pub mod harness;
pub mod harness_ext;
pub mod registry;
pub mod repo;
pub mod webhook;
