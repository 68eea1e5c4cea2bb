//! Splitting bytes into text lines: `\n` ends a line, a `\r` before it is
//! dropped, an empty line is an empty record, and a last line without `\n`
//! counts when the input ends cleanly ([`LineSplitter::end`]); when it breaks
//! off (a read error), the partial line is dropped
//! ([`LineSplitter::abandon`]). Lines that are not UTF-8 are skipped and
//! reported with their byte offset.
//!
//! [`split_lines`] works on a slice (a whole file, a chunk of it);
//! [`LineSplitter`] on a stream read into one reusable buffer, carrying a
//! partial line from one read to the next.

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadLine {
    /// Not valid UTF-8.
    Utf8,
    /// Longer than the splitter's maximum line length.
    TooLong,
}

/// Where [`split_lines`] puts what it finds.
pub(crate) trait LineSink {
    /// A valid line, without its `\r\n` / `\n`.
    fn line(&mut self, line: &[u8]);
    /// A skipped line starting at byte `offset` of the input.
    fn bad_line(&mut self, offset: u64, why: BadLine);
}

/// Splits `data`, whose first byte is at `offset` in the input, into lines.
/// Only lines ending with `\n` are taken, unless `end` says the input ends
/// with `data` (then a last line without `\n` counts). Returns the number of
/// bytes consumed; the rest is a partial line.
///
/// UTF-8 is checked once for the whole run of complete lines (a `\n` never
/// falls inside a UTF-8 sequence), and line by line only past an error.
pub(crate) fn split_lines(data: &[u8], offset: u64, end: bool, sink: &mut impl LineSink) -> usize {
    let complete = if end {
        data.len()
    } else {
        memchr::memrchr(b'\n', data).map_or(0, |i| i + 1)
    };
    let region = &data[..complete];
    let mut valid_to = valid_up_to(region);
    let mut start = 0;
    while start < region.len() {
        let stop = memchr::memchr(b'\n', &region[start..]).map_or(region.len(), |i| start + i);
        if stop <= valid_to {
            let line = &region[start..stop];
            sink.line(line.strip_suffix(b"\r").unwrap_or(line));
        } else {
            // The first invalid byte is in this line: skip it and check
            // again from the next one.
            sink.bad_line(offset + start as u64, BadLine::Utf8);
            let next = (stop + 1).min(region.len());
            valid_to = next + valid_up_to(&region[next..]);
        }
        start = stop + 1;
    }
    complete
}

fn valid_up_to(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    }
}

/// Splits a byte stream into lines, reading into one reusable buffer.
///
/// Read into [`LineSplitter::spare`], then call [`LineSplitter::filled`]
/// with the number of bytes read; at the end of the stream call
/// [`LineSplitter::end`].
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    /// Bytes of a partial line at the start of `buf`.
    carried: usize,
    /// Offset in the stream of `buf[0]`.
    offset: u64,
    max_line: usize,
    /// Inside a line over `max_line`, dropped up to its `\n`.
    skipping: bool,
}

