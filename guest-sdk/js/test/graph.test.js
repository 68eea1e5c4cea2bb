// Graph building: node kinds, codecs, names from the caller's line, function
// ids, type inference and declarations, and mistakes that fail define.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamingContext, StateSpec, Reducers, T, durationMs } from '../sluice.js';
import { codecOfValue, sampleOf } from '../src/codec.js';
import { makeJob } from '../src/runtime.js';

const line = () => Number(new Error().stack.split('\n')[2].match(/:(\d+):\d+\)?$/)[1]);
const define = (f) => makeJob({ define: f }, { name: 'T' }).define([]);

test('inference by example: JS values to codecs', () => {
  assert.equal(codecOfValue('a'), 'string');
  assert.equal(codecOfValue(1), 'i64');
  assert.equal(codecOfValue(1.5), 'f64');
  assert.equal(codecOfValue(3n), 'i64');
  assert.equal(codecOfValue(true), 'bool');
  assert.equal(codecOfValue(null), 'unit');
  assert.equal(codecOfValue(undefined), 'unit');
  assert.equal(codecOfValue(new Uint8Array(1)), 'bytes');
  assert.equal(codecOfValue(['w', [1, 'x']]), 'tuple<string,tuple<i64,string>>');
  assert.equal(codecOfValue({ a: 1 }), 'json');
  assert.throws(() => codecOfValue([1]), /declare a list with T.list/);
  assert.throws(() => codecOfValue(new Map()), /no codec/);
  assert.deepStrictEqual(sampleOf('tuple<string,list<f64>>'), ['0', [1.0]]);
  assert.deepStrictEqual(sampleOf('option<bool>'), true);
});

test('declared types: T and codec strings', () => {
  assert.equal(T.tuple(T.string, T.list(T.option(T.i32))), 'tuple<string,list<option<i32>>>');
  assert.equal(T.pair('string', T.json), 'tuple<string,json>');
  assert.throws(() => T.list('int'), /unknown type/);
  assert.equal(durationMs('30s'), 30000);
  assert.equal(durationMs('500ms'), 500);
  assert.equal(durationMs('2m'), 120000);
  assert.equal(durationMs(250), 250);
  assert.throws(() => durationMs('1.5ms', 'x'), /whole number/);
});

test('a word count becomes the documented nodes, named after the calling line', () => {
  let at;
  const g = define((ssc) => {
    const lines = ssc.socketTextStream('localhost', 9999); at = line();
    lines.flatMap((l) => l.split(' ')).map((w) => [w, 1]).reduceByKey((a, b) => a + b).print();
  });
  assert.equal(g.name, 'T');
  assert.deepStrictEqual(g.nodes.map((n) => n.name), [
    `socketTextStream at graph.test.js:${at}`, `flatMap at graph.test.js:${at + 1}`, `map at graph.test.js:${at + 1}`,
    `reduceByKey at graph.test.js:${at + 1}`, `print at graph.test.js:${at + 1}`]);
  assert.deepStrictEqual(g.nodes.map((n) => n.codec), ['string', 'string', 'tuple<string,i64>', 'tuple<string,i64>', '']);
  assert.deepStrictEqual(g.nodes.map((n) => n.kind.tag), ['source', 'flat-map', 'map', 'reduce-by-key', 'print']);
  assert.deepStrictEqual(g.nodes[0].kind.val, { tag: 'socket-text', val: { host: 'localhost', port: 9999 } });
  assert.deepStrictEqual(g.nodes[3].kind.val, { reducer: { tag: 'function', val: 2 }, partitions: undefined });
  assert.deepStrictEqual(g.nodes.map((n) => n.inputs), [[], [0], [1], [2], [3]]);
  assert.equal(g.nodes[4].kind.val, 10);
});

