// The job graph under construction and the DStream API that builds it.
// Mirrors guest-sdk/rust (context.rs, dstream/*.rs, graph.rs): the same node
// kinds, codecs and function table, with Spark's camelCase method names.

import {
  CodecError, NUMERIC, Writer, codecOfValue, compile, describe, encode, normalize, pairOf, parseCodec, sampleOf,
} from './codec.js';
import { caller, messageOf } from './errors.js';

// ------------------------------------------------------------ define-time state

/** Whether `define` (or a test's graph building) is running: accumulator adds are dropped, broadcasts read the given value. */
export const phase = { defining: false };

// ------------------------------------------------------------------ durations

const UNITS = { ms: 1, s: 1000, m: 60000, min: 60000, h: 3600000 };

/** Milliseconds of a duration: a number of ms, or a string like "500ms", "30s", "5m", "2h". */
export function durationMs(d, what) {
  let ms;
  if (typeof d === 'number' || typeof d === 'bigint') ms = Number(d);
  else if (typeof d === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$/.exec(d);
    if (!m) throw new Error(`${what}: ${JSON.stringify(d)} is not a duration (a number of ms, or e.g. "500ms", "30s", "5m", "2h")`);
    ms = Number(m[1]) * UNITS[m[2] || 'ms'];
  } else throw new Error(`${what}: ${describe(d)} is not a duration (a number of ms, or e.g. "500ms", "30s")`);
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`${what}: ${d} is not a duration`);
  if (!Number.isInteger(ms)) throw new Error(`${what}: ${d} is not a whole number of milliseconds`);
  return ms;
}

// -------------------------------------------------------------------- reducers

const BUILTIN = Symbol('sluice.builtin');

/** The built-in reducers, run natively by the host (no plugin call). */
export const Reducers = Object.freeze({
  sum: Object.freeze({ [BUILTIN]: 'sum' }),
  min: Object.freeze({ [BUILTIN]: 'min' }),
  max: Object.freeze({ [BUILTIN]: 'max' }),
  count: Object.freeze({ [BUILTIN]: 'count' }),
});

function builtinOf(f) {
  return f !== null && typeof f === 'object' && f[BUILTIN] ? f[BUILTIN] : null;
}

// ------------------------------------------------------------------------ Args

/** The `--arg KEY=VALUE` pairs of the command line. */
export class Args {
  constructor(pairs) { this.pairs = pairs.map(([k, v]) => [String(k), String(v)]); }
  /** The last value given for `key`, or `fallback` (undefined). */
  get(key, fallback) {
    for (let i = this.pairs.length - 1; i >= 0; i--) if (this.pairs[i][0] === key) return this.pairs[i][1];
    return fallback;
  }
  has(key) { return this.get(key) !== undefined; }
  require(key) {
    const v = this.get(key);
    if (v === undefined) throw new Error(`missing argument \`${key}\` (give --arg ${key}=...)`);
    return v;
  }
  /** An integer argument (`fallback` when absent). */
  int(key, fallback) {
    const v = this.get(key);
    if (v === undefined) { if (fallback === undefined) this.require(key); return fallback; }
    if (!/^-?\d+$/.test(v.trim())) throw new Error(`argument \`${key}\`: ${JSON.stringify(v)} is not an integer`);
    return Number(v);
  }
  /** A duration argument in ms ("500ms", "30s", or a number of ms). */
  duration(key, fallback) {
    const v = this.get(key);
    if (v === undefined) { if (fallback === undefined) this.require(key); return fallback; }
    return durationMs(v, `argument \`${key}\``);
  }
  toObject() { return Object.fromEntries(this.pairs); }
  [Symbol.iterator]() { return this.pairs[Symbol.iterator](); }
}

// ----------------------------------------------------------------------- graph

