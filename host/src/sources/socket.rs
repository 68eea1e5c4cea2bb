//! `socket_text_stream(host, port)`: lines of UTF-8 text from a TCP server
//! (Spark's `socketTextStream`).
//!
//! The receiver connects, retrying with exponential backoff (100 ms doubling
//! to 5 s) while the server is not there, reads into one reusable 1 MiB
//! buffer, and splits it into lines with `memchr`; each line is a `string`
//! record. After a read of less than [`SHORT_READ`] it rests for [`REST`]
//! before reading again, so that a sender writing a little at a time (a
//! paced feed, many small messages) is read in a few large reads rather
//! than a wake-up and a `recv` per segment (as a Kafka consumer's
//! `fetch.min.bytes` and `fetch.max.wait.ms`). When the peer closes the
//! connection the source ends with `--until-sources-end` and reconnects
//! otherwise (Spark's receiver restart).
//! Only a clean close (EOF) ends a last line without `\n`, which then counts;
//! when a read fails (a connection reset) the partial last line may be cut
//! short, so it is dropped with a warning naming its byte offset, and not
//! counted as an invalid record (as Spark, whose receiver loses it when
//! `readLine` throws). Over budget it stops reading, so the sender's writes
//! block.
//!
//! With a checkpoint location, each block is appended to the write-ahead
//! log before it is pushed, and a restarted receiver replays the blocks
//! logged after the checkpoint before it reads again. What a socket cannot
//! give back is what the process held but had not logged when it died: the
//! lines of the block being filled (at most a block interval's worth) and
//! whatever sat in the kernel's buffers; a reliable source (files now,
//! Kafka later) replays those too.
//!
//! ```text
//! $ nc -lk 9999          # Spark's quick example
//! hello world
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::generator::BlockGenerator;
use super::lines::LineSplitter;
use super::{ReceiverContext, stop_requested};
use crate::batching::ReceiverHandle;

/// Bytes read at a time: 1 MiB, so that a fast sender is read in few
/// calls, each waking the receiver once (128 KiB took 10% more CPU for the
/// word count at 30 M words/s, in `recv` calls and wake-ups).
const READ_BUFFER: usize = 1 << 20;
/// A read of fewer bytes than this makes the receiver rest before the next.
const SHORT_READ: usize = 64 << 10;
/// How long the receiver rests after a short read: the most it adds to a
/// line's latency, well under a block interval. A feed of 5 M words/s
/// (43 MB/s) arrives in segments of a few KiB; read as they come, they
/// cost a `recv` and a wake-up each — 16,000 a second, and a third of a
/// core.
const REST: Duration = Duration::from_millis(1);
/// First delay before reconnecting.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Where the receiver is with its connection.
enum Link {
    /// Waiting to try again at the instant.
    Waiting(Instant),
    /// A connection attempt under way (kept across ticks, so a slow connect
    /// is not restarted every block interval).
    Connecting(Connecting),
    /// Connected.
    Open(TcpStream),
}

