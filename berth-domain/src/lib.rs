//! Berth's core vocabulary: identifiers, validated names, application specs, variables,
//! deployment states, ownership labels, the proxy's route table and the reconciler's
//! `plan()`. Everything here is plain data and pure functions: no IO, no async, and no
//! knowledge of HTTP, SQL, Docker, Kubernetes or Git.

pub mod branch_environments;
pub mod database;
pub mod deploy_plan;
pub mod deployment;
pub mod git_events;
pub mod health;
pub mod ids;
pub mod labels;
pub mod names;
pub mod ordering;
pub mod plan;
pub mod routes;
pub mod source;
pub mod spec;
pub mod variables;
pub mod watch;
pub mod webhook_payloads;

pub use ids::{
    ApiTokenId, ApplicationId, BackupId, DatabaseId, DeploymentId, EnvironmentId, OrganizationId,
    ProjectId, VariableId,
};
pub use names::{BranchName, EnvVarName, Hostname, NameError, ResourceName};
