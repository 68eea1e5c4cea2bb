//! Property tests of the native baseline's parts against a plain path: a
//! `std::collections::HashMap<Vec<u8>, u64>` count over `split(b'\n')` /
//! `split(b' ')`.
//!
//! Inputs mix empty words (two spaces), empty lines, words of 0, 15, 16, 17
//! and 100+ bytes (either side of the 16 bytes a slot holds inline), UTF-8
//! and arbitrary bytes, with or without a final newline. The table runs with
//! its real hash and with degenerate ones (every key on one slot, possibly the
//! last so that probes wrap around; or a hash of the length only), starting
//! from a tiny capacity so that it grows many times.

use std::collections::HashMap;
use std::io;

use proptest::prelude::*;
use sluice_bench::chunks::{LineChunker, Read};
use sluice_bench::split::{
    Masks, Portable, for_each_word, for_each_word_memchr, for_each_word_with,
};
use sluice_bench::table::{FoldHash, WordHash, WordTable};
use sluice_bench::words::{Counts, WordCounter};

/// A hash under test.
#[derive(Debug, Clone)]
enum TestHash {
    /// The real one.
    Fold,
    /// Every key hashes alike: one probe sequence for all, from slot
    /// `c >> shift` (the last slot for `u64::MAX`).
    Constant(u64),
    /// Only the length counts: 17 short classes, long keys by length.
    Length,
}

