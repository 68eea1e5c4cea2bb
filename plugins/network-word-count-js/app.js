// NetworkWordCount, the first example of the Spark Streaming guide, in
// JavaScript: counts the words of the lines a TCP server sends, per batch.
//
// Arguments (--arg KEY=VALUE), as plugins/network-word-count:
//   host, port   the server to read lines from (e.g. `nc -lk 9999`);
//                or instead dir: a directory whose new files are read
//   output       (optional) also save every batch's counts with saveAsTextFiles(output)
//   sqlite       (optional) also save every batch's counts, exactly once, to table word_counts (saveToSqlite)
//   reducer      (optional) closure (default): reduceByKey((a, b) => a + b) in the plugin;
//                builtin: reduceByKey(Reducers.sum), run natively by the host
//
// Lines are split on single spaces exactly like Spark's split(" ").
//
//   guest-sdk/js/build plugins/network-word-count-js target/plugins/network-word-count-js.wasm
//   sluice run target/plugins/network-word-count-js.wasm --arg host=localhost --arg port=9999
import { Reducers } from 'sluice';

export const name = 'NetworkWordCount';

export function define(ssc, args) {
  let lines;
  if (args.has('dir') && !args.has('host') && !args.has('port')) lines = ssc.textFileStream(args.get('dir'));
  else if (!args.has('dir') && args.has('host') && args.has('port')) lines = ssc.socketTextStream(args.get('host'), args.int('port'));
  else throw new Error('give either `host` and `port` (a socket) or `dir` (a text file stream)');

  const pairs = lines.flatMap((line) => line.split(' ')).map((word) => [word, 1]);
  const reducer = args.get('reducer', 'closure');
  let wordCounts;
  if (reducer === 'closure') wordCounts = pairs.reduceByKey((a, b) => a + b);
  else if (reducer === 'builtin') wordCounts = pairs.reduceByKey(Reducers.sum);
  else throw new Error(`argument \`reducer\`: expected \`closure\` or \`builtin\`, got ${JSON.stringify(reducer)}`);

  wordCounts.print();
  if (args.has('output')) wordCounts.saveAsTextFiles(args.get('output'));
  if (args.has('sqlite')) wordCounts.saveToSqlite(args.get('sqlite'), 'word_counts');
}
