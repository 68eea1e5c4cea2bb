//! Helpers shared by the end-to-end tests: run the real `sluice` binary with
//! a deadline, serve bytes on a loopback port, generate the corpus (with
//! `sluice-corpus`, the generator of the demo and of `bench/run`), read the
//! directories written by `save_as_text_files`, the `print` output and the
//! `--metrics-json` file, and count words independently of Sluice.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// How long one run of the binary may take before the test kills it and fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Word counts, keyed by word.
pub type Counts = HashMap<String, i64>;

/// The repository root (host's manifest dir is `<root>/host`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// `lines` lines of the corpus (`sluice_corpus`, default seed: the bytes
/// `gen-corpus LINES` writes). Cached per size, since several tests use the
/// same corpus.
pub fn corpus(lines: usize) -> &'static [u8] {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<usize, &'static [u8]>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache.entry(lines).or_insert_with(|| {
        Box::leak(sluice_corpus::generate(lines, sluice_corpus::DEFAULT_SEED).into_boxed_slice())
    })
}

/// The lines of a text as Spark's socket and file sources see them: split on
/// `\n`, with no empty last line after a final `\n`.
pub fn lines_of(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

/// Word counts of `lines` split with `split(' ')` exactly, like the plugins
/// (and Spark's `split(" ")`): every token counts, empty ones included.
pub fn count_words<'a>(lines: impl IntoIterator<Item = &'a str>) -> Counts {
    let mut counts = Counts::new();
    for line in lines {
        for word in line.split(' ') {
            *counts.entry(word.to_string()).or_default() += 1;
        }
    }
    counts
}

/// Adds `b` into `a`.
pub fn add_counts(a: &mut Counts, b: &Counts) {
    for (k, v) in b {
        *a.entry(k.clone()).or_default() += v;
    }
}

/// A readable difference between two count maps (first few keys), or `None`.
pub fn diff_counts(expected: &Counts, actual: &Counts) -> Option<String> {
    let mut diffs = Vec::new();
    for (k, v) in expected {
        let got = actual.get(k).copied();
        if got != Some(*v) {
            diffs.push(format!("{k:?}: expected {v}, got {got:?}"));
        }
    }
    for (k, v) in actual {
        if !expected.contains_key(k) {
            diffs.push(format!("{k:?}: not expected, got {v}"));
        }
    }
    if diffs.is_empty() {
        return None;
    }
    let n = diffs.len();
    diffs.sort();
    diffs.truncate(20);
    Some(format!(
        "{n} keys differ (expected {} keys, got {}); first ones:\n  {}",
        expected.len(),
        actual.len(),
        diffs.join("\n  ")
    ))
}

/// Asserts that two count maps are equal, with a readable message.
#[track_caller]
pub fn assert_counts_eq(expected: &Counts, actual: &Counts, what: &str) {
    if let Some(diff) = diff_counts(expected, actual) {
        panic!("{what}: {diff}");
    }
}

/// The component of a plugin built by `sluice-test-artifacts`.
pub fn plugin(path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(path.is_file(), "plugin {} was not built", path.display());
    path
}

/// A command line for `sluice`.
pub struct Sluice {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
}

/// What a finished run of `sluice` printed and returned.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 20_000;
        let clip = |s: &str| -> String {
            if s.len() <= MAX {
                s.to_string()
            } else {
                let mut cut = s.len() - MAX;
                while !s.is_char_boundary(cut) {
                    cut += 1;
                }
                format!("[... {cut} bytes cut ...]{}", &s[cut..])
            }
        };
        write!(
            f,
            "sluice exited with {} after {:.1?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            self.status,
            self.elapsed,
            clip(&self.stderr),
            clip(&self.stdout)
        )
    }
}

