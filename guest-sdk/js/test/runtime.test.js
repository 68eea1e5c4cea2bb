// The exports on encoded rows, against expectations computed independently
// of the SDK (counts in plain JS, the byte examples of wit/CODECS.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Reducers, StateSpec, T } from '../sluice.js';
import { decodeRows, encodeRows } from '../src/codec.js';
import { host } from '../src/graph.js';
import { makeJob } from '../src/runtime.js';

const jobOf = (define) => { const job = makeJob({ define }, { name: 'T' }); job.define([]); return job; };
const hex = (rows) => Buffer.from(rows.data).toString('hex');
const err = (f) => { try { f(); } catch (e) { return e; } assert.fail('no error'); };

const LINES = ['a b a', '', 'héllo  b', '🚀 a', 'a'];
function countWords(lines) {
  const m = new Map();
  for (const l of lines) for (const w of l.split(' ')) m.set(w, (m.get(w) || 0) + 1);
  return m;
}

test('run-chain: flatMap -> map -> combine is a word count, keys in order of first appearance', () => {
  const job = jobOf((ssc) => ssc.queueStreamFromLinesFile('/in', 1).flatMap((l) => l.split(' ')).map((w) => [w, 1]).reduceByKey((a, b) => a + b).print());
  const out = job.runChain([{ tag: 'apply', val: 0 }, { tag: 'apply', val: 1 }, { tag: 'combine', val: 2 }], encodeRows('string', LINES));
  assert.deepStrictEqual(decodeRows('tuple<string,i64>', out), Array.from(countWords(LINES)));
  // The chain in pieces gives the same.
  const words = job.runChain([{ tag: 'apply', val: 0 }], encodeRows('string', LINES));
  const pairs = job.runChain([{ tag: 'apply', val: 1 }], words);
  assert.deepStrictEqual(job.runChain([{ tag: 'combine', val: 2 }], pairs), out);
  assert.deepStrictEqual(job.runChain([], words), words);
});

test('run-chain: many records (several chunks), filter, mapPartitions, non-string keys', () => {
  const job = jobOf((ssc) => ssc.queueStreamFromLinesFile('/in', 1)
    .filter((l) => l.length % 3 !== 0)
    .mapPartitions((ls) => ls.map((l) => [[l.length, l.length > 5], 1.5]))
    .reduceByKey((a, b) => a + b).print());
  const lines = Array.from({ length: 5000 }, (_, i) => 'x'.repeat(i % 11));
  const out = job.runChain([{ tag: 'apply', val: 0 }, { tag: 'apply', val: 1 }, { tag: 'combine', val: 2 }], encodeRows('string', lines));
  const expected = new Map();
  for (const l of lines) if (l.length % 3 !== 0) { const k = `${l.length},${l.length > 5}`; expected.set(k, (expected.get(k) || 0) + 1.5); }
  const got = decodeRows('tuple<tuple<i64,bool>,f64>', out).map(([[n, b], v]) => [`${n},${b}`, v]);
  assert.deepStrictEqual(got, Array.from(expected));
});