export class Graph {
  constructor(name) {
    this.name = name;
    this.nodes = [];
    this.functions = [];
    this.broadcasts = [];
    this.rememberMs = undefined;
    this.errors = [];
  }
  addFunction(name, entry) {
    entry.name = name;
    this.functions.push(entry);
    return this.functions.length - 1;
  }
  addNode(name, kind, inputs, codec) {
    this.nodes.push({ name, uid: undefined, kind, inputs, codec, checkpointMs: undefined });
    return this.nodes.length - 1;
  }
  error(message) { this.errors.push(message); }
  setUid(id, uid) {
    const node = this.nodes[id];
    if (typeof uid !== 'string' || uid === '') { this.error(`${node.name}: a name must be a non-empty string`); return; }
    const other = this.nodes.find((n, i) => n.uid === uid && i !== id);
    if (other) { this.error(`${node.name}: the name ${JSON.stringify(uid)} is already the name of ${other.name}; names are unique in a job`); return; }
    if (node.uid !== undefined && node.uid !== uid) { this.error(`${node.name}: named ${JSON.stringify(uid)}, but it is already named ${JSON.stringify(node.uid)}`); return; }
    node.uid = uid;
  }
  /** The graph for the host (plain objects; 64-bit fields as numbers) or throws the first mistake. */
  finish() {
    if (this.errors.length > 0) throw new Error(this.errors[0]);
    return { name: this.name, nodes: this.nodes, broadcasts: this.broadcasts, rememberMs: this.rememberMs };
  }
}

// ----------------------------------------------------------- type inference

/** The codec of a stream: `declared` if given, else the result of calling `probe()` on a sample. */
function resolveType(graph, name, declared, what, probe, hint) {
  if (declared !== undefined) {
    try { return normalize(declared); } catch (e) { graph.error(`${name}: ${e.message}`); return 'unit'; }
  }
  let value;
  const was = phase.defining;
  phase.defining = true;
  try {
    value = probe();
  } catch (e) {
    graph.error(`cannot infer the ${what} of \`${name}\` (${e instanceof CodecError ? e.message : `calling it on a sample raised ${messageOf(e)}`}); declare it: ${hint}`);
    return 'unit';
  } finally {
    phase.defining = was;
  }
  try { return codecOfValue(value); } catch (e) {
    graph.error(`cannot infer the ${what} of \`${name}\` (it returned ${describe(value)} for a sample: ${e.message}); declare it: ${hint}`);
    return 'unit';
  }
}

function firstOf(iterable, name) {
  if (iterable === null || iterable === undefined || typeof iterable[Symbol.iterator] !== 'function') {
    throw new CodecError(`${describe(iterable)} is not iterable: ${name}'s function returns an array or another iterable`);
  }
  for (const x of iterable) return x;
  throw new CodecError('it returned no element for a sample value');
}

function checkFunction(graph, name, f) {
  if (typeof f !== 'function') graph.error(`${name}: expected a function, got ${describe(f)}`);
}

function optsOf(o) { return o !== null && typeof o === 'object' && !Array.isArray(o) ? o : {}; }

function partitionsOf(graph, name, n) {
  if (n === undefined || n === null) return undefined;
  if (!Number.isInteger(n) || n < 1 || n > 4294967295) { graph.error(`${name}: the number of partitions must be an integer of at least 1, not ${describe(n)}`); return 1; }
  return n;
}

function windowOf(graph, name, length, slide) {
  const ms = (what, d) => {
    try { const v = durationMs(d, `the window's ${what}`); if (v === 0) throw new Error(`the window's ${what} must be positive`); return v; } catch (e) { graph.error(`${name}: ${e.message}`); return 1; }
  };
  return { lengthMs: ms('length', length), slideMs: slide === undefined || slide === null ? undefined : ms('slide', slide) };
}

// -------------------------------------------------------------- the context

