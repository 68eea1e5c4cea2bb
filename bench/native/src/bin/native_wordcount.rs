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
//! - `--threads 1`: one thread reads, splits and counts as the bytes arrive:
//!   it reads into a 1 MiB buffer, counts the complete lines of each read
//!   and carries the partial last line over to the next.
//! - `--threads N` (`0` = one per core): a reader reads into 1 MiB buffers,
//!   cuts each at its last newline once it is nearly full (or when the socket
//!   has nothing more for now, or at the batch time) and hands the buffer to
//!   the next of N counting threads with room in its queue (two chunks each);
//!   when every queue is full it counts that chunk itself, into its own table,
//!   instead of waiting. (With one counting thread per core, the reader and
//!   the corpus server compete with them for the cores anyway; measured on 2
//!   cores, counting beats waiting by about 6%.) The threads give the buffers
//!   back through a return channel, so after the first few nothing is
//!   allocated per chunk.
//!
//! Counting is [`sluice_bench::words`]: delimiters found 64 bytes at a time
//! with SIMD compares (AVX-512 or AVX2 when the CPU has them), words of up to
//! 16 bytes keyed inline in an open-addressing table (per word: one 16-byte
//! load of its bytes, one folded multiply, one slot load and compare), the table's lookups trailing the parser by
//! 16 words so that their slots are prefetched, the slots on huge pages where
//! the kernel allows. Each counting thread has two tables: at a batch time it
//! sends the full one to the reader and goes on with the other, which the
//! reader has emptied and sent back.
//!
//! A batch `T` holds the lines read in `[T - interval, T)`. At `T` the reader
//! hands over the lines read so far, asks every counting thread for its
//! table, merges them and its own into the batch's counts (the reduce by key
//! of the batch; the first table is swapped in, not merged) and those into
//! the running totals (tables emptied, not dropped), and writes one metrics
//! line (see `sluice_bench::batch`). After the server closes the socket the
//! batch in progress is finished at its batch time, the totals are written as
//! `(word,count)` lines, and the process exits.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use sluice_bench::args::Args;
use sluice_bench::batch::{BatchMetrics, next_batch_time, now_ms};
use sluice_bench::chunks::{Chunk, LineChunker, Read};
use sluice_bench::words::{Counts, WordCounter};

/// The read buffer of `--threads 1`.
const SINGLE_BUFFER: usize = 1 << 20;
/// The buffers the reader hands to counting threads.
const CHUNK: usize = 1 << 20;
/// The reader cuts a buffer once less room than this is left in it.
const CUT_ROOM: usize = CHUNK / 8;
/// Chunks that may wait in a counting thread's queue.
const QUEUE: usize = 2;
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
        batch: WordCounter::with_capacity(WORDS_HINT),
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

/// The batch clock, the batch's counts, the running totals and the metrics output.
struct Job {
    interval_ms: u64,
    next_batch_ms: u64,
    /// The batch being finished (empty between batches).
    batch: WordCounter,
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

