"""Graphs of the example jobs and of every operator."""

import re
import unittest

from helpers import T, define, load_app, node, runtime, context
from sluice import COUNT, MAX, MIN, NONZERO, SUM, StateSpec


def app_graph(relative, pairs):
    return context.define(load_app(relative), pairs, "fallback")


def summary(graph):
    return [(n.name.split(" at ")[0], n.kind, n.inputs, n.codec) for n in graph.nodes]


class ExampleJobs(unittest.TestCase):
    def test_network_word_count(self):
        g = app_graph("plugins/network-word-count-py",
                      [("host", "localhost"), ("port", "9999"), ("output", "out/wc")])
        self.assertEqual(g.name, "NetworkWordCount")
        self.assertEqual(summary(g), [
            ("socketTextStream", ("source", ("socket-text", "localhost", 9999)), [], "string"),
            ("flatMap", ("flat-map", 0), [0], "string"),
            ("map", ("map", 1), [1], "tuple<string,i64>"),
            ("reduceByKey", ("reduce-by-key", ("function", 2), None), [2], "tuple<string,i64>"),
            ("pprint", ("print", 10), [3], ""),
            ("saveAsTextFiles", ("save-as-text-files", "out/wc", None), [3], ""),
        ])
        for n in g.nodes:
            self.assertRegex(n.name, r" at app\.py:\d+$")
        self.assertTrue(runtime.INSTANCE.table[2].adds, "a + b combines inline")
        g = app_graph("plugins/network-word-count-py",
                      [("dir", "in"), ("reducer", "builtin"), ("sqlite", "x.db")])
        self.assertEqual(summary(g)[0][1], ("source", ("text-file", "in")))
        self.assertEqual(summary(g)[3][1], ("reduce-by-key", ("sum",), None))
        self.assertEqual(summary(g)[-1][1], ("save-to-sqlite", "x.db", "word_counts"))
        with self.assertRaises(runtime.TaskError) as cm:
            app_graph("plugins/network-word-count-py", [("host", "h"), ("port", "x")])
        self.assertEqual(str(cm.exception),
                         "NetworkWordCount: argument `port`: cannot parse 'x' as an integer: invalid "
                         "literal for int() with base 10: 'x'")
        with self.assertRaises(runtime.TaskError) as cm:
            app_graph("plugins/network-word-count-py", [("host", "h"), ("port", "1"), ("reducer", "x")])
        self.assertEqual(str(cm.exception),
                         "NetworkWordCount: argument `reducer`: expected `closure` or `builtin`, got 'x'")

    def test_stateful_network_word_count(self):
        g = app_graph("plugins/stateful-network-word-count-py", [("host", "h"), ("port", "1")])
        update = node(g, "updateStateByKey")
        self.assertEqual(update.uid, "running-counts")
        self.assertEqual(update.kind, ("update-state-by-key", 2, "i64", None))
        self.assertEqual(update.codec, "tuple<string,i64>")

    def test_conformance_jobs(self):
        base = [("input", "in.txt"), ("per", "3"), ("output", "out/x")]
        jobs = {
            "wordcount-closure": ("reduce-by-key", ("function", 2), None),
            "wordcount-sum": ("reduce-by-key", ("sum",), None),
            "windowed-wordcount": ("reduce-by-key-and-window", ("function", 2), 3, ("function", 4),
                                   (3000, 1000), None),
            "stateful-wordcount": ("update-state-by-key", 2, "i64", None),
            "failing": ("reduce-by-key", ("sum",), None),
        }
        for job, kind in jobs.items():
            with self.subTest(job=job):
                g = app_graph("tests/conformance/plugins/conformance-py",
                              base + [("job", job), ("window-ms", "3000"), ("slide-ms", "1000")])
                self.assertEqual(g.name, "Conformance")
                self.assertEqual(g.nodes[0].kind, ("source", ("lines-file", "in.txt", 3)))
                self.assertEqual(g.nodes[3].kind, kind)
                self.assertEqual(g.nodes[3].codec, "tuple<string,i64>")
                self.assertEqual(g.nodes[-1].kind, ("save-as-text-files", "out/x", None))
        g = app_graph("tests/conformance/plugins/conformance-py", base + [("job", "join"), ("input2", "b")])
        j = node(g, "join")
        self.assertEqual((j.kind, j.codec), (("join", "inner", None), "tuple<string,tuple<i64,i64>>"))
        self.assertEqual(len(j.inputs), 2)
        g = app_graph("tests/conformance/plugins/conformance-py", [("job", "foreach-partition"),
                                                                   ("input", "i"), ("per", "2")])
        self.assertEqual(g.nodes[-1].kind, ("foreach-partition", 3))
        with self.assertRaises(runtime.TaskError) as cm:
            app_graph("tests/conformance/plugins/conformance-py", [("input", "i")])
        self.assertEqual(str(cm.exception), "Conformance: missing argument `job` (pass --arg job=VALUE)")

    def test_define_is_deterministic(self):
        args = [("host", "h"), ("port", "1")]
        a = summary(app_graph("plugins/network-word-count-py", args))
        b = summary(app_graph("plugins/network-word-count-py", args))
        self.assertEqual([n for n in a], [n for n in b])