/** The streaming context of one `define` call (Spark's StreamingContext). */
export class StreamingContext {
  constructor(name = 'job') {
    this.graph = new Graph(name);
  }
  _source(op, source, codec) {
    const name = `${op} at ${caller()}`;
    return new DStream(this.graph, this.graph.addNode(name, { tag: 'source', val: source }, [], codec));
  }
  /** Lines of UTF-8 text from a TCP server. */
  socketTextStream(host, port) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) port = Number(port);
    const s = this._source('socketTextStream', { tag: 'socket-text', val: { host: String(host), port } }, 'string');
    if (!Number.isInteger(port) || port < 0 || port > 65535) this.graph.error(`${this.graph.nodes[s.id].name}: ${port} is not a port`);
    return s;
  }
  /** Lines of the files that appear in a directory. */
  textFileStream(directory) {
    return this._source('textFileStream', { tag: 'text-file', val: { directory: String(directory) } }, 'string');
  }
  /** One batch per entry of `batches` (arrays of records); `{type}` declares the record type. */
  queueStream(batches, options) {
    const name = `queueStream at ${caller()}`;
    const { type } = optsOf(options);
    let codec;
    if (type !== undefined) codec = resolveType(this.graph, name, type);
    else {
      const first = batches.find((b) => b.length > 0);
      if (first === undefined) { this.graph.error(`${name}: cannot infer the record type of an empty queue; declare it: queueStream(batches, { type: T.string })`); codec = 'unit'; }
      else {
        try { codec = codecOfValue(first[0]); } catch (e) { this.graph.error(`${name}: cannot infer the record type (${e.message}); declare it: queueStream(batches, { type: ... })`); codec = 'unit'; }
      }
    }
    const c = compile(codec);
    const encoded = batches.map((batch, b) => {
      const rows = { data: [], ends: [] };
      try {
        const w = new Writer(256);
        for (const r of batch) { c.enc(w, r); w.end(); }
        return w.rows();
      } catch (e) { this.graph.error(`${name}: batch ${b}: ${e.message}`); return rows; }
    });
    return new DStream(this.graph, this.graph.addNode(name, { tag: 'source', val: { tag: 'queue', val: { tag: 'batches', val: encoded } } }, [], codec));
  }
  /** The lines of a text file read by the host, `linesPerBatch` per batch. */
  queueStreamFromLinesFile(path, linesPerBatch) {
    return this._source('queueStreamFromLinesFile', { tag: 'queue', val: { tag: 'lines-file', val: { path: String(path), linesPerBatch: Number(linesPerBatch) } } }, 'string');
  }
  /** `[timestampMs, counter]` records at a fixed rate. */
  rateStream(recordsPerSecond) {
    return this._source('rateStream', { tag: 'rate', val: { recordsPerSecond: Number(recordsPerSecond) } }, 'tuple<i64,i64>');
  }
  /** The records of all `streams` (arrays or arguments). */
  union(...streams) {
    const name = `union at ${caller()}`;
    if (streams.length === 1 && Array.isArray(streams[0])) streams = streams[0];
    if (streams.length === 0) { this.graph.error(`${name}: needs at least one stream`); return new DStream(this.graph, this.graph.addNode(name, { tag: 'union' }, [], 'unit')); }
    const codec = this.graph.nodes[streams[0].id].codec;
    for (const s of streams) if (this.graph.nodes[s.id].codec !== codec) this.graph.error(`${name}: the streams have different record types (${codec} and ${this.graph.nodes[s.id].codec})`);
    return new DStream(this.graph, this.graph.addNode(name, { tag: 'union' }, streams.map((s) => s.id), codec));
  }
  /** Keeps every stream's batches at least this long. */
  remember(duration) {
    try { const ms = durationMs(duration, `remember at ${caller()}`); this.graph.rememberMs = Math.max(this.graph.rememberMs || 0, ms); } catch (e) { this.graph.error(e.message); }
  }
  longAccumulator(name) { return new Accumulator(String(name), 'int'); }
  doubleAccumulator(name) { return new Accumulator(String(name), 'float'); }
  /** A value every function can read with `.value`; `{type}` declares its type. */
  broadcast(name, value, options) {
    const at = caller();
    const { type } = optsOf(options);
    const codec = resolveType(this.graph, `broadcast at ${at}`, type, 'type', () => value, `broadcast(${JSON.stringify(name)}, value, { type: T.json })`);
    let bytes = new Uint8Array(0);
    try { bytes = encode(codec, value); } catch (e) { this.graph.error(`broadcast at ${at}: ${e.message}`); }
    this._addBroadcast(String(name), { tag: 'bytes', val: bytes }, at);
    return new Broadcast(String(name), codec, value, true);
  }
  /** The whole content of a file (a path or an object store URL) as a string. */
  broadcastFile(name, path) {
    const at = caller();
    this._addBroadcast(String(name), { tag: 'file', val: String(path) }, at);
    return new Broadcast(String(name), 'string', undefined, false);
  }
  _addBroadcast(name, value, at) {
    if (this.graph.broadcasts.some((b) => b.name === name)) this.graph.error(`broadcast at ${at}: the name ${JSON.stringify(name)} is already a broadcast's`);
    this.graph.broadcasts.push({ name, value });
  }
}

// ------------------------------------------------- accumulators, broadcasts

/** The host functions, set by the entry glue (or by tests). */
export const host = {
  addToAccumulator: (name, value) => {},
  broadcastValue: (name) => undefined,
  /** Whether WIT s64/u64 are BigInt (StarlingMonkey) or numbers (QuickJS). */
  wide: false,
};

