// The plugin's exports (the WIT interface `job`): `define` builds the graph
// and fills the function table; the other calls look functions up in it by
// id and run them over encoded partitions (see "State calls" in wit/sluice.wit).
// Every export catches whatever is thrown and throws a string instead (the
// WIT `err`): the operator's name, the message and the stack. Never a trap.

import { CodecError, Some, Writer, compile, decodeRows, describe, latin1, pairOf, withLatin1 } from './codec.js';
import { Args, State, StreamingContext, host, phase } from './graph.js';
import { messageOf, report } from './errors.js';

/** An error whose text is final (already names the operator). */
class Reported { constructor(text) { this.text = text; } }

const CHUNK = 1024;

function entryOf(table, id, kind, calledAs) {
  const e = table[id];
  if (e === undefined) throw new Reported(`function ${id} does not exist: this instance's define registered ${table.length} functions`);
  if (!kind.includes(e.kind)) throw new Reported(`function ${id} (${e.name}) is ${WHAT[e.kind]}, not ${calledAs}`);
  return e;
}

const WHAT = {
  narrow: "a narrow operator's function", keyReducer: 'a reduceByKey reducer', reducer: 'a reduce reducer',
  output: 'a foreachPartition function', updateState: 'an updateStateByKey function',
  mapWithState: 'a mapWithState function', transform: 'a transform function',
};

/** Encodes `values` with `codec`; a value that does not fit names the operator that made it. */
function encodeOut(w, codec, values, node, hint) {
  const enc = compile(codec).enc, n = values.length, ends = w.ends;
  let i = 0;
  try {
    for (; i < n; i++) { enc(w, values[i]); ends.push(w.len); }
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    throw new Reported(`${node} returned ${describe(values[i])} where the stream's records are ${codec} (${e.message})${hint ? `; declare ${hint}` : ''}`);
  }
}

function iterableToArray(r, node) {
  if (Array.isArray(r)) return r;
  if (r !== null && r !== undefined && typeof r[Symbol.iterator] === 'function') return Array.from(r);
  throw new Reported(`${node} returned ${describe(r)}, not an array or another iterable`);
}

// ------------------------------------------------------------------ chains

/** One stage of a fused chain: push(chunk) -> chunk, flush() -> chunk. */
function stageOf(table, stage) {
  if (stage.tag === 'apply') {
    const e = entryOf(table, stage.val, ['narrow'], "a narrow operator's function (stage apply)");
    const f = e.f, name = e.name;
    switch (e.op) {
      case 'map': return { name, e, push(c) { const n = c.length, out = new Array(n); for (let i = 0; i < n; i++) out[i] = f(c[i]); return out; }, flush: () => null };
      case 'filter': return { name, e, push(c) { const out = []; for (let i = 0; i < c.length; i++) if (f(c[i])) out.push(c[i]); return out; }, flush: () => null };
      case 'flatMap': return {
        name, e,
        push(c) {
          const out = [];
          for (let i = 0; i < c.length; i++) {
            const r = f(c[i]);
            if (Array.isArray(r)) { for (let j = 0; j < r.length; j++) out.push(r[j]); } else for (const x of iterableToArray(r, name)) out.push(x);
          }
          return out;
        },
        flush: () => null,
      };
      case 'mapPartitions': {
        let all = [];
        return { name, e, push(c) { for (let i = 0; i < c.length; i++) all.push(c[i]); return []; }, flush() { const r = iterableToArray(f(all), name); all = []; return r; } };
      }
      default: throw new Reported(`${name}: unknown operator ${e.op}`);
    }
  }
  if (stage.tag === 'combine') {
    const e = entryOf(table, stage.val, ['keyReducer'], 'a reduceByKey reducer (stage combine)');
    const f = e.f, name = e.name;
    const keyCodec = pairOf(e.codec)[0];
    const byString = keyCodec === 'string';
    const kenc = compile(keyCodec).enc;
    const scratch = new Writer(64);
    const m = new Map();
    return {
      name, e,
      push(c) {
        for (let i = 0; i < c.length; i++) {
          const p = c[i];
          if (!Array.isArray(p) || p.length !== 2) throw new Reported(`${name}: a record is not a [key, value] pair: ${describe(p)}`);
          const k = p[0];
          let repr;
          if (byString && typeof k === 'string') repr = k;
          else {
            scratch.len = 0;
            try { kenc(scratch, k); } catch (err) { throw new Reported(`${name}: a key does not fit the stream's key type ${keyCodec}: ${err.message}`); }
            repr = '\u0000' + latin1(scratch.buf, 0, scratch.len);
          }
          const old = m.get(repr);
          if (old === undefined) m.set(repr, [k, p[1]]); else old[1] = f(old[1], p[1]);
        }
        return [];
      },
      flush() { const out = Array.from(m.values()); m.clear(); return out; },
    };
  }
  throw new Reported(`unknown stage ${JSON.stringify(stage.tag)}`);
}

