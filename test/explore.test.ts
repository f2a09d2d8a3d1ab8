/** Bounded exhaustive exploration of the seed scenario on the real code (src/sim/explore.ts). */
import test from 'node:test';
import assert from 'node:assert/strict';
import { explore } from '../src/sim/explore.js';

// app2 starting at 0 ms here (about 4,500 schedules, 12 s); `npm run explore` runs 0, 6 and 12 ms (about
// 13,500), each as many schedules as this one: the suite's 10 minutes do not hold all three.
test('safe protocol: every schedule with up to 2 preemptions keeps S1', { timeout: 600_000 }, async () => {
  const r = await explore(2, [0], 'safe');
  console.log(`safe protocol: ${r.schedules} schedules with at most 2 preemptions, ${r.violations.length} violations`);
  assert.deepEqual(r.violations, []);
  assert.ok(r.schedules > 4000);
});

test('legacy protocol: the exploration finds the stale read with one preemption', { timeout: 600_000 }, async () => {
  const r = await explore(
    1,
    Array.from({ length: 21 }, (_, i) => i),
    'legacy',
    1,
  );
  console.log(`legacy protocol: ${r.schedules} schedules with at most 1 preemption; found: ${r.violations[0]}`);
  assert.equal(r.violations.length, 1);
  assert.match(r.violations[0], /S1: app1 read "OLD-"/);
});
