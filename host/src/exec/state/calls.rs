//! The host's half of the state calls, for one partition, apart from the
//! guest: build the `update-state` / `map-with-state` input from a
//! partition's new values and its key groups' state, check what the guest
//! returned, and only then apply it.
//!
//! Each partition's work is split in two: [`prepare_update`] and
//! [`prepare_map`] read the store, call the guest (the `call` closure: the
//! executor passes one that goes through `Workers::run`, with its retries on
//! a fresh instance) and check its output, *without writing anything*;
//! [`Prepared::commit`] writes the new states, and cannot fail. The step
//! commits only once every partition is prepared, so a task retried after a
//! trap, or a batch that fails in another partition, never applies a state
//! twice or half a batch.

use crate::data::codec::{split_prefixed, write_pair, write_prefixed};
use crate::data::{Codec, CodecError, Rows, RowsError};

use super::store::OperatorState;
use crate::exec::grouping::{Grouper, Values};

/// Bytes before a `map_with_state` state in the store: the batch time (ms,
/// `u64` little-endian) at which its key last had new values.
pub const TIME_PREFIX: usize = 8;

/// Why a partition's state call failed.
#[derive(Debug)]
pub enum PrepareError<E> {
    /// The guest call failed (after its retries).
    Call(E),
    /// Records or states did not follow their codecs.
    Data(String),
}

impl<E> From<RowsError> for PrepareError<E> {
    fn from(e: RowsError) -> Self {
        PrepareError::Data(e.to_string())
    }
}

/// The partitions a partition of `partitions` owns among `key_groups`.
#[derive(Debug, Clone, Copy)]
pub struct Owned {
    /// This partition, `p`.
    pub partition: usize,
    /// The step's partitions, `P`.
    pub partitions: usize,
    /// The job's key groups, `N`.
    pub key_groups: u32,
}

impl Owned {
    /// The key groups `g` with `g mod P = p`.
    pub fn groups(self) -> impl Iterator<Item = u32> {
        (self.partition as u32..self.key_groups).step_by(self.partitions.max(1))
    }
}

/// The codecs a state call checks against.
pub struct Codecs<'a> {
    /// The keys' (for messages).
    pub key: &'a Codec,
    /// The state's.
    pub state: &'a Codec,
    /// The mapped records' (`map_with_state` only).
    pub mapped: Option<&'a Codec>,
}

/// A partition's new values: its buckets, of `(k, v)` pairs, or of packed
/// groups of them ([`crate::exec::grouping`]) when `grouped` (the chain
/// before grouped them).
#[derive(Debug, Clone, Copy)]
pub struct NewValues<I> {
    /// The partition's buckets.
    pub buckets: I,
    /// Whether their records are groups.
    pub grouped: bool,
}

impl<'a, I: IntoIterator<Item = &'a Rows>> NewValues<I> {
    /// Pairs.
    pub fn pairs(buckets: I) -> Self {
        Self {
            buckets,
            grouped: false,
        }
    }

    /// Each key's values, keys in order of first arrival and values in
    /// arrival order.
    fn group(self) -> Result<Grouper<'a>, String> {
        let groups = if self.grouped {
            Grouper::of_packed(self.buckets)
        } else {
            Grouper::of_pairs(self.buckets)
        };
        groups.map_err(|e| e.to_string())
    }
}

/// A key as the user would write it, for messages.
fn show_key(codec: &Codec, key: &[u8]) -> String {
    codec
        .format(key)
        .unwrap_or_else(|_| format!("0x{}", hex::encode(key)))
}

/// Appends one record built by `write` in `scratch` to `rows`.
fn push(
    rows: &mut Rows,
    scratch: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), RowsError>,
) -> Result<(), RowsError> {
    scratch.clear();
    write(scratch)?;
    rows.try_push(scratch)
}

/// Writes `option<s>`.
fn write_option(value: Option<&[u8]>, out: &mut Vec<u8>) {
    match value {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
        None => out.push(0),
    }
}

/// The encoding of `option<s>` of `value`, prefixed by its length (an
/// element of a tuple that is not the last), written in place.
fn write_prefixed_option(value: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), RowsError> {
    let len = 1 + value.map_or(0, <[u8]>::len);
    out.extend_from_slice(
        &u32::try_from(len)
            .map_err(|_| RowsError::TooLarge)?
            .to_le_bytes(),
    );
    write_option(value, out);
    Ok(())
}