export function runChain(table, stages, input, current) {
  if (stages.length === 0) return input;
  const steps = stages.map((s) => stageOf(table, s));
  current.node = steps[0].name;
  const records = decodeRows(steps[0].e.kind === 'narrow' ? steps[0].e.inCodec : steps[0].e.codec, input);
  const last = steps[steps.length - 1];
  const outCodec = last.e.kind === 'narrow' ? last.e.outCodec : last.e.codec;
  const hint = last.e.kind === 'narrow' ? `{ outputType: ... } on ${last.name}` : '';
  const w = new Writer(Math.max(1024, input.data.length + (input.data.length >> 1)));
  const through = (c, from) => {
    for (let k = from; k < steps.length && c.length > 0; k++) { current.node = steps[k].name; c = steps[k].push(c); }
    if (c.length > 0) { current.node = last.name; encodeOut(w, outCodec, c, last.name, hint); }
  };
  for (let i = 0; i < records.length; i += CHUNK) through(records.slice(i, i + CHUNK), 0);
  for (let j = 0; j < steps.length; j++) {
    current.node = steps[j].name;
    const c = steps[j].flush();
    if (c !== null && c.length > 0) through(c, j + 1);
  }
  return w.rows();
}

// -------------------------------------------------------------- reductions

/** Splits record [s, e) of `tuple<k, rest>` into the key's bytes and where the rest starts. */
function splitPair(data, dv, s, e, node, i) {
  if (e - s < 4) throw new Reported(`${node}: record ${i} is not a pair (${e - s} bytes)`);
  const kl = dv.getUint32(s, true);
  if (s + 4 + kl > e) throw new Reported(`${node}: record ${i}: the key's length ${kl} is past the end of the record`);
  return s + 4 + kl;
}

export function reduceGroups(table, fid, groups, current) {
  return withLatin1(groups.data, () => reduceGroupsIn(table, fid, groups, current));
}

function reduceGroupsIn(table, fid, groups, current) {
  const e = entryOf(table, fid, ['keyReducer'], 'a reduceByKey reducer (reduce-groups)');
  current.node = e.name;
  const { data, ends } = groups, dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const vc = compile(e.valueCodec), f = e.f;
  const w = new Writer(Math.max(256, data.length));
  let s = 0;
  for (let i = 0; i < ends.length; i++) {
    const end = ends[i];
    const vs = splitPair(data, dv, s, end, e.name, i);
    if (vs + 4 > end) throw new Reported(`${e.name}: record ${i}: no list of values`);
    const n = dv.getUint32(vs, true);
    let p = vs + 4, acc, has = false;
    for (let j = 0; j < n; j++) {
      if (p + 4 > end) throw new Reported(`${e.name}: record ${i}: list element ${j} is past the end`);
      const l = dv.getUint32(p, true); p += 4;
      if (p + l > end) throw new Reported(`${e.name}: record ${i}: list element ${j} is past the end`);
      let v;
      try { v = vc.dec(data, dv, p, p + l); } catch (err) { throw new Reported(`${e.name}: record ${i}: list element ${j}: ${err.message}`); }
      p += l;
      if (has) acc = f(acc, v); else { acc = v; has = true; }
    }
    if (p !== end) throw new Reported(`${e.name}: record ${i}: ${end - p} bytes left after the values`);
    if (has) {
      const mark = w.len;
      w.bytes(data.subarray(s, vs));
      try { vc.enc(w, acc); } catch (err) {
        w.truncate(mark);
        throw new Reported(`${e.name} returned ${describe(acc)} where the values are ${e.valueCodec} (${err.message})`);
      }
      w.end();
    }
    s = end;
  }
  return w.rows();
}

