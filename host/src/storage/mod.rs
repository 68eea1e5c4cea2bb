//! Locations: where Sluice reads and writes data it does not receive from a
//! source — checkpoints, outputs (`save_as_text_files`), reference datasets
//! and broadcast files — as a local path or an `object_store` URL (`s3://`,
//! `gs://`, `az://`, `file://`).
//!
//! [`open`] turns one into a store and a path, configured as `object_store`
//! users expect: a cloud store's builder starts `from_env()` (the `AWS_*`,
//! `GOOGLE_*`, `AZURE_*` variables), then takes the URL, then each
//! [`StorageOptions`] pair (`--storage-option KEY=VALUE`, the keys of
//! `AmazonS3ConfigKey`, `GoogleConfigKey`, `AzureConfigKey`, e.g.
//! `aws_endpoint=http://127.0.0.1:9000`): options win over the
//! environment. A plain path or a `file://` URL is the local file system,
//! which takes no options. [`open_dir`] is the same for a location Sluice
//! owns as a whole (checkpoints): a local one is confined to its directory,
//! written with `fsync`, and its emptied directories are removed.
//! [`read`] and [`version`] read an object whole and tell whether it changed.

use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme};

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
    /// A `--storage-option` the location's store does not know.
    #[error(
        "invalid location `{location}`: `{key}` is not a {scheme} storage option (see object_store's {keys})"
    )]
    UnknownOption {
        /// The location opened.
        location: String,
        /// The store kind (`s3`, `gs`, `az`).
        scheme: &'static str,
        /// The key as given.
        key: String,
        /// The `object_store` type listing the keys that exist.
        keys: &'static str,
    },
    /// A `--storage-option` that is not `KEY=VALUE`.
    #[error("invalid storage option `{option}`: expected KEY=VALUE")]
    Option {
        /// The option as given.
        option: String,
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

/// Configuration applied to every cloud store a job opens (checkpoints,
/// outputs, datasets, broadcast files): `KEY=VALUE` pairs, in order, as
/// `--storage-option` gives them. Keys are matched without regard to case;
/// a key the location's store does not know is an error when it is opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageOptions {
    pairs: Vec<(String, String)>,
}

impl StorageOptions {
    /// No options: stores are configured from the environment alone.
    pub fn new() -> StorageOptions {
        StorageOptions::default()
    }

    /// Options from `KEY=VALUE` strings (the value may hold `=`).
    pub fn parse<S: AsRef<str>>(
        options: impl IntoIterator<Item = S>,
    ) -> Result<StorageOptions, StorageError> {
        let mut parsed = StorageOptions::new();
        for option in options {
            let option = option.as_ref();
            match option.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    parsed = parsed.with(key.trim(), value);
                }
                _ => {
                    return Err(StorageError::Option {
                        option: option.to_string(),
                    });
                }
            }
        }
        Ok(parsed)
    }

    /// These options and `key` = `value` (a later pair wins over an earlier
    /// one of the same key).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> StorageOptions {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when there is no option.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Builds a cloud store: `from_env()`, the URL, then every option, each key
/// parsed by the builder's config key type (lowercased, as
/// `object_store::parse_url_opts` does).
macro_rules! cloud_store {
    ($builder:ty, $key:ty, $scheme:literal, $location:expr, $url:expr, $options:expr) => {{
        let mut builder = <$builder>::from_env().with_url($url.as_str());
        for (key, value) in $options.iter() {
            let parsed: $key =
                key.to_ascii_lowercase()
                    .parse()
                    .map_err(|_| StorageError::UnknownOption {
                        location: $location.to_string(),
                        scheme: $scheme,
                        key: key.to_string(),
                        keys: stringify!($key),
                    })?;
            builder = builder.with_config(parsed, value);
        }
        Arc::new(builder.build().map_err(|e| StorageError::Location {
            location: $location.to_string(),
            reason: e.to_string(),
        })?) as Arc<dyn ObjectStore>
    }};
}

/// Where a location lives.
enum Parsed {
    /// A local directory or file, absolute.
    Local(std::path::PathBuf),
    /// A cloud store and the path in it.
    Cloud(Arc<dyn ObjectStore>, StorePath),
}

