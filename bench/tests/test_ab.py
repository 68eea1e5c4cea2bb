"""bench/ab's parts that do not run a benchmark: variants, pair order, the interval."""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

import ab  # noqa: E402


class VariantTest(unittest.TestCase):
    def test_leading_assignments_are_the_environment_and_the_rest_flags(self):
        v = ab.Variant.parse("B", "SLUICE_LOG=info X=a=b --sluice-bin /tmp/s --sluice-extra='--x 1'")
        self.assertEqual(v.env, {"SLUICE_LOG": "info", "X": "a=b"})
        self.assertEqual(v.flags, ["--sluice-bin", "/tmp/s", "--sluice-extra=--x 1"])

    def test_an_assignment_after_a_flag_is_a_flag(self):
        v = ab.Variant.parse("A", "--sluice-extra A=1")
        self.assertEqual(v.env, {})
        self.assertEqual(v.flags, ["--sluice-extra", "A=1"])

    def test_empty_is_the_workspace_build(self):
        v = ab.Variant.parse("A", "")
        self.assertEqual((v.env, v.flags), ({}, []))
        self.assertEqual(v.describe(), "(the workspace's build)")

    def test_a_bad_name_is_refused_with_the_variant_named(self):
        with self.assertRaisesRegex(ValueError, "variant B: '1X'"):
            ab.Variant.parse("B", "1X=2 --loops 3")


class OrderTest(unittest.TestCase):
    def test_pairs_alternate_which_variant_runs_first(self):
        self.assertEqual([ab.order(p) for p in range(4)], [(0, 1), (1, 0), (0, 1), (1, 0)])


class IntervalTest(unittest.TestCase):
    def test_the_interval_is_the_mean_difference_plus_or_minus_t_times_its_standard_error(self):
        a = [10.0, 12.0, 11.0, 13.0]
        b = [11.0, 12.5, 12.5, 13.0]
        diffs = [1.0, 0.5, 1.5, 0.0]
        d = ab.paired_interval(a, b)
        half = 3.182 * statistics.stdev(diffs) / math.sqrt(4)
        self.assertAlmostEqual(d.mean, 0.75)
        self.assertAlmostEqual(d.low, 0.75 - half)
        self.assertAlmostEqual(d.high, 0.75 + half)
        self.assertTrue(d.holds_zero())

    def test_a_steady_difference_does_not_hold_zero(self):
        a = [10.0, 14.0, 11.0, 13.0, 12.0]
        b = [x * 0.9 for x in a]
        d = ab.paired_interval(a, b)
        self.assertFalse(d.holds_zero())
        self.assertLess(d.high, 0.0)

    def test_identical_figures_give_a_zero_width_interval_at_zero(self):
        d = ab.paired_interval([5.0, 6.0], [5.0, 6.0])
        self.assertEqual((d.mean, d.low, d.high), (0.0, 0.0, 0.0))
        self.assertTrue(d.holds_zero())

    def test_t_values_follow_the_degrees_of_freedom(self):
        self.assertEqual(ab.t95(1), 12.706)
        self.assertEqual(ab.t95(30), 2.042)
        self.assertEqual(ab.t95(200), 1.960)
        with self.assertRaises(ValueError):
            ab.t95(0)

    def test_unpaired_figures_are_refused(self):
        with self.assertRaises(ValueError):
            ab.paired_interval([1.0, 2.0], [1.0])


