//! Serves a corpus file to the first client of a loopback TCP socket, as fast
//! as the client reads (or at `--bytes-per-second`), `--loops` times over,
//! then closes the connection and the listener, so a reconnecting receiver is
//! refused.
//!
//! ```text
//! corpus-server --file corpus.txt [--port 0] [--timing timing.json] [--loops 1]
//!               [--bytes-per-second N] [--delay-ms 0] [--accept-timeout-s 600]
//! ```
//!
//! The file is read into memory first, so that serving it costs only the
//! kernel's copy into the socket (writes of up to 4 MiB), not a copy out of
//! the page cache too: on a 2-core machine the server shares the cores with
//! the system under test.
//!
//! `--delay-ms` waits that long after the client connects before the first
//! byte, so that a system's start-up work (a JVM's first empty batches, a
//! plugin's compilation) is over when the clock starts.
//!
//! It prints the port it listens on as the first line of stdout, and writes
//! `{"first_byte_ns":…,"last_byte_ns":…,"client_closed_ns":…,"bytes":…}`
//! (nanoseconds since the Unix epoch: just before the first write, just after
//! the last one returned, when the client closed its end after reading the end
//! of the stream) to `--timing` once the connection is closed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sluice_bench::args::Args;
use sluice_bench::batch::now_ns;

/// The most bytes written at a time.
const CHUNK: usize = 4 << 20;

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
    let delay = Duration::from_millis(args.take_or("delay-ms", 0)?);
    let accept_timeout = Duration::from_secs(args.take_or("accept-timeout-s", 600)?);
    args.finish()?;

    // The whole corpus in memory, read before the clock starts: each loop is
    // then only the socket's copy, not the page cache's too, so the server
    // costs the machine as little as it can.
    let corpus = std::fs::read(&path).map_err(|e| format!("cannot read corpus {path}: {e}"))?;
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("{}", listener.local_addr()?.port());
    io::stdout().flush()?;

    let (mut stream, peer) = accept_within(&listener, accept_timeout)?;
    drop(listener);
    stream.set_nonblocking(false)?;
    std::thread::sleep(delay);

    let mut sent: u64 = 0;
    let mut first_byte_ns = None;
    let started = Instant::now();
    for _ in 0..loops {
        for mut chunk in corpus.chunks(CHUNK) {
            while !chunk.is_empty() {
                // Paced: send at most what the rate allows by now, 10 ms at a time.
                let allowed = match rate {
                    None => chunk.len(),
                    Some(rate) => {
                        let due =
                            (started.elapsed().as_secs_f64() * rate as f64) as u64 + rate / 100;
                        if due <= sent {
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        }
                        chunk
                            .len()
                            .min(usize::try_from(due - sent).unwrap_or(usize::MAX))
                    }
                };
                first_byte_ns.get_or_insert_with(now_ns);
                stream.write_all(&chunk[..allowed]).map_err(|e| {
                    format!("client {peer} stopped reading after {sent} bytes: {e}")
                })?;
                sent += allowed as u64;
                chunk = &chunk[allowed..];
            }
        }
    }
    let last_byte_ns = now_ns();
    // End of stream for the client, then wait until it closes its side: the
    // last bytes may still sit in socket buffers (several MB on loopback), so
    // this, not the last write, is when the client has read everything.
    let closed_ns = match stream.shutdown(Shutdown::Write) {
        Ok(()) => wait_for_close(&mut stream, accept_timeout),
        // The client is already gone.
        Err(_) => None,
    }
    .unwrap_or_else(now_ns);
    drop(stream);

    let report = format!(
        r#"{{"first_byte_ns":{},"last_byte_ns":{},"client_closed_ns":{},"bytes":{},"client":"{}"}}"#,
        first_byte_ns.unwrap_or(last_byte_ns),
        last_byte_ns,
        closed_ns,
        sent,
        peer
    );
    match timing {
        Some(path) => {
            std::fs::write(&path, report + "\n").map_err(|e| format!("cannot write {path}: {e}"))?
        }
        None => eprintln!("{report}"),
    }
    Ok(())
}

/// Reads (and drops) until the client closes the connection; returns when,
/// or `None` if it did not within `timeout`.
fn wait_for_close(stream: &mut std::net::TcpStream, timeout: Duration) -> Option<u64> {
    stream.set_read_timeout(Some(timeout)).ok()?;
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Some(now_ns()),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A reset is a close too.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Some(now_ns()),
            Err(_) => return None,
        }
    }
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
