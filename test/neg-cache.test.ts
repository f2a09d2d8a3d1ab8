/** The negative-lookup cache as a layer alone (src/dht/neg-cache.ts), without bricks or a client. */
import test from 'node:test';
import assert from 'node:assert/strict';
import { NegativeCache } from '../src/dht/neg-cache.js';

test('a directory made everywhere answers for the names not made in it, and only while every brick is fresh', () => {
  let fresh = true;
  const c = new NegativeCache(() => fresh);
  const t = c.begin('/d');
  assert.equal(c.knownAbsent('/d', 'x'), false, 'not of use before every brick made it');
  c.made('/d', t, true);
  assert.equal(c.knownAbsent('/d', 'x'), true);
  c.mayExist('/d', 'x');
  assert.equal(c.knownAbsent('/d', 'x'), false, 'a name this client makes is asked for');
  assert.equal(c.knownAbsent('/d', 'y'), true);
  fresh = false;
  assert.equal(c.knownAbsent('/d', 'y'), false, 'a silent brick may have missed news');
});

test('a directory made on some bricks only, or whose mkdir failed, is not cached', () => {
  const c = new NegativeCache(() => true);
  c.made('/a', c.begin('/a'), false);
  const t = c.begin('/b');
  c.failed('/b', t);
  assert.equal(c.knownAbsent('/a', 'x'), false);
  assert.equal(c.knownAbsent('/b', 'x'), false);
  assert.equal(c.size, 0);
});

test('events drop a directory, a subtree, or everything', () => {
  const c = new NegativeCache(() => true);
  for (const p of ['/a', '/a/b', '/a/b/c', '/ab', '/z']) c.made(p, c.begin(p), true);
  c.gone('/a');
  assert.deepEqual(['/a', '/a/b', '/a/b/c', '/ab', '/z'].filter((p) => c.knownAbsent(p, 'n')), ['/ab', '/z']);
  c.changed('/ab');
  assert.equal(c.knownAbsent('/ab', 'n'), false);
  c.clear();
  assert.equal(c.size, 0);
});

test('a directory with more names made than the cap is dropped; a stale token changes nothing', () => {
  const c = new NegativeCache(() => true, true, 2);
  const t = c.begin('/d');
  c.made('/d', t, true);
  c.mayExist('/d', 'a');
  c.mayExist('/d', 'b');
  assert.equal(c.knownAbsent('/d', 'z'), true);
  c.mayExist('/d', 'c');
  assert.equal(c.knownAbsent('/d', 'z'), false);
  const t2 = c.begin('/e');
  c.begin('/e'); // made again meanwhile (another mkdir of the same path)
  c.made('/e', t2, true);
  assert.equal(c.knownAbsent('/e', 'z'), false, "the first mkdir's answer is not the second's");
});

test('switched off, it knows nothing', () => {
  const c = new NegativeCache(() => true, false);
  const t = c.begin('/d');
  assert.equal(t, null);
  c.made('/d', t, true);
  assert.equal(c.knownAbsent('/d', 'x'), false);
});
