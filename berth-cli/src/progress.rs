//! Progress shown on stderr while the CLI waits: for a deployment (`deploy --wait`) and for
//! a deletion. On a terminal it is one line rewritten in place; otherwise (logs, CI) it is
//! one line per change, so the output stays readable when captured. The renderers are
//! pure: they take what the server said and the elapsed time and return the text to write.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_api::{Deployment, DeploymentStep};

use crate::output::{format_duration_ms, sanitize};

/// Erases the current terminal line and returns to its start.
const CLEAR_LINE: &str = "\r\u{1b}[2K";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressStyle {
    /// One line rewritten in place (stderr is a terminal).
    UpdatingLine,
    /// One line per change (stderr is a file or a pipe).
    LinePerChange,
}

/// Progress of one deployment.
#[derive(Debug)]
pub(crate) struct DeployProgress {
    style: ProgressStyle,
    /// Last status seen per (application, step).
    seen: BTreeMap<(Option<String>, String), String>,
    drawn: bool,
}

impl DeployProgress {
    pub(crate) fn new(style: ProgressStyle) -> Self {
        DeployProgress { style, seen: BTreeMap::new(), drawn: false }
    }

    /// The text to write to stderr after a new poll (possibly empty).
    pub(crate) fn update(&mut self, deployment: &Deployment, elapsed: Duration) -> String {
        match self.style {
            ProgressStyle::UpdatingLine => {
                self.drawn = true;
                format!("{CLEAR_LINE}{}", current_activity(deployment, elapsed))
            }
            ProgressStyle::LinePerChange => {
                let mut text = String::new();
                for step in &deployment.steps {
                    let key = (step.application.clone(), step.name.clone());
                    if self.seen.get(&key) == Some(&step.status) {
                        continue;
                    }
                    self.seen.insert(key, step.status.clone());
                    text.push_str(&format!("[{:>4}s] {}\n", elapsed.as_secs(), step_change(step)));
                }
                text
            }
        }
    }

    /// Clears the updating line before the final result is printed.
    pub(crate) fn finish(&mut self) -> &'static str {
        if std::mem::take(&mut self.drawn) {
            CLEAR_LINE
        } else {
            ""
        }
    }
}

/// `deploying: build web (12s)`: the step running now, or the deployment's status.
fn current_activity(deployment: &Deployment, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let current = deployment
        .steps
        .iter()
        .rev()
        .find(|step| step.status == "running")
        .or_else(|| deployment.steps.last());
    match current {
        Some(step) if deployment.status == "running" => {
            format!("deploying: {} ({seconds}s)", step_label(step))
        }
        _ => format!("deployment {} ({seconds}s)", sanitize(&deployment.status, false)),
    }
}

/// `build web` or `retire` for a step without an application.
pub(crate) fn step_label(step: &DeploymentStep) -> String {
    match &step.application {
        Some(application) => sanitize(&format!("{} {application}", step.name), false).into_owned(),
        None => sanitize(&step.name, false).into_owned(),
    }
}

fn step_change(step: &DeploymentStep) -> String {
    let label = step_label(step);
    let took =
        step.duration_ms.map(|ms| format!(" in {}", format_duration_ms(ms))).unwrap_or_default();
    let message = step
        .message
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {}", sanitize(m, false)))
        .unwrap_or_default();
    format!("{label}: {}{took}{message}", sanitize(&step.status, false))
}

/// Progress of a deletion: `deleting project "shop"… 4s`.
#[derive(Debug)]
pub(crate) struct DeleteProgress {
    style: ProgressStyle,
    what: String,
    started: bool,
}

impl DeleteProgress {
    pub(crate) fn new(style: ProgressStyle, what: String) -> Self {
        DeleteProgress { style, what, started: false }
    }