pub(super) async fn run(host: String, port: u16, ctx: ReceiverContext, handle: ReceiverHandle) {
    // A socket cannot send again what it sent: with a checkpoint, every
    // block goes to the write-ahead log before anything sees it, and a
    // restarted receiver first pushes what the log holds after the
    // checkpoint.
    match handle.replay_logged_blocks() {
        Ok(0) => {}
        Ok(n) => info!(
            "source {}: {n} block(s) replayed from the write-ahead log",
            ctx.name
        ),
        Err(e) => {
            warn!("source {}: {e}", ctx.name);
            handle.fail(e);
            return;
        }
    }
    let mut generator = BlockGenerator::new(handle, &ctx).logging_blocks();
    let mut stop = ctx.stop.subscribe();
    let mut splitter = LineSplitter::new(READ_BUFFER, super::MAX_LINE_BYTES);
    let address = format!("{host}:{port}");
    let name = generator.name().to_string();
    let connect = |host: &String| -> Link {
        let host = host.clone();
        Link::Connecting(Box::pin(async move {
            TcpStream::connect((host.as_str(), port)).await
        }))
    };
    let mut link = connect(&host);
    let mut backoff = FIRST_BACKOFF;
    let tick = sleep_until(generator.deadline());
    tokio::pin!(tick);
    // Set after a short read: no read before then.
    let mut rest_until: Option<Instant> = None;

    loop {
        let open = matches!(link, Link::Open(_));
        let over_budget = open && generator.over_budget();
        let resting = open && !over_budget && rest_until.is_some();
        let reading = open && !over_budget && !resting;
        tokio::select! {
            biased;
            () = stop_requested(&mut stop) => break,
            () = &mut tick => {
                generator.tick();
                tick.as_mut().reset(generator.deadline());
            }
            () = generator.budget_released(), if over_budget => {}
            () = sleep_until(rest_until.unwrap_or_else(Instant::now)), if resting => {
                rest_until = None;
            }
            result = link_event(&mut link, splitter.spare()), if reading || !open => {
                match result {
                    Event::Retry => link = connect(&host),
                    Event::Connected(stream) => {
                        info!("source {name}: connected to {address}");
                        backoff = FIRST_BACKOFF;
                        splitter.reset();
                        link = Link::Open(stream);
                    }
                    Event::ConnectFailed(e) => {
                        warn!(
                            "source {name}: cannot connect to {address}: {e}; retrying in {}",
                            humantime::format_duration(backoff)
                        );
                        link = Link::Waiting(Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Event::Read(n) => {
                        splitter.filled(n, &mut generator);
                        generator.cut_if_full();
                        if n < SHORT_READ {
                            rest_until = Some(Instant::now() + REST);
                        }
                    }
                    Event::Closed(error) => {
                        match &error {
                            None => splitter.end(&mut generator),
                            Some(e) => {
                                let (offset, len) = splitter.abandon();
                                if len > 0 {
                                    warn!(
                                        "source {name}: {address}: partial line of {len} bytes at byte {offset} dropped: the connection failed ({e})"
                                    );
                                }
                            }
                        }
                        generator.cut_if_full();
                        let why = error.map_or_else(|| "closed by peer".to_string(), |e| format!("failed: {e}"));
                        if ctx.until_end {
                            info!("source {name}: connection to {address} {why}; the source ends");
                            generator.finish();
                            return;
                        }
                        warn!(
                            "source {name}: connection to {address} {why}; reconnecting in {}",
                            humantime::format_duration(backoff)
                        );
                        link = Link::Waiting(Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }
    // Stopped: a partial line (no `\n` yet) may be cut short by the stop
    // itself, so it is dropped rather than taken as a record.
    debug!("source {name}: stopped");
    generator.finish();
}

/// What happened to the connection.
enum Event {
    Retry,
    Connected(TcpStream),
    ConnectFailed(io::Error),
    Read(usize),
    /// EOF (`None`) or a read error.
    Closed(Option<io::Error>),
}

/// Waits for the next thing the link does; cancel-safe (a read either
/// completes or reads nothing, a connect attempt stays in the link).
async fn link_event(link: &mut Link, buf: &mut [u8]) -> Event {
    match link {
        Link::Waiting(at) => {
            sleep_until(*at).await;
            Event::Retry
        }
        Link::Connecting(attempt) => match attempt.await {
            Ok(stream) => Event::Connected(stream),
            Err(e) => Event::ConnectFailed(e),
        },
        Link::Open(stream) => match stream.read(buf).await {
            Ok(0) => Event::Closed(None),
            Ok(n) => Event::Read(n),
            Err(e) => Event::Closed(Some(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use super::super::spawn;
    use super::super::testing::{context, lines, run_batches};
    use super::READ_BUFFER;
    use crate::batching::BlockStore;
    use crate::plan::SourceSpec;

    const LIMIT: Duration = Duration::from_secs(60);

    fn socket_spec(port: u16) -> SourceSpec {
        SourceSpec::SocketText {
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// Polls `condition` every 10 ms; fails the test after 60 s.
    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socket_gives_every_line_exactly_once_across_blocks() {
        let mut bytes = Vec::new();
        let mut expected: Vec<String> = ["first", "second", ""].map(String::from).into();
        bytes.extend_from_slice(b"first\r\nsecond\n\nbad \xff\xfe line\n");
        for i in 0..20_000 {
            let line = format!("line {i} {}", "é".repeat(i % 7));
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
            expected.push(line);
        }
        bytes.extend_from_slice(b"last line without newline");
        expected.push("last line without newline".into());

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = socket_spec(listener.local_addr().unwrap().port());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // Odd-sized writes with pauses: lines, UTF-8 sequences and
            // `\r\n` fall across reads and across blocks.
            for piece in bytes.chunks(7_777) {
                conn.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });

        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, _stop) = context(&store, 20, 60, true);
        let task = spawn(spec, ctx.clone());
        let batches = tokio::time::timeout(LIMIT, run_batches(&store, &ctx, |_| false))
            .await
            .expect("the source ends when the peer closes");
        server.join().unwrap();
        task.await.unwrap();

        let got: Vec<String> = batches.iter().flat_map(lines).collect();
        assert_eq!(got.len(), expected.len());
        assert_eq!(got, expected);
        let invalid: u64 = batches.iter().map(|b| b.invalid_records).sum();
        assert_eq!(invalid, 1);
        assert!(store.all_finished());
        assert_eq!(store.pending_bytes(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socket_reset_drops_the_partial_last_line() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = socket_spec(listener.local_addr().unwrap().port());
        let (reset, when_to_reset) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(b"a b\nc d\npartial").unwrap();
            when_to_reset.recv().unwrap();
            // SO_LINGER 0: closing sends RST, the receiver's next read fails
            // with `ConnectionReset` (after the bytes already queued).
            socket2::SockRef::from(&conn)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(conn);
        });

        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, _stop) = context(&store, 20, 40, true);
        let task = spawn(spec, ctx.clone());
        // The complete lines have been read and pushed in a block: the
        // partial line is in the receiver's buffer when the reset comes.
        eventually("the first lines arrive", || store.pending_bytes() > 0).await;
        reset.send(()).unwrap();
        let batches = tokio::time::timeout(LIMIT, run_batches(&store, &ctx, |_| false))
            .await
            .expect("with until_end the source ends at the reset");
        server.join().unwrap();
        task.await.unwrap();

        let got: Vec<String> = batches.iter().flat_map(lines).collect();
        assert_eq!(got, ["a b", "c d"]);
        let invalid: u64 = batches.iter().map(|b| b.invalid_records).sum();
        assert_eq!(invalid, 0);
        assert!(store.all_finished());
        assert_eq!(store.pending_bytes(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socket_retries_until_the_server_is_up_and_reconnects_after_close() {
        // A port with nothing listening yet: the first attempts are refused.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, stop) = context(&store, 20, 40, false);
        let task = spawn(socket_spec(port), ctx.clone());

        let connections = Arc::new(AtomicU64::new(0));
        let server = {
            let connections = Arc::clone(&connections);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
                for payload in [&b"a\nb\n"[..], b"c\nd"] {
                    let (mut conn, _) = listener.accept().unwrap();
                    connections.fetch_add(1, Ordering::SeqCst);
                    conn.write_all(payload).unwrap();
                    // Dropping `conn` closes it: the receiver reconnects.
                }
                listener
            })
        };

        let mut seen = 0;
        let batches = tokio::time::timeout(
            LIMIT,
            run_batches(&store, &ctx, move |input| {
                seen += lines(input).len();
                seen >= 4
            }),
        )
        .await
        .expect("all four lines arrive");
        let got: Vec<String> = batches.iter().flat_map(lines).collect();
        assert_eq!(got, ["a", "b", "c", "d"]);
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert!(
            !store.all_finished(),
            "without until_end the source goes on"
        );

        let _listener = server.join().unwrap();
        stop.stop();
        task.await.unwrap();
        assert!(store.receivers()[0].finished);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socket_stops_reading_over_budget_until_release() {
        const LINES: u64 = 512 << 10; // 32 MiB of 64-byte lines
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = socket_spec(listener.local_addr().unwrap().port());
        let written = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let server = {
            let (written, done) = (Arc::clone(&written), Arc::clone(&done));
            std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                let mut chunk = Vec::with_capacity(64 << 10);
                for i in 0..LINES {
                    writeln!(chunk, "{i:063}").unwrap();
                    if chunk.len() >= 64 << 10 || i + 1 == LINES {
                        conn.write_all(&chunk).unwrap();
                        written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        chunk.clear();
                    }
                }
                done.store(true, Ordering::SeqCst);
            })
        };

        let budget = 256 << 10;
        let store = BlockStore::new(budget);
        let (ctx, _stop) = context(&store, 20, 40, true);
        let task = spawn(spec, ctx.clone());

        // No batch is taken: the receiver fills the budget, then stops
        // reading, and the server's writes block once the socket buffers
        // are full.
        eventually("the budget fills", || store.pending_bytes() >= budget).await;
        let deadline = tokio::time::Instant::now() + LIMIT;
        let mut last = written.load(Ordering::SeqCst);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = written.load(Ordering::SeqCst);
            if std::mem::replace(&mut last, now) == now {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server's writes never block"
            );
        }
        assert!(
            !done.load(Ordering::SeqCst),
            "the server could write everything"
        );
        assert!(last < LINES * 64);
        assert!(
            store.pending_bytes() <= budget + 2 * READ_BUFFER as u64,
            "{} bytes pending for a budget of {budget}",
            store.pending_bytes()
        );
        // Over budget the receiver still ticks: its watermark moves.
        let watermark = store.receivers()[0].watermark;
        eventually("the watermark moves", || {
            store.receivers()[0].watermark > watermark
        })
        .await;

        // The batch loop takes and releases: reading resumes, every line
        // arrives once and in order.
        let mut next = 0u64;
        let batches = tokio::time::timeout(
            LIMIT,
            run_batches(&store, &ctx, move |input| {
                for rows in input.blocks.values() {
                    for line in rows.iter().flat_map(|r| r.iter()) {
                        let n: u64 = std::str::from_utf8(line).unwrap().parse().unwrap();
                        assert_eq!(n, next);
                        next += 1;
                    }
                }
                false
            }),
        )
        .await
        .expect("the source ends once everything is read");
        let total: u64 = batches.iter().map(|b| b.records).sum();
        assert_eq!(total, LINES);
        server.join().unwrap();
        task.await.unwrap();
        assert!(done.load(Ordering::SeqCst));
    }
}
