"""NetworkWordCount, the first example of the Spark Streaming guide, in Python:
counts the words of the lines a TCP server sends, per batch.

Arguments (``--arg KEY=VALUE``), the same as the Rust ``network-word-count``:

- ``host``, ``port``: the server to read lines from (e.g. ``nc -lk 9999``);
  or instead ``dir``: a directory whose new files are read.
- ``output`` (optional): also save every batch's counts with
  ``saveAsTextFiles(output)``, no suffix.
- ``sqlite`` (optional): also save them, exactly once, to table
  ``word_counts`` of the SQLite database at this path.
- ``reducer`` (optional): ``closure`` (the default) adds the counts with
  ``reduceByKey(lambda a, b: a + b)`` run in the plugin; ``builtin`` uses
  ``reduceByKey(SUM)``, which the host runs natively.

Lines are split on single spaces exactly like Spark's ``split(" ")``.

    guest-sdk/python/build plugins/network-word-count-py target/plugins/network-word-count-py.wasm
    sluice run target/plugins/network-word-count-py.wasm --arg host=localhost --arg port=9999
"""

from sluice import SUM, JobError

APP_NAME = "NetworkWordCount"


def lines(ssc, args):
    if "dir" in args and "host" not in args and "port" not in args:
        return ssc.textFileStream(args["dir"])
    if "host" in args and "port" in args and "dir" not in args:
        return ssc.socketTextStream(args["host"], args.int("port"))
    raise JobError("give either `host` and `port` (a socket) or `dir` (a text file stream)")


def define(ssc, args):
    pairs = lines(ssc, args).flatMap(lambda line: line.split(" ")).map(lambda word: (word, 1))
    reducer = args.get("reducer", "closure")
    if reducer == "closure":
        word_counts = pairs.reduceByKey(lambda a, b: a + b)
    elif reducer == "builtin":
        word_counts = pairs.reduceByKey(SUM)
    else:
        raise JobError("argument `reducer`: expected `closure` or `builtin`, got %r" % reducer)
    word_counts.pprint()
    if "output" in args:
        word_counts.saveAsTextFiles(args["output"])
    if "sqlite" in args:
        word_counts.saveToSqlite(args["sqlite"], "word_counts")
