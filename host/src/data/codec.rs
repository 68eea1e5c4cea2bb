//! Codecs: the type descriptors of `wit/sluice.wit` (`"tuple<string,i64>"`),
//! parsed into [`Codec`], and what the host does with encoded records without
//! calling a guest: split a pair into key and value, build `list<v>` groups,
//! read and write numbers for the built-in reducers, and format a record the
//! way Spark prints it (`(word,3)`).
//!
//! ```
//! use sluice::data::Codec;
//! let c: Codec = "tuple<string,i64>".parse().unwrap();
//! let mut rec = Vec::new();
//! rec.extend_from_slice(&5u32.to_le_bytes());
//! rec.extend_from_slice(b"hello");
//! rec.extend_from_slice(&3i64.to_le_bytes());
//! assert_eq!(c.format(&rec).unwrap(), "(hello,3)");
//! ```

use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::RowsError;

/// A parsed codec descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    /// UTF-8 text.
    String,
    /// Raw bytes.
    Bytes,
    /// One byte, 0 or 1.
    Bool,
    /// No bytes.
    Unit,
    /// A fixed-width little-endian number.
    Num(Numeric),
    /// Elements, all but the last prefixed by a `u32` byte length.
    Tuple(Vec<Codec>),
    /// A tag byte, then the value when the tag is 1.
    Option(Box<Codec>),
    /// A `u32` count, then each element prefixed by a `u32` byte length.
    List(Box<Codec>),
    /// A UTF-8 JSON text.
    Json,
}

/// The numeric codecs, on which the built-in reducers work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Numeric {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
}

/// The longest codec descriptor accepted, in bytes (whitespace included).
pub const MAX_DESCRIPTOR_LEN: usize = 16 << 10;

/// The deepest nesting of `tuple`, `option` and `list` accepted. The parser,
/// the formatter and the codec's own drop recurse once per level, so the
/// bound keeps a hostile descriptor from overflowing the host's stack.
pub const MAX_DEPTH: usize = 32;

/// A descriptor that does not follow the grammar, or a record that does not
/// follow its codec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The descriptor string is not valid.
    #[error("invalid codec `{descriptor}`: {reason}")]
    Descriptor {
        /// The descriptor as given.
        descriptor: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A record is shorter or longer than its codec says, or not UTF-8.
    #[error("record does not match codec `{codec}`: {reason}")]
    Record {
        /// The codec, as a descriptor.
        codec: String,
        /// What is wrong with the record.
        reason: String,
    },
}

impl Numeric {
    /// Width in bytes.
    pub fn width(self) -> usize {
        match self {
            Numeric::I8 | Numeric::U8 => 1,
            Numeric::I16 | Numeric::U16 => 2,
            Numeric::I32 | Numeric::U32 | Numeric::F32 => 4,
            Numeric::I64 | Numeric::U64 | Numeric::F64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Numeric::I8 => "i8",
            Numeric::I16 => "i16",
            Numeric::I32 => "i32",
            Numeric::I64 => "i64",
            Numeric::U8 => "u8",
            Numeric::U16 => "u16",
            Numeric::U32 => "u32",
            Numeric::U64 => "u64",
            Numeric::F32 => "f32",
            Numeric::F64 => "f64",
        }
    }

    /// Reads a value. `bytes` must be exactly [`Numeric::width`] long.
    pub fn read(self, bytes: &[u8]) -> Option<Number> {
        macro_rules! le {
            ($t:ty) => {
                <$t>::from_le_bytes(bytes.try_into().ok()?)
            };
        }
        Some(match self {
            Numeric::I8 => Number::Int(le!(i8) as i128),
            Numeric::I16 => Number::Int(le!(i16) as i128),
            Numeric::I32 => Number::Int(le!(i32) as i128),
            Numeric::I64 => Number::Int(le!(i64) as i128),
            Numeric::U8 => Number::Int(le!(u8) as i128),
            Numeric::U16 => Number::Int(le!(u16) as i128),
            Numeric::U32 => Number::Int(le!(u32) as i128),
            Numeric::U64 => Number::Int(le!(u64) as i128),
            Numeric::F32 => Number::Float(le!(f32) as f64),
            Numeric::F64 => Number::Float(le!(f64)),
        })
    }

