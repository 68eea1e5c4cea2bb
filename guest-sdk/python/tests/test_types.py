"""Declarations, return annotations and inference by example."""

import dataclasses
import sys
import typing
import unittest

from helpers import T, define, node, runtime
from sluice import types as st


@dataclasses.dataclass
class Reading:
    sensor: str
    value: float


class DeclarationTests(unittest.TestCase):
    def test_python_types_name_their_codecs(self):
        cases = [
            (str, "string"), (bytes, "bytes"), (bytearray, "bytes"), (int, "i64"), (float, "f64"),
            (bool, "bool"), (None, "unit"), (type(None), "unit"), ((str, int), "tuple<string,i64>"),
            (tuple[str, int, bool], "tuple<string,i64,bool>"), (typing.Tuple[str, float], "tuple<string,f64>"),
            ([int], "list<i64>"), (list[str], "list<string>"), (typing.List[int], "list<i64>"),
            (typing.Optional[int], "option<i64>"), (dict, "json"),
            (dict[str, int], "json"), (Reading, "json"), (st.I32, "i32"), (st.U8, "u8"), (st.F32, "f32"),
            (st.Json, "json"), ("tuple<string,i32>", "tuple<string,i32>"),
            ((str, (st.I8, [typing.Optional[bool]])), "tuple<string,tuple<i8,list<option<bool>>>>"),
        ]
        if sys.version_info >= (3, 10):
            cases.append((eval("int | None"), "option<i64>"))
        for decl, want in cases:
            with self.subTest(decl=decl):
                self.assertEqual(T.declared(decl).codec, want)

    def test_what_is_not_a_type_is_refused(self):
        for bad in [(str,), [int, str], typing.Union[int, str], tuple[int, ...], set, "nope", 3]:
            with self.subTest(bad=bad):
                with self.assertRaises(T.TypeDeclarationError):
                    T.declared(bad)

    def test_values_name_their_codecs(self):
        cases = [("x", "string"), (b"x", "bytes"), (1, "i64"), (1.5, "f64"), (True, "bool"),
                 (None, "unit"), (("a", 1), "tuple<string,i64>"), ([1.0], "list<f64>"),
                 ({"a": 1}, "json"), (Reading("s", 1.0), "json"), (("a", ("b", [1])), "tuple<string,tuple<string,list<i64>>>")]
        for value, want in cases:
            with self.subTest(value=value):
                self.assertEqual(T.of_value(value).codec, want)
        for bad in [("a",), [], object(), {1, 2}]:
            with self.subTest(bad=bad):
                with self.assertRaises(T.InferenceError):
                    T.of_value(bad)

    def test_samples(self):
        self.assertEqual(T.parse("tuple<string,bytes,i32,f64,bool,unit>").sample(), ("0", b"0", 1, 1.0, True, None))
        self.assertEqual(T.parse("list<option<i64>>").sample(), [1])
        self.assertEqual(T.parse("json").sample(), {})


def lines(ssc):
    return ssc.queueStream([["a b"]])


