"""bench/run's refusals of bad options: a `--plugin` that none of the chosen configurations
would run, and no loops."""
import subprocess
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

import bench  # noqa: E402


class RunsPluginTest(unittest.TestCase):
    def test_only_the_rust_word_counts_run_the_replaced_plugin(self):
        plugin = Path("/elsewhere/word-count-new.wasm")
        running = {c.name for c in bench.all_configs() if bench.runs_plugin(c, plugin)}
        # Independently: Sluice's Rust plugin (not Python, JavaScript, Spark or native) for the
        # word count job (not the windowed or stateful one).
        expected = {c.name for c in bench.all_configs() if c.system == "sluice" and c.job == "count"}
        self.assertEqual(running, expected)
        self.assertIn("sluice-1s", running)
        self.assertNotIn("sluice-state", running)

    def test_a_plugin_no_chosen_configuration_runs_is_refused_before_anything_is_built(self):
        done = subprocess.run(
            [sys.executable, str(BENCH / "bench.py"), "--configs", "sluice-state,sluice-window",
             "--plugin", "/elsewhere/word-count-new.wasm", "--no-build"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("bench/run: error: --plugin /elsewhere/word-count-new.wasm replaces the network "
                      "word count's plugin, which none of the configurations chosen runs "
                      "(sluice-window, sluice-state)", done.stderr)


class LoopsTest(unittest.TestCase):
    def test_no_loops_are_refused_before_anything_is_built(self):
        done = subprocess.run([sys.executable, str(BENCH / "bench.py"), "--configs", "sluice-1s", "--loops", "0"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("bench/run: error: --loops 0: the corpus is served 1 time at least", done.stderr)


if __name__ == "__main__":
    unittest.main()
