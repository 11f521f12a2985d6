//! Branch environments: which pushed branches get an environment of their own (a glob
//! such as `feature/*`), and the environment name derived from a branch name
//! (`feature/Login_Page` → `feature-login-page`), unique within the project.

use crate::names::{BranchName, ResourceName};

/// Longest derived environment name: it becomes one label of
/// `<app>.<env>.<project>.<base-domain>`, so it leaves room for the others.
pub const MAX_BRANCH_ENVIRONMENT_NAME: usize = 40;

/// A validated branch glob: `*` matches within one path component, `**` across them,
/// `?` one character; everything else literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchGlob(String);

impl BranchGlob {
    pub fn parse(value: &str) -> Result<Self, crate::NameError> {
        let fail = |reason: &str| Err(crate::NameError::new_pub("branch pattern", value, reason));
        if value.is_empty() || value.len() > 255 {
            return fail("give 1 to 255 characters, e.g. 'feature/*'");
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return fail("it contains spaces or control characters");
        }
        if value.starts_with('-') {
            return fail("it starts with '-'");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, branch: &BranchName) -> bool {
        glob_match(self.0.as_bytes(), branch.as_str().as_bytes())
    }
}

impl std::fmt::Display for BranchGlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        [b'*', rest @ ..] => {
            let component = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
            (0..=component).any(|skip| glob_match(rest, &text[skip..]))
        }
        [b'?', rest @ ..] => {
            text.first().is_some_and(|&c| c != b'/') && glob_match(rest, &text[1..])
        }
        [literal, rest @ ..] => text.first() == Some(literal) && glob_match(rest, &text[1..]),
    }
}

/// The environment name for `branch`: lower-case, every run of other characters than
/// letters and digits becomes one `-`, starting with a letter (`b-` is prepended when the
/// branch starts with a digit), at most [`MAX_BRANCH_ENVIRONMENT_NAME`] characters, and
/// different from every name in `taken` (a `-2`, `-3`… suffix).
pub fn branch_environment_name(branch: &BranchName, taken: &[ResourceName]) -> ResourceName {
    let mut base = String::new();
    for c in branch.as_str().chars() {
        if c.is_ascii_alphanumeric() {
            base.push(c.to_ascii_lowercase());
        } else if !base.ends_with('-') {
            base.push('-');
        }
    }
    let mut base = base.trim_matches('-').to_owned();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert_str(0, "b-");
    }
    let fits = |name: &str, room: usize| -> String {
        let mut cut: String = name.chars().take(room).collect();
        while cut.ends_with('-') {
            cut.pop();
        }
        cut
    };
    let candidate = fits(&base, MAX_BRANCH_ENVIRONMENT_NAME);
    let is_free = |name: &str| !taken.iter().any(|t| t.as_str() == name);
    let parse = |name: &str| ResourceName::parse(name).ok();
    if is_free(&candidate) {
        if let Some(name) = parse(&candidate) {
            return name;
        }
    }
    for counter in 2u32.. {
        let suffix = format!("-{counter}");
        let name = format!("{}{suffix}", fits(&base, MAX_BRANCH_ENVIRONMENT_NAME - suffix.len()));
        if is_free(&name) {
            if let Some(name) = parse(&name) {
                return name;
            }
        }
    }
    // Unreachable: the counter finds a free name long before it wraps.
    ResourceName::parse("branch").unwrap_or_else(|_| taken[0].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(name: &str) -> BranchName {
        BranchName::parse(name).unwrap()
    }

    #[test]
    fn globs_match_within_and_across_components() {
        let feature = BranchGlob::parse("feature/*").unwrap();
        assert!(feature.matches(&branch("feature/login")));
        assert!(!feature.matches(&branch("feature/a/b")));
        assert!(!feature.matches(&branch("main")));
        assert!(!feature.matches(&branch("feature")));
        let deep = BranchGlob::parse("feature/**").unwrap();
        assert!(deep.matches(&branch("feature/a/b")));
        let any = BranchGlob::parse("*").unwrap();
        assert!(any.matches(&branch("x")) && !any.matches(&branch("a/b")));
        let question = BranchGlob::parse("release-?").unwrap();
        assert!(question.matches(&branch("release-1")) && !question.matches(&branch("release-10")));
        assert!(BranchGlob::parse("").is_err() && BranchGlob::parse("a b").is_err());
    }

    #[test]
    fn environment_names_from_branches() {
        let name = |b: &str, taken: &[&str]| {
            let taken: Vec<ResourceName> =
                taken.iter().map(|t| ResourceName::parse(t).unwrap()).collect();
            branch_environment_name(&branch(b), &taken).to_string()
        };
        assert_eq!(name("feature/Login_Page", &[]), "feature-login-page");
        assert_eq!(name("feature/-x", &[]), "feature-x");
        assert_eq!(name("123-fix", &[]), "b-123-fix");
        assert_eq!(name("feature/login", &["feature-login"]), "feature-login-2");
        assert_eq!(name("feature/login", &["feature-login", "feature-login-2"]), "feature-login-3");
        let long = format!("feature/{}", "a".repeat(80));
        let derived = name(&long, &[]);
        assert_eq!(derived.len(), MAX_BRANCH_ENVIRONMENT_NAME);
        let taken = [derived.as_str()];
        let second = name(&long, &taken);
        assert!(second.ends_with("-2") && second.len() == MAX_BRANCH_ENVIRONMENT_NAME);
    }
}
