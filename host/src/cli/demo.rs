//! `sluice demo`: the guide's NetworkWordCount with no external service.
//! A thread serves generated text on a loopback port — the corpus of
//! `sluice-corpus` (Zipf(1.1) words over a synthetic vocabulary, the text of
//! the end-to-end tests and of `bench/run`) — at a fixed rate, and the
//! `network-word-count` plugin counts it, printing every batch.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use sluice_corpus::{Corpus, DEFAULT_SEED};

use super::JobArgs;
use crate::control::run_job;
use crate::sources::StopSignal;

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// The word-count plugin [default: target/plugins/network-word-count.wasm].
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Lines served per second (about 10 words each).
    #[arg(long, default_value_t = 100_000)]
    lines_per_second: u64,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[command(flatten)]
    job: JobArgs,
}

pub(super) fn run(args: DemoArgs, stop: StopSignal) -> anyhow::Result<()> {
    let plugin = match args.plugin {
        Some(p) => p,
        None => default_plugin()?,
    };
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on loopback")?;
    let port = listener.local_addr()?.port();
    let rate = args.lines_per_second;
    let duration = args.duration;
    std::thread::Builder::new()
        .name("sluice-demo-server".into())
        .spawn(move || serve(listener, rate, duration))?;
    tracing::info!(
        "serving ~{rate} lines/s of Zipf text on 127.0.0.1:{port} for {}",
        humantime::format_duration(duration)
    );

    let mut config = args.job.config(plugin);
    config.args.push(("host".into(), "127.0.0.1".into()));
    config.args.push(("port".into(), port.to_string()));
    config.until_sources_end = true;
    let summary = run_job(&config, stop)?;
    eprintln!("sluice demo: {summary}");
    Ok(())
}

/// The plugin next to the binary's build tree, or under the working directory.
fn default_plugin() -> anyhow::Result<PathBuf> {
    let relative = PathBuf::from("plugins/network-word-count.wasm");
    let mut candidates = vec![PathBuf::from("target").join(&relative)];
    if let Ok(exe) = std::env::current_exe() {
        // target/release/sluice → target/plugins/…
        if let Some(target) = exe.parent().and_then(|p| p.parent()) {
            candidates.push(target.join(&relative));
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "the network-word-count plugin is not built (looked in {}); build it with \
                 `scripts/build-plugins network-word-count` or pass --plugin",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Serves the first connection `rate` lines a second for `duration`, then
/// closes it.
fn serve(listener: TcpListener, rate: u64, duration: Duration) {
    let Ok((mut stream, _)) = listener.accept() else {
        return;
    };
    let mut corpus = Corpus::new(DEFAULT_SEED);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buf = Vec::with_capacity(1 << 20);
    while started.elapsed() < duration {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        if due <= sent {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        buf.clear();
        for _ in sent..due.min(sent + 50_000) {
            corpus.line(&mut buf);
        }
        sent = due.min(sent + 50_000);
        if stream.write_all(&buf).is_err() {
            return;
        }
    }
}
