//! Test fixture: a word count whose first operator misbehaves on request, to
//! test the host's limits and error reporting.
//!
//! # Arguments (`--arg KEY=VALUE`)
//!
//! - `fault` (default `none`): what the `map` right after the source does
//!   with each record:
//!   - `panic`: panics with the message `boom: deliberate failure`. The SDK's
//!     panic hook writes `panic in map at <path>/src/lib.rs:<line>:<col>:
//!     boom: deliberate failure (at <path>/src/lib.rs:<line>:<col>)` to
//!     stderr, then the instance traps.
//!   - `loop`: never returns (a busy loop: the host's time limit must stop it).
//!   - `alloc`: allocates and fills 1 MiB blocks without bound (the host's
//!     memory limit must stop it).
//!   - `grow`: allocates and touches 48 MiB, frees it, and passes the record
//!     through (the instance's linear memory stays grown: the host should
//!     recycle it after the call).
//!   - `poison`: a partition with a record that contains `fault_on` poisons
//!     the instance (a global flag) and passes through; the next call on
//!     that instance panics with `boom: poisoned by an earlier call` before
//!     it reads its input (a `map_partitions` before the `map`). A fresh instance is
//!     clean, so the task that trapped succeeds on its retry.
//!   - `sleep`: sleeps for an hour (`std::thread::sleep`): the guest is
//!     blocked inside a WASI call (`poll` on a clock), not running Wasm code,
//!     and the host's time limit must still stop it.
//!   - `stdin`: reads stdin until it gets a line, forever (the host grants
//!     no stdin, so every read ends at once and the guest reads again).
//!   - `sandbox`: tries to escape the sandbox and reports what happened
//!     instead of the record: the record becomes the line
//!     `file:<outcome> socket:<outcome> env:<outcome>`, each outcome `denied`
//!     (the attempt failed inside the guest) or `ALLOWED` (it succeeded). The
//!     attempts: open `/etc/hostname` for reading, connect a TCP socket to
//!     `127.0.0.1:<port>` (the `port` argument, else 9), read the environment
//!     variable `HOME` (and list the environment: any variable is `ALLOWED`).
//!
//!     Aimed attempts replace these when any of the following arguments is
//!     given (each a comma-separated list, tried in this order, each once
//!     per record):
//!     - `read=PATH,...`: read the file whole;
//!     - `write=PATH,...`: create (or truncate) the file and write the record
//!       to it, without a newline;
//!     - `connect=HOST:PORT,...`: open a TCP connection (by name too), then
//!       close it;
//!     - `listen=ADDR:PORT,...`: bind a TCP listener;
//!     - `env=NAME,...`: read the variable; the name `*` lists every
//!       variable's name.
//!
//!     The record then becomes one token per attempt, separated by spaces:
//!     `<kind>[<target>]=ALLOWED[:<detail>]` or
//!     `<kind>[<target>]=denied:<error>`, where `<error>` is the Rust
//!     `io::ErrorKind` (`Debug` form, e.g. `PermissionDenied`; `NotPresent`
//!     for a missing variable) and `<detail>` is, for `read`, the file's
//!     contents, for `env`, the value, for `env[*]`, the names joined by `;`
//!     (`denied:none` when there are none). Targets and details are escaped:
//!     every byte outside `!`..`~`, and `%`, becomes `%XX` (hex, upper case),
//!     so a token never contains a space.
//!   - `error`: passes records through, but the `foreach_partition` output
//!     returns `Err("deliberate error in batch <ms> partition <p>")` for
//!     every partition that has a record (no trap: a user error).
//!   - `none`: passes records through.
//! - `unstable_define` (optional, `true`): `define` registers ten extra
//!   `map`s in the iteration order of a `HashMap` (randomly seeded per
//!   instance), so each instance numbers its functions differently: the host
//!   must refuse such a plugin rather than call the wrong function.
//! - `fault_on` (optional): misbehave only on records that contain this
//!   text; by default on every record, so any input triggers the fault.
//! - Input, one of:
//!   - `input`: a UTF-8 lines file read by the host
//!     (`queue_stream_from_lines_file`), `lines_per_batch` lines per batch
//!     (default 1);
//!   - `host` + `port`: lines from a TCP server (`socket_text_stream`).
//! - `output` (optional): save the word counts with
//!   `save_as_text_files(output)`, no suffix.
//!
//! After the `map`, the job is NetworkWordCount: split on `' '`, count with
//! `reduce_by_key(|a, b| a + b)`, `print()`.

