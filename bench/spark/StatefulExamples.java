// The Spark Streaming guide's stateful examples over a deterministic input, for
// bench/equivalence: the same batches go through Sluice's `keyed-ops` fixture, and
// the script diffs the two outputs batch by batch.
//
// Input: a text file, one line per batch, the batch's pairs as `key value` separated
// by `;` (an empty line is an empty batch). Each line becomes one RDD of a
// queueStream (oneAtATime), so batch i of the run holds line i.
//
// Usage:
//   java <jvm options> -cp 'pyspark/jars/*:classes' StatefulExamples \
//       MODE INPUT [OTHER_INPUT] OUTPUT BATCH_MS WINDOW_MS SLIDE_MS OTHER_WINDOW_MS BATCHES
//
// MODE:
//   update-state        updateStateByKey(running sum; None when it is 0)
//   reduce-window-inv   reduceByKeyAndWindow(+, -, WINDOW, SLIDE)
//   reduce-window-inv-nonzero  the same, with the filter `value != 0`
//   window-join         INPUT.window(WINDOW).join(OTHER_INPUT.window(OTHER_WINDOW))
//
// Every batch is saved with saveAsTextFiles(OUTPUT): OUTPUT-<batch time>/part-*. The
// job stops after BATCHES batches.

import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedList;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.Optional;
import org.apache.spark.api.java.function.Function2;
import org.apache.spark.streaming.Durations;
import org.apache.spark.streaming.api.java.JavaPairDStream;
import org.apache.spark.streaming.api.java.JavaStreamingContext;
import org.apache.spark.streaming.scheduler.StreamingListener;
import org.apache.spark.streaming.scheduler.StreamingListenerBatchCompleted;

import scala.Tuple2;

public final class StatefulExamples {
    public static void main(String[] args) throws Exception {
        String mode = args[0];
        boolean twoInputs = mode.equals("window-join");
        int a = twoInputs ? 1 : 0;
        String input = args[1];
        String otherInput = twoInputs ? args[2] : null;
        String output = args[2 + a];
        long batchMs = Long.parseLong(args[3 + a]);
        long windowMs = Long.parseLong(args[4 + a]);
        long slideMs = Long.parseLong(args[5 + a]);
        long otherWindowMs = Long.parseLong(args[6 + a]);
        int batches = Integer.parseInt(args[7 + a]);

        SparkConf conf = new SparkConf()
                .setAppName("StatefulExamples")
                .setMaster("local[2]")
                .set("spark.ui.enabled", "false");
        JavaStreamingContext ssc = new JavaStreamingContext(conf, Durations.milliseconds(batchMs));
        ssc.sparkContext().setLogLevel("WARN");
        ssc.checkpoint(output + "-checkpoint");

        JavaPairDStream<String, Long> pairs = queue(ssc, input);
        JavaPairDStream<String, ?> result;
        switch (mode) {
            case "update-state":
                Function2<List<Long>, Optional<Long>, Optional<Long>> update = (values, state) -> {
                    long sum = state.orElse(0L);
                    for (long v : values) {
                        sum += v;
                    }
                    return sum == 0 ? Optional.empty() : Optional.of(sum);
                };
                result = pairs.updateStateByKey(update);
                break;
            case "reduce-window-inv":
                result = pairs.reduceByKeyAndWindow(Long::sum, (x, y) -> x - y,
                        Durations.milliseconds(windowMs), Durations.milliseconds(slideMs));
                break;
            case "reduce-window-inv-nonzero":
                result = pairs.reduceByKeyAndWindow(Long::sum, (x, y) -> x - y,
                        Durations.milliseconds(windowMs), Durations.milliseconds(slideMs), 2,
                        kv -> kv._2() != 0L);
                break;
            case "window-join":
                result = pairs.window(Durations.milliseconds(windowMs))
                        .join(queue(ssc, otherInput).window(Durations.milliseconds(otherWindowMs)));
                break;
            default:
                throw new IllegalArgumentException("unknown mode " + mode);
        }
        result.dstream().saveAsTextFiles(output, "");

        CountDownLatch done = new CountDownLatch(1);
        AtomicInteger completed = new AtomicInteger();
        ssc.addStreamingListener(new StreamingListener() {
            @Override
            public void onBatchCompleted(StreamingListenerBatchCompleted batch) {
                if (completed.incrementAndGet() >= batches) {
                    done.countDown();
                }
            }
        });
        ssc.start();
        done.await();
        ssc.stop(true, false);
    }

    /** One RDD per line of `path`: its `key value` pairs, separated by `;`. */
    static JavaPairDStream<String, Long> queue(JavaStreamingContext ssc, String path) throws Exception {
        Queue<JavaRDD<Tuple2<String, Long>>> rdds = new LinkedList<>();
        for (String line : Files.readAllLines(Paths.get(path))) {
            List<Tuple2<String, Long>> batch = new ArrayList<>();
            for (String pair : line.split(";")) {
                if (pair.isEmpty()) {
                    continue;
                }
                String[] kv = pair.split(" ");
                batch.add(new Tuple2<>(kv[0], Long.parseLong(kv[1])));
            }
            rdds.add(ssc.sparkContext().parallelize(batch, 1));
        }
        return ssc.queueStream(rdds, true).mapToPair(t -> t);
    }
}
