//! Guest calls over large partitions or blocks, in pieces: an instance's
//! memory grows to hold its largest call (input and answer) and never
//! shrinks, so a partition goes to the guest a few MiB at a time, and a
//! block to a chain whose answer is larger than its input a few hundred KiB
//! at a time.

use super::{Executor, Place, TaskError};
use crate::data::{Rows, RowsError};
use crate::plan::Step;

/// Most bytes of input one guest call over a partition's records gets. A
/// partition goes to the guest in calls of at most this much (plus one
/// record, when a record is larger), so that an instance's memory, which
/// never shrinks, follows this and not the size of the partition.
pub(super) const CALL_INPUT_BYTES: usize = 4 << 20;

/// Most bytes of pairs one call of the guest's combine gets, over a
/// partition (`reduce_by_key` with a guest reducer) or a merge of early
/// outputs: both go to it in key-disjoint pieces
/// ([`key_pieces`](super::shuffle::key_pieces)). The combine's table holds a
/// slot per distinct key, and such pairs are mostly distinct keys (partial
/// results of blocks): at this size a call grows an instance about as much
/// as a chain's call over a whole block, where a whole 8 MiB merge grew it
/// twice as much.
pub const COMBINE_INPUT_BYTES: usize = 2 << 20;

/// Most bytes of input one call of a chain whose pairs the host combines
/// or groups gets (a block is cut into pieces of this size). Such a chain
/// answers with pairs several times its input (`(word, 1)` for a word);
/// pieces of this size keep the guest's memory a few MiB above its size
/// after `define`, far from the recycling limit, and each answer small
/// enough for the host's allocator to serve from memory it keeps rather
/// than from pages mapped afresh.
pub(super) const PAIRS_CHAIN_INPUT_BYTES: usize = 256 << 10;

/// Calls `f` on `rows` in pieces of at most `limit` bytes of records (a
/// larger record alone), in order; on `rows` itself when it is small enough.
pub(super) fn for_each_piece<E>(
    rows: &mut Rows,
    limit: usize,
    mut f: impl FnMut(&mut Rows) -> Result<(), E>,
    too_large: impl Fn(RowsError) -> E,
) -> Result<(), E> {
    if rows.byte_len() <= limit {
        return f(rows);
    }
    let mut piece = Rows::new();
    let records = rows.len();
    for (i, record) in rows.iter().enumerate() {
        piece.try_push(record).map_err(&too_large)?;
        let next = (i + 1 < records).then(|| rows.get(i + 1).len());
        if next.is_none_or(|next| piece.byte_len() + next > limit) {
            f(&mut piece)?;
            piece.clear();
        }
    }
    Ok(())
}

/// Calls `call` on `rows` in pieces of at most `limit` bytes of records (a
/// larger record alone), and concatenates the answers.
pub(super) fn call_in_pieces<E>(
    rows: &mut Rows,
    limit: usize,
    mut call: impl FnMut(&mut Rows) -> Result<Rows, E>,
    too_large: impl Fn(RowsError) -> E,
) -> Result<Rows, E> {
    let mut answers: Option<Rows> = None;
    for_each_piece(
        rows,
        limit,
        |piece| {
            let answer = call(piece)?;
            match &mut answers {
                None => answers = Some(answer),
                Some(answers) => answers.try_extend_from(&answer).map_err(&too_large)?,
            }
            Ok(())
        },
        &too_large,
    )?;
    Ok(answers.unwrap_or_default())
}

impl Executor {
    /// One partition's call (`reduce-groups`, a window's key filter), in
    /// pieces of at most [`CALL_INPUT_BYTES`], each a task of its own (with
    /// the retries). The call must answer record by record, in input order
    /// (one answer per record, or a filter's subset), so that the answers
    /// of the pieces concatenate.
    pub(super) fn call_in_pieces(
        &self,
        step: &Step,
        place: &Place,
        rows: &mut Rows,
        call: impl Fn(&mut crate::wasm::Instance, &mut Rows) -> Result<Rows, crate::wasm::CallError>,
    ) -> Result<Rows, Box<TaskError>> {
        call_in_pieces(
            rows,
            CALL_INPUT_BYTES,
            |piece| {
                self.workers
                    .run(&step.name, place, |instance| call(instance, piece))
            },
            |e| {
                Box::new(TaskError {
                    operator: step.name.clone(),
                    place: place.to_string(),
                    attempts_note: String::new(),
                    cause: crate::wasm::CallError::Host(format!("the answers of the calls: {e}"))
                        .into(),
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::data::Rows;

    /// Large inputs go to the guest in pieces of at most the limit (a larger
    /// record alone), and the answers come back in order.
    #[test]
    fn a_large_call_is_made_in_pieces_whose_answers_concatenate() {
        let records: Vec<String> = (0..50)
            .map(|i| "x".repeat(i % 7 + (i == 20) as usize * 30))
            .collect();
        let mut rows: Rows = records.iter().map(String::as_str).collect();
        let mut calls = Vec::new();
        let answers = super::call_in_pieces(
            &mut rows,
            16,
            |piece: &mut Rows| -> Result<Rows, ()> {
                calls.push((piece.len(), piece.byte_len()));
                // One answer per record: its length, as text.
                Ok(piece
                    .iter()
                    .map(|r| r.len().to_string())
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str)
                    .collect())
            },
            |_| (),
        )
        .unwrap();
        let expected: Vec<String> = records.iter().map(|r| r.len().to_string()).collect();
        let got: Vec<String> = answers
            .iter()
            .map(|a| String::from_utf8(a.to_vec()).unwrap())
            .collect();
        assert_eq!(got, expected);
        assert!(calls.len() > 5, "{calls:?}");
        for (len, bytes) in &calls {
            assert!(
                *bytes <= 16 || *len == 1,
                "a piece over the limit holds one record: {calls:?}"
            );
        }
        assert_eq!(calls.iter().map(|c| c.0).sum::<usize>(), records.len());
    }
}
