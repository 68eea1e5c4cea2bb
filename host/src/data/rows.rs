//! [`Rows`]: one partition of encoded records, laid out as the WIT `rows`
//! record is (all records back to back in one buffer, plus their end offsets).
//!
//! A partition is moved, not copied, from a receiver's block to the guest call
//! that reads it; building one appends into two growing buffers, so a
//! partition costs two allocations however many records it holds.
//!
//! ```
//! use sluice::data::Rows;
//! let mut rows = Rows::new();
//! rows.push(b"hello");
//! rows.push(b"world");
//! assert_eq!(rows.len(), 2);
//! assert_eq!(rows.get(1), b"world");
//! assert_eq!(rows.iter().collect::<Vec<_>>(), vec![&b"hello"[..], &b"world"[..]]);
//! ```

/// A partition of encoded records.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Rows {
    data: Vec<u8>,
    ends: Vec<u32>,
}

/// A record offset did not fit the `u32` offsets of the WIT `rows` record, or
/// offsets given by a guest were not a valid layout.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RowsError {
    /// A partition (or a length-prefixed field of a record) would pass 4 GiB,
    /// the most its `u32` offsets can address.
    #[error(
        "a partition or a record field would pass 4 GiB, the most the u32 offsets and lengths \
         of the WIT encoding can address; use more partitions"
    )]
    TooLarge,
    /// `ends` is not non-decreasing or points past the data.
    #[error(
        "malformed rows: end offset {end} of record {index} is before the previous end or past the {len} data bytes"
    )]
    Malformed {
        /// The record whose end offset is wrong.
        index: usize,
        /// Its end offset.
        end: u32,
        /// The number of data bytes.
        len: usize,
    },
}

impl Rows {
    /// An empty partition.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty partition with room for `records` records of `bytes` bytes in all.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    /// Empties the partition, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Makes room for `records` more records of `bytes` more bytes.
    pub fn reserve(&mut self, records: usize, bytes: usize) {
        self.data.reserve(bytes);
        self.ends.reserve(records);
    }

