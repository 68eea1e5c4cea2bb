//! Tools for the side-by-side word-count benchmark (`bench/run`, see `bench/README.md`).
//!
//! Two binaries live here, both outside the Sluice engine so that they measure
//! nothing of it:
//!
//! - `corpus-server` serves a corpus file to the first client of a loopback
//!   TCP socket as fast as the client reads, then closes, and records when the
//!   first and the last byte were sent;
//! - `native-wordcount` is the hand-written baseline: it reads the same bytes
//!   from the same kind of socket and counts words in 1-second batches, on one
//!   thread or on one thread per core.
//!
//! This library holds what they share: the splitter ([`split`]), the hash
//! table ([`table`]) and the counting loop over both ([`words`]), the reader
//! that cuts a socket's bytes into chunks of whole lines ([`chunks`]), the
//! batch clock and metrics lines ([`batch`]) and a small argument parser
//! ([`args`]).
//!
//! ```
//! use sluice_bench::words::WordCounter;
//!
//! let mut counter: WordCounter = WordCounter::default();
//! let counts = counter.count(b"to be or\nnot to be\n");
//! assert_eq!((counts.lines, counts.words), (2, 6));
//! assert_eq!(counter.get(b"be"), Some(2));
//! ```

pub mod args;
pub mod batch;
pub mod chunks;
pub mod split;
pub mod table;
pub mod words;
pub mod zeroed;