# A stand-in for bench/run: writes .work/results.json from what its
# environment says (FAKE_* set by each test, AB_SEEN by a variant), records
# its arguments, and exits with FAKE_EXIT.
FAKE_RUN = """#!/usr/bin/env python3
import json, os, sys
from pathlib import Path
work = Path(__file__).resolve().parent / ".work"
work.mkdir(exist_ok=True)
(work / "args.json").write_text(json.dumps(sys.argv[1:]))
row = {"config": "sluice-1s", "ok": os.environ["FAKE_OK"] == "1", "failure": "counts differ for 'the'",
       "skipped": os.environ.get("FAKE_SKIPPED", ""), "cpu_s": float(os.environ.get("AB_SEEN", "1.5")),
       "words_per_s": 2e7, "peak_rss": 80 * 2**20}
(work / "results.json").write_text(json.dumps([row]))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


class RunOnceTest(unittest.TestCase):
    """run_once against a stand-in for bench/run: what it passes, what it reads, how it fails."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        root = Path(self.dir.name)
        run = root / "run"
        run.write_text(FAKE_RUN)
        run.chmod(0o755)
        patches = [mock.patch.object(ab, "BENCH", root), mock.patch.object(ab, "WORK", root / ".work"),
                   mock.patch.dict(os.environ, {"FAKE_OK": "1"})]
        for p in patches:
            p.start()
            self.addCleanup(p.stop)
        self.addCleanup(self.dir.cleanup)
        self.args = argparse.Namespace(config="sluice-1s", loops=7)
        self.root = root

    def once(self, text, build=False):
        with mock.patch("sys.stderr"):
            return ab.run_once(ab.Variant.parse("B", text), 2, build, self.args)

    def test_a_run_reads_its_figures_and_gets_its_variants_flags_and_environment(self):
        run = self.once("AB_SEEN=4.25 --sluice-bin /tmp/s")
        self.assertEqual((run.variant, run.pair, run.cpu_s, run.words_per_s, run.peak_rss_mib),
                         ("B", 3, 4.25, 2e7, 80.0))
        args = json.loads((self.root / ".work" / "args.json").read_text())
        self.assertEqual(args, ["--configs", "sluice-1s", "--loops", "7", "--repeat", "1", "--no-build",
                                "--sluice-bin", "/tmp/s"])
        self.assertNotIn("AB_SEEN", os.environ)

    def test_only_a_building_run_goes_without_no_build(self):
        self.once("", build=True)
        self.assertNotIn("--no-build", json.loads((self.root / ".work" / "args.json").read_text()))

    def test_a_failed_run_stops_with_the_variant_pair_and_folder(self):
        with mock.patch.dict(os.environ, {"FAKE_EXIT": "3"}), self.assertRaises(SystemExit) as stop:
            self.once("")
        self.assertEqual(str(stop.exception), "bench/ab: bench/run failed for B in pair 3 (exit 3); "
                                              "see bench/.work/runs/sluice-1s/1/")

    def test_a_failed_count_check_stops_with_its_reason(self):
        with mock.patch.dict(os.environ, {"FAKE_OK": "0"}), self.assertRaises(SystemExit) as stop:
            self.once("")
        self.assertEqual(str(stop.exception), "bench/ab: B, pair 3: counts differ for 'the'")

    def test_a_skipped_configuration_stops_with_why(self):
        with mock.patch.dict(os.environ, {"FAKE_SKIPPED": "not built"}), self.assertRaises(SystemExit) as stop:
            self.once("")
        self.assertEqual(str(stop.exception), "bench/ab: configuration sluice-1s did not run for B: not built")


class CommandLineTest(unittest.TestCase):
    def ab(self, *argv):
        return subprocess.run([sys.executable, str(BENCH / "ab.py"), *argv], capture_output=True, text=True)

    def test_one_pair_is_refused_before_anything_runs(self):
        done = self.ab("--pairs", "1", "", "")
        self.assertEqual(done.returncode, 2)
        self.assertIn("--pairs must be 2 at least", done.stderr)

    def test_no_loops_are_refused_before_anything_runs(self):
        done = self.ab("--loops", "0", "", "")
        self.assertEqual(done.returncode, 2)
        self.assertIn("bench/ab: error: --loops 0: the corpus is served 1 time at least", done.stderr)

    def test_a_bad_environment_name_is_refused_with_its_variant(self):
        done = self.ab("", "2X=1")
        self.assertEqual(done.returncode, 2)
        self.assertIn("variant B: '2X' is not an environment variable's name", done.stderr)


class ReportTest(unittest.TestCase):
    def test_the_table_names_who_ran_first_and_the_verdict_of_each_figure(self):
        variants = [ab.Variant.parse("A", ""), ab.Variant.parse("B", "--plugin p.wasm")]
        runs = [ab.Run("A", 1, 10.0, 4e7, 80.0), ab.Run("B", 1, 9.0, 4e7, 90.0),
                ab.Run("B", 2, 11.0, 4e7, 91.0), ab.Run("A", 2, 12.0, 4e7, 81.0),
                ab.Run("A", 3, 11.0, 4e7, 82.0), ab.Run("B", 3, 9.5, 4e7, 92.0)]
        text = ab.report(variants, runs, argparse.Namespace(config="sluice-1s", loops=30))
        self.assertIn("- B: --plugin p.wasm", text)
        self.assertIn("| 1 | A | 10.00 | 9.00 |", text)
        self.assertIn("| 2 | B | 12.00 | 11.00 |", text)
        # CPU: differences -1, -1, -1.5: a steady gain; words/s: none at all; RSS: +10 each time.
        self.assertIn("- CPU: A 11.00 s, B 9.83 s (means); B - A -1.17 s (-10.6%)", text)
        self.assertRegex(text, r"- CPU: .*: differ\n")
        self.assertRegex(text, r"- words/s: .*\+0\.00 M .*: cannot tell them apart\n")
        self.assertRegex(text, r"- peak RSS: .*B - A \+10\.00 MiB .*: differ\n")


if __name__ == "__main__":
    unittest.main()