class InferenceTests(unittest.TestCase):
    def test_inference_calls_the_function_on_a_sample(self):
        def job(ssc, args):
            s = lines(ssc)
            words = s.flatMap(lambda l: l.split(" "))
            pairs = words.map(lambda w: (w, len(w) * 0.5))
            pairs.mapValues(lambda v: [v]).pprint()
            pairs.flatMapValues(lambda v: (int(v), 2)).pprint()
            pairs.mapPartitions(lambda it: (k for k, _ in it)).pprint()
            words.transform(lambda rdd: [(w, True) for w in rdd]).pprint()
            words.transform(lambda time, rdd: [time]).pprint()
            pairs.map(lambda kv: Reading(kv[0], kv[1])).map(lambda r: r.sensor).pprint()
        g = define(job)
        codecs = [n.codec for n in g.nodes if n.codec]
        self.assertEqual(codecs, ["string", "string", "tuple<string,f64>", "tuple<string,list<f64>>",
                                  "tuple<string,i64>", "string", "tuple<string,bool>", "i64",
                                  "json", "string"])

    def test_declarations_and_annotations_win_over_inference(self):
        def to_pair(w: str) -> tuple[str, st.I32]:
            return (w, 1)

        def split(l) -> typing.Iterator[bytes]:
            raise AssertionError("not called: annotated")

        def job(ssc, args):
            s = lines(ssc)
            s.map(to_pair).pprint()
            s.flatMap(split).pprint()
            s.map(lambda l: (l, 1), output_type=(str, st.U16)).pprint()
            s.map(lambda l: (l, 1), output_type="tuple<string,u8>").pprint()
        g = define(job)
        self.assertEqual([n.codec for n in g.nodes if n.name.startswith(("map", "flatMap"))],
                         ["tuple<string,i32>", "bytes", "tuple<string,u16>", "tuple<string,u8>"])

    def test_an_uninferable_function_fails_define_naming_it_and_showing_how_to_declare(self):
        def job(ssc, args):
            lines(ssc).map(lambda l: l[5]).pprint()
        with self.assertRaises(runtime.TaskError) as cm:
            define(job)
        msg = str(cm.exception)
        self.assertRegex(msg, r"^cannot infer the record type of `map at test_types\.py:\d+` \(calling "
                              r"it on the sample '0' raised IndexError: string index out of range\); "
                              r"declare it: \.map\(f, output_type=\(str, int\)\)$")

        def job2(ssc, args):
            lines(ssc).flatMap(lambda l: []).pprint()
        with self.assertRaises(runtime.TaskError) as cm:
            define(job2)
        self.assertIn("(it returned no element for the sample '0')", str(cm.exception))

        def job3(ssc, args):
            lines(ssc).map(lambda l: (l, 1)).updateStateByKey(lambda vs, s: None).pprint()
        with self.assertRaises(runtime.TaskError) as cm:
            define(job3)
        self.assertIn("cannot infer the state type of `updateStateByKey at", str(cm.exception))
        self.assertIn("state_type=int", str(cm.exception))

    def test_inference_drops_accumulator_adds_and_reads_define_time_broadcasts(self):
        from sluice import shared
        shared.HOST.sums.clear()

        def job(ssc, args):
            acc = ssc.accumulator("seen", 0)
            bl = ssc.broadcast("blacklist", ["x", "y"])
            f = ssc.broadcastFile("words", "/nowhere")

            def tag(w):
                acc.add(1)
                return (w, w in bl.value)
            s = lines(ssc)
            s.map(tag).pprint()
            s.map(lambda w: len(f.value)).pprint()
        with self.assertRaises(runtime.TaskError) as cm:
            define(job)
        self.assertIn("broadcast 'words' is a file", str(cm.exception))
        self.assertEqual(shared.HOST.sums, {})

    def test_state_types_come_from_the_sample_call(self):
        def job(ssc, args):
            pairs = lines(ssc).map(lambda l: (l, 1))
            pairs.updateStateByKey(lambda vs, s: sum(vs) + (s or 0)).pprint()
            pairs.updateStateByKey(lambda vs, s: None, state_type=float).pprint()

            def track(key, value, state):
                state.update((value or 0) * 1.5)
                return key
            mapped = pairs.mapWithState(track, timeout=5)
            mapped.stateSnapshots().pprint()
        g = define(job)
        u1, u2 = [n for n in g.nodes if n.name.startswith("updateStateByKey")]
        self.assertEqual((u1.kind[2], u1.codec), ("i64", "tuple<string,i64>"))
        self.assertEqual((u2.kind[2], u2.codec), ("f64", "tuple<string,f64>"))
        m = node(g, "mapWithState")
        self.assertEqual(m.kind, ("map-with-state", 3, "f64", 5000, None))
        self.assertEqual(m.codec, "string")
        self.assertEqual(node(g, "stateSnapshots").codec, "tuple<string,f64>")


if __name__ == "__main__":
    unittest.main()
