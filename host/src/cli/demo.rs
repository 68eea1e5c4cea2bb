//! `sluice demo`: the guide's NetworkWordCount with no external service.
//! A thread serves generated text on a loopback port — Zipf(1.1) words over a
//! synthetic vocabulary, the distribution of `shared/bench/gen-corpus.py` —
//! at a fixed rate, and the `network-word-count` plugin counts it, printing
//! every batch.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::JobArgs;
use crate::control::run_job;
use crate::sources::StopSignal;

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// The word-count plugin [default: target/wasm32-wasip2/release/network_word_count.wasm].
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
    let relative = PathBuf::from("wasm32-wasip2/release/network_word_count.wasm");
    let mut candidates = vec![PathBuf::from("target").join(&relative)];
    if let Ok(exe) = std::env::current_exe() {
        // target/release/sluice → target/wasm32-wasip2/release/…
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
                 `cargo build --release --target wasm32-wasip2 -p network-word-count` or pass --plugin",
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
    let mut corpus = Corpus::new(42);
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

/// Lines of Zipf(1.1)-distributed words over a synthetic vocabulary, as
/// `shared/bench/gen-corpus.py` makes them (same distribution, not the same
/// bytes: Python's generator is not reproduced).
struct Corpus {
    rng: SmallRng,
    vocab: Vec<String>,
    cumulative: Vec<f64>,
}

impl Corpus {
    const VOCAB: usize = 100_000;

    fn new(seed: u64) -> Corpus {
        let mut rng = SmallRng::seed_from_u64(seed);
        let vocab = (0..Self::VOCAB)
            .map(|i| {
                let len = rng.random_range(2..=10);
                let mut w: String = (0..len)
                    .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                    .collect();
                w.push(char::from(b'0' + (i % 7) as u8));
                w
            })
            .collect();
        let mut total = 0.0;
        let cumulative = (1..=Self::VOCAB)
            .map(|r| {
                total += 1.0 / (r as f64).powf(1.1);
                total
            })
            .collect();
        Corpus {
            rng,
            vocab,
            cumulative,
        }
    }

    fn line(&mut self, out: &mut Vec<u8>) {
        // Words per line: normal(10, 3), at least 1 (Box–Muller).
        let (u1, u2): (f64, f64) = (self.rng.random::<f64>().max(1e-12), self.rng.random());
        let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let words = ((10.0 + 3.0 * normal) as i64).max(1);
        let total = *self.cumulative.last().expect("a vocabulary");
        for i in 0..words {
            if i > 0 {
                out.push(b' ');
            }
            let x = self.rng.random::<f64>() * total;
            let rank = self
                .cumulative
                .partition_point(|&c| c < x)
                .min(Self::VOCAB - 1);
            out.extend_from_slice(self.vocab[rank].as_bytes());
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_zipf_like_and_deterministic() {
        let mut a = Corpus::new(7);
        let mut b = Corpus::new(7);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..2000 {
            a.line(&mut x);
            b.line(&mut y);
        }
        assert_eq!(x, y);
        let text = String::from_utf8(x).unwrap();
        let mut counts = std::collections::HashMap::new();
        for w in text.split([' ', '\n']).filter(|w| !w.is_empty()) {
            *counts.entry(w).or_insert(0u32) += 1;
        }
        let top = counts.get(a.vocab[0].as_str()).copied().unwrap_or(0);
        let tenth = counts.get(a.vocab[9].as_str()).copied().unwrap_or(0);
        // Zipf(1.1): rank 1 is about 10^1.1 ≈ 12.6 times as frequent as rank 10.
        assert!(top > 5 * tenth.max(1), "rank 1: {top}, rank 10: {tenth}");
    }
}
