//! `flat_map_str` and `flat_map_bytes`: a `flat_map` over borrowed views of
//! the records, whose function emits its outputs into an [`Emitter`].
//!
//! The function gets each input record as a `&str` (`&[u8]`): of the
//! partition's bytes as the host sent them when the stage is the chain's
//! first, else of the record pushed into it — never a copy. What it emits
//! can be borrowed too: a `&str` (`&[u8]`) emitted as a `String` (`Bytes`)
//! record, or a `(&str, v)` pair as a `(String, V)`, is appended as its
//! encoding to a buffer the emitter reuses, and the next stage takes the
//! encodings ([`Sink::push_encoded`]). Pairs into the combine of a
//! `reduce_by_key` go into a [`PairBatch`] instead (the key's bytes, the
//! value as it is), which the combine takes whole and merges by the keys'
//! bytes, so a word that is already a key costs no allocation at all.
//! Owned records can be emitted too, and keep their order with the borrowed
//! ones.

use std::any::Any;
use std::marker::PhantomData;
use std::rc::Rc;

use super::table::{KeyRepr, SHORT_KEY};
use super::{BATCH, EncodedBatch, PairBatch, Sink, window16};
use crate::codec::{Bytes, Data, DecodeError, utf8};
use crate::rows::end_offset;
use crate::runtime::enter_stage;

/// Where the function of [`flat_map_str`](crate::DStream::flat_map_str)
/// emits its output records (of type `U`), in order: each with
/// [`emit`](Emitter::emit), or many with `extend`.
///
/// ```
/// # use sluice_guest::prelude::*;
/// # let ctx = StreamingContext::new("doc");
/// let lines = ctx.socket_text_stream("localhost", 9999);
/// // Words as (word, 1) pairs, the words borrowed from the lines.
/// let pairs = lines.flat_map_str(|line, out| {
///     for word in line.split(' ') {
///         out.emit((word, 1i64));
///     }
/// });
/// let counts = pairs.reduce_by_key(|a, b| a + b);
/// ```
pub struct Emitter<U: Data> {
    /// The next stage.
    down: Box<dyn Sink<U>>,
    /// Whether the next stage takes pairs in batches of their own
    /// ([`Sink::push_pair_batch`]): then emitted pairs go to `pairs`, and
    /// owned records to the next stage at once.
    direct: bool,
    /// The pairs emitted and not passed on yet, when `direct`.
    pairs: PairCursor,
    /// Bytes that hold the record the function runs on, while it runs.
    record: RecordBytes,
    /// Emitted owned records, not passed on yet.
    owned: Vec<U>,
    /// Emitted borrowed records, encoded back to back, not passed on yet.
    data: Vec<u8>,
    ends: Vec<u32>,
    /// The first error of the next stage while records went to it at once.
    error: Option<String>,
    /// The emitting stage's index in the chain.
    stage: usize,
}

impl<U: Data> Emitter<U> {
    fn new(down: Box<dyn Sink<U>>, stage: usize) -> Self {
        Self {
            direct: down.takes_pair_batches(),
            down,
            pairs: PairCursor::default(),
            record: RecordBytes::default(),
            owned: Vec::new(),
            data: Vec::new(),
            ends: Vec::new(),
            error: None,
            stage,
        }
    }

    /// Emits one output record: a `U`, or a borrowed form of one (see
    /// [`Emit`]).
    #[inline]
    pub fn emit<E: Emit<U>>(&mut self, record: E) {
        record.emit_into(self);
    }

    /// Keeps the first error of the next stage, to report when the
    /// function returns.
    fn check(&mut self, result: Result<(), String>) {
        enter_stage(self.stage);
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }

    /// Appends an owned record.
    #[inline]
    fn push_owned(&mut self, record: U) {
        if self.direct {
            // Keep the order: the pairs emitted before go first.
            self.pass_pairs();
            enter_stage(self.stage + 1);
            let pushed = self.down.push(record);
            return self.check(pushed);
        }
        if !self.ends.is_empty() {
            // Keep the order: the encoded records go first. Rare (a
            // function that emits both kinds), so they are decoded here.
            let decoded = self.take_encoded();
            self.owned.extend(decoded);
        }
        self.owned.push(record);
    }

