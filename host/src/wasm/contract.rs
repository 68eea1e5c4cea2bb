//! Which version of the contract this host speaks, and which plugins it
//! accepts.
//!
//! [`CONTRACT_VERSION`] is read from the `package sluice:plugin@X.Y.Z;` line of
//! `wit/sluice.wit` at compile time, the same file `bindgen!` reads, so the
//! two cannot disagree. A plugin announces its version in the name of its
//! export, `sluice:plugin/job@X.Y.Z`; [`check_exports`] accepts it when the
//! major versions agree, or for `0.x` when the minor versions agree (Cargo's
//! rule for semver compatibility).

/// The `sluice:plugin` package version this host speaks, e.g. `"0.4.0"`.
pub const CONTRACT_VERSION: &str = package_version(WIT);

/// The exported interface a plugin must have, without its version.
pub(super) const JOB_INTERFACE: &str = "sluice:plugin/job";

const WIT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/sluice.wit"));

/// The `X.Y.Z` of the `package sluice:plugin@X.Y.Z;` line of `wit`, checked at
/// compile time.
const fn package_version(wit: &str) -> &str {
    const PREFIX: &[u8] = b"package sluice:plugin@";
    let bytes = wit.as_bytes();
    let mut start = 0;
    while start + PREFIX.len() <= bytes.len() {
        let mut i = 0;
        while i < PREFIX.len() && bytes[start + i] == PREFIX[i] {
            i += 1;
        }
        if i == PREFIX.len() {
            let (_, rest) = bytes.split_at(start + PREFIX.len());
            let mut end = 0;
            while end < rest.len() && rest[end] != b';' {
                end += 1;
            }
            let (version, _) = rest.split_at(end);
            return match std::str::from_utf8(version) {
                Ok(v) => v,
                Err(_) => panic!("wit/sluice.wit: the package version is not UTF-8"),
            };
        }
        start += 1;
    }
    panic!("wit/sluice.wit has no `package sluice:plugin@X.Y.Z;` line")
}

/// Why a component's exports do not make it a plugin this host can run.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ContractError {
    /// No `sluice:plugin/job` export; these are the exports it has.
    Missing { exports: Vec<String> },
    /// A `sluice:plugin/job` export of an incompatible (or no) version.
    Version { found: String },
}

/// Checks the export names of a component against [`CONTRACT_VERSION`];
/// returns the version of the accepted `job` export.
pub(super) fn check_exports<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<String, ContractError> {
    let expected = Version::parse(CONTRACT_VERSION).expect("wit/sluice.wit has an X.Y.Z version");
    let mut exports = Vec::new();
    let mut incompatible = None;
    for name in names {
        exports.push(name.to_string());
        let Some(rest) = name.strip_prefix(JOB_INTERFACE) else {
            continue;
        };
        let found = match rest.strip_prefix('@') {
            Some(v) => v,
            None if rest.is_empty() => "(no version)",
            None => continue, // another interface, e.g. `sluice:plugin/jobs`
        };
        match Version::parse(found) {
            Some(v) if v.is_compatible_with(&expected) => return Ok(found.to_string()),
            _ => incompatible = Some(found.to_string()),
        }
    }
    Err(match incompatible {
        Some(found) => ContractError::Version { found },
        None => ContractError::Missing { exports },
    })
}

/// A semantic version's numbers; pre-release and build suffixes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
}

impl Version {
    fn parse(s: &str) -> Option<Version> {
        let core = s.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let mut number = || parts.next()?.parse::<u64>().ok();
        let v = Version {
            major: number()?,
            minor: number()?,
            patch: number()?,
        };
        parts.next().is_none().then_some(v)
    }

    /// Cargo's caret rule: same major; for `0.y`, same minor; for `0.0.z`,
    /// the same version.
    fn is_compatible_with(&self, host: &Version) -> bool {
        match (host.major, host.minor) {
            (0, 0) => self == host,
            (0, minor) => self.major == 0 && self.minor == minor,
            (major, _) => self.major == major,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_version_is_the_wit_package_version() {
        assert!(WIT.contains(&format!("package sluice:plugin@{CONTRACT_VERSION};")));
        assert!(Version::parse(CONTRACT_VERSION).is_some());
        assert_eq!(CONTRACT_VERSION, "0.4.0");
    }

    #[test]
    fn same_minor_is_accepted_for_0x() {
        let other = ["wasi:cli/run@0.2.0", "sluice:plugin/job@0.4.0"];
        assert_eq!(check_exports(other), Ok("0.4.0".to_string()));
        assert_eq!(
            check_exports(["sluice:plugin/job@0.4.7"]),
            Ok("0.4.7".to_string())
        );
        assert_eq!(
            check_exports(["sluice:plugin/job@0.4.0-rc.1"]),
            Ok("0.4.0-rc.1".to_string())
        );
    }

    #[test]
    fn other_minor_or_major_is_refused() {
        for v in ["0.3.0", "0.5.0", "1.0.0", "junk", "0.4"] {
            assert_eq!(
                check_exports([format!("sluice:plugin/job@{v}").as_str()]),
                Err(ContractError::Version {
                    found: v.to_string()
                }),
                "{v}"
            );
        }
        assert_eq!(
            check_exports(["sluice:plugin/job"]),
            Err(ContractError::Version {
                found: "(no version)".to_string()
            })
        );
    }

    #[test]
    fn a_compatible_export_wins_over_an_incompatible_one() {
        assert_eq!(
            check_exports(["sluice:plugin/job@0.3.0", "sluice:plugin/job@0.4.2"]),
            Ok("0.4.2".to_string())
        );
    }

    #[test]
    fn missing_export_lists_what_is_there() {
        assert_eq!(
            check_exports(["wasi:cli/run@0.2.0", "sluice:plugin/jobs@0.1.0"]),
            Err(ContractError::Missing {
                exports: vec![
                    "wasi:cli/run@0.2.0".to_string(),
                    "sluice:plugin/jobs@0.1.0".to_string()
                ]
            })
        );
        assert_eq!(
            check_exports([]),
            Err(ContractError::Missing { exports: vec![] })
        );
    }

    #[test]
    fn caret_rule() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("1.4.2").is_compatible_with(&v("1.0.0")));
        assert!(!v("2.0.0").is_compatible_with(&v("1.0.0")));
        assert!(v("0.0.3").is_compatible_with(&v("0.0.3")));
        assert!(!v("0.0.4").is_compatible_with(&v("0.0.3")));
    }
}