    /// Gives back the room beyond its records.
    pub fn shrink_to_fit(&mut self) {
        self.data.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    /// Whether its buffers hold exactly its records, with no room to spare:
    /// a buffer sized before it was filled.
    #[cfg(test)]
    pub(crate) fn is_exact(&self) -> bool {
        self.data.capacity() == self.data.len() && self.ends.capacity() == self.ends.len()
    }

    /// Rebuilds a partition from its parts, checking that the offsets are valid
    /// (they come from a guest, which is not trusted).
    pub fn from_parts(data: Vec<u8>, ends: Vec<u32>) -> Result<Self, RowsError> {
        let mut prev = 0u32;
        for (index, &end) in ends.iter().enumerate() {
            if end < prev || end as usize > data.len() {
                return Err(RowsError::Malformed {
                    index,
                    end,
                    len: data.len(),
                });
            }
            prev = end;
        }
        Ok(Self { data, ends })
    }

    /// The two buffers, as the WIT `rows` record carries them.
    pub fn into_parts(self) -> (Vec<u8>, Vec<u32>) {
        (self.data, self.ends)
    }

    /// The encoded bytes of all records, back to back.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The end offset of each record in [`Rows::data`].
    pub fn ends(&self) -> &[u32] {
        &self.ends
    }

    /// Number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the partition holds no record.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Number of record bytes.
    #[inline]
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Record `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }

    /// Appends one record to a partition of bounded size: a receiver's block
    /// (cut at a few MiB) or a test's.
    ///
    /// # Panics
    /// When the partition would pass 4 GiB. Partitions built from data of
    /// unbounded size (shuffles, unions of guest outputs) use
    /// [`Rows::try_push`] and fail their task instead.
    #[inline]
    pub fn push(&mut self, record: &[u8]) {
        self.try_push(record)
            .expect("a bounded partition stays far below 4 GiB");
    }

    /// Appends one record, or says, copying nothing, that it does not fit.
    #[inline]
    pub fn try_push(&mut self, record: &[u8]) -> Result<(), RowsError> {
        let end = offset(self.data.len().saturating_add(record.len()))?;
        self.data.extend_from_slice(record);
        self.ends.push(end);
        Ok(())
    }

    /// Appends one record of `len` bytes written in place by `write`, which
    /// appends its encoding to the buffer it is given (no intermediate
    /// allocation). Checks `len` first, so nothing is written when the
    /// record cannot fit; the offset recorded is where `write` really ended.
    pub fn try_push_with(
        &mut self,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), RowsError>,
    ) -> Result<(), RowsError> {
        offset(self.data.len().saturating_add(len))?;
        let start = self.data.len();
        let end = write(&mut self.data).and_then(|()| offset(self.data.len()));
        match end {
            Ok(end) => {
                self.ends.push(end);
                Ok(())
            }
            Err(e) => {
                self.data.truncate(start);
                Err(e)
            }
        }
    }

    /// Appends all records of `other`, or says, copying nothing, that they
    /// do not fit.
    pub fn try_extend_from(&mut self, other: &Rows) -> Result<(), RowsError> {
        let base = offset(self.data.len())?;
        offset(self.data.len().saturating_add(other.data.len()))?;
        self.data.extend_from_slice(&other.data);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        Ok(())
    }

    /// The records in order.
    #[inline]
    pub fn iter(&self) -> RowsIter<'_> {
        RowsIter {
            rows: self,
            next: 0,
            start: 0,
        }
    }
}

/// `len` as a `u32` offset.
#[inline]
fn offset(len: usize) -> Result<u32, RowsError> {
    u32::try_from(len).map_err(|_| RowsError::TooLarge)
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("records", &self.len())
            .field("bytes", &self.byte_len())
            .finish()
    }
}

/// Iterator over the records of a [`Rows`].
pub struct RowsIter<'a> {
    rows: &'a Rows,
    next: usize,
    start: usize,
}

impl<'a> Iterator for RowsIter<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let end = *self.rows.ends.get(self.next)? as usize;
        let record = &self.rows.data[self.start..end];
        self.start = end;
        self.next += 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.rows.ends.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for RowsIter<'_> {}

impl<'a> IntoIterator for &'a Rows {
    type Item = &'a [u8];
    type IntoIter = RowsIter<'a>;
    fn into_iter(self) -> RowsIter<'a> {
        self.iter()
    }
}

impl<R: AsRef<[u8]>> FromIterator<R> for Rows {
    fn from_iter<I: IntoIterator<Item = R>>(iter: I) -> Self {
        let mut rows = Rows::new();
        for r in iter {
            rows.push(r.as_ref());
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_records_are_kept() {
        let rows: Rows = ["", "a", "", "bc"].into_iter().collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows.iter().collect::<Vec<_>>(),
            vec![&b""[..], b"a", b"", b"bc"]
        );
    }

    #[test]
    fn extend_shifts_offsets() {
        let mut a: Rows = ["x", "yy"].into_iter().collect();
        let b: Rows = ["zzz"].into_iter().collect();
        a.try_extend_from(&b).unwrap();
        assert_eq!(a.get(2), b"zzz");
        assert_eq!(a.ends(), &[1, 3, 6]);
    }

    /// A partition holding `len` zero bytes as one record, without touching
    /// its memory (`vec![0; n]` is a lazily mapped zeroed allocation).
    fn huge(len: usize) -> Rows {
        Rows::from_parts(vec![0u8; len], vec![u32::try_from(len).unwrap()]).unwrap()
    }

    #[test]
    fn growth_past_4_gib_is_an_error_and_copies_nothing() {
        let mut full = huge(u32::MAX as usize);
        assert_eq!(full.try_push(b""), Ok(()), "an empty record still fits");
        assert_eq!(full.try_push(b"x"), Err(RowsError::TooLarge));
        assert_eq!(
            full.try_push_with(1, |out| {
                out.push(1);
                Ok(())
            }),
            Err(RowsError::TooLarge)
        );
        let mut half = huge(1 << 31);
        assert_eq!(
            half.try_extend_from(&huge(1 << 31)),
            Err(RowsError::TooLarge)
        );
        assert_eq!(
            (half.len(), half.byte_len()),
            (1, 1 << 31),
            "nothing was added"
        );
        assert_eq!(full.len(), 2);
        assert_eq!(full.byte_len(), u32::MAX as usize);
    }

    #[test]
    fn a_write_longer_than_announced_is_undone_when_it_does_not_fit() {
        let mut rows = huge(u32::MAX as usize - 1);
        let lied = rows.try_push_with(0, |out| {
            out.extend_from_slice(b"ab");
            Ok(())
        });
        assert_eq!(lied, Err(RowsError::TooLarge));
        assert_eq!((rows.len(), rows.byte_len()), (1, u32::MAX as usize - 1));
    }

    #[test]
    fn from_parts_rejects_bad_offsets() {
        assert!(Rows::from_parts(b"abc".to_vec(), vec![2, 1]).is_err());
        assert!(Rows::from_parts(b"abc".to_vec(), vec![4]).is_err());
        assert_eq!(
            Rows::from_parts(b"abc".to_vec(), vec![1, 3])
                .unwrap()
                .get(1),
            b"bc"
        );
    }
}