    /// Appends a record as its encoding, written by `encode` (given the
    /// bytes that hold the record the function runs on, see
    /// [`extend_piece`]).
    #[inline]
    fn push_encoded_with(&mut self, encode: impl FnOnce(&mut Vec<u8>, &[u8])) {
        encode(&mut self.data, self.record.get());
        self.ends.push(end_offset(&self.data));
    }

    /// Emits a pair given as its key's encoding and its value: a short key
    /// into the pair batch's next place at once, as its encoding if the
    /// next stage takes no pair batches, anything else (the first pair, a
    /// full batch, a long key) through
    /// [`push_pair_slow`](Self::push_pair_slow). The first is the word
    /// count's every word, so it is kept to a test and a store.
    #[inline]
    fn push_pair<V: Data>(&mut self, key: &[u8], value: V) {
        // SAFETY: an emitter's pairs have one value type, `V` here (see
        // `PairCursor`).
        #[allow(unsafe_code)]
        if key.len() <= SHORT_KEY
            && let Some(place) = unsafe { self.pairs.next_place::<V>() }
        {
            place.write((KeyRepr::short_within(key, self.record.get()), value));
        } else if !self.direct {
            // A stateful step's chain: every pair encoded for the host.
            self.push_encoded_with(|buf, within| encode_pair(key, &value, buf, within));
        } else {
            self.push_pair_slow(key, value);
        }
    }

    /// [`push_pair`](Self::push_pair) into a pair batch when the pair
    /// cannot go to the batch's next place at once.
    #[inline(never)]
    fn push_pair_slow<V: Data>(&mut self, key: &[u8], value: V) {
        if self.pairs.is_full() {
            self.pass_pairs();
        }
        let record = self.record.get();
        let (place, long) = self.pairs.place_and_long::<V>();
        let repr = if key.len() <= SHORT_KEY {
            KeyRepr::short_within(key, record)
        } else {
            let repr = KeyRepr::long(long.len(), key.len());
            long.extend_from_slice(key);
            repr
        };
        place.write((repr, value));
    }

    /// Passes the pairs of `pairs` on.
    fn pass_pairs(&mut self) {
        if let Some(batch) = self.pairs.pending() {
            enter_stage(self.stage + 1);
            let pushed = self.down.push_pair_batch(batch);
            self.pairs.reopen();
            self.check(pushed);
        }
    }

    /// The encoded records, decoded (they are this SDK's own encodings of
    /// `U`, so they decode).
    fn take_encoded(&mut self) -> Vec<U> {
        let mut start = 0;
        let records = self
            .ends
            .iter()
            .map(|&end| {
                let record = &self.data[start..end as usize];
                start = end as usize;
                U::decode(record).expect("an emitted record decodes")
            })
            .collect();
        self.data.clear();
        self.ends.clear();
        records
    }

    /// Whether enough is held to pass it on.
    fn full(&self) -> bool {
        self.owned.len() + self.ends.len() >= BATCH || self.data.len() >= FLUSH_BYTES
    }

    /// Passes what was emitted on, in order, and reports the next stage's
    /// first error.
    fn flush(&mut self, node: &str) -> Result<(), String> {
        self.pass_pairs();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        // Downstream stages report their own.
        enter_stage(self.stage + 1);
        if !self.owned.is_empty() {
            self.down.push_batch(&mut self.owned)?;
        }
        if !self.ends.is_empty() {
            self.down.push_encoded(EncodedBatch {
                data: &self.data,
                start: 0,
                ends: &self.ends,
                first_index: 0,
                node,
                from_sdk: true,
            })?;
            self.data.clear();
            self.ends.clear();
        }
        enter_stage(self.stage);
        Ok(())
    }
}

impl<U: Data, E: Emit<U>> Extend<E> for Emitter<U> {
    fn extend<I: IntoIterator<Item = E>>(&mut self, records: I) {
        for record in records {
            record.emit_into(self);
        }
    }
}