/// The runs of `values` (none: the empty list), prefixed by their length
/// `runs_len` (an element of a tuple that is not the last), written in
/// place.
fn write_prefixed_runs(
    values: Option<&Values<'_, '_>>,
    runs_len: u64,
    out: &mut Vec<u8>,
) -> Result<(), RowsError> {
    let len = u32::try_from(runs_len).map_err(|_| RowsError::TooLarge)?;
    out.extend_from_slice(&len.to_le_bytes());
    match values {
        Some(values) => values.write_runs(out),
        None => {
            out.extend_from_slice(&0u32.to_le_bytes());
            Ok(())
        }
    }
}

/// Checks an `option<s>` record; returns the state, if any.
fn check_option<'r>(codec: &Codec, record: &'r [u8]) -> Result<Option<&'r [u8]>, CodecError> {
    let option = Codec::Option(Box::new(codec.clone()));
    option.check(record)?;
    Ok(match record {
        [1, state @ ..] => Some(state),
        _ => None,
    })
}

/// What a partition's call returned, checked, waiting to be committed.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The key of each input record of the call, in order.
    keys: Rows,
    /// The new state of each key: `None` removes it.
    states: Vec<Option<std::ops::Range<usize>>>,
    /// Where the states are: the call's answers.
    answers: Rows,
    /// `map_with_state`: the batch time to keep with each new state.
    time_prefix: Option<[u8; TIME_PREFIX]>,
    /// The step's output records for this partition.
    pub emitted: Rows,
}

impl Prepared {
    /// Applies the new states to `op`. Infallible: everything was checked.
    pub fn commit(&self, op: &OperatorState) {
        let mut value = Vec::new();
        for (key, state) in self.keys.iter().zip(&self.states) {
            match state {
                None => {
                    op.group_of(key).remove(key);
                }
                Some(range) => {
                    let state = &self.answers.data()[range.clone()];
                    match self.time_prefix {
                        Some(time) => {
                            value.clear();
                            value.extend_from_slice(&time);
                            value.extend_from_slice(state);
                            op.group_of(key).insert(key, &value);
                        }
                        None => op.group_of(key).insert(key, state),
                    }
                }
            }
        }
    }
}

/// Range of `part` (a subslice of `whole`) within `whole`.
fn range_in(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

/// A partition's state call, made in pieces as its input is written: a
/// piece goes to the guest once the next record would take it past
/// `piece_bytes` (a larger record goes alone), so that neither the host nor
/// the instance ever holds the whole input: a record for every key with new
/// values or state.
struct Pieces<'c, E> {
    /// `update-state` or `map-with-state`, and what it answers, for messages.
    call_name: &'static str,
    answer: &'static str,
    piece_bytes: usize,
    call: &'c mut dyn FnMut(&mut Rows) -> Result<Rows, E>,
    piece: Rows,
    /// The piece's own buffer while a record past `piece_bytes` is sent
    /// alone in one of its exact size.
    kept: Option<Rows>,
    /// The key of every record so far, in order.
    keys: Rows,
    /// The answers of the pieces sent so far, in order.
    answers: Rows,
}

impl<'c, E> Pieces<'c, E> {
    fn new(
        call_name: &'static str,
        answer: &'static str,
        piece_bytes: usize,
        call: &'c mut dyn FnMut(&mut Rows) -> Result<Rows, E>,
    ) -> Self {
        Self {
            call_name,
            answer,
            piece_bytes,
            call,
            piece: Rows::new(),
            kept: None,
            keys: Rows::new(),
            answers: Rows::new(),
        }
    }

