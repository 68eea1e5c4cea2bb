// Record codecs of sluice:plugin@0.4.0 (wit/CODECS.md) for JavaScript values.
//
// A codec is named by its descriptor string ("tuple<string,i64>"); `compile`
// turns it once into an encoder and a decoder specialised for it. Values:
//   string <-> string, bytes <-> Uint8Array, bool <-> boolean, unit <-> undefined
//   (null also encodes), i8..u32/f32/f64 <-> number, i64/u64 <-> number when it
//   is a safe integer, else BigInt (both encode), tuple <-> Array of its length,
//   option <-> undefined (none; null also encodes) or the value (Some wraps a
//   none inside a nested option), list <-> Array, json <-> JSON.parse/stringify.
// Pure JavaScript: runs in Node (tests), QuickJS and StarlingMonkey.

/** Thrown for a value that does not fit a codec, or bytes that do not decode. */
export class CodecError extends Error {}
CodecError.prototype.name = 'CodecError';

/** Marks an option that holds a none-like value (only needed for nested options). */
export class Some {
  constructor(value) { this.value = value; }
}

const MAX_DEPTH = 32;
const INTS = { i8: [1, -128, 127], i16: [2, -32768, 32767], i32: [4, -2147483648, 2147483647], u8: [1, 0, 255], u16: [2, 0, 65535], u32: [4, 0, 4294967295] };
const SCALARS = new Set(['string', 'bytes', 'bool', 'unit', 'i8', 'i16', 'i32', 'i64', 'u8', 'u16', 'u32', 'u64', 'f32', 'f64', 'json']);
export const NUMERIC = new Set(['i8', 'i16', 'i32', 'i64', 'u8', 'u16', 'u32', 'u64', 'f32', 'f64']);

// ---------------------------------------------------------------- descriptors

/** Parses a codec descriptor into {k, elems?, inner?}; throws CodecError. */
export function parseCodec(text) {
  if (typeof text !== 'string') throw new CodecError(`a codec descriptor must be a string, not ${describe(text)}`);
  if (text.length > 16384) throw new CodecError('a codec descriptor is at most 16384 bytes long');
  let i = 0;
  const fail = (why) => { throw new CodecError(`bad codec ${JSON.stringify(text)} at ${i}: ${why}`); };
  const word = () => { const m = /^[a-z0-9]+/.exec(text.slice(i)); if (!m) fail('expected a type'); i += m[0].length; return m[0]; };
  const eat = (c) => { if (text[i] !== c) fail(`expected '${c}'`); i++; };
  const parse = (depth) => {
    if (depth > MAX_DEPTH) fail('nested more than 32 levels');
    const k = word();
    if (SCALARS.has(k)) return { k };
    if (k === 'tuple') {
      eat('<'); const elems = [parse(depth + 1)];
      while (text[i] === ',') { i++; elems.push(parse(depth + 1)); }
      eat('>'); if (elems.length < 2) fail('a tuple has at least 2 elements');
      return { k, elems };
    }
    if (k === 'option' || k === 'list') { eat('<'); const inner = parse(depth + 1); eat('>'); return { k, inner }; }
    return fail(`unknown type ${JSON.stringify(k)}`);
  };
  const ast = parse(1);
  if (i !== text.length) fail('trailing characters');
  return ast;
}

export function codecString(ast) {
  if (ast.k === 'tuple') return `tuple<${ast.elems.map(codecString).join(',')}>`;
  if (ast.k === 'option' || ast.k === 'list') return `${ast.k}<${codecString(ast.inner)}>`;
  return ast.k;
}

/** Normalises a declared type (a `T` value or a descriptor) to its descriptor. */
export function normalize(type) {
  return codecString(parseCodec(typeof type === 'string' ? type.replace(/\s+/g, '') : type));
}

/** The elements of a `tuple<k,v>` descriptor, or null when it is not a pair. */
export function pairOf(codec) {
  const ast = parseCodec(codec);
  if (ast.k !== 'tuple' || ast.elems.length !== 2) return null;
  return [codecString(ast.elems[0]), codecString(ast.elems[1])];
}

