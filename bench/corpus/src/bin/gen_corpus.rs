//! `gen-corpus LINES [--seed N]`: writes `LINES` lines of the corpus
//! ([`sluice_corpus`]) to stdout. Same arguments, same bytes.

use std::io::{self, Write};
use std::process::ExitCode;

const USAGE: &str =
    "usage: gen-corpus LINES [--seed N]  (writes LINES lines of Zipf(1.1) text to stdout)";

fn main() -> ExitCode {
    let (lines, seed) = match parse(std::env::args().skip(1)) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("gen-corpus: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match write(lines, seed) {
        Ok(()) => ExitCode::SUCCESS,
        // `gen-corpus 1000000 | head` is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-corpus: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `(lines, seed)`, or `None` for `--help`.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<(usize, u64)>, String> {
    let mut lines = None;
    let mut seed = sluice_corpus::DEFAULT_SEED;
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seed" => {
                let value = args.next().ok_or("--seed needs a value")?;
                seed = value
                    .parse()
                    .map_err(|_| format!("--seed {value:?} is not a non-negative integer"))?;
            }
            _ if lines.is_none() && !arg.starts_with('-') => {
                lines = Some(
                    arg.parse()
                        .map_err(|_| format!("LINES {arg:?} is not a non-negative integer"))?,
                );
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let lines = lines.ok_or("LINES is missing")?;
    Ok(Some((lines, seed)))
}

/// Streams the lines to stdout in pieces of about 1 MiB.
fn write(lines: usize, seed: u64) -> io::Result<()> {
    let mut corpus = sluice_corpus::Corpus::new(seed);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::with_capacity(1 << 20);
    for _ in 0..lines {
        corpus.line(&mut buf);
        if buf.len() >= 1 << 20 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()
}
