//! The build context: the directory sent to the engine as a tar archive, minus what the
//! context's `.dockerignore` excludes.
//!
//! Guarantees:
//! - Symbolic links are archived as links, never followed: a repository cannot make the
//!   build read a host file through a link (and the engine resolves links inside the
//!   context only).
//! - The context directory itself must resolve inside the checkout (a `root_path` that is a
//!   link out of the repository is refused).
//! - Owners are reset to root (as `docker build` does); modes and modification times are
//!   kept.
//! - Sockets, FIFOs and device files are skipped.
//!
//! `.dockerignore` follows Docker's rules for the common cases: `#` comments, `*`, `?`,
//! `[...]`, `**` for any number of directories, `!` exceptions where the last matching line
//! wins, a pattern matching a directory excludes everything below it, and the Dockerfile
//! and `.dockerignore` are always sent. Not supported: the BuildKit-only per-Dockerfile
//! ignore files (`Dockerfile.dockerignore`).
//!
//! The image's labels are written into the archive as one `LABEL` line appended to a copy
//! of the Dockerfile ([`GENERATED_DOCKERFILE`]) instead of being passed as build options:
//! the legacy builder turns each label option into a step of its own, and one step is
//! measurably faster than three.
//!
//! The archive is built in memory because bollard 0.18 takes the build body as one buffer.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The name, at the root of the archived context, of the Dockerfile the engine builds:
/// the repository's Dockerfile plus the image's labels. A repository file of the same name
/// is left out of the archive.
pub(crate) const GENERATED_DOCKERFILE: &str = ".berth-build.Dockerfile";

/// Where the context lies and which Dockerfile it builds.
pub(crate) struct ContextSource<'a> {
    pub(crate) checkout_dir: &'a Path,
    pub(crate) context_dir: &'a Path,
    /// Relative to the context, `/`-separated.
    pub(crate) dockerfile: &'a str,
    /// Labels the built image carries.
    pub(crate) image_labels: &'a BTreeMap<String, String>,
}

/// The archived context.
pub(crate) struct ArchivedContext {
    pub(crate) tar: Vec<u8>,
    pub(crate) entries: usize,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ContextError {
    #[error("the build context {0} resolves outside the repository")]
    OutsideCheckout(String),
    #[error("the Dockerfile {0} is a link leading outside the repository")]
    DockerfileOutsideCheckout(String),
    #[error("cannot read the build context: {0}")]
    Io(#[from] io::Error),
}

pub(crate) fn archive(source: &ContextSource<'_>) -> Result<ArchivedContext, ContextError> {
    let checkout = source.checkout_dir.canonicalize()?;
    let context = source.context_dir.canonicalize()?;
    if !context.starts_with(&checkout) {
        return Err(ContextError::OutsideCheckout(source.context_dir.display().to_string()));
    }
    let rules = match fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => IgnoreRules::parse(&text),
        Err(error) if error.kind() == io::ErrorKind::NotFound => IgnoreRules::default(),
        Err(error) => return Err(error.into()),
    };
    let dockerfile = context.join(clean(source.dockerfile)).canonicalize()?;
    if !dockerfile.starts_with(&checkout) {
        return Err(ContextError::DockerfileOutsideCheckout(source.dockerfile.to_owned()));
    }
    let generated = labelled_dockerfile(&fs::read_to_string(&dockerfile)?, source.image_labels);
    let always_sent = [clean(source.dockerfile), ".dockerignore".to_owned()];

    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut entries = 0;
    let mut pending: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let mut children: Vec<_> =
            fs::read_dir(context.join(&relative_dir))?.collect::<Result<_, _>>()?;
        children.sort_by_key(|entry| entry.file_name());
        for child in children {
            let relative = relative_dir.join(child.file_name());
            let Some(name) = relative.to_str().map(str::to_owned) else {
                // Docker cannot name such a file in a Dockerfile either.
                tracing::warn!(path = %relative.display(), "skipping a file whose name is not UTF-8");
                continue;
            };
            if name == GENERATED_DOCKERFILE {
                continue;
            }
            let metadata = fs::symlink_metadata(child.path())?;
            let ignored = rules.is_ignored(&name) && !always_sent.contains(&name);
            if metadata.is_dir() {
                // An ignored directory may still hold re-included files (`!` lines).
                if !ignored || rules.has_exceptions() {
                    pending.push(relative.clone());
                }
                if !ignored {
                    append(&mut builder, &child.path(), &name, &metadata)?;
                    entries += 1;
                }
            } else if !ignored && append(&mut builder, &child.path(), &name, &metadata)? {
                entries += 1;
            }
        }
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(generated.len() as u64);
    builder.append_data(&mut header, GENERATED_DOCKERFILE, generated.as_bytes())?;
    let tar = builder.into_inner()?;
    Ok(ArchivedContext { tar, entries: entries + 1 })
}

/// The Dockerfile with one `LABEL` instruction appended, which applies to the final stage.
/// Keys and values are double-quoted with `\` and `"` escaped; they are Berth's own label
/// names and ids, never user input.
fn labelled_dockerfile(dockerfile: &str, labels: &BTreeMap<String, String>) -> String {
    let mut text = dockerfile.to_owned();
    if labels.is_empty() {
        return text;
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("LABEL");
    for (key, value) in labels {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        text.push_str(&format!(" {}={}", quote(key), quote(value)));
    }
    text.push('\n');
    text
}

/// Appends one entry; returns false for file types a build context cannot hold.
fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &Path,
    name: &str,
    metadata: &fs::Metadata,
) -> io::Result<bool> {
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(metadata, tar::HeaderMode::Complete);
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("")?;
    header.set_groupname("")?;
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        let target = fs::read_link(path)?;
        header.set_size(0);
        builder.append_link(&mut header, name, target)?;
    } else if file_type.is_dir() {
        header.set_size(0);
        builder.append_data(&mut header, format!("{name}/"), io::empty())?;
    } else if file_type.is_file() {
        builder.append_data(&mut header, name, fs::File::open(path)?)?;
    } else {
        tracing::warn!(path = %path.display(), "skipping a special file in the build context");
        return Ok(false);
    }
    Ok(true)
}