impl LineSplitter {
    /// A splitter reading `capacity` bytes at a time, whose buffer grows up
    /// to hold a line of `max_line` bytes (plus its `\n`); a longer line is
    /// skipped.
    pub(crate) fn new(capacity: usize, max_line: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(1)],
            carried: 0,
            offset: 0,
            max_line: max_line.max(1),
            skipping: false,
        }
    }

    /// Forgets the partial line and restarts offsets at 0 (a new connection).
    pub(crate) fn reset(&mut self) {
        self.carried = 0;
        self.offset = 0;
        self.skipping = false;
    }

    /// Forgets the partial line and restarts at stream offset `offset` (a
    /// file read from the middle, at a line start).
    pub(crate) fn reset_at(&mut self, offset: u64) {
        self.reset();
        self.offset = offset;
    }

    /// The stream offset up to which every line is taken (or skipped): the
    /// start of the partial line held.
    pub(crate) fn consumed(&self) -> u64 {
        self.offset
    }

    /// The free part of the buffer, to read into; never empty.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.carried..]
    }

    /// Takes the lines completed by `n` bytes just read into
    /// [`LineSplitter::spare`].
    pub(crate) fn filled(&mut self, n: usize, sink: &mut impl LineSink) {
        let total = self.carried + n;
        let mut start = 0;
        if self.skipping {
            match memchr::memchr(b'\n', &self.buf[..total]) {
                Some(nl) => {
                    self.skipping = false;
                    start = nl + 1;
                }
                None => start = total,
            }
        }
        start += split_lines(
            &self.buf[start..total],
            self.offset + start as u64,
            false,
            sink,
        );
        self.buf.copy_within(start..total, 0);
        self.carried = total - start;
        self.offset += start as u64;
        if self.carried == self.buf.len() {
            if self.buf.len() <= self.max_line {
                let grown = (self.buf.len() * 2).min(self.max_line + 1);
                self.buf.resize(grown, 0);
            } else {
                sink.bad_line(self.offset, BadLine::TooLong);
                self.skipping = true;
                self.offset += self.carried as u64;
                self.carried = 0;
            }
        }
    }

    /// The stream broke off (a read error, not a clean end): the partial
    /// last line, which may be cut short, is dropped. Returns its offset in
    /// the stream and its length so far (0 when there was none).
    pub(crate) fn abandon(&mut self) -> (u64, usize) {
        let dropped = (self.offset, self.carried);
        self.offset += self.carried as u64;
        self.carried = 0;
        self.skipping = false;
        dropped
    }

    /// The stream has ended cleanly: a last line without `\n` counts.
    pub(crate) fn end(&mut self, sink: &mut impl LineSink) {
        if !self.skipping {
            split_lines(&self.buf[..self.carried], self.offset, true, sink);
        }
        self.offset += self.carried as u64;
        self.carried = 0;
        self.skipping = false;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Collects lines as strings and bad lines as offsets.
    #[derive(Default, Debug)]
    pub(crate) struct Collect {
        pub(crate) lines: Vec<String>,
        pub(crate) bad: Vec<(u64, BadLine)>,
    }

    impl LineSink for Collect {
        fn line(&mut self, line: &[u8]) {
            self.lines.push(String::from_utf8(line.to_vec()).unwrap());
        }
        fn bad_line(&mut self, offset: u64, why: BadLine) {
            self.bad.push((offset, why));
        }
    }

    const INPUT: &[u8] = b"alpha\nbeta\r\n\nbad \xff\xfe line\nh\xc3\xa9\r\n\xe2\x82\nlast";

    #[test]
    fn splits_a_slice_with_crlf_empty_and_invalid_lines() {
        let mut c = Collect::default();
        assert_eq!(split_lines(INPUT, 100, true, &mut c), INPUT.len());
        assert_eq!(c.lines, ["alpha", "beta", "", "hé", "last"]);
        assert_eq!(c.bad, [(113, BadLine::Utf8), (130, BadLine::Utf8)]);

        let mut c = Collect::default();
        assert_eq!(split_lines(INPUT, 0, false, &mut c), INPUT.len() - 4);
        assert_eq!(c.lines, ["alpha", "beta", "", "hé"]);
        assert_eq!(split_lines(b"no newline", 0, false, &mut c), 0);
        assert_eq!(split_lines(b"ends\n", 0, true, &mut c), 5);
        assert_eq!(c.lines.last().unwrap(), "ends");
    }

    #[test]
    fn a_stream_gives_the_same_lines_whatever_the_read_sizes() {
        for chunk in 1..=INPUT.len() {
            for capacity in [1, 3, 8, 64] {
                let mut splitter = LineSplitter::new(capacity, 1 << 20);
                let mut c = Collect::default();
                let mut rest = INPUT;
                while !rest.is_empty() {
                    let spare = splitter.spare();
                    let n = spare.len().min(chunk).min(rest.len());
                    spare[..n].copy_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    splitter.filled(n, &mut c);
                }
                splitter.end(&mut c);
                assert_eq!(
                    c.lines,
                    ["alpha", "beta", "", "hé", "last"],
                    "chunk {chunk}"
                );
                assert_eq!(
                    c.bad,
                    [(13, BadLine::Utf8), (30, BadLine::Utf8)],
                    "chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn an_abandoned_stream_drops_its_partial_last_line() {
        let mut splitter = LineSplitter::new(64, 1 << 20);
        let mut c = Collect::default();
        let input = b"a b\nc d\npartial";
        splitter.spare()[..input.len()].copy_from_slice(input);
        splitter.filled(input.len(), &mut c);
        assert_eq!(splitter.abandon(), (8, 7));
        splitter.end(&mut c);
        assert_eq!(c.lines, ["a b", "c d"]);
        assert!(c.bad.is_empty());
        assert_eq!(splitter.abandon(), (15, 0));
    }

    #[test]
    fn an_overlong_line_is_skipped_and_reading_goes_on() {
        let input = b"ok\n0123456789abcdef\nnext\n0123456789";
        let mut splitter = LineSplitter::new(4, 8);
        let mut c = Collect::default();
        for &b in input.iter() {
            splitter.spare()[0] = b;
            splitter.filled(1, &mut c);
        }
        splitter.end(&mut c);
        assert_eq!(c.lines, ["ok", "next"]);
        assert_eq!(c.bad, [(3, BadLine::TooLong), (25, BadLine::TooLong)]);
    }
}