export function reduceAll(table, fid, input, current) {
  const e = entryOf(table, fid, ['reducer'], 'a reduce reducer (reduce-all)');
  current.node = e.name;
  const records = decodeRows(e.codec, input);
  const w = new Writer(64);
  if (records.length > 0) {
    let acc = records[0];
    for (let i = 1; i < records.length; i++) acc = e.f(acc, records[i]);
    encodeOut(w, e.codec, [acc], e.name, '');
  }
  return w.rows();
}

export function foreachPartition(table, fid, batchTimeMs, partition, input, current) {
  const e = entryOf(table, fid, ['output'], 'a foreachPartition function');
  current.node = e.name;
  e.f(Number(batchTimeMs), partition, decodeRows(e.codec, input));
}

/** The codec of a key's new values of codec `v` as the state calls send
 * them: runs, each a count and a value ("State calls" in wit/sluice.wit). */
const runsOf = (v) => `list<tuple<u32,${v}>>`;

/** The number of values `runs` stand for; a count of 0 is an error naming
 * its run. */
function checkedRuns(runs) {
  let total = 0;
  for (let r = 0; r < runs.length; r++) {
    if (runs[r][0] === 0) throw new CodecError(`run ${r}: a count of 0`);
    total += runs[r][0];
  }
  return total;
}

/** Most values an array holds (2^32 - 1). */
const MAX_ARRAY = 4294967295;

/** A key's new values from its decoded runs (`[count, value]` arrays) of
 * values of codec `vc`: each value `count` times, in order. A value that is
 * an object (an array, a `Some`, a JSON object) is copied through its codec
 * (encoded once, decoded for each repetition), so that no two values are
 * one object. A count of 0 is an error: the contract's counts are at
 * least 1. */
function expandRuns(vc, runs) {
  const total = checkedRuns(runs);
  if (total > MAX_ARRAY) throw new CodecError(`${total} values are more than an array holds`);
  const values = new Array(total);
  let at = 0;
  for (let r = 0; r < runs.length; r++) {
    const [count, value] = runs[r];
    if (typeof value === 'object' && value !== null) {
      values[at] = value;
      if (count > 1) {
        const w = new Writer(64);
        vc.enc(w, value);
        for (let c = 1; c < count; c++) values[at + c] = vc.dec(w.buf, w.dv, 0, w.len);
      }
    } else values.fill(value, at, at + count);
    at += count;
  }
  return values;
}

export function updateState(table, fid, batchTimeMs, input, current) {
  return withLatin1(input.data, () => updateStateIn(table, fid, input, current));
}

function updateStateIn(table, fid, input, current) {
  const e = entryOf(table, fid, ['updateState'], 'an updateStateByKey function (update-state)');
  current.node = e.name;
  const { data, ends } = input, dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const rc = compile(runsOf(e.valueCodec)), vc = compile(e.valueCodec), oc = compile(`option<${e.stateCodec}>`);
  const w = new Writer(Math.max(256, ends.length * 9));
  let s = 0;
  for (let i = 0; i < ends.length; i++) {
    const end = ends[i];
    const ls = splitPair(data, dv, s, end, e.name, i);
    if (ls + 4 > end) throw new Reported(`${e.name}: record ${i}: no values`);
    const ll = dv.getUint32(ls, true);
    if (ls + 4 + ll > end) throw new Reported(`${e.name}: record ${i}: the values are past the end of the record`);
    let values, state;
    try {
      values = rc.dec(data, dv, ls + 4, ls + 4 + ll);
      if (e.runs) checkedRuns(values);
      else values = expandRuns(vc, values);
      state = oc.dec(data, dv, ls + 4 + ll, end);
    } catch (err) { throw new Reported(`${e.name}: record ${i}: ${err.message}`); }
    if (state instanceof Some) state = state.value;
    const next = e.f(values, state);
    const mark = w.len;
    try { oc.enc(w, next); } catch (err) {
      w.truncate(mark);
      throw new Reported(`${e.name} returned ${describe(next)} where the state is ${e.stateCodec} (${err.message}); declare { stateType: ... }`);
    }
    w.end();
    s = end;
  }
  return w.rows();
}