impl WordHash for TestHash {
    fn short(&self, lo: u64, hi: u64, len: usize) -> u64 {
        match self {
            TestHash::Fold => FoldHash.short(lo, hi, len),
            TestHash::Constant(c) => *c,
            TestHash::Length => (len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }

    fn long(&self, word: &[u8]) -> u64 {
        match self {
            TestHash::Fold => FoldHash.long(word),
            TestHash::Constant(c) => *c,
            TestHash::Length => (word.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }
}

fn hashes() -> impl Strategy<Value = TestHash> {
    prop_oneof![
        Just(TestHash::Fold),
        Just(TestHash::Length),
        Just(TestHash::Constant(u64::MAX)),
        Just(TestHash::Constant(0)),
        any::<u64>().prop_map(TestHash::Constant),
    ]
}

/// A word without delimiters: empty, around the inline limit, long, UTF-8,
/// arbitrary bytes.
fn word() -> impl Strategy<Value = Vec<u8>> {
    let letters = |len: usize| proptest::collection::vec(b'a'..=b'e', len);
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(b'a'..=b'c', 1..4),
        letters(15),
        letters(16),
        letters(17),
        proptest::collection::vec(b'a'..=b'b', 100..140),
        "[^ \n]{0,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..24)
            .prop_map(|w| w.into_iter().filter(|&b| b != b' ' && b != b'\n').collect()),
    ]
}

/// Words from a small pool (so that they repeat), joined by `' '`, `'\n'`
/// or runs of them, sometimes with a final newline; or any bytes at all.
fn text() -> impl Strategy<Value = Vec<u8>> {
    let joined = (
        proptest::collection::vec(word(), 1..12),
        proptest::collection::vec((any::<prop::sample::Index>(), 0u8..6), 0..120),
        any::<bool>(),
    )
        .prop_map(|(pool, picks, final_newline)| {
            let mut text = Vec::new();
            for (pick, delimiter) in picks {
                text.extend_from_slice(&pool[pick.index(pool.len())]);
                text.extend_from_slice(match delimiter {
                    0 | 1 => b" ",
                    2 => b"\n",
                    3 => b"  ",
                    4 => b"\n\n",
                    _ => b" \n",
                });
            }
            if !final_newline && text.last() == Some(&b'\n') {
                text.pop();
            }
            text
        });
    prop_oneof![
        4 => joined,
        1 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => proptest::collection::vec(prop_oneof![Just(b' '), Just(b'\n'), Just(b'x')], 0..300),
    ]
}

/// The plain count: Python's `line.split(' ')` per line, lines split at
/// `'\n'`, one last line after the last `'\n'` if anything follows it.
fn reference(text: &[u8]) -> (HashMap<Vec<u8>, u64>, Counts) {
    let mut counts = HashMap::new();
    let mut totals = Counts::default();
    if text.is_empty() {
        return (counts, totals);
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    for line in body.split(|&b| b == b'\n') {
        totals.lines += 1;
        for word in line.split(|&b| b == b' ') {
            *counts.entry(word.to_vec()).or_insert(0) += 1;
            totals.words += 1;
        }
    }
    (counts, totals)
}

fn contents<H: WordHash>(table: &WordTable<H>) -> HashMap<Vec<u8>, u64> {
    let mut map = HashMap::new();
    table.for_each(|word, n| {
        assert!(
            map.insert(word.to_vec(), n).is_none(),
            "a word listed twice: {word:?}"
        );
    });
    map
}

fn counter(hash: TestHash, capacity: usize) -> WordCounter<TestHash> {
    WordCounter::from_table(WordTable::with_capacity_and_hasher(capacity, hash))
}

/// Checks that `table` holds exactly `expected`, through every accessor.
fn assert_holds<H: WordHash>(table: &WordTable<H>, expected: &HashMap<Vec<u8>, u64>) {
    assert_eq!(&contents(table), expected);
    assert_eq!(table.len(), expected.len());
    assert_eq!(table.total(), expected.values().sum::<u64>());
    for (word, &n) in expected {
        assert_eq!(table.get(word), Some(n), "word {word:?}");
    }
    assert!(table.len() * 2 <= table.slots(), "more than half full");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn table_matches_a_hashmap(
        hash in hashes(),
        capacity in 0usize..6,
        adds in proptest::collection::vec((word(), 1u64..5), 0..200),
        absent in proptest::collection::vec(word(), 0..10),
    ) {
        let mut table = WordTable::with_capacity_and_hasher(capacity, hash);
        let mut expected: HashMap<Vec<u8>, u64> = HashMap::new();
        for (word, n) in &adds {
            table.add(word, *n);
            *expected.entry(word.clone()).or_insert(0) += n;
        }
        assert_holds(&table, &expected);
        for word in &absent {
            prop_assert_eq!(table.get(word), expected.get(word).copied());
        }
        // Emptied, it counts again from zero, with the same memory.
        let slots = table.slots();
        table.clear();
        prop_assert!(table.is_empty());
        prop_assert_eq!(table.slots(), slots);
        for (word, _) in &adds {
            prop_assert_eq!(table.get(word), None);
        }
        for (word, n) in adds.iter().rev() {
            table.add(word, *n);
        }
        assert_holds(&table, &expected);
    }

    #[test]
    fn merge_adds_per_word(
        hash in hashes(),
        a in proptest::collection::vec(word(), 0..80),
        b in proptest::collection::vec(word(), 0..80),
    ) {
        let mut left = WordTable::with_capacity_and_hasher(1, hash.clone());
        let mut right = WordTable::with_capacity_and_hasher(1, hash);
        let mut expected: HashMap<Vec<u8>, u64> = HashMap::new();
        for word in &a {
            left.add(word, 1);
            *expected.entry(word.clone()).or_insert(0) += 1;
        }
        for word in &b {
            right.add(word, 2);
            *expected.entry(word.clone()).or_insert(0) += 2;
        }
        left.merge(&right);
        assert_holds(&left, &expected);
    }

    #[test]
    fn splitter_matches_split_on_space_and_newline(text in text()) {
        let mut words = Vec::new();
        let split = for_each_word(&text, |start, end| words.push((start, end)));
        let mut plain = Vec::new();
        let memchr_split = for_each_word_memchr(&text, |start, end| plain.push((start, end)));
        prop_assert_eq!(&words, &plain);
        prop_assert_eq!(split, memchr_split);
        // Every piece between delimiters, the text after the last one apart.
        let mut pieces: Vec<&[u8]> = text.split(|&b| b == b' ' || b == b'\n').collect();
        let tail = pieces.pop().expect("split gives at least one piece");
        let found: Vec<&[u8]> = words.iter().map(|&(s, e)| &text[s..e]).collect();
        prop_assert_eq!(found, pieces);
        prop_assert_eq!(&text[split.tail..], tail);
        prop_assert!(words.iter().all(|&(_, e)| text[e] == b' ' || text[e] == b'\n'));
        prop_assert_eq!(split.newlines, text.iter().filter(|&&b| b == b'\n').count() as u64);
        // Every kernel this CPU has finds the same.
        for_each_kernel(|kernel| {
            let mut again = Vec::new();
            let split_again = for_each_word_with(kernel, &text, |start, end| again.push((start, end)));
            assert_eq!((&again, split_again), (&words, split));
        });
    }

    #[test]
    fn counter_matches_the_plain_count(
        text in text(),
        hash in hashes(),
        capacity in 0usize..6,
    ) {
        let (expected, totals) = reference(&text);
        let mut counter = counter(hash, capacity);
        prop_assert_eq!(counter.count(&text), totals);
        assert_holds(counter.table(), &expected);
        // The same with every kernel this CPU has, counting on top.
        let doubled: HashMap<Vec<u8>, u64> = expected.iter().map(|(w, &n)| (w.clone(), 2 * n)).collect();
        for_each_kernel(|kernel| {
            let mut again = counter.clone();
            assert_eq!(again.count_with(kernel, &text), totals);
            assert_holds(again.table(), &doubled);
        });
    }

    #[test]
    fn chunked_reads_give_the_totals_of_one_pass(
        text in text(),
        // Read sizes, 0 being a read that would block; one at least is not,
        // or the source would never move.
        reads in proptest::collection::vec(0usize..40, 1..40)
            .prop_map(|mut reads| { reads.push(1 + reads.iter().sum::<usize>() % 39); reads }),
        cut_every in 1usize..4,
        buffer in 1usize..64,
    ) {
        let (expected, totals) = reference(&text);
        let mut source = Pieces { text: &text, sizes: reads, next: 0 };
        let mut chunker = LineChunker::new(vec![0; buffer]);
        let mut counter: WordCounter = WordCounter::default();
        let mut counts = Counts::default();
        let mut spare = vec![0; buffer];
        for step in 0.. {
            match chunker.read_from(&mut source).expect("reads succeed") {
                Read::Data(_) | Read::Idle => {
                    if step % cut_every == 0
                        && let Some(chunk) = chunker.cut(|| std::mem::take(&mut spare))
                    {
                        prop_assert_eq!(chunk.bytes().last(), Some(&b'\n'));
                        counts += counter.count(chunk.bytes());
                        spare = chunk.buf;
                    }
                }
                Read::End => {
                    let tail = chunker.finish();
                    counts += counter.count(tail.bytes());
                    break;
                }
            }
        }
        prop_assert_eq!(counts, totals);
        assert_holds(counter.table(), &expected);
    }
}

/// Calls `f` with each delimiter kernel this CPU can run.
fn for_each_kernel(mut f: impl FnMut(AnyKernel)) {
    f(AnyKernel::Portable(Portable));
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(kernel) = sluice_bench::split::Avx2::detect() {
            f(AnyKernel::Avx2(kernel));
        }
        if let Some(kernel) = sluice_bench::split::Avx512::detect() {
            f(AnyKernel::Avx512(kernel));
        }
    }
}

/// One of the kernels, as one type.
#[derive(Debug, Clone, Copy)]
enum AnyKernel {
    Portable(Portable),
    #[cfg(target_arch = "x86_64")]
    Avx2(sluice_bench::split::Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(sluice_bench::split::Avx512),
}

impl Masks for AnyKernel {
    fn masks(self, block: &[u8; 64]) -> (u64, u64) {
        match self {
            AnyKernel::Portable(k) => k.masks(block),
            #[cfg(target_arch = "x86_64")]
            AnyKernel::Avx2(k) => k.masks(block),
            #[cfg(target_arch = "x86_64")]
            AnyKernel::Avx512(k) => k.masks(block),
        }
    }
}

/// A reader that gives `text` in pieces of the sizes listed (cycling), a
/// size of 0 standing for a read that would block.
struct Pieces<'a> {
    text: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl io::Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.text.is_empty() {
            return Ok(0);
        }
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        if size == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = size.min(buf.len()).min(self.text.len());
        buf[..n].copy_from_slice(&self.text[..n]);
        self.text = &self.text[n..];
        Ok(n)
    }
}

#[test]
fn one_key_per_slot_wraps_around_the_end() {
    // Every key starts at the last slot: the second one wraps to slot 0.
    let mut table = WordTable::with_capacity_and_hasher(4, TestHash::Constant(u64::MAX));
    let words: [&[u8]; 5] = [
        b"",
        b"a",
        b"sixteen-bytes-16",
        b"seventeen-bytes-17",
        b"a\0",
    ];
    for (i, word) in words.iter().enumerate() {
        table.add(word, i as u64 + 1);
    }
    for (i, word) in words.iter().enumerate() {
        assert_eq!(table.get(word), Some(i as u64 + 1));
    }
    assert_eq!(table.get(b"b"), None);
    assert_eq!(table.get(b"seventeen-bytes-18"), None);
}

#[test]
fn the_table_grows_from_its_smallest_size() {
    let mut table: WordTable = WordTable::with_capacity(0);
    let first = table.slots();
    let words: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| format!("w{i}").repeat(1 + i as usize % 7).into_bytes())
        .collect();
    for word in &words {
        table.add(word, 1);
    }
    assert!(table.slots() > first);
    assert_eq!(table.len(), words.len());
    assert!(words.iter().all(|w| table.get(w) == Some(1)));
}
