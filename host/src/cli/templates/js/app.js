// {{name}}: the network word count of the Spark Streaming guide, in JavaScript.

export function define(ssc, args) {
  const lines = ssc.socketTextStream(args.require('host'), args.int('port'));
  const words = lines.flatMap((line) => line.split(' '));
  const counts = words.map((word) => [word, 1]).reduceByKey((a, b) => a + b);
  counts.print();
}
