//! Each job's own log: the host's log lines about the job and its guests'
//! stdout and stderr, kept in memory for `sluice logs NAME [--follow]`.
//!
//! Every thread a job starts (its batch loop, its worker threads, its I/O
//! runtime's threads) is attached to the job's [`JobLog`] when it starts
//! ([`JobLog::attach`]). The [`JobLogLayer`], installed beside the stderr
//! formatter in `main`, copies each event emitted on an attached thread into
//! that job's log. Guests' output is logged by the worker that called the
//! guest, so it lands in the same log.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;

/// Lines a job's log keeps; older ones are dropped.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A job's recent log lines, and a channel that announces new ones.
pub struct JobLog {
    lines: Mutex<Lines>,
    new_lines: tokio::sync::broadcast::Sender<String>,
}

struct Lines {
    kept: VecDeque<String>,
    capacity: usize,
}

impl std::fmt::Debug for JobLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLog").finish_non_exhaustive()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<JobLog>>> = const { RefCell::new(None) };
}

impl JobLog {
    /// An empty log keeping the last `capacity` lines.
    pub fn new(capacity: usize) -> Arc<JobLog> {
        Arc::new(JobLog {
            lines: Mutex::new(Lines {
                kept: VecDeque::new(),
                capacity: capacity.max(1),
            }),
            new_lines: tokio::sync::broadcast::channel(1024).0,
        })
    }

    /// Appends one line.
    pub fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.kept.len() == lines.capacity {
            lines.kept.pop_front();
        }
        lines.kept.push_back(line.clone());
        // Sent under the lock, so a follower that took `recent` under it
        // sees each line once. No receiver is not an error.
        let _ = self.new_lines.send(line);
    }

    /// The kept lines, oldest first.
    pub fn recent(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.kept.iter().cloned().collect()
    }

    /// The kept lines and a receiver of every line pushed after them (for
    /// `--follow`). A receiver that falls more than 1024 lines behind is told
    /// how many it missed (`RecvError::Lagged`).
    pub fn follow(&self) -> (Vec<String>, tokio::sync::broadcast::Receiver<String>) {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = self.new_lines.subscribe();
        (lines.kept.iter().cloned().collect(), receiver)
    }

    /// Sends what the current thread logs from now on to this log too.
    pub fn attach(self: &Arc<Self>) {
        CURRENT.with(|current| *current.borrow_mut() = Some(Arc::clone(self)));
    }

    /// Attaches the current thread to this log until the guard is dropped,
    /// then back to the log it was attached to before (if any).
    pub fn enter(self: &Arc<Self>) -> Entered {
        Entered(CURRENT.with(|current| current.borrow_mut().replace(Arc::clone(self))))
    }

    /// The log the current thread is attached to.
    pub fn current() -> Option<Arc<JobLog>> {
        CURRENT.with(|current| current.borrow().clone())
    }
}

/// Returned by [`JobLog::enter`].
#[must_use = "the thread is attached until this is dropped"]
pub struct Entered(Option<Arc<JobLog>>);

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// Copies every event logged on a thread attached to a [`JobLog`] into it,
/// as one line: time, level, message and fields.
#[derive(Debug, Default)]
pub struct JobLogLayer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for JobLogLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let Some(log) = JobLog::current() else {
            return;
        };
        let mut line = format!(
            "{} {:>5} ",
            humantime::format_rfc3339_millis(std::time::SystemTime::now()),
            event.metadata().level()
        );
        if event.metadata().target() == "sluice::guest" {
            line.push_str("guest: ");
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        line.push_str(&fields.message);
        line.push_str(&fields.rest);
        log.push(line);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_of_attached_threads_reach_their_job_log_only() {
        let subscriber = tracing_subscriber::registry().with(JobLogLayer);
        let (a, b) = (JobLog::new(10), JobLog::new(10));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before any job");
            a.attach();
            tracing::info!(batch = 1000, "batch done");
            tracing::warn!(target: "sluice::guest", task = "map", "hello from the guest");
            b.attach();
            tracing::info!("for b");
        });
        let a = a.recent();
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a[0].ends_with(" INFO batch done batch=1000"), "{}", a[0]);
        assert!(
            a[1].ends_with(" WARN guest: hello from the guest task=map"),
            "{}",
            a[1]
        );
        assert_eq!(b.recent().len(), 1);
        assert!(b.recent()[0].ends_with("for b"));
    }

    #[test]
    fn a_full_log_drops_its_oldest_lines_and_followers_see_each_new_one() {
        let log = JobLog::new(3);
        for i in 0..5 {
            log.push(format!("line {i}"));
        }
        assert_eq!(log.recent(), ["line 2", "line 3", "line 4"]);
        let (kept, mut receiver) = log.follow();
        assert_eq!(kept.len(), 3);
        log.push("line 5".into());
        assert_eq!(receiver.try_recv().unwrap(), "line 5");
        assert!(receiver.try_recv().is_err());
    }
}
