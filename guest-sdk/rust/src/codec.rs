//! Codecs: how typed records become bytes at the host boundary.
//!
//! Every record type of a stream implements [`Data`]: a codec descriptor
//! string (the grammar at the top of `wit/sluice.wit`), an encoder and a
//! decoder. The host never sees Rust types, only the descriptor and the bytes;
//! it hashes and compares keys as bytes, runs the built-in reducers on
//! numeric values and formats records for `print` and `save_as_text_files`.
//! The layouts are specified in `wit/CODECS.md` so that SDKs in other
//! languages can match them byte for byte.
//!
//! | Rust type                       | codec                 | encoding                                   |
//! |---------------------------------|-----------------------|--------------------------------------------|
//! | `String`                        | `string`              | UTF-8 bytes                                |
//! | [`Bytes`]                       | `bytes`               | the bytes                                  |
//! | `bool`                          | `bool`                | one byte, 0 or 1                           |
//! | `()`                            | `unit`                | nothing                                    |
//! | `i8` .. `u64`, `f32`, `f64`     | `i8` .. `f64`         | little-endian, natural width               |
//! | `(A, B)`, `(A, B, C)`, `(A, B, C, D)` | `tuple<a,b,..>` | `u32` LE length + bytes for all but the last |
//! | `Option<A>`                     | `option<a>`           | `0`, or `1` then `a`                       |
//! | `Vec<A>`                        | `list<a>`             | `u32` LE count, then `u32` LE length + bytes each |
//! | [`Json<T>`] / [`json_data!`](crate::json_data) | `json` | UTF-8 JSON text (serde)                  |
//!
//! ```
//! use sluice_guest::codec::Data;
//!
//! let mut bytes = Vec::new();
//! ("hi".to_string(), 7i64).encode(&mut bytes);
//! assert_eq!(bytes, [2, 0, 0, 0, b'h', b'i', 7, 0, 0, 0, 0, 0, 0, 0]);
//! assert_eq!(<(String, i64)>::codec(), "tuple<string,i64>");
//! assert_eq!(<(String, i64)>::decode(&bytes).unwrap(), ("hi".to_string(), 7));
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record type that can cross the host boundary.
///
/// Implemented for the types in the [module table](self); implement it for
/// your own type either by hand (reusing a codec of the grammar, e.g. a
/// newtype around `i64` whose codec is `"i64"`), through [`Json`], or with
/// [`json_data!`](crate::json_data) for a serde struct.
///
/// `decode(encode(x)) == x` must hold, and two values that are equal as keys
/// must have equal encodings: the host groups keys by their bytes.
pub trait Data: Sized + 'static {
    /// The codec descriptor, e.g. `"tuple<string,i64>"`.
    fn codec() -> String;

    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Decodes one value from exactly `bytes` (trailing bytes are an error).
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
    /// Whether `bytes` decode, without keeping the value. The same as
    /// `decode(bytes).map(drop)`, which is what it does unless the type
    /// can check without building a value (`String` checks UTF-8).
    fn check(bytes: &[u8]) -> Result<(), DecodeError> {
        Self::decode(bytes).map(drop)
    }

    /// How many bytes [`encode`](Data::encode) will append, used to size
    /// buffers before encoding a partition. Exact for the built-in codecs
    /// except `json`, where it is 0; a wrong hint only costs a reallocation.
    fn encoded_size_hint(&self) -> usize {
        0
    }
}

/// Why bytes could not be decoded as a value of some codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    message: String,
}

