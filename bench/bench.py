#!/usr/bin/env python3
"""The side-by-side word-count benchmark (entry point: bench/run; see bench/README.md).

For every system and configuration, and R times over: start the corpus server on a
loopback port, start the system against it, sample the RSS of the system's whole
process tree every 50 ms (kept as a series, rss.csv), wait for it to finish, then read
the server's first/last-byte times, the system's per-batch metrics and its word counts,
and check the counts against the exact count of the corpus. Report medians over the
repeats, the ratios Sluice/Spark, Sluice/PySpark and Sluice/native with the issues'
targets, the peak RSS early and late in the run, and write bench/.work/results.md.

Python 3.11 standard library only, so that CI can run `bench/run --smoke` with nothing
but Rust and Python.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

if sys.version_info < (3, 11):
    sys.exit("bench/run needs Python 3.11 or newer")

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"

DEFAULT_LINES = 1_000_000
SMOKE_LINES = 10_000
SPARK_VERSION = "4.3.0"  # the newest on PyPI with the DStream API (see README)
SPARK_JVM_HEAP = "4g"
# Every system, in the order of --only's default (all of them).
SYSTEMS = ("sluice", "py", "js", "spark", "pyspark", "native")
SMOKE_SYSTEMS = ("sluice", "py", "js", "native")
# The flatness figure's window: the peak RSS in the first and in the last minute of the data.
RSS_WINDOW_S = 60.0
# A ratio of words/s is judged against its target only when the words/s of both runs measure their work:
# a system that waits for its last batch's time (Spark, native; Sluice runs its last batch as soon as its
# sources end) and whose data fell in fewer than this many batches, each done in less than a batch
# interval, has a words/s that is mostly that wait (native counts ten loops inside its first second).
JUDGED_BATCHES = 5
SAMPLE_EVERY_S = 0.05
PACED_WORDS_PER_S = 5_000_000
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The corpus and its exact count


@dataclasses.dataclass
class Corpus:
    path: Path
    generator: str  # what made it: "gen-corpus" or the SLUICE_GEN_CORPUS path
    lines: int
    words: int
    bytes: int
    counts: dict[str, int]  # word (bytes decoded as Latin-1, so any byte round-trips) -> count


def corpus_generator(target: Path) -> tuple[list[str], str]:
    """The command that writes the corpus (LINES is appended) and its name for the results:
    `SLUICE_GEN_CORPUS` if set (an executable, or a Python script such as an older generator),
    else the workspace's `gen-corpus` (package `sluice-corpus`)."""
    override = os.environ.get("SLUICE_GEN_CORPUS")
    if override:
        path = Path(override).resolve()
        if not path.exists():
            sys.exit(f"SLUICE_GEN_CORPUS={override}: no such file")
        argv = [sys.executable, str(path)] if path.suffix == ".py" else [str(path)]
        return argv, str(path)
    return [str(target / "release" / "gen-corpus")], "gen-corpus"


def prepare_corpus(lines: int, generator: list[str], name: str) -> Corpus:
    """Generates the corpus once per size and generator, and counts it exactly once (both cached
    in bench/.work; `corpus-N.generator` says which generator made `corpus-N.txt`)."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"corpus-{lines}.txt"
    made_by = WORK / f"corpus-{lines}.generator"
    if not path.exists() or not made_by.exists() or made_by.read_text().strip() != name:
        if not Path(generator[-1]).exists():
            sys.exit(f"corpus generator {generator[-1]} is missing: build it with "
                     "`cargo build --release -p sluice-corpus` or drop --no-build")
        log(f"generating {path.name} with {shlex.join(generator)} {lines} ...")
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            subprocess.run(generator + [str(lines)], stdout=out, check=True)
        tmp.rename(path)
        made_by.write_text(name + "\n")
    counts_path = WORK / f"corpus-{lines}.counts.json"
    stat = path.stat()
    if counts_path.exists():
        cached = json.loads(counts_path.read_text())
        if cached["bytes"] == stat.st_size and cached["mtime_ns"] == stat.st_mtime_ns:
            return Corpus(path, name, cached["lines"], cached["words"], cached["bytes"], cached["counts"])
    log(f"counting {path.name} exactly ...")
    counts, n_lines, n_words = exact_count(path)
    counts_path.write_text(json.dumps({
        "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        "lines": n_lines, "words": n_words, "counts": counts,
    }))
    return Corpus(path, name, n_lines, n_words, stat.st_size, counts)


def exact_count(path: Path) -> tuple[dict[str, int], int, int]:
    """Words as Spark's `line.split(" ")` / Python's `line.split(' ')`, lines split at '\\n'."""
    counts: collections.Counter[bytes] = collections.Counter()
    n_lines = 0
    rest = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(16 << 20)
            if not block:
                break
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            whole, rest = data[:cut], data[cut + 1:]
            # Each '\n' ends a line; replacing it by ' ' keeps every line's split(' ') words.
            n_lines += whole.count(b"\n") + 1
            counts.update(whole.replace(b"\n", b" ").split(b" "))
    if rest:
        n_lines += 1
        counts.update(rest.split(b" "))
    words = sum(counts.values())
    return {w.decode("latin-1"): n for w, n in counts.items()}, n_lines, words


def read_pairs(path: Path, into: collections.Counter) -> None:
    """Adds the `(word,count)` lines of one output file."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            if not line:
                continue
            if not (line.startswith(b"(") and line.endswith(b")")):
                raise ValueError(f"{path}: not a (word,count) line: {line[:80]!r}")
            word, comma, n = line[1:-1].rpartition(b",")
            if not comma:
                raise ValueError(f"{path}: not a (word,count) line: {line[:80]!r}")
            into[word.decode("latin-1")] += int(n)


def read_batch_outputs(prefix: Path) -> tuple[collections.Counter, int, list[str]]:
    """Sums every batch directory `PREFIX-<time>/part-*`; returns counts, batches, problems."""
    total: collections.Counter = collections.Counter()
    problems = []
    batches = 0
    for d in sorted(prefix.parent.glob(prefix.name + "-*")):
        if not d.is_dir():
            continue
        batches += 1
        if not (d / "_SUCCESS").exists():
            problems.append(f"{d.name} has no _SUCCESS")
        for part in sorted(d.glob("part-*")):
            read_pairs(part, total)
    return total, batches, problems