/** Declared types: `T.string`, `T.tuple(T.string, T.i64)`, ... (descriptor strings). */
export const T = Object.freeze({
  string: 'string', bytes: 'bytes', bool: 'bool', unit: 'unit',
  i8: 'i8', i16: 'i16', i32: 'i32', i64: 'i64', u8: 'u8', u16: 'u16', u32: 'u32', u64: 'u64',
  f32: 'f32', f64: 'f64', json: 'json',
  tuple: (...elems) => normalize(`tuple<${elems.map(normalize).join(',')}>`),
  pair: (k, v) => normalize(`tuple<${normalize(k)},${normalize(v)}>`),
  option: (inner) => normalize(`option<${normalize(inner)}>`),
  list: (inner) => normalize(`list<${normalize(inner)}>`),
});

// ------------------------------------------------------------------- UTF-8

const HAS_TEXT = typeof TextEncoder !== 'undefined' && typeof TextDecoder !== 'undefined';
const TE = HAS_TEXT ? new TextEncoder() : null;
const TD = HAS_TEXT ? new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }) : null;
const NON_ASCII = /[^\x00-\x7f]/;

/** The bytes [start, end) of `data` as a string of one char per byte. */
export function latin1(data, start, end) {
  if (end - start <= 8192) return String.fromCharCode.apply(null, data.subarray(start, end));
  const parts = [];
  for (let i = start; i < end; i += 8192) parts.push(String.fromCharCode.apply(null, data.subarray(i, Math.min(end, i + 8192))));
  return parts.join('');
}

// Without TextDecoder (QuickJS), a partition being decoded is also kept as one
// string of one char per byte: a string field is then a slice of it, which
// is much faster there than a conversion per field.
let L1_DATA = null, L1_STR = '', L1_ASCII = false;

/** Keeps `data` as a latin1 string while `f()` decodes fields of it. */
export function withLatin1(data, f) {
  if (TD !== null || data.length === 0 || L1_DATA !== null) return f();
  L1_DATA = data;
  L1_STR = latin1(data, 0, data.length);
  L1_ASCII = !NON_ASCII.test(L1_STR);
  try { return f(); } finally { L1_DATA = null; L1_STR = ''; }
}

/** Strict UTF-8 decoding of data[start, end). */
export function utf8Decode(data, start, end) {
  if (start === end) return '';
  if (TD !== null) {
    try { return TD.decode(data.subarray(start, end)); } catch (e) { throw new CodecError('invalid UTF-8'); }
  }
  const s = data === L1_DATA ? L1_STR.slice(start, end) : latin1(data, start, end);
  if (data === L1_DATA && L1_ASCII) return s;
  if (!NON_ASCII.test(s)) return s;
  try { return decodeURIComponent(escape(s)); } catch (e) { throw new CodecError('invalid UTF-8'); }
}

/** Decodes every record of `rows` as a string (one bulk decode when it is all ASCII). */
export function decodeStrings(data, ends) {
  const n = ends.length, out = new Array(n);
  let whole = null;
  if (data.length > 0) {
    if (TD !== null) {
      try { whole = TD.decode(data); } catch (e) { whole = null; }
      if (whole !== null && whole.length !== data.length) whole = null;
    } else {
      whole = latin1(data, 0, data.length);
      if (NON_ASCII.test(whole)) whole = null;
    }
  }
  let s = 0;
  if (whole !== null) {
    for (let i = 0; i < n; i++) { const e = ends[i]; out[i] = whole.slice(s, e); s = e; }
  } else {
    for (let i = 0; i < n; i++) { const e = ends[i]; if (e < s || e > data.length) throw new CodecError('bad record offsets'); out[i] = utf8Decode(data, s, e); s = e; }
  }
  return out;
}

// ------------------------------------------------------------------ writer