impl Output {
    /// Fails the test (showing stderr and stdout) unless the run succeeded.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "expected success; {self:?}");
        self
    }

    /// Fails the test unless the run failed with `error: ...` on stderr.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.status.success(), "expected a failure; {self:?}");
        assert!(
            self.stderr.contains("error:"),
            "expected `error: ...` on stderr; {self:?}"
        );
        self
    }

    /// Fails the test unless stderr contains every one of `needles`
    /// (case-insensitive).
    #[track_caller]
    pub fn assert_stderr_contains(&self, needles: &[&str]) -> &Self {
        let stderr = self.stderr.to_lowercase();
        for needle in needles {
            assert!(
                stderr.contains(&needle.to_lowercase()),
                "expected {needle:?} on stderr; {self:?}"
            );
        }
        self
    }
}

impl Sluice {
    /// `sluice ARGS...`.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            timeout: RUN_TIMEOUT,
        }
    }

    /// `sluice run PLUGIN --data-dir DATA`: every run gets its own data
    /// directory so that runs never share a component cache by accident.
    pub fn run(plugin: &Path, data_dir: &Path) -> Self {
        Self::new([
            OsString::from("run"),
            plugin.into(),
            "--data-dir".into(),
            data_dir.into(),
        ])
    }

    /// `sluice run network_word_count.wasm` reading `127.0.0.1:port` and
    /// saving its counts under `prefix`, in 500 ms batches of 100 ms blocks.
    pub fn socket_word_count(data_dir: &Path, port: u16, prefix: &Path) -> Self {
        Self::socket_word_count_in_blocks(data_dir, port, prefix, "100ms")
    }

    /// [`Sluice::socket_word_count`] with blocks of `block_interval` (e.g.
    /// `20ms`) in its 500 ms batches.
    pub fn socket_word_count_in_blocks(
        data_dir: &Path,
        port: u16,
        prefix: &Path,
        block_interval: &str,
    ) -> Self {
        Self::run(&plugin(sluice_test_artifacts::NETWORK_WORD_COUNT), data_dir)
            .job_arg("host", "127.0.0.1")
            .job_arg("port", port)
            .job_arg("output", prefix.display())
            .opt("--batch-interval", "500ms")
            .opt("--block-interval", block_interval)
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// `--arg KEY=VALUE`.
    pub fn job_arg(self, key: &str, value: impl fmt::Display) -> Self {
        self.arg("--arg").arg(format!("{key}={value}"))
    }

    /// `--name VALUE`.
    pub fn opt(self, name: &str, value: impl Into<OsString>) -> Self {
        self.arg(name).arg(value)
    }

    /// Sets an environment variable of the process (e.g. `SLUICE_LOG`).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the binary; the caller waits with [`Running::wait`].
    pub fn spawn(self) -> Running {
        let bin = env!("CARGO_BIN_EXE_sluice");
        let label = format!("{bin} {}", shell_words(&self.args));
        let mut command = Command::new(bin);
        command.args(&self.args);
        self.start(command, label)
    }

    /// Starts `command` (the binary, perhaps through a wrapper) with this
    /// command line's environment, output captured.
    fn start(&self, mut command: Command, label: String) -> Running {
        let mut child = command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {label}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let live_stderr = Arc::new(Mutex::new(Vec::new()));
        Running {
            command: label,
            child,
            stdout: Some(read_all(stdout, Arc::default())),
            stderr: Some(read_all(stderr, Arc::clone(&live_stderr))),
            live_stderr,
            started: Instant::now(),
            timeout: self.timeout,
        }
    }

    /// Runs the binary to its end; fails the test if it takes longer than the
    /// timeout (the process is killed first, never left behind).
    pub fn output(self) -> Output {
        self.spawn().wait()
    }
}

/// A `sluice` process that is running.
pub struct Running {
    command: String,
    child: std::process::Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    live_stderr: Arc<Mutex<Vec<u8>>>,
    started: Instant,
    timeout: Duration,
}

impl Running {
    /// What the process wrote to stderr so far (escape sequences removed).
    pub fn stderr_so_far(&self) -> String {
        let bytes = self.live_stderr.lock().unwrap_or_else(|e| e.into_inner());
        strip_ansi(&String::from_utf8_lossy(&bytes))
    }

