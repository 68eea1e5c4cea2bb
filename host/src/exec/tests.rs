//! Executor tests: early chains and batches over a real plugin.