const SHORT = 24;
const SHORT_CACHE_MAX = 65536;
const SHORT_CACHE = new Map();
// Encodings of short `tuple<string,_>` keys with their length prefix, and of small i64 values.
const KEY_CACHE = new Map();
const SMALL = 1024;
const SMALL_I64 = new Array(SMALL);

/** A growable output buffer; `rows()` returns the records written so far. */
export class Writer {
  constructor(capacity = 4096) {
    this.buf = new Uint8Array(capacity);
    this.dv = new DataView(this.buf.buffer);
    this.len = 0;
    this.cap = capacity;
    this.ends = [];
  }
  reserve(n) {
    if (this.len + n > this.cap) this.grow(this.len + n);
  }
  grow(need) {
    let c = this.cap * 2;
    while (c < need) c *= 2;
    const b = new Uint8Array(c);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
    this.cap = c;
    this.dv = new DataView(b.buffer);
  }
  bytes(b) { this.reserve(b.length); this.buf.set(b, this.len); this.len += b.length; }
  u8(x) { this.reserve(1); this.buf[this.len++] = x; }
  u32(x) { this.reserve(4); const b = this.buf, p = this.len; b[p] = x & 255; b[p + 1] = (x >>> 8) & 255; b[p + 2] = (x >>> 16) & 255; b[p + 3] = x >>> 24; this.len = p + 4; }
  /** Writes u32 `x` at `at` (a length prefix reserved earlier). */
  patch32(at, x) { const b = this.buf; b[at] = x & 255; b[at + 1] = (x >>> 8) & 255; b[at + 2] = (x >>> 16) & 255; b[at + 3] = x >>> 24; }
  string(s) {
    const n = s.length;
    if (TE !== null && n > 16) {
      this.reserve(n * 3);
      this.len += TE.encodeInto(s, this.buf.subarray(this.len)).written;
      return;
    }
    if (TE === null && n <= SHORT) {
      // Without a native encoder (QuickJS) a JS loop per char is slow: short
      // strings (words, keys) repeat, so their encodings are kept.
      let b = SHORT_CACHE.get(s);
      if (b === undefined) {
        const w = SCRATCH;
        w.len = 0;
        w.reserve(n * 3);
        w.utf8(s, n);
        b = w.buf.slice(0, w.len);
        if (SHORT_CACHE.size >= SHORT_CACHE_MAX) SHORT_CACHE.clear();
        SHORT_CACHE.set(s, b);
      }
      const m = b.length, p = this.len;
      if (p + m > this.cap) this.grow(p + m);
      this.buf.set(b, p);
      this.len = p + m;
      return;
    }
    this.reserve(n * 3);
    this.utf8(s, n);
  }
  utf8(s, n) {
    const b = this.buf;
    let p = this.len;
    for (let i = 0; i < n; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) b[p++] = c;
      else if (c < 0x800) { b[p++] = 0xc0 | (c >> 6); b[p++] = 0x80 | (c & 63); }
      else {
        if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
          const d = s.charCodeAt(i + 1);
          if (d >= 0xdc00 && d < 0xe000) {
            i++; c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
            b[p++] = 0xf0 | (c >> 18); b[p++] = 0x80 | ((c >> 12) & 63); b[p++] = 0x80 | ((c >> 6) & 63); b[p++] = 0x80 | (c & 63);
            continue;
          }
        }
        if (c >= 0xd800 && c < 0xe000) c = 0xfffd; // a lone surrogate, as TextEncoder
        b[p++] = 0xe0 | (c >> 12); b[p++] = 0x80 | ((c >> 6) & 63); b[p++] = 0x80 | (c & 63);
      }
    }
    this.len = p;
  }
  /** Ends the current record. */
  end() { this.ends.push(this.len); }
  /** Drops the bytes written since `mark` (a `len`). */
  truncate(mark) { this.len = mark; }
  rows() { return { data: this.buf.slice(0, this.len), ends: Uint32Array.from(this.ends) }; }
}
const SCRATCH = new Writer(128);

// ---------------------------------------------------------- value checking

