//! The language-neutral codec test vectors (`wit/vectors/codecs.json`),
//! which every SDK's tests read: each case's value encodes to exactly its
//! bytes and decodes back, under the codec descriptor the Rust type gives;
//! every invalid case fails to decode.

use std::fmt::Debug;

use serde_json::Value;
use sluice_guest::codec::{Bytes, Data, Json};

const VECTORS: &str = include_str!("../../../wit/vectors/codecs.json");

/// A Rust value from a vector's JSON value form (see the file's
/// `value_form`).
trait FromVector: Sized {
    fn from_vector(v: &Value) -> Self;
}

fn int<T: TryFrom<i128> + Debug>(v: &Value) -> T
where
    T::Error: Debug,
{
    let n: i128 = match v {
        Value::String(s) => s.parse().expect("a decimal integer"),
        Value::Number(n) => i128::from(n.as_i64().expect("an integer")),
        other => panic!("not an integer: {other}"),
    };
    T::try_from(n).expect("in range")
}

macro_rules! ints {
    ($($t:ty),*) => {$(
        impl FromVector for $t {
            fn from_vector(v: &Value) -> Self {
                int(v)
            }
        }
    )*};
}
ints!(i8, i16, i32, i64, u8, u16, u32, u64);

fn float(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("a number"),
        Value::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "-0.0" => -0.0,
            other => panic!("not a float form: {other}"),
        },
        other => panic!("not a float: {other}"),
    }
}

impl FromVector for f64 {
    fn from_vector(v: &Value) -> Self {
        float(v)
    }
}

impl FromVector for f32 {
    fn from_vector(v: &Value) -> Self {
        float(v) as f32
    }
}

impl FromVector for String {
    fn from_vector(v: &Value) -> Self {
        v.as_str().expect("a string").to_string()
    }
}

impl FromVector for Bytes {
    fn from_vector(v: &Value) -> Self {
        Bytes::from(hex(v.as_str().expect("hex")))
    }
}

impl FromVector for bool {
    fn from_vector(v: &Value) -> Self {
        v.as_bool().expect("a bool")
    }
}

impl FromVector for () {
    fn from_vector(v: &Value) -> Self {
        assert!(v.is_null(), "unit is null");
    }
}

impl<T: FromVector> FromVector for Option<T> {
    fn from_vector(v: &Value) -> Self {
        match v.as_array().expect("[] or [value]").as_slice() {
            [] => None,
            [x] => Some(T::from_vector(x)),
            other => panic!("an option has at most one entry: {other:?}"),
        }
    }
}

impl<T: FromVector> FromVector for Vec<T> {
    fn from_vector(v: &Value) -> Self {
        v.as_array()
            .expect("a list")
            .iter()
            .map(T::from_vector)
            .collect()
    }
}

impl FromVector for Json<Value> {
    fn from_vector(v: &Value) -> Self {
        Json(v.clone())
    }
}

macro_rules! tuples {
    ($(($($t:ident $i:tt),+))*) => {$(
        impl<$($t: FromVector),+> FromVector for ($($t,)+) {
            fn from_vector(v: &Value) -> Self {
                let items = v.as_array().expect("a tuple");
                ($($t::from_vector(&items[$i]),)+)
            }
        }
    )*};
}
tuples!((A 0, B 1) (A 0, B 1, C 2));

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Floats compare by bits (NaN, -0.0); everything else by `PartialEq` of
/// its debug form, which is exact for these types.
fn same<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Checks `case` with `T` if `T`'s codec is the case's; returns whether it
/// was.
fn check<T: Data + FromVector + Debug>(case: &Value) -> bool {
    if case["codec"] != T::codec() {
        return false;
    }
    let value = T::from_vector(&case["value"]);
    let bytes = hex(case["hex"].as_str().unwrap());
    let mut out = Vec::new();
    value.encode(&mut out);
    assert_eq!(out, bytes, "encode {case}");
    let decoded = T::decode(&bytes).unwrap_or_else(|e| panic!("decode {case}: {e}"));
    assert!(same(&decoded, &value), "decode {case}: got {decoded:?}");
    true
}

/// Checks that `case` fails to decode with `T` if `T`'s codec is the case's.
fn refuse<T: Data + Debug>(case: &Value) -> bool {
    if case["codec"] != T::codec() {
        return false;
    }
    let bytes = hex(case["hex"].as_str().unwrap());
    let decoded = T::decode(&bytes);
    assert!(decoded.is_err(), "{case}: decoded as {decoded:?}");
    true
}

type UpdateStateIn = (String, Vec<(u32, i64)>, Option<i64>);
type MapWithStateIn = (String, Option<i64>, Option<Vec<(u32, i64)>>);
type MapWithStateOut = (Option<i64>, Vec<(String, i64)>);
type Cogrouped = (String, (Vec<i64>, Vec<String>));

/// Runs `$f::<T>(case)` for the first type whose codec is the case's.
macro_rules! dispatch {
    ($f:ident, $case:expr) => {
        $f::<String>($case)
            || $f::<Bytes>($case)
            || $f::<bool>($case)
            || $f::<()>($case)
            || $f::<i8>($case)
            || $f::<i16>($case)
            || $f::<i32>($case)
            || $f::<i64>($case)
            || $f::<u8>($case)
            || $f::<u16>($case)
            || $f::<u32>($case)
            || $f::<u64>($case)
            || $f::<f32>($case)
            || $f::<f64>($case)
            || $f::<(String, i64)>($case)
            || $f::<(String, u16, String)>($case)
            || $f::<(i64, i64)>($case)
            || $f::<(String, (i64, String))>($case)
            || $f::<(String, ())>($case)
            || $f::<Option<i32>>($case)
            || $f::<Option<u8>>($case)
            || $f::<Option<Option<i64>>>($case)
            || $f::<Option<String>>($case)
            || $f::<Option<i64>>($case)
            || $f::<Vec<String>>($case)
            || $f::<Vec<i64>>($case)
            || $f::<Vec<Vec<i64>>>($case)
            || $f::<(String, Vec<i64>)>($case)
            || $f::<UpdateStateIn>($case)
            || $f::<MapWithStateIn>($case)
            || $f::<MapWithStateOut>($case)
            || $f::<Cogrouped>($case)
            || $f::<Json<Value>>($case)
    };
}

#[test]
fn every_codec_vector_encodes_to_its_bytes_and_decodes_back() {
    let doc: Value = serde_json::from_str(VECTORS).expect("codecs.json is JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() > 40, "the file holds the cases");
    for case in cases {
        assert!(
            dispatch!(check, case),
            "no Rust type here has the codec of {case}: add it"
        );
    }
}

#[test]
fn every_invalid_codec_vector_fails_to_decode() {
    let doc: Value = serde_json::from_str(VECTORS).expect("codecs.json is JSON");
    let invalid = doc["invalid"].as_array().expect("invalid");
    assert!(!invalid.is_empty());
    for case in invalid {
        assert!(
            dispatch!(refuse, case),
            "no Rust type here has the codec of {case}: add it"
        );
    }
}