    /// Fails the test (after killing the process) if it is past its deadline.
    pub fn check_deadline(&mut self) {
        if self.started.elapsed() > self.timeout {
            let _ = self.child.kill();
            let out = self.collect(None);
            panic!(
                "`{}` did not finish within {:?} and was killed; {out:?}",
                self.command, self.timeout
            );
        }
    }

    /// Sends SIGINT (what Ctrl-C sends) to the process, unless it has
    /// already ended (then [`Running::wait`] tells how).
    #[cfg(unix)]
    #[track_caller]
    pub fn interrupt(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("a process id fits in pid_t");
        // SAFETY: kill(2) touches no memory of ours. `try_wait` just found
        // the child running, and only this `&mut self` can reap it, so `pid`
        // still names our child (at worst a zombie), never another process.
        let rc = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, SIGINT): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Kills the process with SIGKILL (`kill -9`: no chance to clean up)
    /// and returns what it printed.
    pub fn kill(mut self) -> Output {
        let _ = self.child.kill();
        self.collect(None)
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the process to end, at most until its deadline.
    pub fn wait(mut self) -> Output {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return self.collect(Some(status)),
                Ok(None) => {}
                Err(e) => panic!("wait for `{}`: {e}", self.command),
            }
            self.check_deadline();
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn collect(&mut self, status: Option<ExitStatus>) -> Output {
        let status = match status {
            Some(s) => s,
            None => self.child.wait().expect("wait for a killed child"),
        };
        let stdout = self.stdout.take().map(|h| h.join().unwrap_or_default());
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        Output {
            status,
            stdout: stdout.unwrap_or_default(),
            // Logs may be coloured; the tests look for plain text.
            stderr: strip_ansi(&stderr.unwrap_or_default()),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panics while the job runs must not leave it behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes ANSI escape sequences (`ESC [ ... final-byte`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads `r` to its end in a thread, keeping what was read so far in
/// `live` too.
fn read_all(mut r: impl Read + Send + 'static, live: Arc<Mutex<Vec<u8>>>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            live.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
        let buf = live.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn shell_words(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A TCP server on `127.0.0.1:<port>` that accepts one connection, writes
/// `data` to it, and closes it (so the job's socket source ends).
pub struct Server {
    pub port: u16,
    handle: JoinHandle<Result<()>>,
}

impl Server {
    /// Writes `data` in `chunks` pieces of equal size (cut anywhere, also in
    /// the middle of a line or a UTF-8 sequence) with `pause` between them,
    /// so that the stream spans several batches.
    pub fn serve_paced(data: impl Into<Vec<u8>>, chunks: usize, pause: Duration) -> Self {
        let data = data.into();
        let chunk = data.len().div_ceil(chunks.max(1)).max(1);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let handle = thread::spawn(move || -> Result<()> {
            let Some(mut stream) = accept_one(&listener, || false)? else {
                return Ok(());
            };
            stream.set_write_timeout(Some(RUN_TIMEOUT))?;
            for (i, piece) in data.chunks(chunk).enumerate() {
                if i > 0 {
                    thread::sleep(pause);
                }
                stream.write_all(piece).context("write the stream")?;
            }
            stream.flush()?;
            stream.shutdown(Shutdown::Write)?;
            Ok(())
        });
        Self { port, handle }
    }

    /// Fails unless everything was written.
    #[track_caller]
    pub fn finish(self) {
        match self.handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("test server on port {}: {e:#}", self.port),
            Err(_) => panic!("test server on port {} panicked", self.port),
        }
    }
}

/// A TCP server on `127.0.0.1:<port>` that streams `data` to its one client
/// at a steady rate, `piece` bytes (cut anywhere, also inside a line) every
/// `pause`, and keeps the connection open, also after the last byte, until
/// the client closes it or [`StreamServer::finish`] is called: a stream that
/// is still going when the job stops.
pub struct StreamServer {
    pub port: u16,
    sent: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
    handle: JoinHandle<Result<()>>,
}

impl StreamServer {
    pub fn start(data: &'static [u8], piece: usize, pause: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let sent = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let handle = {
            let (sent, done) = (sent.clone(), done.clone());
            thread::spawn(move || -> Result<()> {
                let Some(mut stream) = accept_one(&listener, || done.load(Ordering::Relaxed))?
                else {
                    return Ok(());
                };
                // Short, so that `done` is seen while the client pushes back.
                stream.set_write_timeout(Some(Duration::from_millis(100)))?;
                let mut offset = 0;
                while !done.load(Ordering::Relaxed) {
                    let end = (offset + piece.max(1)).min(data.len());
                    while offset < end && !done.load(Ordering::Relaxed) {
                        match stream.write(&data[offset..end]) {
                            Ok(0) => return Ok(()),
                            Ok(n) => {
                                offset += n;
                                sent.store(offset, Ordering::Relaxed);
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock
                                        | std::io::ErrorKind::TimedOut
                                        | std::io::ErrorKind::Interrupted
                                ) => {}
                            // The client went away: the stream ends here.
                            Err(_) => return Ok(()),
                        }
                    }
                    thread::sleep(pause);
                }
                Ok(())
            })
        };
        Self {
            port,
            sent,
            done,
            handle,
        }
    }

    /// Bytes written to the connection so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops streaming, closes the connection and returns the bytes written.
    #[track_caller]
    pub fn finish(self) -> usize {
        self.done.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(Ok(())) => self.sent.load(Ordering::Relaxed),
            Ok(Err(e)) => panic!("test server on port {}: {e:#}", self.port),
            Err(_) => panic!("test server on port {} panicked", self.port),
        }
    }
}

/// One batch written by `save_as_text_files`: `<prefix>-<time>[.<suffix>]`.
#[derive(Debug)]
pub struct SavedBatch {
    pub time_ms: u64,
    pub dir: PathBuf,
    /// The lines of each `part-NNNNN` file, in part order.
    pub parts: Vec<Vec<String>>,
}

impl SavedBatch {
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().flatten().map(String::as_str)
    }
}

/// Reads every complete batch directory (one with `_SUCCESS`) of the prefix
/// `prefix` (a path whose file name is the prefix proper), sorted by time.
/// A directory without `_SUCCESS` is skipped (not committed); a file other
/// than `part-NNNNN` (or one starting with `_` or `.`) is an error.
pub fn read_saved_batches(prefix: &Path, suffix: Option<&str>) -> Result<Vec<SavedBatch>> {
    let parent = prefix.parent().context("prefix has a parent")?;
    let name = prefix
        .file_name()
        .and_then(|n| n.to_str())
        .context("prefix has a UTF-8 file name")?;
    let mut batches = Vec::new();
    let entries = match fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(batches),
        Err(e) => return Err(e).with_context(|| format!("list {}", parent.display())),
    };
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = file_name
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('-'))
        else {
            continue;
        };
        let time = match suffix {
            Some(suffix) => match rest.strip_suffix(suffix).and_then(|r| r.strip_suffix('.')) {
                Some(time) => time,
                None => continue,
            },
            None => rest,
        };
        let Ok(time_ms) = time.parse::<u64>() else {
            continue;
        };
        let dir = entry.path();
        if !dir.join("_SUCCESS").is_file() {
            // Not committed (yet): a reader must ignore it.
            continue;
        }
        let mut part_files = Vec::new();
        for part in fs::read_dir(&dir)? {
            let part = part?;
            let part_name = part.file_name().to_string_lossy().into_owned();
            // `_SUCCESS`, and what readers of Spark's output skip too
            // (`_temporary/`, `.crc` files).
            if part_name.starts_with('_') || part_name.starts_with('.') {
                continue;
            }
            let Some(index) = part_name.strip_prefix("part-") else {
                bail!("unexpected file {part_name:?} in {}", dir.display());
            };
            ensure!(
                index.len() == 5 && index.bytes().all(|b| b.is_ascii_digit()),
                "part file {part_name:?} in {} is not named part-NNNNN",
                dir.display()
            );
            part_files.push((index.parse::<u32>()?, part.path()));
        }
        part_files.sort();
        for (i, (index, path)) in part_files.iter().enumerate() {
            ensure!(
                *index as usize == i,
                "{}: part files are not numbered 0..n: {:?}",
                dir.display(),
                part_files.iter().map(|(i, _)| i).collect::<Vec<_>>()
            );
            let _ = path;
        }
        let mut parts = Vec::new();
        for (_, path) in part_files {
            let text = fs::read_to_string(&path)
                .with_context(|| format!("read {} as UTF-8", path.display()))?;
            parts.push(lines_of(&text).into_iter().map(String::from).collect());
        }
        batches.push(SavedBatch {
            time_ms,
            dir,
            parts,
        });
    }
    batches.sort_by_key(|b| b.time_ms);
    Ok(batches)
}

