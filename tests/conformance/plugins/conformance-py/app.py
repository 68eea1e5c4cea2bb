"""The conformance jobs in Python (the same jobs, arguments and outputs as
conformance-rust and conformance-js).

Arguments: ``job=NAME``; ``input=FILE`` and ``per=N`` (the lines of FILE, N
per batch, through the host's lines-file queue source); ``output=PREFIX``
(``saveAsTextFiles(PREFIX)`` of the job's result; without it, ``pprint``);
``input2=FILE`` (join only); ``window-ms=MS``, ``slide-ms=MS`` (windowed only).
``foreach-partition`` writes no files: its output is its function's lines
(``fp <batch time> <partition> <records>``) and accumulators.
Words are each line split on single spaces, like Spark's ``split(" ")``.

Jobs: wordcount-closure, wordcount-sum, windowed-wordcount,
stateful-wordcount, join, foreach-partition, failing.
"""

from sluice import SUM, JobError

APP_NAME = "Conformance"


def words(ssc, args, key="input"):
    lines = ssc.queueStreamFromLinesFile(args[key], args.int("per"))
    return lines.flatMap(lambda line: line.split(" "))


def pairs(ssc, args, key="input"):
    return words(ssc, args, key).map(lambda word: (word, 1))


def fail_on_boom(word):
    if word == "boom":
        raise ValueError("conformance failure on word boom")
    return (word, 1)


def define(ssc, args):
    job = args["job"]
    if job == "wordcount-closure":
        result = pairs(ssc, args).reduceByKey(lambda a, b: a + b)
    elif job == "wordcount-sum":
        result = pairs(ssc, args).reduceByKey(SUM)
    elif job == "windowed-wordcount":
        result = pairs(ssc, args).reduceByKeyAndWindow(
            lambda a, b: a + b, lambda a, b: a - b,
            "%dms" % args.int("window-ms"), "%dms" % args.int("slide-ms"),
            filterFunc=lambda pair: pair[1] > 0)
    elif job == "stateful-wordcount":
        result = pairs(ssc, args).updateStateByKey(
            lambda new, count: sum(new) + (count or 0)).name("running-counts")
    elif job == "join":
        left = pairs(ssc, args).reduceByKey(SUM)
        right = pairs(ssc, args, "input2").reduceByKey(SUM)
        result = left.join(right)
    elif job == "foreach-partition":
        records = ssc.accumulator("fp-records", 0)
        counted = ssc.accumulator("fp-words", 0)

        def report(batch_time_ms, partition, counts):
            records.add(len(counts))
            counted.add(sum(n for _, n in counts))
            print("fp %d %d %d" % (batch_time_ms, partition, len(counts)))
        pairs(ssc, args).reduceByKey(lambda a, b: a + b).foreachPartition(report)
        return
    elif job == "failing":
        result = words(ssc, args).map(fail_on_boom).reduceByKey(SUM)
    else:
        raise JobError('argument `job`: unknown job "%s"' % job)
    if "output" in args:
        result.saveAsTextFiles(args["output"])
    else:
        result.pprint()
