"""PySpark's network word count (DStream API), for the side-by-side benchmark (bench/README.md).

The Python NetworkWordCount of the Spark Streaming programming guide, 1-second batches on
local[2], run by the Python of the bench's pyspark venv (bench/.work/venv):

    ssc.socketTextStream(host, port)
       .flatMap(lambda line: line.split(" "))
       .map(lambda word: (word, 1))
       .reduceByKey(lambda a, b: a + b)

Every record goes through Python workers (flatMap, map and the reduce's combiner and merge run
in Python), as in any PySpark DStream job. The settings are those of the Java job
(NetworkWordCount.java): MEMORY_ONLY receiver storage, Kryo, no web UI, 200 ms blocks.

Each batch's counts are saved with saveAsTextFiles(OUTPUT) as OUTPUT-<batch time>/part-*,
formatted "(word,count)" as the Java job's Tuple2 prints them (Python would print
"('word', 1)"), so the runner checks both the same way. A StreamingListener writes one JSON line
per finished batch to METRICS (the format of `sluice run --metrics-json`) and the job stops
once the source has closed and an empty batch follows, as the Java job does.

Usage (the venv's python; `java` on PATH or JAVA_HOME):

    python network_word_count.py HOST PORT OUTPUT METRICS [BATCH_MS] [MASTER] [SOURCE_DONE_FILE] [DRIVER_MEMORY]
"""

import json
import os
import sys
import threading
import time
import warnings

# Workers run the same interpreter (the venv's, which has pyspark), not whatever `python3` is.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from pyspark import SparkConf, SparkContext, StorageLevel  # noqa: E402
from pyspark.streaming import StreamingContext  # noqa: E402
from pyspark.streaming.listener import StreamingListener  # noqa: E402

# Spark's default block interval; batches start only after a receiver's last block is in.
BLOCK_INTERVAL_MS = 200


class BatchListener(StreamingListener):
    """Records every finished batch and decides when the job is over: the source has closed (the
    receiver reported it stopped or failed, or SOURCE_DONE_FILE exists) and then a batch with no
    records completes."""

    def __init__(self, metrics, batch_ms, source_done):
        super().__init__()
        self.out = open(metrics, "w", buffering=1)
        self.batch_ms = batch_ms
        self.source_done = source_done
        self.records_seen = 0
        self.source_ended_at_ms = 0
        self.drained = threading.Event()
        self.lock = threading.Lock()

    def onBatchCompleted(self, batchCompleted):
        # The Java-friendly BatchInfo: delays are longs, -1 when unknown.
        info = batchCompleted.batchInfo()
        batch_time = info.batchTime().milliseconds()
        records = info.numRecords()
        line = {
            "batch_time_ms": batch_time,
            "records": records,
            "processing_ms": info.processingDelay(),
            "scheduling_delay_ms": info.schedulingDelay(),
            "total_delay_ms": info.totalDelay(),
        }
        with self.lock:
            self.out.write(json.dumps(line) + "\n")
            self.records_seen += records
            if self.source_done and os.path.exists(self.source_done):
                self._source_ended("the source-done file exists")
            ended = self.source_ended_at_ms
            # Batches complete in order. An empty one whose interval starts after the end of the
            # source and after the receiver's last block was cut comes after every batch with data.
            if (ended and self.records_seen > 0 and records == 0
                    and batch_time - self.batch_ms > ended + BLOCK_INTERVAL_MS):
                self.drained.set()

    def onReceiverStopped(self, receiverStopped):
        with self.lock:
            self._source_ended("receiver stopped: " + str(receiverStopped.receiverInfo().lastErrorMessage()))

    def onReceiverError(self, receiverError):
        with self.lock:
            self._source_ended("receiver error: " + str(receiverError.receiverInfo().lastErrorMessage()))

    def _source_ended(self, why):
        if not self.source_ended_at_ms:
            self.source_ended_at_ms = int(time.time() * 1000)
            print(f"network_word_count.py: source ended ({why})", file=sys.stderr, flush=True)

    def close(self):
        self.out.close()


def main(argv):
    if len(argv) < 4:
        sys.exit("usage: network_word_count.py HOST PORT OUTPUT METRICS [BATCH_MS] [MASTER] "
                 "[SOURCE_DONE_FILE] [DRIVER_MEMORY]")
    host, port, output, metrics = argv[0], int(argv[1]), argv[2], argv[3]
    batch_ms = int(argv[4]) if len(argv) > 4 else 1000
    master = argv[5] if len(argv) > 5 else "local[2]"
    source_done = argv[6] if len(argv) > 6 else None
    driver_memory = argv[7] if len(argv) > 7 else None

    conf = (SparkConf()
            .setAppName("PythonNetworkWordCount")
            .setMaster(master)
            .set("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
            .set("spark.ui.enabled", "false")
            # pyspark's launcher turns the console progress bar on (a shell default); the Java job has none.
            .set("spark.ui.showConsoleProgress", "false")
            .set("spark.streaming.blockInterval", f"{BLOCK_INTERVAL_MS}ms"))
    if driver_memory:
        # Passed to spark-submit, which starts the driver JVM with it (-Xmx), as the Java job's -Xmx.
        conf.set("spark.driver.memory", driver_memory)
    sc = SparkContext(conf=conf)
    sc.setLogLevel("WARN")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "DStream is deprecated as of Spark 3.4.0"
        ssc = StreamingContext(sc, batch_ms / 1000)

    lines = ssc.socketTextStream(host, port, StorageLevel.MEMORY_ONLY)
    counts = (lines.flatMap(lambda line: line.split(" "))
              .map(lambda word: (word, 1))
              .reduceByKey(lambda a, b: a + b))
    counts.map(lambda kv: "(%s,%d)" % kv).saveAsTextFiles(output)

    listener = BatchListener(metrics, batch_ms, source_done)
    ssc.addStreamingListener(listener)
    ssc.start()
    while not listener.drained.wait(0.2):
        pass
    # Graceful: what has been received is processed before the context stops.
    ssc.stop(stopSparkContext=True, stopGraceFully=True)
    listener.close()


if __name__ == "__main__":
    main(sys.argv[1:])
