//! Serves a corpus file to the first client of a loopback TCP socket, as fast
//! as the client reads (or at `--bytes-per-second`), `--loops` times over,
//! then closes the connection and the listener, so a reconnecting receiver is
//! refused.
//!
//! ```text
//! corpus-server --file corpus.txt [--port 0] [--timing timing.json] [--loops 1]
//!               [--bytes-per-second N] [--accept-timeout-s 600]
//! ```
//!
//! It prints the port it listens on as the first line of stdout, and writes
//! `{"first_byte_ns":…,"last_byte_ns":…,"bytes":…}` (nanoseconds since the
//! Unix epoch: just before the first write, just after the last one returned)
//! to `--timing` once the connection is closed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sluice_bench::args::Args;
use sluice_bench::batch::now_ns;

const CHUNK: usize = 1 << 20;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corpus-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = Args::from_env()?;
    let path: String = args.require("file")?;
    let port: u16 = args.take_or("port", 0)?;
    let timing: Option<String> = args.take("timing")?;
    let loops: u32 = args.take_or("loops", 1)?;
    let rate: Option<u64> = args.take("bytes-per-second")?;
    let accept_timeout = Duration::from_secs(args.take_or("accept-timeout-s", 600)?);
    args.finish()?;

    let mut file = File::open(&path).map_err(|e| format!("cannot open corpus {path}: {e}"))?;
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("{}", listener.local_addr()?.port());
    io::stdout().flush()?;

    let (mut stream, peer) = accept_within(&listener, accept_timeout)?;
    drop(listener);
    stream.set_nonblocking(false)?;

    let mut buf = vec![0u8; CHUNK];
    let mut sent: u64 = 0;
    let mut first_byte_ns = None;
    let started = Instant::now();
    let mut loops_left = loops;
    while loops_left > 0 {
        let n = file.read(&mut buf)?;
        if n == 0 {
            loops_left -= 1;
            file.seek(SeekFrom::Start(0))?;
            continue;
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            // Paced: send at most what the rate allows by now, 10 ms at a time.
            let allowed = match rate {
                None => chunk.len(),
                Some(rate) => {
                    let due = (started.elapsed().as_secs_f64() * rate as f64) as u64 + rate / 100;
                    if due <= sent {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    chunk.len().min(usize::try_from(due - sent).unwrap_or(usize::MAX))
                }
            };
            first_byte_ns.get_or_insert_with(now_ns);
            stream
                .write_all(&chunk[..allowed])
                .map_err(|e| format!("client {peer} stopped reading after {sent} bytes: {e}"))?;
            sent += allowed as u64;
            chunk = &chunk[allowed..];
        }
    }
    let last_byte_ns = now_ns();
    // The client may already be gone once it has read everything.
    let _ = stream.shutdown(Shutdown::Both);
    drop(stream);

    let report = format!(
        r#"{{"first_byte_ns":{},"last_byte_ns":{},"bytes":{},"client":"{}"}}"#,
        first_byte_ns.unwrap_or(last_byte_ns),
        last_byte_ns,
        sent,
        peer
    );
    match timing {
        Some(path) => std::fs::write(&path, report + "\n").map_err(|e| format!("cannot write {path}: {e}"))?,
        None => eprintln!("{report}"),
    }
    Ok(())
}

fn accept_within(
    listener: &TcpListener,
    timeout: Duration,
) -> Result<(std::net::TcpStream, std::net::SocketAddr), Box<dyn std::error::Error>> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok(client) => return Ok(client),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!("no client connected within {timeout:?}").into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