    /// Finishes the current batch: `reduce` puts its counts into the (empty)
    /// batch table, merging whatever is partial, and says how many lines and
    /// how much counting time it held; the batch is added to the totals and
    /// emptied, one metrics line is written and the clock moves on.
    fn finish_batch(
        &mut self,
        reduce: impl FnOnce(&mut WordCounter) -> (Counts, Duration),
    ) -> io::Result<()> {
        let batch_time_ms = self.next_batch_ms;
        let started_ms = now_ms();
        let (counts, busy) = reduce(&mut self.batch);
        self.totals.merge(&self.batch);
        self.batch.clear();
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

/// A table being filled, with the lines and words it holds and the time
/// spent counting them.
struct Tally {
    counter: WordCounter,
    counts: Counts,
    busy: Duration,
}

impl Tally {
    fn new(counter: WordCounter) -> Self {
        Self {
            counter,
            counts: Counts::default(),
            busy: Duration::ZERO,
        }
    }

    fn count(&mut self, text: &[u8]) {
        let started = Instant::now();
        self.counts += self.counter.count(text);
        self.busy += started.elapsed();
    }

    /// Moves the counts into `batch` (empty) by swapping tables, and returns
    /// the lines, words and time they took.
    fn take_into(&mut self, batch: &mut WordCounter) -> (Counts, Duration) {
        std::mem::swap(batch, &mut self.counter);
        (
            std::mem::take(&mut self.counts),
            std::mem::take(&mut self.busy),
        )
    }
}

/// One thread reads, splits and counts.
fn run_single(mut stream: TcpStream, job: &mut Job) -> io::Result<()> {
    let mut chunker = LineChunker::new(vec![0; SINGLE_BUFFER]);
    let mut spare = vec![0; SINGLE_BUFFER];
    let mut tally = Tally::new(WordCounter::with_capacity(WORDS_HINT));
    loop {
        while job.batch_due() {
            job.finish_batch(|batch| tally.take_into(batch))?;
        }
        match chunker.read_from(&mut stream)? {
            Read::Data(_) | Read::Idle => {
                if let Some(chunk) = chunker.cut(|| std::mem::take(&mut spare)) {
                    tally.count(chunk.bytes());
                    spare = chunk.buf;
                }
            }
            Read::End => {
                tally.count(chunker.finish().bytes());
                break;
            }
        }
    }
    // Close the connection now, as a receiver does at the end of its stream.
    drop(stream);
    job.sleep_until_batch_time();
    job.finish_batch(|batch| tally.take_into(batch))
}

/// What the reader sends to a counting thread.
enum Work {
    /// Count the chunk (whole lines, or the stream's unterminated tail).
    Chunk(Chunk),
    /// Send the batch's table and go on with an empty one.
    Flush,
}

/// A counting thread's share of one batch.
struct Share {
    /// Which thread.
    worker: usize,
    tally: Tally,
}

/// The reader's ends of one counting thread's channels.
struct Worker {
    work: SyncSender<Work>,
    /// Emptied tables going back.
    spares: Sender<WordCounter>,
}

/// A reader hands chunks cut at newlines to `threads` counting threads, and
/// counts a chunk itself when every thread's queue is full.
fn run_parallel(mut stream: TcpStream, threads: usize, job: &mut Job) -> io::Result<()> {
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let (share_tx, share_rx) = mpsc::channel::<Share>();
    let mut workers = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for worker in 0..threads {
        let (work_tx, work_rx) = mpsc::sync_channel::<Work>(QUEUE);
        let (spares_tx, spares_rx) = mpsc::channel::<WordCounter>();
        // Its second table, for the first batch time.
        spares_tx
            .send(WordCounter::with_capacity(WORDS_HINT))
            .expect("the receiver is right here");
        let free_tx = free_tx.clone();
        let share_tx = share_tx.clone();
        handles.push(thread::spawn(move || {
            count_chunks(worker, work_rx, free_tx, share_tx, spares_rx)
        }));
        workers.push(Worker {
            work: work_tx,
            spares: spares_tx,
        });
    }
    drop((free_tx, share_tx));

    let mut dispatcher = Dispatcher {
        workers,
        next: 0,
        own: Tally::new(WordCounter::with_capacity(WORDS_HINT)),
        pool: BufferPool {
            own: Vec::new(),
            free: free_rx,
            allocated: 0,
            max: threads * (QUEUE + 2) + 2,
        },
    };
    let mut chunker = LineChunker::new(dispatcher.pool.get());
    loop {
        if job.batch_due() {
            // Hand over the lines read so far, then collect every thread's share.
            if let Some(chunk) = chunker.cut(|| dispatcher.pool.get()) {
                dispatcher.dispatch(chunk);
            }
            while job.batch_due() {
                job.finish_batch(|batch| dispatcher.collect(batch, &share_rx))?;
            }
        }
        match chunker.read_from(&mut stream)? {
            Read::Data(_) => {
                // A nearly full buffer: fewer, larger messages.
                if chunker.room() < CUT_ROOM
                    && let Some(chunk) = chunker.cut(|| dispatcher.pool.get())
                {
                    dispatcher.dispatch(chunk);
                }
            }
            Read::Idle => {
                if let Some(chunk) = chunker.cut(|| dispatcher.pool.get()) {
                    dispatcher.dispatch(chunk);
                }
            }
            Read::End => {
                dispatcher.dispatch(chunker.finish());
                break;
            }
        }
    }
    drop(stream);
    job.sleep_until_batch_time();
    job.finish_batch(|batch| dispatcher.collect(batch, &share_rx))?;
    drop(dispatcher);
    for handle in handles {
        handle
            .join()
            .map_err(|_| io::Error::other("a counting thread panicked"))?;
    }
    Ok(())
}

/// Reuses the chunk buffers that counting threads give back (and those of the
/// chunks the reader counted); allocating at most `max` of them bounds memory
/// and pushes back on the reader.
struct BufferPool {
    /// Buffers of chunks the reader counted itself.
    own: Vec<Vec<u8>>,
    /// Buffers the counting threads are done with.
    free: Receiver<Vec<u8>>,
    allocated: usize,
    max: usize,
}

impl BufferPool {
    fn get(&mut self) -> Vec<u8> {
        if let Some(buf) = self.own.pop() {
            return buf;
        }
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

/// The reader's side of the counting: sends a chunk to the first counting
/// thread with room in its queue, starting after the last one served, or
/// counts it itself when all are full (on a machine with as many counting
/// threads as cores, the reader would otherwise wait while the threads
/// compete with it and the server for the cores); at a batch time, a flush to
/// every thread.
struct Dispatcher {
    workers: Vec<Worker>,
    next: usize,
    /// What the reader counted itself in this batch.
    own: Tally,
    pool: BufferPool,
}

impl Dispatcher {
    fn dispatch(&mut self, chunk: Chunk) {
        let n = self.workers.len();
        let mut work = Work::Chunk(chunk);
        for k in 0..n {
            match self.workers[(self.next + k) % n].work.try_send(work) {
                Ok(()) => {
                    self.next = (self.next + k + 1) % n;
                    return;
                }
                Err(TrySendError::Full(w)) => work = w,
                Err(TrySendError::Disconnected(_)) => panic!("a counting thread exited early"),
            }
        }
        let Work::Chunk(chunk) = work else {
            unreachable!("only chunks are dispatched")
        };
        self.own.count(chunk.bytes());
        self.pool.own.push(chunk.buf);
    }

    /// Flushes every thread and reduces their shares and the reader's own
    /// counts into `batch` (empty); each thread's table goes back to it emptied.
    fn collect(&mut self, batch: &mut WordCounter, shares: &Receiver<Share>) -> (Counts, Duration) {
        for worker in &self.workers {
            worker
                .work
                .send(Work::Flush)
                .expect("a counting thread exited early");
        }
        // The reader's table becomes the batch's: swap, no merge.
        let (mut counts, mut busy) = self.own.take_into(batch);
        for _ in 0..self.workers.len() {
            let mut share = shares.recv().expect("a counting thread exited early");
            counts += share.tally.counts;
            busy = busy.max(share.tally.busy);
            if batch.is_empty() {
                std::mem::swap(batch, &mut share.tally.counter);
            } else {
                batch.merge(&share.tally.counter);
                share.tally.counter.clear();
            }
            // The thread may be gone after the last batch.
            let _ = self.workers[share.worker].spares.send(share.tally.counter);
        }
        (counts, busy)
    }
}

/// A counting thread: counts chunks into its own table until told to flush,
/// then sends that table and goes on with the emptied one it got back.
fn count_chunks(
    worker: usize,
    work: Receiver<Work>,
    free: Sender<Vec<u8>>,
    shares: Sender<Share>,
    spares: Receiver<WordCounter>,
) {
    let mut tally = Tally::new(WordCounter::with_capacity(WORDS_HINT));
    while let Ok(item) = work.recv() {
        match item {
            Work::Chunk(chunk) => {
                tally.count(chunk.bytes());
                // The reader may be gone after the last chunk.
                let _ = free.send(chunk.buf);
            }
            Work::Flush => {
                let Ok(spare) = spares.recv() else { return };
                let share = Share {
                    worker,
                    tally: std::mem::replace(&mut tally, Tally::new(spare)),
                };
                if shares.send(share).is_err() {
                    return;
                }
            }
        }
    }
}
