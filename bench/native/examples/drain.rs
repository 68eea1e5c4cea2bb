//! The feed's ceiling: reads a socket and drops the bytes, as fast as it can.
//! `cargo run --release -p sluice-bench --example drain -- PORT [BUFFER_KIB]`
//! against a running `corpus-server`; prints the bytes, the time from the
//! first byte to the end of the stream, and the rate in MB/s. With the
//! corpus's bytes per word, this is the most words per second any system
//! reading the same feed could count.

use std::io::Read;
use std::net::TcpStream;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .expect("usage: drain PORT [BUFFER_KIB]")
        .parse()
        .expect("PORT is a number");
    let kib: usize = args
        .next()
        .map_or(4096, |k| k.parse().expect("BUFFER_KIB is a number"));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the server listens");
    let mut buf = vec![0u8; kib << 10];
    let mut bytes = 0u64;
    let mut reads = 0u64;
    let mut first = None;
    loop {
        let n = stream.read(&mut buf).expect("the read succeeds");
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        bytes += n as u64;
        reads += 1;
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!(
        "{bytes} bytes in {reads} reads ({} KiB a read), {secs:.3} s, {:.0} MB/s",
        bytes / reads.max(1) / 1024,
        bytes as f64 / secs / 1e6
    );
}