/// Normalises a relative path the way `.dockerignore` patterns are: no leading `/` or
/// `./`, no empty or `.` components, no trailing `/`.
fn clean(path: &str) -> String {
    path.split('/').filter(|part| !part.is_empty() && *part != ".").collect::<Vec<_>>().join("/")
}

#[derive(Debug)]
struct IgnoreRule {
    pattern: Vec<char>,
    exception: bool,
}

/// The parsed `.dockerignore` of a context.
#[derive(Debug, Default)]
pub(crate) struct IgnoreRules {
    rules: Vec<IgnoreRule>,
}

impl IgnoreRules {
    pub(crate) fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| {
                let (exception, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let pattern = clean(pattern);
                (!pattern.is_empty())
                    .then(|| IgnoreRule { pattern: pattern.chars().collect(), exception })
            })
            .collect();
        Self { rules }
    }

    fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|rule| rule.exception)
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the context.
    /// The last matching line decides; a line matching a directory also matches everything
    /// below it, so `build` excludes `build/a/b` (Docker's `MatchesOrParentMatches`).
    pub(crate) fn is_ignored(&self, path: &str) -> bool {
        let path = clean(path);
        let text: Vec<char> = path.chars().collect();
        // The path itself and each of its parent directories.
        let candidates: Vec<&[char]> = text
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .map(|(index, _)| &text[..index])
            .chain(std::iter::once(text.as_slice()))
            .collect();
        let mut ignored = false;
        for rule in &self.rules {
            if candidates.iter().any(|candidate| glob(&rule.pattern, candidate)) {
                ignored = !rule.exception;
            }
        }
        ignored
    }
}

/// Go's `filepath.Match` plus Docker's `**` (any number of directories).
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') if pattern.get(1) == Some(&'*') => {
            let rest = &pattern[2..];
            // `**/` may also match no directory at all.
            if rest.first() == Some(&'/') && glob(&rest[1..], text) {
                return true;
            }
            (0..=text.len()).any(|skip| glob(rest, &text[skip..]))
        }
        Some('*') => {
            let rest = &pattern[1..];
            for skip in 0..=text.len() {
                if glob(rest, &text[skip..]) {
                    return true;
                }
                if text.get(skip) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => match text.first() {
            Some(c) if *c != '/' => glob(&pattern[1..], &text[1..]),
            _ => false,
        },
        Some('[') => {
            let Some(&c) = text.first() else { return false };
            match class(&pattern[1..], c) {
                Some((true, after)) if c != '/' => glob(&pattern[1 + after..], &text[1..]),
                _ => false,
            }
        }
        Some('\\') if pattern.len() > 1 => {
            text.first() == Some(&pattern[1]) && glob(&pattern[2..], &text[1..])
        }
        Some(p) => text.first() == Some(p) && glob(&pattern[1..], &text[1..]),
    }
}

