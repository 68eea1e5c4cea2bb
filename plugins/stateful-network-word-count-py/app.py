"""StatefulNetworkWordCount, the Spark Streaming guide's ``updateStateByKey``
example, in Python: the running count of every word since the job started.

Arguments (``--arg KEY=VALUE``), the same as the Rust ``stateful-word-count``:

- ``host``, ``port``: the TCP server to read lines from; or instead ``dir``:
  a directory whose new files are read (a text file stream).
- ``output`` (optional): every batch saves the full running counts with
  ``saveAsTextFiles(output)``, as ``(word,count)`` lines.

The running counts are named ``running-counts``, so their state is kept under
a name that does not change with the code around it.

    guest-sdk/python/build plugins/stateful-network-word-count-py target/plugins/stateful-network-word-count-py.wasm
    sluice run target/plugins/stateful-network-word-count-py.wasm \\
        --arg host=localhost --arg port=9999 --checkpoint /tmp/ckpt
"""

from sluice import JobError

APP_NAME = "StatefulNetworkWordCount"


def update_function(new_values, running_count):
    return sum(new_values) + (running_count or 0)


def lines(ssc, args):
    if "dir" in args and "host" not in args and "port" not in args:
        return ssc.textFileStream(args["dir"])
    if "host" in args and "port" in args and "dir" not in args:
        return ssc.socketTextStream(args["host"], args.int("port"))
    raise JobError("give either `host` and `port` (a socket) or `dir` (a text file stream)")


def define(ssc, args):
    ssc.checkpoint("checkpoint")  # as in the guide; Sluice takes it from --checkpoint
    running_counts = (lines(ssc, args)
                      .flatMap(lambda line: line.split(" "))
                      .map(lambda word: (word, 1))
                      .updateStateByKey(update_function)
                      .name("running-counts"))
    running_counts.pprint()
    if "output" in args:
        running_counts.saveAsTextFiles(args["output"])