export class Accumulator {
  constructor(name, kind) { this.name = name; this.kind = kind; }
  /** Adds `x` (counted once when the task succeeds); dropped while defining. */
  add(x) {
    if (phase.defining) return;
    if (this.kind === 'int') {
      let n = typeof x === 'bigint' ? x : Number(x);
      if (typeof n === 'number' && !Number.isInteger(n)) throw new Error(`accumulator ${JSON.stringify(this.name)} is a long accumulator: ${x} is not an integer`);
      host.addToAccumulator(this.name, { tag: 'int', val: host.wide ? BigInt(n) : Number(n) });
    } else {
      host.addToAccumulator(this.name, { tag: 'float', val: Number(x) });
    }
  }
}

export class Broadcast {
  constructor(name, codec, given, hasGiven) {
    this.name = name; this.codec = codec; this._given = given; this._hasGiven = hasGiven; this._loaded = false; this._value = undefined;
  }
  get value() {
    if (phase.defining) {
      if (this._hasGiven) return this._given;
      throw new Error(`broadcast ${JSON.stringify(this.name)} is read from a file by the host at start: it has no value while the job is defined (declare the operator's type)`);
    }
    if (!this._loaded) {
      const bytes = host.broadcastValue(this.name);
      if (bytes === undefined || bytes === null) throw new Error(`broadcast ${JSON.stringify(this.name)}: the host has no value of that name`);
      const b = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
      const c = compile(this.codec);
      this._value = c.dec(b, new DataView(b.buffer, b.byteOffset, b.byteLength), 0, b.length);
      this._loaded = true;
    }
    return this._value;
  }
}

// ------------------------------------------------------------ mapWithState

/** `StateSpec.function((key, value, state) => mapped).timeout(ms)` (Spark's StateSpec). */
export class StateSpec {
  constructor(f) { this.f = f; this.timeoutMs = undefined; this.stateType = undefined; this.outputType = undefined; this.partitions = undefined; }
  static function(f) { return new StateSpec(f); }
  timeout(d) { this.timeoutMs = d; return this; }
  numPartitions(n) { this.partitions = n; return this; }
  /** Declares the state type (else inferred from the first `state.update(...)` on a sample). */
  withStateType(t) { this.stateType = t; return this; }
  /** Declares the mapped records' type (else inferred on a sample). */
  withOutputType(t) { this.outputType = t; return this; }
}

/** The state of one key in a mapWithState function (Spark's State). */
export class State {
  constructor(value, exists, timingOut) { this._value = value; this._exists = exists; this._timingOut = timingOut; this.misuse = null; this.updated = false; }
  exists() { return this._exists; }
  get() {
    if (!this._exists) throw new Error('State.get: the key has no state (check state.exists() first)');
    return this._value;
  }
  getOption() { return this._exists ? this._value : undefined; }
  update(v) {
    if (this._timingOut) { this.misuse = 'cannot update the state of a key that is timing out'; throw new Error(this.misuse); }
    this._value = v; this._exists = true; this.updated = true;
  }
  remove() {
    if (this._timingOut) { this.misuse = 'cannot remove the state of a key that is timing out'; throw new Error(this.misuse); }
    this._value = undefined; this._exists = false;
  }
  isTimingOut() { return this._timingOut; }
}

// --------------------------------------------------------------------- DStream

export class DStream {
  constructor(graph, id) { this.graph = graph; this.id = id; }
  get codec() { return this.graph.nodes[this.id].codec; }

  _child(name, kind, codec, inputs = [this.id]) {
    return new DStream(this.graph, this.graph.addNode(name, kind, inputs, codec));
  }
  _output(name, kind) { this.graph.addNode(name, kind, [this.id], ''); }
  _pair(name) {
    const p = pairOf(this.codec);
    if (p === null) { this.graph.error(`${name}: needs a stream of [key, value] pairs, but its records are ${this.codec}`); return ['unit', 'unit']; }
    return p;
  }
  _narrow(op, tag, f, options, probe, hint) {
    const name = `${op} at ${caller(1)}`;
    checkFunction(this.graph, name, f);
    const { outputType } = optsOf(options);
    const inCodec = this.codec;
    const out = probe === null ? inCodec : resolveType(this.graph, name, outputType, 'record type', () => probe(f, sampleOf(inCodec)), hint);
    const id = this.graph.addFunction(name, { kind: 'narrow', op, f, inCodec, outCodec: out });
    return this._child(name, { tag, val: id }, out);
  }

