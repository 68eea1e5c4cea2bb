//! The memory limit of an instance, and its accounting.
//!
//! [`Limits`] wraps wasmtime's `StoreLimits` (memory capped at
//! [`WasmConfig::memory_limit`](super::WasmConfig), a failed growth traps
//! instead of returning -1 to the guest) and records what a call needs to
//! know afterwards: whether the guest was stopped for asking too much (so the
//! trap is reported as [`TrapReason::MemoryLimit`](super::TrapReason)), and
//! how large its linear memory is (for recycling). The time limit is the
//! epoch deadline set per call in `instance`.

use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// The resource limiter of one instance's store.
pub(super) struct Limits {
    inner: StoreLimits,
    /// Bytes of linear memory of all the instance's memories.
    memory_bytes: usize,
    /// The size a memory growth was refused at, since the last [`Limits::reset`].
    refused_at: Option<usize>,
    /// The size asked for by the last memory growth.
    requested: usize,
}

impl Limits {
    pub(super) fn new(memory_limit: usize) -> Limits {
        Limits {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                // A table element costs the host a pointer: cap tables at the
                // same number of bytes as memories.
                .table_elements(memory_limit / std::mem::size_of::<usize>())
                .trap_on_grow_failure(true)
                .build(),
            memory_bytes: 0,
            refused_at: None,
            requested: 0,
        }
    }

    /// Forgets a refusal; called before each call.
    pub(super) fn reset(&mut self) {
        self.refused_at = None;
    }

    /// The size a memory growth was refused at during the last call.
    pub(super) fn refused_at(&self) -> Option<usize> {
        self.refused_at
    }

    /// Bytes of linear memory the instance has now (memories never shrink).
    pub(super) fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.requested = desired;
        let allowed = self.inner.memory_growing(current, desired, maximum);
        match allowed {
            // Growth can still fail after this (the OS refuses); with
            // `trap_on_grow_failure` the instance then traps and is dropped,
            // so its count no longer matters.
            Ok(true) => self.memory_bytes += desired.saturating_sub(current),
            _ => self.refused_at = Some(desired),
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused_at = Some(self.requested);
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// `1 GiB`, `512 MiB`, `1.5 GiB`, `4096 B`: a size for messages.
pub(super) fn format_bytes(bytes: usize) -> String {
    const UNITS: [(&str, usize); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{:.1} {unit}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes} B")
}

/// `60 s`, `1.5 s`, `250 ms`: a duration for messages.
pub(super) fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else if d.as_secs() > 0 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(format_bytes(1 << 30), "1 GiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(100), "100 B");
        assert_eq!(format_duration(Duration::from_secs(60)), "60 s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250 ms");
    }

    #[test]
    fn refused_growth_is_recorded_and_traps() {
        let mut limits = Limits::new(1 << 20);
        assert!(limits.memory_growing(0, 1 << 19, None).unwrap());
        assert_eq!(limits.memory_bytes(), 1 << 19);
        assert!(limits.memory_growing(1 << 19, 2 << 20, None).is_err());
        assert_eq!(limits.refused_at(), Some(2 << 20));
        limits.reset();
        assert_eq!(limits.refused_at(), None);
    }
}
