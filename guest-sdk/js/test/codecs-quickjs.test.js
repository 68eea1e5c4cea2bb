// The codecs as QuickJS runs them: no TextEncoder/TextDecoder (the SDK's own UTF-8 paths).
import { checkVectors } from './vectors.js';

delete globalThis.TextEncoder;
delete globalThis.TextDecoder;
const codec = await import('../src/codec.js?no-text-codec');
checkVectors(codec, 'without TextEncoder');

const { test } = await import('node:test');
const assert = (await import('node:assert/strict')).default;

test('without TextEncoder: string fields of a partition decode as slices, strictly', () => {
  const rows = codec.encodeRows('tuple<string,list<string>>', [['héllo', ['a', '日本']], ['plain', []]]);
  assert.deepStrictEqual(codec.decodeRows('tuple<string,list<string>>', rows), [['héllo', ['a', '日本']], ['plain', []]]);
  const ascii = codec.encodeRows('tuple<string,i64>', [['a', 1], ['bc', 2 ** 40]]);
  assert.deepStrictEqual(codec.decodeRows('tuple<string,i64>', ascii), [['a', 1], ['bc', 2 ** 40]]);
  const bad = Uint8Array.of(2, 0, 0, 0, 0xc3, 0x28, 1, 0, 0, 0, 0, 0, 0, 0);
  assert.throws(() => codec.decodeRows('tuple<string,i64>', { data: bad, ends: Uint32Array.of(bad.length) }), /record 0 \(tuple<string,i64>\): tuple element 0: invalid UTF-8/);
});