def everything(ssc, args):
    ssc.remember(90)
    ssc.remember("2m")
    numbers = ssc.queueStream([[1, 2, 3], [], [10]])
    lines = ssc.queueStreamFromLinesFile("in.txt", 2)
    rate = ssc.rateStream(5)
    files = ssc.textFileStream("dir")
    all_lines = ssc.union(lines, files)
    all_lines.union(lines).repartition(3).count().pprint(3)
    numbers.reduce(lambda a, b: a + b).pprint()
    numbers.reduce(MAX).pprint()
    numbers.filter(lambda n: n % 2 == 1).mapPartitions(lambda it: [len(list(it))]).pprint()
    rate.map(lambda r: r[1]).countByValue().pprint()
    pairs = lines.map(lambda l: (l, 1.5))
    pairs.groupByKey(2).pprint()
    pairs.reduceByKey(SUM).pprint()
    pairs.reduceByKey(MIN, 4).pprint()
    pairs.reduceByKey(COUNT).pprint()
    pairs.reduceByKey(max, numPartitions=2).foreachPartition(lambda t, p, rs: None)
    pairs.window(30, 10).countByWindow(60, "20s").pprint()
    lines.reduceByWindow(lambda a, b: a + b, None, 4, 2).pprint()
    lines.countByValueAndWindow(4, 2).pprint()
    pairs.reduceByKeyAndWindow(SUM, None, "4s", filterFunc=NONZERO).pprint()
    pairs.reduceByKeyAndWindow(lambda a, b: a + b, lambda a, b: a - b, 30, 10,
                               filterFunc=lambda kv: kv[1] != 0).name("windowed").checkpoint(20).pprint()
    other = lines.map(lambda l: (l, True))
    pairs.leftOuterJoin(other).pprint()
    pairs.rightOuterJoin(other, 3).pprint()
    pairs.fullOuterJoin(other).pprint()
    pairs.cogroup(other).pprint()
    pairs.joinDataset("s3://b/ref.tsv", value_type=int).pprint()
    pairs.leftOuterJoinDataset("ref.tsv").saveToSqlite("x.db", "t")
    pairs.mapWithState(StateSpec.function(lambda k, v, s: len(k)).timeout("5s"),
                       state_type=float).name("mapped").stateSnapshots().saveAsTextFiles("o", "txt")
    ssc.broadcast("n", 5)
    ssc.broadcastFile("f", "/f.txt")


