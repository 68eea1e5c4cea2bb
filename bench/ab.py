#!/usr/bin/env python3
"""Two variants of one `bench/run` configuration, alternated, compared in pairs (entry point: bench/ab).

    bench/ab [--pairs N] [--loops L] [--config NAME] [--build] A B

A and B are each a string of `bench/run` flags (`--sluice-bin PATH`, `--plugin P.wasm`,
`--sluice-extra '...'`), optionally preceded by NAME=VALUE environment settings for that
variant's runs; an empty string is the workspace's own build:

    bench/ab "" "--sluice-bin /tmp/sluice-new"
    bench/ab --pairs 8 "" "--plugin /tmp/word-count-new.wasm"
    bench/ab "" "SLUICE_LOG=info --sluice-extra='--recycle-after-calls 1000'"

The machine's speed drifts by more than most changes are worth (BENCHMARKS.md measured 13%
between runs of the same build), so one run of each says little. This runs N pairs, the
order inside a pair alternating (A B, B A, A B, ...) so that a drift through the session
falls on both, and reports each run's CPU seconds of the Sluice process tree, words/s and
peak RSS, then the mean of the pairs' differences (B - A) with its 95% confidence interval
(Student's t over the N differences). An interval that holds 0 means the runs cannot tell
the variants apart. Every run must pass bench/run's exact-count check.

Writes bench/.work/ab.md (the table) and bench/.work/ab.json (every run's figures).
Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"

# Two-sided 95% critical values of Student's t, by degrees of freedom.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
       2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
       2.052, 2.048, 2.045, 2.042]


@dataclass
class Variant:
    """One side of the comparison: environment settings and `bench/run` flags."""

    name: str
    env: dict[str, str]
    flags: list[str]

    @staticmethod
    def parse(name: str, text: str) -> Variant:
        """`NAME=VALUE ... --flag value ...`: leading assignments are the environment."""
        words = shlex.split(text)
        env: dict[str, str] = {}
        while words and "=" in words[0] and not words[0].startswith("-"):
            key, value = words.pop(0).split("=", 1)
            if not key.isidentifier():
                raise ValueError(f"variant {name}: {key!r} is not an environment variable's name")
            env[key] = value
        return Variant(name, env, words)

    def describe(self) -> str:
        parts = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()] + [shlex.quote(f) for f in self.flags]
        return " ".join(parts) or "(the workspace's build)"


@dataclass
class Run:
    variant: str
    pair: int
    cpu_s: float
    words_per_s: float
    peak_rss_mib: float


@dataclass
class Interval:
    """The mean of some differences and its 95% confidence interval."""

    mean: float
    low: float
    high: float

    def holds_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def t95(df: int) -> float:
    """Student's t for a two-sided 95% interval with `df` degrees of freedom."""
    if df < 1:
        raise ValueError("an interval needs two differences at least")
    return T95[df - 1] if df <= len(T95) else 1.960


