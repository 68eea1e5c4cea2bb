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
//!   - `error`: passes records through, but the `foreach_partition` output
//!     returns `Err("deliberate error in batch <ms> partition <p>")` for
//!     every partition that has a record (no trap: a user error).
//!   - `none`: passes records through.
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

use sluice_guest::prelude::*;

/// The job.
pub struct Misbehaving;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Panic,
    Loop,
    Alloc,
    Error,
    None,
}

impl Job for Misbehaving {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let fault = match args.get("fault").unwrap_or("none") {
            "panic" => Fault::Panic,
            "loop" => Fault::Loop,
            "alloc" => Fault::Alloc,
            "error" => Fault::Error,
            "none" => Fault::None,
            other => {
                return Err(format!(
                    "argument `fault`: expected panic, loop, alloc, error or none, got {other:?}"
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

        let checked = lines.map(move |line: String| {
            if line.contains(fault_on.as_str()) {
                match fault {
                    Fault::Panic => panic!("boom: deliberate failure"),
                    Fault::Loop => spin_forever(),
                    Fault::Alloc => allocate_forever(),
                    Fault::Error | Fault::None => {}
                }
            }
            line
        });
        if fault == Fault::Error {
            checked.foreach_partition(|time, partition, records| {
                if records.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "deliberate error in batch {time} partition {partition}"
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