export function mapWithState(table, fid, batchTimeMs, input, current) {
  const e = entryOf(table, fid, ['mapWithState'], 'a mapWithState function (map-with-state)');
  current.node = e.name;
  const records = decodeRows(`tuple<${e.keyCodec},option<${e.stateCodec}>,option<${runsOf(e.valueCodec)}>>`, input);
  const vc = compile(e.valueCodec);
  const out = new Array(records.length);
  for (let i = 0; i < records.length; i++) {
    const [k, s0, runs] = records[i];
    let values;
    try { values = runs === undefined ? undefined : expandRuns(vc, runs); } catch (err) { throw new Reported(`${e.name}: record ${i}: ${err.message}`); }
    const exists = s0 !== undefined;
    const st = new State(s0 instanceof Some ? s0.value : s0, exists, values === undefined);
    const mapped = [];
    if (values === undefined) mapped.push(e.f(k, undefined, st));
    else for (let j = 0; j < values.length; j++) mapped.push(e.f(k, values[j], st));
    if (st.misuse) throw new Reported(`${e.name}: ${st.misuse}`);
    out[i] = [st.exists() ? new Some(st.getOption()) : undefined, mapped];
  }
  const w = new Writer(256);
  encodeOut(w, `tuple<option<${e.stateCodec}>,list<${e.mappedCodec}>>`, out, e.name, 'the types with StateSpec.withStateType(...)/withOutputType(...)');
  return w.rows();
}

export function transform(table, fid, batchTimeMs, input, current) {
  const e = entryOf(table, fid, ['transform'], 'a transform function (transform)');
  current.node = e.name;
  const records = decodeRows(e.inCodec, input);
  const r = iterableToArray(e.f(records, Number(batchTimeMs)), e.name);
  const w = new Writer(Math.max(256, input.data.length));
  encodeOut(w, e.outCodec, r, e.name, '{ outputType: ... }');
  return w.rows();
}

// -------------------------------------------------------------- the exports

/** u64 fields of the graph as BigInt, for engines whose bindings want them (StarlingMonkey). */
function widen(v, key) {
  if (v instanceof Uint8Array || v instanceof Uint32Array) return v;
  if (Array.isArray(v)) return v.map((x) => widen(x));
  if (v !== null && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v)) o[k] = widen(v[k], k);
    return o;
  }
  if (typeof v === 'number' && WIDE_FIELDS.has(key)) return BigInt(v);
  return v;
}
const WIDE_FIELDS = new Set(['rememberMs', 'checkpointMs', 'lengthMs', 'slideMs', 'timeoutMs', 'recordsPerSecond']);

/**
 * The object to export as `job`: `app` is the user's module (its `define(ssc,
 * args)` and optional `name`), `options.name` the default job name.
 */
export function makeJob(app, options = {}) {
  let table = [];
  const current = { node: '' };
  const guard = (what, fn) => (...a) => {
    current.node = '';
    try {
      return fn(...a);
    } catch (e) {
      if (e instanceof Reported) throw e.text;
      throw report(current.node || what, e);
    } finally {
      current.node = '';
    }
  };
  return {
    define: guard('define', (args) => {
      const name = typeof app.name === 'string' && app.name ? app.name : (options.name || 'job');
      if (typeof app.define !== 'function') throw new Reported(`${name}: app.js exports no function define(ssc, args)`);
      const ssc = new StreamingContext(name);
      phase.defining = true;
      try {
        const r = app.define(ssc, new Args(args));
        if (r !== null && typeof r === 'object' && typeof r.then === 'function') {
          throw new Reported(`define of job ${name}: define must build the graph synchronously (it returned a Promise: is it async?)`);
        }
      } catch (e) {
        if (e instanceof Reported) throw e;
        throw new Reported(report(`define of job ${name}`, e));
      } finally {
        phase.defining = false;
      }
      let graph;
      try { graph = ssc.graph.finish(); } catch (e) { throw new Reported(e.message); }
      table = ssc.graph.functions;
      return host.wide ? widen(graph) : graph;
    }),
    runChain: guard('run-chain', (stages, input) => runChain(table, stages, input, current)),
    reduceGroups: guard('reduce-groups', (f, groups) => reduceGroups(table, f, groups, current)),
    reduceAll: guard('reduce-all', (f, input) => reduceAll(table, f, input, current)),
    foreachPartition: guard('foreach-partition', (f, t, p, input) => { foreachPartition(table, f, t, p, input, current); }),
    updateState: guard('update-state', (f, t, input) => updateState(table, f, t, input, current)),
    mapWithState: guard('map-with-state', (f, t, input) => mapWithState(table, f, t, input, current)),
    transform: guard('transform', (f, t, input) => transform(table, f, t, input, current)),
  };
}

export { messageOf };