def read_last_batch(prefix: Path) -> tuple[collections.Counter, int, list[str]]:
    """The counts in the last batch directory `PREFIX-<time>/part-*` (a windowed or running count's
    last output holds every word when the run is shorter than the window); returns counts,
    batches, problems."""
    dirs = [d for d in prefix.parent.glob(prefix.name + "-*")
            if d.is_dir() and d.name[len(prefix.name) + 1:].isdigit()]
    total: collections.Counter = collections.Counter()
    if not dirs:
        return total, 0, []
    last = max(dirs, key=lambda d: int(d.name[len(prefix.name) + 1:]))
    problems = [] if (last / "_SUCCESS").exists() else [f"{last.name} has no _SUCCESS"]
    for part in sorted(last.glob("part-*")):
        read_pairs(part, total)
    return total, len(dirs), problems


def read_window_tiling(prefix: Path, window_ms: int) -> tuple[collections.Counter, int, list[str]]:
    """The counts of the windows that tile the run: the last window output `PREFIX-<T>`, the one a
    window length before it, and so on back to the first output. A sliding window's outputs at
    T, T - window, T - 2 window, ... cover disjoint stretches of input that together hold every
    batch (the last output comes after the last data; the earliest of them starts before the
    first batch), so their sum is every word received, however long the run. Returns counts,
    batch directories, problems (a missing output of the tiling is one)."""
    times = {}
    for d in prefix.parent.glob(prefix.name + "-*"):
        suffix = d.name[len(prefix.name) + 1:]
        if d.is_dir() and suffix.isdigit():
            times[int(suffix)] = d
    total: collections.Counter = collections.Counter()
    if not times:
        return total, 0, []
    if window_ms <= 0:
        raise ValueError(f"a window tiling needs a window length, not {window_ms} ms")
    problems = []
    first, t = min(times), max(times)
    while t >= first:
        d = times.get(t)
        if d is None:
            problems.append(f"{prefix.name}-{t} (a window of the tiling) is missing")
        else:
            if not (d / "_SUCCESS").exists():
                problems.append(f"{d.name} has no _SUCCESS")
            for part in sorted(d.glob("part-*")):
                read_pairs(part, total)
        t -= window_ms
    return total, len(times), problems