/// What an [`Emitter<U>`] takes: a `U`, or a borrowed form of a `U` that it
/// encodes without making a `U`:
///
/// | emitted | as a record of type |
/// |---|---|
/// | `U` (any [`Data`]) | `U` |
/// | `&str` | `String` |
/// | `&[u8]` | [`Bytes`] |
/// | `(&str, V)` | `(String, V)` |
/// | `(&[u8], V)` | `(Bytes, V)` |
///
/// Implemented by the SDK only.
pub trait Emit<U: Data>: sealed::Sealed<U> {
    #[doc(hidden)]
    fn emit_into(self, out: &mut Emitter<U>);
}

mod sealed {
    pub trait Sealed<U> {}
}

impl<U: Data> sealed::Sealed<U> for U {}
impl<U: Data> Emit<U> for U {
    #[inline]
    fn emit_into(self, out: &mut Emitter<U>) {
        out.push_owned(self);
    }
}

impl sealed::Sealed<String> for &str {}
impl Emit<String> for &str {
    #[inline]
    fn emit_into(self, out: &mut Emitter<String>) {
        out.push_encoded_with(|buf, within| extend_piece(buf, self.as_bytes(), within));
    }
}

impl sealed::Sealed<Bytes> for &[u8] {}
impl Emit<Bytes> for &[u8] {
    #[inline]
    fn emit_into(self, out: &mut Emitter<Bytes>) {
        out.push_encoded_with(|buf, within| extend_piece(buf, self, within));
    }
}

/// A pair whose key is given as its encoding (the codec of a `tuple<k, v>`:
/// the key's length as a `u32`, little-endian, the key, the value); the key
/// often lies in `within` ([`extend_piece`]).
#[inline]
fn encode_pair<V: Data>(key: &[u8], value: &V, buf: &mut Vec<u8>, within: &[u8]) {
    buf.extend_from_slice(&end_offset(key).to_le_bytes());
    extend_piece(buf, key, within);
    value.encode(buf);
}

/// Appends `piece` to `buf`: when it has at most 16 bytes and 16 bytes from
/// its start lie in `within` (a word of the record the function runs on),
/// as one copy of those 16 bytes, then cut to its length. A copy of the
/// piece's own length is a call out of the guest's code (`memory.copy`)
/// per word.
#[inline]
fn extend_piece(buf: &mut Vec<u8>, piece: &[u8], within: &[u8]) {
    match window16(piece, within) {
        Some(window) if piece.len() <= 16 => {
            let len = buf.len();
            buf.extend_from_slice(window);
            buf.truncate(len + piece.len());
        }
        _ => buf.extend_from_slice(piece),
    }
}

impl<V: Data> sealed::Sealed<(String, V)> for (&str, V) {}
impl<V: Data> Emit<(String, V)> for (&str, V) {
    #[inline]
    fn emit_into(self, out: &mut Emitter<(String, V)>) {
        out.push_pair(self.0.as_bytes(), self.1);
    }
}

impl<V: Data> sealed::Sealed<(Bytes, V)> for (&[u8], V) {}
impl<V: Data> Emit<(Bytes, V)> for (&[u8], V) {
    #[inline]
    fn emit_into(self, out: &mut Emitter<(Bytes, V)>) {
        out.push_pair(self.0, self.1);
    }
}

/// Bytes that hold the record an emitter's function runs on (the record's
/// own, or the whole partition's), while it runs: what a borrowed key most
/// often is part of, so that its bytes can be read 16 at a time
/// ([`PairBatch::push`]). Empty between runs.
struct RecordBytes {
    start: *const u8,
    len: usize,
}

impl Default for RecordBytes {
    fn default() -> Self {
        Self::of(&[])
    }
}

