"""Args: the --arg KEY=VALUE pairs (mirrors the Rust SDK's Args)."""

import unittest

import helpers  # noqa: F401  (puts the SDK on the path)
from sluice import Args, ArgumentError
from sluice.args import parse_duration_ms


class ArgsTests(unittest.TestCase):
    def test_the_last_value_of_a_repeated_key_wins_and_order_is_kept(self):
        args = Args([("k", "1"), ("k", "2"), ("a", "x")])
        self.assertEqual(args["k"], "2")
        self.assertEqual(args.items(), [("k", "1"), ("k", "2"), ("a", "x")])
        self.assertEqual(len(args), 3)
        self.assertIn("a", args)
        self.assertEqual(args.get("nope", "d"), "d")

    def test_missing_and_malformed_arguments_name_the_argument(self):
        args = Args([("port", "http"), ("every", "3d")])
        with self.assertRaises(ArgumentError) as cm:
            args["host"]
        self.assertEqual(str(cm.exception), "missing argument `host` (pass --arg host=VALUE)")
        with self.assertRaises(KeyError):
            args["host"]
        with self.assertRaises(ArgumentError) as cm:
            args.int("port")
        self.assertTrue(str(cm.exception).startswith("argument `port`: cannot parse 'http' as an integer"))
        with self.assertRaises(ArgumentError) as cm:
            args.duration_ms("every")
        self.assertIn("units: ms, s, m, h", str(cm.exception))
        self.assertEqual(args.int("n", 7), 7)
        self.assertEqual(args.float("x", None), None)
        with self.assertRaises(ArgumentError):
            args.int("n")

    def test_durations(self):
        self.assertEqual(parse_duration_ms("500ms"), 500)
        self.assertEqual(parse_duration_ms("30s"), 30000)
        self.assertEqual(parse_duration_ms("5m"), 300000)
        self.assertEqual(parse_duration_ms("2min"), 120000)
        self.assertEqual(parse_duration_ms("1h"), 3600000)
        self.assertEqual(Args([("w", "250ms")]).duration_ms("w"), 250)
        for bad in ["30", "s", "1.5s", "3d", "-1s", ""]:
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError):
                    parse_duration_ms(bad)


if __name__ == "__main__":
    unittest.main()