def check_counts(expected: dict[str, int], scale: int, got: collections.Counter) -> str | None:
    """None if every word's total matches, else what differs."""
    diffs = []
    for word, n in expected.items():
        if got.get(word, 0) != n * scale:
            diffs.append((word, n * scale, got.get(word, 0)))
    extra = [w for w in got if w not in expected and got[w] != 0]
    if not diffs and not extra:
        return None
    parts = [f"{len(diffs)} of {len(expected)} words differ"] if diffs else []
    for word, want, have in diffs[:3]:
        parts.append(f"{word!r}: expected {want}, got {have}")
    if extra:
        parts.append(f"{len(extra)} unexpected words (e.g. {extra[0]!r})")
    parts.append(f"total expected {sum(expected.values()) * scale}, got {sum(got.values())}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------
# Process tree memory


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        kids[int(fields[1])].append(int(entry.name))
    return kids


def tree_rss_bytes(root: int, cpu_ticks: dict[int, int] | None = None) -> int:
    """Sum of the resident set sizes of `root` and all its descendants. With `cpu_ticks`, also
    records each process's user + system time so far (clock ticks), by pid."""
    kids = children_map()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE_SIZE
            if cpu_ticks is not None:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    stat = f.read()
                fields = stat[stat.rfind(b")") + 2:].split()
                cpu_ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


# ---------------------------------------------------------------------------
# Systems and configurations


@dataclasses.dataclass
class Tools:
    target: Path  # cargo's target directory
    java_opts: list[str] = dataclasses.field(default_factory=list)
    spark_cp: str = ""
    spark_heap: str = SPARK_JVM_HEAP
    sluice_bin: Path | None = None  # instead of the workspace's build
    plugin_wasm: Path | None = None
    sluice_extra: list[str] = dataclasses.field(default_factory=list)  # more `sluice run` flags

    @property
    def corpus_server(self) -> Path:
        return self.target / "release" / "corpus-server"

    @property
    def native(self) -> Path:
        return self.target / "release" / "native-wordcount"

    @property
    def sluice(self) -> Path:
        return self.sluice_bin or self.target / "release" / "sluice"

    @property
    def plugin(self) -> Path:
        return self.plugin_wasm or plugin_path("network-word-count")


@dataclasses.dataclass
class Run:
    """Where one run of one configuration puts its files."""
    dir: Path
    port: int

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def timing(self) -> Path:
        return self.dir / "timing.json"

    @property
    def output_prefix(self) -> Path:
        return self.dir / "out" / "counts"

    @property
    def totals(self) -> Path:
        return self.dir / "totals.txt"

    @property
    def rss(self) -> Path:
        return self.dir / "rss.csv"


@dataclasses.dataclass
class Config:
    name: str
    system: str  # one of SYSTEMS: sluice | py | js (Sluice with a Python / JavaScript plugin) | spark | pyspark | native
    label: str
    batch_ms: int
    command: Callable[[Tools, Run], list[str]]
    # "batches" (PREFIX-<time>/part-*, summed), "last-batch" (the last batch holds the totals),
    # "windows" (sliding windows of `window_ms`: the outputs a window apart sum to the totals) or
    # "totals" (one file)
    output: str
    paced_words_per_s: int | None = None  # pace the server instead of "as fast as read"
    in_ratios: bool = True
    job: str = "count"  # count | window | state: which word count (compared with Spark's same job)
    guest_plugin: str | None = None  # a Python or JavaScript plugin (skipped, not failed, when not built)
    targets: dict[str, float] = dataclasses.field(default_factory=dict)  # other config -> words/s ratio to reach
    window_ms: int = 0  # the window's length, for output "windows"


# The plugin of each job: the guide's three word counts.
PLUGINS = {"count": "network-word-count", "window": "windowed-word-count", "state": "stateful-word-count"}
# The network word count in the other guest languages (issue 14), by system.
GUEST_PLUGINS = {"py": "network-word-count-py", "js": "network-word-count-js"}


def plugin_path(name: str) -> Path:
    """A plugin's component, as `scripts/build-plugins` makes it."""
    return ROOT / "target" / "plugins" / f"{name}.wasm"


def sluice_command(batch: str, block: str, *extra: str, job: str = "count",
                   checkpoint: str | None = None, plugin_name: str | None = None) -> Callable[[Tools, Run], list[str]]:
    """`checkpoint`: the `--wal-sync` policy of a run with `--checkpoint` (a
    directory of the run, default interval), or None for no checkpoint.
    `plugin_name`: another plugin of `target/plugins/` (the Python and JavaScript word counts)."""
    def command(tools: Tools, run: Run) -> list[str]:
        if plugin_name:
            plugin = plugin_path(plugin_name)
        else:
            plugin = tools.plugin if job == "count" else plugin_path(PLUGINS[job])
        argv = [str(tools.sluice), "run", str(plugin),
                "--arg", "host=127.0.0.1", "--arg", f"port={run.port}",
                "--arg", f"output={run.output_prefix}"]
        for e in extra:
            argv += ["--arg", e]
        if checkpoint is not None:
            argv += ["--checkpoint", str(run.dir / "checkpoint"), "--wal-sync", checkpoint]
        return argv + ["--batch-interval", batch, "--block-interval", block,
                       "--until-sources-end", "--metrics-json", str(run.metrics)] + tools.sluice_extra
    return command


def runs_plugin(config: Config, plugin: Path) -> bool:
    """Whether `config`'s command runs `plugin` when it is given as `--plugin` (the network word
    count's Rust plugin: a windowed, stateful, Python or JavaScript configuration does not)."""
    return str(plugin) in config.command(Tools(target=ROOT / "target", plugin_wasm=plugin), Run(WORK, 0))


def native_command(threads: int) -> Callable[[Tools, Run], list[str]]:
    def command(tools: Tools, run: Run) -> list[str]:
        return [str(tools.native), "--port", str(run.port), "--threads", str(threads),
                "--batch-interval-ms", "1000", "--output", str(run.totals),
                "--metrics-json", str(run.metrics)]
    return command


def spark_command(job: str = "count") -> Callable[[Tools, Run], list[str]]:
    def command(tools: Tools, run: Run) -> list[str]:
        return (["java", f"-Xmx{tools.spark_heap}"] + tools.java_opts
                + ["-cp", tools.spark_cp, "NetworkWordCount", "127.0.0.1", str(run.port),
                   str(run.output_prefix), str(run.metrics), "1000", "local[2]", str(run.timing), job])
    return command


def pyspark_command() -> Callable[[Tools, Run], list[str]]:
    def command(tools: Tools, run: Run) -> list[str]:
        return [str(venv_python()), str(BENCH / "spark" / "network_word_count.py"), "127.0.0.1", str(run.port),
                str(run.output_prefix), str(run.metrics), "1000", "local[2]", str(run.timing), tools.spark_heap]
    return command


def all_configs() -> list[Config]:
    cores = os.cpu_count() or 1
    return [
        Config("sluice-1s", "sluice", "Sluice, 1 s batches, reducer in the plugin (closure)", 1000,
               sluice_command("1s", "200ms"), "batches", targets={"spark": 10.0, "native-percore": 0.5}),
        Config("sluice-py", "py", "Sluice, Python plugin (network-word-count-py), 1 s batches", 1000,
               sluice_command("1s", "200ms", plugin_name=GUEST_PLUGINS["py"]), "batches",
               guest_plugin=GUEST_PLUGINS["py"], targets={"pyspark": 10.0}),
        Config("sluice-js", "js", "Sluice, JavaScript plugin (network-word-count-js), 1 s batches", 1000,
               sluice_command("1s", "200ms", plugin_name=GUEST_PLUGINS["js"]), "batches",
               guest_plugin=GUEST_PLUGINS["js"], targets={"pyspark": 2.0}),
        Config("sluice-1s-sum", "sluice", "Sluice, 1 s batches, built-in `sum` reducer", 1000,
               sluice_command("1s", "200ms", "reducer=builtin"), "batches"),
        Config("sluice-100ms", "sluice", "Sluice, 100 ms batches (50 ms blocks), closure reducer", 100,
               sluice_command("100ms", "50ms"), "batches"),
        Config("sluice-100ms-paced", "sluice",
               f"Sluice, 100 ms batches, input paced at {PACED_WORDS_PER_S:,} words/s (stability)", 100,
               sluice_command("100ms", "50ms"), "batches",
               paced_words_per_s=PACED_WORDS_PER_S, in_ratios=False),
        Config("sluice-1s-checkpoint", "sluice",
               "Sluice, 1 s batches, --checkpoint (default 10 s interval), --wal-sync always", 1000,
               sluice_command("1s", "200ms", checkpoint="always"), "batches", in_ratios=False),
        Config("sluice-1s-checkpoint-batch", "sluice",
               "Sluice, 1 s batches, --checkpoint, --wal-sync batch", 1000,
               sluice_command("1s", "200ms", checkpoint="batch"), "batches", in_ratios=False),
        Config("sluice-1s-checkpoint-never", "sluice",
               "Sluice, 1 s batches, --checkpoint, --wal-sync never", 1000,
               sluice_command("1s", "200ms", checkpoint="never"), "batches", in_ratios=False),
        Config("spark", "spark", f"Spark Streaming {SPARK_VERSION}, Java DStream API, 1 s batches, local[2]", 1000,
               spark_command(), "batches"),
        Config("pyspark", "pyspark",
               f"PySpark {SPARK_VERSION}, Python DStream API (network_word_count.py), 1 s batches, local[2]", 1000,
               pyspark_command(), "batches"),
        Config("sluice-window", "sluice",
               "Sluice, windowed word count: reduce_by_key_and_window_inv, 30 s window, 1 s slide", 1000,
               sluice_command("1s", "200ms", "window=30s", "slide=1s", job="window"), "windows", job="window",
               window_ms=30_000),
        Config("spark-window", "spark",
               f"Spark Streaming {SPARK_VERSION}, reduceByKeyAndWindow(+, -, 30 s, 1 s), local[2]", 1000,
               spark_command("window"), "windows", job="window", window_ms=30_000),
        Config("sluice-state", "sluice", "Sluice, stateful word count: update_state_by_key, 1 s batches", 1000,
               sluice_command("1s", "200ms", job="state"), "last-batch", job="state"),
        Config("sluice-state-checkpoint", "sluice",
               "Sluice, stateful word count, --checkpoint (default 10 s interval, --wal-sync always)", 1000,
               sluice_command("1s", "200ms", job="state", checkpoint="always"), "last-batch", job="state",
               in_ratios=False),
        Config("spark-state", "spark", f"Spark Streaming {SPARK_VERSION}, updateStateByKey, 1 s batches, local[2]",
               1000, spark_command("state"), "last-batch", job="state"),
        Config("native-1thread", "native", "native Rust, 1 s batches, 1 thread", 1000,
               native_command(1), "totals"),
        Config("native-percore", "native", f"native Rust, 1 s batches, reader + {cores} counting threads", 1000,
               native_command(0), "totals"),
    ]


# ---------------------------------------------------------------------------
# Building


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + shlex.join(argv))
    return subprocess.run(argv, **kw)


