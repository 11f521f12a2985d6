//! Dependency order of an environment's applications: which names an application may
//! depend on, refusing cycles (naming them), and the waves a deployment runs in.
//!
//! Databases always come first (they form wave zero in a deployment and never depend on
//! anything), so only applications appear in the graph; a dependency on a database is
//! satisfied before the first application starts. Everything here is pure: the API calls
//! [`check_dependencies`] before it stores a spec, the engine and the dry run call
//! [`application_waves`].

use std::collections::{BTreeMap, BTreeSet};

/// One application and the names it declares in `depends_on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyNode {
    pub name: String,
    pub depends_on: Vec<String>,
}

/// Why a set of `depends_on` declarations is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    #[error("{application} depends on itself; remove {application} from its --depends-on")]
    SelfDependency { application: String },
    #[error("{application} depends on {unknown:?}, which is neither an application nor a database of this environment; known names: {known}")]
    UnknownName { application: String, unknown: String, known: String },
    #[error("dependency cycle: {}; remove one of these dependencies with `berth application update --depends-on`", cycle.join(" → "))]
    Cycle {
        /// The names along the cycle, the first repeated at the end (`a → b → a`).
        cycle: Vec<String>,
    },
}

/// Checks every application's `depends_on`: each name must be another application or a
/// database of the environment, and the applications must not depend on each other in a
/// cycle.
pub fn check_dependencies(
    applications: &[DependencyNode],
    databases: &[String],
) -> Result<(), DependencyError> {
    let application_names: BTreeSet<&str> = applications.iter().map(|a| a.name.as_str()).collect();
    let database_names: BTreeSet<&str> = databases.iter().map(String::as_str).collect();
    for application in applications {
        for dependency in &application.depends_on {
            if dependency == &application.name {
                return Err(DependencyError::SelfDependency {
                    application: application.name.clone(),
                });
            }
            if !application_names.contains(dependency.as_str())
                && !database_names.contains(dependency.as_str())
            {
                let known: Vec<&str> = application_names
                    .iter()
                    .chain(database_names.iter())
                    .copied()
                    .filter(|n| *n != application.name)
                    .collect();
                return Err(DependencyError::UnknownName {
                    application: application.name.clone(),
                    unknown: dependency.clone(),
                    known: if known.is_empty() { "(none)".to_owned() } else { known.join(", ") },
                });
            }
        }
    }
    match find_cycle(applications) {
        Some(cycle) => Err(DependencyError::Cycle { cycle }),
        None => Ok(()),
    }
}

/// Groups applications into waves: every application's dependencies (among the given
/// applications) are in earlier waves. Names that are not among the applications
/// (databases, applications left out of this deployment) are ignored. Within a wave the
/// input order is kept, so the result is deterministic.
pub fn application_waves(
    applications: &[DependencyNode],
) -> Result<Vec<Vec<String>>, DependencyError> {
    if let Some(cycle) = find_cycle(applications) {
        return Err(DependencyError::Cycle { cycle });
    }
    let present: BTreeSet<&str> = applications.iter().map(|a| a.name.as_str()).collect();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut waves = Vec::new();
    while placed.len() < applications.len() {
        let wave: Vec<&str> = applications
            .iter()
            .filter(|a| !placed.contains(a.name.as_str()))
            .filter(|a| {
                a.depends_on
                    .iter()
                    .filter(|d| present.contains(d.as_str()))
                    .all(|d| placed.contains(d.as_str()))
            })
            .map(|a| a.name.as_str())
            .collect();
        // No cycle (checked above), so every round places at least one application; the
        // guard only protects against a duplicated name.
        if wave.is_empty() {
            break;
        }
        placed.extend(wave.iter().copied());
        waves.push(wave.into_iter().map(str::to_owned).collect());
    }
    Ok(waves)
}

/// The applications that depend on `failed`, directly or through others (not `failed`
/// itself), in input order.
pub fn dependents_of(applications: &[DependencyNode], failed: &str) -> Vec<String> {
    let mut affected: BTreeSet<&str> = BTreeSet::from([failed]);
    loop {
        let before = affected.len();
        for application in applications {
            if application.depends_on.iter().any(|d| affected.contains(d.as_str())) {
                affected.insert(application.name.as_str());
            }
        }
        if affected.len() == before {
            break;
        }
    }
    applications
        .iter()
        .map(|a| a.name.clone())
        .filter(|name| name != failed && affected.contains(name.as_str()))
        .collect()
}

