//! Partitions as they cross the boundary: the WIT `rows` record (all records
//! back to back in `data`, the end offset of each in `ends`), and the
//! per-partition decoding into `Vec<T>` and encoding back.

use crate::bindings::sluice::plugin::types::Rows;
use crate::codec::Data;

/// The byte slice of each record of `rows`, in order; a malformed `ends`
/// (decreasing, or past the end of `data`) is an error naming the record.
pub(crate) fn records(rows: &Rows) -> impl Iterator<Item = Result<&[u8], String>> {
    let data = rows.data.as_slice();
    let mut start = 0usize;
    rows.ends.iter().enumerate().map(move |(i, &end)| {
        let end = end as usize;
        match data.get(start..end) {
            Some(record) => {
                start = end;
                Ok(record)
            }
            None => Err(format!(
                "malformed input rows: record {i} ends at {end}, after {start}, in {} bytes",
                data.len()
            )),
        }
    })
}

/// Decodes every record of a partition as `T`. Errors name `node` and the
/// record index.
pub(crate) fn decode_all<T: Data>(rows: &Rows, node: &str) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(rows.ends.len());
    for (i, record) in records(rows).enumerate() {
        let record = record.map_err(|e| format!("{node}: {e}"))?;
        out.push(T::decode(record).map_err(|e| decode_error::<T>(node, i, e))?);
    }
    Ok(out)
}

pub(crate) fn decode_error<T: Data>(node: &str, index: usize, e: impl std::fmt::Display) -> String {
    format!(
        "{node}: cannot decode input record {index} as {}: {e}",
        T::codec()
    )
}

/// Encodes records into one buffer and one offset list, each allocated once
/// at its final size (exact for every codec but `json`).
pub(crate) fn encode_all<T: Data>(records: &[T]) -> Rows {
    let size = records.iter().map(Data::encoded_size_hint).sum();
    let mut rows = Rows {
        data: Vec::with_capacity(size),
        ends: Vec::with_capacity(records.len()),
    };
    for record in records {
        record.encode(&mut rows.data);
        rows.ends.push(end_offset(&rows.data));
    }
    rows
}

/// The current length of a partition buffer as a record end offset.
#[inline]
pub(crate) fn end_offset(data: &[u8]) -> u32 {
    u32::try_from(data.len()).expect("a partition is smaller than 4 GiB (wasm32 memory)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_back_to_back_with_end_offsets() {
        let rows = encode_all(&["ab".to_string(), String::new(), "c".to_string()]);
        assert_eq!(rows.data, b"abc");
        assert_eq!(rows.ends, [2, 2, 3]);
        assert_eq!(rows.data.capacity(), 3);
        let back: Vec<String> = decode_all(&rows, "n").unwrap();
        assert_eq!(back, ["ab", "", "c"]);
    }

    #[test]
    fn bad_utf8_names_node_and_record() {
        let rows = Rows {
            data: vec![b'o', b'k', 0xff],
            ends: vec![2, 3],
        };
        let err = decode_all::<String>(&rows, "map at src/lib.rs:1:1").unwrap_err();
        assert_eq!(
            err,
            "map at src/lib.rs:1:1: cannot decode input record 1 as string: \
             invalid UTF-8 in a string at byte 0"
        );
    }

    #[test]
    fn malformed_ends_are_an_error() {
        let rows = Rows {
            data: vec![1, 2],
            ends: vec![2, 1],
        };
        let err = decode_all::<crate::codec::Bytes>(&rows, "n").unwrap_err();
        assert_eq!(
            err,
            "n: malformed input rows: record 1 ends at 1, after 2, in 2 bytes"
        );
        let rows = Rows {
            data: vec![1],
            ends: vec![9],
        };
        assert!(decode_all::<u8>(&rows, "n").is_err());
    }
}
