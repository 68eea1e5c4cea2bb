//! `save_as_text_files`: Spark's `saveAsTextFiles(prefix, suffix)`, one
//! directory `<prefix>-<batch ms>[.<suffix>]` per batch with one
//! `part-NNNNN` file per partition and a `_SUCCESS` marker, **idempotent**:
//! a batch that runs again (after a restart from a checkpoint, with the same
//! input and partitions) leaves exactly its new parts and `_SUCCESS` in the
//! same directory, whatever an earlier attempt left there (a complete
//! directory, or a partial one with more or fewer parts).
//!
//! - A local path (or a `file://` URL): the whole batch is written and
//!   fsynced into the hidden sibling `.<name>.tmp` (readers of `<prefix>-*`
//!   do not see it), then renamed into place; when the directory exists, the
//!   two are swapped atomically (`renameat2(RENAME_EXCHANGE)` on Linux; on
//!   other platforms, or a file system without it, the old one is renamed
//!   aside first, so a reader may find the directory missing for a moment),
//!   and the old one is deleted. A reader sees the old directory or the new
//!   one, never a mix. The staging name is fixed, so a leftover of a crash
//!   is found and deleted by the next attempt at the same batch without
//!   listing the parent directory (a crash leaves one only while its batch
//!   runs, and a batch that did not complete runs again at recovery).
//! - An object store URL (`s3://`, `gs://`, `az://`): an earlier attempt's
//!   `_SUCCESS` is deleted first, then the parts are put (each put is
//!   atomic), then every other object under the directory is deleted, then
//!   `_SUCCESS` is put. A reader must wait for `_SUCCESS`, as Spark's and
//!   Hadoop's readers do: without it, the directory may be incomplete.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{SinkError, Sinks, open_location};
use crate::batching::BatchTime;

/// The marker of a complete batch directory.
const SUCCESS: &str = "_SUCCESS";

impl Sinks {
    /// Spark's `saveAsTextFiles(prefix, suffix)`: the directory
    /// `<prefix>-<batch ms>[.<suffix>]` with one `part-NNNNN` file per
    /// partition (the lines [`super::format_lines`] made), then `_SUCCESS`.
    /// A re-run batch replaces the directory whole, with the same content
    /// (see the module's docs for how, per kind of location).
    pub fn save_as_text_files(
        &self,
        time: BatchTime,
        prefix: &str,
        suffix: Option<&str>,
        parts: Vec<Vec<u8>>,
    ) -> Result<(), SinkError> {
        let location = match suffix {
            Some(s) if !s.is_empty() => format!("{prefix}-{}.{s}", time.as_millis()),
            _ => format!("{prefix}-{}", time.as_millis()),
        };
        match local_path(&location)? {
            Some(target) => save_local(&target, &parts),
            None => {
                let (store, dir) = open_location(&location, &self.options)?;
                self.runtime.block_on(save_to_store(store, dir, parts))
            }
        }
    }
}

/// The local path of `location`: itself made absolute, or a `file://` URL's
/// path; `None` for another URL.
fn local_path(location: &str) -> Result<Option<PathBuf>, SinkError> {
    let bad = |reason: String| SinkError::Location {
        location: location.to_string(),
        reason,
    };
    if location.starts_with("file://") {
        let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
        return url
            .to_file_path()
            .map(Some)
            .map_err(|()| bad("not a local file path".into()));
    }
    if location.contains("://") {
        return Ok(None);
    }
    std::path::absolute(location)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

fn file_error(action: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> SinkError {
    let action = action.into();
    let path = path.display().to_string();
    move |source| SinkError::File {
        action,
        path,
        source,
    }
}

/// Writes the batch directory `target` through a hidden staging sibling and
/// an atomic swap (see the module's docs).
fn save_local(target: &Path, parts: &[Vec<u8>]) -> Result<(), SinkError> {
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(SinkError::Location {
            location: target.display().to_string(),
            reason: "not a directory name".into(),
        });
    };
    let name = name.to_string_lossy();
    fs::create_dir_all(parent).map_err(file_error("create directory", parent))?;
    let staging = parent.join(format!(".{name}.tmp"));
    let aside = parent.join(format!(".{name}.old"));
    // A crashed attempt may have left either behind.
    remove_if_present(&staging)?;
    remove_if_present(&aside)?;
    fs::create_dir(&staging).map_err(file_error("create directory", &staging))?;
    for (i, bytes) in parts.iter().enumerate() {
        write_synced(&staging.join(format!("part-{i:05}")), bytes)?;
    }
    write_synced(&staging.join(SUCCESS), &[])?;
    sync_dir(&staging)?;
    match fs::symlink_metadata(target) {
        Ok(_) => replace(&staging, target, &aside)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::rename(&staging, target)
            .map_err(file_error(
                format!("rename {} to", staging.display()),
                target,
            ))?,
        Err(e) => return Err(file_error("inspect", target)(e)),
    }
    sync_dir(parent)
}

/// Puts the complete directory `staging` in the place of the existing
/// `target`, and deletes the old one.
fn replace(staging: &Path, target: &Path, aside: &Path) -> Result<(), SinkError> {
    if exchange(staging, target)? {
        // `staging` now holds the old directory.
        return remove_if_present(staging);
    }
    fs::rename(target, aside)
        .map_err(file_error(format!("rename {} to", target.display()), aside))?;
    fs::rename(staging, target).map_err(file_error(
        format!("rename {} to", staging.display()),
        target,
    ))?;
    remove_if_present(aside)
}

/// Swaps two paths atomically; `false` when this platform or file system
/// cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> Result<bool, SinkError> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| SinkError::Location {
            location: p.display().to_string(),
            reason: "a path with a NUL byte".into(),
        })
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated strings that outlive the call;
    // renameat2(2) reads them and touches no other memory of ours.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(false),
        _ => Err(file_error(format!("exchange {} with", a.display()), b)(
            error,
        )),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> Result<bool, SinkError> {
    Ok(false)
}

