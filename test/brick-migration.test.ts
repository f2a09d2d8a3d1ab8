/** The brick's migration rules in isolation (src/migration/src-state.ts). */
import test from 'node:test';
import assert from 'node:assert/strict';
import { SrcMigrations, addRange } from '../src/migration/src-state.js';
import type { Clock, Random } from '../src/common/env.js';

const clock: Clock = {
  now: () => 0,
  wallNow: () => 0,
  setTimer: () => ({ cancel: () => {} }),
  sleep: async () => {},
};
let n = 0;
const random: Random = { bytes: (k) => Buffer.alloc(k, ++n), int: () => 0 };
const G = '11111111-1111-4111-8111-111111111111';

test('a write in flight when the lease is granted is recorded when it finishes', async () => {
  const m = new SrcMigrations(clock, random, () => {});
  const finish = m.enter(G);
  assert.equal(typeof finish, 'function');
  const token = m.lease(G, 1, 'dst', '/f', 1000);
  // The migrator copies now; the write lands after the copy read that region.
  (finish as (r: [number, number] | null) => void)([100, 164]);
  assert.deepEqual(m.takeDirty(G, token).ranges, [[100, 164]]);
});

test('freeze waits for changes in flight, including those begun before the lease', async () => {
  const m = new SrcMigrations(clock, random, () => {});
  const finish = m.enter(G) as (r: [number, number] | null) => void;
  const token = m.lease(G, 1, 'dst', '/f', 1000);
  let frozen = false;
  const f = m.freeze(G, token).then((d) => {
    frozen = true;
    return d;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(frozen, false, 'freeze waits for the write');
  finish([0, 10]);
  assert.deepEqual((await f).ranges, [[0, 10]]);
  // New changes are held while frozen.
  assert.ok(m.enter(G) instanceof Promise);
});

test('dirty ranges merge', () => {
  const l: [number, number][] = [];
  addRange(l, 10, 20);
  addRange(l, 30, 40);
  addRange(l, 15, 35);
  addRange(l, 50, 60);
  assert.deepEqual(l, [[10, 40], [50, 60]]);
});
