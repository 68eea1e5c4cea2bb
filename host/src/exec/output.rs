//! Output steps: `print`, `save_as_text_files` and `save_to_sqlite` through
//! [`crate::sinks`] (the executor does no I/O itself), and
//! `foreach_partition`, one guest call per partition (at least once: its
//! partitions keep their numbers when a batch runs again, so the guest's
//! idempotency key names the same data).

use rayon::prelude::*;

use super::{ExecError, Executor};
use crate::batching::BatchTime;
use crate::data::Rows;
use crate::plan::{NodeId, OutputKind, Step};

impl Executor {
    pub(super) fn run_output(
        &self,
        time: BatchTime,
        step: &Step,
        input: NodeId,
        output: &OutputKind,
        partitions: Vec<Rows>,
    ) -> Result<(), ExecError> {
        let codec = self.codec(input);
        let sink_error = |source| ExecError::Sink {
            time,
            operator: step.name.clone(),
            source: Box::new(source),
        };
        match output {
            OutputKind::Print(n) => self
                .sinks
                .print(time, codec, &partitions, *n as usize)
                .map_err(sink_error),
            OutputKind::SaveAsTextFiles { prefix, suffix } => {
                let formatted = self.workers.install(|| {
                    partitions
                        .par_iter()
                        .map(|p| crate::sinks::format_lines(codec, p))
                        .collect::<Result<Vec<_>, _>>()
                });
                let formatted = formatted.map_err(sink_error)?;
                self.sinks
                    .save_as_text_files(time, prefix, suffix.as_deref(), formatted)
                    .map_err(sink_error)
            }
            OutputKind::ForeachPartition(function) => self.workers.install(|| {
                partitions
                    .into_par_iter()
                    .enumerate()
                    .map(|(p, mut input)| {
                        self.workers
                            .run(&step.name, &Self::place(time, p), |instance| {
                                instance.foreach_partition(
                                    *function,
                                    time.as_millis(),
                                    p as u32,
                                    &mut input,
                                )
                            })
                            .map_err(Self::task_error(time))
                    })
                    .collect()
            }),
            OutputKind::SaveToSqlite { path, table } => self
                .sinks
                .save_to_sqlite(time, path, table, codec, &partitions)
                .map(|_| ())
                .map_err(sink_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use sluice_test_artifacts::NETWORK_WORD_COUNT;

    use super::super::testing;
    use crate::batching::BatchTime;
    use crate::data::{KeyGroups, Rows};

    /// Word counts of `lines`, split as Spark's `split(" ")`.
    fn count(lines: &[&str]) -> BTreeMap<String, i64> {
        let mut counts = BTreeMap::new();
        for line in lines {
            for word in line.split(' ') {
                *counts.entry(word.to_string()).or_default() += 1;
            }
        }
        counts
    }

    /// Every row of `word_counts`, read with a connection of its own, as
    /// (batch time, word) → count; fails on a repeated (batch, word).
    fn table(file: &std::path::Path) -> BTreeMap<(i64, String), i64> {
        let connection = rusqlite::Connection::open(file).unwrap();
        let mut statement = connection
            .prepare("SELECT batch_time, key, value FROM word_counts")
            .unwrap();
        let mut rows = BTreeMap::new();
        for row in statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
        {
            let (time, word, n): (i64, String, i64) = row.unwrap();
            assert!(
                rows.insert((time, word.clone()), n).is_none(),
                "({time}, {word:?}) twice"
            );
        }
        rows
    }

    #[test]
    fn a_replayed_batch_writes_its_sqlite_rows_once_and_the_same_text_directory() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("counts.db");
        let output = dir.path().join("out").join("counts");
        let args = testing::args(&[
            ("host", "localhost"),
            ("port", "9"),
            ("sqlite", database.to_str().unwrap()),
            ("output", output.to_str().unwrap()),
        ]);
        let (executor, source) =
            testing::executor(NETWORK_WORD_COUNT, args, KeyGroups::default(), |_| {});
        let batches: [(u64, [&[&str]; 2]); 2] = [
            (1000, [&["a b a", "c"], &["b  é"]]),
            (2000, [&["c c"], &["a"]]),
        ];
        let mut expected = BTreeMap::new();
        for (time, blocks) in &batches {
            for (word, n) in count(&blocks.concat()) {
                expected.insert((*time as i64, word), n);
            }
        }
        let input = |blocks: &[&[&str]; 2]| {
            HashMap::from([(
                source,
                blocks.iter().map(|b| b.iter().collect::<Rows>()).collect(),
            )])
        };
        let read_dir = |time: u64| {
            let dir = format!("{}-{time}", output.display());
            let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let text = std::fs::read_to_string(e.path()).unwrap();
                    (e.file_name().into_string().unwrap(), text)
                })
                .collect();
            files.sort();
            files
        };
        let (time, blocks) = &batches[0];
        executor.run_batch(BatchTime(*time), input(blocks)).unwrap();
        let first = read_dir(*time);
        let saved_lines: usize = first.iter().map(|(_, text)| text.lines().count()).sum();
        assert_eq!(saved_lines, count(&blocks.concat()).len(), "{first:?}");
        // The batch again, as after a restart: same time, same input.
        executor.run_batch(BatchTime(*time), input(blocks)).unwrap();
        assert_eq!(
            read_dir(*time),
            first,
            "the same directory, the same content"
        );
        let (time, blocks) = &batches[1];
        executor.run_batch(BatchTime(*time), input(blocks)).unwrap();
        assert_eq!(table(&database), expected);
    }
}
