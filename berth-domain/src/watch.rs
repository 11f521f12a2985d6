//! Watch paths of a monorepo application: globs relative to the repository root that say
//! which changed files should redeploy it (`services/api/**`), with `!` excluding
//! (`!**/*.md`). A push deploys an application only when a changed file matches one of
//! its include patterns and none of its exclude patterns.
//!
//! Glob syntax: `*` matches within one path segment, `?` one character of a segment, `**`
//! any number of segments (including none). A pattern also matches every file below a
//! directory it matches, so `services/api` and `services/api/**` say the same.

use serde::{Deserialize, Serialize};

use crate::names::NameError;

/// One validated pattern, as the user wrote it (`!` prefix included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WatchPattern(String);

impl WatchPattern {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let fail = |reason: &str| Err(NameError::new_pub("watch path", value, reason));
        let trimmed = value.trim();
        let glob = trimmed.strip_prefix('!').unwrap_or(trimmed);
        let glob = glob.trim_start_matches("./");
        if glob.is_empty() || glob.len() > 1024 || glob.chars().any(char::is_control) {
            return fail(
                "give a glob relative to the repository root, e.g. services/api/** or !**/*.md",
            );
        }
        if glob.starts_with('/') || glob.split('/').any(|segment| segment == "..") {
            return fail(
                "use a path relative to the repository root, without a leading '/' or '..'",
            );
        }
        let normalised = glob.trim_end_matches('/');
        let prefix = if trimmed.starts_with('!') { "!" } else { "" };
        Ok(Self(format!("{prefix}{normalised}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_exclude(&self) -> bool {
        self.0.starts_with('!')
    }

    fn glob(&self) -> &str {
        self.0.strip_prefix('!').unwrap_or(&self.0)
    }
}

impl std::fmt::Display for WatchPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a comma-separated list (`services/api/**,!**/*.md`); an empty string is the
/// empty list (back to the default).
pub fn parse_watch_paths(values: &[String]) -> Result<Vec<WatchPattern>, NameError> {
    let patterns: Vec<WatchPattern> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(WatchPattern::parse)
        .collect::<Result<_, _>>()?;
    if patterns.len() > 64 {
        return Err(NameError::new_pub(
            "watch paths",
            &patterns.len().to_string(),
            "give at most 64 patterns",
        ));
    }
    Ok(patterns)
}

/// The effective watch paths: the given patterns, or everything under the root path when
/// none include anything (only excludes, or nothing at all).
pub fn effective_patterns(patterns: &[WatchPattern], root_path: &str) -> Vec<WatchPattern> {
    let mut effective: Vec<WatchPattern> = patterns.to_vec();
    if !patterns.iter().any(|p| !p.is_exclude()) {
        let root = root_path.trim_matches('/');
        let default =
            if root.is_empty() || root == "." { "**".to_owned() } else { root.to_owned() };
        effective.insert(0, WatchPattern(default));
    }
    effective
}

/// The first changed file that the patterns watch, if any.
pub fn first_watched_file<'a>(
    patterns: &[WatchPattern],
    root_path: &str,
    changed_files: &'a [String],
) -> Option<&'a String> {
    let patterns = effective_patterns(patterns, root_path);
    changed_files.iter().find(|file| is_watched(&patterns, file))
}

fn is_watched(patterns: &[WatchPattern], file: &str) -> bool {
    let included =
        patterns.iter().filter(|p| !p.is_exclude()).any(|p| matches_path(p.glob(), file));
    included && !patterns.iter().filter(|p| p.is_exclude()).any(|p| matches_path(p.glob(), file))
}

/// Whether `glob` matches `path` or one of its parent directories.
fn matches_path(glob: &str, path: &str) -> bool {
    let pattern: Vec<&str> = glob.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    (1..=segments.len()).any(|len| match_segments(&pattern, &segments[..len]))
}

/// `**` segments match any number of path segments; the others one segment each.
fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    wildcard_match(
        pattern,
        path,
        |p| *p == "**",
        |p, segment| match_segment(p.as_bytes(), segment.as_bytes()),
    )
}

