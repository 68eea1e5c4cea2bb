//! A tiny `--name value` argument parser, so the bench binaries build in
//! seconds without a CLI framework.
//!
//! ```
//! use sluice_bench::args::Args;
//!
//! let mut args = Args::parse(["--port", "9999", "--threads", "2"].map(String::from)).unwrap();
//! assert_eq!(args.take::<u16>("port").unwrap(), Some(9999));
//! assert_eq!(args.take_or("threads", 1usize).unwrap(), 2);
//! assert_eq!(args.take_or("batch-interval-ms", 1000u64).unwrap(), 1000);
//! args.finish().unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Options given as `--name value` pairs.
#[derive(Debug)]
pub struct Args {
    values: BTreeMap<String, String>,
}

/// A command line that the binary does not accept.
#[derive(Debug)]
pub struct ArgsError(String);

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgsError {}

impl Args {
    /// Parses `--name value` pairs (`--name=value` is accepted too).
    pub fn parse(items: impl IntoIterator<Item = String>) -> Result<Self, ArgsError> {
        let mut values = BTreeMap::new();
        let mut items = items.into_iter();
        while let Some(item) = items.next() {
            let Some(name) = item.strip_prefix("--") else {
                return Err(ArgsError(format!(
                    "unexpected argument `{item}`: options are `--name value`"
                )));
            };
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = items
                        .next()
                        .ok_or_else(|| ArgsError(format!("`--{name}` needs a value")))?;
                    (name.to_owned(), value)
                }
            };
            if values.insert(name.clone(), value).is_some() {
                return Err(ArgsError(format!("`--{name}` given twice")));
            }
        }
        Ok(Self { values })
    }

    /// Parses the process's own arguments.
    pub fn from_env() -> Result<Self, ArgsError> {
        Self::parse(std::env::args().skip(1))
    }

    /// Removes and parses option `name`, if it was given.
    pub fn take<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, ArgsError>
    where
        T::Err: fmt::Display,
    {
        match self.values.remove(name) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|e| ArgsError(format!("`--{name} {raw}`: {e}"))),
        }
    }

    /// Removes and parses option `name`, or returns `default`.
    pub fn take_or<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, ArgsError>
    where
        T::Err: fmt::Display,
    {
        Ok(self.take(name)?.unwrap_or(default))
    }

    /// Removes and parses option `name`, which must be given.
    pub fn require<T: FromStr>(&mut self, name: &str) -> Result<T, ArgsError>
    where
        T::Err: fmt::Display,
    {
        self.take(name)?
            .ok_or_else(|| ArgsError(format!("`--{name}` is required")))
    }

    /// Fails if an option was given that nobody took.
    pub fn finish(self) -> Result<(), ArgsError> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(name) => Err(ArgsError(format!("unknown option `--{name}`"))),
        }
    }
}
