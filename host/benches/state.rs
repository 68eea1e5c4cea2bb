//! Memory and time of `update_state_by_key`-style state in the
//! [`StateStore`]: one million keys like `word123456` with `i64` states.
//!
//! `cargo bench -p sluice --bench state` prints, for the store: the memory
//! it added per key, against the raw bytes of keys and states, twice: the
//! bytes allocated (the heap allocations' sizes, counted by this binary's
//! global allocator: what tables and arenas reserve, capacity and not
//! length, whether touched or not) and the resident memory (RSS delta from
//! `/proc/self/statm`: what the pages touched and the allocator's own
//! overhead cost, but not reserved pages never written); the time to insert
//! them; the time of an
//! update pass (every key read and rewritten, as a batch that touches every
//! key does); and the time of the host's whole side of an `update-state`
//! batch over them (call inputs built from every key group, the output
//! checked, the new states committed) with a native function in the
//! guest's place. `-- hashmap` measures a plain
//! `HashMap<Box<[u8]>, Box<[u8]>>` instead, for comparison (a separate run:
//! freed memory is not given back to the system).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sluice::data::codec::{ListIter, split_prefixed};
use sluice::data::{Codec, KeyGroups, Rows};
use sluice::exec::state::StateStore;
use sluice::exec::state::calls::{Codecs, NewValues, Owned, prepare_update};

const KEYS: u64 = 1_000_000;

/// The system allocator, counting the bytes it has allocated and not freed.
struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        ALLOCATED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
            ALLOCATED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What this process has allocated and resident, in bytes.
#[derive(Clone, Copy)]
struct Memory {
    allocated: u64,
    resident: u64,
}

fn memory() -> Memory {
    Memory {
        allocated: ALLOCATED.load(Ordering::Relaxed),
        resident: rss(),
    }
}

/// Resident bytes of this process.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn key(i: u64) -> Vec<u8> {
    format!("word{i:06}").into_bytes()
}

fn report(what: &str, before: Memory, after: Memory, raw: u64) {
    let allocated = after.allocated.saturating_sub(before.allocated);
    let resident = after.resident.saturating_sub(before.resident);
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let per_key = |bytes: u64| bytes as f64 / KEYS as f64;
    println!(
        "{what}: {KEYS} keys, allocated +{:.1} MiB = {:.1} bytes/key, RSS +{:.1} MiB = {:.1} bytes/key \
         (raw keys + states: {:.1} bytes/key)",
        mib(allocated),
        per_key(allocated),
        mib(resident),
        per_key(resident),
        per_key(raw)
    );
}

/// The update function: adds 1 to every state (`tuple<k, list<i64>,
/// option<i64>>` → `option<i64>`).
fn add_one(input: &mut Rows) -> Result<Rows, String> {
    let mut out = Rows::with_capacity(input.len(), input.len() * 9);
    let mut buf = [0u8; 9];
    for record in input.iter() {
        let (_, rest) = split_prefixed(record).ok_or("no key")?;
        let (list, state) = split_prefixed(rest).ok_or("no values")?;
        let mut s = match state {
            [1, s @ ..] => i64::from_le_bytes(s.try_into().map_err(|_| "not an i64")?),
            _ => 0,
        };
        for v in ListIter::new(list).ok_or("not a list")? {
            s += i64::from_le_bytes(v.ok_or("truncated")?.try_into().map_err(|_| "not an i64")?);
        }
        buf[0] = 1;
        buf[1..].copy_from_slice(&(s + 1).to_le_bytes());
        out.push(&buf);
    }
    Ok(out)
}

fn store() {
    let before = memory();
    let store = StateStore::new(KeyGroups::default());
    let op = store.operator("running-counts");
    let started = Instant::now();
    let mut raw = 0;
    for i in 0..KEYS {
        let k = key(i);
        raw += k.len() as u64 + 8;
        op.group_of(&k).insert(&k, &(i as i64).to_le_bytes());
    }
    let inserted = started.elapsed();
    report("StateStore", before, memory(), raw);
    println!(
        "  insert: {inserted:.2?} ({:.0} ns/key)",
        inserted.as_nanos() as f64 / KEYS as f64
    );
    let stats = op.stats();
    assert_eq!(stats.keys, KEYS);
    assert_eq!(stats.bytes, raw);

    let started = Instant::now();
    for i in 0..KEYS {
        let k = key(i);
        let mut group = op.group_of(&k);
        let s = i64::from_le_bytes(group.get(&k).expect("inserted").try_into().expect("i64"));
        group.insert(&k, &(s + 1).to_le_bytes());
    }
    let pass = started.elapsed();
    println!(
        "  update pass (get + set every key): {pass:.2?} ({:.0} ns/key)",
        pass.as_nanos() as f64 / KEYS as f64
    );

    let (string, i64_codec): (Codec, Codec) = ("string".parse().unwrap(), "i64".parse().unwrap());
    let codecs = Codecs {
        key: &string,
        state: &i64_codec,
        mapped: None,
    };
    let started = Instant::now();
    let partitions = 2;
    let mut emitted = 0;
    for p in 0..partitions {
        let owned = Owned {
            partition: p,
            partitions,
            key_groups: store.key_groups().get(),
        };
        let prepared = prepare_update(
            &op,
            owned,
            NewValues::pairs(std::iter::empty()),
            &codecs,
            // In pieces of 4 MiB, as the executor calls.
            4 << 20,
            add_one,
        )
        .expect("a batch");
        prepared.commit(&op);
        emitted += prepared.emitted.len();
    }
    let batch = started.elapsed();
    assert_eq!(emitted as u64, KEYS);
    println!(
        "  update-state batch, host side (inputs from every key group, output checked, committed; \
         one thread): {batch:.2?} ({:.0} ns/key)",
        batch.as_nanos() as f64 / KEYS as f64
    );
    assert_eq!(
        store
            .get("running-counts", &key(7))
            .map(|s| i64::from_le_bytes(s.try_into().unwrap())),
        Some(9)
    );
}

fn hashmap() {
    let before = memory();
    let mut map: std::collections::HashMap<Box<[u8]>, Box<[u8]>> = Default::default();
    let mut raw = 0;
    for i in 0..KEYS {
        let k = key(i);
        raw += k.len() as u64 + 8;
        map.insert(k.into_boxed_slice(), Box::new((i as i64).to_le_bytes()));
    }
    report("HashMap<Box<[u8]>, Box<[u8]>>", before, memory(), raw);
    assert_eq!(map.len() as u64, KEYS);
}

fn main() {
    // `cargo bench` passes `--bench`; `-- hashmap` picks the comparison.
    if std::env::args().any(|a| a == "hashmap") {
        hashmap();
    } else {
        store();
    }
}