def cargo_target_dir() -> Path:
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return Path(json.loads(meta.stdout)["target_directory"])


def build_native() -> None:
    """The corpus server, the native baseline and the corpus generator."""
    sh(["cargo", "build", "--release", "-p", "sluice-bench", "-p", "sluice-corpus"], cwd=ROOT, check=True)


def build_sluice(binary: bool = True, plugins: bool = True) -> str | None:
    """Builds the sluice binary and the Rust plugins; returns why not, if not."""
    steps = ([["cargo", "build", "--release", "-p", "sluice"]] if binary else []) + (
        [[str(ROOT / "scripts" / "build-plugins"), *PLUGINS.values()]] if plugins else [])
    for argv in steps:
        if sh(argv, cwd=ROOT).returncode != 0:
            return f"build failed: {shlex.join(argv)}"
    return None


def guest_plugin_source(name: str) -> Path | None:
    """The folder of a Python or JavaScript plugin, if this checkout has it."""
    for base in ("plugins", "tests/plugins"):
        folder = ROOT / base / name
        if (folder / "app.py").is_file() or (folder / "app.js").is_file():
            return folder
    return None


def build_guest_plugin(name: str) -> str | None:
    """Builds a Python or JavaScript plugin with scripts/build-plugins when its source is in this
    checkout; returns why it failed, if it did (a missing source is not a failure: the
    configuration is skipped as not built)."""
    if guest_plugin_source(name) is None:
        return None
    argv = [str(ROOT / "scripts" / "build-plugins"), name]
    if sh(argv, cwd=ROOT).returncode != 0:
        return f"build failed: {shlex.join(argv)}"
    return None


def guest_plugin_missing(name: str) -> str | None:
    """Why a Python or JavaScript plugin's configuration is skipped, or None if its component exists."""
    if plugin_path(name).exists():
        return None
    if guest_plugin_source(name) is None:
        return (f"not built: plugins/{name} is not in this checkout, so there is no "
                f"target/plugins/{name}.wasm")
    return f"not built: target/plugins/{name}.wasm is missing (build it: scripts/build-plugins {name})"


def venv_python() -> Path:
    return WORK / "venv" / "bin" / "python"