test('every operator once: kinds, codecs, ids', () => {
  const g = define((ssc) => {
    ssc.remember('90s');
    const pairs = ssc.queueStream([[['a', 1]]]);
    const other = ssc.queueStream([], { type: T.tuple(T.string, T.bool) });
    const blacklist = ssc.broadcast('blacklist', ['x', 'y']);
    ssc.broadcastFile('words', '/data/words.txt');
    pairs.updateStateByKey((vs, s) => (s ?? 0) + vs.length).name('running').checkpoint('10s').print();
    const mapped = pairs.mapWithState(StateSpec.function((k, v, state) => { state.update(v); return k.length; }).timeout('5s')).name('mapped');
    mapped.print();
    mapped.stateSnapshots().print();
    pairs.reduceByKeyAndWindow((a, b) => a + b, (a, b) => a - b, '30s', '10s', { filter: ([, v]) => v !== 0 }).print();
    pairs.reduceByKeyAndWindow(Reducers.sum, null, 4000, undefined, { filter: 'nonzero' }).print();
    pairs.window(2000, 2000).join(other.window(2000)).print();
    pairs.cogroup(other, 3).print();
    pairs.transform((b) => b.filter(([k]) => !blacklist.value.includes(k))).print();
    pairs.countByWindow(3000, 1000).print();
    pairs.map(([k]) => k).countByValue().print();
    pairs.leftOuterJoin(other).print();
    pairs.fullOuterJoin(other).print();
    pairs.groupByKey(2).mapValues((vs) => vs.length).print();
    pairs.leftOuterJoinDataset('/data/d.tsv', T.i64).print();
    pairs.foreachPartition(() => {});
    pairs.saveToSqlite('/tmp/x.db', 'counts');
    pairs.saveAsTextFiles('/tmp/out', 'txt');
  });
  const node = (op) => g.nodes.find((n) => n.name.startsWith(`${op} at `));
  assert.equal(g.rememberMs, 90000);
  assert.equal(g.broadcasts[0].name, 'blacklist');
  // An array of two strings is a tuple<string,string> (arrays are tuples).
  assert.deepStrictEqual(Array.from(g.broadcasts[0].value.val), [1, 0, 0, 0, 0x78, 0x79]);
  assert.deepStrictEqual(g.broadcasts[1].value, { tag: 'file', val: '/data/words.txt' });
  const u = node('updateStateByKey');
  assert.equal(u.uid, 'running');
  assert.equal(u.checkpointMs, 10000);
  assert.equal(u.codec, 'tuple<string,i64>');
  assert.deepStrictEqual(u.kind.val, { function: 0, stateCodec: 'i64', partitions: undefined });
  const m = node('mapWithState');
  assert.equal(m.codec, 'i64');
  assert.deepStrictEqual(m.kind.val, { function: 1, stateCodec: 'i64', timeoutMs: 5000, partitions: undefined });
  assert.equal(node('stateSnapshots').codec, 'tuple<string,i64>');
  assert.deepStrictEqual(node('stateSnapshots').inputs, [g.nodes.indexOf(m)]);
  const w = g.nodes.filter((n) => n.kind.tag === 'reduce-by-key-and-window');
  assert.deepStrictEqual(w[0].kind.val, { reducer: { tag: 'function', val: 2 }, inverse: 3, filter: { tag: 'function', val: 4 }, window: { lengthMs: 30000, slideMs: 10000 }, partitions: undefined });
  assert.deepStrictEqual(w[1].kind.val, { reducer: { tag: 'sum' }, inverse: undefined, filter: { tag: 'nonzero' }, window: { lengthMs: 4000, slideMs: undefined }, partitions: undefined });
  assert.equal(node('join').codec, 'tuple<string,tuple<i64,bool>>');
  assert.deepStrictEqual(node('cogroup').kind, { tag: 'cogroup', val: 3 });
  assert.equal(node('cogroup').codec, 'tuple<string,tuple<list<i64>,list<bool>>>');
  assert.deepStrictEqual(node('transform').kind, { tag: 'transform', val: 5 });
  assert.deepStrictEqual(g.nodes.filter((n) => n.name.startsWith('countByWindow')).map((n) => n.kind.tag), ['count', 'window', 'reduce']);
  assert.deepStrictEqual(g.nodes.filter((n) => n.name.startsWith('countByValue')).map((n) => [n.kind.tag, n.codec]), [['map', 'tuple<string,unit>'], ['reduce-by-key', 'tuple<string,i64>']]);
  assert.equal(node('leftOuterJoin').codec, 'tuple<string,tuple<i64,option<bool>>>');
  assert.equal(node('fullOuterJoin').codec, 'tuple<string,tuple<option<i64>,option<bool>>>');
  assert.equal(node('groupByKey').codec, 'tuple<string,list<i64>>');
  assert.equal(node('mapValues').codec, 'tuple<string,i64>');
  assert.deepStrictEqual(node('leftOuterJoinDataset').kind.val, { location: '/data/d.tsv', kind: 'left-outer' });
  assert.equal(node('leftOuterJoinDataset').codec, 'tuple<string,tuple<i64,option<i64>>>');
  assert.deepStrictEqual(node('saveAsTextFiles').kind.val, { prefix: '/tmp/out', suffix: 'txt' });
  assert.deepStrictEqual(node('saveToSqlite').kind.val, { path: '/tmp/x.db', table: 'counts' });
});