use std::sync::atomic::{AtomicBool, Ordering};

use sluice_guest::prelude::*;

/// The job.
pub struct Misbehaving;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Panic,
    Loop,
    Alloc,
    Grow,
    Poison,
    Sleep,
    Stdin,
    Sandbox,
    Error,
    None,
}

impl Job for Misbehaving {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let fault = match args.get("fault").unwrap_or("none") {
            "panic" => Fault::Panic,
            "loop" => Fault::Loop,
            "alloc" => Fault::Alloc,
            "grow" => Fault::Grow,
            "poison" => Fault::Poison,
            "sleep" => Fault::Sleep,
            "stdin" => Fault::Stdin,
            "sandbox" => Fault::Sandbox,
            "error" => Fault::Error,
            "none" => Fault::None,
            other => {
                return Err(format!(
                    "argument `fault`: expected panic, loop, alloc, grow, poison, sleep, stdin, sandbox, error or none, got {other:?}"
                ));
            }
        };
        let fault_on = args.get("fault_on").unwrap_or("").to_string();
        let lines = match (args.get("input"), args.get("host")) {
            (Some(input), _) => {
                let lines_per_batch = args.parse_optional::<u32>("lines_per_batch")?.unwrap_or(1);
                ctx.queue_stream_from_lines_file(input, lines_per_batch)
            }
            (None, Some(host)) => ctx.socket_text_stream(host, args.parse::<u16>("port")?),
            (None, None) => {
                return Err("give `input` (a lines file) or `host` and `port`".to_string());
            }
        };

        let lines = if args.get("unstable_define") == Some("true") {
            unstable_maps(lines)
        } else {
            lines
        };
        let lines = if fault == Fault::Poison {
            poison_next_call(lines, fault_on.clone())
        } else {
            lines
        };
        let port = args.parse_optional::<u16>("port")?.unwrap_or(9);
        let attempts = Attempts::from_args(args);

        let checked = lines.map(move |line: String| {
            if line.contains(fault_on.as_str()) {
                match fault {
                    Fault::Panic => panic!("boom: deliberate failure"),
                    Fault::Loop => spin_forever(),
                    Fault::Alloc => allocate_forever(),
                    Fault::Grow => drop(std::hint::black_box(vec![1u8; 48 << 20])),
                    Fault::Sleep => std::thread::sleep(std::time::Duration::from_secs(3600)),
                    Fault::Stdin => read_stdin_forever(),
                    Fault::Sandbox if attempts.is_empty() => return try_escape(port),
                    Fault::Sandbox => return attempts.run(&line),
                    Fault::Poison | Fault::Error | Fault::None => {}
                }
            }
            line
        });
        if fault == Fault::Error {
            checked.foreach_partition(|key, records| {
                if records.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "deliberate error in batch {} partition {}",
                        key.batch_time_ms, key.partition
                    ))
                }
            });
        }

        let counts = checked
            .flat_map(|l| l.split(' ').map(String::from).collect::<Vec<_>>())
            .map(|w| (w, 1i64))
            .reduce_by_key(|a, b| a + b);
        counts.print();
        if let Some(output) = args.get("output") {
            counts.save_as_text_files(output, None);
        }
        Ok(())
    }
}

/// Set by a call that saw the `fault_on` text; the next call panics.
static POISONED: AtomicBool = AtomicBool::new(false);

/// A `map_partitions` (one call per partition) that panics when an earlier
/// call on this instance saw `fault_on`, and poisons the instance when it
/// sees it.
fn poison_next_call(lines: DStream<String>, fault_on: String) -> DStream<String> {
    lines.map_partitions(move |records: Vec<String>| {
        if POISONED.load(Ordering::Relaxed) {
            panic!("boom: poisoned by an earlier call");
        }
        if records.iter().any(|r| r.contains(fault_on.as_str())) {
            POISONED.store(true, Ordering::Relaxed);
        }
        records
    })
}