  /** Names the operator that makes this stream (its state is kept under the name). */
  name(uid) { this.graph.setUid(this.id, uid); return this; }
  /** Checkpoints the job at least this often. */
  checkpoint(interval) {
    const node = this.graph.nodes[this.id];
    try { const ms = durationMs(interval, `${node.name}: checkpoint`); if (ms === 0) throw new Error(`${node.name}: a checkpoint interval must be positive`); node.checkpointMs = ms; } catch (e) { this.graph.error(e.message); }
    return this;
  }

  map(f, options) { return this._narrow('map', 'map', f, options, (g, s) => g(s), '.map(f, { outputType: T.tuple(T.string, T.i64) })'); }
  flatMap(f, options) { return this._narrow('flatMap', 'flat-map', f, options, (g, s) => firstOf(g(s), 'flatMap'), '.flatMap(f, { outputType: T.string })'); }
  filter(f) { return this._narrow('filter', 'filter', f, undefined, null); }
  mapPartitions(f, options) { return this._narrow('mapPartitions', 'map-partitions', f, options, (g, s) => firstOf(g([s]), 'mapPartitions'), '.mapPartitions(f, { outputType: T.string })'); }
  mapValues(f, options) {
    const name = `mapValues at ${caller()}`;
    const [kc, vc] = this._pair(name);
    checkFunction(this.graph, name, f);
    const { outputType } = optsOf(options);
    const wc = resolveType(this.graph, name, outputType, 'value type', () => f(sampleOf(vc)), '.mapValues(f, { outputType: T.i64 })');
    const g = (p) => [p[0], f(p[1])];
    const out = `tuple<${kc},${wc}>`;
    const id = this.graph.addFunction(name, { kind: 'narrow', op: 'map', f: g, inCodec: this.codec, outCodec: out });
    return this._child(name, { tag: 'map', val: id }, out);
  }
  flatMapValues(f, options) {
    const name = `flatMapValues at ${caller()}`;
    const [kc, vc] = this._pair(name);
    checkFunction(this.graph, name, f);
    const { outputType } = optsOf(options);
    const wc = resolveType(this.graph, name, outputType, 'value type', () => firstOf(f(sampleOf(vc)), 'flatMapValues'), '.flatMapValues(f, { outputType: T.string })');
    const g = (p) => { const out = []; for (const w of f(p[1])) out.push([p[0], w]); return out; };
    const out = `tuple<${kc},${wc}>`;
    const id = this.graph.addFunction(name, { kind: 'narrow', op: 'flatMap', f: g, inCodec: this.codec, outCodec: out });
    return this._child(name, { tag: 'flat-map', val: id }, out);
  }
  repartition(n) {
    const name = `repartition at ${caller()}`;
    return this._child(name, { tag: 'repartition', val: partitionsOf(this.graph, name, n) ?? 1 }, this.codec);
  }
  union(...others) {
    const name = `union at ${caller()}`;
    if (others.length === 1 && Array.isArray(others[0])) others = others[0];
    for (const o of others) if (o.codec !== this.codec) this.graph.error(`${name}: the streams have different record types (${this.codec} and ${o.codec})`);
    return this._child(name, { tag: 'union' }, this.codec, [this.id, ...others.map((o) => o.id)]);
  }
  count() { return this._child(`count at ${caller()}`, { tag: 'count' }, 'i64'); }
  /** All records of a batch reduced with `f(a, b)` or a built-in reducer. */
  reduce(f) {
    const name = `reduce at ${caller()}`;
    const reducer = this._reducer(name, f, this.codec, 'reducer');
    return this._child(name, { tag: 'reduce', val: reducer }, builtinOf(f) === 'count' ? 'i64' : this.codec);
  }
  _reducer(name, f, valueCodec, kind, pairCodec) {
    const b = builtinOf(f);
    if (b !== null) {
      if (b !== 'count' && !NUMERIC.has(valueCodec)) this.graph.error(`${name}: the built-in ${b} needs numbers, but the values are ${valueCodec}`);
      return { tag: b };
    }
    checkFunction(this.graph, name, f);
    const id = this.graph.addFunction(name, kind === 'reducer' ? { kind: 'reducer', f, codec: valueCodec } : { kind: 'keyReducer', f, codec: pairCodec, valueCodec });
    return { tag: 'function', val: id };
  }
  countByValue(numPartitions) {
    const name = `countByValue at ${caller()}`;
    const inCodec = this.codec, pc = `tuple<${inCodec},unit>`;
    const id = this.graph.addFunction(name, { kind: 'narrow', op: 'map', f: (r) => [r, undefined], inCodec, outCodec: pc });
    const pairs = this._child(name, { tag: 'map', val: id }, pc);
    return pairs._child(name, { tag: 'reduce-by-key', val: { reducer: { tag: 'count' }, partitions: partitionsOf(this.graph, name, numPartitions) } }, `tuple<${inCodec},i64>`);
  }
  /** `f(records, batchTimeMs)` over a whole batch (every partition in one call). */
  transform(f, options) {
    const name = `transform at ${caller()}`;
    checkFunction(this.graph, name, f);
    const { outputType } = optsOf(options);
    const inCodec = this.codec;
    const out = resolveType(this.graph, name, outputType, 'record type', () => firstOf(f([sampleOf(inCodec)], 0), 'transform'), '.transform(f, { outputType: T.string })');
    const id = this.graph.addFunction(name, { kind: 'transform', f, inCodec, outCodec: out });
    return this._child(name, { tag: 'transform', val: id }, out);
  }