class EveryOperator(unittest.TestCase):
    def test_every_operator_becomes_the_documented_node(self):
        g = define(everything)
        self.assertEqual(g.remember_ms, 120000)
        self.assertEqual(g.broadcasts, [("n", ("bytes", (5).to_bytes(8, "little"))), ("f", ("file", "/f.txt"))])
        q = g.nodes[0]
        self.assertEqual(q.codec, "i64")
        self.assertEqual([ends for _, ends in q.kind[1][1]], [[8, 16, 24], [], [8]])
        kinds = {}
        for n in g.nodes:
            kinds.setdefault(n.name.split(" at ")[0], []).append((n.kind, n.codec))
        self.assertEqual(kinds["rateStream"], [(("source", ("rate", 5)), "tuple<i64,i64>")])
        self.assertEqual([k for k, _ in kinds["union"]], [("union",), ("union",)])
        unions = [n for n in g.nodes if n.kind == ("union",)]
        self.assertEqual([u.inputs for u in unions], [[1, 3], [4, 1]])
        self.assertEqual(kinds["repartition"], [(("repartition", 3), "string")])
        self.assertEqual(kinds["pprint"][0][0], ("print", 3))
        self.assertEqual(kinds["reduce"], [(("reduce", ("function", 0)), "i64"), (("reduce", ("max",)), "i64")])
        self.assertEqual(kinds["countByValue"][1], (("reduce-by-key", ("count",), None), "tuple<i64,i64>"))
        self.assertEqual(kinds["countByValue"][0][1], "tuple<i64,unit>")
        self.assertEqual(kinds["groupByKey"], [(("group-by-key", 2), "tuple<string,list<f64>>")])
        self.assertEqual([k for k, _ in kinds["reduceByKey"]][:3],
                         [("reduce-by-key", ("sum",), None), ("reduce-by-key", ("min",), 4),
                          ("reduce-by-key", ("count",), None)])
        self.assertEqual(kinds["reduceByKey"][2][1], "tuple<string,i64>")
        self.assertEqual(kinds["window"], [(("window", 30000, 10000), "tuple<string,f64>")])
        self.assertEqual([k for k, _ in kinds["countByWindow"]],
                         [("count",), ("window", 60000, 20000), ("reduce", ("sum",))])
        rbw = [k for k, _ in kinds["reduceByWindow"]]
        self.assertEqual(rbw[1], ("window", 4000, 2000))
        self.assertEqual(rbw[0], rbw[2])
        cbvw = kinds["countByValueAndWindow"]
        self.assertEqual(cbvw[1], (("reduce-by-key-and-window", ("count",), None, ("nonzero",), (4000, 2000), None),
                                   "tuple<string,i64>"))
        rbkw = [k for k, _ in kinds["reduceByKeyAndWindow"]]
        self.assertEqual(rbkw[0], ("reduce-by-key-and-window", ("sum",), None, ("nonzero",), (4000, None), None))
        self.assertEqual(rbkw[1][0:3], ("reduce-by-key-and-window", ("function", rbkw[1][1][1]), rbkw[1][1][1] + 1))
        self.assertEqual(rbkw[1][3], ("function", rbkw[1][1][1] + 2))
        windowed = node(g, "reduceByKeyAndWindow")
        windowed = [n for n in g.nodes if n.uid == "windowed"][0]
        self.assertEqual(windowed.checkpoint_ms, 20000)
        self.assertEqual(kinds["leftOuterJoin"][0], (("join", "left-outer", None), "tuple<string,tuple<f64,option<bool>>>"))
        self.assertEqual(kinds["rightOuterJoin"][0], (("join", "right-outer", 3), "tuple<string,tuple<option<f64>,bool>>"))
        self.assertEqual(kinds["fullOuterJoin"][0][1], "tuple<string,tuple<option<f64>,option<bool>>>")
        self.assertEqual(kinds["cogroup"][0], (("cogroup", None), "tuple<string,tuple<list<f64>,list<bool>>>"))
        self.assertEqual(kinds["joinDataset"][0], (("join-dataset", "s3://b/ref.tsv", "inner"), "tuple<string,tuple<f64,i64>>"))
        self.assertEqual(kinds["leftOuterJoinDataset"][0][1], "tuple<string,tuple<f64,option<string>>>")
        self.assertEqual(kinds["saveToSqlite"][0][0], ("save-to-sqlite", "x.db", "t"))
        mapped = [n for n in g.nodes if n.uid == "mapped"][0]
        self.assertEqual(mapped.kind[2:], ("f64", 5000, None))
        self.assertEqual(mapped.codec, "i64")
        self.assertEqual(kinds["stateSnapshots"][0], (("state-snapshots",), "tuple<string,f64>"))
        self.assertEqual(kinds["saveAsTextFiles"][0][0], ("save-as-text-files", "o", "txt"))
        self.assertEqual(kinds["foreachPartition"][0][0][0], "foreach-partition")
        for i, n in enumerate(g.nodes):
            self.assertTrue(all(x < i for x in n.inputs), n)
            self.assertRegex(n.name, r"^\w+ at test_graph\.py:\d+$")

    def test_mistakes_fail_define_naming_the_operator(self):
        def q(ssc):
            return ssc.queueStream([[("a", 1)]])
        cases = [
            (lambda ssc, a: ssc.union(), r"^union at test_graph\.py:\d+: needs at least one stream$"),
            (lambda ssc, a: q(ssc).reduceByKey(SUM, 0).pprint(),
             r"^reduceByKey at .*: the number of partitions must be at least 1, got 0$"),
            (lambda ssc, a: (q(ssc).reduceByKey(COUNT).name("twice").pprint(),
                             q(ssc).reduceByKey(SUM).name("twice")),
             r"^reduceByKey at test_graph\.py:\d+: the name 'twice' is already the name of reduceByKey at"),
            (lambda ssc, a: q(ssc).window(0.0015).pprint(),
             r"^window at .*: the window's length: 0\.0015 is not a whole number of milliseconds$"),
            (lambda ssc, a: q(ssc).window("3d").pprint(), r"units: ms, s, m, h"),
            (lambda ssc, a: ssc.queueStream([["x"]]).reduceByKey(SUM),
             r"^reduceByKey at .*: needs a stream of \(key, value\) pairs, and its records are string$"),
            (lambda ssc, a: ssc.queueStream([[("a", "b")]]).reduceByKey(SUM),
             r"the built-in SUM needs numeric values .* and the values are string$"),
            (lambda ssc, a: q(ssc).join(ssc.queueStream([[(1, 1)]])),
             r"^join at .*: the keys of the two streams have different types: string and i64$"),
            (lambda ssc, a: ssc.queueStream([[]]), r"cannot infer the record type of an empty queue"),
            (lambda ssc, a: ssc.queueStreamFromLinesFile("f", 0), r"linesPerBatch must be at least 1"),
            (lambda ssc, a: q(ssc).reduceByKeyAndWindow(SUM, lambda a, b: a, 2),
             r"a built-in reducer needs no inverse function"),
            (lambda ssc, a: ssc.accumulator("n", 5), r"an accumulator starts at 0 or 0.0, got 5"),
            (lambda ssc, a: (ssc.broadcast("b", 1), ssc.broadcast("b", 2)), r"the name 'b' is already a broadcast's"),
            (lambda ssc, a: q(ssc).map(lambda kv: {1, 2}),
             r"cannot infer the record type of `map at .*` \(a value of type set has no codec for the sample \('0', 1\)\)"),
            (lambda ssc, a: q(ssc).map(lambda kv: kv, output_type=set),
             r"^map at .*: output_type=<class 'set'>: <class 'set'> is not a record type"),
            (lambda ssc, a: q(ssc).foreachRDD(lambda rdd: rdd.collect()),
             r"^foreachRDD at .*: rdd.collect is not available"),
            (lambda ssc, a: q(ssc).foreachRDD(lambda rdd: None), r"called neither rdd.foreachPartition"),
            (lambda ssc, a: 1 / 0, r"^TestJob: define failed: division by zero\nTraceback \(most recent call last, your code only\):\n  File \"test_graph\.py\", line \d+, in <lambda>\n.*\nZeroDivisionError: division by zero$"),
        ]
        for job, pattern in cases:
            with self.subTest(pattern=pattern):
                with self.assertRaises(runtime.TaskError) as cm:
                    define(job)
                self.assertRegex(str(cm.exception), re.compile(pattern, re.S))


if __name__ == "__main__":
    unittest.main()
