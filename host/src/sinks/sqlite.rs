//! `save_to_sqlite`: the guide's transactional output, built in. Each batch
//! is written to its table in one SQLite transaction together with the batch
//! time it commits (table `sluice_commits`), and a batch whose time is not
//! after the committed one is skipped, so a batch re-run after a restart
//! writes nothing twice: **exactly once**.
//!
//! The layout is the contract's (`wit/sluice.wit`, "Outputs and recovery"):
//! columns `batch_time` (INTEGER, ms), then `key` and `value` for a
//! `tuple<k,v>` stream or `value` for any other; a field is INTEGER for the
//! integers and `bool`, REAL for `f32`/`f64`, TEXT for `string` (and
//! `json`), BLOB for `bytes`, and TEXT in the text form `print` uses for
//! anything else. A `u64` above `i64::MAX` does not fit SQLite's integers
//! and fails the batch. Tables are created when missing; an existing table
//! must have these column names.
//!
//! One connection per database file stays open (its prepared statements
//! cached) until an error, after which the next batch opens a fresh one.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{SinkError, Sinks};
use crate::batching::BatchTime;
use crate::data::codec::split_pair;
use crate::data::{Codec, Number, Numeric, Rows};

/// How long a write waits for another connection's lock on the file (a
/// reader's checkpoint of the WAL, another writer) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Sinks::save_to_sqlite`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The batch's rows and its time were committed.
    Committed {
        /// Rows inserted.
        rows: usize,
    },
    /// The table had already committed this batch time or a later one
    /// (`committed`): nothing was written.
    Skipped {
        /// The batch time `sluice_commits` holds for the table.
        committed: BatchTime,
    },
}

/// The open SQLite databases, by absolute file path.
#[derive(Default)]
pub(super) struct Databases {
    open: Mutex<HashMap<PathBuf, Database>>,
}

/// An open database file.
struct Database {
    connection: Connection,
    /// Tables created (if missing) and whose columns were checked.
    ready: HashSet<String>,
}

impl Sinks {
    /// Writes the records of `partitions` (codec `codec`) as the rows of
    /// batch `time` to table `table` of the SQLite database at `path`, in
    /// one transaction with the batch time, unless the table has committed
    /// `time` or a later batch already (see the module's docs). On an error,
    /// nothing of the batch is committed.
    pub fn save_to_sqlite(
        &self,
        time: BatchTime,
        path: &str,
        table: &str,
        codec: &Codec,
        partitions: &[Rows],
    ) -> Result<Saved, SinkError> {
        let file = std::path::absolute(path).map_err(|e| SinkError::Location {
            location: path.to_string(),
            reason: e.to_string(),
        })?;
        let mut open = self
            .databases
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let database = match open.entry(file.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(Database::open(&file, table)?),
        };
        let result = database.save(&file, time, table, codec, partitions);
        match &result {
            Ok(Saved::Skipped { committed }) => tracing::debug!(
                file = %file.display(),
                table,
                batch = %time,
                committed = %committed,
                "batch already committed to SQLite: skipped"
            ),
            Ok(Saved::Committed { .. }) => {}
            // Whatever state the connection is in, the next batch starts
            // from a fresh one (and checks the table again).
            Err(_) => {
                open.remove(&file);
            }
        }
        result
    }
}

