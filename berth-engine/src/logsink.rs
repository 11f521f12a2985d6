//! Deployment logs: a `LogSink` that forwards lines to a writer task which stores them in
//! batches, so adapters can log synchronously without waiting on the database.

use berth_domain::DeploymentId;
use berth_store::Store;
use tokio::sync::mpsc;

use crate::adapters::LogSink;

struct Entry {
    application: Option<String>,
    step: Option<String>,
    line: String,
}

/// Collects log lines of one deployment and writes them to the store.
#[derive(Clone)]
pub(crate) struct DeploymentLog {
    sender: mpsc::UnboundedSender<Entry>,
}

/// A `LogSink` tagged with the application and step the lines belong to.
pub(crate) struct StepLog {
    log: DeploymentLog,
    application: Option<String>,
    step: Option<String>,
}

impl DeploymentLog {
    /// Starts the writer task; it ends when every handle is dropped, after writing all
    /// lines. Await the returned handle to be sure everything is stored.
    pub(crate) fn start(
        store: Store,
        deployment: DeploymentId,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Entry>();
        let writer = tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = receiver.try_recv() {
                    batch.push(more);
                    if batch.len() >= 500 {
                        break;
                    }
                }
                // Group consecutive lines with the same tags into one insert transaction.
                let mut start = 0;
                while start < batch.len() {
                    let mut end = start + 1;
                    while end < batch.len()
                        && batch[end].application == batch[start].application
                        && batch[end].step == batch[start].step
                    {
                        end += 1;
                    }
                    let lines: Vec<String> =
                        batch[start..end].iter().map(|e| e.line.clone()).collect();
                    if let Err(error) = store
                        .append_logs(
                            deployment,
                            batch[start].application.as_deref(),
                            batch[start].step.as_deref(),
                            &lines,
                        )
                        .await
                    {
                        tracing::warn!(%deployment, %error, "could not store deployment log lines");
                    }
                    start = end;
                }
            }
        });
        (Self { sender }, writer)
    }

    pub(crate) fn for_step(&self, application: Option<&str>, step: &str) -> StepLog {
        StepLog {
            log: self.clone(),
            application: application.map(str::to_owned),
            step: Some(step.to_owned()),
        }
    }
}

impl LogSink for StepLog {
    fn line(&self, line: &str) {
        // Keep stored lines bounded: a build can print megabytes on one line.
        let line: String = line.trim_end().chars().take(4000).collect();
        let _ = self.log.sender.send(Entry {
            application: self.application.clone(),
            step: self.step.clone(),
            line,
        });
    }
}