/// Matches `c` against a character class whose text starts after `[`; returns whether it
/// matched and how many pattern characters the class used (including `]`), or `None` for
/// a malformed class (which matches nothing, as in Go).
fn class(pattern: &[char], c: char) -> Option<(bool, usize)> {
    let mut index = 0;
    let negated = matches!(pattern.first(), Some('^' | '!'));
    if negated {
        index += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let low = *pattern.get(index)?;
        if low == ']' && !first {
            return Some((matched != negated, index + 1));
        }
        first = false;
        let low = if low == '\\' {
            index += 1;
            *pattern.get(index)?
        } else {
            low
        };
        index += 1;
        let mut high = low;
        if pattern.get(index) == Some(&'-') && pattern.get(index + 1).is_some_and(|h| *h != ']') {
            high = pattern[index + 1];
            index += 2;
        }
        if low <= c && c <= high {
            matched = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignored(rules: &str, paths: &[&str]) -> Vec<String> {
        let rules = IgnoreRules::parse(rules);
        paths.iter().filter(|path| rules.is_ignored(path)).map(|path| (*path).to_owned()).collect()
    }

    #[test]
    fn dockerignore_patterns() {
        let rules = "# comment\n\n/target\n*.log\n**/node_modules\ndocs/*.md\n!docs/keep.md\nsecret?.txt\n[ab].bin\n";
        let paths = [
            "target",
            "target/debug/app",
            "src/target",
            "app.log",
            "src/app.log",
            "node_modules/x",
            "web/node_modules/y/z",
            "docs/a.md",
            "docs/keep.md",
            "docs/sub/b.md",
            "secret1.txt",
            "secret12.txt",
            "a.bin",
            "c.bin",
            "src/main.rs",
        ];
        assert_eq!(
            ignored(rules, &paths),
            [
                "target",
                "target/debug/app",
                "app.log",
                "node_modules/x",
                "web/node_modules/y/z",
                "docs/a.md",
                "secret1.txt",
                "a.bin",
            ]
        );
    }

    #[test]
    fn last_matching_line_wins() {
        assert_eq!(
            ignored("*\n!src\nsrc/*.tmp\n", &["a", "src/x.rs", "src/y.tmp"]),
            ["a", "src/y.tmp"]
        );
        assert_eq!(ignored("**/*.o\n", &["a.o", "x/y/b.o", "b.c"]), ["a.o", "x/y/b.o"]);
        assert_eq!(ignored("[!a]*\n", &["abc", "bcd"]), ["bcd"]);
    }

    #[test]
    fn archive_skips_ignored_files_and_keeps_links_as_links() {
        let checkout = tempfile::tempdir().unwrap();
        let root = checkout.path();
        fs::create_dir_all(root.join("app/target/deep")).unwrap();
        fs::write(root.join("app/Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(root.join("app/.dockerignore"), "target\nDockerfile\n*.secret\n").unwrap();
        fs::write(root.join("app/main.txt"), "hello").unwrap();
        fs::write(root.join("app/key.secret"), "x").unwrap();
        fs::write(root.join("app/target/deep/big"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("app/passwd")).unwrap();

        let archived = archive(&ContextSource {
            checkout_dir: root,
            context_dir: &root.join("app"),
            dockerfile: "./Dockerfile",
            image_labels: &BTreeMap::from([("berth.project".to_owned(), "p-1".to_owned())]),
        })
        .unwrap();
        let mut names = Vec::new();
        let mut reader = tar::Archive::new(archived.tar.as_slice());
        for entry in reader.entries().unwrap() {
            let entry = entry.unwrap();
            let kind = entry.header().entry_type();
            let link = entry.link_name().unwrap().map(|l| format!(" -> {}", l.display()));
            names.push(format!(
                "{}{}{}",
                entry.path().unwrap().display(),
                if kind.is_dir() { "/" } else { "" },
                link.unwrap_or_default()
            ));
            assert_eq!(entry.header().uid().unwrap(), 0);
        }
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "main.txt",
                "passwd -> /etc/passwd",
                GENERATED_DOCKERFILE
            ]
        );
        assert_eq!(archived.entries, 5);
    }

    #[test]
    fn a_context_linked_out_of_the_checkout_is_refused() {
        let checkout = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), checkout.path().join("app")).unwrap();
        let result = archive(&ContextSource {
            checkout_dir: checkout.path(),
            context_dir: &checkout.path().join("app"),
            dockerfile: "Dockerfile",
            image_labels: &BTreeMap::new(),
        });
        assert!(matches!(result, Err(ContextError::OutsideCheckout(_))));
    }

    #[test]
    fn a_dockerfile_linked_out_of_the_checkout_is_refused() {
        let checkout = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("Dockerfile"),
            checkout.path().join("Dockerfile"),
        )
        .unwrap();
        let result = archive(&ContextSource {
            checkout_dir: checkout.path(),
            context_dir: checkout.path(),
            dockerfile: "Dockerfile",
            image_labels: &BTreeMap::new(),
        });
        assert!(matches!(result, Err(ContextError::DockerfileOutsideCheckout(_))));
    }

    #[test]
    fn the_labels_become_one_instruction_after_the_final_stage() {
        let labels = BTreeMap::from([
            ("berth.managed-by".to_owned(), "berth".to_owned()),
            ("berth.project".to_owned(), "a\"b".to_owned()),
        ]);
        assert_eq!(
            labelled_dockerfile("FROM a AS build\nFROM b\nCMD [\"x\"]", &labels),
            "FROM a AS build\nFROM b\nCMD [\"x\"]\nLABEL \"berth.managed-by\"=\"berth\" \"berth.project\"=\"a\\\"b\"\n"
        );
        assert_eq!(labelled_dockerfile("FROM a\n", &BTreeMap::new()), "FROM a\n");
    }
}