/// `*` and `?` within one segment.
fn match_segment(pattern: &[u8], text: &[u8]) -> bool {
    wildcard_match(pattern, text, |p| *p == b'*', |p, c| *p == b'?' || p == c)
}

/// Glob matching where a star matches any run of items: greedy, going back only to the
/// last star, so it takes at most `pattern.len() * text.len()` steps (a recursive matcher
/// is exponential in the number of stars, and the file names come from a pushed commit).
fn wildcard_match<P, T>(
    pattern: &[P],
    text: &[T],
    is_star: impl Fn(&P) -> bool,
    matches_one: impl Fn(&P, &T) -> bool,
) -> bool {
    let (mut at_pattern, mut at_text) = (0, 0);
    // The last star seen, and the position in the text it is tried from next.
    let mut last_star: Option<(usize, usize)> = None;
    while at_text < text.len() {
        match pattern.get(at_pattern) {
            Some(item) if is_star(item) => {
                last_star = Some((at_pattern, at_text));
                at_pattern += 1;
            }
            Some(item) if matches_one(item, &text[at_text]) => {
                at_pattern += 1;
                at_text += 1;
            }
            _ => match last_star {
                // Let the last star take one more item and try again after it.
                Some((star, from)) => {
                    last_star = Some((star, from + 1));
                    at_pattern = star + 1;
                    at_text = from + 1;
                }
                None => return false,
            },
        }
    }
    pattern[at_pattern..].iter().all(is_star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(values: &str) -> Vec<WatchPattern> {
        parse_watch_paths(&[values.to_owned()]).unwrap()
    }

    fn changed(files: &[&str]) -> Vec<String> {
        files.iter().map(|f| (*f).to_owned()).collect()
    }

    #[test]
    fn includes_and_excludes() {
        let watch = patterns("services/api/**,!**/*.md");
        let hit = changed(&["README.md", "services/api/main.go"]);
        assert_eq!(first_watched_file(&watch, ".", &hit), Some(&"services/api/main.go".to_owned()));
        let docs_only = changed(&["services/api/README.md", "services/web/index.html"]);
        assert_eq!(first_watched_file(&watch, ".", &docs_only), None);
    }

    #[test]
    fn the_default_is_the_root_path() {
        let files = changed(&["services/web/index.html"]);
        assert!(first_watched_file(&[], "services/web", &files).is_some());
        assert!(first_watched_file(&[], "services/api", &files).is_none());
        assert!(first_watched_file(&[], ".", &files).is_some());
        // Only excludes: still relative to the root path.
        let watch = patterns("!**/*.html");
        assert!(first_watched_file(&watch, "services/web", &files).is_none());
    }

    #[test]
    fn single_star_stays_within_a_segment() {
        let watch = patterns("libs/*.rs");
        assert!(first_watched_file(&watch, ".", &changed(&["libs/a.rs"])).is_some());
        assert!(first_watched_file(&watch, ".", &changed(&["libs/x/a.rs"])).is_none());
        let watch = patterns("shared,lib?/x");
        assert!(first_watched_file(&watch, ".", &changed(&["shared/deep/file"])).is_some());
        assert!(first_watched_file(&watch, ".", &changed(&["lib1/x/y"])).is_some());
    }

    #[test]
    fn many_stars_match_in_linear_steps() {
        // A recursive matcher takes billions of steps here; this one a few thousand.
        let stars = patterns(&format!("{}b,{}x", "*a".repeat(15), "**/".repeat(15)));
        let long_name = "a".repeat(60);
        let deep_path = vec!["d"; 60].join("/");
        let files = changed(&[long_name.as_str(), deep_path.as_str()]);
        assert_eq!(first_watched_file(&stars, ".", &files), None);
        assert!(first_watched_file(&stars, ".", &changed(&[&format!("{long_name}b")])).is_some());
        assert!(first_watched_file(&stars, ".", &changed(&[&format!("{deep_path}/x")])).is_some());
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["/abs/**", "../up", "!", "a/../b"] {
            assert!(WatchPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(WatchPattern::parse("./services/api/").unwrap().as_str(), "services/api");
        assert_eq!(WatchPattern::parse("!docs/").unwrap().as_str(), "!docs");
        assert!(parse_watch_paths(&[String::new()]).unwrap().is_empty());
    }
}