/// A cycle among the applications, as names with the first repeated at the end.
fn find_cycle(applications: &[DependencyNode]) -> Option<Vec<String>> {
    let edges: BTreeMap<&str, Vec<&str>> = applications
        .iter()
        .map(|a| (a.name.as_str(), a.depends_on.iter().map(String::as_str).collect()))
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        InProgress,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    // Iterative depth-first search; `path` is the chain being explored.
    for start in applications.iter().map(|a| a.name.as_str()) {
        if marks.contains_key(start) {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::InProgress);
        while let Some((node, next_edge)) = path.last().copied() {
            let targets = edges.get(node).map(Vec::as_slice).unwrap_or_default();
            match targets.get(next_edge) {
                None => {
                    marks.insert(node, Mark::Done);
                    path.pop();
                }
                Some(target) => {
                    if let Some(last) = path.last_mut() {
                        last.1 += 1;
                    }
                    if !edges.contains_key(target) {
                        continue;
                    }
                    match marks.get(target) {
                        Some(Mark::InProgress) => {
                            let from = path.iter().position(|(n, _)| n == target).unwrap_or(0);
                            let mut cycle: Vec<String> =
                                path[from..].iter().map(|(n, _)| (*n).to_owned()).collect();
                            cycle.push((*target).to_owned());
                            return Some(cycle);
                        }
                        Some(Mark::Done) => {}
                        None => {
                            marks.insert(target, Mark::InProgress);
                            path.push((target, 0));
                        }
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, depends_on: &[&str]) -> DependencyNode {
        DependencyNode {
            name: name.to_owned(),
            depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn waves_follow_dependencies_and_keep_input_order() {
        let apps = [
            node("web", &["api"]),
            node("api", &["db", "auth"]),
            node("auth", &[]),
            node("docs", &[]),
            node("worker", &["api"]),
        ];
        let waves = application_waves(&apps).unwrap();
        assert_eq!(
            waves,
            vec![vec!["auth", "docs"], vec!["api"], vec!["web", "worker"]]
                .into_iter()
                .map(|w| w.into_iter().map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn names_outside_the_deployment_are_ignored_for_waves() {
        let waves = application_waves(&[node("web", &["api", "db"])]).unwrap();
        assert_eq!(waves, vec![vec!["web".to_owned()]]);
    }

    #[test]
    fn a_cycle_is_named_in_order() {
        let apps = [node("a", &["b"]), node("b", &["c"]), node("c", &["a"]), node("d", &[])];
        let error = check_dependencies(&apps, &[]).unwrap_err();
        assert_eq!(
            error,
            DependencyError::Cycle { cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()] }
        );
        assert!(error.to_string().starts_with("dependency cycle: a → b → c → a;"), "{error}");
        assert!(application_waves(&apps).is_err());
    }

    #[test]
    fn unknown_names_and_self_dependencies_are_refused() {
        let databases = vec!["db".to_owned()];
        let error = check_dependencies(&[node("api", &["cache"])], &databases).unwrap_err();
        assert!(error.to_string().contains("\"cache\""), "{error}");
        assert!(error.to_string().contains("known names: db"), "{error}");
        let error = check_dependencies(&[node("api", &["api"])], &databases).unwrap_err();
        assert_eq!(error, DependencyError::SelfDependency { application: "api".into() });
        assert!(
            check_dependencies(&[node("api", &["db"]), node("web", &["api"])], &databases).is_ok()
        );
    }

    #[test]
    fn dependents_are_found_transitively() {
        let apps =
            [node("api", &[]), node("web", &["api"]), node("admin", &["web"]), node("docs", &[])];
        assert_eq!(dependents_of(&apps, "api"), vec!["web".to_owned(), "admin".to_owned()]);
        assert!(dependents_of(&apps, "docs").is_empty());
    }
}
