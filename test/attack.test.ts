/**
 * The hostile-client suite, short (test/helpers/attack.ts; `npm run attack` runs it for minutes): the
 * brick never dies, a good client is served within 5 s throughout, its RSS stays under a bound, and
 * nothing outside its folder changes.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { runAttacks } from './helpers/attack.js';

const RSS_BOUND_MIB = 600;

test('a brick under a short hostile-client suite: alive, serving, bounded, contained', async () => {
  const seed = Number(process.env.DHTFS_ATTACK_SEED ?? 0) || (Date.now() & 0xffff) + 1;
  const rep = await runAttacks({ seconds: 8, seed, rssBoundMiB: RSS_BOUND_MIB });
  const summary = `seed ${seed}: ${rep.frames} frames (${rep.answered} answered), ${rep.connections} connections, ${rep.crashes} crashes, ${rep.hangs} hangs, peak RSS ${rep.peakRssMiB.toFixed(0)} MiB, worst good-client wait ${rep.worstGoodMs.toFixed(0)} ms${rep.notes.length ? '; ' + rep.notes.join('; ') : ''}`;
  console.log(summary);
  assert.equal(rep.crashes, 0, summary);
  assert.equal(rep.hangs, 0, summary);
  assert.ok(rep.peakRssMiB < RSS_BOUND_MIB, summary);
  assert.equal(rep.outsideChanged, false, summary);
  assert.ok(rep.answered > 1000, summary);
  assert.deepEqual(rep.notes, [], summary);
});
