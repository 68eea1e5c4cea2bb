#!/usr/bin/env python3
"""The host's own figures (entry point: bench/serve; see bench/README.md).

1. Deploy: the time `sluice deploy` takes (it returns once the job runs) and the time
   from the deploy to the job's first batch, for `--jobs` small jobs (network word
   counts on idle sockets, 1 s batches): the first deploy compiles the component, the
   others find it in the host's cache.
2. Idle footprint: the resident memory of `sluice serve` before any job, and with the
   `--jobs` jobs running empty batches for 10 s.
3. Upgrade pause: a stateful word count reads a corpus served at `--rate` bytes/s and is
   upgraded `--upgrades` times, back and forth between two versions (`upgrade-v1`,
   `upgrade-lower`). For each: the switch (the time the batch loop was held, from
   `sluice upgrade --json`) and the extra delay of the first batch after it (its total
   delay minus the median total delay of the job's other batches, from the status).

Python 3.11 standard library only; the helpers are bench.py's.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench
from bench import ROOT, log, sh, tree_rss_bytes

PLUGINS = ["network-word-count", "upgrade-v1", "upgrade-lower"]


def build(target: Path) -> None:
    sh(["cargo", "build", "--release", "-p", "sluice", "-p", "sluice-bench", "-p", "sluice-corpus"],
       cwd=ROOT, check=True)
    sh([str(ROOT / "scripts" / "build-plugins"), *PLUGINS], cwd=ROOT, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def idle_listener() -> int:
    """A loopback port that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]