fn remove_if_present(dir: &Path) -> Result<(), SinkError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(file_error("delete", dir)(e)),
        _ => Ok(()),
    }
}

/// Writes a file and flushes it to the disk, so that a batch that a later
/// checkpoint counts as done survives a power loss.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let mut file = fs::File::create(path).map_err(file_error("create", path))?;
    file.write_all(bytes).map_err(file_error("write", path))?;
    file.sync_all().map_err(file_error("flush", path))
}

/// Flushes a directory's entries (the names written or renamed in it).
fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_error("flush directory", dir))?;
    let _ = dir;
    Ok(())
}

/// Writes the batch directory `dir` of an object store: the old marker
/// goes, the parts are put, whatever else is under `dir` goes, the marker
/// is put.
async fn save_to_store(
    store: Arc<dyn ObjectStore>,
    dir: StorePath,
    parts: Vec<Vec<u8>>,
) -> Result<(), SinkError> {
    let store_error = |action: &'static str, path: &StorePath| {
        let path = path.to_string();
        move |source| SinkError::Store {
            action,
            path,
            source,
        }
    };
    let success = dir.clone().join(SUCCESS);
    match store.delete(&success).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(store_error("delete", &success)(e)),
    }
    let names: Vec<StorePath> = (0..parts.len())
        .map(|i| dir.clone().join(format!("part-{i:05}")))
        .collect();
    let writes = parts.into_iter().zip(&names).map(|(bytes, name)| {
        let store = Arc::clone(&store);
        async move {
            store
                .put(name, PutPayload::from(bytes))
                .await
                .map_err(store_error("write", name))
        }
    });
    futures::future::try_join_all(writes).await?;
    let keep: HashSet<&StorePath> = names.iter().collect();
    let listed: Vec<_> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(store_error("list", &dir))?;
    for meta in listed {
        if keep.contains(&meta.location) {
            continue;
        }
        match store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error("delete", &meta.location)(e)),
        }
    }
    store
        .put(&success, PutPayload::default())
        .await
        .map_err(store_error("write", &success))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Codec, Rows};
    use crate::sinks::format_lines;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn parts(partitions: &[&[&str]]) -> Vec<Vec<u8>> {
        partitions
            .iter()
            .map(|p| format_lines(&Codec::String, &p.iter().collect::<Rows>()).unwrap())
            .collect()
    }

    /// Every entry of `dir` with its content, sorted.
    fn contents(dir: &Path) -> Vec<(String, String)> {
        let mut entries: Vec<(String, String)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        entries.sort();
        entries
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn owned(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn saved_batches_have_parts_and_a_success_marker() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let sinks = Sinks::new(runtime.handle().clone());
        let prefix = dir.path().join("out").to_str().unwrap().to_string();
        sinks
            .save_as_text_files(
                BatchTime(2000),
                &prefix,
                Some("txt"),
                parts(&[&["a", "b"], &[]]),
            )
            .unwrap();
        assert_eq!(
            contents(&dir.path().join("out-2000.txt")),
            owned(&[
                ("_SUCCESS", ""),
                ("part-00000", "a\nb\n"),
                ("part-00001", "")
            ])
        );
        assert_eq!(
            names(dir.path()),
            ["out-2000.txt"],
            "no staging directory left"
        );
    }

    #[test]
    fn a_rerun_batch_with_fewer_partitions_leaves_exactly_the_new_parts() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let sinks = Sinks::new(runtime.handle().clone());
        let prefix = dir.path().join("out").to_str().unwrap().to_string();
        sinks
            .save_as_text_files(
                BatchTime(1000),
                &prefix,
                None,
                parts(&[&["a"], &["b"], &["c"]]),
            )
            .unwrap();
        sinks
            .save_as_text_files(BatchTime(1000), &prefix, None, parts(&[&["x", "y"]]))
            .unwrap();
        assert_eq!(
            contents(&dir.path().join("out-1000")),
            owned(&[("_SUCCESS", ""), ("part-00000", "x\ny\n")])
        );
        // The same batch again: the same content, still once.
        sinks
            .save_as_text_files(BatchTime(1000), &prefix, None, parts(&[&["x", "y"]]))
            .unwrap();
        assert_eq!(
            contents(&dir.path().join("out-1000")),
            owned(&[("_SUCCESS", ""), ("part-00000", "x\ny\n")])
        );
        assert_eq!(names(dir.path()), ["out-1000"]);
    }

    #[test]
    fn a_partial_directory_of_a_crashed_attempt_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let sinks = Sinks::new(runtime.handle().clone());
        // What an older version, writing in place, left at a crash: two
        // parts of five, a temporary part, no marker.
        let batch = dir.path().join("out-3000");
        fs::create_dir_all(&batch).unwrap();
        fs::write(batch.join("part-00000"), "old\n").unwrap();
        fs::write(batch.join("part-00004"), "old\n").unwrap();
        fs::write(batch.join("_temporary-part-00002"), "ol").unwrap();
        let prefix = dir.path().join("out").to_str().unwrap().to_string();
        sinks
            .save_as_text_files(BatchTime(3000), &prefix, None, parts(&[&["new"], &[]]))
            .unwrap();
        assert_eq!(
            contents(&batch),
            owned(&[
                ("_SUCCESS", ""),
                ("part-00000", "new\n"),
                ("part-00001", "")
            ])
        );
    }

    #[test]
    fn a_leftover_staging_directory_from_a_crash_does_not_break_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let sinks = Sinks::new(runtime.handle().clone());
        // A crash while staging (partial parts), and one between the swap
        // and the delete of the old directory on the fallback path.
        let staging = dir.path().join(".out-4000.tmp");
        fs::create_dir_all(staging.join("nested")).unwrap();
        fs::write(staging.join("part-00007"), "stale\n").unwrap();
        let aside = dir.path().join(".out-4000.old");
        fs::create_dir_all(&aside).unwrap();
        fs::write(aside.join("part-00000"), "stale\n").unwrap();
        let prefix = dir.path().join("out").to_str().unwrap().to_string();
        sinks
            .save_as_text_files(BatchTime(4000), &prefix, None, parts(&[&["fresh"]]))
            .unwrap();
        assert_eq!(
            contents(&dir.path().join("out-4000")),
            owned(&[("_SUCCESS", ""), ("part-00000", "fresh\n")])
        );
        assert_eq!(names(dir.path()), ["out-4000"], "the leftovers are gone");
    }

    #[test]
    fn a_rerun_batch_on_an_object_store_leaves_exactly_the_new_parts() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let root = dir.path().to_str().unwrap().to_string();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap());
        let batch = StorePath::from("out-5000");
        runtime
            .block_on(save_to_store(
                Arc::clone(&store),
                batch.clone(),
                parts(&[&["a"], &["b"], &["c"]]),
            ))
            .unwrap();
        runtime
            .block_on(save_to_store(Arc::clone(&store), batch, parts(&[&["z"]])))
            .unwrap();
        assert_eq!(
            contents(&dir.path().join("out-5000")),
            owned(&[("_SUCCESS", ""), ("part-00000", "z\n")])
        );
    }

    #[test]
    fn a_file_url_is_written_like_a_local_path() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let sinks = Sinks::new(runtime.handle().clone());
        let prefix = format!("file://{}/out", dir.path().display());
        sinks
            .save_as_text_files(BatchTime(6000), &prefix, None, parts(&[&["a"], &["b"]]))
            .unwrap();
        sinks
            .save_as_text_files(BatchTime(6000), &prefix, None, parts(&[&["c"]]))
            .unwrap();
        assert_eq!(
            contents(&dir.path().join("out-6000")),
            owned(&[("_SUCCESS", ""), ("part-00000", "c\n")])
        );
    }

    #[test]
    fn exchange_swaps_two_directories_or_leaves_both_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        fs::write(a.join("from-a"), "").unwrap();
        fs::write(b.join("from-b"), "").unwrap();
        let swapped = exchange(&a, &b).unwrap();
        let (in_a, in_b) = if swapped {
            ("from-b", "from-a")
        } else {
            ("from-a", "from-b")
        };
        assert_eq!(names(&a), [in_a]);
        assert_eq!(names(&b), [in_b]);
        #[cfg(target_os = "linux")]
        eprintln!("renameat2(RENAME_EXCHANGE) supported here: {swapped}");
    }
}
