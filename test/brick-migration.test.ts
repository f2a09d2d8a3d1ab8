/** The migration protocol's rules in isolation: src's (src/migration/src-state.ts) and dst's (dst-rules.ts). */
import test from 'node:test';
import assert from 'node:assert/strict';
import { SrcMigrations, addRange } from '../src/migration/src-state.js';
import type { Clock, Random } from '../src/common/env.js';
import type { Attr } from '../src/wire/types.js';
import { copyName, installAt, prepareAt, specialAt } from '../src/migration/dst-rules.js';
import { supersededInstall } from '../src/migration/records.js';

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
  assert.deepEqual(l, [
    [10, 40],
    [50, 60],
  ]);
});

test("dst's rules: prepare-dst and install by what is at the name (src/migration/dst-rules.ts)", () => {
  const H = '22222222-2222-4222-8222-222222222222';
  const w = { name: '/f on b2', copy: '.glusterfs/dhtfs-migrate/x on b2' };
  const at = (gfid: string, linkto?: string) => ({ gfid, linkto }) as unknown as Attr;
  // prepare-dst: nothing there makes a linkto to src; a linkto of this file is (re)pointed at src.
  assert.equal(prepareAt(null, G, 'b1', w), 'make-linkto');
  assert.equal(prepareAt(at(G, 'b1'), G, 'b1', w), 'ready');
  assert.equal(prepareAt(at(G, 'b3'), G, 'b1', w), 'point-linkto');
  assert.throws(() => prepareAt(at(G), G, 'b1', w), { code: 'EEXIST' });
  assert.throws(() => prepareAt(at(H, 'b1'), G, 'b1', w), { code: 'EEXIST' });
  // install: idempotent; another file at the name is EEXIST with the copy there and ENOENT without.
  assert.equal(installAt(at(G, 'b1'), G, true, w), 'rename');
  assert.equal(installAt(null, G, true, w), 'rename');
  assert.equal(installAt(at(G), G, false, w), 'installed');
  assert.throws(() => installAt(at(H), G, true, w), { code: 'EEXIST' });
  assert.throws(() => installAt(at(H), G, false, w), { code: 'ENOENT' });
  assert.throws(() => installAt(at(G, 'b1'), G, false, w), { code: 'ENOENT' });
  assert.throws(() => installAt(at(H, 'b1'), G, true, w), { code: 'EEXIST' });
  for (const code of ['EEXIST', 'ENOENT']) assert.ok(supersededInstall(Object.assign(new Error(code), { code })));
  // A special file: the same file there is a retry; a linkto of it or nothing is made over.
  const same = () => true;
  assert.equal(specialAt(at(G), G, same, w), 'there');
  assert.equal(specialAt(at(G, 'b1'), G, same, w), 'make');
  assert.equal(specialAt(null, G, same, w), 'make');
  assert.throws(() => specialAt(at(G), G, () => false, w), { code: 'EEXIST' });
  assert.equal(copyName(G, 'ab12'), `${G}.ab12`);
});
