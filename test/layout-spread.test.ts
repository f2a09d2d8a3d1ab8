/**
 * Fix-layout spreads a new brick's ranges per directory (issue 20, item 5): in every directory the new
 * brick takes its share of the hash space, but not the same hash values everywhere, so files of one name
 * in many directories spread over the bricks as any names do; and the movement stays the least possible.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkLayout, fixLayout, movedShare, newLayout, searchLayout, shares, targetShares, rangesOf } from '../src/dht/layout.js';
import { dhtHash } from '../src/dht/hash.js';

const bricks = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `v-client-${i}`, weight: 1000 }));

// 1,000 directories, each with a file of the same name: the new brick's share of those files is a
// binomial(1000, 1/4) count if each directory's new ranges fall independently of the name, so
// [0.2, 0.3] is more than 3.6 standard deviations (13.7 files) either side of 250.
const LOW = 0.2;
const HIGH = 0.3;

test('a 4th brick added to 3 gets about 1/4 of 1,000 same-named files, and movement stays minimal', () => {
  fc.assert(
    fc.property(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ maxLength: 12 }), (name, prefix) => {
      const h = dhtHash(name);
      let onNew = 0;
      for (let i = 0; i < 1000; i++) {
        const dir = `/${prefix}dir-${i}`;
        const old = newLayout(bricks(3), dir, { commit: 1 });
        const fixed = fixLayout(old, bricks(4), { commit: 2, dir });
        const a = checkLayout(fixed);
        assert.equal(a.holes + a.overlaps, 0, 'no hole, no overlap');
        const want = targetShares(bricks(4));
        const got = shares(fixed);
        for (const b of bricks(4)) assert.equal(got.get(b.name), want.get(b.name), `${b.name} gets its share`);
        // The least movement: exactly the new brick's share changes owner.
        assert.equal(movedShare(old, fixed), want.get('v-client-3'));
        if (searchLayout(fixed, h) === 'v-client-3') onNew++;
      }
      const share = onNew / 1000;
      assert.ok(share >= LOW && share <= HIGH, `${JSON.stringify(name)}: the new brick got ${onNew} of 1000`);
    }),
    { numRuns: 25 },
  );
});

test('without the spread (the old fix-layout) every directory gives the new brick the same hash values', () => {
  // The defect this fixes, shown: one name lands on the new brick in all directories or in none.
  const counts = [0, 0];
  for (const name of ['changelog.Debian.gz', 'README', 'index.html']) {
    let onNew = 0;
    for (let i = 0; i < 300; i++) {
      const dir = `/dir-${i}`;
      if (searchLayout(fixLayout(newLayout(bricks(3), dir, { commit: 1 }), bricks(4), { commit: 2 }), dhtHash(name)) === 'v-client-3') onNew++;
    }
    counts[onNew === 0 || onNew === 300 ? 0 : 1]++;
  }
  assert.equal(counts[1], 0);
});

test('repeated changes keep each brick within a few ranges, and each change moves the least', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 12 }), fc.string({ maxLength: 12 }), (sizes, dir) => {
      let l = newLayout(bricks(3), '/' + dir, { commit: 1 });
      for (const n of sizes) {
        const next = fixLayout(l, bricks(n), { commit: 2, dir: '/' + dir });
        const want = targetShares(bricks(n));
        const before = shares(l);
        const lower = bricks(n).reduce((s, b) => s + Math.max(0, want.get(b.name)! - (before.get(b.name) ?? 0)), 0);
        assert.equal(movedShare(l, next), lower);
        assert.equal(checkLayout(next).holes, 0);
        for (const b of bricks(n)) assert.ok(rangesOf(next, b.name).length <= 16);
        l = next;
      }
    }),
    { numRuns: 300 },
  );
});
