// The conformance suite's jobs in JavaScript: the same jobs, arguments and
// outputs as conformance-rust (tests/conformance/README.md lists them).
//
// --arg job=NAME --arg input=FILE --arg per=N --arg output=PREFIX, plus
// input2 for `join` and window-ms/slide-ms for `windowed-wordcount`.
import { Reducers } from 'sluice';

export const name = 'Conformance';

// A line's words: split on single spaces, as Spark's split(" ").
const words = (line) => line.split(' ');

// [word, 1] for each word of each line of the file argument `input`, `per` lines a batch.
function pairs(ssc, args, input) {
  return ssc.queueStreamFromLinesFile(args.require(input), args.int('per'))
    .flatMap(words)
    .map((w) => [w, 1]);
}

export function define(ssc, args) {
  const output = args.require('output');
  const job = args.require('job');
  let result;
  switch (job) {
    case 'wordcount-closure':
      result = pairs(ssc, args, 'input').reduceByKey((a, b) => a + b);
      break;
    case 'wordcount-sum':
      result = pairs(ssc, args, 'input').reduceByKey(Reducers.sum);
      break;
    case 'windowed-wordcount':
      result = pairs(ssc, args, 'input').reduceByKeyAndWindow(
        (a, b) => a + b,
        (a, b) => a - b,
        args.int('window-ms'),
        args.int('slide-ms'),
        { filter: ([, count]) => count > 0 },
      );
      break;
    case 'stateful-wordcount':
      result = pairs(ssc, args, 'input')
        .updateStateByKey((values, state) => values.reduce((a, b) => a + b, 0) + (state ?? 0))
        .name('running-counts');
      break;
    case 'join': {
      const left = pairs(ssc, args, 'input').reduceByKey(Reducers.sum);
      const right = pairs(ssc, args, 'input2').reduceByKey(Reducers.sum);
      result = left.join(right);
      break;
    }
    case 'foreach-partition': {
      const records = ssc.longAccumulator('fp-records');
      const counted = ssc.longAccumulator('fp-words');
      pairs(ssc, args, 'input')
        .reduceByKey((a, b) => a + b)
        .foreachPartition((batchTimeMs, partition, counts) => {
          records.add(counts.length);
          counted.add(counts.reduce((sum, [, n]) => sum + n, 0));
          console.log(`fp ${batchTimeMs} ${partition} ${counts.length}`);
        });
      return;
    }
    case 'failing':
      result = ssc.queueStreamFromLinesFile(args.require('input'), args.int('per'))
        .flatMap(words)
        .map((w) => {
          if (w === 'boom') throw new Error(`conformance failure on word ${w}`);
          return [w, 1];
        })
        .reduceByKey(Reducers.sum);
      break;
    default:
      throw new Error(`argument \`job\`: unknown job ${JSON.stringify(job)}`);
  }
  result.saveAsTextFiles(output);
}
