// Spark Streaming's network word count, written against the JVM DStream API, for
// the side-by-side benchmark (bench/README.md). It is the job of the Spark Streaming
// programming guide's first example, with 1-second batches on local[2]:
//
//   socketTextStream -> flatMap(split " ") -> mapToPair((w, 1)) -> reduceByKey(+)
//
// and, with MODE, the guide's two stateful forms of it (both checkpoint to OUTPUT-checkpoint,
// as Spark requires for them):
//
//   window: reduceByKeyAndWindow(+, -, 30 s, 1 s, filter count != 0), the incremental form
//   state:  updateStateByKey(running count)
//
// Each batch's counts are saved with saveAsTextFiles(OUTPUT) as OUTPUT-<batch time>/part-*
// ("(word,count)" lines), so the runner can check the totals. A StreamingListener writes
// one JSON line per finished batch to METRICS (the format of `sluice run --metrics-json`)
// and stops the context once the source has closed and a batch with no records follows.
//
// Usage:
//   java <jvm options> -cp 'pyspark/jars/*:classes' NetworkWordCount \
//       HOST PORT OUTPUT METRICS [BATCH_MS] [MASTER] [SOURCE_DONE_FILE] [MODE]
//   java -cp 'pyspark/jars/*:classes' NetworkWordCount --print-jvm-options
//
// --print-jvm-options prints the JVM options Spark's own launcher adds (module opens for
// JDK 17+), so that the runner can start the job with plain `java` and the same flags.

import java.io.FileWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.spark.SparkConf;
import org.apache.spark.api.java.Optional;
import org.apache.spark.launcher.JavaModuleOptions;
import org.apache.spark.storage.StorageLevel;
import org.apache.spark.streaming.Durations;
import org.apache.spark.streaming.api.java.JavaDStream;
import org.apache.spark.streaming.api.java.JavaPairDStream;
import org.apache.spark.streaming.api.java.JavaReceiverInputDStream;
import org.apache.spark.streaming.api.java.JavaStreamingContext;
import org.apache.spark.streaming.scheduler.BatchInfo;
import org.apache.spark.streaming.scheduler.StreamingListener;
import org.apache.spark.streaming.scheduler.StreamingListenerBatchCompleted;
import org.apache.spark.streaming.scheduler.StreamingListenerReceiverError;
import org.apache.spark.streaming.scheduler.StreamingListenerReceiverStopped;

import scala.Option;
import scala.Tuple2;