    pub(crate) fn update(&mut self, elapsed: Duration) -> String {
        let first = !std::mem::replace(&mut self.started, true);
        match self.style {
            ProgressStyle::UpdatingLine => {
                format!("{CLEAR_LINE}deleting {}... {}s", self.what, elapsed.as_secs())
            }
            ProgressStyle::LinePerChange if first => format!("deleting {}...\n", self.what),
            ProgressStyle::LinePerChange => String::new(),
        }
    }

    pub(crate) fn finish(&mut self) -> &'static str {
        if self.style == ProgressStyle::UpdatingLine && self.started {
            CLEAR_LINE
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn step(
        application: Option<&str>,
        name: &str,
        status: &str,
        ms: Option<u64>,
    ) -> DeploymentStep {
        DeploymentStep {
            application: application.map(Into::into),
            name: name.into(),
            status: status.into(),
            started_at: "2024-05-01T10:00:00Z".into(),
            finished_at: None,
            duration_ms: ms,
            message: (status == "failed").then(|| "exit code 1".into()),
        }
    }

    pub(crate) fn deployment(status: &str, steps: Vec<DeploymentStep>) -> Deployment {
        Deployment {
            id: "d1".into(),
            project: "shop".into(),
            environment: "prod".into(),
            application: None,
            status: status.into(),
            trigger: "user:admin".into(),
            created_at: "2024-05-01T10:00:00Z".into(),
            started_at: None,
            finished_at: None,
            failure: None,
            services: vec![],
            steps,
        }
    }

    #[test]
    fn without_a_terminal_each_step_change_is_one_line() {
        let mut progress = DeployProgress::new(ProgressStyle::LinePerChange);
        let polls = [
            deployment("queued", vec![]),
            deployment("running", vec![step(Some("web"), "clone", "running", None)]),
            deployment("running", vec![step(Some("web"), "clone", "running", None)]),
            deployment(
                "running",
                vec![
                    step(Some("web"), "clone", "succeeded", Some(1_200)),
                    step(Some("web"), "build", "running", None),
                ],
            ),
            deployment(
                "failed",
                vec![
                    step(Some("web"), "clone", "succeeded", Some(1_200)),
                    step(Some("web"), "build", "failed", Some(8_000)),
                ],
            ),
        ];
        let text: String = polls
            .iter()
            .enumerate()
            .map(|(second, d)| progress.update(d, Duration::from_secs(second as u64 * 3)))
            .collect();
        assert_eq!(progress.finish(), "");
        expect![[r#"
            [   3s] clone web: running
            [   9s] clone web: succeeded in 1.2s
            [   9s] build web: running
            [  12s] build web: failed in 8.0s: exit code 1
        "#]]
        .assert_eq(&text);
    }

    #[test]
    fn on_a_terminal_one_line_shows_the_current_step() {
        let mut progress = DeployProgress::new(ProgressStyle::UpdatingLine);
        let running = deployment(
            "running",
            vec![
                step(Some("web"), "clone", "succeeded", Some(5)),
                step(Some("web"), "build", "running", None),
            ],
        );
        let text = progress.update(&running, Duration::from_millis(12_400));
        assert_eq!(text, "\r\u{1b}[2Kdeploying: build web (12s)");
        let queued = progress.update(&deployment("queued", vec![]), Duration::from_secs(1));
        assert_eq!(queued, "\r\u{1b}[2Kdeployment queued (1s)");
        assert_eq!(progress.finish(), CLEAR_LINE);
    }

    #[test]
    fn deletion_progress() {
        let mut line = DeleteProgress::new(ProgressStyle::UpdatingLine, "project \"shop\"".into());
        assert_eq!(
            line.update(Duration::from_secs(2)),
            "\r\u{1b}[2Kdeleting project \"shop\"... 2s"
        );
        let mut lines =
            DeleteProgress::new(ProgressStyle::LinePerChange, "project \"shop\"".into());
        assert_eq!(lines.update(Duration::ZERO), "deleting project \"shop\"...\n");
        assert_eq!(lines.update(Duration::from_secs(1)), "");
    }
}
