//! `run_job` returns only once everything the job started has stopped: its
//! receivers, its early chains and their guest calls, its worker threads and
//! its runtimes. A daemon that runs many jobs depends on it.
//!
//! This is its own test binary, with one test, because it counts the threads
//! of the process: no other job may run beside it.

use std::time::Duration;

use sluice::control::{JobConfig, run_job};
use sluice::sources::StopSignal;

/// The names of this process's threads that Sluice started (`sluice-…`).
fn sluice_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("Linux /proc")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with("sluice-"))
        .collect()
}

#[test]
fn a_failed_job_returns_only_after_its_guest_calls_and_threads_have_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    // Twenty one-line batches, all queued at once: their early chains are
    // started together on two workers, and each guest call sleeps.
    let lines: String = (0..20).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, lines).unwrap();

    let mut config = JobConfig::new(sluice_test_artifacts::MISBEHAVING.into());
    config.args = vec![
        ("fault".into(), "sleep".into()),
        ("input".into(), input.display().to_string()),
    ];
    config.batch_interval = Duration::from_millis(200);
    config.block_interval = Duration::from_millis(200);
    config.workers = 2;
    config.call_timeout = Duration::from_millis(500);
    config.task_retries = 0;
    config.until_sources_end = true;
    config.data_dir = Some(dir.path().join("data"));

    let err = run_job(&config, StopSignal::new()).expect_err("every call sleeps past the limit");
    let message = err.to_string();
    assert!(message.contains("time limit"), "{message}");
    // Measured as soon as `run_job` returns: a guest call still sleeping on
    // a worker, or a thread not yet joined, would show here.
    assert_eq!(
        sluice_threads(),
        Vec::<String>::new(),
        "threads left running after run_job returned"
    );
}