/// Parses `(key,value)` as written by `print` and `save_as_text_files` for a
/// pair. The key may contain commas (the value is after the last one).
pub fn parse_pair(line: &str) -> Result<(String, String)> {
    let inner = line
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .with_context(|| format!("{line:?} is not a (key,value) pair"))?;
    let (k, v) = inner
        .rsplit_once(',')
        .with_context(|| format!("{line:?} is not a (key,value) pair"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Parses `(word,count)` lines into counts; fails on a repeated key.
pub fn parse_counts<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Counts> {
    let mut counts = Counts::new();
    for line in lines {
        let (k, v) = parse_pair(line)?;
        let v: i64 = v
            .parse()
            .with_context(|| format!("count in {line:?} is not an integer"))?;
        ensure!(
            counts.insert(k.clone(), v).is_none(),
            "key {k:?} appears twice in one batch"
        );
    }
    Ok(counts)
}

/// One line of `--metrics-json`.
#[derive(Debug, Clone)]
pub struct BatchMetrics {
    pub batch_time_ms: u64,
    pub records: u64,
    pub invalid_records: u64,
    pub processing_ms: f64,
    pub scheduling_delay_ms: f64,
    pub total_delay_ms: f64,
    /// When processing ended, epoch ms.
    pub done_ms: u64,
    /// The accumulators' totals after the batch.
    pub accumulator_totals: BTreeMap<String, f64>,
}

/// Reads a `--metrics-json` file: one JSON object per line per batch.
pub fn read_metrics(path: &Path) -> Result<Vec<BatchMetrics>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let mut metrics = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("metrics line {line:?} is not JSON"))?;
        let num = |key: &str| -> Result<f64> {
            v.get(key)
                .and_then(serde_json::Value::as_f64)
                .with_context(|| format!("metrics line {line:?} has no number {key:?}"))
        };
        let int = |key: &str| -> Result<u64> {
            v.get(key)
                .and_then(serde_json::Value::as_u64)
                .with_context(|| format!("metrics line {line:?} has no integer {key:?}"))
        };
        metrics.push(BatchMetrics {
            batch_time_ms: int("batch_time_ms")?,
            records: int("records")?,
            invalid_records: int("invalid_records")?,
            processing_ms: num("processing_ms")?,
            scheduling_delay_ms: num("scheduling_delay_ms")?,
            total_delay_ms: num("total_delay_ms")?,
            done_ms: int("done_ms")?,
            accumulator_totals: v
                .get("accumulator_totals")
                .and_then(serde_json::Value::as_object)
                .with_context(|| format!("metrics line {line:?} has no accumulator_totals"))?
                .iter()
                .map(|(name, total)| {
                    total
                        .as_f64()
                        .map(|t| (name.clone(), t))
                        .with_context(|| format!("accumulator {name} is not a number in {line:?}"))
                })
                .collect::<Result<_>>()?,
        });
    }
    Ok(metrics)
}