impl DecodeError {
    /// A decode error with this message (for hand-written [`Data`] impls).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    fn wrong_length(codec: &str, expected: usize, got: usize) -> Self {
        Self::new(format!("{codec} needs exactly {expected} bytes, got {got}"))
    }

    fn truncated(what: &str, needed: usize, left: usize) -> Self {
        Self::new(format!(
            "{what} needs {needed} bytes but only {left} are left"
        ))
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// A record of raw bytes, codec `bytes` (unlike `Vec<u8>`, which is
/// `list<u8>` with a length per element).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Bytes(pub Vec<u8>);

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for Bytes {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(bytes: Bytes) -> Self {
        bytes.0
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A serde value carried as JSON text, codec `json`.
///
/// ```
/// use sluice_guest::codec::{Data, Json};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Click { user: String, ms: u64 }
///
/// let mut out = Vec::new();
/// Json(Click { user: "ann".into(), ms: 5 }).encode(&mut out);
/// assert_eq!(out, br#"{"user":"ann","ms":5}"#);
/// ```
///
/// Equal keys must encode equally: avoid maps with unspecified order (such
/// as `HashMap`) in a `Json` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Data for Json<T> {
    fn codec() -> String {
        "json".to_string()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        json_encode(&self.0, out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        json_decode(bytes).map(Json)
    }
}

/// Encodes `value` as JSON into `out` (used by [`Json`] and
/// [`json_data!`](crate::json_data)).
#[doc(hidden)]
pub fn json_encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    if let Err(e) = serde_json::to_writer(&mut *out, value) {
        // A `Serialize` impl that fails (e.g. a map with non-string keys) is
        // a bug in the user's type, like a panic in user code.
        panic!("cannot encode a record as JSON: {e}");
    }
}

/// Decodes JSON text (used by [`Json`] and [`json_data!`](crate::json_data)).
#[doc(hidden)]
pub fn json_decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::new(format!("invalid json: {e}")))
}

/// Implements [`Data`] with the `json` codec for serde types, so a struct can
/// be a record without the [`Json`] wrapper.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sluice_guest::codec::Data;
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Reading { sensor: String, celsius: f64 }
/// sluice_guest::json_data!(Reading);
///
/// assert_eq!(Reading::codec(), "json");
/// let mut out = Vec::new();
/// Reading { sensor: "a".into(), celsius: 1.5 }.encode(&mut out);
/// assert_eq!(Reading::decode(&out).unwrap().celsius, 1.5);
/// ```
#[macro_export]
macro_rules! json_data {
    ($($ty:ty),+ $(,)?) => {
        $(
            impl $crate::codec::Data for $ty {
                fn codec() -> ::std::string::String {
                    ::std::string::String::from("json")
                }
                fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                    $crate::codec::json_encode(self, out)
                }
                fn decode(bytes: &[u8]) -> ::std::result::Result<Self, $crate::codec::DecodeError> {
                    $crate::codec::json_decode(bytes)
                }
            }
        )+
    };
}

/// Numeric value types, which the host's built-in reducers
/// ([`sum_by_key`](crate::DStream::sum_by_key) and friends) understand:
/// `i8`..`i64`, `u8`..`u64`, `f32`, `f64`. Sealed.
pub trait Numeric: Data + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

/// `bytes` as a `str`, or the error a `string` that is not UTF-8 is. ASCII
/// text is checked 16 bytes at a time ([`crate::text::is_ascii`]).
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    if crate::text::is_ascii(bytes) {
        return Ok(crate::text::ascii_str(bytes));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        DecodeError::new(format!(
            "invalid UTF-8 in a string at byte {}",
            e.valid_up_to()
        ))
    })
}

impl Data for String {
    fn codec() -> String {
        "string".to_string()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        utf8(bytes).map(str::to_owned)
    }
    fn check(bytes: &[u8]) -> Result<(), DecodeError> {
        utf8(bytes).map(drop)
    }
    fn encoded_size_hint(&self) -> usize {
        self.len()
    }
}

impl Data for Bytes {
    fn codec() -> String {
        "bytes".to_string()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(Bytes(bytes.to_vec()))
    }
    fn encoded_size_hint(&self) -> usize {
        self.0.len()
    }
}

impl Data for bool {
    fn codec() -> String {
        "bool".to_string()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(DecodeError::new(format!("bool must be 0 or 1, got {b}"))),
            _ => Err(DecodeError::wrong_length("bool", 1, bytes.len())),
        }
    }
    fn encoded_size_hint(&self) -> usize {
        1
    }
}

