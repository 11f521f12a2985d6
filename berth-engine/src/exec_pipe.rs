//! Streams one container command's standard output into another's standard input
//! (a dump into a restore, a base backup into `tar`), used by the dump and the physical
//! database clones.

use std::sync::Arc;

use bytes::Bytes;

use crate::adapters::{Runtime, StreamedExit};
use crate::backups::BackupError;
use crate::engine::EngineError;

/// How a piped pair of commands ended: the bytes that went through and each side's exit.
/// The caller judges the exit codes, naming its own tools.
pub(crate) struct PipedExits {
    pub copied: u64,
    pub producer: StreamedExit,
    pub consumer: StreamedExit,
}

/// Runs `producer_command` in `producer_container` and `consumer_command` in
/// `consumer_container` at the same time, feeding everything the producer writes to the
/// consumer; the consumer's own output is drained and dropped. `output_capacity` is the
/// channel size for the consumer's output.
pub(crate) async fn pipe_between(
    runtime: &Arc<dyn Runtime>,
    producer_container: &str,
    producer_command: Vec<String>,
    consumer_container: &str,
    consumer_command: Vec<String>,
    output_capacity: usize,
) -> Result<PipedExits, BackupError> {
    let (producer_out, mut producer_receiver) = tokio::sync::mpsc::channel::<Bytes>(32);
    let (consumer_in, consumer_receiver) = tokio::sync::mpsc::channel::<Bytes>(32);
    let (consumer_out, mut consumer_out_receiver) =
        tokio::sync::mpsc::channel::<Bytes>(output_capacity);
    let producing = tokio::spawn({
        let runtime = runtime.clone();
        let producer_container = producer_container.to_owned();
        async move {
            runtime.exec_streaming(&producer_container, &producer_command, None, producer_out).await
        }
    });
    let consuming = tokio::spawn({
        let runtime = runtime.clone();
        let consumer_container = consumer_container.to_owned();
        async move {
            runtime
                .exec_streaming(
                    &consumer_container,
                    &consumer_command,
                    Some(consumer_receiver),
                    consumer_out,
                )
                .await
        }
    });
    let drain = tokio::spawn(async move { while consumer_out_receiver.recv().await.is_some() {} });
    let mut copied = 0u64;
    while let Some(chunk) = producer_receiver.recv().await {
        copied += chunk.len() as u64;
        if consumer_in.send(chunk).await.is_err() {
            break;
        }
    }
    drop(consumer_in);
    // Should the consumer stop early, dropping the receiver makes the producer's sends
    // fail (instead of blocking on a full channel forever), so both tasks end.
    drop(producer_receiver);
    let joined =
        |e: tokio::task::JoinError| BackupError::Store(format!("the copy task failed: {e}"));
    let producer = producing.await.map_err(joined)?.map_err(EngineError::from)?;
    let consumer = consuming.await.map_err(joined)?.map_err(EngineError::from)?;
    drain.abort();
    Ok(PipedExits { copied, producer, consumer })
}
