//! Outputs: where a batch's records leave Sluice, and what each one
//! promises when a batch runs again (a task retried, or a batch re-run after
//! a restart from a checkpoint, with the same time, input and partitions):
//!
//! - [`Sinks::print`] writes Spark's `print()` block to stdout. **At least
//!   once**: a re-run batch is printed again.
//! - [`Sinks::save_as_text_files`] (`text.rs`) writes a directory per batch
//!   (with `std::fs` for a local path, through `object_store` for a URL),
//!   parts then a `_SUCCESS` marker, as Hadoop's output committer does. **Idempotent**: a re-run batch leaves the same
//!   directory with the same content, replaced whole (atomically for a local
//!   path).
//! - [`Sinks::save_to_sqlite`] (`sqlite.rs`) writes each batch's rows in one
//!   SQLite transaction with the batch time it commits, and skips a batch
//!   already committed. **Exactly once.**
//!
//! The text outputs format records with [`format_lines`] (Spark's text form:
//! `(word,3)`). A guest's `foreach_partition` is not here: it is a guest
//! call, run by `exec` (at least once; the guest keys its writes by the
//! idempotency key it is given).

mod sqlite;
mod text;

pub use sqlite::Saved;

use std::io::Write;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;

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
    /// The object store refused a write, a listing or a delete.
    #[error("cannot {action} `{path}`: {source}")]
    Store {
        /// What was done: `write`, `list`, `delete`.
        action: &'static str,
        /// The object or directory.
        path: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// A local file or directory of a text output could not be written.
    #[error("cannot {action} `{path}`: {source}")]
    File {
        /// What was done (`write`, `rename ... to ...`).
        action: String,
        /// The file or directory.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A SQLite output failed; nothing of the batch is committed.
    #[error("cannot {action} table `{table}` of SQLite database {file}: {source}")]
    Sqlite {
        /// The database file.
        file: String,
        /// The table.
        table: String,
        /// What was being done.
        action: &'static str,
        /// SQLite's error.
        source: Box<rusqlite::Error>,
    },
    /// A SQLite table exists with other columns than the stream's layout.
    #[error(
        "table `{table}` of SQLite database {file} has columns ({found}), but this output \
         writes ({expected}): drop or rename the table, or write to another one"
    )]
    SqliteColumns {
        /// The database file.
        file: String,
        /// The table.
        table: String,
        /// The columns the output writes.
        expected: String,
        /// The columns the table has.
        found: String,
    },
    /// A record cannot be stored in a SQLite column.
    #[error("cannot store a record in table `{table}` of SQLite database {file}: {reason}")]
    SqliteValue {
        /// The database file.
        file: String,
        /// The table.
        table: String,
        /// Why.
        reason: String,
    },
}

/// The outputs of a job. The executor calls them from its batch thread, one
/// batch at a time.
pub struct Sinks {
    /// Where object store I/O runs (`block_on`).
    runtime: tokio::runtime::Handle,
    /// One open connection per SQLite database file.
    databases: sqlite::Databases,
    /// The job's `--storage-option`s, for object store URLs.
    options: crate::storage::StorageOptions,
}

impl Sinks {
    /// Outputs doing their object store I/O on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle) -> Sinks {
        Sinks {
            runtime,
            databases: sqlite::Databases::default(),
            options: crate::storage::StorageOptions::default(),
        }
    }

    /// These outputs, opening object store URLs with `options`.
    pub fn with_storage_options(mut self, options: crate::storage::StorageOptions) -> Sinks {
        self.options = options;
        self
    }

    /// Spark's `print(n)`: a header with the batch time, the first `n`
    /// records, `...` when there are more, and an empty line. At least once:
    /// a batch that runs again after a restart is printed again.
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
/// The one place the sinks open a location.
pub fn open_location(
    location: &str,
    options: &crate::storage::StorageOptions,
) -> Result<(Arc<dyn ObjectStore>, StorePath), SinkError> {
    crate::storage::open(location, options).map_err(|e| match e {
        crate::storage::StorageError::Location { location, reason } => {
            SinkError::Location { location, reason }
        }
        other => SinkError::Location {
            location: location.to_string(),
            reason: other.to_string(),
        },
    })
}