/// Ten maps that pass records through, registered in a `HashMap`'s
/// iteration order: each has its own call site, so its node name differs,
/// and the order (hence the function numbering) changes with the map's
/// random seed, which differs per instance.
fn unstable_maps(lines: DStream<String>) -> DStream<String> {
    type Step = fn(&DStream<String>) -> DStream<String>;
    let steps: std::collections::HashMap<u32, Step> = [
        (0, (|s| s.map(|l: String| l)) as Step),
        (1, |s| s.map(|l: String| l)),
        (2, |s| s.map(|l: String| l)),
        (3, |s| s.map(|l: String| l)),
        (4, |s| s.map(|l: String| l)),
        (5, |s| s.map(|l: String| l)),
        (6, |s| s.map(|l: String| l)),
        (7, |s| s.map(|l: String| l)),
        (8, |s| s.map(|l: String| l)),
        (9, |s| s.map(|l: String| l)),
    ]
    .into_iter()
    .collect();
    steps.values().fold(lines, |stream, step| step(&stream))
}

fn read_stdin_forever() -> ! {
    let mut line = String::new();
    loop {
        line.clear();
        let _ = std::io::stdin().read_line(&mut line);
        std::hint::black_box(&line);
    }
}

/// `file:<outcome> socket:<outcome> env:<outcome>`.
fn try_escape(port: u16) -> String {
    let outcome = |allowed: bool| if allowed { "ALLOWED" } else { "denied" };
    let file = std::fs::File::open("/etc/hostname").is_ok();
    let socket = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let env = std::env::var("HOME").is_ok() || std::env::vars_os().next().is_some();
    format!(
        "file:{} socket:{} env:{}",
        outcome(file),
        outcome(socket),
        outcome(env)
    )
}

/// The aimed attempts of `fault=sandbox` (see the crate's docs).
#[derive(Clone, Default)]
struct Attempts {
    read: Vec<String>,
    write: Vec<String>,
    connect: Vec<String>,
    listen: Vec<String>,
    env: Vec<String>,
}

impl Attempts {
    fn from_args(args: &Args) -> Attempts {
        let list = |key: &str| -> Vec<String> {
            args.get(key)
                .map(|v| v.split(',').map(String::from).collect())
                .unwrap_or_default()
        };
        Attempts {
            read: list("read"),
            write: list("write"),
            connect: list("connect"),
            listen: list("listen"),
            env: list("env"),
        }
    }

    fn is_empty(&self) -> bool {
        self.read.is_empty()
            && self.write.is_empty()
            && self.connect.is_empty()
            && self.listen.is_empty()
            && self.env.is_empty()
    }

    /// One token per attempt, in order, separated by spaces.
    fn run(&self, record: &str) -> String {
        let mut tokens = Vec::new();
        let mut report = |kind: &str, target: &str, outcome: Result<Option<String>, String>| {
            let outcome = match outcome {
                Ok(None) => "ALLOWED".to_string(),
                Ok(Some(detail)) => format!("ALLOWED:{}", escape(&detail)),
                Err(error) => format!("denied:{error}"),
            };
            tokens.push(format!("{kind}[{}]={outcome}", escape(target)));
        };
        let kind = |e: std::io::Error| format!("{:?}", e.kind());
        for path in &self.read {
            let read =
                std::fs::read(path).map(|bytes| Some(String::from_utf8_lossy(&bytes).into_owned()));
            report("read", path, read.map_err(kind));
        }
        for path in &self.write {
            let written = std::fs::write(path, record).map(|()| None);
            report("write", path, written.map_err(kind));
        }
        for target in &self.connect {
            let connected = std::net::TcpStream::connect(target.as_str())
                .map(drop)
                .map(|()| None);
            report("connect", target, connected.map_err(kind));
        }
        for target in &self.listen {
            let bound = std::net::TcpListener::bind(target.as_str())
                .map(drop)
                .map(|()| None);
            report("listen", target, bound.map_err(kind));
        }
        for name in &self.env {
            let value = if name == "*" {
                let names: Vec<String> = std::env::vars_os()
                    .map(|(k, _)| k.to_string_lossy().into_owned())
                    .collect();
                if names.is_empty() {
                    Err("none".to_string())
                } else {
                    Ok(Some(names.join(";")))
                }
            } else {
                std::env::var(name).map(Some).map_err(|e| match e {
                    std::env::VarError::NotPresent => "NotPresent".to_string(),
                    std::env::VarError::NotUnicode(_) => "NotUnicode".to_string(),
                })
            };
            report("env", name, value);
        }
        tokens.join(" ")
    }
}

/// Every byte outside `!`..`~`, and `%`, as `%XX`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn allocate_forever() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

sluice_guest::export_job!(Misbehaving);
