import test from 'node:test';
import assert from 'node:assert/strict';
import { dmHashBytes, dhtHash, mungeName } from '../src/dht/hash.js';

const enc = (s: string) => new TextEncoder().encode(s);

test('Davies-Meyer hash matches GlusterFS x86 test vectors', () => {
  const vectors: [string, number][] = [
    ['a', 0x3a17e4e6],
    ['abc', 0xba8bd29a],
    ['file1', 0xa787fa82],
    ['foo.txt', 0xec803fce],
    ['abcdefghijklmnop', 0x5f7662ef],
    ['abcdefghijklmnopq', 0xee27cbd1],
    ['café', 0x9e089967],
    ['xé', 0xb6d766de],
    ['éé', 0xd8d3bd3b],
  ];
  for (const [name, want] of vectors) {
    assert.equal(dmHashBytes(enc(name)), want, `hash(${name})`);
  }
});

test('unsigned-char semantics differ only for non-ASCII tails', () => {
  assert.equal(dmHashBytes(enc('café'), false), 0xfdcdd575);
  assert.equal(dmHashBytes(enc('xé'), false), 0xa7eeba22);
  assert.equal(dmHashBytes(enc('éé'), false), 0xd8d3bd3b);
  assert.equal(dmHashBytes(enc('foo.txt'), false), 0xec803fce);
});

test('rsync temp names hash as the final name', () => {
  assert.equal(mungeName('.foo.txt.Ab12Cd'), 'foo.txt');
  assert.equal(dhtHash('.foo.txt.Ab12Cd'), dhtHash('foo.txt'));
  assert.equal(dhtHash('.foo.txt.Ab12Cd'), 0xec803fce);
  assert.equal(mungeName('.bashrc.swp'), 'bashrc');
  assert.equal(mungeName('plain'), 'plain');
  assert.equal(mungeName('.hidden'), '.hidden');
  assert.equal(mungeName('.foo.txt.Ab12Cd', { rsyncHashRegex: null }), '.foo.txt.Ab12Cd');
  assert.equal(mungeName('v1-data', { extraHashRegex: /^v\d+-(.*)$/ }), 'data');
});
