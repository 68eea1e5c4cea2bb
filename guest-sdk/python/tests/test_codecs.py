"""Every case of wit/vectors/codecs.json: encode, decode, and the invalid ones."""

import json
import math
import os
import random
import struct
import unittest

from helpers import REPO, T, codec

VECTORS = os.path.join(REPO, "wit", "vectors", "codecs.json")


def to_python(t, v):
    """A vector's value form (see the file's value_form) as a Python value."""
    k = t.kind
    if k == "bytes":
        return bytes.fromhex(v)
    if k in ("i64", "u64"):
        return int(v)
    if k in ("f32", "f64"):
        return {"NaN": math.nan, "inf": math.inf, "-inf": -math.inf, "-0.0": -0.0}.get(v, v) \
            if isinstance(v, str) else float(v)
    if k == "tuple":
        return tuple(to_python(a, x) for a, x in zip(t.args, v))
    if k == "list":
        return [to_python(t.args[0], x) for x in v]
    if k == "option":
        if not v:
            return None
        inner = to_python(t.args[0], v[0])
        return codec.Some(inner) if t.args[0].kind in ("option", "unit") else inner
    return v


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class VectorTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(VECTORS, encoding="utf-8") as f:
            cls.vectors = json.load(f)

    def test_there_are_vectors(self):
        self.assertGreater(len(self.vectors["cases"]), 40)
        self.assertGreater(len(self.vectors["invalid"]), 10)

    def test_every_case_encodes_to_its_bytes(self):
        for case in self.vectors["cases"]:
            with self.subTest(case=case):
                t = T.parse(case["codec"])
                self.assertEqual(t.codec, case["codec"])
                value = to_python(t, case["value"])
                self.assertEqual(codec.encoder(t)(value).hex(), case["hex"])
                data, ends = codec.encode_rows(t, [value, value])
                self.assertEqual(data.hex(), case["hex"] * 2)

    def test_every_case_decodes_to_its_value(self):
        for case in self.vectors["cases"]:
            with self.subTest(case=case):
                t = T.parse(case["codec"])
                data = bytes.fromhex(case["hex"])
                got = codec.decoder(t)(data, 0, len(data))
                self.assertTrue(same(got, to_python(t, case["value"])),
                                "%r != %r" % (got, case["value"]))
                # The same record inside a partition, after another one.
                padded = b"\xff\xfe" + data
                got = codec.decode_rows(t, padded, [2, len(padded)], 1)
                self.assertTrue(same(got[0], to_python(t, case["value"])))

    def test_every_invalid_case_fails_to_decode(self):
        for case in self.vectors["invalid"]:
            with self.subTest(case=case):
                t = T.parse(case["codec"])
                data = bytes.fromhex(case["hex"])
                with self.assertRaises(codec.DecodeError):
                    codec.decoder(t)(data, 0, len(data))
                with self.assertRaises(codec.DecodeError):
                    codec.decode_rows(t, data, [len(data)])


class EncodeChecks(unittest.TestCase):
    def test_values_that_do_not_fit_are_refused_with_a_reason(self):
        pair = T.parse("tuple<string,i64>")
        for bad, why in [({"a": 1}, "a dict where a tuple of 2 is expected"),
                         (("a", 1.5), "tuple element 1: a float where int is expected"),
                         ((b"a", 1), "tuple element 0: a bytes where str is expected"),
                         (("a", 2 ** 63), "tuple element 1: 9223372036854775808 is out of the range of i64"),
                         (("a", 1, 2), "a tuple of 3 where a tuple of 2 is expected")]:
            with self.subTest(bad=bad):
                with self.assertRaises(codec.EncodeFailure) as cm:
                    codec.encode_rows(pair, [("ok", 1), bad])
                self.assertEqual(cm.exception.index, 1)
                self.assertEqual(cm.exception.detail, why)

    def test_strict_scalars(self):
        refused = [("bytes", 5), ("bytes", "s"), ("bool", 1), ("unit", 0), ("string", b"x"),
                   ("list<i64>", "12"), ("i32", 2 ** 31), ("u8", -1), ("json", {"x": math.nan}),
                   ("json", object())]
        for c, v in refused:
            with self.subTest(codec=c, value=v):
                with self.assertRaises(codec.EncodeFailure):
                    codec.encode_rows(T.parse(c), [v])

    def test_json_dataclasses_round_trip(self):
        import dataclasses

        @dataclasses.dataclass
        class Click:
            user: str
            page: str
            n: int = 0

        t = T.declared(Click)
        self.assertEqual(t.codec, "json")
        data = codec.encoder(t)(Click("u", "p", 2))
        self.assertEqual(data, b'{"user":"u","page":"p","n":2}')
        self.assertEqual(codec.decoder(t)(data, 0, len(data)), Click("u", "p", 2))
        self.assertEqual(t.sample(), Click("0", "0", 1))

    def test_the_fast_pair_encoder_equals_the_generic_one(self):
        rnd = random.Random(7)
        words = ["a", "", "héllo", "日本", "x" * 300, "word"]
        for codec_name in ("tuple<string,i64>", "tuple<string,i32>", "tuple<string,u8>"):
            t = T.parse(codec_name)
            fast = codec.fast_encoder(t)
            self.assertIsNotNone(fast)
            for _ in range(200):
                chunk = [(rnd.choice(words[:2] + words[5:]), rnd.randrange(0, 200))
                         for _ in range(rnd.randrange(0, 20))]
                if rnd.random() < 0.3:
                    chunk.append((rnd.choice(words), rnd.choice([1, -5, 2 ** 40, 1.0, True, "1"])))
                rb = codec.RowsBuilder()
                try:
                    rb.encode(t, chunk, fast)
                    got = rb.finish()
                except codec.EncodeFailure:
                    got = "failure"
                try:
                    want = (b"".join(codec.encode_parts(t, chunk)), list(map(len, codec.encode_parts(t, chunk))))
                    want = (want[0], [sum(want[1][:i + 1]) for i in range(len(want[1]))])
                except codec.EncodeFailure:
                    want = "failure"
                self.assertEqual(got, want, chunk)

    def test_decode_rows_takes_a_range_and_the_ascii_text(self):
        t = T.STRING
        data, ends = codec.encode_rows(t, ["ab", "", "cde", "é", "f"])
        self.assertEqual(codec.decode_rows(t, data, ends, 1, 4), ["", "cde", "é"])
        ascii_data, ascii_ends = codec.encode_rows(t, ["ab", "", "cde"])
        text = codec.ascii_text(t, ascii_data)
        self.assertEqual(codec.decode_rows(t, ascii_data, ascii_ends, 1, 3, text), ["", "cde"])
        self.assertIsNone(codec.ascii_text(t, data))
        with self.assertRaises(codec.DecodeError):
            codec.decode_rows(t, data, [len(data) + 1])


class DescriptorTests(unittest.TestCase):
    def test_parse_refuses_what_is_not_a_codec(self):
        for bad in ["", "str", "tuple<i64>", "tuple<i64,>", "option<i64,i64>", "list<>", "i64 ",
                    "tuple<string,i64", "json<x>", "list<" * 33 + "i64" + ">" * 33]:
            with self.subTest(bad=bad):
                with self.assertRaises(T.TypeDeclarationError):
                    T.parse(bad)
        nested = "list<" * 31 + "i64" + ">" * 31
        self.assertEqual(T.parse(nested).codec, nested)


if __name__ == "__main__":
    unittest.main()
