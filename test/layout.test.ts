import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { newLayout, searchLayout, checkLayout, encodeRange, decodeRange, RING_MAX } from '../src/dht/layout.js';
import { dhtHash } from '../src/dht/hash.js';

const brickArb = fc.array(fc.integer({ min: 1, max: 4_000_000 }), { minLength: 1, maxLength: 24 }).map((ws) => ws.map((weight, i) => ({ name: `vol-client-${i}`, weight })));

test('new layouts cover the ring with no hole and no overlap', () => {
  fc.assert(
    fc.property(brickArb, fc.string(), fc.boolean(), (bricks, dir, weighted) => {
      const l = newLayout(bricks, '/' + dir, { commit: 7, weighted });
      const a = checkLayout(l);
      assert.equal(a.holes, 0);
      assert.equal(a.overlaps, 0);
      assert.equal(l.length, bricks.length);
      assert.ok(l.every((e) => e.start <= e.stop && e.stop <= RING_MAX));
    }),
    { numRuns: 500 },
  );
});

test('range sizes follow brick weights', () => {
  fc.assert(
    fc.property(brickArb, fc.string(), (bricks, dir) => {
      const l = newLayout(bricks, '/' + dir, { commit: 1 });
      const total = bricks.reduce((s, b) => s + b.weight, 0);
      for (const e of l) {
        const w = bricks.find((b) => b.name === e.brick)!.weight;
        const want = ((RING_MAX + 1) * w) / total;
        const got = e.stop - e.start + 1;
        // floor() per brick; the last brick absorbs the remainder (< one hash value per brick).
        assert.ok(Math.abs(got - want) <= bricks.length + 1, `${e.brick}: ${got} vs ${want}`);
      }
    }),
    { numRuns: 500 },
  );
});

test('the start brick rotates with the directory path hash', () => {
  const bricks = [0, 1, 2].map((i) => ({ name: `v-client-${i}`, weight: 100 }));
  for (const dir of ['/', '/a', '/b/c', '/photos']) {
    const l = newLayout(bricks, dir, { commit: 1 });
    assert.equal(l[0].start, 0);
    assert.equal(l[0].brick, `v-client-${dhtHash(dir) % 3}`);
  }
});

test('layout xattr round-trips in the 16-byte big-endian format', () => {
  const buf = encodeRange({ commit: 0xdc7d1d11, type: 0, start: 0x7fffffff, stop: 0xffffffff });
  assert.equal(buf.toString('hex'), 'dc7d1d11000000007fffffffffffffff');
  assert.deepEqual(decodeRange(buf), { commit: 0xdc7d1d11, type: 0, start: 0x7fffffff, stop: 0xffffffff });
  assert.throws(() => decodeRange(Buffer.alloc(15)));
  assert.throws(() => decodeRange(Buffer.from('00000001000000050000000000000001', 'hex')));
});

for (const n of [3, 4, 10]) {
  test(`100,000 names over ${n} equal bricks: max/mean <= 1.05`, () => {
    const bricks = Array.from({ length: n }, (_, i) => ({ name: `vol-client-${i}`, weight: 1000 }));
    const l = newLayout(bricks, '/', { commit: 1 });
    const counts = new Map<string, number>();
    for (let i = 0; i < 100_000; i++) {
      const b = searchLayout(l, dhtHash(`file-${i}.dat`))!;
      counts.set(b, (counts.get(b) ?? 0) + 1);
    }
    const max = Math.max(...counts.values());
    const mean = 100_000 / n;
    assert.equal(counts.size, n);
    assert.ok(max / mean <= 1.05, `max/mean = ${(max / mean).toFixed(4)}`);
  });
}

test('normPath: the already-normal fast path answers as the component walk does', async () => {
  const { normPath, walkPath } = await import('../src/dht/client.js');
  fc.assert(
    fc.property(fc.array(fc.constantFrom('/', '.', 'a', 'é', '..', '.b'), { minLength: 1, maxLength: 12 }), (parts) => {
      const p = parts.join('');
      assert.equal(normPath(p), walkPath(p), p);
    }),
    { numRuns: 5000 },
  );
  // and the walk itself, on a few paths
  assert.equal(normPath('/a/./b/../c//'), '/a/c');
  assert.equal(normPath('a/b'), '/a/b');
  assert.equal(normPath('/../..'), '/');
  assert.throws(() => normPath('/a\0b'), /NUL/);
  assert.throws(() => normPath(''), /non-empty/);
});
