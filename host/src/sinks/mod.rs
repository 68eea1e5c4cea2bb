//! Outputs: where a batch's records leave Sluice. [`Sinks::print`] writes
//! Spark's `print()` block to stdout; [`Sinks::save_as_text_files`] writes a
//! directory per batch through `object_store`, committing each part file by
//! rename and the batch by a `_SUCCESS` marker, as Hadoop's output committer
//! does. Both format records with [`format_lines`] (Spark's text form:
//! `(word,3)`).
//!
//! A guest's `foreach_partition` is not here: it is a guest call, run by
//! `exec`.

use std::io::Write;
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::batching::BatchTime;
use crate::data::{Codec, CodecError, Rows};

/// Why an output failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A record did not match its codec.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Writing to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] std::io::Error),
    /// The output location is not a usable path or URL.
    #[error("invalid output location `{location}`: {reason}")]
    Location {
        /// The prefix as given.
        location: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The object store refused a write.
    #[error("cannot write `{path}`: {source}")]
    Store {
        /// The object written.
        path: String,
        /// The store's error.
        source: object_store::Error,
    },
}

/// The outputs of a job.
pub struct Sinks {
    runtime: tokio::runtime::Handle,
}

impl Sinks {
    /// Outputs doing their I/O on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle) -> Sinks {
        Sinks { runtime }
    }

    /// Spark's `print(n)`: a header with the batch time, the first `n`
    /// records, `...` when there are more, and an empty line.
    pub fn print(
        &self,
        time: BatchTime,
        codec: &Codec,
        partitions: &[Rows],
        n: usize,
    ) -> Result<(), SinkError> {
        let mut text = format!(
            "-------------------------------------------\nTime: {} ms\n-------------------------------------------\n",
            time.as_millis()
        );
        let mut records = partitions.iter().flat_map(|p| p.iter());
        for record in records.by_ref().take(n) {
            codec.format_into(record, &mut text)?;
            text.push('\n');
        }
        if records.next().is_some() {
            text.push_str("...\n");
        }
        text.push('\n');
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }

    /// Spark's `saveAsTextFiles(prefix, suffix)`: the directory
    /// `<prefix>-<batch ms>[.<suffix>]` with one `part-NNNNN` file per
    /// partition (the lines [`format_lines`] made), then `_SUCCESS`. Each part
    /// is written as `_temporary-part-NNNNN` (a name readers skip, as Hadoop's
    /// do) and renamed into place, so a reader never sees a partial part, and
    /// one that waits for `_SUCCESS` never sees a partial batch.
    pub fn save_as_text_files(
        &self,
        time: BatchTime,
        prefix: &str,
        suffix: Option<&str>,
        parts: Vec<Vec<u8>>,
    ) -> Result<(), SinkError> {
        let location = match suffix {
            Some(s) if !s.is_empty() => format!("{prefix}-{}.{s}", time.as_millis()),
            _ => format!("{prefix}-{}", time.as_millis()),
        };
        let (store, dir) = open_location(&location)?;
        self.runtime.block_on(async {
            let writes = parts.into_iter().enumerate().map(|(i, bytes)| {
                let store = Arc::clone(&store);
                let temporary = dir.clone().join(format!("_temporary-part-{i:05}"));
                let finished = dir.clone().join(format!("part-{i:05}"));
                async move {
                    store
                        .put(&temporary, PutPayload::from(bytes))
                        .await
                        .map_err(|source| SinkError::Store {
                            path: temporary.to_string(),
                            source,
                        })?;
                    store
                        .rename(&temporary, &finished)
                        .await
                        .map_err(|source| SinkError::Store {
                            path: finished.to_string(),
                            source,
                        })
                }
            });
            futures::future::try_join_all(writes).await?;
            let success = dir.clone().join("_SUCCESS");
            store
                .put(&success, PutPayload::default())
                .await
                .map_err(|source| SinkError::Store {
                    path: success.to_string(),
                    source,
                })?;
            Ok(())
        })
    }
}

/// Formats each record of `rows` on its own line, as Spark's text outputs do.
pub fn format_lines(codec: &Codec, rows: &Rows) -> Result<Vec<u8>, SinkError> {
    let mut text = String::with_capacity(rows.byte_len() + 4 * rows.len());
    for record in rows {
        codec.format_into(record, &mut text)?;
        text.push('\n');
    }
    Ok(text.into_bytes())
}

/// The store and path of an output location (see [`crate::storage::open`]).
pub fn open_location(location: &str) -> Result<(Arc<dyn ObjectStore>, StorePath), SinkError> {
    crate::storage::open(location, &Default::default()).map_err(|e| match e {
        crate::storage::StorageError::Location { location, reason } => {
            SinkError::Location { location, reason }
        }
        other => SinkError::Location {
            location: location.to_string(),
            reason: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_batches_have_parts_and_a_success_marker() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sinks = Sinks::new(runtime.handle().clone());
        let prefix = dir.path().join("out").to_str().unwrap().to_string();
        let codec = Codec::String;
        let parts = vec![
            format_lines(&codec, &["a", "b"].into_iter().collect()).unwrap(),
            format_lines(&codec, &Rows::new()).unwrap(),
        ];
        sinks
            .save_as_text_files(BatchTime(2000), &prefix, Some("txt"), parts)
            .unwrap();
        let batch = dir.path().join("out-2000.txt");
        assert_eq!(
            std::fs::read_to_string(batch.join("part-00000")).unwrap(),
            "a\nb\n"
        );
        assert_eq!(
            std::fs::read_to_string(batch.join("part-00001")).unwrap(),
            ""
        );
        assert!(batch.join("_SUCCESS").exists());
        let names: Vec<String> = std::fs::read_dir(&batch)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names.len(),
            3,
            "only the parts and the marker remain: {names:?}"
        );
    }
}