fn parse(location: &str, options: &StorageOptions) -> Result<Parsed, StorageError> {
    let bad = |reason: String| StorageError::Location {
        location: location.to_string(),
        reason,
    };
    if !location.contains("://") {
        if location.is_empty() {
            return Err(bad("empty path".to_string()));
        }
        return std::path::absolute(location)
            .map(Parsed::Local)
            .map_err(|e| bad(e.to_string()));
    }
    let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
    let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|_| {
        bad("not a local path nor an s3://, gs://, az:// or file:// URL".to_string())
    })?;
    let store = match scheme {
        ObjectStoreScheme::Local => {
            let path = url
                .to_file_path()
                .map_err(|()| bad("not a local file URL".to_string()))?;
            return Ok(Parsed::Local(path));
        }
        ObjectStoreScheme::AmazonS3 => cloud_store!(
            object_store::aws::AmazonS3Builder,
            object_store::aws::AmazonS3ConfigKey,
            "s3",
            location,
            url,
            options
        ),
        ObjectStoreScheme::GoogleCloudStorage => cloud_store!(
            object_store::gcp::GoogleCloudStorageBuilder,
            object_store::gcp::GoogleConfigKey,
            "gs",
            location,
            url,
            options
        ),
        ObjectStoreScheme::MicrosoftAzure => cloud_store!(
            object_store::azure::MicrosoftAzureBuilder,
            object_store::azure::AzureConfigKey,
            "az",
            location,
            url,
            options
        ),
        _ => {
            return Err(bad(
                "not a local path nor an s3://, gs://, az:// or file:// URL".to_string(),
            ));
        }
    };
    Ok(Parsed::Cloud(store, path))
}

/// The store holding `location` and its path in that store: a URL goes to
/// the store its scheme names, configured by the environment and `options`
/// (see the module's documentation); anything else is a local path (made
/// absolute).
pub fn open(
    location: &str,
    options: &StorageOptions,
) -> Result<(Arc<dyn ObjectStore>, StorePath), StorageError> {
    match parse(location, options)? {
        Parsed::Cloud(store, path) => Ok((store, path)),
        Parsed::Local(absolute) => {
            let path =
                StorePath::from_absolute_path(&absolute).map_err(|e| StorageError::Location {
                    location: location.to_string(),
                    reason: e.to_string(),
                })?;
            Ok((Arc::new(object_store::local::LocalFileSystem::new()), path))
        }
    }
}

/// The absolute local path of `location` when it is a plain path or a
/// `file://` URL; `None` for a cloud URL or an invalid location.
pub fn local_path(location: &str) -> Option<std::path::PathBuf> {
    if location.contains("://") && !location.starts_with("file://") {
        return None;
    }
    match parse(location, &StorageOptions::new()) {
        Ok(Parsed::Local(path)) => Some(path),
        _ => None,
    }
}

