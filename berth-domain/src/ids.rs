//! Typed identifiers. Each resource kind has its own newtype over a UUID so that an
//! application id can never be passed where an environment id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random identifier.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The first 8 hex digits: enough to tell objects apart in names and logs.
            pub fn short(&self) -> String {
                self.0.simple().to_string()[..8].to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

define_id!(
    /// An Organization: the tenant that owns projects, tokens and clusters.
    OrganizationId
);
define_id!(
    /// A Project: a set of environments.
    ProjectId
);
define_id!(
    /// An Environment: a standalone copy of a project's services.
    EnvironmentId
);
define_id!(
    /// An Application: a service built from Git or run from an image.
    ApplicationId
);
define_id!(
    /// A Database service of an environment.
    DatabaseId
);
define_id!(
    /// A backup of a database.
    BackupId
);
define_id!(
    /// A Deployment: one request to bring services to a revision.
    DeploymentId
);
define_id!(
    /// An environment variable or secret at some scope.
    VariableId
);
define_id!(
    /// An API token (only its hash is stored).
    ApiTokenId
);