export function describe(v) {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (v instanceof Uint8Array) return 'a Uint8Array';
  if (v instanceof Some) return 'a Some';
  const t = typeof v;
  if (t === 'number') return Number.isInteger(v) ? `the integer ${v}` : `the number ${v}`;
  if (t === 'bigint') return `the bigint ${v}`;
  if (t === 'string') return 'a string';
  if (t === 'boolean') return 'a boolean';
  if (t === 'function') return 'a function';
  if (t === 'object') return `an object (${(v.constructor && v.constructor.name) || 'Object'})`;
  return `a ${t}`;
}

const bad = (v, codec) => { throw new CodecError(`${describe(v)} is not a ${codec} value`); };

// -------------------------------------------------------------- 64-bit ints

const TWO32 = 4294967296;
const I64_MIN = -(2n ** 63n), I64_MAX = 2n ** 63n - 1n, U64_MAX = 2n ** 64n - 1n;

function writeI64(w, v, unsigned) {
  w.reserve(8);
  const at = w.len;
  if (typeof v === 'number' && (v | 0) === v && v >= 0) {
    // The common case (counts): 0 <= v < 2^31, byte by byte.
    const b = w.buf;
    b[at] = v & 255; b[at + 1] = (v >>> 8) & 255; b[at + 2] = (v >>> 16) & 255; b[at + 3] = v >>> 24;
    b[at + 4] = 0; b[at + 5] = 0; b[at + 6] = 0; b[at + 7] = 0;
    w.len = at + 8;
    return;
  }
  if (typeof v === 'number' && Number.isSafeInteger(v)) {
    if (unsigned && v < 0) bad(v, 'u64');
    const hi = Math.floor(v / TWO32);
    w.dv.setUint32(at, v - hi * TWO32, true);
    w.dv.setInt32(at + 4, hi, true);
  } else {
    let b;
    if (typeof v === 'bigint') b = v;
    else if (typeof v === 'number' && Number.isInteger(v)) b = BigInt(v);
    else bad(v, unsigned ? 'u64' : 'i64');
    if (unsigned ? (b < 0n || b > U64_MAX) : (b < I64_MIN || b > I64_MAX)) throw new CodecError(`${describe(v)} is out of the range of ${unsigned ? 'u64' : 'i64'}`);
    if (unsigned) w.dv.setBigUint64(at, b, true); else w.dv.setBigInt64(at, b, true);
  }
  w.len = at + 8;
}

function readI64(dv, at, unsigned) {
  const lo = dv.getUint32(at, true);
  const hi = unsigned ? dv.getUint32(at + 4, true) : dv.getInt32(at + 4, true);
  if (hi >= -2097152 && hi < 2097152) return hi * TWO32 + lo; // |v| < 2^53
  if (!unsigned && hi === -2097152 && lo > 0) return hi * TWO32 + lo;
  return unsigned ? dv.getBigUint64(at, true) : dv.getBigInt64(at, true);
}

// ----------------------------------------------------------------- compile

/**
 * A compiled codec: `enc(w, v)` appends v's encoding to Writer w (throws
 * CodecError when v does not fit); `dec(data, dv, start, end)` decodes exactly
 * the bytes [start, end) (throws CodecError on anything else).
 */
const cache = new Map();
export function compile(codec) {
  let c = cache.get(codec);
  if (c === undefined) {
    const ast = parseCodec(codec);
    c = { codec: codecString(ast), ast, enc: encoderOf(ast), dec: decoderOf(ast) };
    cache.set(codec, c);
  }
  return c;
}

