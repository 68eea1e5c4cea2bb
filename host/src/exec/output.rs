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