public final class NetworkWordCount {
    /** Spark's default block interval; batches start only after a receiver's last block is in. */
    static final long BLOCK_INTERVAL_MS = 200;

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("--print-jvm-options")) {
            System.out.println(JavaModuleOptions.defaultModuleOptions());
            return;
        }
        if (args.length < 4) {
            System.err.println("usage: NetworkWordCount HOST PORT OUTPUT METRICS [BATCH_MS] [MASTER] [SOURCE_DONE_FILE] [count|window|state]");
            System.exit(2);
        }
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        String output = args[2];
        String metrics = args[3];
        long batchMs = args.length > 4 ? Long.parseLong(args[4]) : 1000;
        String master = args.length > 5 ? args[5] : "local[2]";
        Path sourceDone = args.length > 6 ? Paths.get(args[6]) : null;
        String mode = args.length > 7 ? args[7] : "count";

        SparkConf conf = new SparkConf()
                .setAppName("NetworkWordCount")
                .setMaster(master)
                // Tuning from the streaming guide: Kryo for shuffled data; no web UI
                // (Sluice runs none in the benchmark either).
                .set("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
                .set("spark.ui.enabled", "false")
                .set("spark.streaming.blockInterval", BLOCK_INTERVAL_MS + "ms");
        JavaStreamingContext ssc = new JavaStreamingContext(conf, Durations.milliseconds(batchMs));
        ssc.sparkContext().setLogLevel("WARN");

        // MEMORY_ONLY: received blocks stay deserialized and unreplicated (the default,
        // MEMORY_AND_DISK_SER_2, would serialize every block and ask for a second copy).
        JavaReceiverInputDStream<String> lines = ssc.socketTextStream(host, port, StorageLevel.MEMORY_ONLY());
        JavaDStream<String> words = lines.flatMap(line -> Arrays.asList(line.split(" ")).iterator());
        JavaPairDStream<String, Integer> pairs = words.mapToPair(w -> new Tuple2<>(w, 1));
        JavaPairDStream<String, Integer> counts;
        switch (mode) {
            case "count":
                counts = pairs.reduceByKey(Integer::sum);
                break;
            case "window":
                ssc.checkpoint(output + "-checkpoint");
                counts = pairs.reduceByKeyAndWindow(Integer::sum, (a, b) -> a - b,
                        Durations.seconds(30), Durations.seconds(1), 2, kv -> kv._2() != 0);
                break;
            case "state":
                ssc.checkpoint(output + "-checkpoint");
                counts = pairs.updateStateByKey((values, state) -> {
                    int sum = state.orElse(0);
                    for (int v : values) {
                        sum += v;
                    }
                    return Optional.of(sum);
                });
                break;
            default:
                throw new IllegalArgumentException("unknown mode " + mode + " (count, window or state)");
        }
        counts.dstream().saveAsTextFiles(output, "");

        BatchListener listener = new BatchListener(metrics, batchMs, sourceDone);
        ssc.addStreamingListener(listener);
        ssc.start();
        listener.sourceEndedAndDrained.await();
        // Graceful: what has been received is processed before the context stops.
        ssc.stop(true, true);
        listener.close();
    }

    /**
     * Records every finished batch and decides when the job is over: the source has
     * closed (the receiver reported it stopped or failed to reconnect, or the runner's
     * SOURCE_DONE_FILE exists) and then a batch with no records completes.
     */
    static final class BatchListener implements StreamingListener {
        final CountDownLatch sourceEndedAndDrained = new CountDownLatch(1);
        private final PrintWriter out;
        private final long batchMs;
        private final Path sourceDone;
        private final AtomicLong recordsSeen = new AtomicLong();
        /** When the end of the source was first noticed (ms since the epoch), or 0. */
        private final AtomicLong sourceEndedAtMs = new AtomicLong();

        BatchListener(String metrics, long batchMs, Path sourceDone) throws IOException {
            this.out = new PrintWriter(new FileWriter(metrics), true);
            this.batchMs = batchMs;
            this.sourceDone = sourceDone;
        }

        @Override
        public void onBatchCompleted(StreamingListenerBatchCompleted completed) {
            BatchInfo info = completed.batchInfo();
            long batchTime = info.batchTime().milliseconds();
            long records = info.numRecords();
            out.printf("{\"batch_time_ms\":%d,\"records\":%d,\"processing_ms\":%d,\"scheduling_delay_ms\":%d,\"total_delay_ms\":%d}%n",
                    batchTime, records, millis(info.processingDelay()), millis(info.schedulingDelay()),
                    millis(info.totalDelay()));
            recordsSeen.addAndGet(records);
            if (sourceDone != null && Files.exists(sourceDone)) {
                sourceEnded("the source-done file exists");
            }
            long endedAt = sourceEndedAtMs.get();
            // Batches complete in order. An empty one whose interval starts after the end
            // of the source and after the receiver's last block was cut comes after every
            // batch that held data.
            if (endedAt > 0 && recordsSeen.get() > 0 && records == 0
                    && batchTime - batchMs > endedAt + BLOCK_INTERVAL_MS) {
                sourceEndedAndDrained.countDown();
            }
        }

        @Override
        public void onReceiverStopped(StreamingListenerReceiverStopped stopped) {
            sourceEnded("receiver stopped: " + stopped.receiverInfo().lastErrorMessage());
        }

        @Override
        public void onReceiverError(StreamingListenerReceiverError error) {
            sourceEnded("receiver error: " + error.receiverInfo().lastErrorMessage());
        }

        private void sourceEnded(String why) {
            if (sourceEndedAtMs.compareAndSet(0, System.currentTimeMillis())) {
                System.err.println("NetworkWordCount: source ended (" + why + ")");
            }
        }

        void close() {
            out.close();
        }

        private static long millis(Option<Object> value) {
            return value.isDefined() ? (Long) value.get() : -1;
        }
    }
}
