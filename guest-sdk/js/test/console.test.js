// The console QuickJS gets: formatting, and writes of at most 4096 bytes to stdout/stderr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { format, installConsole } from '../src/console.js';

test('console.log formats like Node for the common values', () => {
  assert.equal(format(['fp', 1000, 2, 3]), 'fp 1000 2 3');
  assert.equal(format([['a', 1], { w: 'x', n: [1, 2n] }, undefined, null, true]), "[ \"a\", 1 ] { w: \"x\", n: [ 1, 2n ] } undefined null true");
  assert.match(format([new Error('boom')]), /^Error: boom\n/);
});

test('installConsole writes UTF-8 lines in chunks of at most 4096 bytes, only when there is no console', () => {
  const saved = globalThis.console;
  const out = [], err = [];
  try {
    delete globalThis.console;
    installConsole((b) => out.push(b), (b) => err.push(b));
    console.log('héllo', 1);
    console.error('x'.repeat(5000));
    const again = globalThis.console;
    installConsole(() => assert.fail('replaced'), () => assert.fail('replaced'));
    assert.equal(globalThis.console, again);
  } finally {
    globalThis.console = saved;
  }
  assert.equal(Buffer.concat(out).toString(), 'héllo 1\n');
  assert.deepStrictEqual(err.map((b) => b.length), [4096, 905]);
});
