"""bench/ab's parts that do not run a benchmark: variants, pair order, the interval."""
import math
import statistics
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


if __name__ == "__main__":
    unittest.main()
