//! The lifecycle of a deployment and of its steps. A deployment is queued, runs its steps
//! in order, and ends in exactly one terminal state; the engine records every change.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The outcome-so-far of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Replaced by a newer request before it started.
    Superseded,
}

impl DeploymentStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Superseded => "superseded",
        }
    }
}

/// The named steps of DESIGN.md, in execution order for one application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    Clone,
    Build,
    Release,
    Start,
    Health,
    Route,
    Retire,
}

impl StepName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clone => "clone",
            Self::Build => "build",
            Self::Release => "release",
            Self::Start => "start",
            Self::Health => "health",
            Self::Route => "route",
            Self::Retire => "retire",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

macro_rules! str_enum_parse {
    ($ty:ty, [$($variant:expr),+ $(,)?]) => {
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                [$($variant),+]
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {} {s:?}", stringify!($ty)))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum_parse!(
    DeploymentStatus,
    [
        DeploymentStatus::Queued,
        DeploymentStatus::Running,
        DeploymentStatus::Succeeded,
        DeploymentStatus::Failed,
        DeploymentStatus::Cancelled,
        DeploymentStatus::Superseded,
    ]
);
str_enum_parse!(
    StepName,
    [
        StepName::Clone,
        StepName::Build,
        StepName::Release,
        StepName::Start,
        StepName::Health,
        StepName::Route,
        StepName::Retire,
    ]
);
str_enum_parse!(
    StepStatus,
    [StepStatus::Running, StepStatus::Succeeded, StepStatus::Failed, StepStatus::Skipped]
);

/// Why a deployment failed, in words a person can act on, with the step it failed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReason {
    pub step: StepName,
    pub application: Option<String>,
    pub message: String,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.application {
            Some(app) => write!(f, "{} failed for {app}: {}", self.step, self.message),
            None => write!(f, "{} failed: {}", self.step, self.message),
        }
    }
}

/// Environment modes (Qovery's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentMode {
    Production,
    Staging,
    Development,
    Preview,
}

impl EnvironmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Development => "development",
            Self::Preview => "preview",
        }
    }
}

str_enum_parse!(
    EnvironmentMode,
    [
        EnvironmentMode::Production,
        EnvironmentMode::Staging,
        EnvironmentMode::Development,
        EnvironmentMode::Preview,
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ["clone", "build", "release", "start", "health", "route", "retire"] {
            assert_eq!(s.parse::<StepName>().unwrap().as_str(), s);
        }
        assert!("deploy".parse::<StepName>().is_err());
        assert!(DeploymentStatus::Failed.is_terminal());
        assert!(!DeploymentStatus::Queued.is_terminal());
    }
}