  // ------------------------------------------------------------ windows
  window(length, slide) {
    const name = `window at ${caller()}`;
    return this._child(name, { tag: 'window', val: windowOf(this.graph, name, length, slide) }, this.codec);
  }
  countByWindow(length, slide) {
    const name = `countByWindow at ${caller()}`;
    const w = windowOf(this.graph, name, length, slide);
    return this._child(name, { tag: 'count' }, 'i64')._child(name, { tag: 'window', val: w }, 'i64')._child(name, { tag: 'reduce', val: { tag: 'sum' } }, 'i64');
  }
  reduceByWindow(f, length, slide) {
    const name = `reduceByWindow at ${caller()}`;
    const w = windowOf(this.graph, name, length, slide);
    const reducer = this._reducer(name, f, this.codec, 'reducer');
    const out = builtinOf(f) === 'count' ? 'i64' : this.codec;
    // A built-in count is a count per batch, then a sum of the counts.
    const again = builtinOf(f) === 'count' ? { tag: 'sum' } : reducer;
    return this._child(name, { tag: 'reduce', val: reducer }, out)._child(name, { tag: 'window', val: w }, out)._child(name, { tag: 'reduce', val: again }, out);
  }
  countByValueAndWindow(length, slide, numPartitions) {
    const name = `countByValueAndWindow at ${caller()}`;
    const w = windowOf(this.graph, name, length, slide);
    const inCodec = this.codec, pc = `tuple<${inCodec},unit>`;
    const id = this.graph.addFunction(name, { kind: 'narrow', op: 'map', f: (r) => [r, undefined], inCodec, outCodec: pc });
    return this._child(name, { tag: 'map', val: id }, pc)._child(name, {
      tag: 'reduce-by-key-and-window',
      val: { reducer: { tag: 'count' }, inverse: undefined, filter: { tag: 'nonzero' }, window: w, partitions: partitionsOf(this.graph, name, numPartitions) },
    }, `tuple<${inCodec},i64>`);
  }

