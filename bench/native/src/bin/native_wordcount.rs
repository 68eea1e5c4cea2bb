//! The native baseline: a hand-written word count over a loopback TCP socket,
//! in batches, as a Spark Streaming job would do it, with none of an engine's
//! generality. It is the practical ceiling Sluice is compared against.
//!
//! ```text
//! native-wordcount --port PORT [--host 127.0.0.1] [--threads 1]
//!                  [--batch-interval-ms 1000] [--output totals.txt]
//!                  [--metrics-json metrics.jsonl]
//! ```
//!
//! - `--threads 1`: one thread reads, splits and counts as the bytes arrive.
//! - `--threads N` (`0` = one per core): a reader cuts what it reads into
//!   chunks at newlines and hands them to N counting threads, each with its own
//!   map; at each batch time their maps are merged (the reduce by key of the
//!   batch), then added to the running totals.
//!
//! A batch `T` holds the lines read in `[T - interval, T)`. At `T` the batch's
//! counts are merged into the totals and one metrics line is written (see
//! `sluice_bench::batch`). After the server closes the socket the batch in
//! progress is finished at its batch time, the totals are written as
//! `(word,count)` lines, and the process exits.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use sluice_bench::args::Args;
use sluice_bench::batch::{BatchMetrics, next_batch_time, now_ms};
use sluice_bench::words::{Counts, WordCounter};