test('the graph is the same for every define (deterministic)', () => {
  const job = (ssc) => ssc.queueStreamFromLinesFile('/in', 10).map((w) => [w, 1]).reduceByKey(Reducers.sum).print(3);
  assert.deepStrictEqual(define(job), define(job));
});

test('mistakes fail define, naming the operator and its place', () => {
  const err = (f) => { try { define(f); } catch (e) { return e; } assert.fail('define did not fail'); };
  let e = err((ssc) => ssc.queueStreamFromLinesFile('/in', 1).map((l) => l[5].x).print());
  assert.match(e, /^cannot infer the record type of `map at graph\.test\.js:\d+` \(calling it on a sample raised TypeError: .*\); declare it: \.map\(f, \{ outputType: T\.tuple\(T\.string, T\.i64\) \}\)$/);
  e = err((ssc) => ssc.queueStreamFromLinesFile('/in', 1).map((l) => [l]).print());
  assert.match(e, /cannot infer the record type of `map at graph\.test\.js:\d+` \(it returned an array of length 1/);
  e = err((ssc) => { const p = ssc.queueStreamFromLinesFile('/in', 1).map((l) => [l, 1]); p.reduceByKey(Reducers.count).name('twice').print(); p.reduceByKey(Reducers.sum).name('twice').print(); });
  assert.match(e, /^reduceByKey at graph\.test\.js:\d+: the name "twice" is already the name of reduceByKey at graph\.test\.js:\d+; names are unique in a job$/);
  e = err((ssc) => ssc.queueStreamFromLinesFile('/in', 1).map((l) => [l, 'x']).reduceByKey(Reducers.sum).print());
  assert.match(e, /^reduceByKey at graph\.test\.js:\d+: the built-in sum needs numbers, but the values are string$/);
  e = err((ssc) => ssc.queueStreamFromLinesFile('/in', 1).reduceByKey((a, b) => a).print());
  assert.match(e, /needs a stream of \[key, value\] pairs, but its records are string/);
  e = err((ssc) => ssc.queueStreamFromLinesFile('/in', 1).window('1.5ms').print());
  assert.match(e, /^window at graph\.test\.js:\d+: the window's length: 1\.5ms is not a whole number of milliseconds$/);
  e = err(() => { throw new RangeError('bad args'); });
  assert.match(e, /^define of job T: RangeError: bad args\n    at /);
  e = err(() => { throw 'plain'; });
  assert.equal(e, 'define of job T: plain');
  e = err(async (ssc) => ssc.queueStreamFromLinesFile('/in', 1).print());
  assert.match(e, /^define of job T: define must build the graph synchronously/);
  e = err((ssc) => ssc.union());
  assert.match(e, /^union at graph\.test\.js:\d+: needs at least one stream$/);
});

test('a broadcast reads its given value while defining; a file broadcast cannot', () => {
  const e = (() => { try { define((ssc) => { const b = ssc.broadcastFile('f', '/x'); ssc.queueStreamFromLinesFile('/in', 1).map((l) => b.value + l).print(); }); } catch (err) { return err; } })();
  assert.match(e, /read from a file by the host at start/);
  const g = define((ssc) => { const b = ssc.broadcast('n', 7); ssc.queueStreamFromLinesFile('/in', 1).map((l) => b.value + 0.5).print(); });
  assert.equal(g.nodes[1].codec, 'f64');
});