def setup_pyspark_venv(version: str) -> tuple[Path | None, str | None]:
    """Installs pyspark into bench/.work/venv; returns its package folder, or why not."""
    py = venv_python()
    if not py.exists():
        sh([sys.executable, "-m", "venv", str(WORK / "venv")], check=True)
    have = subprocess.run([str(py), "-c", "import pyspark; print(pyspark.__version__)"],
                          capture_output=True, text=True)
    if have.returncode != 0 or have.stdout.strip() != version:
        if sh([str(py), "-m", "pip", "install", "--progress-bar", "off", f"pyspark=={version}"]).returncode != 0:
            return None, f"pip install pyspark=={version} failed"
    site = subprocess.run([str(py), "-c", "import pyspark, os; print(os.path.dirname(pyspark.__file__))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return Path(site), None


def setup_pyspark(version: str) -> str | None:
    """The PySpark job needs the venv's pyspark with its DStream API (`pyspark.streaming`) and a
    `java` for the driver JVM; returns why not, if not."""
    site, why = setup_pyspark_venv(version)
    if why:
        return why
    probe = subprocess.run([str(venv_python()), "-c",
                            "import pyspark.streaming, pyspark.streaming.listener"], capture_output=True, text=True)
    if probe.returncode != 0:
        return (f"pyspark {version} has no pyspark.streaming (the DStream API): "
                "use --spark-version with an older release")
    if not list((site / "jars").glob("spark-streaming_*.jar")):
        return (f"pyspark {version} has no spark-streaming jar (the DStream API): "
                "use --spark-version with an older release")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no `java` on PATH and no JAVA_HOME: PySpark's driver is a JVM"
    return None


def setup_spark(tools: Tools, version: str) -> str | None:
    """Installs pyspark into bench/.work/venv, compiles the job; returns why not, if not."""
    site, why = setup_pyspark_venv(version)
    if why:
        return why
    jars = site / "jars"
    if not list(jars.glob("spark-streaming_*.jar")):
        return (f"pyspark {version} has no spark-streaming jar (the DStream API): "
                "use --spark-version with an older release")
    classes = WORK / f"spark-classes-{version}"
    for source in sorted((BENCH / "spark").glob("*.java")):
        compiled = classes / f"{source.stem}.class"
        if not compiled.exists() or compiled.stat().st_mtime < source.stat().st_mtime:
            classes.mkdir(parents=True, exist_ok=True)
            if sh(["javac", "-nowarn", "-d", str(classes), "-cp", f"{jars}/*", str(source)]).returncode != 0:
                return f"javac failed on {source.relative_to(ROOT)}"
    tools.spark_cp = f"{jars}/*:{classes}"
    opts = subprocess.run(["java", "-cp", tools.spark_cp, "NetworkWordCount", "--print-jvm-options"],
                          capture_output=True, text=True)
    if opts.returncode != 0:
        return f"cannot run the Spark job: {opts.stderr.strip()[-500:]}"
    tools.java_opts = opts.stdout.split()
    return None


# ---------------------------------------------------------------------------
# One run


@dataclasses.dataclass
class Result:
    config: str
    repeat: int
    ok: bool
    failure: str = ""
    words_per_s: float | None = None
    read_words_per_s: float | None = None
    processing_ms: tuple[float, float] | None = None  # median, max over batches with data
    scheduling_ms: tuple[float, float] | None = None
    peak_rss: int = 0
    cpu_s: float = 0.0
    data_batches: int = 0
    wall_s: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)
    skipped: str = ""  # why the configuration was not run (a plugin not built); not a failure
    # Memory over time (rss.csv): the span from the first byte to the last batch done, and the
    # peak RSS of the process tree in its first and in its last `rss_window_s` seconds.
    data_span_s: float | None = None
    rss_window_s: float | None = None
    rss_first_peak: int | None = None
    rss_last_peak: int | None = None


def kill_group(proc: subprocess.Popen) -> None:
    """Ends a process we started in its own session, and everything it started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def run_once(cfg: Config, tools: Tools, corpus: Corpus, loops: int, warmup_s: float, repeat: int,
             timeout_s: float) -> Result:
    rundir = WORK / "runs" / cfg.name / str(repeat)
    shutil.rmtree(rundir, ignore_errors=True)
    (rundir / "out").mkdir(parents=True)
    result = Result(cfg.name, repeat, ok=False)

    server_argv = [str(tools.corpus_server), "--file", str(corpus.path), "--timing", str(rundir / "timing.json"),
                   "--loops", str(loops), "--accept-timeout-s", str(int(timeout_s)),
                   "--delay-ms", str(int(warmup_s * 1000))]
    if cfg.paced_words_per_s:
        server_argv += ["--bytes-per-second", str(int(cfg.paced_words_per_s * corpus.bytes / corpus.words))]
    with open(rundir / "server.stderr", "wb") as err:
        server = subprocess.Popen(server_argv, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
    with server.stdout:
        line = server.stdout.readline()
    try:
        port = int(line)
    except ValueError:
        kill_group(server)
        result.failure = "the corpus server did not start: " + (rundir / "server.stderr").read_text()[-500:]
        return result
    run = Run(rundir, port)
    argv = cfg.command(tools, run)
    (rundir / "command").write_text(shlex.join(argv) + "\n")

    started = time.monotonic()
    # In the run's own directory (whatever a system writes beside its outputs stays
    # there), in its own session so that its whole tree can be ended.
    with open(rundir / "stdout", "wb") as out, open(rundir / "stderr", "wb") as err:
        proc = subprocess.Popen(argv, cwd=rundir, stdout=out, stderr=err, start_new_session=True)
    peak = 0
    samples: list[tuple[float, int]] = []  # (epoch ms, RSS bytes of the process tree)
    cpu_ticks: dict[int, int] = {}  # pid -> user + system clock ticks, last seen
    status = rusage = None
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            rss = tree_rss_bytes(proc.pid, cpu_ticks)
            samples.append((time.time() * 1000, rss))
            peak = max(peak, rss)
            if time.monotonic() - started > timeout_s:
                kill_group(proc)
                result.failure = f"timed out after {timeout_s:.0f} s"
                break
            time.sleep(SAMPLE_EVERY_S)
    finally:
        if proc.returncode is None:
            kill_group(proc)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(server)
    # Whatever the system left running in its session goes too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    result.wall_s = time.monotonic() - started
    result.peak_rss = peak
    with open(run.rss, "w") as f:
        f.write("epoch_ms,rss_bytes\n")
        f.writelines(f"{t:.0f},{rss}\n" for t, rss in samples)
    if rusage is not None:
        # Not ru_maxrss: Linux carries the high-water mark of the process image
        # replaced by exec (here, the forked runner) into it.
        result.cpu_s = rusage.ru_utime + rusage.ru_stime
    # wait4 counts only the descendants the process reaped itself: PySpark's driver JVM and Python
    # workers are not. The sampled times of every process of the tree (to within 50 ms) cover them.
    result.cpu_s = max(result.cpu_s, sum(cpu_ticks.values()) / CLOCK_TICKS)
    if result.failure:
        return result
    if proc.returncode != 0:
        tail = (rundir / "stderr").read_text(errors="replace").strip().splitlines()[-5:]
        result.failure = f"exit code {proc.returncode}: " + " | ".join(tail)
        return result

    # Timing: the server's first byte to the end of the last batch that held data.
    try:
        timing = json.loads(run.timing.read_text())
    except (OSError, ValueError):
        result.failure = "the corpus server wrote no timing (did the system connect?)"
        return result
    words = corpus.words * loops
    first_ms = timing["first_byte_ns"] / 1e6
    closed_ms = timing.get("client_closed_ns", timing["last_byte_ns"]) / 1e6
    if timing["bytes"] != corpus.bytes * loops:
        result.failure = f"the server sent {timing['bytes']} of {corpus.bytes * loops} bytes"
        return result
    if closed_ms > first_ms:
        result.read_words_per_s = words / ((closed_ms - first_ms) / 1000)
    batches = []
    if run.metrics.exists():
        for line in run.metrics.read_text().splitlines():
            if line.strip():
                batches.append(json.loads(line))
    data = sorted((b for b in batches if b.get("records", 0) > 0), key=lambda b: b["batch_time_ms"])
    result.data_batches = len(data)
    if data:
        # When the last batch was done: Sluice says (`done_ms`; its last batch runs as soon as the
        # sources end, before its batch time); Spark's batches never start before their time.
        last_done_ms = max(b.get("done_ms", b["batch_time_ms"] + b["total_delay_ms"]) for b in data)
        if last_done_ms < 1e12:
            result.notes.append("batch times are not epoch milliseconds: no words/s")
        elif last_done_ms > first_ms:
            result.words_per_s = words / ((last_done_ms - first_ms) / 1000)
        if len(data) < JUDGED_BATCHES:
            result.notes.append(
                f"only {len(data)} batch(es) held data: words/s depends on where the first byte fell in a "
                f"{cfg.batch_ms} ms batch interval; use more --lines or --loops")
        if len(data) >= 8:
            quarter = len(data) // 4
            early = statistics.median(b["scheduling_delay_ms"] for b in data[:quarter])
            late = statistics.median(b["scheduling_delay_ms"] for b in data[-quarter:])
            if late > early + cfg.batch_ms:
                result.notes.append(f"scheduling delay grows: median {early:.0f} ms in the first quarter "
                                    f"of the batches, {late:.0f} ms in the last (falling behind the input)")
        result.processing_ms = median_max([b["processing_ms"] for b in data])
        result.scheduling_ms = median_max([b["scheduling_delay_ms"] for b in data])
        records = sum(b["records"] for b in data)
        if records != corpus.lines * loops:
            result.notes.append(f"batches report {records} records for {corpus.lines * loops} lines")
    else:
        result.notes.append("no batch metrics with records")
    # Memory over the data: from the first byte to the last batch done, or the last sample if earlier
    # (Sluice runs its last batch as soon as the sources have ended, before that batch's time).
    end_ms = samples[-1][0] if samples else first_ms
    if data and first_ms < last_done_ms < end_ms:
        end_ms = last_done_ms
    rss_flatness(result, samples, first_ms, end_ms)

    # Correctness: every word's total equals the exact count.
    try:
        if cfg.output == "totals":
            got: collections.Counter = collections.Counter()
            read_pairs(run.totals, got)
            problems = []
        else:
            readers = {
                "windows": lambda prefix: read_window_tiling(prefix, cfg.window_ms),
                "last-batch": read_last_batch,
            }
            got, n_out, problems = readers.get(cfg.output, read_batch_outputs)(run.output_prefix)
            if n_out == 0:
                problems.append("no batch output directories")
    except (OSError, ValueError) as e:
        result.failure = f"cannot read the output: {e}"
        return result
    mismatch = check_counts(corpus.counts, loops, got)
    if mismatch or problems:
        result.failure = "; ".join(problems + ([mismatch] if mismatch else []))
        return result
    result.ok = True
    return result


def median_max(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


def rss_flatness(result: Result, samples: list[tuple[float, int]], start_ms: float, end_ms: float) -> None:
    """The peak RSS in the first and in the last RSS_WINDOW_S seconds of [start, end] (a quarter of
    the span each when the span is shorter than two windows: then it says little about flatness)."""
    span_s = (end_ms - start_ms) / 1000
    inside = [(t, rss) for t, rss in samples if start_ms <= t <= end_ms]
    if span_s <= 0 or not inside:
        return
    window_s = RSS_WINDOW_S if span_s >= 2 * RSS_WINDOW_S else span_s / 4
    first = [rss for t, rss in inside if t <= start_ms + window_s * 1000]
    last = [rss for t, rss in inside if t >= end_ms - window_s * 1000]
    if not first or not last:
        return
    result.data_span_s = span_s
    result.rss_window_s = window_s
    result.rss_first_peak = max(first)
    result.rss_last_peak = max(last)


# ---------------------------------------------------------------------------
# Summaries


@dataclasses.dataclass
class Summary:
    cfg: Config
    runs: list[Result]

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.ok for r in self.runs)

    @property
    def skipped(self) -> str:
        """Why the configuration was not run (every run skipped), or ''."""
        return self.runs[0].skipped if self.runs and all(r.skipped for r in self.runs) else ""

    def median(self, get) -> float | None:
        values = [v for v in (get(r) for r in self.runs) if v is not None]
        return statistics.median(values) if values else None


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} k"


def fmt_ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def fmt_mb(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 2**20:.0f}"


def table(summaries: list[Summary]) -> list[str]:
    rows = ["| configuration | words/s (first byte → last batch done) | read words/s (first byte → socket closed) "
            "| batch processing ms, median / max | scheduling delay ms, median / max "
            "| peak RSS MiB (process tree) | CPU s | batches with data | check |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        if s.skipped:
            rows.append(f"| {s.cfg.name} | skipped | | | | | | | {s.skipped.replace('|', '/')} |")
            continue
        if not s.ok:
            reasons = "; ".join(f"run {r.repeat}: {r.failure}" for r in s.runs if not r.ok)
            rows.append(f"| {s.cfg.name} | FAILED | | | | | | | {reasons.replace('|', '/')} |")
            continue
        rows.append("| {} | {} | {} | {} / {} | {} / {} | {} | {:.2f} | {} | OK |".format(
            s.cfg.name,
            fmt_rate(s.median(lambda r: r.words_per_s)),
            fmt_rate(s.median(lambda r: r.read_words_per_s)),
            fmt_ms(s.median(lambda r: r.processing_ms and r.processing_ms[0])),
            fmt_ms(s.median(lambda r: r.processing_ms and r.processing_ms[1])),
            fmt_ms(s.median(lambda r: r.scheduling_ms and r.scheduling_ms[0])),
            fmt_ms(s.median(lambda r: r.scheduling_ms and r.scheduling_ms[1])),
            fmt_mb(s.median(lambda r: r.peak_rss)),
            s.median(lambda r: r.cpu_s) or 0.0,
            fmt_ms(s.median(lambda r: r.data_batches)),
        ))
    return rows


def ratio_others(cfg: Config) -> tuple[str, ...]:
    """What a configuration is divided by in the ratios (those that ran)."""
    if cfg.system == "sluice":
        if cfg.job != "count":
            return (f"spark-{cfg.job}",)
        return ("spark", "pyspark", "native-1thread", "native-percore")
    if cfg.system in ("py", "js"):
        return ("pyspark", "spark", "sluice-1s")
    if cfg.system == "pyspark":
        return ("spark",)
    return ()


def too_short(summary: Summary) -> bool:
    """Whether a configuration's words/s is mostly its wait for the last batch time (see JUDGED_BATCHES)."""
    if summary.cfg.system in ("sluice", "py", "js"):
        return False
    batches = summary.median(lambda r: r.data_batches)
    processing = summary.median(lambda r: r.processing_ms and r.processing_ms[0])
    return (batches is not None and batches < JUDGED_BATCHES
            and processing is not None and processing < summary.cfg.batch_ms)


def ratios(summaries: list[Summary]) -> list[str]:
    by_name = {s.cfg.name: s for s in summaries}
    lines = []
    for s in summaries:
        if not s.cfg.in_ratios:
            continue
        for other in ratio_others(s.cfg):
            o = by_name.get(other)
            if o is None:
                continue
            target = s.cfg.targets.get(other)
            target_note = f" (target ≥ {target:g}×)" if target else ""
            if s.skipped or o.skipped:
                lines.append(f"- {s.cfg.name} / {other}: n/a ({(s.skipped and s.cfg.name) or other} "
                             f"skipped){target_note}")
                continue
            if not (s.ok and o.ok):
                lines.append(f"- {s.cfg.name} / {other}: n/a (a run failed){target_note}")
                continue
            a, b = s.median(lambda r: r.words_per_s), o.median(lambda r: r.words_per_s)
            ia, ib = s.median(lambda r: r.read_words_per_s), o.median(lambda r: r.read_words_per_s)
            ra, rb = s.median(lambda r: r.peak_rss), o.median(lambda r: r.peak_rss)
            parts = []
            if a and b:
                verdict = ""
                short = [x.cfg.name for x in (s, o) if too_short(x)]
                if target and short:
                    verdict = (f" (target ≥ {target:g}×: not judged, the words/s of {' and '.join(short)} is "
                               f"mostly its wait for a batch time: use --loops)")
                elif target:
                    verdict = f" (target ≥ {target:g}×: {'met' if a / b >= target else 'NOT met'})"
                parts.append(f"words/s ×{a / b:.2f}{verdict}")
            elif target:
                parts.append(f"words/s n/a{target_note}")
            if ia and ib:
                parts.append(f"read words/s ×{ia / ib:.2f}")
            if ra and rb:
                parts.append(f"peak RSS ×{ra / rb:.2f}")
            lines.append(f"- {s.cfg.name} / {other}: " + (", ".join(parts) or "n/a"))
    return lines


def memory_table(summaries: list[Summary]) -> list[str]:
    """Peak RSS early and late in the data: flat when the last window's peak is not above the first's."""
    rows = ["| configuration | data span s (first byte → last batch done) | window s "
            "| peak RSS MiB, first window | peak RSS MiB, last window | last − first MiB |",
            "|---|---:|---:|---:|---:|---:|"]
    short = False
    for s in summaries:
        if not s.ok or s.median(lambda r: r.rss_window_s) is None:
            continue
        span, window = s.median(lambda r: r.data_span_s), s.median(lambda r: r.rss_window_s)
        first, last = s.median(lambda r: r.rss_first_peak), s.median(lambda r: r.rss_last_peak)
        short = short or window < RSS_WINDOW_S
        rows.append(f"| {s.cfg.name} | {span:.0f} | {window:.0f} | {fmt_mb(first)} | {fmt_mb(last)} "
                    f"| {(last - first) / 2**20:+.0f} |")
    if len(rows) == 2:
        return []
    if short:
        rows += ["", f"A run shorter than {2 * RSS_WINDOW_S:.0f} s of data compares quarters of its span, "
                 "which says little about flatness: use --loops for a long run (bench/README.md)."]
    return rows


def machine() -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True)
        except OSError:
            return "not found"
        return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "?"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return [
        f"- CPU: {model}, `nproc` = {nproc}; memory {mem}; kernel {platform.release()}",
        f"- {version(['rustc', '--version'])}; {version(['java', '-version'])}; Python {platform.python_version()}",
        f"- commit {commit or 'none'}{' (with uncommitted changes)' if dirty else ''}",
        f"- date {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def write_results(path: Path, summaries: list[Summary], corpus: Corpus, args, tools: Tools) -> None:
    command = os.environ.get("SLUICE_BENCH_COMMAND") or "bench/run " + shlex.join(sys.argv[1:])
    words = corpus.words * args.loops
    out = [
        "# Word count: Sluice, Spark Streaming, PySpark and native Rust side by side",
        "",
        f"Command: `{command}`",
        "",
        f"Input: `{Path(corpus.generator).name} {corpus.lines}` ({corpus.lines:,} lines, {corpus.words:,} words, "
        f"{corpus.bytes / 1e6:.1f} MB){f', served {args.loops} times over' if args.loops > 1 else ''}: "
        f"{words:,} words per run, over one loopback TCP connection, "
        f"{args.warmup:g} s after the system connected. "
        f"Median of {args.repeat} run(s) per configuration.",
        "",
        "Machine:",
        "",
        *machine(),
        "",
        *table(summaries),
        "",
        "Ratios (medians):",
        "",
        *(ratios(summaries) or ["- none (a side was not run)"]),
        "",
        *((["Memory over the run: the process tree's peak RSS in the first and in the last minute of the "
            "data (medians; every sample in `runs/<config>/<n>/rss.csv`):", ""] + memory_table(summaries) + [""])
          if memory_table(summaries) else []),
        "Configurations:",
        "",
        *[f"- `{s.cfg.name}`: {s.cfg.label}" for s in summaries],
        "",
    ]
    if any(s.cfg.system == "spark" for s in summaries) and tools.java_opts:
        out += [f"Spark JVM: `java -Xmx{tools.spark_heap}` plus Spark's own launcher options "
                f"(`{' '.join(tools.java_opts)}`); Kryo serializer, web UI off, MEMORY_ONLY receiver storage.", ""]
    if any(s.cfg.system == "pyspark" for s in summaries):
        out += [f"PySpark: `bench/spark/network_word_count.py` run by the venv's Python, driver JVM started by "
                f"pyspark's spark-submit with `spark.driver.memory={tools.spark_heap}`; Python workers for every "
                "record; Kryo serializer, web UI off, MEMORY_ONLY receiver storage.", ""]
    if tools.sluice_extra:
        out += [f"Extra `sluice run` flags: `{shlex.join(tools.sluice_extra)}`.", ""]
    notes = [f"- {s.cfg.name} run {r.repeat}: {n}" for s in summaries for r in s.runs for n in r.notes]
    if notes:
        out += ["Notes:", "", *notes, ""]
    out += ["How each figure is measured: bench/README.md.", ""]
    path.write_text("\n".join(out))


# ---------------------------------------------------------------------------
# Main


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, help=f"corpus lines (default {DEFAULT_LINES:,}; {SMOKE_LINES:,} with --smoke)")
    p.add_argument("--repeat", type=int, help="runs per configuration, median reported (default 3; 1 with --smoke)")
    p.add_argument("--only", help=f"comma-separated systems: {','.join(SYSTEMS)} (default all; "
                   f"{','.join(SMOKE_SYSTEMS)} with --smoke); py and js are Sluice with the Python and "
                   "JavaScript plugins")
    p.add_argument("--configs", help="comma-separated configuration names (see results.md), after --only")
    p.add_argument("--smoke", action="store_true",
                   help="CI mode: Sluice (Rust, and the Python and JavaScript plugins when built) and native only, "
                   "10,000 lines, 1 run; exit non-zero if a check fails")
    p.add_argument("--loops", type=int, default=1,
                   help="serve the corpus this many times over one connection (longer runs, same file)")
    p.add_argument("--warmup", type=float,
                   help="seconds the server waits after the connection before the first byte (default 5; 0 with --smoke)")
    p.add_argument("--spark-version", default=SPARK_VERSION, help=f"pyspark version from PyPI (default {SPARK_VERSION})")
    p.add_argument("--spark-heap", default=SPARK_JVM_HEAP, help=f"the Spark JVM's -Xmx (default {SPARK_JVM_HEAP})")
    p.add_argument("--timeout", type=float, help="seconds before a run is killed and reported failed")
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--sluice-bin", type=Path, help="a sluice binary to use instead of building the workspace's")
    p.add_argument("--plugin", type=Path, help="the network word count plugin (.wasm) to use instead of building it")
    p.add_argument("--sluice-extra", default="",
                   help="more `sluice run` flags for every Sluice run, one shell-quoted string, "
                   "e.g. --sluice-extra='--recycle-after-calls 1000'")
    args = p.parse_args()

    lines = args.lines or (SMOKE_LINES if args.smoke else DEFAULT_LINES)
    args.repeat = args.repeat or (1 if args.smoke else 3)
    if args.warmup is None:
        args.warmup = 0.0 if args.smoke else 5.0
    systems = set((args.only or ",".join(SMOKE_SYSTEMS if args.smoke else SYSTEMS)).split(","))
    unknown = systems - set(SYSTEMS)
    if unknown:
        p.error(f"unknown system(s) in --only: {', '.join(sorted(unknown))}; known: {','.join(SYSTEMS)}")
    if args.loops < 1:
        p.error(f"--loops {args.loops}: the corpus is served 1 time at least")
    if args.smoke and systems - set(SMOKE_SYSTEMS):
        p.error(f"--smoke runs {','.join(SMOKE_SYSTEMS)} only")
    configs = [c for c in all_configs() if c.system in systems]
    if args.configs:
        wanted = set(args.configs.split(","))
        known = {c.name for c in all_configs()}
        if wanted - known:
            p.error(f"unknown configuration(s): {', '.join(sorted(wanted - known))}; known: {', '.join(sorted(known))}")
        configs = [c for c in configs if c.name in wanted]
    if args.plugin and not any(runs_plugin(c, args.plugin.resolve()) for c in configs):
        p.error(f"--plugin {args.plugin} replaces the network word count's plugin, which none of the "
                f"configurations chosen runs ({', '.join(c.name for c in configs)})")
    # Build and set up only what the chosen configurations run.
    systems = {c.system for c in configs}

    tools = Tools(target=cargo_target_dir(), spark_heap=args.spark_heap,
                  sluice_bin=args.sluice_bin and args.sluice_bin.resolve(),
                  plugin_wasm=args.plugin and args.plugin.resolve(),
                  sluice_extra=shlex.split(args.sluice_extra))
    unavailable: dict[str, str] = {}  # system -> why its runs fail
    skipped: dict[str, str] = {}  # configuration -> why it is not run (not a failure)
    guests = [s for s in GUEST_PLUGINS if s in systems]
    if not args.no_build:
        build_native()
        built_binary = False
        if "sluice" in systems and not (args.sluice_bin and args.plugin):
            built_binary = not args.sluice_bin
            why = build_sluice(binary=built_binary)
            if why:
                unavailable["sluice"] = why
        if guests and not args.sluice_bin and not built_binary:
            why = build_sluice(plugins=False)
            if why:
                unavailable.update({s: why for s in guests})
        for system in guests:
            if system not in unavailable:
                why = build_guest_plugin(GUEST_PLUGINS[system])
                if why:
                    unavailable[system] = why
    for needed in (tools.corpus_server, tools.native):
        if not needed.exists():
            sys.exit(f"{needed} is missing: build with `cargo build --release -p sluice-bench` or drop --no-build")

    corpus = prepare_corpus(lines, *corpus_generator(tools.target))
    if not corpus.path.read_bytes()[-1:] == b"\n":
        sys.exit(f"{corpus.path} does not end with a newline: it cannot be served in loops")
    timeout_s = args.timeout or (60.0 if args.smoke else 300.0 + corpus.words * args.loops / 100_000)
    if "sluice" in systems and "sluice" not in unavailable:
        for needed in (tools.sluice, tools.plugin):
            if not needed.exists():
                unavailable["sluice"] = f"{needed} is missing"
    for system in guests:
        if system not in unavailable and not tools.sluice.exists():
            unavailable[system] = f"{tools.sluice} is missing"
    for cfg in configs:
        if cfg.guest_plugin and cfg.system not in unavailable:
            why = guest_plugin_missing(cfg.guest_plugin)
            if why:
                skipped[cfg.name] = why
                log(f"{cfg.name}: skipped, {why}")
    if "spark" in systems:
        why = setup_spark(tools, args.spark_version)
        if why:
            unavailable["spark"] = why
    if "pyspark" in systems:
        why = setup_pyspark(args.spark_version)
        if why:
            unavailable["pyspark"] = why
    for cfg in configs:
        if cfg.system in ("spark", "pyspark"):
            cfg.label = cfg.label.replace(SPARK_VERSION, args.spark_version)

    summaries = []
    for cfg in configs:
        runs = []
        for rep in range(1, args.repeat + 1):
            if cfg.name in skipped:
                runs.append(Result(cfg.name, rep, ok=False, skipped=skipped[cfg.name]))
                continue
            if cfg.system in unavailable:
                runs.append(Result(cfg.name, rep, ok=False, failure=unavailable[cfg.system]))
                continue
            log(f"{cfg.name} run {rep}/{args.repeat} ...")
            r = run_once(cfg, tools, corpus, args.loops, args.warmup, rep, timeout_s)
            log(f"  {'ok' if r.ok else 'FAILED: ' + r.failure}; words/s {fmt_rate(r.words_per_s)}, "
                f"read {fmt_rate(r.read_words_per_s)}, peak RSS {fmt_mb(r.peak_rss)} MiB, {r.wall_s:.1f} s")
            runs.append(r)
        summaries.append(Summary(cfg, runs))

    # A smoke run does not overwrite a measurement.
    stem = "results-smoke" if args.smoke else "results"
    results = WORK / f"{stem}.md"
    write_results(results, summaries, corpus, args, tools)
    (WORK / f"{stem}.json").write_text(json.dumps(
        [dataclasses.asdict(r) for s in summaries for r in s.runs], indent=1))
    print("\n".join(table(summaries)))
    print()
    print("\n".join(ratios(summaries)))
    memory = memory_table(summaries)
    if memory:
        print()
        print("\n".join(memory))
    print(f"\nwritten: {results.relative_to(ROOT)}")
    # A configuration skipped because its plugin is not built is not a failure.
    return 0 if all(s.ok or s.skipped for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