class Host:
    """`sluice serve` on a free port with its own data directory."""

    def __init__(self, sluice: Path, data: Path):
        self.sluice = sluice
        self.port = free_port()
        self.process = subprocess.Popen(
            [str(sluice), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(data)],
            stdout=subprocess.DEVNULL, stderr=open(data.parent / "serve.log", "wb"))
        token = data / "token"
        deadline = time.time() + 30
        while not token.exists() or not token.read_text().strip():
            if time.time() > deadline or self.process.poll() is not None:
                sys.exit(f"sluice serve did not start; see {data.parent / 'serve.log'}")
            time.sleep(0.05)
        self.env = dict(os.environ, SLUICE_SERVER=f"http://127.0.0.1:{self.port}",
                        SLUICE_TOKEN=token.read_text().strip())
        while self.client("jobs").returncode != 0:
            if time.time() > deadline:
                sys.exit("sluice serve does not answer")
            time.sleep(0.05)

    def client(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.sluice), *args], env=self.env, capture_output=True, text=True)

    def json(self, *args: str):
        done = self.client(*args, "--json")
        if done.returncode != 0:
            sys.exit(f"sluice {' '.join(args)}: exit {done.returncode}: {done.stderr}")
        return json.loads(done.stdout)

    def batches(self, name: str) -> list[dict]:
        live = self.json("status", name).get("live") or {}
        return live.get("last_batches", [])

    def rss(self) -> int:
        return tree_rss_bytes(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def deploys(host: Host, wasm: Path, jobs: int) -> list[tuple[float, float]]:
    """(deploy returned, first batch done) in ms since the deploy began, per job."""
    port = idle_listener()
    times = []
    for i in range(jobs):
        name = f"idle-{i}"
        began = time.time()
        done = host.client("deploy", str(wasm), "--name", name, "--arg", "host=127.0.0.1",
                           "--arg", f"port={port}")
        if done.returncode != 0:
            sys.exit(f"deploy {name}: exit {done.returncode}: {done.stderr}")
        returned = time.time()
        while not host.batches(name):
            time.sleep(0.01)
        first = time.time()
        times.append(((returned - began) * 1000, (first - began) * 1000))
        log(f"  {name}: deploy returned after {times[-1][0]:.0f} ms, first batch after {times[-1][1]:.0f} ms")
    return times


def upgrades(host: Host, tools: bench.Tools, wasm: dict[str, Path], count: int, rate: int,
             lines: int, workdir: Path) -> tuple[list[float], list[float], float]:
    """(switch ms, extra delay ms of the first batch after the switch) per upgrade, and
    the usual total delay."""
    corpus = bench.prepare_corpus(lines, bench.corpus_generator(tools.target)[0], "serve")
    server = subprocess.Popen([str(tools.corpus_server), "--file", str(corpus.path), "--loops", "1000",
                               "--bytes-per-second", str(rate)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        return upgrade_loaded(host, wasm, count, port, workdir)
    finally:
        server.kill()


def upgrade_loaded(host: Host, wasm: dict[str, Path], count: int, port: int,
                   workdir: Path) -> tuple[list[float], list[float], float]:
    done = host.client("deploy", str(wasm["upgrade-v1"]), "--name", "load", "--arg", "host=127.0.0.1",
                       "--arg", f"port={port}", "--arg", f"output={workdir / 'out' / 'counts'}",
                       "--checkpoint", str(workdir / "load-checkpoint"))
    if done.returncode != 0:
        sys.exit(f"deploy load: {done.stderr}")
    time.sleep(5)
    switches, firsts = [], []
    # The status keeps the last 20 batches: read them as they go.
    seen: dict[int, float] = {}
    for i in range(count):
        version = "upgrade-lower" if i % 2 == 0 else "upgrade-v1"
        outcome = host.json("upgrade", "load", str(wasm[version]))
        switches.append(outcome["pause_ms"])
        firsts.append(outcome["switched_at_ms"])
        time.sleep(2.5)
        for batch in host.batches("load"):
            seen[batch["batch_time_ms"]] = batch["total_delay_ms"]
        log(f"  upgrade {i + 1} to {version}: switch {outcome['pause_ms']:.2f} ms at batch {outcome['switched_at_ms']}")
    host.client("stop", "load", "--now")
    usual = statistics.median(v for t, v in seen.items() if t not in firsts)
    extra = [seen[t] - usual for t in firsts if t in seen]
    return switches, extra, usual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10, help="idle jobs to deploy (default 10)")
    parser.add_argument("--upgrades", type=int, default=20, help="upgrades under load (default 20)")
    parser.add_argument("--rate", type=int, default=20_000_000, help="corpus bytes/s during the upgrades")
    parser.add_argument("--lines", type=int, default=200_000, help="corpus lines (served in a loop)")
    args = parser.parse_args()

    target = bench.cargo_target_dir()
    build(target)
    tools = bench.Tools(target=target)
    wasm = {p: bench.plugin_path(p) for p in PLUGINS}
    with tempfile.TemporaryDirectory(prefix="sluice-serve-bench-") as tmp:
        work = Path(tmp)
        host = Host(tools.sluice, work / "data")
        try:
            time.sleep(1)
            empty = host.rss()
            log(f"deploying {args.jobs} idle jobs")
            times = deploys(host, wasm["network-word-count"], args.jobs)
            time.sleep(10)
            idle = host.rss()
            for i in range(args.jobs):
                host.client("stop", f"idle-{i}")
            log(f"{args.upgrades} upgrades under load ({args.rate / 1e6:.0f} MB/s)")
            switches, extra, usual = upgrades(host, tools, wasm, args.upgrades, args.rate, args.lines, work)
        finally:
            host.stop()
    returned = [t[0] for t in times[1:]] or [times[0][0]]
    first = [t[1] for t in times[1:]] or [times[0][1]]
    print(f"deploy (compiling): returned {times[0][0]:.0f} ms, first batch {times[0][1]:.0f} ms")
    print(f"deploy (cached), median of {len(returned)}: returned {statistics.median(returned):.0f} ms, "
          f"first batch {statistics.median(first):.0f} ms (1 s batches: the first batch ends at the next "
          f"multiple of 1 s)")
    print(f"idle host: {empty / 2**20:.1f} MiB without jobs, {idle / 2**20:.1f} MiB with {args.jobs} jobs")
    print(f"upgrades under load: switch median {statistics.median(switches):.2f} ms, max {max(switches):.2f} ms; "
          f"extra delay of the first batch after it median {statistics.median(extra):.1f} ms, "
          f"max {max(extra):.1f} ms (usual total delay {usual:.1f} ms, {len(extra)} batches seen)")


if __name__ == "__main__":
    main()