impl RecordBytes {
    fn of(bytes: &[u8]) -> Self {
        Self {
            start: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    #[inline]
    #[allow(unsafe_code)]
    fn get(&self) -> &[u8] {
        // SAFETY: `FlatMapViewSink::apply` sets these to bytes that hold
        // the record it passes the function for as long as the function
        // runs (and to an empty slice after), and they outlive the call.
        // Only the function's emits read them: its `&mut Emitter` is the
        // only way to the emitter while it runs.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}

/// The [`PairBatch`] of an emitter, written place by place through a
/// cursor: the emitter cannot name its type (the value type `V` of `U`'s
/// pairs), and a checked downcast per pair, or the `Vec`'s own length and
/// capacity tests, cost more than the pair's store.
///
/// An emitter's pairs all have the same `V`: pairs are emitted only into an
/// `Emitter<(String, V)>` or an `Emitter<(Bytes, V)>` (the two `Emit`
/// impls of this module), and a `U` names one `V`. So the batch, made at
/// the first pair as a `PairBatch<V>`, is one for every pair after it.
struct PairCursor {
    /// A `PairBatch<V>`, once a pair was emitted.
    batch: Option<Box<dyn Any>>,
    /// The first place of the batch's buffer, where the next pair goes,
    /// and the end of the buffer (all null until the first pair): the
    /// places before `next` hold pairs that the batch's length does not
    /// count yet.
    start: *mut u8,
    next: *mut u8,
    end: *mut u8,
    /// `PairBatch::<V>::set_written`, for the batch's `V`.
    set_written: unsafe fn(&mut dyn Any, usize),
    /// `PairBatch::<V>::open`, for the batch's `V`.
    open: fn(&mut dyn Any) -> (*mut u8, *mut u8),
}

impl Default for PairCursor {
    fn default() -> Self {
        Self {
            batch: None,
            start: std::ptr::null_mut(),
            next: std::ptr::null_mut(),
            end: std::ptr::null_mut(),
            set_written: |_, _| unreachable!("set only with a batch"),
            open: |_| (std::ptr::null_mut(), std::ptr::null_mut()),
        }
    }
}

/// The next free place of a [`PairCursor`]'s batch: written once, with
/// [`write`](PairPlace::write).
struct PairPlace<'a, V> {
    at: *mut (KeyRepr, V),
    next: &'a mut *mut u8,
}

impl<V> PairPlace<'_, V> {
    #[inline]
    #[allow(unsafe_code)]
    fn write(self, pair: (KeyRepr, V)) {
        // SAFETY: `at` is a free place inside the batch's buffer, aligned
        // for the pair (`PairCursor::next_place`); moving `next` past it
        // makes it a written place, which the batch counts when it is
        // passed on.
        unsafe {
            self.at.write(pair);
            *self.next = self.at.add(1).cast();
        }
    }
}

impl PairCursor {
    /// The next place of the batch, if the batch exists and has room.
    ///
    /// # Safety
    ///
    /// `V` is the batch's value type: the one of every pair the emitter
    /// emits (see the type's doc).
    #[inline]
    #[allow(unsafe_code)]
    unsafe fn next_place<V>(&mut self) -> Option<PairPlace<'_, V>> {
        (self.next != self.end).then(|| PairPlace {
            at: self.next.cast(),
            next: &mut self.next,
        })
    }

    /// Whether the batch was made and has no room left.
    fn is_full(&self) -> bool {
        self.batch.is_some() && self.next == self.end
    }

    /// The next place of the batch (made at the first pair; it must have
    /// room) and the batch's buffer of long keys.
    fn place_and_long<V: Data>(&mut self) -> (PairPlace<'_, V>, &mut Vec<u8>) {
        if self.batch.is_none() {
            let mut batch: Box<dyn Any> = Box::new(PairBatch::<V>::new());
            (self.start, self.end) = PairBatch::<V>::open(batch.as_mut());
            self.next = self.start;
            self.batch = Some(batch);
            self.set_written = PairBatch::<V>::set_written;
            self.open = PairBatch::<V>::open;
        }
        assert!(
            self.next != self.end,
            "a full pair batch is passed on first"
        );
        let batch = self.batch.as_deref_mut().expect("made above");
        // The same `V` as the batch's, see the type's doc.
        let long = &mut batch
            .downcast_mut::<PairBatch<V>>()
            .expect("an emitter's pairs have one value type")
            .long;
        let place = PairPlace {
            at: self.next.cast(),
            next: &mut self.next,
        };
        (place, long)
    }

    /// The batch, its length set to the pairs written, if it holds any
    /// (they are about to be passed on; [`reopen`](Self::reopen) after).
    fn pending(&mut self) -> Option<&mut dyn Any> {
        if self.next == self.start {
            return None;
        }
        let written = self.next.addr() - self.start.addr();
        let batch = self.batch.as_deref_mut()?;
        // SAFETY: the places from `start` to `next` were each written with
        // a pair of the batch's type (`PairPlace::write`, the only writer)
        // since the batch was opened, and nothing else wrote the batch.
        #[allow(unsafe_code)]
        unsafe {
            (self.set_written)(batch, written)
        };
        Some(batch)
    }

    /// Empties the batch (the next stage has taken its pairs) and points
    /// the cursor at its start again.
    fn reopen(&mut self) {
        if let Some(batch) = self.batch.as_deref_mut() {
            (self.start, self.end) = (self.open)(batch);
            self.next = self.start;
        }
    }
}

/// A record type whose records a `flat_map_str`-like stage borrows:
/// `String` as `str`, [`Bytes`] as `[u8]`.
pub(crate) trait Viewed: Data {
    type View: ?Sized;
    fn view(&self) -> &Self::View;
    /// The bytes of a view.
    fn bytes(view: &Self::View) -> &[u8];
    /// The view of an encoded record, checked as `decode` would check it.
    fn view_encoded(bytes: &[u8]) -> Result<&Self::View, DecodeError>;
    /// Whether [`view_encoded`](Self::view_encoded) checks the bytes
    /// (for UTF-8), so that all-ASCII bytes need no check of their own.
    const CHECKS_UTF8: bool;
    /// The view of an encoded record whose bytes are ASCII (any bytes
    /// when the view does not check them).
    fn view_ascii(bytes: &[u8]) -> &Self::View;
}

impl Viewed for String {
    type View = str;
    fn view(&self) -> &str {
        self
    }
    fn bytes(view: &str) -> &[u8] {
        view.as_bytes()
    }
    fn view_encoded(bytes: &[u8]) -> Result<&str, DecodeError> {
        utf8(bytes)
    }
    const CHECKS_UTF8: bool = true;
    fn view_ascii(bytes: &[u8]) -> &str {
        crate::text::ascii_str(bytes)
    }
}

impl Viewed for Bytes {
    type View = [u8];
    fn view(&self) -> &[u8] {
        &self.0
    }
    fn bytes(view: &[u8]) -> &[u8] {
        view
    }
    fn view_encoded(bytes: &[u8]) -> Result<&[u8], DecodeError> {
        Ok(bytes)
    }
    const CHECKS_UTF8: bool = false;
    fn view_ascii(bytes: &[u8]) -> &[u8] {
        bytes
    }
}

/// How many encoded bytes an emitter holds before it passes them on, at
/// most (plus one function call's worth).
const FLUSH_BYTES: usize = 64 * 1024;

/// The sink of a `flat_map_str` stage: the function, and the emitter that
/// holds the next stage.
pub(crate) struct FlatMapViewSink<T, F, U: Data> {
    f: Rc<F>,
    out: Emitter<U>,
    stage: usize,
    /// The stage's node, which the records it emits name.
    node: Rc<str>,
    input: PhantomData<fn(T)>,
}

impl<T: Viewed, F: Fn(&T::View, &mut Emitter<U>), U: Data> FlatMapViewSink<T, F, U> {
    /// Creates the sink.
    pub(crate) fn new(f: Rc<F>, down: Box<dyn Sink<U>>, stage: usize, node: Rc<str>) -> Self {
        Self {
            f,
            out: Emitter::new(down, stage),
            stage,
            node,
            input: PhantomData,
        }
    }

