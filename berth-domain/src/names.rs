//! Validated names. Every name that reaches a URL, a hostname, a Docker object, a Git
//! command line or a process environment is parsed into one of these types first, so the
//! adapters never see an unchecked string.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    pub kind: &'static str,
    pub value: String,
    pub reason: String,
}

impl NameError {
    /// Builds the error, shortening the echoed value.
    pub fn new_pub(kind: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::new(kind, value, reason)
    }

    fn new(kind: &'static str, value: &str, reason: impl Into<String>) -> Self {
        // Keep the echoed value short and printable: it ends up in error messages.
        let mut shown: String = value.chars().take(80).collect();
        if value.chars().count() > 80 {
            shown.push('…');
        }
        Self { kind, value: shown, reason: reason.into() }
    }
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

/// The name of a project, environment, application or database: a DNS label (RFC 1123),
/// because it becomes part of the hostname `<app>.<env>.<project>.<base-domain>` and of
/// Docker object names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceName(String);
string_newtype!(ResourceName);

impl ResourceName {
    pub const MAX_LEN: usize = 63;

    pub fn parse(value: &str) -> Result<Self, NameError> {
        const KIND: &str = "name";
        const RULE: &str = "use 1 to 63 lower-case letters, digits and '-', starting with a letter and not ending with '-' (e.g. \"my-app\")";
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(NameError::new(KIND, value, RULE));
        }
        let bytes = value.as_bytes();
        let valid_chars =
            bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if !valid_chars || !bytes[0].is_ascii_lowercase() || bytes[bytes.len() - 1] == b'-' {
            return Err(NameError::new(KIND, value, RULE));
        }
        Ok(Self(value.to_owned()))
    }
}

/// A Git branch name, checked with the rules of `git check-ref-format --branch` plus a
/// refusal of anything that a command line could read as an option.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BranchName(String);
string_newtype!(BranchName);

impl BranchName {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        const KIND: &str = "branch name";
        let fail = |reason: &str| Err(NameError::new(KIND, value, reason));
        if value.is_empty() {
            return fail("it is empty");
        }
        if value.len() > 255 {
            return fail("it is longer than 255 bytes");
        }
        if value.starts_with('-') {
            return fail("it starts with '-', which Git would read as an option");
        }
        if value == "@" || value == "HEAD" {
            return fail("it names a symbolic ref, not a branch");
        }
        if value.starts_with('/') || value.ends_with('/') || value.contains("//") {
            return fail("it has an empty path component ('/' at an end or doubled)");
        }
        if value.ends_with('.') || value.contains("..") || value.contains("@{") {
            return fail("it contains '..' or '@{' or ends with '.', which Git refuses");
        }
        if let Some(c) = value.chars().find(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\' | '$' | '`' | '\'' | '"')
        }) {
            return fail(&format!(
                "it contains the character {c:?}, which is not allowed in branch names here"
            ));
        }
        for component in value.split('/') {
            if component.starts_with('.') || component.ends_with(".lock") {
                return fail("a component starts with '.' or ends with '.lock'");
            }
        }
        Ok(Self(value.to_owned()))
    }

    /// The default branch of a new environment.
    pub fn main() -> Self {
        Self("main".to_owned())
    }
}

/// The name of an environment variable: a POSIX shell identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvVarName(String);
string_newtype!(EnvVarName);

impl EnvVarName {
    /// Prefix of the variables Berth sets itself; users may not define them.
    pub const RESERVED_PREFIX: &'static str = "BERTH_";

    /// Parses a name a user may set: valid and not in Berth's reserved namespace.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let name = Self::parse_any(value)?;
        if name.0.to_ascii_uppercase().starts_with(Self::RESERVED_PREFIX) || name.0 == "PORT" {
            return Err(NameError::new(
                "variable name",
                value,
                "names starting with BERTH_ and the name PORT are set by Berth itself; choose another name",
            ));
        }
        Ok(name)
    }

    /// Parses any valid name, reserved ones included (for Berth's own built-ins).
    pub fn parse_any(value: &str) -> Result<Self, NameError> {
        let bytes = value.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 255
            && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if !valid {
            return Err(NameError::new(
                "variable name",
                value,
                "use letters, digits and '_', not starting with a digit (e.g. DATABASE_URL)",
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

/// A DNS hostname (lower-cased), such as a base domain or a custom domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);
string_newtype!(Hostname);

impl Hostname {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        const RULE: &str =
            "use dot-separated labels of letters, digits and '-' (e.g. \"example.com\"), at most 253 characters";
        let lowered = value.trim_end_matches('.').to_ascii_lowercase();
        if lowered.is_empty() || lowered.len() > 253 {
            return Err(NameError::new("hostname", value, RULE));
        }
        for label in lowered.split('.') {
            let bytes = label.as_bytes();
            let ok = !bytes.is_empty()
                && bytes.len() <= 63
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-';
            if !ok {
                return Err(NameError::new("hostname", value, RULE));
            }
        }
        Ok(Self(lowered))
    }

    /// `<application>.<environment>.<project>.<base>`: the default public hostname.
    pub fn for_application(
        application: &ResourceName,
        environment: &ResourceName,
        project: &ResourceName,
        base_domain: &Hostname,
    ) -> Hostname {
        Hostname(format!("{application}.{environment}.{project}.{base_domain}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_follow_dns_label_rules() {
        for ok in ["a", "web", "my-app-2", &"a".repeat(63)] {
            assert!(ResourceName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Web", "2web", "web-", "we_b", "web.app", "$(id)", &"a".repeat(64)] {
            assert!(ResourceName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_branches_are_refused() {
        for ok in ["main", "feature/login", "release-1.2", "user/x_y"] {
            assert!(BranchName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "--upload-pack=touch /tmp/x",
            "-x",
            "$(id)",
            "a..b",
            "a b",
            "a~1",
            "a:b",
            "x.lock",
            ".hidden",
            "a//b",
            "HEAD",
            "`id`",
            "a\nb",
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserved_variable_names_are_refused_for_users() {
        assert!(EnvVarName::parse("DATABASE_URL").is_ok());
        assert!(EnvVarName::parse("BERTH_X").is_err());
        assert!(EnvVarName::parse("berth_x").is_err());
        assert!(EnvVarName::parse("PORT").is_err());
        assert!(EnvVarName::parse("1A").is_err());
        assert!(EnvVarName::parse("A-B").is_err());
        assert!(EnvVarName::parse_any("BERTH_PROJECT_NAME").is_ok());
    }

    #[test]
    fn error_message_names_the_rule() {
        let err = ResourceName::parse("Bad_Name").unwrap_err();
        expect_test::expect![[r#"invalid name "Bad_Name": use 1 to 63 lower-case letters, digits and '-', starting with a letter and not ending with '-' (e.g. "my-app")"#]]
            .assert_eq(&err.to_string());
    }
}