  // ------------------------------------------------------------- pairs
  /** Values of each key merged with `f(a, b)` or a built-in reducer (`Reducers.sum`, ...). */
  reduceByKey(f, numPartitions) {
    const name = `reduceByKey at ${caller()}`;
    const [kc, vc] = this._pair(name);
    const reducer = this._reducer(name, f, vc, 'keyReducer', this.codec);
    const out = builtinOf(f) === 'count' ? `tuple<${kc},i64>` : this.codec;
    return this._child(name, { tag: 'reduce-by-key', val: { reducer, partitions: partitionsOf(this.graph, name, numPartitions) } }, out);
  }
  groupByKey(numPartitions) {
    const name = `groupByKey at ${caller()}`;
    const [kc, vc] = this._pair(name);
    return this._child(name, { tag: 'group-by-key', val: partitionsOf(this.graph, name, numPartitions) }, `tuple<${kc},list<${vc}>>`);
  }
  /**
   * Spark's reduceByKeyAndWindow: `f` (or a built-in), an optional inverse
   * `invF` (incremental window), the window's length and slide, and options
   * `{ numPartitions, filter }` (filter: `([k, v]) => keep`, or "nonzero").
   */
  reduceByKeyAndWindow(f, invF, windowLength, slide, options) {
    const name = `reduceByKeyAndWindow at ${caller()}`;
    // reduceByKeyAndWindow(f, windowLength, slide?) without an inverse.
    if (invF !== undefined && invF !== null && typeof invF !== 'function') { options = slide; slide = windowLength; windowLength = invF; invF = undefined; }
    const [kc, vc] = this._pair(name);
    const w = windowOf(this.graph, name, windowLength, slide);
    const reducer = this._reducer(name, f, vc, 'keyReducer', this.codec);
    let inverse;
    if (typeof invF === 'function') {
      if (builtinOf(f) !== null) this.graph.error(`${name}: an inverse function goes with a function reducer (the built-in sum and count are incremental anyway)`);
      inverse = this.graph.addFunction(name, { kind: 'keyReducer', f: invF, codec: this.codec, valueCodec: vc });
    }
    const { numPartitions, filter } = optsOf(options);
    let keyFilter;
    if (filter === 'nonzero') keyFilter = { tag: 'nonzero' };
    else if (typeof filter === 'function') {
      const id = this.graph.addFunction(name, { kind: 'narrow', op: 'filter', f: filter, inCodec: this.codec, outCodec: this.codec });
      keyFilter = { tag: 'function', val: id };
    } else if (filter !== undefined && filter !== null) this.graph.error(`${name}: filter is a function ([key, value]) => boolean or "nonzero", not ${describe(filter)}`);
    const out = builtinOf(f) === 'count' ? `tuple<${kc},i64>` : this.codec;
    return this._child(name, {
      tag: 'reduce-by-key-and-window',
      val: { reducer, inverse, filter: keyFilter, window: w, partitions: partitionsOf(this.graph, name, numPartitions) },
    }, out);
  }
  /** `f(values, state) -> newState` (undefined removes the key); options `{ stateType, numPartitions }`. */
  updateStateByKey(f, options) {
    return this._updateState(f, options, false);
  }
  /** `updateStateByKey` with the key's new values as runs: `f(runs, state)`, each run a `[count, value]`
   * (count ≥ 1) standing for `count` equal values in a row, as the state calls send them. A word's million
   * `1`s are one run, not a million-element array. */
  updateStateByKeyRuns(f, options) {
    return this._updateState(f, options, true);
  }
  _updateState(f, options, runs) {
    const name = `updateStateByKey at ${caller()}`;
    const [kc, vc] = this._pair(name);
    checkFunction(this.graph, name, f);
    const { stateType, numPartitions } = optsOf(options);
    const sample = runs ? () => f([[1, sampleOf(vc)]], undefined) : () => f([sampleOf(vc)], undefined);
    const method = runs ? 'updateStateByKeyRuns' : 'updateStateByKey';
    const sc = resolveType(this.graph, name, stateType, 'state type', sample, `.${method}(f, { stateType: T.i64 })`);
    const id = this.graph.addFunction(name, { kind: 'updateState', f, runs, keyCodec: kc, valueCodec: vc, stateCodec: sc });
    return this._child(name, { tag: 'update-state-by-key', val: { function: id, stateCodec: sc, partitions: partitionsOf(this.graph, name, numPartitions) } }, `tuple<${kc},${sc}>`);
  }
  /** Spark's mapWithState with a StateSpec. The result has `.stateSnapshots()`. */
  mapWithState(spec) {
    const name = `mapWithState at ${caller()}`;
    const [kc, vc] = this._pair(name);
    if (!(spec instanceof StateSpec)) { this.graph.error(`${name}: expected a StateSpec.function((key, value, state) => ...)`); spec = StateSpec.function(() => undefined); }
    const f = spec.f;
    checkFunction(this.graph, name, f);
    let sc;
    if (spec.stateType !== undefined) sc = resolveType(this.graph, name, spec.stateType);
    else {
      sc = resolveType(this.graph, name, undefined, 'state type', () => {
        const st = new State(undefined, false, false);
        f(sampleOf(kc), sampleOf(vc), st);
        if (!st.updated) throw new CodecError('the function did not call state.update(...) on a sample');
        return st._value;
      }, 'StateSpec.function(f).withStateType(T.i64)');
    }
    const mc = spec.outputType !== undefined ? resolveType(this.graph, name, spec.outputType)
      : resolveType(this.graph, name, undefined, 'record type', () => f(sampleOf(kc), sampleOf(vc), new State(undefined, false, false)), 'StateSpec.function(f).withOutputType(T.string)');
    let timeoutMs;
    if (spec.timeoutMs !== undefined) { try { timeoutMs = durationMs(spec.timeoutMs, 'the timeout'); } catch (e) { this.graph.error(`${name}: ${e.message}`); } }
    const id = this.graph.addFunction(name, { kind: 'mapWithState', f, keyCodec: kc, valueCodec: vc, stateCodec: sc, mappedCodec: mc });
    const s = this._child(name, { tag: 'map-with-state', val: { function: id, stateCodec: sc, timeoutMs, partitions: partitionsOf(this.graph, name, spec.partitions) } }, mc);
    s._state = `tuple<${kc},${sc}>`;
    return s;
  }
  /** The whole state of a mapWithState stream after each batch, as [key, state]. */
  stateSnapshots() {
    const name = `stateSnapshots at ${caller()}`;
    if (this._state === undefined) { this.graph.error(`${name}: only the stream mapWithState returns has state snapshots`); return this; }
    return this._child(name, { tag: 'state-snapshots' }, this._state);
  }
  _join(op, kind, other, numPartitions, wrapV, wrapW) {
    const name = `${op} at ${caller(1)}`;
    const [kc, vc] = this._pair(name);
    const [kc2, wc] = other._pair(name);
    if (kc !== kc2) this.graph.error(`${name}: the keys have different types (${kc} and ${kc2})`);
    const out = `tuple<${kc},tuple<${wrapV(vc)},${wrapW(wc)}>>`;
    const k = kind === 'cogroup' ? { tag: 'cogroup', val: partitionsOf(this.graph, name, numPartitions) } : { tag: 'join', val: { kind, partitions: partitionsOf(this.graph, name, numPartitions) } };
    return this._child(name, k, out, [this.id, other.id]);
  }
  join(other, numPartitions) { return this._join('join', 'inner', other, numPartitions, (v) => v, (w) => w); }
  leftOuterJoin(other, numPartitions) { return this._join('leftOuterJoin', 'left-outer', other, numPartitions, (v) => v, (w) => `option<${w}>`); }
  rightOuterJoin(other, numPartitions) { return this._join('rightOuterJoin', 'right-outer', other, numPartitions, (v) => `option<${v}>`, (w) => w); }
  fullOuterJoin(other, numPartitions) { return this._join('fullOuterJoin', 'full-outer', other, numPartitions, (v) => `option<${v}>`, (w) => `option<${w}>`); }
  cogroup(other, numPartitions) { return this._join('cogroup', 'cogroup', other, numPartitions, (v) => `list<${v}>`, (w) => `list<${w}>`); }
  _dataset(op, kind, location, valueType, wrap) {
    const name = `${op} at ${caller(1)}`;
    const [kc, vc] = this._pair(name);
    let wc = 'string';
    if (valueType !== undefined) wc = resolveType(this.graph, name, valueType);
    return this._child(name, { tag: 'join-dataset', val: { location: String(location), kind } }, `tuple<${kc},tuple<${vc},${wrap(wc)}>>`);
  }
  /** Joins with a reference dataset (key<TAB>value lines); `valueType` defaults to T.string. */
  joinDataset(location, valueType) { return this._dataset('joinDataset', 'inner', location, valueType, (w) => w); }
  leftOuterJoinDataset(location, valueType) { return this._dataset('leftOuterJoinDataset', 'left-outer', location, valueType, (w) => `option<${w}>`); }

  // ------------------------------------------------------------- outputs
  print(n = 10) {
    const name = `print at ${caller()}`;
    if (!Number.isInteger(n) || n < 0 || n > 4294967295) { this.graph.error(`${name}: ${describe(n)} is not a number of records`); n = 10; }
    this._output(name, { tag: 'print', val: n });
  }
  saveAsTextFiles(prefix, suffix) {
    this._output(`saveAsTextFiles at ${caller()}`, { tag: 'save-as-text-files', val: { prefix: String(prefix), suffix: suffix === undefined || suffix === null ? undefined : String(suffix) } });
  }
  saveToSqlite(path, table) {
    this._output(`saveToSqlite at ${caller()}`, { tag: 'save-to-sqlite', val: { path: String(path), table: String(table) } });
  }
  /** `f(batchTimeMs, partition, records)` once per partition of every batch. */
  foreachPartition(f) {
    const name = `foreachPartition at ${caller()}`;
    checkFunction(this.graph, name, f);
    const id = this.graph.addFunction(name, { kind: 'output', f, codec: this.codec });
    this._output(name, { tag: 'foreach-partition', val: id });
  }
}
