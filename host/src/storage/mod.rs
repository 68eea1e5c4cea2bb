//! Locations: where Sluice reads and writes data it does not receive from a
//! source — outputs (`save_as_text_files`), reference datasets and
//! broadcast files — as a local path or an `object_store` URL (`s3://`,
//! `gs://`, `az://`, `file://`). [`open`] turns one into a store and a path;
//! [`read`] and [`version`] read an object whole and tell whether it changed.

use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

/// A location that cannot be used, or an object that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Not a usable path or URL.
    #[error("invalid location `{location}`: {reason}")]
    Location {
        /// The location as given.
        location: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The store refused a read.
    #[error("cannot read `{location}`: {source}")]
    Read {
        /// The location read.
        location: String,
        /// The store's error.
        source: object_store::Error,
    },
}

/// The store holding `location` and its path in that store: a URL goes to
/// the store its scheme names, anything else is a local path (made
/// absolute).
pub fn open(location: &str) -> Result<(Arc<dyn ObjectStore>, StorePath), StorageError> {
    let bad = |reason: String| StorageError::Location {
        location: location.to_string(),
        reason,
    };
    if location.contains("://") {
        let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
        let (store, path) = object_store::parse_url(&url).map_err(|e| bad(e.to_string()))?;
        return Ok((Arc::from(store), path));
    }
    let absolute = std::path::absolute(location).map_err(|e| bad(e.to_string()))?;
    let path = StorePath::from_absolute_path(&absolute).map_err(|e| bad(e.to_string()))?;
    Ok((Arc::new(object_store::local::LocalFileSystem::new()), path))
}

/// What identifies one content of an object: when a later [`version`]
/// differs, the object changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    last_modified: i64,
    size: u64,
    e_tag: Option<String>,
}

impl Version {
    fn of(meta: &object_store::ObjectMeta) -> Version {
        Version {
            last_modified: meta
                .last_modified
                .timestamp_nanos_opt()
                .unwrap_or(meta.last_modified.timestamp()),
            size: meta.size,
            e_tag: meta.e_tag.clone(),
        }
    }
}

/// The whole object at `location` and its version, read on `runtime`.
pub fn read(
    runtime: &tokio::runtime::Handle,
    location: &str,
) -> Result<(bytes::Bytes, Version), StorageError> {
    let (store, path) = open(location)?;
    let failed = |source| StorageError::Read {
        location: location.to_string(),
        source,
    };
    runtime.block_on(async {
        let result = store.get(&path).await.map_err(failed)?;
        let version = Version::of(&result.meta);
        let bytes = result.bytes().await.map_err(failed)?;
        Ok((bytes, version))
    })
}

/// The version of the object at `location` now (one metadata request).
pub fn version(runtime: &tokio::runtime::Handle, location: &str) -> Result<Version, StorageError> {
    let (store, path) = open(location)?;
    runtime.block_on(async {
        store
            .head(&path)
            .await
            .map(|meta| Version::of(&meta))
            .map_err(|source| StorageError::Read {
                location: location.to_string(),
                source,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_has_a_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ref.tsv");
        std::fs::write(&file, "a\t1\n").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let location = file.to_str().unwrap();
        let (bytes, first) = read(runtime.handle(), location).unwrap();
        assert_eq!(&bytes[..], b"a\t1\n");
        assert_eq!(version(runtime.handle(), location).unwrap(), first);
        // Another content, written into place by a rename as a user swaps
        // reference data.
        let next = dir.path().join("next.tsv");
        std::fs::write(&next, "a\t1\nb\t22\n").unwrap();
        std::fs::rename(&next, &file).unwrap();
        assert_ne!(version(runtime.handle(), location).unwrap(), first);
        let missing = dir.path().join("missing.tsv");
        let e = read(runtime.handle(), missing.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("missing.tsv"), "{e}");
    }
}
