"""The exports on encoded rows, against independent expectations."""

import random
import struct
import unittest

from helpers import T, codec, define, rows, decoded, runtime
from sluice import SUM, shared

PAIR = T.parse("tuple<string,i64>")


def word_count(ssc, args):
    lines = ssc.queueStream([["x"]])
    lines.flatMap(lambda l: l.split(" ")).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).pprint()


def reference_combine(pairs, f):
    out = {}
    for k, v in pairs:
        out[k] = f(out[k], v) if k in out else v
    return list(out.items())


class ChainTests(unittest.TestCase):
    def test_a_fused_chain_splits_counts_and_combines_in_first_seen_order(self):
        define(word_count)
        out = runtime.run_chain([("apply", 0), ("apply", 1), ("combine", 2)], *rows(T.STRING, ["a b a", "c  a"]))
        self.assertEqual(decoded(PAIR, out), [("a", 3), ("b", 1), ("c", 1), ("", 1)])

    def test_combine_alone_and_the_empty_chain(self):
        define(word_count)
        out = runtime.run_chain([("combine", 2)], *rows(PAIR, [("x", 2), ("y", 5), ("x", 4)]))
        self.assertEqual(decoded(PAIR, out), [("x", 6), ("y", 5)])
        data, ends = rows(T.parse("u8"), [1, 2])
        self.assertEqual(runtime.run_chain([], data, ends), (data, ends))

    def test_random_chains_equal_the_same_functions_over_lists(self):
        def f_map(kv):
            return (kv[0][::-1], kv[1] * 3)

        def f_filter(kv):
            return kv[1] % 3 != 0 or len(kv[0]) % 2 == 0

        def f_flat(kv):
            return [(kv[0] + str(i), kv[1] + i) for i in range(kv[1] % 3)]

        def f_parts(it):
            items = list(it)
            return [(k, v + len(items)) for k, v in reversed(items)]

        def f_reduce(a, b):
            return a * 2 + b

        def job(ssc, args):
            pairs = ssc.queueStream([[("a", 1)]])
            pairs.map(f_map).pprint()
            pairs.filter(f_filter).pprint()
            pairs.flatMap(f_flat).pprint()
            pairs.mapPartitions(f_parts).pprint()
            pairs.reduceByKey(f_reduce).pprint()
        define(job)
        reference = [lambda ps: [f_map(p) for p in ps], lambda ps: [p for p in ps if f_filter(p)],
                     lambda ps: [q for p in ps for q in f_flat(p)], f_parts,
                     lambda ps: reference_combine(ps, f_reduce)]
        rnd = random.Random(1)
        old, runtime.CHUNK = runtime.CHUNK, 7   # many chunks, barriers in the middle
        try:
            for _ in range(300):
                stages = [rnd.randrange(5) for _ in range(rnd.randrange(6))]
                pairs = [(rnd.choice(["", "a", "b", "ab", "é" * 9, "abba" * 5]), rnd.randrange(-4, 5))
                         for _ in range(rnd.randrange(40))]
                chain = [("combine", 4) if s == 4 else ("apply", s) for s in stages]
                want = pairs
                for s in stages:
                    want = list(reference[s](want))
                got = decoded(PAIR, runtime.run_chain(chain, *rows(PAIR, pairs)))
                self.assertEqual(got, want, stages)
        finally:
            runtime.CHUNK = old

    def test_the_word_count_fast_paths_give_what_the_plain_steps_give(self):
        from collections import Counter

        def job(ssc, args):
            words = ssc.queueStream([["x"]]).flatMap(lambda l: l.split(" "))
            words.map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).pprint()      # 1, 2
            words.map(lambda w: (w, 3)).reduceByKey(lambda x, y: x + y).pprint()      # 3, 4
            words.map(lambda w: (w, 1)).reduceByKey(SUM).pprint()                     # 5
            words.map(lambda w: (w, 1), output_type=(str, st.I32)).pprint()           # 6
            words.map(lambda w: (w, 1.0)).reduceByKey(lambda a, b: a + b).pprint()    # 7, 8
            words.map(lambda w: (w.upper(), len(w) % 2)).reduceByKey(lambda a, b: a + b).pprint()  # 9, 10
        from sluice import types as st
        define(job)
        table = runtime.INSTANCE.table
        self.assertEqual([getattr(e, "constant", None) for e in table], [None, 1, None, 3, None, 1, 1, None, None, None, None])
        self.assertTrue(table[2].adds and table[4].adds and table[8].adds)
        rnd = random.Random(3)
        vocabulary = ["a", "", "bb", "é", "日本", "x" * 300, "w1", "w2"]
        old, runtime.CHUNK = runtime.CHUNK, 5
        try:
            for _ in range(100):
                lines = [" ".join(rnd.choice(vocabulary[:3] + vocabulary[6:] if rnd.random() < 0.7 else vocabulary)
                                  for _ in range(rnd.randrange(4))) for _ in range(rnd.randrange(12))]
                words = [w for l in lines for w in l.split(" ")]
                counts = list(Counter(words).items())
                inp = rows(T.STRING, lines)
                got = decoded(PAIR, runtime.run_chain([("apply", 0), ("apply", 1), ("combine", 2)], *inp))
                self.assertEqual(got, counts)
                got = decoded(PAIR, runtime.run_chain([("apply", 0), ("apply", 3), ("combine", 4)], *inp))
                self.assertEqual(got, [(w, 3 * n) for w, n in counts])
                got = decoded(PAIR, runtime.run_chain([("apply", 0), ("apply", 5)], *inp))
                self.assertEqual(got, [(w, 1) for w in words])
                i32 = T.parse("tuple<string,i32>")
                got = decoded(i32, runtime.run_chain([("apply", 0), ("apply", 6)], *inp))
                self.assertEqual(got, [(w, 1) for w in words])
                f64 = T.parse("tuple<string,f64>")
                got = decoded(f64, runtime.run_chain([("apply", 0), ("apply", 7), ("combine", 8)], *inp))
                self.assertEqual(got, [(w, float(n)) for w, n in counts])
                upper = Counter()
                for w in words:
                    upper[w.upper()] += len(w) % 2
                got = decoded(PAIR, runtime.run_chain([("apply", 0), ("apply", 9), ("combine", 10)], *inp))
                self.assertEqual(got, list(upper.items()))
        finally:
            runtime.CHUNK = old

    def test_combine_keys_by_encoding_for_float_and_json_keys(self):
        def job(ssc, args):
            ssc.queueStream([[(0.0, 1)]]).reduceByKey(lambda a, b: a + b).pprint()
            ssc.queueStream([[({"k": 1}, 1)]]).reduceByKey(lambda a, b: a + b).pprint()
        define(job)
        self.assertFalse(runtime.INSTANCE.table[0].by_value)
        t = T.parse("tuple<f64,i64>")
        out = runtime.run_chain([("combine", 0)], *rows(t, [(0.0, 1), (-0.0, 2), (0.0, 3)]))
        got = decoded(t, out)
        self.assertEqual([(struct.pack("<d", k), v) for k, v in got],
                         [(struct.pack("<d", 0.0), 4), (struct.pack("<d", -0.0), 2)])
        t = T.parse("tuple<json,i64>")
        out = runtime.run_chain([("combine", 1)], *rows(t, [({"k": 1}, 1), ({"k": 1}, 2), ([1], 1)]))
        self.assertEqual(decoded(t, out), [({"k": 1}, 3), ([1], 1)])


