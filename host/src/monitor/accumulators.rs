//! [`Accumulators`]: named integer and float sums that guests add to (Spark's
//! accumulators), through the `host` interface of the WIT contract.
//!
//! An instance collects the additions of the call it is running; the
//! executor keeps them only when the task succeeds, and sums them into its
//! batch (a retried task's failed attempts add nothing). The scheduler then
//! adds each batch's sums to the job's running totals, which the log,
//! `--metrics-json` and the run summary show.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One accumulator's value: an integer or a float sum. A name keeps the kind
/// of its first addition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AccumulatorValue {
    /// An integer sum (wrapping on overflow, as Spark's `LongAccumulator`).
    Int(i64),
    /// A float sum.
    Float(f64),
}

impl fmt::Display for AccumulatorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccumulatorValue::Int(n) => write!(f, "{n}"),
            AccumulatorValue::Float(x) => write!(f, "{x:?}"),
        }
    }
}

/// An addition of a float to an integer accumulator, or the reverse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("accumulator `{name}` is {kind}, so `{value}` cannot be added to it")]
pub struct KindMismatch {
    /// The accumulator.
    pub name: String,
    /// `"an integer sum"` or `"a float sum"`.
    pub kind: &'static str,
    /// The value refused.
    pub value: String,
}

/// Named sums, in name order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Accumulators(BTreeMap<String, AccumulatorValue>);

impl Accumulators {
    /// Adds `value` to the accumulator `name` (created at zero).
    pub fn add(&mut self, name: &str, value: AccumulatorValue) -> Result<(), KindMismatch> {
        let Some(sum) = self.0.get_mut(name) else {
            self.0.insert(name.to_string(), value);
            return Ok(());
        };
        match (sum, value) {
            (AccumulatorValue::Int(sum), AccumulatorValue::Int(n)) => *sum = sum.wrapping_add(n),
            (AccumulatorValue::Float(sum), AccumulatorValue::Float(x)) => *sum += x,
            (sum, value) => {
                return Err(KindMismatch {
                    name: name.to_string(),
                    kind: match sum {
                        AccumulatorValue::Int(_) => "an integer sum",
                        AccumulatorValue::Float(_) => "a float sum",
                    },
                    value: value.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Adds every sum of `other`.
    pub fn merge(&mut self, other: &Accumulators) -> Result<(), KindMismatch> {
        for (name, value) in &other.0 {
            self.add(name, *value)?;
        }
        Ok(())
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of one accumulator.
    pub fn get(&self, name: &str) -> Option<AccumulatorValue> {
        self.0.get(name).copied()
    }

    /// Every accumulator, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, AccumulatorValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl fmt::Display for Accumulators {
    /// `dropped=3 ratio=0.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, value) in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_by_name_and_refuses_mixing_kinds() {
        let mut a = Accumulators::default();
        a.add("dropped", AccumulatorValue::Int(2)).unwrap();
        a.add("dropped", AccumulatorValue::Int(3)).unwrap();
        a.add("ratio", AccumulatorValue::Float(0.25)).unwrap();
        let mut b = Accumulators::default();
        b.add("ratio", AccumulatorValue::Float(0.5)).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.get("dropped"), Some(AccumulatorValue::Int(5)));
        assert_eq!(a.get("ratio"), Some(AccumulatorValue::Float(0.75)));
        assert_eq!(a.to_string(), "dropped=5 ratio=0.75");
        let e = a.add("dropped", AccumulatorValue::Float(1.0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "accumulator `dropped` is an integer sum, so `1.0` cannot be added to it"
        );
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"dropped":5,"ratio":0.75}"#
        );
    }
}