impl Data for () {
    fn codec() -> String {
        "unit".to_string()
    }
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::wrong_length("unit", 0, bytes.len()))
        }
    }
}

macro_rules! numeric {
    ($($ty:ty => $codec:literal),+ $(,)?) => {$(
        impl Data for $ty {
            fn codec() -> String {
                $codec.to_string()
            }
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                match <[u8; size_of::<$ty>()]>::try_from(bytes) {
                    Ok(array) => Ok(<$ty>::from_le_bytes(array)),
                    Err(_) => Err(DecodeError::wrong_length($codec, size_of::<$ty>(), bytes.len())),
                }
            }
            #[inline]
            fn encoded_size_hint(&self) -> usize {
                size_of::<$ty>()
            }
        }
        impl sealed::Sealed for $ty {}
        impl Numeric for $ty {}
    )+};
}

numeric! {
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64",
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64",
    f32 => "f32", f64 => "f64",
}

/// Writes a `u32` little-endian length placeholder, encodes `value` after it
/// and patches the placeholder: one pass, no size computation.
#[inline]
fn encode_prefixed<T: Data>(value: &T, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    value.encode(out);
    let len = encoded_len_u32(out.len() - at - 4);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn encoded_len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("a record is smaller than 4 GiB (wasm32 memory)")
}

/// Splits a `u32` little-endian length and that many bytes off the front of
/// `bytes`.
#[inline]
pub(crate) fn split_prefixed<'a>(
    bytes: &'a [u8],
    what: &str,
) -> Result<(&'a [u8], &'a [u8]), DecodeError> {
    let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(DecodeError::truncated(
            &format!("the length of {what}"),
            4,
            bytes.len(),
        ));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        return Err(DecodeError::truncated(what, len, rest.len()));
    }
    Ok(rest.split_at(len))
}

/// Splits the `tuple<k,..>` encoding of a pair into the key's bytes and the
/// value's bytes.
#[inline]
pub(crate) fn split_pair(bytes: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    split_prefixed(bytes, "tuple element 0")
}

macro_rules! tuple {
    ($($name:ident $idx:tt),+ ; $last:ident $last_idx:tt) => {
        impl<$($name: Data,)+ $last: Data> Data for ($($name,)+ $last) {
            fn codec() -> String {
                let mut codec = String::from("tuple<");
                $(
                    codec.push_str(&$name::codec());
                    codec.push(',');
                )+
                codec.push_str(&$last::codec());
                codec.push('>');
                codec
            }
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                $( encode_prefixed(&self.$idx, out); )+
                self.$last_idx.encode(out);
            }
            #[inline]
            #[allow(non_snake_case)]
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let rest = bytes;
                $(
                    let (element, rest) = split_prefixed(rest, concat!("tuple element ", stringify!($idx)))?;
                    let $name = $name::decode(element).map_err(|e| {
                        DecodeError::new(format!("tuple element {}: {e}", $idx))
                    })?;
                )+
                let $last = $last::decode(rest).map_err(|e| {
                    DecodeError::new(format!("tuple element {}: {e}", $last_idx))
                })?;
                Ok(($($name,)+ $last))
            }
            #[inline]
            fn encoded_size_hint(&self) -> usize {
                0 $( + 4 + self.$idx.encoded_size_hint() )+ + self.$last_idx.encoded_size_hint()
            }
        }
    };
}

tuple!(A 0; B 1);
tuple!(A 0, B 1; C 2);
tuple!(A 0, B 1, C 2; D 3);

impl<T: Data> Data for Option<T> {
    fn codec() -> String {
        format!("option<{}>", T::codec())
    }
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
        }
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        split_option(bytes)?
            .map(|rest| T::decode(rest).map_err(|e| DecodeError::new(format!("option: {e}"))))
            .transpose()
    }
    fn encoded_size_hint(&self) -> usize {
        1 + self.as_ref().map_or(0, Data::encoded_size_hint)
    }
}