/// Checks what holds for every metrics file: batch times strictly increase by
/// multiples of the batch interval, delays are consistent, and a batch was
/// done at its time plus its total delay when it started at or after its
/// time, earlier when it ran early (once the sources have ended, the last
/// batches run at once).
#[track_caller]
pub fn check_metrics_shape(metrics: &[BatchMetrics], batch_interval_ms: u64) {
    for m in metrics {
        assert_eq!(
            m.batch_time_ms % batch_interval_ms,
            0,
            "batch time {} is not a multiple of the batch interval {batch_interval_ms} ms",
            m.batch_time_ms
        );
        assert!(
            m.processing_ms >= 0.0 && m.scheduling_delay_ms >= 0.0,
            "negative time in {m:?}"
        );
        assert!(
            m.total_delay_ms + 1.0 >= m.processing_ms + m.scheduling_delay_ms - 1.0,
            "total delay is less than scheduling delay + processing time in {m:?}"
        );
        let at_time_plus_delay = m.batch_time_ms as f64 + m.total_delay_ms;
        let done = m.done_ms as f64;
        assert!(
            done <= at_time_plus_delay + 2.0,
            "done after its time plus its delay in {m:?}"
        );
        if m.scheduling_delay_ms > 0.0 {
            assert!(
                done + 2.0 >= at_time_plus_delay,
                "a batch that started after its time was done before its time plus its delay in {m:?}"
            );
        }
    }
    for w in metrics.windows(2) {
        assert!(
            w[0].batch_time_ms < w[1].batch_time_ms,
            "batch times do not increase: {} then {}",
            w[0].batch_time_ms,
            w[1].batch_time_ms
        );
    }
}