function encoderOf(ast) {
  const k = ast.k;
  switch (k) {
    case 'string': return (w, v) => { if (typeof v !== 'string') bad(v, 'string'); w.string(v); };
    case 'json': return (w, v) => {
      let s;
      try { s = JSON.stringify(v); } catch (e) { throw new CodecError(`cannot write ${describe(v)} as JSON: ${e.message}`); }
      if (s === undefined) bad(v, 'json');
      w.string(s);
    };
    case 'bytes': return (w, v) => { if (!(v instanceof Uint8Array)) bad(v, 'bytes'); w.bytes(v); };
    case 'bool': return (w, v) => { if (typeof v !== 'boolean') bad(v, 'bool'); w.u8(v ? 1 : 0); };
    case 'unit': return (w, v) => { if (v !== undefined && v !== null) bad(v, 'unit'); };
    case 'i64': return (w, v) => writeI64(w, v, false);
    case 'u64': return (w, v) => writeI64(w, v, true);
    case 'f64': return (w, v) => { if (typeof v !== 'number') bad(v, 'f64'); w.reserve(8); w.dv.setFloat64(w.len, v, true); w.len += 8; };
    case 'f32': return (w, v) => { if (typeof v !== 'number') bad(v, 'f32'); w.reserve(4); w.dv.setFloat32(w.len, v, true); w.len += 4; };
    case 'tuple': {
      const encs = ast.elems.map(encoderOf), n = encs.length, codec = codecString(ast);
      if (n === 2) {
        const [ek, ev] = encs;
        const general = (w, v) => {
          if (!Array.isArray(v) || v.length !== 2) bad(v, codec);
          w.reserve(4); const at = w.len; w.len += 4;
          ek(w, v[0]);
          w.patch32(at, w.len - at - 4);
          ev(w, v[1]);
        };
        if (TE === null && ast.elems[0].k === 'string' && ast.elems[1].k === 'i64') {
          // The hottest codec (word counts) without a native encoder: one
          // function, a cached key, byte stores; anything unusual goes the
          // general way.
          return (w, v) => {
            if (!Array.isArray(v) || v.length !== 2) return general(w, v);
            const s = v[0], x = v[1];
            if (typeof s !== 'string' || typeof x !== 'number' || (x | 0) !== x || x < 0 || x >= SMALL) return general(w, v);
            const k = KEY_CACHE.get(s);
            if (k === undefined) {
              if (s.length > SHORT) return general(w, v);
              const at = w.len;
              general(w, v);
              if (KEY_CACHE.size >= SHORT_CACHE_MAX) KEY_CACHE.clear();
              KEY_CACHE.set(s, w.buf.slice(at, w.len - 8));
              return;
            }
            const p = w.len, m = k.length;
            if (p + m + 8 > w.cap) w.grow(p + m + 8);
            const o = w.buf;
            o.set(k, p);
            let e = SMALL_I64[x];
            if (e === undefined) e = SMALL_I64[x] = Uint8Array.of(x & 255, x >>> 8, 0, 0, 0, 0, 0, 0);
            o.set(e, p + m);
            w.len = p + m + 8;
          };
        }
        return general;
      }
      return (w, v) => {
        if (!Array.isArray(v) || v.length !== n) bad(v, codec);
        for (let i = 0; i < n - 1; i++) {
          w.reserve(4); const at = w.len; w.len += 4;
          encs[i](w, v[i]);
          w.patch32(at, w.len - at - 4);
        }
        encs[n - 1](w, v[n - 1]);
      };
    }
    case 'option': {
      const enc = encoderOf(ast.inner);
      return (w, v) => {
        if (v === undefined || v === null) { w.u8(0); return; }
        w.u8(1);
        enc(w, v instanceof Some ? v.value : v);
      };
    }
    case 'list': {
      const enc = encoderOf(ast.inner), codec = codecString(ast);
      return (w, v) => {
        if (!Array.isArray(v)) bad(v, codec);
        w.u32(v.length);
        for (let i = 0; i < v.length; i++) {
          w.reserve(4); const at = w.len; w.len += 4;
          enc(w, v[i]);
          w.patch32(at, w.len - at - 4);
        }
      };
    }
    default: {
      const [size, min, max] = INTS[k];
      const set = { i8: 'setInt8', i16: 'setInt16', i32: 'setInt32', u8: 'setUint8', u16: 'setUint16', u32: 'setUint32' }[k];
      return (w, v) => {
        if (typeof v === 'bigint') v = Number(v) === Number(v) && BigInt(Number(v)) === v ? Number(v) : NaN;
        if (typeof v !== 'number' || !Number.isInteger(v)) bad(v, k);
        if (v < min || v > max) throw new CodecError(`${describe(v)} is out of the range of ${k}`);
        w.reserve(size); w.dv[set](w.len, v, true); w.len += size;
      };
    }
  }
}

