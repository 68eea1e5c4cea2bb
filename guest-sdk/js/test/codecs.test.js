// Every case of wit/vectors/codecs.json: encode, decode, and the invalid ones fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as codec from '../src/codec.js';
import { CodecError, compile, decode, encode, parseCodec, decodeRows, encodeRows } from '../src/codec.js';
import { checkVectors, hex } from './vectors.js';

checkVectors(codec, 'with TextEncoder');


test('i64: safe integers decode to numbers, others to BigInt; both encode', () => {
  assert.equal(decode('i64', encode('i64', 2 ** 53 - 1)), 2 ** 53 - 1);
  assert.equal(decode('i64', encode('i64', -(2 ** 53) + 1)), -(2 ** 53) + 1);
  assert.equal(decode('i64', encode('i64', 2n ** 53n)), 2n ** 53n);
  assert.equal(decode('i64', encode('i64', -(2n ** 63n))), -(2n ** 63n));
  assert.equal(decode('u64', encode('u64', 2n ** 64n - 1n)), 2n ** 64n - 1n);
  assert.equal(hex(encode('i64', 5n)), hex(encode('i64', 5)));
  assert.throws(() => encode('i64', 2n ** 63n), /out of the range of i64/);
  assert.throws(() => encode('u64', -1), /not a u64 value/);
  assert.throws(() => encode('i64', 1.5), /the number 1.5 is not a i64 value/);
  assert.throws(() => encode('i32', 2 ** 31), /out of the range of i32/);
});

test('values that do not fit a codec are CodecErrors that say what they are', () => {
  assert.throws(() => encode('tuple<string,i64>', { a: 1 }), /an object \(Object\) is not a tuple<string,i64> value/);
  assert.throws(() => encode('tuple<string,i64>', ['a', 1, 2]), /an array of length 3/);
  assert.throws(() => encode('string', 5), /the integer 5 is not a string value/);
  assert.throws(() => encode('bytes', [1, 2]), /not a bytes value/);
  assert.throws(() => encode('json', () => 1), /not a json value/);
});

test('strings: lone surrogates are replaced as TextEncoder does; the bulk and per-record paths agree', () => {
  assert.equal(hex(encode('string', 'a\ud800b')), '61efbfbd62');
  const words = ['plain', 'héllo', '日本', '🚀', ''];
  const rows = encodeRows('string', words);
  assert.deepStrictEqual(decodeRows('string', rows), words);
  const ascii = encodeRows('string', ['a', 'bc', '', 'd']);
  assert.deepStrictEqual(decodeRows('string', ascii), ['a', 'bc', '', 'd']);
});

test('descriptors: parsing is strict and the limits are kept', () => {
  assert.equal(compile('tuple<string,list<option<i64>>>').codec, 'tuple<string,list<option<i64>>>');
  for (const bad of ['', 'int', 'tuple<string>', 'list<string', 'option<>', 'string ', 'tuple<a,b>']) assert.throws(() => parseCodec(bad), CodecError, bad);
  let deep = 'i64';
  for (let i = 0; i < 31; i++) deep = `option<${deep}>`;
  parseCodec(deep);
  assert.throws(() => parseCodec(`list<${deep}>`), /nested more than 32 levels/);
});