    /// Writes a value, wrapping integers to the codec's width as the guest's
    /// own (release-mode) arithmetic would.
    pub fn write(self, n: Number, out: &mut Vec<u8>) {
        let (i, f) = match n {
            Number::Int(i) => (i, i as f64),
            Number::Float(f) => (f as i128, f),
        };
        match self {
            Numeric::I8 => out.extend_from_slice(&(i as i8).to_le_bytes()),
            Numeric::I16 => out.extend_from_slice(&(i as i16).to_le_bytes()),
            Numeric::I32 => out.extend_from_slice(&(i as i32).to_le_bytes()),
            Numeric::I64 => out.extend_from_slice(&(i as i64).to_le_bytes()),
            Numeric::U8 => out.extend_from_slice(&(i as u8).to_le_bytes()),
            Numeric::U16 => out.extend_from_slice(&(i as u16).to_le_bytes()),
            Numeric::U32 => out.extend_from_slice(&(i as u32).to_le_bytes()),
            Numeric::U64 => out.extend_from_slice(&(i as u64).to_le_bytes()),
            Numeric::F32 => out.extend_from_slice(&(f as f32).to_le_bytes()),
            Numeric::F64 => out.extend_from_slice(&f.to_le_bytes()),
        }
    }
}

/// A number read from a record, wide enough for every integer codec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// Any integer codec.
    Int(i128),
    /// `f32` or `f64`.
    Float(f64),
}

impl Codec {
    /// The codec of a pair's key, when this is `tuple<k, v>`.
    pub fn key(&self) -> Option<&Codec> {
        match self {
            Codec::Tuple(items) if items.len() == 2 => Some(&items[0]),
            _ => None,
        }
    }

    /// The codec of a pair's value, when this is `tuple<k, v>`.
    pub fn value(&self) -> Option<&Codec> {
        match self {
            Codec::Tuple(items) if items.len() == 2 => Some(&items[1]),
            _ => None,
        }
    }

    /// `tuple<k, list<v>>`, the codec of the groups of this `tuple<k, v>`.
    pub fn grouped(&self) -> Option<Codec> {
        Some(Codec::Tuple(vec![
            self.key()?.clone(),
            Codec::List(Box::new(self.value()?.clone())),
        ]))
    }

    fn record_error(&self, reason: impl Into<String>) -> CodecError {
        CodecError::Record {
            codec: self.to_string(),
            reason: reason.into(),
        }
    }

    /// Formats a record as Spark prints it: strings as they are, tuples as
    /// `(a,b)`, options as `Some(x)`/`None`, lists as `[a, b]`
    /// (Spark's `CompactBuffer(a, b)` in a shorter spelling), floats with at
    /// least one decimal (`1.0`), bytes in hex.
    pub fn format(&self, record: &[u8]) -> Result<String, CodecError> {
        let mut out = String::new();
        self.format_into(record, &mut out)?;
        Ok(out)
    }

    /// [`Codec::format`] appending to `out`.
    pub fn format_into(&self, record: &[u8], out: &mut String) -> Result<(), CodecError> {
        match self {
            Codec::String | Codec::Json => {
                let s = std::str::from_utf8(record)
                    .map_err(|e| self.record_error(format!("invalid UTF-8: {e}")))?;
                out.push_str(s);
            }
            Codec::Bytes => {
                for b in record {
                    let _ = write!(out, "{b:02x}");
                }
            }
            Codec::Bool => match record {
                [0] => out.push_str("false"),
                [1] => out.push_str("true"),
                _ => return Err(self.record_error("a bool is one byte, 0 or 1")),
            },
            Codec::Unit => {
                if !record.is_empty() {
                    return Err(self.record_error("unit has no bytes"));
                }
                out.push_str("()");
            }
            Codec::Num(n) => {
                if record.len() != n.width() {
                    return Err(self.record_error(format!(
                        "{} bytes where {} are expected",
                        record.len(),
                        n.width()
                    )));
                }
                match n.read(record).expect("width checked") {
                    Number::Int(i) => {
                        let _ = write!(out, "{i}");
                    }
                    Number::Float(f) => format_float(f, *n, out),
                }
            }
            Codec::Tuple(items) => {
                out.push('(');
                let mut rest = record;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if i + 1 == items.len() {
                        item.format_into(rest, out)?;
                    } else {
                        let (field, tail) = split_prefixed(rest).ok_or_else(|| {
                            self.record_error(format!("element {i} is truncated"))
                        })?;
                        item.format_into(field, out)?;
                        rest = tail;
                    }
                }
                out.push(')');
            }
            Codec::Option(inner) => match record.split_first() {
                Some((0, [])) => out.push_str("None"),
                Some((1, value)) => {
                    out.push_str("Some(");
                    inner.format_into(value, out)?;
                    out.push(')');
                }
                _ => return Err(self.record_error("bad option tag")),
            },
            Codec::List(inner) => {
                let items =
                    ListIter::new(record).ok_or_else(|| self.record_error("truncated list"))?;
                out.push('[');
                for (i, item) in items.enumerate() {
                    let item = item.ok_or_else(|| self.record_error("truncated list element"))?;
                    if i > 0 {
                        out.push_str(", ");
                    }
                    inner.format_into(item, out)?;
                }
                out.push(']');
            }
        }
        Ok(())
    }
}