    /// Runs the function over one view, and passes its output on when
    /// enough has piled up (or an error came back). `within` holds the
    /// view's bytes: the view's own, or the whole partition's when the view
    /// is of its bytes, so that a key at the end of a line is read 16 bytes
    /// at a time too ([`PairBatch::push`]).
    #[inline]
    fn apply(&mut self, view: &T::View, within: &[u8]) -> Result<(), String> {
        self.out.record = RecordBytes::of(within);
        (self.f)(view, &mut self.out);
        self.out.record = RecordBytes::default();
        if self.out.full() || self.out.error.is_some() {
            self.out.flush(&self.node)?;
        }
        Ok(())
    }
}

impl<T: Viewed, F: Fn(&T::View, &mut Emitter<U>), U: Data> Sink<T> for FlatMapViewSink<T, F, U> {
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        let view = item.view();
        self.apply(view, T::bytes(view))
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        enter_stage(self.stage);
        for item in items.drain(..) {
            let view = item.view();
            self.apply(view, T::bytes(view))?;
        }
        Ok(())
    }

    fn push_encoded(&mut self, batch: EncodedBatch<'_>) -> Result<(), String> {
        enter_stage(self.stage);
        let data = batch.data;
        // One ASCII test over the whole batch's bytes rather than a UTF-8
        // check a record: lines of ASCII are the common case, and each
        // record's check is a call. Any other bytes take the check a record
        // (which names the record that is not UTF-8). The span ends at the
        // greatest end, not the last: every record `records` yields lies
        // between the batch's start and that, even when malformed offsets
        // go backwards after it.
        let span = batch
            .ends
            .iter()
            .max()
            .and_then(|&end| data.get(batch.start..end as usize));
        if !T::CHECKS_UTF8 || span.is_some_and(crate::text::is_ascii_span) {
            for (_, record) in batch.records() {
                self.apply(T::view_ascii(record?), data)?;
            }
            return Ok(());
        }
        for (i, record) in batch.records() {
            let view = T::view_encoded(record?).map_err(|e| batch.decode_error::<T>(i, e))?;
            self.apply(view, data)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.out.flush(&self.node)?;
        enter_stage(self.stage + 1);
        self.out.down.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::combine::tests::CollidingState;
    use super::super::{ChainFn, Function, KeyReducer, NarrowFn, run_pipeline};
    use super::Emitter;
    use crate::bindings::sluice::plugin::types::Rows;
    use crate::codec::Bytes;
    use crate::rows::{decode_all, encode_all};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn chain_fn(function: &Function) -> &dyn ChainFn {
        match function {
            Function::Narrow(f) => f.as_ref(),
            Function::KeyReducer(f) => f.as_ref() as &dyn ChainFn,
            _ => unreachable!("a chain stage"),
        }
    }

    fn run(stages: &[Function], input: &Rows) -> Result<Rows, String> {
        let chain: Vec<(&str, &dyn ChainFn)> =
            stages.iter().map(|f| ("stage", chain_fn(f))).collect();
        run_pipeline(
            &chain,
            Rows {
                data: input.data.clone(),
                ends: input.ends.clone(),
            },
        )
    }

    /// Lines of words of every kind a key can be: empty (two spaces in a
    /// row), around the 15 bytes a key is held inline up to, long, not
    /// ASCII.
    fn line() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            4 => "[a-d]{0,3}",
            1 => "[a-b]{14,17}",
            1 => "[x-z]{30,80}",
            1 => "[éü€😀]{1,6}",
        ];
        vec(word, 0..12).prop_map(|words| words.join(" "))
    }

    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    proptest! {
        /// A word count with `flat_map_str` emitting borrowed `(word, 1)`
        /// pairs into the combine gives the same rows as the plain path
        /// (`flat_map` to owned words, `map`, combine), whether the combine
        /// writes the output or another stage follows it.
        #[test]
        fn borrowed_pairs_count_like_owned_ones(lines in vec(line(), 0..60)) {
            let input = encode_all(&lines);
            let plain = || {
                vec![
                    NarrowFn::<String, String>::flat_map(|l: String| {
                        l.split(' ').map(String::from).collect::<Vec<_>>()
                    }),
                    NarrowFn::<String, (String, i64)>::map(|w| (w, 1)),
                    KeyReducer::<String, i64, _>::boxed(add),
                ]
            };
            let borrowed = || {
                vec![
                    NarrowFn::<String, (String, i64)>::flat_map_view("f", |l: &str, out| {
                        for w in l.split(' ') {
                            out.emit((w, 1i64));
                        }
                    }),
                    KeyReducer::<String, i64, _>::boxed(add),
                ]
            };
            let expected = run(&plain(), &input).unwrap();
            let got = run(&borrowed(), &input).unwrap();
            prop_assert_eq!(&got.data, &expected.data);
            prop_assert_eq!(&got.ends, &expected.ends);
            // With a stage after the combine, it pushes decoded pairs.
            let then = |mut stages: Vec<Function>| {
                stages.push(NarrowFn::<(String, i64), (String, i64)>::map(|p| p));
                stages
            };
            let got = run(&then(borrowed()), &input).unwrap();
            prop_assert_eq!(&got.data, &expected.data);
            let got = run(&then(plain()), &input).unwrap();
            prop_assert_eq!(&got.data, &expected.data);
            // Through a stage that does not take pair batches: the pairs
            // are held as encodings, then decoded.
            let mut through_map = borrowed();
            through_map.insert(1, NarrowFn::<(String, i64), (String, i64)>::map(|p| p));
            let got = run(&through_map, &input).unwrap();
            prop_assert_eq!(&got.data, &expected.data);
            // As the chain's last stage (a stateful step's chain): every
            // pair encoded as it is, in order, keys of every length copied
            // whole wherever they lie in the partition.
            let mut pairs_borrowed = borrowed();
            pairs_borrowed.pop();
            let mut pairs_plain = plain();
            pairs_plain.pop();
            let got = run(&pairs_borrowed, &input).unwrap();
            let want = run(&pairs_plain, &input).unwrap();
            prop_assert_eq!(&got.data, &want.data);
            prop_assert_eq!(&got.ends, &want.ends);
            // Every key in one bucket chain.
            let mut colliding = borrowed();
            colliding[1] = Function::KeyReducer(Box::new(
                KeyReducer::<String, i64, fn(i64, i64) -> i64, CollidingState>::new(add),
            ));
            let got = run(&colliding, &input).unwrap();
            prop_assert_eq!(&got.data, &expected.data);
            // Borrowed and owned pairs mixed: the borrowed ones batched
            // before an owned one go first, so that keys keep their order
            // of first appearance.
            let plain_mixed = [
                NarrowFn::<String, String>::flat_map(|l: String| {
                    l.split(' ')
                        .flat_map(|w| [w.to_string(), w.to_uppercase()])
                        .collect::<Vec<_>>()
                }),
                NarrowFn::<String, (String, i64)>::map(|w| (w, 1)),
                KeyReducer::<String, i64, _>::boxed(add),
            ];
            let mixed = [
                NarrowFn::<String, (String, i64)>::flat_map_view("f", |l: &str, out| {
                    for w in l.split(' ') {
                        out.emit((w, 1i64));
                        out.emit((w.to_uppercase(), 1i64));
                    }
                }),
                KeyReducer::<String, i64, _>::boxed(add),
            ];
            let expected = run(&plain_mixed, &input).unwrap();
            let got = run(&mixed, &input).unwrap();
            prop_assert_eq!(&got.data, &expected.data);
            prop_assert_eq!(&got.ends, &expected.ends);
        }

        /// Borrowed words, owned words and both mixed keep their order and
        /// their bytes, into the encoder and into a following `map`.
        #[test]
        fn borrowed_and_owned_records_keep_their_order(lines in vec(line(), 0..40)) {
            let input = encode_all(&lines);
            let expected: Vec<String> = lines
                .iter()
                .flat_map(|l| l.split(' ').flat_map(|w| [w.to_string(), w.to_uppercase()]))
                .collect();
            let mixed = |l: &str, out: &mut Emitter<String>| {
                for w in l.split(' ') {
                    out.emit(w);
                    out.emit(w.to_uppercase());
                }
            };
            let alone = [NarrowFn::<String, String>::flat_map_view("f", mixed)];
            let got: Vec<String> = decode_all(&run(&alone, &input).unwrap(), "n").unwrap();
            prop_assert_eq!(&got, &expected);
            let followed = [
                NarrowFn::<String, String>::flat_map_view("f", mixed),
                NarrowFn::<String, String>::map(|w| w),
            ];
            let got: Vec<String> = decode_all(&run(&followed, &input).unwrap(), "n").unwrap();
            prop_assert_eq!(&got, &expected);
            // As a later stage, fed owned strings.
            let later = [
                NarrowFn::<String, String>::map(|l| l),
                NarrowFn::<String, String>::flat_map_view("f", mixed),
            ];
            let got: Vec<String> = decode_all(&run(&later, &input).unwrap(), "n").unwrap();
            prop_assert_eq!(&got, &expected);
        }

        /// `flat_map_bytes` over any bytes, invalid UTF-8 included, with
        /// `(&[u8], v)` pairs into the combine.
        #[test]
        fn borrowed_bytes_count_like_owned_ones(records in vec(vec(any::<u8>(), 0..40), 0..40)) {
            let records: Vec<Bytes> = records.into_iter().map(Bytes).collect();
            let input = encode_all(&records);
            let plain = [
                NarrowFn::<Bytes, (Bytes, i64)>::flat_map(|b: Bytes| {
                    b.0.split(|&c| c == b'a').map(|w| (Bytes(w.to_vec()), w.len() as i64)).collect::<Vec<_>>()
                }),
                KeyReducer::<Bytes, i64, _>::boxed(add),
            ];
            let borrowed = [
                NarrowFn::<Bytes, (Bytes, i64)>::flat_map_view("f", |b: &[u8], out| {
                    for w in b.split(|&c| c == b'a') {
                        out.emit((w, w.len() as i64));
                    }
                }),
                KeyReducer::<Bytes, i64, _>::boxed(add),
            ];
            let expected = run(&plain, &input).unwrap();
            let got = run(&borrowed, &input).unwrap();
            prop_assert_eq!(got.data, expected.data);
        }
    }