impl Database {
    /// Opens (creating) the database file, in WAL mode with full syncs.
    fn open(file: &Path, table: &str) -> Result<Database, SinkError> {
        let failed = |action: &'static str| {
            move |source| SinkError::Sqlite {
                file: file.display().to_string(),
                table: table.to_string(),
                action,
                source: Box::new(source),
            }
        };
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|source| SinkError::File {
                action: "create directory".into(),
                path: parent.display().to_string(),
                source,
            })?;
        }
        let connection = Connection::open(file).map_err(failed("open"))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(failed("configure the connection for"))?;
        // WAL: readers of the file never block the job's writes, nor see a
        // batch in part. synchronous=FULL: in WAL mode, NORMAL syncs only at
        // WAL checkpoints, so a committed batch could be lost at a power
        // failure or an OS crash, after the job's own checkpoint counted it
        // as done; it would then never be written again. FULL syncs the WAL
        // at every commit (one fsync per batch).
        let mode: String = connection
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(failed("configure the connection for"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                file = %file.display(),
                mode,
                "SQLite cannot use WAL mode for this file; writing with its `{mode}` journal"
            );
        }
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(failed("configure the connection for"))?;
        Ok(Database {
            connection,
            ready: HashSet::new(),
        })
    }

    fn save(
        &mut self,
        file: &Path,
        time: BatchTime,
        table: &str,
        codec: &Codec,
        partitions: &[Rows],
    ) -> Result<Saved, SinkError> {
        let failed = |action: &'static str| {
            move |source| SinkError::Sqlite {
                file: file.display().to_string(),
                table: table.to_string(),
                action,
                source: Box::new(source),
            }
        };
        let value_error = |reason: String| SinkError::SqliteValue {
            file: file.display().to_string(),
            table: table.to_string(),
            reason,
        };
        let batch_time = i64::try_from(time.as_millis())
            .map_err(|_| value_error("the batch time does not fit SQLite's integers".into()))?;
        let columns = Columns::of(codec);
        // IMMEDIATE takes the write lock now: the commit read below cannot
        // be overtaken by another writer before the rows go in.
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed("begin a transaction on"))?;
        let created = !self.ready.contains(table);
        if created {
            create_tables(&transaction, file, table, &columns)?;
        }
        let committed: Option<i64> = transaction
            .prepare_cached("SELECT batch_time FROM sluice_commits WHERE table_name = ?1")
            .and_then(|mut s| s.query_row([table], |row| row.get(0)).optional())
            .map_err(failed("read the last commit of"))?;
        if let Some(committed) = committed.filter(|c| *c >= batch_time) {
            transaction.commit().map_err(failed("commit to"))?;
            self.ready.insert(table.to_string());
            return Ok(Saved::Skipped {
                committed: BatchTime(u64::try_from(committed).unwrap_or(0)),
            });
        }
        let mut rows = 0;
        {
            let mut insert = transaction
                .prepare_cached(&columns.insert(table))
                .map_err(failed("prepare the insert into"))?;
            for record in partitions.iter().flat_map(|p| p.iter()) {
                match &columns {
                    Columns::Pair(k, v) => {
                        let (key, value) = split_pair(record).ok_or_else(|| {
                            value_error(format!("a record of `{codec}` has no key"))
                        })?;
                        let key = field(k, key).map_err(value_error)?;
                        let value = field(v, value).map_err(value_error)?;
                        insert.execute(params![batch_time, key, value])
                    }
                    Columns::Value(v) => {
                        let value = field(v, record).map_err(value_error)?;
                        insert.execute(params![batch_time, value])
                    }
                }
                .map_err(failed("insert into"))?;
                rows += 1;
            }
        }
        transaction
            .prepare_cached(
                "INSERT INTO sluice_commits (table_name, batch_time) VALUES (?1, ?2) \
                 ON CONFLICT (table_name) DO UPDATE SET batch_time = excluded.batch_time",
            )
            .and_then(|mut s| s.execute(params![table, batch_time]))
            .map_err(failed("record the commit of"))?;
        transaction.commit().map_err(failed("commit to"))?;
        self.ready.insert(table.to_string());
        Ok(Saved::Committed { rows })
    }
}

/// The columns after `batch_time`, with the codec of each.
enum Columns<'a> {
    Pair(&'a Codec, &'a Codec),
    Value(&'a Codec),
}

impl<'a> Columns<'a> {
    fn of(codec: &'a Codec) -> Columns<'a> {
        match (codec.key(), codec.value()) {
            (Some(k), Some(v)) => Columns::Pair(k, v),
            _ => Columns::Value(codec),
        }
    }

    /// `(name, SQL type)` of every column, `batch_time` first.
    fn declared(&self) -> Vec<(&'static str, &'static str)> {
        let mut columns = vec![("batch_time", "INTEGER")];
        match self {
            Columns::Pair(k, v) => {
                columns.push(("key", sql_type(k)));
                columns.push(("value", sql_type(v)));
            }
            Columns::Value(v) => columns.push(("value", sql_type(v))),
        }
        columns
    }

    fn insert(&self, table: &str) -> String {
        match self {
            Columns::Pair(..) => {
                format!("INSERT INTO \"{table}\" (batch_time, key, value) VALUES (?1, ?2, ?3)")
            }
            Columns::Value(_) => {
                format!("INSERT INTO \"{table}\" (batch_time, value) VALUES (?1, ?2)")
            }
        }
    }
}

/// The SQL type of a field of codec `codec`.
fn sql_type(codec: &Codec) -> &'static str {
    match codec {
        Codec::Num(Numeric::F32 | Numeric::F64) => "REAL",
        Codec::Num(_) | Codec::Bool => "INTEGER",
        Codec::String | Codec::Json => "TEXT",
        Codec::Bytes => "BLOB",
        Codec::Unit | Codec::Tuple(_) | Codec::Option(_) | Codec::List(_) => "TEXT",
    }
}