    /// Appends the record of `key`, of `len` bytes written by `write`.
    fn push(
        &mut self,
        key: &[u8],
        len: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), RowsError>,
    ) -> Result<(), PrepareError<E>> {
        if !self.piece.is_empty() && self.piece.byte_len().saturating_add(len) > self.piece_bytes {
            self.send()?;
        }
        if len > self.piece_bytes {
            // It goes alone (the piece is empty), in a buffer of exactly its
            // size that is given back once it is sent: a key whose values
            // change often has as many runs, and a buffer grown as they are
            // written can end at twice their size.
            u32::try_from(len).map_err(|_| RowsError::TooLarge)?;
            debug_assert!(self.piece.is_empty());
            let piece = std::mem::replace(&mut self.piece, Rows::with_capacity(1, len));
            self.kept.get_or_insert(piece);
        }
        self.piece.try_push_with(len, write)?;
        self.keys.try_push(key)?;
        Ok(())
    }

    fn send(&mut self) -> Result<(), PrepareError<E>> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let answers = (self.call)(&mut self.piece).map_err(PrepareError::Call)?;
        if answers.len() != self.piece.len() {
            return Err(PrepareError::Data(format!(
                "{} returned {} {} for {} keys",
                self.call_name,
                answers.len(),
                self.answer,
                self.piece.len()
            )));
        }
        self.answers.try_extend_from(&answers)?;
        match self.kept.take() {
            // A record sent alone: its buffer goes, the piece's comes back.
            Some(piece) => self.piece = piece,
            None => self.piece.clear(),
        }
        Ok(())
    }

    /// Sends the last piece; the keys and the answers, in order.
    fn finish(mut self) -> Result<(Rows, Rows), PrepareError<E>> {
        self.send()?;
        Ok((self.keys, self.answers))
    }
}

/// Bytes of `option<s>` of `state`.
fn option_len(state: Option<&[u8]>) -> usize {
    1 + state.map_or(0, <[u8]>::len)
}

/// `update_state_by_key` for one partition: every key with new values in
/// `new` or with state in the key groups it owns, as `tuple<k,
/// list<tuple<u32, v>>, option<s>>` records (the values as runs), through
/// `call`, in pieces of at most `piece_bytes`; each answer is one
/// `option<s>` per record. Emits `tuple<k, s>` for every key with state
/// after the batch.
pub fn prepare_update<'a, E>(
    op: &OperatorState,
    owned: Owned,
    new: NewValues<impl IntoIterator<Item = &'a Rows>>,
    codecs: &Codecs<'_>,
    piece_bytes: usize,
    mut call: impl FnMut(&mut Rows) -> Result<Rows, E>,
) -> Result<Prepared, PrepareError<E>> {
    let new = new.group().map_err(PrepareError::Data)?;
    let mut pieces = Pieces::new("update-state", "states", piece_bytes, &mut call);
    let mut record = |key: &[u8], values: Option<&Values<'_, '_>>, state: Option<&[u8]>| {
        // The empty list is its count, 0.
        let runs_len = values.map_or(4, Values::runs_len);
        let len = usize::try_from(runs_len)
            .ok()
            .and_then(|runs| (4 + key.len() + 4 + option_len(state)).checked_add(runs))
            .ok_or(RowsError::TooLarge)?;
        pieces.push(key, len, |out| {
            write_prefixed(key, out)?;
            write_prefixed_runs(values, runs_len, out)?;
            write_option(state, out);
            Ok(())
        })
    };
    for values in new.iter() {
        let key = values.key();
        record(key, Some(&values), op.group_of(key).get(key))?;
    }
    for g in owned.groups() {
        let group = op.group(g);
        for (key, state) in group.iter().filter(|(key, _)| !new.contains(key)) {
            record(key, None, Some(state))?;
        }
    }
    let (keys, answers) = pieces.finish()?;
    let mut states = Vec::with_capacity(keys.len());
    let mut emitted = Rows::with_capacity(keys.len(), 0);
    let mut scratch = Vec::new();
    for (key, answer) in keys.iter().zip(&answers) {
        let state = check_option(codecs.state, answer).map_err(|e| {
            PrepareError::Data(format!(
                "the state returned for key {} is malformed: {e}",
                show_key(codecs.key, key)
            ))
        })?;
        if let Some(state) = state {
            push(&mut emitted, &mut scratch, |out| {
                write_pair(key, state, out)
            })?;
        }
        states.push(state.map(|s| range_in(answers.data(), s)));
    }
    Ok(Prepared {
        keys,
        states,
        answers,
        time_prefix: None,
        emitted,
    })
}

