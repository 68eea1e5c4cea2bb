//! The job's arguments: the `--arg KEY=VALUE` pairs of `sluice run`.
//!
//! ```
//! use sluice_guest::Args;
//!
//! let args = Args::from_pairs([("host", "localhost"), ("port", "9999")]);
//! assert_eq!(args.require("host"), Ok("localhost"));
//! assert_eq!(args.parse::<u16>("port"), Ok(9999));
//! assert_eq!(args.get("output"), None);
//! assert!(args.require("output").unwrap_err().contains("--arg output=VALUE"));
//! ```

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// The `--arg KEY=VALUE` pairs given to the job, in command-line order.
///
/// When a key is given more than once, [`get`](Args::get) and friends see the
/// last value (the usual command-line override); [`iter`](Args::iter) sees all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Arguments from key/value pairs (the SDK builds them from the host's
    /// call; useful in tests of a job's `define`).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming the missing argument.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing argument `{key}` (pass --arg {key}=VALUE)"))
    }

    /// The value of `key` parsed as `T`; an error names the argument when it
    /// is missing or does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        parse_value(key, self.require(key)?)
    }

    /// Like [`parse`](Args::parse) for an optional argument: `Ok(None)` when
    /// it is absent, an error when it is given but does not parse.
    pub fn parse_optional<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(key).map(|v| parse_value(key, v)).transpose()
    }

    /// The value of `key` as a duration like `500ms`, `30s`, `5m` or `2h`;
    /// an error names the argument when it is missing or does not parse.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::Args;
    /// let args = Args::from_pairs([("window", "30s")]);
    /// assert_eq!(args.duration("window"), Ok(Duration::from_secs(30)));
    /// ```
    pub fn duration(&self, key: &str) -> Result<Duration, String> {
        let value = self.require(key)?;
        crate::time::parse_duration(value).map_err(|e| format!("argument `{key}`: {e}"))
    }

    /// Like [`duration`](Args::duration) for an optional argument.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::Args;
    /// let args = Args::default();
    /// assert_eq!(args.duration_optional("slide"), Ok(None));
    /// ```
    pub fn duration_optional(&self, key: &str) -> Result<Option<Duration>, String> {
        self.get(key).map(|_| self.duration(key)).transpose()
    }

    /// All pairs, in command-line order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.into_iter()
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether no argument was given.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

fn parse_value<T>(key: &str, value: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    value.parse().map_err(|e| {
        format!(
            "argument `{key}`: cannot parse {value:?} as {}: {e}",
            std::any::type_name::<T>()
        )
    })
}

impl<'a> IntoIterator for &'a Args {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a str, &'a str),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_value_of_a_repeated_key_wins() {
        let args = Args::from_pairs([("k", "1"), ("k", "2")]);
        assert_eq!(args.get("k"), Some("2"));
        assert_eq!(args.iter().count(), 2);
    }

    #[test]
    fn parse_errors_name_the_argument_and_value() {
        let args = Args::from_pairs([("port", "http")]);
        let err = args.parse::<u16>("port").unwrap_err();
        assert!(
            err.starts_with("argument `port`: cannot parse \"http\" as u16"),
            "{err}"
        );
        assert_eq!(
            args.parse::<u16>("n").unwrap_err(),
            "missing argument `n` (pass --arg n=VALUE)"
        );
        assert_eq!(args.parse_optional::<u16>("n"), Ok(None));
        assert!(args.parse_optional::<u16>("port").is_err());
    }

    #[test]
    fn iterates_in_order() {
        let args = Args::from_pairs([("a", "1"), ("b", "2")]);
        let pairs: Vec<_> = (&args).into_iter().collect();
        assert_eq!(pairs, [("a", "1"), ("b", "2")]);
        assert_eq!(args.len(), 2);
        assert!(!args.is_empty());
    }
}
