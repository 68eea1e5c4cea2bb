//! What `sluice serve` keeps in its data directory, so that a restarted host
//! (even after SIGKILL) knows every job, its versions and its arguments:
//!
//! ```text
//! <data-dir>/token                     the API's bearer token (mode 0600)
//! <data-dir>/plugins/<sha256>.wasm     uploaded components, by content
//! <data-dir>/jobs/<name>/job.json      a job's deploy spec and versions
//! <data-dir>/jobs/<name>/checkpoint/   its checkpoints, unless the spec names another location
//! <data-dir>/cache/                    compiled components (see `wasm::cache`)
//! ```
//!
//! Every file is written atomically: a temporary file beside it, fsync,
//! rename over the old one, fsync of the directory. A reader sees the old
//! file or the new one, never a torn one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::api::JobSpec;

/// The longest job name.
pub const MAX_NAME_LEN: usize = 64;

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file or directory could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `job.json` is not what this version writes.
    #[error("{path} is not a job record: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// One version of a job: a component, by digest, and when it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionRecord {
    /// SHA-256 of the component file, in hex.
    pub digest: String,
    /// When the job first ran this version (ms since the Unix epoch).
    pub first_ran_ms: u64,
    /// When the job last switched to or away from this version, or last
    /// started with it (ms since the Unix epoch).
    pub last_ran_ms: u64,
}

/// A deployed job as the data directory keeps it (`jobs/<name>/job.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRecord {
    /// The job's name.
    pub name: String,
    /// How it was deployed.
    pub spec: JobSpec,
    /// The digest of the version that runs (or ran last).
    pub current: String,
    /// Every version the job ran, in the order it first ran them.
    pub versions: Vec<VersionRecord>,
    /// Whether a (re)started host starts it: true from its deploy until it
    /// is stopped through the API or fails.
    pub should_run: bool,
    /// Why it failed, if it did.
    pub failed: Option<String>,
    /// When it was deployed (ms since the Unix epoch).
    pub deployed_ms: u64,
}

impl JobRecord {
    /// Notes that the job runs `digest` from `now_ms` on: the version it ran
    /// before (if another) ran until now.
    pub fn switch_to(&mut self, digest: &str, now_ms: u64) {
        if let Some(previous) = self.versions.iter_mut().find(|v| v.digest == self.current) {
            previous.last_ran_ms = now_ms;
        }
        match self.versions.iter_mut().find(|v| v.digest == digest) {
            Some(version) => version.last_ran_ms = now_ms,
            None => self.versions.push(VersionRecord {
                digest: digest.to_string(),
                first_ran_ms: now_ms,
                last_ran_ms: now_ms,
            }),
        }
        self.current = digest.to_string();
    }

    /// The version a `rollback` without `--to` returns to: of the others,
    /// the one that ran last.
    pub fn previous_version(&self) -> Option<&VersionRecord> {
        self.versions
            .iter()
            .filter(|v| v.digest != self.current)
            .max_by_key(|v| v.last_ran_ms)
    }

    /// The one version of this job whose digest starts with `prefix`.
    pub fn version_by_prefix(&self, prefix: &str) -> Result<&VersionRecord, String> {
        let prefix = prefix.to_ascii_lowercase();
        let matches: Vec<&VersionRecord> = self
            .versions
            .iter()
            .filter(|v| v.digest.starts_with(&prefix))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(format!(
                "job `{}` never ran a version {prefix}; its versions: {}",
                self.name,
                self.versions
                    .iter()
                    .map(|v| super::jobs::short(&v.digest))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => Err(format!(
                "{prefix} names {} versions of job `{}`: give more characters",
                matches.len(),
                self.name
            )),
        }
    }
}

/// Checks a job name: `[a-z0-9][a-z0-9-_]*`, at most 64 characters (it is
/// a directory name and part of URLs).
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("a job name cannot be empty".into());
    };
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "job name `{name}` is {} characters long; at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(format!(
            "job name `{name}` must start with a lower-case letter or a digit"
        ));
    }
    if let Some(bad) =
        chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "job name `{name}` contains `{bad}`: use lower-case letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// Whether `digest` is a full SHA-256 in lower-case hex.