class GroupAndStateTests(unittest.TestCase):
    def test_reduce_groups_folds_left_and_copies_the_key_bytes(self):
        def job(ssc, args):
            ssc.queueStream([[("a", 1)]]).reduceByKey(lambda a, b: a * 10 + b).pprint()
        define(job)
        groups = T.parse("tuple<string,list<i64>>")
        out = runtime.reduce_groups(0, *rows(groups, [("k", [1, 2, 3]), ("", [7]), ("none", [])]))
        self.assertEqual(decoded(PAIR, out), [("k", 123), ("", 7)])

    def test_update_state_matches_the_codecs_example(self):
        def job(ssc, args):
            ssc.queueStream([[("a", 1)]]).updateStateByKey(
                lambda new, s: None if sum(new) + (s or 0) == 0 else sum(new) + (s or 0)).pprint()
        define(job)
        record = bytes.fromhex("01000000612c0000000200000010000000040000000200000005000000000000001000000004000000"
                               "010000000700000000000000010a00000000000000")
        data, ends = runtime.update_state(0, 1000, record, [len(record)])
        self.assertEqual((data.hex(), ends), ("011b00000000000000", [9]))
        t = T.parse("tuple<string,list<tuple<u32,i64>>,option<i64>>")
        out = runtime.update_state(0, 1000, *rows(t, [("b", [], 3), ("c", [(1, 4), (1, -4)], None),
                                                      ("d", [(3, 2), (1, 5), (2, 2)], 1)]))
        self.assertEqual(decoded(T.parse("option<i64>"), out), [3, None, 16])
        err = runtime.update_state
        bad = bytes.fromhex("010000006108000000010000000800")
        with self.assertRaises(runtime.TaskError) as cm:
            err(0, 5, bad, [len(bad)])
        self.assertRegex(str(cm.exception), r"^updateStateByKey at test_runtime\.py:\d+: batch 5 ms: "
                                            r"cannot decode input record 0")

    def test_update_state_with_runs_gets_the_runs_as_sent_and_the_same_states(self):
        seen = []

        def by_runs(runs, s):
            seen.append(runs)
            if any(v == 0 for _, v in runs):
                return None
            return sum(n * v for n, v in runs) + (s or 0)

        def job(ssc, args):
            pairs = ssc.queueStream([[("a", 1)]])
            pairs.updateStateByKeyRuns(by_runs).pprint()
            pairs.updateStateByKey(lambda new, s: None if 0 in new else sum(new) + (s or 0)).pprint()
        define(job)
        records = [("a", [(2, 5), (1, 7)], 10), ("b", [(1, 1)], None), ("c", [(1, 0)], 4), ("d", [], 9),
                   ("e", [(3, 2), (1, 5), (2, 2)], 1)]
        t = T.parse("tuple<string,list<tuple<u32,i64>>,option<i64>>")
        out = decoded(T.parse("option<i64>"), runtime.update_state(0, 1000, *rows(t, records)))
        self.assertEqual(out, decoded(T.parse("option<i64>"), runtime.update_state(1, 1000, *rows(t, records))))
        self.assertEqual(out, [27, 1, None, 9, 16])
        self.assertEqual([list(r) for r in seen[-len(records):]], [list(runs) for _, runs, _ in records])
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.update_state(0, 5, *rows(t, [("a", [(1, 2), (0, 3)], None)]))
        self.assertRegex(str(cm.exception), r"^updateStateByKey at test_runtime\.py:\d+: batch 5 ms: cannot decode "
                                            r"input record 0 .*: tuple element 1: run 1: a count of 0$")

    def test_a_run_of_values_that_change_in_place_gives_distinct_objects(self):
        seen = []

        def update(new, s):
            seen.append(new)
            new[0].append(9)
            return len(new)

        def job(ssc, args):
            ssc.queueStream([[("a", [1])]]).updateStateByKey(update).pprint()
        define(job)
        t = T.parse("tuple<string,list<tuple<u32,list<i64>>>,option<i64>>")
        out = runtime.update_state(0, 1000, *rows(t, [("a", [(3, [1, 2]), (1, [5])], None)]))
        self.assertEqual(decoded(T.parse("option<i64>"), out), [4])
        # (define's inference by example called it first, on a sample.)
        self.assertEqual(seen[-1], [[1, 2, 9], [1, 2], [1, 2], [5]])

    def test_more_values_than_a_list_holds_are_refused_before_any_is_made(self):
        # The limit (a list's most items) lowered to 4: values that can
        # change in place (copied) and values that cannot (repeated).
        def job(ssc, args):
            ssc.queueStream([[("a", [1])]]).updateStateByKey(lambda new, s: len(new) + (s or 0)).pprint()
            ssc.queueStream([[("a", 1)]]).updateStateByKey(lambda new, s: len(new) + (s or 0)).pprint()
        define(job)
        lists = T.parse("tuple<string,list<tuple<u32,list<i64>>>,option<i64>>")
        scalars = T.parse("tuple<string,list<tuple<u32,i64>>,option<i64>>")
        limit = runtime.MAX_VALUES
        runtime.MAX_VALUES = 4
        try:
            for fid, t, runs in ((0, lists, [(3, [1]), (2, [2])]), (1, scalars, [(3, 1), (2, 2)])):
                with self.assertRaises(runtime.TaskError) as cm:
                    runtime.update_state(fid, 5, *rows(t, [("a", runs, None)]))
                self.assertRegex(str(cm.exception), r"tuple element 1: 5 values are more than a list holds$")
                out = runtime.update_state(fid, 5, *rows(t, [("a", runs[:1] + [(1, runs[1][1])], None)]))
                self.assertEqual(decoded(T.parse("option<i64>"), out), [4])
        finally:
            runtime.MAX_VALUES = limit

    def test_a_run_count_of_0_fails_naming_the_record_and_the_run(self):
        seen = []

        def track(key, value, state):
            seen.append(value)
            value.append(9)
            return (key, len(value))

        def job(ssc, args):
            pairs = ssc.queueStream([[("a", [1])]])
            pairs.updateStateByKey(lambda new, s: len(new) + (s or 0)).pprint()
            pairs.mapWithState(track, state_type=int).pprint()
        define(job)
        t = T.parse("tuple<string,list<tuple<u32,list<i64>>>,option<i64>>")
        for runs in ([(1, [2]), (0, [3])], [(0, [3])]):
            with self.assertRaises(runtime.TaskError) as cm:
                runtime.update_state(0, 5, *rows(t, [("a", runs, None)]))
            self.assertRegex(str(cm.exception), r"^updateStateByKey at .*: batch 5 ms: cannot decode input record 0 "
                                                r"as tuple<k,list<tuple<u32,list<i64>>>,option<i64>>: "
                                                r"tuple element 1: run %d: a count of 0$" % (len(runs) - 1))
        t = T.parse("tuple<string,option<i64>,option<list<tuple<u32,list<i64>>>>>")
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.map_with_state(1, 5, *rows(t, [("a", None, [(2, [1]), (0, [1])])]))
        self.assertRegex(str(cm.exception), r"^mapWithState at .*: batch 5 ms: cannot decode input record 0 as "
                                            r"tuple<string,option<i64>,option<list<tuple<u32,list<i64>>>>>: "
                                            r"tuple element 2: run 1: a count of 0$")
        # A run of two lists: the function gets two distinct lists.
        seen.clear()
        out = runtime.map_with_state(1, 5, *rows(t, [("a", None, [(2, [1, 2])])]))
        self.assertEqual(decoded(T.parse("tuple<option<i64>,list<tuple<string,i64>>>"), out), [(None, [("a", 3), ("a", 3)])])
        self.assertEqual(seen, [[1, 2, 9], [1, 2, 9]])
        self.assertIsNot(seen[0], seen[1])

    def test_map_with_state_calls_once_per_value_and_once_for_a_timing_out_key(self):
        def track(key, value, state):
            if value is None:
                return (key, -1 if state.isTimingOut() else -2)
            total = (state.get() if state.exists() else 0) + value
            if total > 100:
                state.remove()
            else:
                state.update(total)
            return (key, total)

        def misuse(key, value, state):
            state.update(1)
            return (key, 0)

        def job(ssc, args):
            pairs = ssc.queueStream([[("a", 1)]])
            pairs.mapWithState(track, timeout=5).pprint()
            pairs.mapWithState(misuse).pprint()
        define(job)
        t = T.parse("tuple<string,option<i64>,option<list<tuple<u32,i64>>>>")
        out_t = T.parse("tuple<option<i64>,list<tuple<string,i64>>>")
        out = runtime.map_with_state(0, 1000, *rows(t, [("a", None, [(1, 1), (1, 2)]), ("b", 4, None),
                                                        ("c", 50, [(1, 60)]), ("d", 1, [(3, 2)])]))
        self.assertEqual(decoded(out_t, out), [(3, [("a", 1), ("a", 3)]), (4, [("b", -1)]),  # the state of a timing-out key is ignored
                                               (None, [("c", 110)]), (7, [("d", 3), ("d", 5), ("d", 7)])])
        # wit/vectors/codecs.json's map-with-state record: the run (2, 1).
        vector = bytes.fromhex("0100000061010000000001010000001000000004000000020000000100000000000000")
        out = runtime.map_with_state(0, 1000, vector, [len(vector)])
        self.assertEqual(decoded(out_t, out), [(2, [("a", 1), ("a", 2)])])
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.map_with_state(1, 1000, *rows(t, [("b", 4, None)]))
        self.assertRegex(str(cm.exception), r"^mapWithState at .*: batch 1000 ms, input record 0: cannot "
                                            r"update the state of a key that is timing out$")

    def test_transform_reduce_all_and_foreach_partition(self):
        seen = []

        def job(ssc, args):
            nums = ssc.queueStream([[1]])
            nums.transform(lambda rdd: sorted(rdd, reverse=True)[:2]).pprint()
            nums.transform(lambda time, rdd: [time + len(rdd)]).pprint()
            nums.reduce(lambda a, b: a - b).pprint()
            acc = ssc.accumulator("n", 0)
            facc = ssc.accumulator("x", 0.0)

            def out(t, p, records):
                acc.add(len(records))
                facc.add(0.5)
                seen.append((t, p, records))
            nums.foreachPartition(out)
        define(job)
        i64 = T.I64_T
        self.assertEqual(decoded(i64, runtime.transform(0, 7, *rows(i64, [3, 9, 1]))), [9, 3])
        self.assertEqual(decoded(i64, runtime.transform(1, 7, *rows(i64, [3, 9, 1]))), [10])
        self.assertEqual(decoded(i64, runtime.reduce_all(2, *rows(i64, [10, 2, 3]))), [5])
        self.assertEqual(runtime.reduce_all(2, b"", []), (b"", []))
        shared.HOST.sums.clear()
        runtime.foreach_partition(3, 2000, 1, *rows(i64, [4, 5]))
        self.assertEqual(seen, [(2000, 1, [4, 5])])
        self.assertEqual(shared.HOST.sums, {"n": 2, "x": 0.5})

    def test_foreach_rdd_with_foreach_partition_or_foreach_runs_per_partition(self):
        sent = []

        def send_partition(it):
            sent.append(("partition", list(it)))

        def job(ssc, args):
            nums = ssc.queueStream([[1]])
            nums.foreachRDD(lambda rdd: rdd.foreachPartition(send_partition))
            nums.foreachRDD(lambda time, rdd: rdd.foreach(lambda r: sent.append(("record", r))))
        g = define(job)
        self.assertEqual([n.kind for n in g.nodes[1:]], [("foreach-partition", 0), ("foreach-partition", 1)])
        runtime.foreach_partition(0, 1000, 0, *rows(T.I64_T, [4, 5]))
        runtime.foreach_partition(1, 1000, 0, *rows(T.I64_T, [6]))
        self.assertEqual(sent, [("partition", [4, 5]), ("record", 6)])

    def test_broadcast_values_come_from_the_host_after_define(self):
        got = []

        def job(ssc, args):
            b = ssc.broadcast("words", ["x", "y"])
            ssc.queueStream([["x"]]).filter(lambda w: got.append(b.value) or w not in b.value).pprint()
        g = define(job)
        shared.HOST.broadcasts["words"] = g.broadcasts[0][1][1]
        out = runtime.run_chain([("apply", 0)], *rows(T.STRING, ["x", "z"]))
        self.assertEqual(decoded(T.STRING, out), ["z"])
        self.assertEqual(got, [["x", "y"], ["x", "y"]])