/// One batch of `print()` output on stdout.
#[derive(Debug)]
pub struct PrintedBatch {
    pub time_ms: u64,
    pub elements: Vec<String>,
    /// Whether the batch ended with `...` (more elements than shown).
    pub truncated: bool,
}

/// Parses Spark's `print()` format: a line of dashes, `Time: <ms> ms`, a line
/// of dashes, one element per line, `...` if there are more, an empty line.
pub fn parse_printed(stdout: &str) -> Result<Vec<PrintedBatch>> {
    let is_dashes = |l: &str| l.len() >= 10 && l.bytes().all(|b| b == b'-');
    let lines: Vec<&str> = stdout.lines().collect();
    let mut batches = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        ensure!(
            is_dashes(lines[i]),
            "stdout line {}: expected a line of dashes, got {:?}",
            i + 1,
            lines[i]
        );
        let time = lines
            .get(i + 1)
            .and_then(|l| l.strip_prefix("Time: "))
            .and_then(|l| l.strip_suffix(" ms"))
            .with_context(|| format!("stdout line {}: expected `Time: <ms> ms`", i + 2))?;
        let time_ms: u64 = time.parse().context("batch time in `Time:` line")?;
        ensure!(
            lines.get(i + 2).is_some_and(|l| is_dashes(l)),
            "stdout line {}: expected a line of dashes",
            i + 3
        );
        i += 3;
        let mut elements = Vec::new();
        let mut truncated = false;
        while i < lines.len() && !lines[i].is_empty() {
            if lines[i] == "..." {
                truncated = true;
            } else {
                ensure!(!truncated, "stdout line {}: element after `...`", i + 1);
                elements.push(lines[i].to_string());
            }
            i += 1;
        }
        ensure!(
            i < lines.len(),
            "stdout: batch {time_ms} does not end with an empty line"
        );
        i += 1;
        batches.push(PrintedBatch {
            time_ms,
            elements,
            truncated,
        });
    }
    Ok(batches)
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The first connection to `listener` (blocking, in the caller's thread),
/// or `None` once `give_up` says so; fails after [`RUN_TIMEOUT`], so that a
/// test never waits forever for a client that does not come.
fn accept_one(listener: &TcpListener, give_up: impl Fn() -> bool) -> Result<Option<TcpStream>> {
    let port = listener.local_addr().context("local address")?.port();
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(Some(stream));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if give_up() {
                    return Ok(None);
                }
                ensure!(Instant::now() < deadline, "nobody connected to port {port}");
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).context("accept"),
        }
    }
}