impl Codec {
    /// Checks that `record` is exactly an encoding of this codec: every
    /// length, count and tag within bounds, numbers at their width, strings
    /// and JSON texts valid UTF-8, and no byte left over. (What the host
    /// checks of a state a guest returns before keeping it.)
    pub fn check(&self, record: &[u8]) -> Result<(), CodecError> {
        match self {
            Codec::String | Codec::Json => {
                std::str::from_utf8(record)
                    .map_err(|e| self.record_error(format!("invalid UTF-8: {e}")))?;
            }
            Codec::Bytes => {}
            Codec::Bool => {
                if !matches!(record, [0] | [1]) {
                    return Err(self.record_error("a bool is one byte, 0 or 1"));
                }
            }
            Codec::Unit => {
                if !record.is_empty() {
                    return Err(self.record_error("unit has no bytes"));
                }
            }
            Codec::Num(n) => {
                if record.len() != n.width() {
                    return Err(self.record_error(format!(
                        "{} bytes where {} are expected",
                        record.len(),
                        n.width()
                    )));
                }
            }
            Codec::Tuple(items) => {
                let mut rest = record;
                for (i, item) in items.iter().enumerate() {
                    if i + 1 == items.len() {
                        item.check(rest)?;
                    } else {
                        let (field, tail) = split_prefixed(rest).ok_or_else(|| {
                            self.record_error(format!("element {i} is truncated"))
                        })?;
                        item.check(field)?;
                        rest = tail;
                    }
                }
            }
            Codec::Option(inner) => match record.split_first() {
                Some((0, [])) => {}
                Some((0, _)) => return Err(self.record_error("bytes after a none")),
                Some((1, value)) => inner.check(value)?,
                _ => return Err(self.record_error("bad option tag")),
            },
            Codec::List(inner) => {
                let mut rest = record
                    .get(4..)
                    .ok_or_else(|| self.record_error("truncated list"))?;
                let count = u32::from_le_bytes(record[..4].try_into().expect("4 bytes"));
                for i in 0..count {
                    let (item, tail) = split_prefixed(rest).ok_or_else(|| {
                        self.record_error(format!("list element {i} of {count} is truncated"))
                    })?;
                    inner.check(item)?;
                    rest = tail;
                }
                if !rest.is_empty() {
                    return Err(self.record_error(format!(
                        "{} bytes after the list's {count} elements",
                        rest.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

fn format_float(f: f64, n: Numeric, out: &mut String) {
    let s = if n == Numeric::F32 {
        format!("{:?}", f as f32)
    } else {
        format!("{f:?}")
    };
    out.push_str(&s);
}

/// Splits `u32-le length | field | rest`.
#[inline]
pub fn split_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let field = bytes.get(4..4 + len)?;
    Some((field, &bytes[4 + len..]))
}

/// Splits a `tuple<k, v>` record into its key and value bytes.
#[inline]
pub fn split_pair(record: &[u8]) -> Option<(&[u8], &[u8])> {
    split_prefixed(record)
}

/// Bytes of the `tuple<k, v>` encoding of a key and a value of `value_len` bytes.
pub fn pair_len(key: &[u8], value_len: usize) -> usize {
    4 + key.len() + value_len
}

/// Appends the `tuple<k, v>` encoding of `key` and `value` to `out`
/// ([`pair_len`] bytes); fails, writing nothing, for a key of 4 GiB or more.
pub fn write_pair(key: &[u8], value: &[u8], out: &mut Vec<u8>) -> Result<(), RowsError> {
    write_prefixed(key, out)?;
    out.extend_from_slice(value);
    Ok(())
}

/// Appends `u32-le length | bytes` to `out`; fails, writing nothing, for 4 GiB
/// or more.
pub fn write_prefixed(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RowsError> {
    let len = u32::try_from(bytes.len()).map_err(|_| RowsError::TooLarge)?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Bytes of the `list<v>` encoding of `items`.
pub fn list_len<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> usize {
    items.into_iter().map(|item| 4 + item.len()).sum::<usize>() + 4
}

/// Appends the `list<v>` encoding of `items` to `out` ([`list_len`] bytes);
/// fails, writing nothing, when the list or an element would pass the `u32`
/// counts and lengths of the encoding.
pub fn write_list<'a>(
    items: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
    out: &mut Vec<u8>,
) -> Result<(), RowsError> {
    let count = u32::try_from(items.len()).map_err(|_| RowsError::TooLarge)?;
    if items.clone().any(|item| u32::try_from(item.len()).is_err()) {
        return Err(RowsError::TooLarge);
    }
    out.extend_from_slice(&count.to_le_bytes());
    for item in items {
        write_prefixed(item, out)?;
    }
    Ok(())
}

/// Iterator over the elements of a `list<v>` encoding; yields `None` for a
/// truncated element.
pub struct ListIter<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> ListIter<'a> {
    /// Reads the count; `None` when the record is shorter than 4 bytes.
    pub fn new(record: &'a [u8]) -> Option<Self> {
        let left = u32::from_le_bytes(record.get(..4)?.try_into().ok()?);
        Some(Self {
            rest: &record[4..],
            left,
        })
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = Option<&'a [u8]>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match split_prefixed(self.rest) {
            Some((item, rest)) => {
                self.rest = rest;
                Some(Some(item))
            }
            None => {
                self.left = 0;
                Some(None)
            }
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::String => f.write_str("string"),
            Codec::Bytes => f.write_str("bytes"),
            Codec::Bool => f.write_str("bool"),
            Codec::Unit => f.write_str("unit"),
            Codec::Json => f.write_str("json"),
            Codec::Num(n) => f.write_str(n.name()),
            Codec::Tuple(items) => {
                f.write_str("tuple<")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(">")
            }
            Codec::Option(inner) => write!(f, "option<{inner}>"),
            Codec::List(inner) => write!(f, "list<{inner}>"),
        }
    }
}

impl FromStr for Codec {
    type Err = CodecError;

    fn from_str(descriptor: &str) -> Result<Self, CodecError> {
        if descriptor.len() > MAX_DESCRIPTOR_LEN {
            return Err(CodecError::Descriptor {
                descriptor: abbreviate(descriptor),
                reason: format!(
                    "it is {} bytes long; a codec descriptor has at most {MAX_DESCRIPTOR_LEN}",
                    descriptor.len()
                ),
            });
        }
        let compact: String = descriptor.chars().filter(|c| !c.is_whitespace()).collect();
        let mut parser = Parser {
            input: &compact,
            pos: 0,
            depth: 0,
        };
        let codec = parser.codec().and_then(|c| {
            if parser.pos == compact.len() {
                Ok(c)
            } else {
                Err(format!("unexpected `{}`", &compact[parser.pos..]))
            }
        });
        codec.map_err(|reason| CodecError::Descriptor {
            descriptor: abbreviate(descriptor),
            reason,
        })
    }
}

/// The descriptor for a message: whole when short, else its first 64
/// characters and its length.
fn abbreviate(descriptor: &str) -> String {
    const SHOWN: usize = 64;
    match descriptor.char_indices().nth(SHOWN) {
        None => descriptor.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &descriptor[..cut], descriptor.len()),
    }
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    /// Type arguments entered and not yet closed.
    depth: usize,
}

impl Parser<'_> {
    fn codec(&mut self) -> Result<Codec, String> {
        let rest = &self.input[self.pos..];
        let word_len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let word = &rest[..word_len];
        self.pos += word_len;
        let num = |n| Ok(Codec::Num(n));
        match word {
            "string" => Ok(Codec::String),
            "bytes" => Ok(Codec::Bytes),
            "bool" => Ok(Codec::Bool),
            "unit" => Ok(Codec::Unit),
            "json" => Ok(Codec::Json),
            "i8" => num(Numeric::I8),
            "i16" => num(Numeric::I16),
            "i32" => num(Numeric::I32),
            "i64" => num(Numeric::I64),
            "u8" => num(Numeric::U8),
            "u16" => num(Numeric::U16),
            "u32" => num(Numeric::U32),
            "u64" => num(Numeric::U64),
            "f32" => num(Numeric::F32),
            "f64" => num(Numeric::F64),
            "tuple" => {
                let items = self.arguments()?;
                if items.len() < 2 {
                    return Err("a tuple has at least two elements".into());
                }
                Ok(Codec::Tuple(items))
            }
            "option" | "list" => {
                let mut items = self.arguments()?;
                if items.len() != 1 {
                    return Err(format!("`{word}` takes one type"));
                }
                let inner = Box::new(items.remove(0));
                Ok(if word == "option" {
                    Codec::Option(inner)
                } else {
                    Codec::List(inner)
                })
            }
            "" => Err(format!("expected a type at offset {}", self.pos)),
            other => Err(format!("unknown type `{other}`")),
        }
    }

    fn arguments(&mut self) -> Result<Vec<Codec>, String> {
        self.expect('<')?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "types nest more than {MAX_DEPTH} levels deep (at offset {})",
                self.pos
            ));
        }
        let mut items = vec![self.codec()?];
        while self.peek() == Some(',') {
            self.pos += 1;
            items.push(self.codec()?);
        }
        self.expect('>')?;
        self.depth -= 1;
        Ok(items)
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected `{c}` at offset {}", self.pos))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn descriptors_round_trip() {
        for d in [
            "string",
            "tuple<string,i64>",
            "tuple<string,list<f64>>",
            "option<tuple<bytes,bool,unit>>",
            "list<json>",
        ] {
            assert_eq!(d.parse::<Codec>().unwrap().to_string(), d);
        }
        assert_eq!(
            " tuple< string , i64 >"
                .parse::<Codec>()
                .unwrap()
                .to_string(),
            "tuple<string,i64>"
        );
    }

    fn nested(depth: usize) -> String {
        format!("{}i64{}", "list<".repeat(depth), ">".repeat(depth))
    }

    #[test]
    fn fields_of_4_gib_are_errors_not_panics() {
        // Zeroed and never touched: no memory is used for it.
        let huge = vec![0u8; 1 << 32];
        let mut out = Vec::new();
        assert_eq!(write_prefixed(&huge, &mut out), Err(RowsError::TooLarge));
        assert_eq!(write_pair(&huge, b"v", &mut out), Err(RowsError::TooLarge));
        let items = [&b"a"[..], &huge[..]];
        assert_eq!(
            write_list(items.iter().copied(), &mut out),
            Err(RowsError::TooLarge)
        );
        assert!(out.is_empty(), "nothing was written");
        assert_eq!(list_len(items.iter().copied()), 4 + 5 + 4 + (1 << 32));
    }

    #[test]
    fn nesting_is_bounded() {
        let deepest = nested(MAX_DEPTH);
        assert_eq!(deepest.parse::<Codec>().unwrap().to_string(), deepest);
        let e = nested(MAX_DEPTH + 1)
            .parse::<Codec>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("nest more than 32 levels deep"), "{e}");
        // Without the bound, this overflowed the stack of the parsing thread.
        let hostile = format!("{}i64", "option<".repeat(100_000));
        let e = hostile.parse::<Codec>().unwrap_err().to_string();
        assert!(
            e.contains("bytes long; a codec descriptor has at most 16384"),
            "{e}"
        );
        assert!(e.len() < 300, "the message quotes the start only: {e}");
        let e = format!("{}i64", "option<".repeat(2000))
            .parse::<Codec>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("nest more than 32 levels deep"), "{e}");
    }

    #[test]
    fn bad_descriptors_say_why() {
        let e = "tuple<string>".parse::<Codec>().unwrap_err().to_string();
        assert!(e.contains("at least two"), "{e}");
        let e = "map<string,i64>".parse::<Codec>().unwrap_err().to_string();
        assert!(e.contains("unknown type `map`"), "{e}");
        assert!("list<i64".parse::<Codec>().is_err());
        assert!("i64>".parse::<Codec>().is_err());
    }

    #[test]
    fn formats_like_spark() {
        let c: Codec = "tuple<string,list<f64>>".parse().unwrap();
        let mut rec = Vec::new();
        let mut list = Vec::new();
        let items = [1.0f64.to_le_bytes(), 2.5f64.to_le_bytes()];
        write_list(items.iter().map(|b| &b[..]), &mut list).unwrap();
        write_pair(b"k", &list, &mut rec).unwrap();
        assert_eq!(c.format(&rec).unwrap(), "(k,[1.0, 2.5])");
        let o: Codec = "option<i32>".parse().unwrap();
        assert_eq!(o.format(&[0]).unwrap(), "None");
        let mut some = vec![1];
        some.extend_from_slice(&(-7i32).to_le_bytes());
        assert_eq!(o.format(&some).unwrap(), "Some(-7)");
    }

    #[test]
    fn truncated_records_are_errors() {
        let c: Codec = "tuple<string,i64>".parse().unwrap();
        assert!(c.format(&[9, 0, 0, 0, b'a']).is_err());
        assert!(c.format(&[1, 0, 0, 0, b'a', 1, 2]).is_err());
    }

    #[test]
    fn check_accepts_exact_encodings_and_names_what_is_wrong() {
        let i: Codec = "i64".parse().unwrap();
        assert_eq!(i.check(&7i64.to_le_bytes()), Ok(()));
        let e = i.check(&7i32.to_le_bytes()).unwrap_err().to_string();
        assert_eq!(
            e,
            "record does not match codec `i64`: 4 bytes where 8 are expected"
        );
        let c: Codec = "tuple<string,list<i32>>".parse().unwrap();
        let mut list = Vec::new();
        let items = [1i32.to_le_bytes(), 2i32.to_le_bytes()];
        write_list(items.iter().map(|b| &b[..]), &mut list).unwrap();
        let mut rec = Vec::new();
        write_pair(b"k", &list, &mut rec).unwrap();
        assert_eq!(c.check(&rec), Ok(()));
        rec.push(0);
        assert!(
            c.check(&rec)
                .unwrap_err()
                .to_string()
                .contains("1 bytes after the list")
        );
        rec.truncate(rec.len() - 3);
        assert!(c.check(&rec).is_err(), "a truncated element");
        assert!(c.check(&[1, 0, 0, 0, 0xff]).is_err(), "invalid UTF-8 key");
        let o: Codec = "option<bool>".parse().unwrap();
        assert_eq!(o.check(&[0]), Ok(()));
        assert_eq!(o.check(&[1, 1]), Ok(()));
        assert!(o.check(&[0, 1]).is_err());
        assert!(o.check(&[1, 2]).is_err());
        assert!(o.check(&[2]).is_err());
        assert!(o.check(&[]).is_err());
    }

    proptest! {
        #[test]
        fn pairs_split_back(key in proptest::collection::vec(any::<u8>(), 0..40),
                            value in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut rec = Vec::new();
            write_pair(&key, &value, &mut rec).unwrap();
            prop_assert_eq!(rec.len(), pair_len(&key, value.len()));
            let (k, v) = split_pair(&rec).unwrap();
            prop_assert_eq!(k, &key[..]);
            prop_assert_eq!(v, &value[..]);
        }

        #[test]
        fn check_agrees_with_the_formatter_on_well_formed_records(
            key in "[a-z]{0,8}",
            values in proptest::collection::vec(any::<i64>(), 0..5),
        ) {
            let c: Codec = "tuple<string,list<i64>>".parse().unwrap();
            let items: Vec<[u8; 8]> = values.iter().map(|v| v.to_le_bytes()).collect();
            let mut list = Vec::new();
            write_list(items.iter().map(|b| &b[..]), &mut list).unwrap();
            let mut rec = Vec::new();
            write_pair(key.as_bytes(), &list, &mut rec).unwrap();
            prop_assert_eq!(c.check(&rec), Ok(()));
            prop_assert!(c.format(&rec).is_ok());
            // Every strict prefix is refused.
            for cut in 0..rec.len() {
                prop_assert!(c.check(&rec[..cut]).is_err(), "prefix of {} bytes", cut);
            }
        }

        #[test]
        fn numbers_round_trip(i in any::<i64>(), f in any::<f64>()) {
            let mut out = Vec::new();
            Numeric::I64.write(Number::Int(i as i128), &mut out);
            prop_assert_eq!(Numeric::I64.read(&out), Some(Number::Int(i as i128)));
            out.clear();
            Numeric::F64.write(Number::Float(f), &mut out);
            let back = match Numeric::F64.read(&out) { Some(Number::Float(b)) => b, _ => unreachable!() };
            prop_assert!(back == f || (back.is_nan() && f.is_nan()));
        }
    }
}