/// Bytes handed to a counting thread at a time.
const CHUNK: usize = 1 << 20;
/// How long a read may block before the batch clock is checked.
const READ_TIMEOUT: Duration = Duration::from_millis(10);
/// Distinct words expected per batch (the corpus's vocabulary is 100,000).
const WORDS_HINT: usize = 100_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("native-wordcount: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = Args::from_env()?;
    let host: String = args.take_or("host", "127.0.0.1".to_owned())?;
    let port: u16 = args.require("port")?;
    let threads = match args.take_or("threads", 1usize)? {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let interval_ms: u64 = args.take_or("batch-interval-ms", 1000)?;
    let output: Option<String> = args.take("output")?;
    let metrics: Option<String> = args.take("metrics-json")?;
    args.finish()?;
    if interval_ms == 0 {
        return Err("--batch-interval-ms must be positive".into());
    }

    let mut job = Job {
        interval_ms,
        next_batch_ms: next_batch_time(now_ms(), interval_ms),
        totals: WordCounter::with_capacity(WORDS_HINT),
        metrics: match &metrics {
            Some(path) => {
                Some(File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?)
            }
            None => None,
        },
    };
    let stream = connect(&host, port)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    if threads == 1 {
        run_single(stream, &mut job)?;
    } else {
        run_parallel(stream, threads, &mut job)?;
    }

    if let Some(path) = output {
        let file = File::create(&path).map_err(|e| format!("cannot create {path}: {e}"))?;
        let mut out = BufWriter::new(file);
        job.totals.write_pairs(&mut out)?;
        out.flush()?;
    }
    Ok(())
}

fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect((host, port)) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() < deadline && e.kind() == io::ErrorKind::ConnectionRefused => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The batch clock, the running totals and the metrics output.
struct Job {
    interval_ms: u64,
    next_batch_ms: u64,
    totals: WordCounter,
    metrics: Option<File>,
}

impl Job {
    /// True once the current batch's time has come.
    fn batch_due(&self) -> bool {
        now_ms() >= self.next_batch_ms
    }

    fn sleep_until_batch_time(&self) {
        let now = now_ms();
        if now < self.next_batch_ms {
            thread::sleep(Duration::from_millis(self.next_batch_ms - now));
        }
    }

    /// Finishes the current batch: `reduce` produces its counts (merging
    /// whatever is partial), which are added to the totals; then one metrics
    /// line is written and the clock moves to the next batch.
    fn finish_batch(
        &mut self,
        reduce: impl FnOnce() -> (WordCounter, Counts, Duration),
    ) -> io::Result<()> {
        let batch_time_ms = self.next_batch_ms;
        let started_ms = now_ms();
        let (batch, counts, busy) = reduce();
        self.totals.merge(batch);
        let done_ms = now_ms();
        let line = BatchMetrics {
            batch_time_ms,
            records: counts.lines,
            processing_ms: done_ms - started_ms,
            scheduling_delay_ms: started_ms.saturating_sub(batch_time_ms),
            total_delay_ms: done_ms.saturating_sub(batch_time_ms),
            busy_ms: u64::try_from(busy.as_millis()).unwrap_or(u64::MAX),
        }
        .to_json();
        if let Some(out) = &mut self.metrics {
            writeln!(out, "{line}")?;
        }
        self.next_batch_ms += self.interval_ms;
        Ok(())
    }
}

/// What one read from the socket gave.
enum Received<'a> {
    /// Complete lines.
    Lines(&'a [u8]),
    /// Nothing complete yet (or the read timed out).
    Nothing,
    /// The connection is closed; this is the last, unterminated line (maybe empty).
    End(&'a [u8]),
}

/// Reads a stream into one buffer and yields the complete lines of each read,
/// keeping a partial last line for the next.
struct LineReader<R> {
    source: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> LineReader<R> {
    fn new(source: R) -> Self {
        Self {
            source,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
        }
    }

    fn next(&mut self) -> io::Result<Received<'_>> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        match self.source.read(&mut self.buf[self.end..]) {
            Ok(0) => {
                self.start = self.end;
                Ok(Received::End(&self.buf[..self.end]))
            }
            Ok(n) => {
                self.end += n;
                match memchr::memrchr(b'\n', &self.buf[..self.end]) {
                    Some(i) => {
                        self.start = i + 1;
                        Ok(Received::Lines(&self.buf[..=i]))
                    }
                    None => Ok(Received::Nothing),
                }
            }
            Err(e) if is_transient(&e) => Ok(Received::Nothing),
            Err(e) => Err(e),
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One thread reads, splits and counts.
fn run_single(stream: TcpStream, job: &mut Job) -> io::Result<()> {
    let mut reader = LineReader::new(stream);
    let mut batch = WordCounter::with_capacity(WORDS_HINT);
    let mut counts = Counts::default();
    let mut busy = Duration::ZERO;
    let take = |batch: &mut WordCounter, counts: &mut Counts, busy: &mut Duration| {
        let taken = std::mem::replace(batch, WordCounter::with_capacity(WORDS_HINT));
        (taken, std::mem::take(counts), std::mem::take(busy))
    };
    loop {
        while job.batch_due() {
            job.finish_batch(|| take(&mut batch, &mut counts, &mut busy))?;
        }
        match reader.next()? {
            Received::Lines(lines) => {
                let started = Instant::now();
                counts += batch.count(lines);
                busy += started.elapsed();
            }
            Received::Nothing => {}
            Received::End(tail) => {
                counts += batch.count(tail);
                break;
            }
        }
    }
    // Close the connection now, as a receiver does at the end of its stream.
    drop(reader);
    job.sleep_until_batch_time();
    job.finish_batch(|| take(&mut batch, &mut counts, &mut busy))
}

/// What the reader sends to a counting thread.
enum Work {
    /// Count `buf[..len]` (whole lines, or the stream's unterminated tail).
    Chunk(Vec<u8>, usize),
    /// Send the batch's counts and start a new batch.
    Flush,
}

/// A counting thread's share of one batch.
struct Share {
    counter: WordCounter,
    counts: Counts,
    busy: Duration,
}

/// A reader hands chunks cut at newlines to `threads` counting threads.
fn run_parallel(mut stream: TcpStream, threads: usize, job: &mut Job) -> io::Result<()> {
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let (share_tx, share_rx) = mpsc::channel::<Share>();
    let mut workers: Vec<SyncSender<Work>> = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (work_tx, work_rx) = mpsc::sync_channel::<Work>(2);
        let free_tx = free_tx.clone();
        let share_tx = share_tx.clone();
        handles.push(thread::spawn(move || {
            count_chunks(work_rx, free_tx, share_tx)
        }));
        workers.push(work_tx);
    }
    drop((free_tx, share_tx));

    let mut pool = BufferPool {
        free: free_rx,
        allocated: 0,
        max: threads * 4 + 2,
    };
    let mut dispatcher = Dispatcher { workers, next: 0 };
    let mut buf = pool.get();
    let mut filled = 0;
    let mut ended = false;
    while !ended {
        if job.batch_due() {
            // Hand over the lines read so far, then collect every thread's share.
            if let Some(i) = memchr::memrchr(b'\n', &buf[..filled]) {
                let next = pool.get();
                (buf, filled) = dispatcher.send_lines(buf, filled, i + 1, next);
            }
            while job.batch_due() {
                job.finish_batch(|| dispatcher.collect(&share_rx))?;
            }
        }
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => {
                dispatcher.send(Work::Chunk(buf, filled));
                buf = Vec::new();
                filled = 0;
                ended = true;
            }
            Ok(n) => {
                filled += n;
                // Fill at least half a chunk before handing it over: fewer, larger messages.
                if filled >= CHUNK / 2
                    && let Some(i) = memchr::memrchr(b'\n', &buf[..filled])
                {
                    let next = pool.get();
                    (buf, filled) = dispatcher.send_lines(buf, filled, i + 1, next);
                }
            }
            Err(e) if is_transient(&e) => {
                if let Some(i) = memchr::memrchr(b'\n', &buf[..filled]) {
                    let next = pool.get();
                    (buf, filled) = dispatcher.send_lines(buf, filled, i + 1, next);
                }
            }
            Err(e) => return Err(e),
        }
    }
    debug_assert_eq!((buf.len(), filled), (0, 0));
    drop(stream);
    job.sleep_until_batch_time();
    job.finish_batch(|| dispatcher.collect(&share_rx))?;
    drop(dispatcher);
    for handle in handles {
        handle
            .join()
            .map_err(|_| io::Error::other("a counting thread panicked"))?;
    }
    Ok(())
}

/// Reuses the chunk buffers that counting threads give back; allocating at most
/// `max` of them bounds memory and pushes back on the reader.
struct BufferPool {
    free: Receiver<Vec<u8>>,
    allocated: usize,
    max: usize,
}

impl BufferPool {
    fn get(&mut self) -> Vec<u8> {
        if let Ok(buf) = self.free.try_recv() {
            return buf;
        }
        if self.allocated < self.max {
            self.allocated += 1;
            return vec![0; CHUNK];
        }
        self.free
            .recv()
            .expect("counting threads hold the other end until the reader is done")
    }
}

/// Sends work to the counting threads: a chunk to the first one with room,
/// starting after the last one served; a flush to all.
struct Dispatcher {
    workers: Vec<SyncSender<Work>>,
    next: usize,
}

impl Dispatcher {
    /// Sends `buf[..cut]` and returns `next` holding the rest, `buf[cut..filled]`.
    fn send_lines(
        &mut self,
        buf: Vec<u8>,
        filled: usize,
        cut: usize,
        mut next: Vec<u8>,
    ) -> (Vec<u8>, usize) {
        let rest = filled - cut;
        if next.len() < rest {
            next.resize(rest.next_power_of_two().max(CHUNK), 0);
        }
        next[..rest].copy_from_slice(&buf[cut..filled]);
        self.send(Work::Chunk(buf, cut));
        (next, rest)
    }

    fn send(&mut self, mut work: Work) {
        let n = self.workers.len();
        for k in 0..n {
            match self.workers[(self.next + k) % n].try_send(work) {
                Ok(()) => {
                    self.next = (self.next + k + 1) % n;
                    return;
                }
                Err(TrySendError::Full(w)) => work = w,
                Err(TrySendError::Disconnected(_)) => panic!("a counting thread exited early"),
            }
        }
        self.workers[self.next]
            .send(work)
            .expect("a counting thread exited early");
        self.next = (self.next + 1) % n;
    }

    /// Flushes every thread and reduces their shares into the batch's counts.
    fn collect(&mut self, shares: &Receiver<Share>) -> (WordCounter, Counts, Duration) {
        for worker in &self.workers {
            worker
                .send(Work::Flush)
                .expect("a counting thread exited early");
        }
        let mut batch = WordCounter::default();
        let mut counts = Counts::default();
        let mut busy = Duration::ZERO;
        let mut parts: Vec<WordCounter> = Vec::with_capacity(self.workers.len());
        for _ in 0..self.workers.len() {
            let share = shares.recv().expect("a counting thread exited early");
            counts += share.counts;
            busy = busy.max(share.busy);
            parts.push(share.counter);
        }
        // Merge the smaller maps into the largest.
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for part in parts {
            batch.merge(part);
        }
        (batch, counts, busy)
    }
}

/// A counting thread: counts chunks into its own map until told to flush.
fn count_chunks(work: Receiver<Work>, free: mpsc::Sender<Vec<u8>>, shares: mpsc::Sender<Share>) {
    let mut share = Share {
        counter: WordCounter::with_capacity(WORDS_HINT),
        counts: Counts::default(),
        busy: Duration::ZERO,
    };
    while let Ok(item) = work.recv() {
        match item {
            Work::Chunk(buf, len) => {
                let started = Instant::now();
                share.counts += share.counter.count(&buf[..len]);
                share.busy += started.elapsed();
                // The reader may be gone after the last chunk.
                let _ = free.send(buf);
            }
            Work::Flush => {
                let capacity = share.counter.len().max(1024);
                let done = std::mem::replace(
                    &mut share,
                    Share {
                        counter: WordCounter::with_capacity(capacity),
                        counts: Counts::default(),
                        busy: Duration::ZERO,
                    },
                );
                if shares.send(done).is_err() {
                    return;
                }
            }
        }
    }
}