/// The bytes of an `option<a>`'s value, undecoded: `None` for none.
pub(crate) fn split_option(bytes: &[u8]) -> Result<Option<&[u8]>, DecodeError> {
    match bytes.split_first() {
        Some((0, [])) => Ok(None),
        Some((0, rest)) => Err(DecodeError::new(format!(
            "option: {} bytes after the none tag",
            rest.len()
        ))),
        Some((1, rest)) => Ok(Some(rest)),
        Some((tag, _)) => Err(DecodeError::new(format!(
            "option tag must be 0 or 1, got {tag}"
        ))),
        None => Err(DecodeError::truncated("the option tag", 1, 0)),
    }
}

impl<T: Data> Data for Vec<T> {
    fn codec() -> String {
        format!("list<{}>", T::codec())
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&encoded_len_u32(self.len()).to_le_bytes());
        for element in self {
            encode_prefixed(element, out);
        }
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        // The count, but never more than the bytes can hold (4 bytes an
        // element at least), so a bad count cannot reserve much.
        let count = bytes
            .first_chunk::<4>()
            .map_or(0, |count| u32::from_le_bytes(*count) as usize);
        let mut list = Vec::with_capacity(count.min(bytes.len() / 4));
        for_each_list_element(bytes, |i, element| {
            let value = T::decode(element)
                .map_err(|e| DecodeError::new(format!("list element {i}: {e}")))?;
            list.push(value);
            Ok(())
        })?;
        Ok(list)
    }
    fn encoded_size_hint(&self) -> usize {
        4 + self
            .iter()
            .map(|e| 4 + e.encoded_size_hint())
            .sum::<usize>()
    }
}