/// Like [`open`], for a location Sluice owns as a whole (a checkpoint
/// location): a local one is created if missing and the store is confined to
/// it (its path is the empty path), writes `fsync` the file and its
/// directory before they return (as a cloud store's writes are durable once
/// they return), and a delete removes the directories it empties, up to the
/// location itself.
pub fn open_dir(
    location: &str,
    options: &StorageOptions,
) -> Result<(Arc<dyn ObjectStore>, StorePath), StorageError> {
    match parse(location, options)? {
        Parsed::Cloud(store, path) => Ok((store, path)),
        Parsed::Local(dir) => {
            let bad = |e: String| StorageError::Location {
                location: location.to_string(),
                reason: e,
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| bad(e.to_string()))?
                .with_fsync(true)
                .with_automatic_cleanup(true);
            Ok((Arc::new(store), StorePath::default()))
        }
    }
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
    options: &StorageOptions,
) -> Result<(bytes::Bytes, Version), StorageError> {
    let (store, path) = open(location, options)?;
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
pub fn version(
    runtime: &tokio::runtime::Handle,
    location: &str,
    options: &StorageOptions,
) -> Result<Version, StorageError> {
    let (store, path) = open(location, options)?;
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
        let none = StorageOptions::default();
        let (bytes, first) = read(runtime.handle(), location, &none).unwrap();
        assert_eq!(&bytes[..], b"a\t1\n");
        assert_eq!(version(runtime.handle(), location, &none).unwrap(), first);
        // Another content, written into place by a rename as a user swaps
        // reference data.
        let next = dir.path().join("next.tsv");
        std::fs::write(&next, "a\t1\nb\t22\n").unwrap();
        std::fs::rename(&next, &file).unwrap();
        assert_ne!(version(runtime.handle(), location, &none).unwrap(), first);
        let missing = dir.path().join("missing.tsv");
        let e = read(runtime.handle(), missing.to_str().unwrap(), &none).unwrap_err();
        assert!(e.to_string().contains("missing.tsv"), "{e}");
    }

    #[test]
    fn options_are_key_value_pairs_and_the_value_may_hold_equals_signs() {
        let options =
            StorageOptions::parse(["aws_endpoint=http://h:1/?a=b", " region =x"]).unwrap();
        assert_eq!(
            options.iter().collect::<Vec<_>>(),
            [("aws_endpoint", "http://h:1/?a=b"), ("region", "x")]
        );
        for bad in ["novalue", "=value"] {
            let e = StorageOptions::parse([bad]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid storage option `{bad}`: expected KEY=VALUE")
            );
        }
    }

    #[test]
    fn a_cloud_url_takes_its_options_and_an_unknown_key_is_named_with_its_scheme() {
        let options = StorageOptions::new()
            .with("AWS_ENDPOINT", "http://127.0.0.1:1")
            .with("aws_allow_http", "true")
            .with("aws_region", "us-east-1");
        let (_, path) = open("s3://bucket/ck/job-1", &options).unwrap();
        assert_eq!(path.as_ref(), "ck/job-1");
        let (_, path) = open("gs://bucket/a/b", &StorageOptions::new()).unwrap();
        assert_eq!(path.as_ref(), "a/b");
        let (_, path) = open(
            "az://container/c",
            &StorageOptions::new().with("azure_storage_account_name", "acct"),
        )
        .unwrap();
        assert_eq!(path.as_ref(), "c");
        let e = open("s3://bucket/x", &options.clone().with("aws_endpiont", "y")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid location `s3://bucket/x`: `aws_endpiont` is not a s3 storage option \
             (see object_store's object_store::aws::AmazonS3ConfigKey)"
        );
        let e = open("gs://bucket/x", &options).unwrap_err();
        assert!(
            e.to_string()
                .contains("`AWS_ENDPOINT` is not a gs storage option"),
            "{e}"
        );
    }

    #[test]
    fn local_paths_and_file_urls_are_the_local_file_system_and_other_urls_are_refused() {
        let (_, path) = open("/tmp/sluice/out", &StorageOptions::new()).unwrap();
        assert_eq!(path.as_ref(), "tmp/sluice/out");
        let (_, path) = open("file:///tmp/sluice/out", &StorageOptions::new()).unwrap();
        assert_eq!(path.as_ref(), "tmp/sluice/out");
        for url in ["http://example.com/x", "ftp://host/x", "memory:///x"] {
            let e = open(url, &StorageOptions::new()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "invalid location `{url}`: not a local path nor an s3://, gs://, az:// or file:// URL"
                )
            );
        }
    }

    #[test]
    fn a_local_directory_opened_whole_is_created_and_confined() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("ck");
        let (store, root) = open_dir(location.to_str().unwrap(), &StorageOptions::new()).unwrap();
        assert!(location.is_dir());
        assert_eq!(root.as_ref(), "");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let object = StorePath::from("a/b.txt");
        runtime
            .block_on(store.put(&object, bytes::Bytes::from_static(b"x").into()))
            .unwrap();
        assert_eq!(std::fs::read(location.join("a/b.txt")).unwrap(), b"x");
        runtime.block_on(store.delete(&object)).unwrap();
        assert!(
            !location.join("a").exists(),
            "the emptied directory is removed"
        );
        assert!(location.is_dir(), "the location itself stays");
    }
}