function decoderOf(ast) {
  const k = ast.k;
  switch (k) {
    case 'string': return (data, dv, s, e) => utf8Decode(data, s, e);
    case 'json': return (data, dv, s, e) => {
      const text = utf8Decode(data, s, e);
      try { return JSON.parse(text); } catch (err) { throw new CodecError(`invalid JSON: ${err.message}`); }
    };
    case 'bytes': return (data, dv, s, e) => data.slice(s, e);
    case 'bool': return (data, dv, s, e) => {
      if (e - s !== 1) throw new CodecError(`a bool is 1 byte, not ${e - s}`);
      const b = data[s]; if (b > 1) throw new CodecError(`a bool byte is 0 or 1, not ${b}`);
      return b === 1;
    };
    case 'unit': return (data, dv, s, e) => { if (e !== s) throw new CodecError(`a unit has no bytes, not ${e - s}`); return undefined; };
    case 'i64': case 'u64': {
      const unsigned = k === 'u64';
      return (data, dv, s, e) => { if (e - s !== 8) throw new CodecError(`an ${k} is 8 bytes, not ${e - s}`); return readI64(dv, s, unsigned); };
    }
    case 'f64': return (data, dv, s, e) => { if (e - s !== 8) throw new CodecError(`an f64 is 8 bytes, not ${e - s}`); return dv.getFloat64(s, true); };
    case 'f32': return (data, dv, s, e) => { if (e - s !== 4) throw new CodecError(`an f32 is 4 bytes, not ${e - s}`); return dv.getFloat32(s, true); };
    case 'tuple': {
      const decs = ast.elems.map(decoderOf), n = decs.length;
      if (n === 2) {
        const [d0, d1] = decs;
        return (data, dv, s, e) => {
          let i = 0;
          try {
            if (s + 4 > e) throw new CodecError(`needs 4 bytes, ${e - s} left`);
            const len = dv.getUint32(s, true), p = s + 4 + len;
            if (p > e) throw new CodecError(`needs ${len} bytes, ${e - s - 4} left`);
            const a = d0(data, dv, s + 4, p);
            i = 1;
            return [a, d1(data, dv, p, e)];
          } catch (err) { throw wrap(err, `tuple element ${i}`); }
        };
      }
      return (data, dv, s, e) => {
        const out = new Array(n);
        let p = s, i = 0;
        try {
          for (; i < n - 1; i++) {
            if (p + 4 > e) throw new CodecError(`needs 4 bytes, ${e - p} left`);
            const len = dv.getUint32(p, true); p += 4;
            if (p + len > e) throw new CodecError(`needs ${len} bytes, ${e - p} left`);
            out[i] = decs[i](data, dv, p, p + len);
            p += len;
          }
          out[n - 1] = decs[n - 1](data, dv, p, e);
        } catch (err) { throw wrap(err, `tuple element ${i}`); }
        return out;
      };
    }
    case 'option': {
      const dec = decoderOf(ast.inner);
      const noneLike = ast.inner.k === 'option' || ast.inner.k === 'unit';
      return (data, dv, s, e) => {
        if (e === s) throw new CodecError('an option has a tag byte');
        const tag = data[s];
        if (tag === 0) { if (e !== s + 1) throw new CodecError('bytes left after an option\'s none'); return undefined; }
        if (tag !== 1) throw new CodecError(`an option tag is 0 or 1, not ${tag}`);
        const v = dec(data, dv, s + 1, e);
        return noneLike && (v === undefined || v === null) ? new Some(v) : v;
      };
    }
    case 'list': {
      const dec = decoderOf(ast.inner);
      return (data, dv, s, e) => {
        if (s + 4 > e) throw new CodecError(`a list count: needs 4 bytes, ${e - s} left`);
        const n = dv.getUint32(s, true);
        let p = s + 4, i = 0;
        const out = [];
        try {
          for (; i < n; i++) {
            if (p + 4 > e) throw new CodecError(`needs 4 bytes, ${e - p} left`);
            const len = dv.getUint32(p, true); p += 4;
            if (p + len > e) throw new CodecError(`needs ${len} bytes, ${e - p} left`);
            out.push(dec(data, dv, p, p + len));
            p += len;
          }
        } catch (err) { throw wrap(err, `list element ${i}`); }
        if (p !== e) throw new CodecError(`${e - p} bytes left after a list`);
        return out;
      };
    }
    default: {
      const [size] = INTS[k];
      const get = { i8: 'getInt8', i16: 'getInt16', i32: 'getInt32', u8: 'getUint8', u16: 'getUint16', u32: 'getUint32' }[k];
      return (data, dv, s, e) => { if (e - s !== size) throw new CodecError(`an ${k} is ${size} bytes, not ${e - s}`); return dv[get](s, true); };
    }
  }
}