/// Calls `f(index, bytes)` for each element of a `list<_>` encoding, without
/// decoding the elements; `f`'s first error stops the walk.
pub(crate) fn for_each_list_element(
    bytes: &[u8],
    mut f: impl FnMut(usize, &[u8]) -> Result<(), DecodeError>,
) -> Result<usize, DecodeError> {
    let Some((count, mut rest)) = bytes.split_first_chunk::<4>() else {
        return Err(DecodeError::truncated(
            "the element count of a list",
            4,
            bytes.len(),
        ));
    };
    let count = u32::from_le_bytes(*count) as usize;
    for i in 0..count {
        let (element, after) = split_prefixed(rest, "a list element")
            .map_err(|e| DecodeError::new(format!("list element {i} of {count}: {e}")))?;
        f(i, element)?;
        rest = after;
    }
    if rest.is_empty() {
        Ok(count)
    } else {
        Err(DecodeError::new(format!(
            "{} bytes after the {count} elements of a list",
            rest.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn encoded<T: Data>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        value.encode(&mut out);
        out
    }

    fn round_trip<T: Data + PartialEq + fmt::Debug>(value: T) -> Result<(), TestCaseError> {
        let bytes = encoded(&value);
        if !T::codec().contains("json") {
            prop_assert_eq!(value.encoded_size_hint(), bytes.len(), "exact size hint");
        }
        let back = T::decode(&bytes);
        prop_assert_eq!(back.as_ref(), Ok(&value));
        Ok(())
    }

    /// Floats compare by bits so that NaN round-trips too.
    fn round_trip_bits<T: Data>(value: T, bits: impl Fn(&T) -> u64) -> Result<(), TestCaseError> {
        let bytes = encoded(&value);
        prop_assert_eq!(value.encoded_size_hint(), bytes.len());
        let back = T::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(bits(&back), bits(&value));
        Ok(())
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Event {
        user: String,
        clicks: Vec<u32>,
        score: Option<i64>,
    }
    crate::json_data!(Event);

    proptest! {
        #[test]
        fn string_round_trips(v in ".*") { round_trip(v)?; }
        #[test]
        fn bytes_round_trip(v in vec(any::<u8>(), 0..64)) { round_trip(Bytes(v))?; }
        #[test]
        fn bool_round_trips(v in any::<bool>()) { round_trip(v)?; }
        #[test]
        fn i8_round_trips(v in any::<i8>()) { round_trip(v)?; }
        #[test]
        fn i16_round_trips(v in any::<i16>()) { round_trip(v)?; }
        #[test]
        fn i32_round_trips(v in any::<i32>()) { round_trip(v)?; }
        #[test]
        fn i64_round_trips(v in any::<i64>()) { round_trip(v)?; }
        #[test]
        fn u8_round_trips(v in any::<u8>()) { round_trip(v)?; }
        #[test]
        fn u16_round_trips(v in any::<u16>()) { round_trip(v)?; }
        #[test]
        fn u32_round_trips(v in any::<u32>()) { round_trip(v)?; }
        #[test]
        fn u64_round_trips(v in any::<u64>()) { round_trip(v)?; }
        #[test]
        fn f32_round_trips(v in any::<f32>()) { round_trip_bits(v, |x| u64::from(x.to_bits()))?; }
        #[test]
        fn f64_round_trips(v in any::<f64>()) { round_trip_bits(v, |x| x.to_bits())?; }
        #[test]
        fn pair_round_trips(v in any::<(String, i64)>()) { round_trip(v)?; }
        #[test]
        fn triple_round_trips(v in any::<(u8, String, bool)>()) { round_trip(v)?; }
        #[test]
        fn quadruple_round_trips(v in any::<(i16, (), Option<u32>, String)>()) { round_trip(v)?; }
        #[test]
        fn option_round_trips(v in any::<Option<String>>()) { round_trip(v)?; }
        #[test]
        fn list_round_trips(v in vec(".{0,16}", 0..16)) { round_trip(v)?; }
        #[test]
        fn unit_round_trips(v in any::<()>()) { round_trip(v)?; }
        #[test]
        fn nested_round_trips(
            head in (".{0,8}", vec(any::<Option<i32>>(), 0..6)),
            middle in any::<Option<(u64, String)>>(),
            tail in vec(vec(".{0,8}", 0..4), 0..4),
        ) { round_trip(((head.0, head.1), middle, tail))?; }
        #[test]
        fn nested_options_round_trip(v in any::<Option<Option<Option<bool>>>>()) { round_trip(v)?; }
        #[test]
        fn list_of_pairs_round_trips(v in vec((".{0,8}", vec(any::<u8>(), 0..8)), 0..8)) { round_trip(v)?; }
        #[test]
        fn json_round_trips(user in ".*", clicks in vec(any::<u32>(), 0..8), score in any::<Option<i64>>()) {
            let event = Event { user, clicks, score };
            round_trip(event.clone())?;
            round_trip(Json(event))?;
        }
        #[test]
        fn pair_key_is_bytes_4_to_4_plus_len(k in ".*", v in any::<i64>()) {
            let bytes = encoded(&(k.clone(), v));
            let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
            prop_assert_eq!(&bytes[4..4 + len], k.as_bytes());
            prop_assert_eq!(&bytes[4 + len..], &v.to_le_bytes()[..]);
        }
        #[test]
        fn decoding_garbage_never_panics(bytes in vec(any::<u8>(), 0..40)) {
            let _ = <(String, Vec<Option<i64>>)>::decode(&bytes);
            let _ = <Vec<(u8, String)>>::decode(&bytes);
            let _ = <Option<(bool, ())>>::decode(&bytes);
            let _ = Event::decode(&bytes);
        }
    }

    #[test]
    fn codec_descriptors_follow_the_grammar() {
        assert_eq!(String::codec(), "string");
        assert_eq!(Bytes::codec(), "bytes");
        assert_eq!(bool::codec(), "bool");
        assert_eq!(<()>::codec(), "unit");
        assert_eq!(i8::codec(), "i8");
        assert_eq!(u64::codec(), "u64");
        assert_eq!(f32::codec(), "f32");
        assert_eq!(<(String, i64)>::codec(), "tuple<string,i64>");
        assert_eq!(
            <(u8, Option<String>, Vec<(bool, f64)>)>::codec(),
            "tuple<u8,option<string>,list<tuple<bool,f64>>>"
        );
        assert_eq!(<(i8, i16, i32, u32)>::codec(), "tuple<i8,i16,i32,u32>");
        assert_eq!(Json::<Event>::codec(), "json");
        assert_eq!(Event::codec(), "json");
    }

    #[test]
    fn scalars_have_the_documented_layout() {
        assert_eq!(encoded(&"héllo".to_string()), "héllo".as_bytes());
        assert_eq!(encoded(&Bytes(vec![0, 255])), [0, 255]);
        assert_eq!(encoded(&true), [1]);
        assert_eq!(encoded(&false), [0]);
        assert_eq!(encoded(&()), [0u8; 0]);
        assert_eq!(encoded(&-2i8), [0xfe]);
        assert_eq!(encoded(&0x0102i16), [2, 1]);
        assert_eq!(encoded(&-1i32), [0xff; 4]);
        assert_eq!(encoded(&1i64), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encoded(&0x01020304u32), [4, 3, 2, 1]);
        assert_eq!(encoded(&1.0f32), 1.0f32.to_le_bytes());
        assert_eq!(encoded(&-0.5f64), [0, 0, 0, 0, 0, 0, 0xe0, 0xbf]);
    }

    #[test]
    fn composites_have_the_documented_layout() {
        // tuple: every element but the last is length-prefixed.
        assert_eq!(
            encoded(&("ab".to_string(), 1u16, "c".to_string())),
            [2, 0, 0, 0, b'a', b'b', 2, 0, 0, 0, 1, 0, b'c']
        );
        // option: a tag byte, then the value.
        assert_eq!(encoded(&None::<i32>), [0]);
        assert_eq!(encoded(&Some(7u8)), [1, 7]);
        // list: a count, then each element length-prefixed.
        assert_eq!(
            encoded(&vec!["a".to_string(), String::new()]),
            [2, 0, 0, 0, 1, 0, 0, 0, b'a', 0, 0, 0, 0]
        );
        assert_eq!(encoded(&Vec::<u8>::new()), [0, 0, 0, 0]);
        // a group as the host sends it to reduce-groups: tuple<string,list<i64>>.
        assert_eq!(
            encoded(&("k".to_string(), vec![3i64])),
            [
                1, 0, 0, 0, b'k', 1, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        assert_eq!(encoded(&Json(vec![1, 2])), b"[1,2]");
    }

    #[test]
    fn malformed_input_is_an_error_with_a_reason() {
        let err = |r: Result<_, DecodeError>| r.map(|_: ()| ()).unwrap_err().to_string();
        assert_eq!(
            i64::decode(&[1, 2, 3]).unwrap_err().to_string(),
            "i64 needs exactly 8 bytes, got 3"
        );
        assert!(
            String::decode(&[b'a', 0xff])
                .unwrap_err()
                .to_string()
                .contains("byte 1")
        );
        assert_eq!(
            bool::decode(&[2]).unwrap_err().to_string(),
            "bool must be 0 or 1, got 2"
        );
        assert!(err(<()>::decode(&[1])).contains("unit"));
        assert!(<(String, i64)>::decode(&[9, 0, 0, 0, b'a']).is_err());
        assert!(<(String, i64)>::decode(&[1, 0]).is_err());
        assert!(
            <(String, i64)>::decode(&[1, 0, 0, 0, b'a', 1])
                .unwrap_err()
                .to_string()
                .starts_with("tuple element 1")
        );
        assert!(Option::<u8>::decode(&[]).is_err());
        assert!(Option::<u8>::decode(&[2, 1]).is_err());
        assert!(Option::<u8>::decode(&[0, 1]).is_err());
        assert!(Vec::<u8>::decode(&[1, 0, 0, 0]).is_err());
        assert!(Vec::<u8>::decode(&[0, 0, 0, 0, 9]).is_err());
        // A huge count with no elements fails without allocating for it.
        assert!(Vec::<u8>::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Json::<Vec<i32>>::decode(b"[1,").is_err());
    }
}