def paired_interval(a: list[float], b: list[float]) -> Interval:
    """The mean of b[i] - a[i] and its 95% confidence interval."""
    if len(a) != len(b):
        raise ValueError("paired figures come in pairs")
    diffs = [y - x for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    half = t95(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return Interval(mean, mean - half, mean + half)


def order(pair: int) -> tuple[int, int]:
    """Which variant runs first in a pair: A in even pairs, B in odd ones."""
    return (0, 1) if pair % 2 == 0 else (1, 0)


def run_once(variant: Variant, pair: int, build: bool, args: argparse.Namespace) -> Run:
    command = [str(BENCH / "run"), "--configs", args.config, "--loops", str(args.loops),
               "--repeat", "1", *([] if build else ["--no-build"]), *variant.flags]
    print(f"pair {pair + 1}, {variant.name}: {shlex.join(command)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, env={**os.environ, **variant.env}, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"bench/ab: bench/run failed for {variant.name} in pair {pair + 1} "
                         f"(exit {done.returncode}); see bench/.work/runs/{args.config}/1/")
    results = json.loads((WORK / "results.json").read_text())
    row = next((r for r in results if r["config"] == args.config), None)
    if row is None or row["skipped"]:
        raise SystemExit(f"bench/ab: configuration {args.config} did not run for {variant.name}"
                         f"{': ' + row['skipped'] if row else ''}")
    if not row["ok"]:
        raise SystemExit(f"bench/ab: {variant.name}, pair {pair + 1}: {row['failure']}")
    return Run(variant.name, pair + 1, row["cpu_s"], row["words_per_s"], row["peak_rss"] / 2**20)


def report(variants: list[Variant], runs: list[Run], args: argparse.Namespace) -> str:
    a, b = (sorted((r for r in runs if r.variant == v.name), key=lambda r: r.pair) for v in variants)
    lines = [
        f"# bench/ab: `{args.config}`, {args.loops} loops, {len(a)} pairs",
        "",
        f"- A: {variants[0].describe()}",
        f"- B: {variants[1].describe()}",
        "",
        "| pair | first | A CPU s | B CPU s | A words/s | B words/s | A peak RSS MiB | B peak RSS MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for x, y in zip(a, b):
        first = variants[order(x.pair - 1)[0]].name
        lines.append(f"| {x.pair} | {first} | {x.cpu_s:.2f} | {y.cpu_s:.2f} | {x.words_per_s / 1e6:.2f} M | "
                     f"{y.words_per_s / 1e6:.2f} M | {x.peak_rss_mib:.0f} | {y.peak_rss_mib:.0f} |")
    lines.append("")
    for what, unit, field, scale in [("CPU", "s", "cpu_s", 1.0), ("words/s", "M", "words_per_s", 1e-6),
                                     ("peak RSS", "MiB", "peak_rss_mib", 1.0)]:
        xs = [getattr(r, field) * scale for r in a]
        ys = [getattr(r, field) * scale for r in b]
        base = statistics.fmean(xs)
        d = paired_interval(xs, ys)
        verdict = "cannot tell them apart" if d.holds_zero() else "differ"
        lines.append(f"- {what}: A {base:.2f} {unit}, B {statistics.fmean(ys):.2f} {unit} (means); "
                     f"B - A {d.mean:+.2f} {unit} ({100 * d.mean / base:+.1f}%), 95% interval "
                     f"[{d.low:+.2f}, {d.high:+.2f}]: {verdict}")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(prog="bench/ab", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:3]))
    p.add_argument("a", metavar="A", help="the first variant: [NAME=VALUE ...] [bench/run flags]")
    p.add_argument("b", metavar="B", help="the second variant, in the same form")
    p.add_argument("--pairs", type=int, default=6, help="pairs of runs (default 6; 2 at least)")
    p.add_argument("--loops", type=int, default=30, help="bench/run --loops for every run (default 30)")
    p.add_argument("--config", default="sluice-1s", help="the bench/run configuration (default sluice-1s)")
    p.add_argument("--build", action="store_true",
                   help="let the first run build the workspace (bench/run without --no-build)")
    args = p.parse_args()
    if args.pairs < 2:
        p.error("--pairs must be 2 at least: one pair has no interval")
    if args.loops < 1:
        p.error(f"--loops {args.loops}: the corpus is served 1 time at least")
    try:
        variants = [Variant.parse("A", args.a), Variant.parse("B", args.b)]
    except ValueError as e:
        p.error(str(e))
    runs = []
    for pair in range(args.pairs):
        for which in order(pair):
            runs.append(run_once(variants[which], pair, args.build and not runs, args))
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "ab.json").write_text(json.dumps(
        {"config": args.config, "loops": args.loops, "variants": [asdict(v) for v in variants],
         "runs": [asdict(r) for r in runs]}, indent=1))
    table = report(variants, runs, args)
    (WORK / "ab.md").write_text(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