class ErrorTests(unittest.TestCase):
    def test_a_user_exception_names_the_operator_and_shows_the_traceback_tail(self):
        def boom(word):
            if word == "boom":
                raise ValueError("conformance failure on word boom")
            return (word, 1)

        def job(ssc, args):
            ssc.queueStream([["a"]]).map(boom).reduceByKey(SUM).pprint()
        define(job)
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.run_chain([("apply", 0)], *rows(T.STRING, ["a", "boom"]))
        self.assertRegex(str(cm.exception),
                         r"^map at test_runtime\.py:\d+: conformance failure on word boom\n"
                         r"Traceback \(most recent call last, your code only\):\n"
                         r'  File "test_runtime\.py", line \d+, in boom\n'
                         r'    raise ValueError\("conformance failure on word boom"\)\n'
                         r"ValueError: conformance failure on word boom$")

    def test_the_stage_that_failed_is_named_in_a_chain(self):
        def job(ssc, args):
            s = ssc.queueStream([["a"]])
            s.map(lambda w: w).flatMap(lambda w: [w, 1 / len(w)]).pprint()
            s.map(lambda w: (w, 1)).reduceByKey(lambda a, b: a / 0).pprint()
        define(job)
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.run_chain([("apply", 0), ("apply", 1)], *rows(T.STRING, ["a", ""]))
        self.assertRegex(str(cm.exception), r"^flatMap at .*: division by zero\n")
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.run_chain([("apply", 2), ("combine", 3)], *rows(T.STRING, ["a", "a"]))
        self.assertRegex(str(cm.exception), r"^reduceByKey at .*: division by zero\n")

    def test_a_value_that_does_not_fit_names_the_operator_type_and_codec(self):
        def job(ssc, args):
            ssc.queueStream([["a"]]).map(lambda w: (w, 1) if w != "d" else {"w": w}).pprint()
        define(job)
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.run_chain([("apply", 0)], *rows(T.STRING, ["a", "d"]))
        self.assertRegex(str(cm.exception),
                         r"^map at test_runtime\.py:\d+ returned a dict \(\{'w': 'd'\}\) where the stream's "
                         r"records are tuple<string,i64>: a dict where a tuple of 2 is expected; if the type "
                         r"was inferred wrongly, declare it on the operator, e.g. output_type=\(str, int\)$")

    def test_the_host_calling_a_function_the_wrong_way_is_an_error(self):
        define(word_count)
        a = rows(T.STRING, ["a"])
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.run_chain([("apply", 2)], *a)
        self.assertRegex(str(cm.exception), r"^function 2 \(reduceByKey at .*\) is a reduceByKey reducer, "
                                            r"not a narrow operator's function \(stage apply\)$")
        for call in [lambda: runtime.run_chain([("combine", 0)], *a), lambda: runtime.reduce_all(0, *a),
                     lambda: runtime.foreach_partition(1, 0, 0, *a), lambda: runtime.update_state(0, 0, *a),
                     lambda: runtime.map_with_state(0, 0, *a), lambda: runtime.transform(0, 0, *a)]:
            with self.assertRaises(runtime.TaskError):
                call()
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.reduce_groups(9, *a)
        self.assertEqual(str(cm.exception), "function 9 does not exist: this instance's define registered 3 functions")
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.run_chain([("apply", 1), ("apply", 0)], *a)
        self.assertRegex(str(cm.exception), r"^flatMap at .*: the previous stage of the chain does not produce string records")

    def test_undecodable_input_names_the_operator_and_record(self):
        define(word_count)
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.run_chain([("apply", 0)], b"ok\xc3", [2, 3])
        self.assertRegex(str(cm.exception), r"^flatMap at .*: cannot decode input record 1 as string: invalid UTF-8")
        groups = bytes([1, 0, 0, 0, ord("k"), 1, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3])
        with self.assertRaises(runtime.TaskError) as cm:
            runtime.reduce_groups(2, groups, [16])
        self.assertRegex(str(cm.exception), r"^reduceByKey at .*: cannot decode input record 0 as "
                                            r"tuple<string,list<i64>>: tuple element 1: list element 0: "
                                            r"i64 needs exactly 8 bytes, got 3$")


if __name__ == "__main__":
    unittest.main()
