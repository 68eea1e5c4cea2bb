//! Cutting a byte stream into chunks of whole lines, with reused buffers.
//!
//! A [`LineChunker`] reads from a socket into one buffer. When asked, it cuts
//! the buffer after its last `'\n'`: the complete lines leave as a [`Chunk`]
//! (the buffer itself, no copy) and the partial last line is copied to the
//! front of a fresh buffer, which the caller supplies (from a pool of buffers
//! that counting threads give back), so nothing is allocated per chunk. At the
//! end of the stream, [`LineChunker::finish`] hands over what is left: the
//! unterminated last line, if any.
//!
//! ```
//! use sluice_bench::chunks::{LineChunker, Read};
//!
//! let mut source: &[u8] = b"one two\nthree";
//! let mut chunker = LineChunker::new(vec![0; 64]);
//! assert_eq!(chunker.read_from(&mut source).unwrap(), Read::Data(13));
//! let chunk = chunker.cut(|| vec![0; 64]).unwrap();
//! assert_eq!(chunk.bytes(), b"one two\n");
//! assert_eq!(chunker.read_from(&mut source).unwrap(), Read::End);
//! assert_eq!(chunker.finish().bytes(), b"three");
//! ```

use std::io;

/// `buf[..len]`: whole lines (or, from [`LineChunker::finish`], the stream's
/// unterminated tail). Give `buf` back to the pool once counted.
#[derive(Debug)]
pub struct Chunk {
    /// The buffer, of which the first `len` bytes are the chunk.
    pub buf: Vec<u8>,
    /// The chunk's length.
    pub len: usize,
}

impl Chunk {
    /// The chunk's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What one [`LineChunker::read_from`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many bytes.
    Data(usize),
    /// Nothing for now: the read timed out, would block or was interrupted.
    Idle,
    /// The stream is over.
    End,
}

/// Reads a stream into a buffer and cuts it at newlines (see the module).
#[derive(Debug)]
pub struct LineChunker {
    buf: Vec<u8>,
    filled: usize,
}

impl LineChunker {
    /// A chunker reading into `buf` (its length is the room it has; it
    /// doubles when a line does not fit).
    pub fn new(buf: Vec<u8>) -> Self {
        Self { buf, filled: 0 }
    }

    /// Bytes read and not handed over yet.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Room left in the buffer.
    pub fn room(&self) -> usize {
        self.buf.len() - self.filled
    }

    /// Reads once from `source` into the buffer's free room.
    pub fn read_from(&mut self, source: &mut impl io::Read) -> io::Result<Read> {
        if self.filled == self.buf.len() {
            // One line fills the buffer: make room for the rest of it.
            let bigger = (self.buf.len() * 2).max(4096);
            self.buf.resize(bigger, 0);
        }
        match source.read(&mut self.buf[self.filled..]) {
            Ok(0) => Ok(Read::End),
            Ok(n) => {
                self.filled += n;
                Ok(Read::Data(n))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Read::Idle)
            }
            Err(e) => Err(e),
        }
    }

    /// If the bytes read hold a `'\n'`: hands over every line up to the last
    /// one as a chunk, and keeps reading into a buffer from `next` (called
    /// only then), which starts with the partial line that followed.
    pub fn cut(&mut self, next: impl FnOnce() -> Vec<u8>) -> Option<Chunk> {
        let len = memchr::memrchr(b'\n', &self.buf[..self.filled])? + 1;
        let rest = self.filled - len;
        let mut next = next();
        if next.len() < rest * 2 {
            next.resize((rest * 2).next_power_of_two(), 0);
        }
        next[..rest].copy_from_slice(&self.buf[len..self.filled]);
        self.filled = rest;
        Some(Chunk {
            buf: std::mem::replace(&mut self.buf, next),
            len,
        })
    }

    /// Hands over everything not handed over yet (at the end of the stream:
    /// the unterminated last line, maybe empty), leaving the chunker empty.
    pub fn finish(&mut self) -> Chunk {
        let len = std::mem::take(&mut self.filled);
        Chunk {
            buf: std::mem::take(&mut self.buf),
            len,
        }
    }
}