/// The SQL value of one field.
fn field<'r>(codec: &Codec, bytes: &'r [u8]) -> Result<ToSqlOutput<'r>, String> {
    codec.check(bytes).map_err(|e| e.to_string())?;
    Ok(match codec {
        Codec::Num(n) => match n.read(bytes) {
            Some(Number::Int(i)) => {
                ToSqlOutput::Owned(Value::Integer(i64::try_from(i).map_err(|_| {
                    format!("{codec} value {i} does not fit SQLite's 64-bit integers")
                })?))
            }
            Some(Number::Float(f)) => ToSqlOutput::Owned(Value::Real(f)),
            None => return Err(format!("a {codec} field of {} bytes", bytes.len())),
        },
        Codec::Bool => ToSqlOutput::Owned(Value::Integer(i64::from(bytes == [1]))),
        // UTF-8 was checked.
        Codec::String | Codec::Json => ToSqlOutput::Borrowed(ValueRef::Text(bytes)),
        Codec::Bytes => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
        Codec::Unit | Codec::Tuple(_) | Codec::Option(_) | Codec::List(_) => {
            ToSqlOutput::Owned(Value::Text(codec.format(bytes).map_err(|e| e.to_string())?))
        }
    })
}

/// Creates `sluice_commits` and `table` when missing, and checks that an
/// existing `table` has the output's columns.
fn create_tables(
    connection: &Connection,
    file: &Path,
    table: &str,
    columns: &Columns<'_>,
) -> Result<(), SinkError> {
    let failed = |action: &'static str| {
        move |source| SinkError::Sqlite {
            file: file.display().to_string(),
            table: table.to_string(),
            action,
            source: Box::new(source),
        }
    };
    let declared = columns.declared();
    let definition = declared
        .iter()
        .map(|(name, ty)| format!("{name} {ty} NOT NULL"))
        .collect::<Vec<_>>()
        .join(", ");
    connection
        .execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS sluice_commits (\
                 table_name TEXT PRIMARY KEY NOT NULL, batch_time INTEGER NOT NULL);\
             CREATE TABLE IF NOT EXISTS \"{table}\" ({definition});"
        ))
        .map_err(failed("create"))?;
    let found: Vec<(String, String)> = connection
        .prepare(&format!("PRAGMA table_info(\"{table}\")"))
        .and_then(|mut s| {
            s.query_map([], |row| Ok((row.get(1)?, row.get(2)?)))?
                .collect()
        })
        .map_err(failed("read the columns of"))?;
    let same = found.len() == declared.len()
        && found
            .iter()
            .zip(&declared)
            .all(|((name, _), (expected, _))| name.eq_ignore_ascii_case(expected));
    if !same {
        let show = |columns: Vec<String>| columns.join(", ");
        return Err(SinkError::SqliteColumns {
            file: file.display().to_string(),
            table: table.to_string(),
            expected: show(declared.iter().map(|(n, t)| format!("{n} {t}")).collect()),
            found: show(found.iter().map(|(n, t)| format!("{n} {t}")).collect()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::codec::write_pair;

    fn new_sinks() -> (tokio::runtime::Runtime, Sinks) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sinks = Sinks::new(runtime.handle().clone());
        (runtime, sinks)
    }

    fn pair(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_pair(key, value, &mut out).unwrap();
        out
    }

    fn word_count(word: &str, count: i64) -> Vec<u8> {
        pair(word.as_bytes(), &count.to_le_bytes())
    }

    fn rows(records: &[Vec<u8>]) -> Rows {
        records.iter().collect()
    }

    fn codec(descriptor: &str) -> Codec {
        descriptor.parse().unwrap()
    }

    /// A reading of the file independent of the sink's connection.
    fn read(file: &Path, sql: &str) -> Vec<Vec<Value>> {
        let connection = Connection::open(file).unwrap();
        let mut statement = connection.prepare(sql).unwrap();
        let n = statement.column_count();
        statement
            .query_map([], |row| (0..n).map(|i| row.get::<_, Value>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn commits(file: &Path) -> Vec<Vec<Value>> {
        read(
            file,
            "SELECT table_name, batch_time FROM sluice_commits ORDER BY table_name",
        )
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn pairs_of_string_and_i64_are_text_and_integer_rows_with_their_batch_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/counts.db");
        let path = file.to_str().unwrap();
        let (_rt, sinks) = new_sinks();
        let partitions = [
            rows(&[word_count("a", 3), word_count("b", -1)]),
            rows(&[]),
            rows(&[word_count("c", i64::MAX)]),
        ];
        let saved = sinks
            .save_to_sqlite(
                BatchTime(2000),
                path,
                "counts",
                &codec("tuple<string,i64>"),
                &partitions,
            )
            .unwrap();
        assert_eq!(saved, Saved::Committed { rows: 3 });
        assert_eq!(
            read(
                &file,
                "SELECT batch_time, key, value, typeof(key), typeof(value) FROM counts ORDER BY key"
            ),
            [
                [
                    Value::Integer(2000),
                    text("a"),
                    Value::Integer(3),
                    text("text"),
                    text("integer")
                ],
                [
                    Value::Integer(2000),
                    text("b"),
                    Value::Integer(-1),
                    text("text"),
                    text("integer")
                ],
                [
                    Value::Integer(2000),
                    text("c"),
                    Value::Integer(i64::MAX),
                    text("text"),
                    text("integer")
                ],
            ]
        );
        assert_eq!(
            read(&file, "SELECT name, type FROM pragma_table_info('counts')"),
            [
                [text("batch_time"), text("INTEGER")],
                [text("key"), text("TEXT")],
                [text("value"), text("INTEGER")],
            ]
        );
        assert_eq!(commits(&file), [[text("counts"), Value::Integer(2000)]]);
        assert_eq!(
            read(&file, "PRAGMA journal_mode"),
            [[text("wal")]],
            "the file is in WAL mode"
        );
    }

    #[test]
    fn floats_strings_bytes_and_bools_get_their_sql_types() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("types.db");
        let path = file.to_str().unwrap();
        let (_rt, sinks) = new_sinks();
        let time = BatchTime(1000);
        sinks
            .save_to_sqlite(
                time,
                path,
                "floats",
                &codec("f64"),
                &[rows(&[
                    2.5f64.to_le_bytes().to_vec(),
                    (-0.125f64).to_le_bytes().to_vec(),
                ])],
            )
            .unwrap();
        sinks
            .save_to_sqlite(
                time,
                path,
                "lines",
                &codec("string"),
                &[rows(&[b"hello world".to_vec(), b"".to_vec()])],
            )
            .unwrap();
        sinks
            .save_to_sqlite(
                time,
                path,
                "blobs",
                &codec("bytes"),
                &[rows(&[vec![0, 255, 7]])],
            )
            .unwrap();
        sinks
            .save_to_sqlite(
                time,
                path,
                "flags",
                &codec("tuple<u8,bool>"),
                &[rows(&[pair(&[200], &[1]), pair(&[0], &[0])])],
            )
            .unwrap();
        assert_eq!(
            read(
                &file,
                "SELECT value, typeof(value) FROM floats ORDER BY rowid"
            ),
            [
                [Value::Real(2.5), text("real")],
                [Value::Real(-0.125), text("real")]
            ]
        );
        assert_eq!(
            read(
                &file,
                "SELECT value, typeof(value) FROM lines ORDER BY rowid"
            ),
            [
                [text("hello world"), text("text")],
                [text(""), text("text")]
            ]
        );
        assert_eq!(
            read(&file, "SELECT value, typeof(value) FROM blobs"),
            [[Value::Blob(vec![0, 255, 7]), text("blob")]]
        );
        assert_eq!(
            read(&file, "SELECT key, value FROM flags ORDER BY rowid"),
            [
                [Value::Integer(200), Value::Integer(1)],
                [Value::Integer(0), Value::Integer(0)]
            ]
        );
        assert_eq!(
            read(&file, "SELECT name, type FROM pragma_table_info('lines')"),
            [
                [text("batch_time"), text("INTEGER")],
                [text("value"), text("TEXT")]
            ]
        );
        assert_eq!(commits(&file).len(), 4, "one commit row per table");
    }

    #[test]
    fn nested_codecs_are_stored_in_their_text_form() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested.db");
        let path = file.to_str().unwrap();
        let (_rt, sinks) = new_sinks();
        // tuple<string, option<i32>>: the key as TEXT, the value as `Some(7)`.
        let mut some = vec![1];
        some.extend_from_slice(&7i32.to_le_bytes());
        sinks
            .save_to_sqlite(
                BatchTime(1000),
                path,
                "options",
                &codec("tuple<string,option<i32>>"),
                &[rows(&[pair(b"x", &some), pair(b"y", &[0])])],
            )
            .unwrap();
        // A triple is not a pair: one `value` column, `(a,1,true)`.
        let mut triple = Vec::new();
        crate::data::codec::write_prefixed(b"a", &mut triple).unwrap();
        crate::data::codec::write_prefixed(&1i64.to_le_bytes(), &mut triple).unwrap();
        triple.push(1);
        sinks
            .save_to_sqlite(
                BatchTime(1000),
                path,
                "triples",
                &codec("tuple<string,i64,bool>"),
                &[rows(&[triple])],
            )
            .unwrap();
        assert_eq!(
            read(
                &file,
                "SELECT key, value, typeof(value) FROM options ORDER BY key"
            ),
            [
                [text("x"), text("Some(7)"), text("text")],
                [text("y"), text("None"), text("text")]
            ]
        );
        assert_eq!(
            read(&file, "SELECT * FROM triples"),
            [[Value::Integer(1000), text("(a,1,true)")]]
        );
    }

    #[test]
    fn a_batch_written_again_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.db");
        let path = file.to_str().unwrap();
        let (_rt, sinks) = new_sinks();
        let c = codec("tuple<string,i64>");
        let batch = [rows(&[word_count("a", 1), word_count("b", 2)])];
        assert_eq!(
            sinks
                .save_to_sqlite(BatchTime(1000), path, "t", &c, &batch)
                .unwrap(),
            Saved::Committed { rows: 2 }
        );
        assert_eq!(
            sinks
                .save_to_sqlite(BatchTime(1000), path, "t", &c, &batch)
                .unwrap(),
            Saved::Skipped {
                committed: BatchTime(1000)
            }
        );
        // Also from another `Sinks` (a restarted job).
        let (_rt2, restarted) = new_sinks();
        assert_eq!(
            restarted
                .save_to_sqlite(BatchTime(1000), path, "t", &c, &batch)
                .unwrap(),
            Saved::Skipped {
                committed: BatchTime(1000)
            }
        );
        assert_eq!(
            read(&file, "SELECT batch_time, key, value FROM t ORDER BY key"),
            [
                [Value::Integer(1000), text("a"), Value::Integer(1)],
                [Value::Integer(1000), text("b"), Value::Integer(2)]
            ]
        );
    }

    #[test]
    fn a_batch_older_than_the_committed_one_is_skipped_and_two_batches_are_both_present_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.db");
        let path = file.to_str().unwrap();
        let (_rt, sinks) = new_sinks();
        let c = codec("tuple<string,i64>");
        sinks
            .save_to_sqlite(
                BatchTime(1000),
                path,
                "t",
                &c,
                &[rows(&[word_count("a", 1)])],
            )
            .unwrap();
        sinks
            .save_to_sqlite(
                BatchTime(2000),
                path,
                "t",
                &c,
                &[rows(&[word_count("a", 5)])],
            )
            .unwrap();
        assert_eq!(
            sinks
                .save_to_sqlite(
                    BatchTime(1000),
                    path,
                    "t",
                    &c,
                    &[rows(&[word_count("z", 9)])]
                )
                .unwrap(),
            Saved::Skipped {
                committed: BatchTime(2000)
            }
        );
        assert_eq!(
            read(
                &file,
                "SELECT batch_time, key, value FROM t ORDER BY batch_time"
            ),
            [
                [Value::Integer(1000), text("a"), Value::Integer(1)],
                [Value::Integer(2000), text("a"), Value::Integer(5)]
            ]
        );
        assert_eq!(commits(&file), [[text("t"), Value::Integer(2000)]]);
    }

    #[test]
    fn a_batch_failing_mid_insert_leaves_neither_its_rows_nor_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.db");
        let path = file.to_str().unwrap();
        // The user's own table, with a constraint the third record violates.
        Connection::open(&file)
            .unwrap()
            .execute_batch(
                "CREATE TABLE t (batch_time INTEGER, key TEXT, value INTEGER CHECK (value < 100))",
            )
            .unwrap();
        let (_rt, sinks) = new_sinks();
        let c = codec("tuple<string,i64>");
        sinks
            .save_to_sqlite(
                BatchTime(1000),
                path,
                "t",
                &c,
                &[rows(&[word_count("a", 1)])],
            )
            .unwrap();
        let error = sinks
            .save_to_sqlite(
                BatchTime(2000),
                path,
                "t",
                &c,
                &[
                    rows(&[word_count("b", 2), word_count("c", 3)]),
                    rows(&[word_count("d", 150), word_count("e", 4)]),
                ],
            )
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("table `t`") && message.contains(path) && message.contains("CHECK"),
            "{message}"
        );
        assert_eq!(
            read(&file, "SELECT batch_time, key FROM t ORDER BY key"),
            [[Value::Integer(1000), text("a")]]
        );
        assert_eq!(commits(&file), [[text("t"), Value::Integer(1000)]]);
        // The same batch, fixed, then commits (on a fresh connection).
        assert_eq!(
            sinks
                .save_to_sqlite(
                    BatchTime(2000),
                    path,
                    "t",
                    &c,
                    &[rows(&[word_count("b", 2)])]
                )
                .unwrap(),
            Saved::Committed { rows: 1 }
        );
        assert_eq!(commits(&file), [[text("t"), Value::Integer(2000)]]);
    }

    #[test]
    fn a_full_disk_fails_the_batch_with_the_file_and_table_and_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.db");
        let path = file.to_str().unwrap();
        let (_rt, sinks) = new_sinks();
        let c = codec("tuple<string,i64>");
        sinks
            .save_to_sqlite(
                BatchTime(1000),
                path,
                "t",
                &c,
                &[rows(&[word_count("a", 1)])],
            )
            .unwrap();
        // A disk with no room for another page.
        {
            let open = sinks.databases.open.lock().unwrap();
            let connection = &open[&std::path::absolute(&file).unwrap()].connection;
            let pages: i64 = connection
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            connection
                .pragma_update(None, "max_page_count", pages)
                .unwrap();
        }
        let big: Vec<Vec<u8>> = (0..2000)
            .map(|i| word_count(&format!("word{i:0>100}"), i))
            .collect();
        let error = sinks
            .save_to_sqlite(BatchTime(2000), path, "t", &c, &[rows(&big)])
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("table `t`") && message.contains(path) && message.contains("full"),
            "{message}"
        );
        assert_eq!(read(&file, "SELECT count(*) FROM t"), [[Value::Integer(1)]]);
        assert_eq!(commits(&file), [[text("t"), Value::Integer(1000)]]);
    }

    #[test]
    fn a_record_that_does_not_fit_fails_the_batch_and_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.db");
        let path = file.to_str().unwrap();
        let (_rt, sinks) = new_sinks();
        let error = sinks
            .save_to_sqlite(
                BatchTime(1000),
                path,
                "big",
                &codec("u64"),
                &[rows(&[
                    5u64.to_le_bytes().to_vec(),
                    u64::MAX.to_le_bytes().to_vec(),
                ])],
            )
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("table `big`")
                && message.contains("u64 value 18446744073709551615 does not fit"),
            "{message}"
        );
        // Not even the tables, created in the same transaction.
        assert_eq!(
            read(
                &file,
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ),
            [[Value::Integer(0)]]
        );
    }

    #[test]
    fn a_table_with_other_columns_is_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.db");
        let path = file.to_str().unwrap();
        Connection::open(&file)
            .unwrap()
            .execute_batch("CREATE TABLE t (word TEXT, n INTEGER)")
            .unwrap();
        let (_rt, sinks) = new_sinks();
        let error = sinks
            .save_to_sqlite(
                BatchTime(1000),
                path,
                "t",
                &codec("tuple<string,i64>"),
                &[rows(&[word_count("a", 1)])],
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "table `t` of SQLite database {path} has columns (word TEXT, n INTEGER), but this \
                 output writes (batch_time INTEGER, key TEXT, value INTEGER): drop or rename the \
                 table, or write to another one"
            )
        );
        assert_eq!(read(&file, "SELECT count(*) FROM t"), [[Value::Integer(0)]]);
    }

    #[test]
    fn a_database_that_cannot_be_created_fails_naming_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-directory");
        std::fs::write(&blocker, "").unwrap();
        let file = blocker.join("counts.db");
        let (_rt, sinks) = new_sinks();
        let error = sinks
            .save_to_sqlite(
                BatchTime(1000),
                file.to_str().unwrap(),
                "t",
                &codec("string"),
                &[rows(&[b"a".to_vec()])],
            )
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains(blocker.to_str().unwrap()), "{message}");
    }
}