/// `map_with_state` for one partition at batch time `time_ms`: every key
/// with new values in `new` as `tuple<k, option<s>, some(list<tuple<u32,
/// v>>)>` (the values as runs), and, with a
/// `timeout_ms`, every key of the owned key groups whose last new values are
/// older than `time_ms - timeout_ms` as `tuple<k, some(s), none>`, through
/// `call`, in pieces of at most `piece_bytes`; each answer is one
/// `tuple<option<s>, list<m>>` per record. Emits every `m`. A timing-out key
/// is removed whatever it returns.
#[allow(clippy::too_many_arguments)]
pub fn prepare_map<'a, E>(
    op: &OperatorState,
    owned: Owned,
    new: NewValues<impl IntoIterator<Item = &'a Rows>>,
    time_ms: u64,
    timeout_ms: Option<u64>,
    codecs: &Codecs<'_>,
    piece_bytes: usize,
    mut call: impl FnMut(&mut Rows) -> Result<Rows, E>,
) -> Result<Prepared, PrepareError<E>> {
    let new = new.group().map_err(PrepareError::Data)?;
    let mut pieces = Pieces::new("map-with-state", "records", piece_bytes, &mut call);
    let mut timing_out = Vec::new();
    for values in new.iter() {
        let key = values.key();
        let group = op.group_of(key);
        let state = group.get(key).map(|v| &v[TIME_PREFIX..]);
        let len = usize::try_from(values.runs_len())
            .ok()
            .and_then(|runs| (4 + key.len() + 4 + option_len(state) + 1).checked_add(runs))
            .ok_or(RowsError::TooLarge)?;
        pieces.push(key, len, |out| {
            write_prefixed(key, out)?;
            write_prefixed_option(state, out)?;
            out.push(1);
            values.write_runs(out)
        })?;
        timing_out.push(false);
    }
    // Spark's MapWithStateRDDRecord: keys whose last update is before
    // `batch time - timeout` time out.
    if let Some(threshold) = timeout_ms.and_then(|t| time_ms.checked_sub(t)) {
        for g in owned.groups() {
            let group = op.group(g);
            for (key, value) in group.iter().filter(|(key, _)| !new.contains(key)) {
                let last = u64::from_le_bytes(value[..TIME_PREFIX].try_into().expect("8 bytes"));
                if last < threshold {
                    let state = Some(&value[TIME_PREFIX..]);
                    let len = 4 + key.len() + 4 + option_len(state) + 1;
                    pieces.push(key, len, |out| {
                        write_prefixed(key, out)?;
                        write_prefixed_option(state, out)?;
                        out.push(0);
                        Ok(())
                    })?;
                    timing_out.push(true);
                }
            }
        }
    }
    let (keys, answers) = pieces.finish()?;
    let mapped = Codec::List(Box::new(
        codecs
            .mapped
            .cloned()
            .expect("map_with_state has a mapped codec"),
    ));
    let mut states = Vec::with_capacity(keys.len());
    let mut emitted = Rows::new();
    for ((key, answer), timing_out) in keys.iter().zip(&answers).zip(timing_out) {
        let bad = |what: &str, e: CodecError| {
            PrepareError::Data(format!(
                "the {what} returned for key {} {}: {e}",
                show_key(codecs.key, key),
                if what == "state" {
                    "is malformed"
                } else {
                    "are malformed"
                }
            ))
        };
        let (state, list) = split_prefixed(answer).ok_or_else(|| {
            PrepareError::Data(format!(
                "the record returned for key {} is not a (state, mapped records) pair",
                show_key(codecs.key, key)
            ))
        })?;
        let state = check_option(codecs.state, state).map_err(|e| bad("state", e))?;
        mapped.check(list).map_err(|e| bad("mapped records", e))?;
        for item in crate::data::codec::ListIter::new(list).expect("checked") {
            emitted.try_push(item.expect("checked"))?;
        }
        states.push(if timing_out {
            None
        } else {
            state.map(|s| range_in(answers.data(), s))
        });
    }
    Ok(Prepared {
        keys,
        states,
        answers,
        time_prefix: Some(time_ms.to_le_bytes()),
        emitted,
    })
}

/// The state of a `map_with_state` in the key groups `owned`, as
/// `tuple<k, s>` records (the time prefix left out).
pub fn snapshot(op: &OperatorState, owned: Owned) -> Result<Rows, RowsError> {
    let mut rows = Rows::new();
    let mut scratch = Vec::new();
    for g in owned.groups() {
        for (key, value) in op.group(g).iter() {
            push(&mut rows, &mut scratch, |out| {
                write_pair(key, &value[TIME_PREFIX..], out)
            })?;
        }
    }
    Ok(rows)
}