function wrap(err, where) {
  if (err instanceof CodecError) return new CodecError(`${where}: ${err.message}`);
  return err;
}

// ------------------------------------------------------------ whole values

/** The encoding of one value (a Uint8Array). */
export function encode(codec, value) {
  const c = compile(codec), w = new Writer(64);
  c.enc(w, value);
  return w.buf.slice(0, w.len);
}

/** Decodes one record (all of `bytes`). */
export function decode(codec, bytes) {
  const c = compile(codec);
  return c.dec(bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0, bytes.length);
}

/** Decodes every record of a partition into an array. */
export function decodeRows(codec, rows) {
  const { data, ends } = rows;
  if (codec === 'string') return decodeStrings(data, ends);
  const c = compile(codec), dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return withLatin1(data, () => {
    const n = ends.length, out = new Array(n);
    let s = 0, i = 0;
    try {
      for (; i < n; i++) {
        const e = ends[i];
        if (e < s || e > data.length) throw new CodecError(`bad end offset ${e}`);
        out[i] = c.dec(data, dv, s, e);
        s = e;
      }
    } catch (err) { throw wrap(err, `record ${i} (${c.codec})`); }
    return out;
  });
}

/** Encodes an array of records into a partition. */
export function encodeRows(codec, values) {
  const c = compile(codec), w = new Writer(1024);
  for (let i = 0; i < values.length; i++) { c.enc(w, values[i]); w.end(); }
  return w.rows();
}

// --------------------------------------------------------------- inference

/** The codec of a JS value (inference by example); throws CodecError when there is none. */
export function codecOfValue(v) {
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'i64' : 'f64';
  if (typeof v === 'bigint') return 'i64';
  if (v === null || v === undefined) return 'unit';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof Some) return `option<${codecOfValue(v.value)}>`;
  if (Array.isArray(v)) {
    if (v.length >= 2) return `tuple<${v.map(codecOfValue).join(',')}>`;
    throw new CodecError(`${describe(v)} has no type: arrays of 2 or more elements are tuples; declare a list with T.list(...)`);
  }
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) return 'json';
  }
  throw new CodecError(`${describe(v)} has no codec`);
}

/** A sample value of a codec, to call a function on at define time. */
export function sampleOf(codec) {
  const ast = typeof codec === 'string' ? parseCodec(codec) : codec;
  switch (ast.k) {
    case 'string': return '0';
    case 'bytes': return Uint8Array.of(0x30);
    case 'bool': return true;
    case 'unit': return undefined;
    case 'f32': case 'f64': return 1.0;
    case 'json': return {};
    case 'tuple': return ast.elems.map(sampleOf);
    case 'option': return sampleOf(ast.inner);
    case 'list': return [sampleOf(ast.inner)];
    default: return 1;
  }
}
