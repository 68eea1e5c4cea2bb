#!/usr/bin/env python3
"""Start-up figures per plugin language (entry point: bench/startup; see bench/README.md).

For each plugin (by default the network word count in Rust, Python and JavaScript):
its component's size, then `sluice run` twice with one fresh data directory, on a
loopback socket that sends nothing, for one batch:

1. first start: the host compiles the component (its log says how long) and caches it;
2. cached start: the host loads the compiled component from the cache.

For each start: the wall time from the process's start to the host's "job defined" log
line (the graph defined by two instances), and the host's peak RSS over the run. The
instance's linear memory after `define` is read from the host's log when it says it.

Python 3.11 standard library only; the helpers are bench.py's.
"""
from __future__ import annotations

import argparse
import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import bench
from bench import ROOT, log, sh, tree_rss_bytes

DEFAULT_PLUGINS = ["network-word-count", "network-word-count-py", "network-word-count-js"]


def idle_server() -> tuple[socket.socket, int]:
    """A listener that accepts connections and sends nothing."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return listener, listener.getsockname()[1]


def start(sluice: Path, wasm: Path, data: Path, port: int) -> dict:
    """One `sluice run` of one batch: seconds to "job defined", compile time, peak RSS."""
    argv = [str(sluice), "run", str(wasm), "--data-dir", str(data),
            "--arg", "host=127.0.0.1", "--arg", f"port={port}",
            "--batch-interval", "1s", "--max-batches", "1"]
    began = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    defined_at = None
    compiled = None
    peak = 0
    lines: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if defined_at is None and "job defined" in line:
            defined_at = time.monotonic() - began
        m = re.search(r"compiled plugin in ([0-9.]+)(ms|s)", line)
        if m:
            compiled = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    proc.wait()
    stop.set()
    sampler.join()
    if proc.returncode != 0 or defined_at is None:
        raise SystemExit(f"{wasm.name}: sluice exited {proc.returncode}:\n{''.join(lines[-20:])}")
    return {"defined_s": defined_at, "compiled_s": compiled, "peak_rss": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plugins", nargs="*", default=DEFAULT_PLUGINS,
                        help="plugin names (folders built by scripts/build-plugins)")
    parser.add_argument("--no-build", action="store_true", help="use what is built")
    args = parser.parse_args()

    if not args.no_build:
        sh(["cargo", "build", "--release", "-p", "sluice"], cwd=ROOT, check=True)
        sh([str(ROOT / "scripts" / "build-plugins"), *args.plugins], cwd=ROOT, check=True)
    tools = bench.Tools(target=bench.cargo_target_dir())
    listener, port = idle_server()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sluice-startup-") as tmp:
        for name in args.plugins:
            wasm = bench.plugin_path(name)
            data = Path(tmp) / name
            first = start(tools.sluice, wasm, data, port)
            cached = start(tools.sluice, wasm, data, port)
            cache_bytes = sum(f.stat().st_size for f in data.rglob("*.cwasm"))
            rows.append((name, wasm.stat().st_size, cache_bytes, first, cached))
            log(f"{name}: first start {first['defined_s']:.2f} s, cached {cached['defined_s']:.3f} s")
    listener.close()

    mib = 1 << 20
    print("| plugin | component | compiled (cache entry) | first start: compile | first start: to `job defined` | cached start: to `job defined` | peak RSS first / cached |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, size, cache_bytes, first, cached in rows:
        compiled = f"{first['compiled_s']:.2f} s" if first["compiled_s"] is not None else "?"
        print(f"| `{name}` | {size / 1e6:.1f} MB | {cache_bytes / 1e6:.1f} MB | {compiled} "
              f"| {first['defined_s']:.2f} s | {cached['defined_s'] * 1000:.0f} ms "
              f"| {first['peak_rss'] / mib:.0f} / {cached['peak_rss'] / mib:.0f} MiB |")


if __name__ == "__main__":
    main()