    /// The input is the host's: a line that is not UTF-8 is the same error
    /// as on the plain path, naming the stage and the record. So are
    /// offsets that go backwards, which must not make a view of bytes the
    /// batch's ASCII test did not see (the last record's end is ASCII, an
    /// earlier one reaches past it).
    #[test]
    fn invalid_utf8_input_is_the_same_error() {
        for (ends, record) in [(vec![2, 3], 1), (vec![3, 1], 0)] {
            let input = Rows {
                data: vec![b'o', b'k', 0xff],
                ends,
            };
            let borrowed = [NarrowFn::<String, String>::flat_map_view(
                "f",
                |l: &str, out| out.emit(l),
            )];
            let plain = [NarrowFn::<String, String>::flat_map(|l: String| [l])];
            let expected = run(&plain, &input).unwrap_err();
            assert_eq!(run(&borrowed, &input).unwrap_err(), expected);
            assert!(
                expected.contains(&format!("cannot decode input record {record} as string")),
                "{expected}"
            );
        }
    }

    /// A combine fed the host's pairs directly checks their keys.
    #[test]
    fn a_combine_first_checks_the_keys_it_does_not_decode() {
        let mut input = encode_all(&[("ok".to_string(), 1i64)]);
        let bad = [1u8, 0, 0, 0, 0xff, 1, 0, 0, 0, 0, 0, 0, 0];
        input.data.extend_from_slice(&bad);
        input.ends.push(input.data.len() as u32);
        let err = run(&[KeyReducer::<String, i64, _>::boxed(add)], &input).unwrap_err();
        assert!(
            err.contains(
                "cannot decode input record 1 as tuple<string,i64>: tuple element 0: invalid UTF-8"
            ),
            "{err}"
        );
        // With records after it, the bad key is read through its 16-byte
        // window (`KeyRepr::short_within`), whose ASCII test must send it
        // to the UTF-8 check too.
        let more = encode_all(&[("more".to_string(), 1i64), ("and more".to_string(), 2)]);
        let base = input.data.len() as u32;
        input.data.extend_from_slice(&more.data);
        input.ends.extend(more.ends.iter().map(|end| base + end));
        let err = run(&[KeyReducer::<String, i64, _>::boxed(add)], &input).unwrap_err();
        assert!(
            err.contains("input record 1 as tuple<string,i64>: tuple element 0: invalid UTF-8"),
            "{err}"
        );
    }
}
