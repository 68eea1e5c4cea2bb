//! The `sluice` binary: logs to stderr (so a job's `print` output on stdout
//! can be piped), then hands over to [`sluice::cli`].
//!
//! On Unix it ignores SIGXFSZ first: a write past the file size limit
//! (`ulimit -f`) then fails with EFBIG ("File too large"), which the job
//! reports naming the file, instead of killing the process with no message.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> std::process::ExitCode {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists;
    // SIG_IGN installs no handler of ours, and no code of this program
    // relies on SIGXFSZ's default action.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    tune_malloc();
    // Log lines go to stderr, and those of a job's threads also to the
    // job's own log (`sluice logs`).
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(sluice::monitor::logs::JobLogLayer)
        .init();
    let cli = sluice::cli::Cli::parse();
    match sluice::cli::main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Most errors already say what their source said; add only what
            // is new, so nothing is printed twice.
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("error: {message}");
            std::process::ExitCode::from(sluice::cli::exit_code(&error))
        }
    }
}

/// glibc's allocator, set for a long-running engine whose large buffers
/// (blocks, partitions) come and go: two arenas rather than eight per core,
/// so freed memory is reused across threads instead of held in each
/// thread's arena; and buffers from 2 MiB up mapped on their own, so that
/// freeing one gives its memory back (the default threshold rises with the
/// largest buffer freed, after which big buffers stay in the arenas, which
/// keep what they once held). `BENCHMARKS.md` has the figures.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
    }
}