pub fn is_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The data directory's plugins and jobs.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

impl Registry {
    /// Opens (creating what is missing) the registry under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Registry, RegistryError> {
        for dir in [data_dir.join("plugins"), data_dir.join("jobs")] {
            fs::create_dir_all(&dir).map_err(|source| RegistryError::Io {
                what: "cannot create",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Registry {
            root: data_dir.to_path_buf(),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores a component under its digest (once: the same bytes again
    /// change nothing) and returns the digest.
    pub fn store_plugin(&self, bytes: &[u8]) -> Result<String, RegistryError> {
        let digest = hex::encode(Sha256::digest(bytes));
        let path = self.plugin_file(&digest);
        if !path.is_file() {
            write_atomically(&path, bytes)?;
        }
        Ok(digest)
    }

    /// The stored component with this digest.
    pub fn plugin(&self, digest: &str) -> Option<PathBuf> {
        if !is_digest(digest) {
            return None;
        }
        let path = self.plugin_file(digest);
        path.is_file().then_some(path)
    }

    fn plugin_file(&self, digest: &str) -> PathBuf {
        self.root.join("plugins").join(format!("{digest}.wasm"))
    }

    /// The digests of every stored component, sorted.
    pub fn plugins(&self) -> Result<Vec<String>, RegistryError> {
        let dir = self.root.join("plugins");
        let mut digests = Vec::new();
        for entry in read_dir(&dir)? {
            if let Some(digest) = entry.strip_suffix(".wasm")
                && is_digest(digest)
            {
                digests.push(digest.to_string());
            }
        }
        digests.sort();
        Ok(digests)
    }

    /// The directory of job `name` (its record, and its checkpoints by
    /// default).
    pub fn job_dir(&self, name: &str) -> PathBuf {
        self.root.join("jobs").join(name)
    }

    /// Writes a job's record (atomically).
    pub fn save_job(&self, record: &JobRecord) -> Result<(), RegistryError> {
        let dir = self.job_dir(&record.name);
        fs::create_dir_all(&dir).map_err(|source| RegistryError::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        let mut json = serde_json::to_vec_pretty(record).map_err(|e| RegistryError::Corrupt {
            path: dir.join("job.json"),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomically(&dir.join("job.json"), &json)
    }

    /// Removes a job's directory (a deploy that did not start).
    pub fn remove_job(&self, name: &str) -> Result<(), RegistryError> {
        let dir = self.job_dir(name);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RegistryError::Io {
                what: "cannot remove",
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every job's record, sorted by name; a directory without a readable
    /// record is an error naming its file.
    pub fn load_jobs(&self) -> Result<Vec<Result<JobRecord, RegistryError>>, RegistryError> {
        let mut names = read_dir(&self.root.join("jobs"))?;
        names.sort();
        Ok(names
            .into_iter()
            .filter(|name| validate_name(name).is_ok())
            .map(|name| self.load_job(&name))
            .collect())
    }

    fn load_job(&self, name: &str) -> Result<JobRecord, RegistryError> {
        let path = self.job_dir(name).join("job.json");
        let bytes = fs::read(&path).map_err(|source| RegistryError::Io {
            what: "cannot read",
            path: path.clone(),
            source,
        })?;
        let record: JobRecord =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if record.name != name {
            return Err(RegistryError::Corrupt {
                path,
                reason: format!("it names job `{}`", record.name),
            });
        }
        Ok(record)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<String>, RegistryError> {
    let io = |source| RegistryError::Io {
        what: "cannot list",
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        if let Some(name) = entry.map_err(io)?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Replaces `path` by `bytes` atomically and durably: a temporary file in
/// the same directory, fsync, rename, fsync of the directory. The file is
/// readable by its owner only (a job's record holds its `--env` values).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| RegistryError::Io { what, path, source }
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io("cannot create", &tmp))?;
    file.write_all(bytes).map_err(io("cannot write", &tmp))?;
    file.sync_all().map_err(io("cannot sync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io("cannot rename into place", path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> JobRecord {
        JobRecord {
            name: name.into(),
            spec: JobSpec::default(),
            current: "a".repeat(64),
            versions: vec![VersionRecord {
                digest: "a".repeat(64),
                first_ran_ms: 1,
                last_ran_ms: 1,
            }],
            should_run: true,
            failed: None,
            deployed_ms: 1,
        }
    }

    #[test]
    fn job_names_are_lower_case_letters_digits_dashes_underscores_up_to_64() {
        for good in ["wc", "0", "word-count_2", &"a".repeat(64)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-wc",
            "_wc",
            "Wc",
            "w c",
            "w/c",
            "..",
            "wç",
            &"a".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_job_record_reads_back_as_written_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let mut job = record("wc");
        job.spec.args.push(super::super::api::JobArg {
            key: "port".into(),
            value: "9999".into(),
        });
        job.spec
            .grants
            .env
            .push("GREETING=hello world".parse().unwrap());
        job.spec
            .grants
            .dirs
            .push("/srv/ref:/ref:ro".parse().unwrap());
        registry.save_job(&job).unwrap();
        job.switch_to(&"b".repeat(64), 5);
        registry.save_job(&job).unwrap();
        registry.save_job(&record("other")).unwrap();
        let loaded: Vec<JobRecord> = registry
            .load_jobs()
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(loaded, vec![record("other"), job.clone()]);
        let files: Vec<String> = read_dir(&registry.job_dir("wc")).unwrap();
        assert_eq!(files, ["job.json"]);
        // A write cut short (killed before its rename) leaves its temporary
        // file, never a torn record: the record read is the last complete one.
        fs::write(
            registry.job_dir("wc").join(".job.json.tmp-1"),
            b"{\"name\": \"w",
        )
        .unwrap();
        let again = registry.load_jobs().unwrap().remove(1).unwrap();
        assert_eq!(again, job);
        write_atomically(&registry.job_dir("wc").join("job.json"), b"{}").unwrap();
        assert!(registry.load_jobs().unwrap()[1].is_err());
    }

    #[test]
    fn a_torn_record_is_an_error_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        fs::create_dir_all(registry.job_dir("wc")).unwrap();
        fs::write(
            registry.job_dir("wc").join("job.json"),
            b"{\"name\": \"wc\"",
        )
        .unwrap();
        let loaded = registry.load_jobs().unwrap();
        let error = loaded[0].as_ref().unwrap_err().to_string();
        assert!(error.contains("wc/job.json"), "{error}");
    }

    #[test]
    fn plugins_are_stored_by_their_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let digest = registry.store_plugin(b"abc").unwrap();
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(registry.store_plugin(b"abc").unwrap(), digest);
        assert_eq!(fs::read(registry.plugin(&digest).unwrap()).unwrap(), b"abc");
        assert_eq!(registry.plugins().unwrap(), [digest]);
        assert!(registry.plugin(&"0".repeat(64)).is_none());
        assert!(registry.plugin("../token").is_none());
    }

    #[test]
    fn the_previous_version_is_the_other_that_ran_last() {
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let mut job = record("wc");
        assert!(job.previous_version().is_none());
        job.switch_to(&b, 10);
        assert_eq!(job.previous_version().unwrap().digest, a);
        job.switch_to(&c, 20);
        assert_eq!(job.previous_version().unwrap().digest, b);
        job.switch_to(&a, 30);
        assert_eq!(job.previous_version().unwrap().digest, c);
        assert_eq!(job.versions.len(), 3);
        assert_eq!(job.versions[0].first_ran_ms, 1);
        assert_eq!(job.version_by_prefix(&b[..12]).unwrap().digest, b);
        assert!(job.version_by_prefix("d").is_err());
    }
}
