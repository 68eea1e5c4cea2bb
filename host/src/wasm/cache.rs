//! The on-disk cache of compiled components: compiling a Python or JavaScript
//! component takes seconds, loading it precompiled takes milliseconds.
//!
//! An entry is `<cache_dir>/<hex>.cwasm`, where `<hex>` is the SHA-256 of the
//! plugin's bytes and of the engine's precompile-compatibility hash (the
//! wasmtime version, target and every setting that changes the code), so a
//! changed plugin or an upgraded host never reads a stale entry. Entries are
//! written to a temporary file and renamed into place, so a reader sees a
//! whole file or none. A cache that cannot be read or written only costs a
//! compilation: it is logged, never an error.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bumped when the layout of the cache changes.
const CACHE_FORMAT: &[u8] = b"sluice-cwasm-1";

/// Compiles `bytes` (whose SHA-256 is `digest`), going through the cache in
/// `cache_dir` when there is one.
pub(super) fn compile(
    engine: &Engine,
    bytes: &[u8],
    digest: &[u8; 32],
    cache_dir: Option<&Path>,
    plugin: &Path,
) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::from_binary(engine, bytes);
    };
    let entry = entry_path(engine, digest, dir);
    if entry.is_file() {
        // SAFETY: `deserialize_file` maps the file and runs the machine code
        // in it without verifying it, so the file must be one that wasmtime
        // produced for a compatible engine. It is: entries are named by the
        // hash of the plugin and of this engine's compatibility settings, and
        // only `store` below writes them, with `Component::serialize` from an
        // engine with those settings, through a temporary file renamed into
        // place so that a half-written entry is never visible (wasmtime also
        // checks the header and the engine settings recorded in the file, and
        // fails rather than load a mismatched one). A rename replaces the
        // inode, so a file mapped here is never modified while in use. The
        // cache directory must be writable only by the user running the host.
        match unsafe { Component::deserialize_file(engine, &entry) } {
            Ok(component) => {
                tracing::info!(
                    plugin = %plugin.display(),
                    "loaded plugin from cache entry {}",
                    entry.display()
                );
                return Ok(component);
            }
            Err(e) => tracing::warn!(
                plugin = %plugin.display(),
                "ignoring unusable cache entry {}: {e:#}",
                entry.display()
            ),
        }
    }
    let started = std::time::Instant::now();
    let component = Component::from_binary(engine, bytes)?;
    tracing::info!(plugin = %plugin.display(), "compiled plugin in {:.1?}", started.elapsed());
    match component.serialize() {
        Ok(serialized) => match store(dir, &entry, &serialized) {
            Ok(()) => {
                tracing::info!(
                    plugin = %plugin.display(),
                    "wrote cache entry {}",
                    entry.display()
                );
                // Run from the entry, as every later start does: the code is
                // then a mapped file, whose function names profilers (`perf`)
                // read, and the same in the first run as in the next.
                drop(serialized);
                // SAFETY: as above; `store` has just written this entry.
                if let Ok(mapped) = unsafe { Component::deserialize_file(engine, &entry) } {
                    return Ok(mapped);
                }
            }
            Err(e) => tracing::warn!(
                plugin = %plugin.display(),
                "cannot write the compiled plugin to the cache {}: {e}",
                entry.display()
            ),
        },
        Err(e) => {
            tracing::warn!(plugin = %plugin.display(), "cannot serialize the compiled plugin: {e:#}")
        }
    }
    Ok(component)
}

/// `<dir>/<hex>.cwasm` for a plugin digest under this engine.
pub(super) fn entry_path(engine: &Engine, digest: &[u8; 32], dir: &Path) -> PathBuf {
    let mut key = Sha256::new();
    key.update(CACHE_FORMAT);
    key.update(digest);
    engine
        .precompile_compatibility_hash()
        .hash(&mut ShaHasher(&mut key));
    dir.join(format!("{}.cwasm", hex::encode(key.finalize())))
}

/// Writes `bytes` to `entry` atomically: a temporary file in the same
/// directory, synced, then renamed.
fn store(dir: &Path, entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        entry
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("entry"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, entry)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Feeds a [`Hash`] value into SHA-256 (wasmtime gives its compatibility
/// settings as a `Hash`).
struct ShaHasher<'a>(&'a mut Sha256);

impl Hasher for ShaHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Not used: the key is read from the Sha256 itself.
        0
    }
}
