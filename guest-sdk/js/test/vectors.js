// The checks of wit/vectors/codecs.json, run against a codec module (the
// normal one, and one loaded without TextEncoder/TextDecoder as in QuickJS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const vectors = JSON.parse(readFileSync(fileURLToPath(new URL('../../../wit/vectors/codecs.json', import.meta.url)), 'utf8'));
export const hex = (b) => Buffer.from(b).toString('hex');
export const unhex = (h) => new Uint8Array(Buffer.from(h, 'hex'));

export function checkVectors(m, label) {
  const { CodecError, Some, decode, encode, parseCodec, decodeRows, encodeRows } = m;
  /** The JS value of a vector's value form (see `value_form` in the file). */
  function toJs(ast, v) {
    switch (ast.k) {
      case 'bytes': return unhex(v);
      case 'unit': return undefined;
      case 'i64': case 'u64': { const b = BigInt(v); return Number.isSafeInteger(Number(b)) && BigInt(Number(b)) === b ? Number(b) : b; }
      case 'f32': case 'f64': return v === 'NaN' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : v === '-0.0' ? -0 : v;
      case 'tuple': return ast.elems.map((e, i) => toJs(e, v[i]));
      case 'option': {
        if (v.length === 0) return undefined;
        const inner = toJs(ast.inner, v[0]);
        return (ast.inner.k === 'option' || ast.inner.k === 'unit') && inner === undefined ? new Some(inner) : inner;
      }
      case 'list': return v.map((x) => toJs(ast.inner, x));
      default: return v;
    }
  }
  
  test(label + ': the vectors file has cases and invalid cases', () => {
    assert.ok(vectors.cases.length >= 40);
    assert.ok(vectors.invalid.length >= 10);
  });
  
  for (const [i, c] of vectors.cases.entries()) {
    test(`${label} vector ${i}: ${c.codec} ${JSON.stringify(c.value)} (${c.description || ''})`, () => {
      const value = toJs(parseCodec(c.codec), c.value);
      assert.equal(hex(encode(c.codec, value)), c.hex, 'encode');
      assert.deepStrictEqual(decode(c.codec, unhex(c.hex)), value, 'decode');
      // The same through a partition of two records.
      const rows = encodeRows(c.codec, [value, value]);
      assert.deepStrictEqual(decodeRows(c.codec, rows), [value, value]);
    });
  }
  
  for (const [i, c] of vectors.invalid.entries()) {
    test(`${label} invalid ${i}: ${c.codec} ${c.hex} (${c.description})`, () => {
      assert.throws(() => decode(c.codec, unhex(c.hex)), CodecError);
      // In a partition too (strings take the bulk path there).
      const data = unhex(c.hex);
      assert.throws(() => decodeRows(c.codec, { data, ends: Uint32Array.of(data.length) }), CodecError);
    });
  }
  
  
}
