//! What an output function is told about the partition it writes.

use std::fmt;

/// Names one partition of one batch of a job's output, the same on every
/// attempt of its task and after a restart from a checkpoint (a re-run
/// batch keeps its time, its input and its partition numbers). Key what a
/// `foreach_partition` function writes by it to write each partition once.
///
/// Its text form is `job/batch_time_ms/partition`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// The job's name (its type's name, as the host logs it).
    pub job: String,
    /// The batch time, in milliseconds since the Unix epoch.
    pub batch_time_ms: u64,
    /// The partition, from 0.
    pub partition: u32,
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.job, self.batch_time_ms, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_is_job_time_partition() {
        let key = IdempotencyKey {
            job: "WordCount".into(),
            batch_time_ms: 1_700_000_000_000,
            partition: 3,
        };
        assert_eq!(key.to_string(), "WordCount/1700000000000/3");
    }
}