#[cfg(unix)]
impl Running {
    /// Sends SIGTERM (what a service manager sends) to the process, unless
    /// it has already ended; like [`Running::interrupt`], a graceful stop.
    #[track_caller]
    pub fn terminate(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("a process id fits in pid_t");
        // SAFETY: as in `interrupt`: kill(2) touches no memory of ours, and
        // `pid` is our unreaped child.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, SIGTERM): {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(unix)]
impl Sluice {
    /// Starts the binary with a file size limit of `blocks` × 512 bytes
    /// (`sh -c 'ulimit -f BLOCKS; exec "$0" "$@"'`): a write past it fails
    /// with EFBIG ("File too large"), a full disk in miniature.
    pub fn spawn_with_file_size_limit(self, blocks: u32) -> Running {
        let bin = env!("CARGO_BIN_EXE_sluice");
        let script = format!("ulimit -f {blocks}; exec \"$0\" \"$@\"");
        let label = format!("sh -c {script:?} {bin} {}", shell_words(&self.args));
        let mut command = Command::new("sh");
        command.arg("-c").arg(&script).arg(bin).args(&self.args);
        self.start(command, label)
    }
}

/// An S3-protocol server on loopback for `s3://` checkpoint locations:
/// moto (`scripts/s3-test-server`, installed by `scripts/s3-test-server
/// --install`, which `scripts/test` runs) on a free port, with one bucket;
/// killed on drop. Credentials: any (see [`S3Server::env`]).
pub struct S3Server {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
    /// The bucket it was started with.
    pub bucket: String,
}

impl S3Server {
    /// Starts the server (without installing it) and creates `bucket`.
    /// Fails the test, saying how to install it, when it does not start.
    pub fn start(bucket: &str) -> S3Server {
        let script = repo_root().join("scripts").join("s3-test-server");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let log = tempfile::NamedTempFile::new().expect("a temporary file");
        let child = Command::new(&script)
            .args(["--no-install", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("reopen the log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let mut server = S3Server {
            child,
            port,
            bucket: bucket.to_string(),
        };
        let fail = |why: String| -> ! {
            let log = fs::read_to_string(log.path()).unwrap_or_default();
            panic!(
                "the S3 test server did not start ({why}); install it with \
                 `scripts/s3-test-server --install` (scripts/test does). Its output:\n{log}"
            )
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                fail(format!("it exited with {status}"));
            }
            if let Ok(response) = http_request(port, "GET", "/")
                && http_status(&response) == Some(200)
            {
                break;
            }
            if Instant::now() > deadline {
                fail(format!("no answer on port {port} within 60 s"));
            }
            thread::sleep(Duration::from_millis(100));
        }
        match http_request(port, "PUT", &format!("/{bucket}")) {
            Ok(response) if http_status(&response) == Some(200) => {}
            other => fail(format!("creating bucket {bucket}: {other:?}")),
        }
        server
    }

    /// The environment of a `sluice` process using this server.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }

    /// The `--storage-option` values for this server.
    pub fn storage_options(&self) -> [String; 2] {
        [
            format!("aws_endpoint=http://127.0.0.1:{}", self.port),
            "aws_allow_http=true".to_string(),
        ]
    }

    /// The keys of the bucket's objects under `prefix` (ListObjectsV2; up
    /// to 1000, which the tests stay under).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let response = http_request(
            self.port,
            "GET",
            &format!("/{}?list-type=2&prefix={prefix}", self.bucket),
        )?;
        ensure!(
            http_status(&response) == Some(200),
            "listing {prefix} in bucket {}: {response}",
            self.bucket
        );
        ensure!(
            !response.contains("<IsTruncated>true</IsTruncated>"),
            "listing {prefix} in bucket {} is truncated",
            self.bucket
        );
        Ok(response
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with an empty body to `127.0.0.1:port`; the whole
/// response.
fn http_request(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    http_request_with(port, method, path, &[])
}

/// One HTTP/1.1 request with an empty body and these extra headers to
/// `127.0.0.1:port`, written by hand (no client library in between); the
/// whole response, status line and headers included.
pub fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// The status code of an HTTP response.
pub fn http_status(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

/// A loopback port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// An input file of a text file stream whose batch is known: the batch of
/// its modification time (the host's rule, `BatchClock::batch_for`).
pub struct TimedFile {
    pub lines: Vec<String>,
    pub batch: u64,
}

/// The word counts of every saved batch directory of `prefix`, by batch
/// time.
pub fn saved_counts(prefix: &Path) -> std::collections::BTreeMap<u64, Counts> {
    read_saved_batches(prefix, None)
        .unwrap()
        .into_iter()
        .map(|batch| (batch.time_ms, parse_counts(batch.lines()).unwrap()))
        .collect()
}

/// The word counts of the lines of `files` whose batch is `within`.
pub fn counts_of(files: &[TimedFile], within: impl Fn(u64) -> bool) -> Counts {
    count_words(
        files
            .iter()
            .filter(|f| within(f.batch))
            .flat_map(|f| f.lines.iter().map(String::as_str)),
    )
}

/// Writes `text` to `path` with modification time `modified_ms`; the file
/// belongs to batch `ceil(modified / batch_ms) * batch_ms`.
pub fn write_timed_file(path: &Path, text: &[u8], modified_ms: u64, batch_ms: u64) -> TimedFile {
    fs::write(path, text).unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_millis(modified_ms))
        .unwrap();
    let text = std::str::from_utf8(text).expect("the input is UTF-8");
    TimedFile {
        lines: text.lines().map(String::from).collect(),
        batch: modified_ms.div_ceil(batch_ms) * batch_ms,
    }
}

/// The rows `(batch_time, key, value)` of a `save_to_sqlite` word count
/// table, by batch; a word stored twice in one batch fails the test.
pub fn sqlite_word_counts(database: &Path, table: &str) -> BTreeMap<u64, Counts> {
    let db = rusqlite::Connection::open(database).unwrap();
    let mut statement = db
        .prepare(&format!("SELECT batch_time, key, value FROM {table}"))
        .unwrap();
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .unwrap();
    let mut batches: BTreeMap<u64, Counts> = BTreeMap::new();
    for row in rows {
        let (time, word, count) = row.unwrap();
        let previous = batches
            .entry(time as u64)
            .or_default()
            .insert(word.clone(), count);
        assert!(previous.is_none(), "({word}) stored twice for batch {time}");
    }
    batches
}

/// A `sluice serve` on a loopback port, with its data directory.
pub struct Host {
    pub running: Running,
    pub port: u16,
    pub data: PathBuf,
}

impl Host {
    /// Starts `sluice serve` on a free port and waits until it answers.
    pub fn start(data: &Path) -> Host {
        Self::start_on(data, free_port())
    }

    pub fn start_on(data: &Path, port: u16) -> Host {
        let running = Sluice::new(["serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .opt("--data-dir", data)
            .spawn();
        let mut host = Host {
            running,
            port,
            data: data.to_path_buf(),
        };
        let up = wait_until(RUN_TIMEOUT / 2, || {
            host.running.check_deadline();
            assert!(!host.running.has_exited(), "sluice serve exited");
            http_request_with(port, "GET", "/v1/jobs", &[]).is_ok()
        });
        assert!(up, "sluice serve did not answer on port {port}");
        host
    }

    pub fn token(&self) -> String {
        fs::read_to_string(self.data.join("token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A client command against this host (`--server`, `SLUICE_TOKEN`).
    pub fn client<const N: usize>(&self, args: [&str; N]) -> Sluice {
        Sluice::new(args)
            .opt("--server", format!("http://127.0.0.1:{}", self.port))
            .env("SLUICE_TOKEN", self.token())
    }

    /// `sluice status NAME --json`.
    pub fn status(&self, name: &str) -> serde_json::Value {
        let out = self.client(["status", name, "--json"]).output();
        out.assert_success();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}; {out:?}"))
    }
}