test('reduce-groups folds left in list order and copies the key bytes', () => {
  const job = jobOf((ssc) => ssc.queueStreamFromLinesFile('/in', 1).map((w) => [w, 1]).reduceByKey((a, b) => a * 10 + b).print());
  // ("k", [3]) from wit/CODECS.md, then ("ab", [1, 2, 3]).
  const groups = encodeRows('tuple<string,list<i64>>', [['k', [3]], ['ab', [1, 2, 3]]]);
  assert.equal(hex(groups).slice(0, 42), '010000006b01000000080000000300000000000000');
  const out = job.reduceGroups(1, groups);
  assert.deepStrictEqual(decodeRows('tuple<string,i64>', out), [['k', 3], ['ab', 123]]);
  assert.match(err(() => job.reduceGroups(0, groups)), /^function 0 \(map at runtime\.test\.js:\d+\) is a narrow operator's function, not a reduceByKey reducer \(reduce-groups\)$/);
  assert.match(err(() => job.reduceGroups(9, groups)), /^function 9 does not exist: this instance's define registered 2 functions$/);
});

test('reduce-all reduces a batch to one record, none for an empty batch', () => {
  const job = jobOf((ssc) => ssc.queueStream([[1.5]]).reduce((a, b) => Math.max(a, b)).print());
  assert.deepStrictEqual(decodeRows('f64', job.reduceAll(0, encodeRows('f64', [1, 7.5, -2]))), [7.5]);
  assert.equal(job.reduceAll(0, encodeRows('f64', [])).ends.length, 0);
});

test('update-state: the example of wit/CODECS.md, and none removes a key', () => {
  const job = jobOf((ssc) => ssc.queueStreamFromLinesFile('/in', 1).map((w) => [w, 1])
    .updateStateByKey((values, state) => (values.includes(0) ? undefined : values.reduce((a, b) => a + b, 0) + (state ?? 0))).print());
  const input = encodeRows('tuple<string,list<tuple<u32,i64>>,option<i64>>',
    [['a', [[2, 5], [1, 7]], 10], ['b', [[1, 1]], undefined], ['c', [[1, 0]], 4], ['d', [], 9], ['e', [[3, 2], [1, 5], [2, 2]], 1]]);
  const record = '01000000612c0000000200000010000000040000000200000005000000000000001000000004000000010000000700000000000000010a00000000000000';
  assert.equal(hex(input).slice(0, record.length), record);
  const out = job.updateState(1, 1000, input);
  assert.equal(Buffer.from(out.data.subarray(0, out.ends[0])).toString('hex'), '011b00000000000000');
  assert.deepStrictEqual(decodeRows('option<i64>', out), [27, 1, undefined, 9, 16]);
});

test('update-state: a run of values that are objects gives distinct objects', () => {
  const seen = [];
  const job = jobOf((ssc) => ssc.queueStreamFromLinesFile('/in', 1).map((w) => [w, [1]], { outputType: T.tuple(T.string, T.list(T.i64)) })
    .updateStateByKey((values, state) => { seen.push(values); values[0].push(9); return values.length; }).print());
  const input = encodeRows('tuple<string,list<tuple<u32,list<i64>>>,option<i64>>', [['a', [[3, [1, 2]], [1, [5]]], undefined]]);
  assert.deepStrictEqual(decodeRows('option<i64>', job.updateState(1, 1000, input)), [4]);
  assert.deepStrictEqual(seen.at(-1), [[1, 2, 9], [1, 2], [1, 2], [5]]);
});

test('update-state with runs: the function gets the runs as sent, the same states as with values', () => {
  const seen = [];
  const job = jobOf((ssc) => {
    const pairs = ssc.queueStreamFromLinesFile('/in', 1).map((w) => [w, 1]);
    pairs.updateStateByKeyRuns((runs, state) => {
      seen.push(runs);
      return runs.some(([, v]) => v === 0) ? undefined : runs.reduce((a, [n, v]) => a + n * v, 0) + (state ?? 0);
    }).print();
    pairs.updateStateByKey((values, state) => (values.includes(0) ? undefined : values.reduce((a, b) => a + b, 0) + (state ?? 0))).print();
  });
  const records = [['a', [[2, 5], [1, 7]], 10], ['b', [[1, 1]], undefined], ['c', [[1, 0]], 4], ['d', [], 9], ['e', [[3, 2], [1, 5], [2, 2]], 1]];
  const input = encodeRows('tuple<string,list<tuple<u32,i64>>,option<i64>>', records);
  const out = decodeRows('option<i64>', job.updateState(1, 1000, input));
  assert.deepStrictEqual(out, decodeRows('option<i64>', job.updateState(2, 1000, input)));
  assert.deepStrictEqual(out, [27, 1, undefined, 9, 16]);
  assert.deepStrictEqual(seen.slice(-records.length), records.map(([, runs]) => runs));
  const zero = encodeRows('tuple<string,list<tuple<u32,i64>>,option<i64>>', [['a', [[1, 2], [0, 3]], undefined]]);
  assert.match(err(() => job.updateState(1, 1000, zero)), /^updateStateByKey at runtime\.test\.js:\d+: record 0: run 1: a count of 0/);
});

test('a run count of 0 fails naming the record and the run; map-with-state gets distinct objects from a run', () => {
  const seen = [];
  const job = jobOf((ssc) => {
    const pairs = ssc.queueStreamFromLinesFile('/in', 1).map((w) => [w, [1]], { outputType: T.tuple(T.string, T.list(T.i64)) });
    pairs.updateStateByKey((values, state) => values.length + (state ?? 0)).print();
    pairs.mapWithState(StateSpec.function((key, value, state) => { seen.push(value); value.push(9); return value.length; })
      .withStateType(T.i64).withOutputType(T.i64)).print();
  });
  for (const runs of [[[1, [2]], [0, [3]]], [[0, [3]]]]) {
    const input = encodeRows('tuple<string,list<tuple<u32,list<i64>>>,option<i64>>', [['a', runs, undefined]]);
    assert.match(err(() => job.updateState(1, 1000, input)), new RegExp(`^updateStateByKey at runtime\\.test\\.js:\\d+: record 0: run ${runs.length - 1}: a count of 0`));
  }
  // More values than an array holds: refused before any is made.
  const many = encodeRows('tuple<string,list<tuple<u32,list<i64>>>,option<i64>>', [['a', [[4294967295, [1]], [1, [2]]], undefined]]);
  assert.match(err(() => job.updateState(1, 1000, many)), /^updateStateByKey at runtime\.test\.js:\d+: record 0: 4294967296 values are more than an array holds/);
  const t = 'tuple<string,option<i64>,option<list<tuple<u32,list<i64>>>>>';
  assert.match(err(() => job.mapWithState(2, 1000, encodeRows(t, [['a', undefined, [[2, [1]], [0, [1]]]]]))),
    /^mapWithState at runtime\.test\.js:\d+: record 0: run 1: a count of 0/);
  const out = decodeRows('tuple<option<i64>,list<i64>>', job.mapWithState(2, 1000, encodeRows(t, [['a', undefined, [[2, [1, 2]]]]])));
  assert.deepStrictEqual(out, [[undefined, [3, 3]]]);
  assert.deepStrictEqual(seen.slice(-2), [[1, 2, 9], [1, 2, 9]]);
  assert.notEqual(seen.at(-2), seen.at(-1));
});

test('map-with-state: each value in order, a key timing out once, misuse names the operator', () => {
  const job = jobOf((ssc) => ssc.queueStreamFromLinesFile('/in', 1).map((w) => [w, 1])
    .mapWithState(StateSpec.function((key, value, state) => {
      if (state.isTimingOut()) { if (key === 'bad') state.update(1); return `${key} timed out at ${state.get()}`; }
      const sum = (state.exists() ? state.get() : 0) + value;
      if (sum > 100) state.remove(); else state.update(sum);
      return `${key}=${sum}`;
    }).timeout('5s')).print());
  const input = encodeRows('tuple<string,option<i64>,option<list<tuple<u32,i64>>>>',
    [['a', undefined, [[1, 1], [1, 2]]], ['b', 4, undefined], ['c', 99, [[1, 5]]], ['d', 1, [[3, 2]]]]);
  const out = decodeRows('tuple<option<i64>,list<string>>', job.mapWithState(1, 1000, input));
  assert.deepStrictEqual(out, [[3, ['a=1', 'a=3']], [4, ['b timed out at 4']], [undefined, ['c=104']], [7, ['d=3', 'd=5', 'd=7']]]);
  const bad = encodeRows('tuple<string,option<i64>,option<list<tuple<u32,i64>>>>', [['bad', 4, undefined]]);
  assert.match(err(() => job.mapWithState(1, 1000, bad)), /^mapWithState at runtime\.test\.js:\d+: Error: cannot update the state of a key that is timing out\n/);
});

test('transform gets the whole batch and the batch time; foreachPartition and accumulators', () => {
  const added = [];
  host.addToAccumulator = (name, value) => added.push([name, value]);
  try {
    const job = jobOf((ssc) => {
      const n = ssc.longAccumulator('n');
      const s = ssc.doubleAccumulator('s');
      const lines = ssc.queueStreamFromLinesFile('/in', 1);
      lines.transform((batch, t) => [...batch].sort().map((l) => `${t}:${l}`)).print();
      lines.foreachPartition((t, p, records) => { n.add(records.length); s.add(0.5); assert.equal(t, 5000); assert.equal(p, 3); });
    });
    assert.deepStrictEqual(added, [], 'adds while defining are dropped');
    assert.deepStrictEqual(decodeRows('string', job.transform(0, 5000, encodeRows('string', ['b', 'a']))), ['5000:a', '5000:b']);
    job.foreachPartition(1, 5000, 3, encodeRows('string', ['x', 'y']));
    assert.deepStrictEqual(added, [['n', { tag: 'int', val: 2 }], ['s', { tag: 'float', val: 0.5 }]]);
  } finally {
    host.addToAccumulator = () => {};
  }
});

test('a broadcast value is fetched from the host once and decoded', () => {
  let calls = 0;
  host.broadcastValue = (name) => { calls++; return name === 'stop' ? encodeRows('json', [['the', 'a']]).data : undefined; };
  try {
    const job = jobOf((ssc) => {
      const stop = ssc.broadcast('stop', ['the', 'a'], { type: T.json });
      ssc.queueStreamFromLinesFile('/in', 1).filter((w) => !stop.value.includes(w)).print();
    });
    assert.deepStrictEqual(decodeRows('string', job.runChain([{ tag: 'apply', val: 0 }], encodeRows('string', ['the', 'cat', 'a', 'dog']))), ['cat', 'dog']);
    job.runChain([{ tag: 'apply', val: 0 }], encodeRows('string', ['x']));
    assert.equal(calls, 1);
  } finally {
    host.broadcastValue = () => undefined;
  }
});

test('an exception becomes an error with the operator, the message and the stack; never a throw of an Error', () => {
  const job = jobOf((ssc) => ssc.queueStreamFromLinesFile('/in', 1).flatMap((l) => l.split(' '))
    .map((w) => { if (w === 'boom') throw new Error(`conformance failure on word ${w}`); if (w === 'str') throw 'a string'; if (w === 'obj') throw { code: 7 }; return [w, 1]; })
    .reduceByKey(Reducers.sum).print());
  const run = (line) => err(() => job.runChain([{ tag: 'apply', val: 0 }, { tag: 'apply', val: 1 }], encodeRows('string', [line])));
  const e = run('a boom');
  assert.equal(typeof e, 'string');
  assert.match(e, /^map at runtime\.test\.js:\d+: Error: conformance failure on word boom\n    at .*runtime\.test\.js:\d+:\d+/);
  assert.doesNotMatch(e, /src\/runtime\.js/);
  assert.match(run('str'), /^map at runtime\.test\.js:\d+: a string$/);
  assert.match(run('obj'), /^map at runtime\.test\.js:\d+: thrown \{"code":7\}$/);
});

test('a value that does not fit the stream names the operator, the value and the codec', () => {
  const job = jobOf((ssc) => ssc.queueStreamFromLinesFile('/in', 1).map((w) => (w === 'x' ? { w } : [w, 1])).print());
  const e = err(() => job.runChain([{ tag: 'apply', val: 0 }], encodeRows('string', ['a', 'x'])));
  assert.match(e, /^map at runtime\.test\.js:\d+ returned an object \(Object\) where the stream's records are tuple<string,i64> \(.*\); declare \{ outputType: \.\.\. \} on map at/);
  const bad = err(() => job.runChain([{ tag: 'apply', val: 0 }], { data: Uint8Array.of(0xc3, 0x28), ends: Uint32Array.of(2) }));
  assert.match(bad, /^map at runtime\.test\.js:\d+: CodecError: invalid UTF-8/);
});

test('i64 beyond 2^53 passes through as BigInt', () => {
  const job = jobOf((ssc) => ssc.queueStream([[['k', 1]]]).mapValues((v) => BigInt(v) * 2n ** 60n, { outputType: T.i64 }).print());
  const out = decodeRows('tuple<string,i64>', job.runChain([{ tag: 'apply', val: 0 }], encodeRows('tuple<string,i64>', [['k', 3]])));
  assert.deepStrictEqual(out, [['k', 3n * 2n ** 60n]]);
});
