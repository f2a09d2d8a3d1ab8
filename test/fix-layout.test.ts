import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkLayout, fixLayout, movedShare, newLayout, searchLayout, shares, targetShares, decodeRanges, encodeRanges, RING_MAX } from '../src/dht/layout.js';
import { dhtHash } from '../src/dht/hash.js';

const RING = RING_MAX + 1;
const weightsArb = fc.array(fc.integer({ min: 1, max: 1_000_000 }), { minLength: 1, maxLength: 12 });

test('fix-layout covers the ring and moves exactly the least possible, whatever the weights', () => {
  fc.assert(
    fc.property(weightsArb, weightsArb, fc.string(), (oldW, newW, dir) => {
      const oldBricks = oldW.map((weight, i) => ({ name: `v-client-${i}`, weight }));
      // New set: the first ones may have changed size, some added; possibly fewer (removed).
      const newBricks = newW.map((weight, i) => ({ name: `v-client-${i}`, weight }));
      const old = newLayout(oldBricks, '/' + dir, { commit: 1 });
      const fixed = fixLayout(old, newBricks, { commit: 2 });
      const a = checkLayout(fixed);
      assert.equal(a.holes, 0);
      assert.equal(a.overlaps, 0);
      const want = targetShares(newBricks);
      const got = shares(fixed);
      for (const b of newBricks) assert.equal(got.get(b.name), want.get(b.name), `${b.name} gets its share`);
      const before = shares(old);
      const lowerBound = newBricks.reduce((s, b) => s + Math.max(0, want.get(b.name)! - (before.get(b.name) ?? 0)), 0);
      assert.equal(movedShare(old, fixed), lowerBound, 'moves exactly what must move');
    }),
    { numRuns: 300 },
  );
});

for (const n of [3, 4, 10]) {
  test(`adding one brick to ${n} equal bricks moves at most 1.1 x 1/${n + 1} of 100,000 files`, () => {
    const old = newLayout(
      Array.from({ length: n }, (_, i) => ({ name: `v-client-${i}`, weight: 1000 })),
      '/',
      { commit: 1 },
    );
    const fixed = fixLayout(
      old,
      Array.from({ length: n + 1 }, (_, i) => ({ name: `v-client-${i}`, weight: 1000 })),
      { commit: 2 },
    );
    let moved = 0;
    for (let i = 0; i < 100_000; i++) {
      const h = dhtHash(`file-${i}.dat`);
      if (searchLayout(old, h) !== searchLayout(fixed, h)) moved++;
    }
    const frac = moved / 100_000;
    assert.ok(frac <= (1.1 * 1) / (n + 1), `moved ${(frac * 100).toFixed(2)}% > 1.1 x ${(100 / (n + 1)).toFixed(2)}%`);
    assert.ok(frac >= (0.9 * 1) / (n + 1), 'and the new brick gets its share');
  });
}

test('with bricks of different sizes too', () => {
  const old = newLayout(
    [
      { name: 'v-client-0', weight: 100 },
      { name: 'v-client-1', weight: 300 },
      { name: 'v-client-2', weight: 600 },
    ],
    '/d',
    { commit: 1 },
  );
  const nb = [
    { name: 'v-client-0', weight: 100 },
    { name: 'v-client-1', weight: 300 },
    { name: 'v-client-2', weight: 600 },
    { name: 'v-client-3', weight: 250 },
  ];
  const fixed = fixLayout(old, nb, { commit: 2 });
  const share = 250 / 1250;
  assert.ok(Math.abs(movedShare(old, fixed) / RING - share) < 1e-6);
  let moved = 0;
  for (let i = 0; i < 100_000; i++) if (searchLayout(old, dhtHash(`n${i}`)) !== searchLayout(fixed, dhtHash(`n${i}`))) moved++;
  assert.ok(moved / 100_000 <= 1.1 * share, `moved ${moved}`);
});

test('removing a brick moves only its files; its ranges are spread over the others', () => {
  const b4 = Array.from({ length: 4 }, (_, i) => ({ name: `v-client-${i}`, weight: 10 }));
  const old = newLayout(b4, '/', { commit: 1 });
  const fixed = fixLayout(old, b4.slice(0, 3), { commit: 2 });
  assert.equal(shares(fixed).get('v-client-3') ?? 0, 0);
  assert.ok(Math.abs(movedShare(old, fixed) / RING - 0.25) < 1e-6);
});

test("several ranges round-trip; a single range is GlusterFS's 16 bytes", () => {
  const one = encodeRanges([{ commit: 5, type: 0, start: 0, stop: 99 }]);
  assert.equal(one.length, 16);
  const two = [
    { commit: 5, type: 0, start: 0, stop: 99 },
    { commit: 5, type: 0, start: 500, stop: 999 },
  ];
  assert.deepEqual(decodeRanges(encodeRanges(two)), two);
  assert.throws(() => decodeRanges(Buffer.alloc(20)));
});
